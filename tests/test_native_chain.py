"""The compiled chain program (``kernel.NATIVE_CHAIN``, rfsearch/native/chain.cc): the
driver runs it on CPUs for plain int32 chains, on the Batch's own arrays; every result
equals XLA's chain programs (which still run on accelerators, and here when it is off),
flags and int64 re-runs included."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import rfsearch
from rfsearch import driver, native
from rfsearch import kernel as K
from rfsearch import recurrence as R

pytestmark = pytest.mark.skipif(
    not native.available(),
    reason="compiled kernels unavailable (RFSEARCH_NATIVE=0, no C++ compiler, "
           "a non-CPU backend, or the build failed)")

PLAIN = R.Features(sized=False, same=False, whole=False)


@pytest.fixture
def xla_chains(monkeypatch):
    """A function running ``fn`` with the compiled chain program off."""
    def run(fn, *args, **kwargs):
        with monkeypatch.context() as mp:
            mp.setattr(driver, "native_chain", lambda *a, **k: False)
            return fn(*args, **kwargs)
    return run


def random_arrays(n, depth, seed, top=7, square=True):
    """Random chain parameters: kernels up to ``top``, strides 1-3, dilations 1-2,
    paddings up to ``top`` (often larger than the kernel). Square: [N, L] each, padding
    symmetric; else [N, L, 2] (h, w) and asymmetric paddings [N, L, 2, 2]."""
    rng = np.random.default_rng(seed)
    shape = (n, depth) if square else (n, depth, 2)
    return {"kernel": rng.integers(1, top + 1, shape),
            "stride": rng.choice([1, 1, 1, 2, 3], shape),
            "dilation": rng.integers(1, 3, shape),
            "padding": rng.integers(0, top + 1, shape if square else (*shape, 2))}


def assert_same(a: driver.Raw, b: driver.Raw) -> None:
    for key in a.out:
        assert a.out[key].dtype == b.out[key].dtype, key
        np.testing.assert_array_equal(a.out[key], b.out[key], err_msg=key)


@pytest.mark.parametrize("size", [None, (224, 224), (33, 33), (7, 7), (224, 97), (5, 3)],
                         ids=str)
@pytest.mark.parametrize("square", [True, False], ids=["square", "hw"])
def test_same_results_as_xla(size, square, xla_chains):
    """Random chains, ragged, at unknown, large, odd, tiny (empty maps) and non-square
    input sizes: every field of every row equals XLA's program's."""
    a = random_arrays(3000, 20, seed=len(str(size)) + square, square=square)
    lengths = np.random.default_rng(1).integers(1, 21, 3000)
    batch = rfsearch.chains(a["kernel"], a["stride"], a["dilation"], a["padding"],
                            lengths=lengths)
    assert driver.choose_program(batch, size).kind == K.NATIVE_CHAIN
    mine = driver.run_batch(batch, size, chunk=1000)  # ragged chunks
    assert_same(mine, xla_chains(driver.run_batch, batch, size))
    if size is not None and min(size) < 8:  # some maps became empty
        assert (mine.out["fault"] != R.NO_FAULT).any()


@pytest.mark.parametrize("top", [100, 300, 40000], ids=["int8", "int16", "int32"])
def test_every_parameter_width(top, xla_chains):
    """Parameters narrowed to int8, int16 or int32 (chains() picks the narrowest) read
    in place, with the same results; int32 parameters beyond the int32 program's limits
    run the int64 program instead."""
    a = random_arrays(500, 6, seed=top, top=top)
    batch = rfsearch.chains(a["kernel"], a["stride"], a["dilation"], a["padding"])
    assert batch.kernel.dtype == {100: np.int8, 300: np.int16, 40000: np.int32}[top]
    for size in (None, (224, 224)):
        kind = driver.choose_program(batch, size).kind
        assert kind == (K.NATIVE_CHAIN if top < 40000 else K.SCAN)
        assert_same(driver.run_batch(batch, size), xla_chains(driver.run_batch, batch, size))


@pytest.mark.parametrize("size", [None, (224, 224)], ids=str)
def test_overflow_rows_are_computed_again_in_int64(size, xla_chains, monkeypatch):
    """Chains whose jump or span reaches 2**24 are flagged by the float32 program and
    computed again, alone, by the int64 program: the same numbers as XLA's path."""
    depth = 30
    stride = np.ones((64, depth), np.int64)
    stride[::2, :] = 2  # J = 2**30 on every other chain
    batch = rfsearch.chains(np.full((64, depth), 3), stride, padding=1)
    calls = []
    run = driver._run
    monkeypatch.setattr(driver, "_run", lambda b, *args: calls.append(len(b)) or run(b, *args))
    mine = driver.run_batch(batch, size)
    assert calls == [32]  # only the overflowing rows, in one int64 call
    theirs = xla_chains(driver.run_batch, batch, size)
    for key in mine.out:
        np.testing.assert_array_equal(mine.out[key], theirs.out[key], err_msg=key)
    assert (mine.out["J"][0, ::2] == 2**depth).all()


def test_evaluate_is_the_same_with_the_program_on_and_off(xla_chains):
    """Whole tables (names, errors, analysis columns) are identical."""
    a = random_arrays(700, 12, seed=5)
    batch = rfsearch.chains(a["kernel"], a["stride"], a["dilation"], a["padding"],
                            lengths=np.arange(700) % 12 + 1)
    for size in (None, 40, 9):
        on = rfsearch.evaluate(batch, input_size=size)
        off = xla_chains(rfsearch.evaluate, batch, input_size=size)
        pd.testing.assert_frame_equal(on, off)
    on = rfsearch.evaluate(batch, input_size=9, chunk_size=128)
    pd.testing.assert_frame_equal(on, off)


def test_program_choice(xla_chains):
    """Plain int32 chains without per-layer states: the compiled program, 2**16 rows per
    call; with per-layer states, 'same' padding, int64 or arrays it cannot read in
    place, XLA's programs."""
    a = random_arrays(10, 5, seed=0)
    batch = rfsearch.chains(a["kernel"], a["stride"], a["dilation"], a["padding"])
    chosen = driver.choose_program(batch, (50, 50))
    assert chosen == driver.Program(
        K.NATIVE_CHAIN, False, 0, axes=1, topology="chain", features=PLAIN._replace(
            sized=True), per_layer=False, dtype="int32", chunk=driver.NATIVE_CHAIN_CHUNK)
    assert driver.choose_program(batch, per_layer=True).kind == K.SCAN
    assert driver.choose_program(batch, dtype="int64").kind == K.SCAN
    same = rfsearch.encode({"layers": [{"op": "conv", "kernel": 3, "padding": "same"}]})
    assert driver.choose_program(same).kind == K.SCAN
    assert xla_chains(driver.choose_program, batch).kind == K.UNROLLED
    params = driver.chain_params(batch, 1)
    assert native.reads_chain(params)
    assert not native.reads_chain([params[0][..., ::2], *params[1:]])  # rows not contiguous
    assert not native.reads_chain([params[0].astype(np.int16), *params[1:]])  # two types
    assert not native.reads_chain([p.astype(np.uint8) for p in params])
    assert dataclasses.replace(chosen, kind=K.SCAN) != chosen


def test_no_rows_and_one_row():
    a = random_arrays(1, 4, seed=2)
    one = rfsearch.chains(a["kernel"], a["stride"], a["dilation"], a["padding"])
    df = rfsearch.evaluate(one, input_size=64)
    assert len(df) == 1 and df["error"].isna().all()
    empty = one.take(np.arange(0))
    assert len(rfsearch.evaluate(empty)) == 0


def test_many_blocks_in_one_call_and_overflow_in_some_chunks(xla_chains):
    """2,100 rows in one call (chain.cc walks 1,024 rows at a time: a partial last block),
    and chunks of which only some hold overflowing rows (their int64 re-run joins views of
    the shared arrays with widened parts); h != w with one axis overflowing."""
    a = random_arrays(2100, 9, seed=11)
    batch = rfsearch.chains(a["kernel"], a["stride"], a["dilation"], a["padding"])
    assert driver.choose_program(batch).chunk > len(batch)
    for size in (None, (96, 96)):
        assert_same(driver.run_batch(batch, size), xla_chains(driver.run_batch, batch, size))
    depth = 26
    stride = np.ones((600, depth, 2), np.int64)
    stride[450:, :, 1] = 2  # the last chunk's rows overflow on the w axis only
    wide = rfsearch.chains(np.full((600, depth, 2), 3), stride, padding=1)
    for size in (None, (64, 64)):
        mine = driver.run_batch(wide, size, chunk=128)
        assert mine.out["u"].dtype == np.int64  # widened by the re-run
        assert_same(mine, xla_chains(driver.run_batch, wide, size, chunk=128))
        assert (mine.out["J"][1, 450:] == 2**depth).all() and (mine.out["J"][1, :450] == 1).all()


@pytest.mark.parametrize("size", [None, (224, 224)], ids=str)
def test_deep_chains_against_the_rolled_scan(size, xla_chains):
    """More nodes than XLA unrolls (its reference is then the rolled scan), with paddings
    large enough that the size bound reaches 2**24 on some rows."""
    a = random_arrays(300, 140, seed=3, top=3)
    a["padding"][::7] = 127
    a["stride"][:] = 1
    batch = rfsearch.chains(a["kernel"], a["stride"], a["dilation"], a["padding"])
    assert xla_chains(driver.choose_program, batch, size).kind == K.SCAN
    mine = driver.run_batch(batch, size)
    assert_same(mine, xla_chains(driver.run_batch, batch, size))


def test_layouts_it_cannot_read_are_left_to_xla():
    """Parameters in another byte order, or strides that are not whole elements, are not
    read in place: the driver chooses XLA's program for them."""
    a = random_arrays(64, 8, seed=4, top=300)
    batch = rfsearch.chains(a["kernel"], a["stride"], a["dilation"], a["padding"])
    params = driver.chain_params(batch, 1)
    swapped = [p.astype(p.dtype.newbyteorder()) for p in params]
    assert not native.reads_chain(swapped)
    raw = np.zeros(params[0].size * 3 + 1, np.uint8)[1:]  # int16 rows at odd addresses
    odd = np.ndarray(params[0].shape, params[0].dtype, raw.data, 0,
                     (params[0].shape[2] * 2 + 1, 0, 2))
    assert not native.reads_chain([odd] * 5)
    big = dataclasses.replace(batch, **{f: getattr(batch, f).astype(
        getattr(batch, f).dtype.newbyteorder()) for f in ("kernel", "stride", "dilation",
                                                         "pad_before", "pad_after")})
    assert driver.choose_program(big).kind != K.NATIVE_CHAIN


def test_results_are_arrays_of_their_own():
    """run_batch's fields are writable and own their memory, whichever program ran (a
    single XLA chunk is not a view of the padded device buffer)."""
    a = random_arrays(300, 6, seed=6)
    batch = rfsearch.chains(a["kernel"], a["stride"], a["dilation"], a["padding"])
    for per_layer in (False, True):
        raw = driver.run_batch(batch, (40, 40), per_layer=per_layer)
        for fields in (raw.out, raw.layers or {}):
            for key, value in fields.items():
                base = value.base if value.strides[-2] == 0 else value
                assert base.flags.writeable and base.shape[-1] == len(batch), key
