"""The batch driver: the program chosen once per batch (kind, layout, static options,
rows per call), the compute width, chunk buckets, and run_batch's chunks, int64 re-runs
and empty batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import rfsearch
from rfsearch import driver, native
from rfsearch import kernel as K
from rfsearch import recurrence as R

pytestmark = pytest.mark.usefixtures("xla_chain_programs")  # the programs accelerators run

PLAIN = R.Features(sized=False, same=False, whole=False)
SMALL = R.LIMITS[np.dtype(np.int32)].param  # the largest parameter int32 computes with

DAG = {"name": "d", "layers": [
    {"name": "a", "op": "conv", "kernel": 3, "padding": 1},
    {"name": "b", "op": "conv", "kernel": 3, "padding": 1},
    {"name": "s", "op": "add", "inputs": ["a", "b"]}]}
OTHER_DAG = {"name": "e", "layers": [
    {"name": "a", "op": "conv", "kernel": 5, "stride": 2, "padding": 2},
    {"name": "b", "op": "maxpool", "kernel": 2, "stride": 2, "inputs": ["input"]},
    {"name": "s", "op": "add", "inputs": ["a", "b"]},
    {"name": "c", "op": "conv", "kernel": 3, "padding": 1}]}


def random_chains(n, depth, seed=0):
    rng = np.random.default_rng(seed)
    return rfsearch.chains(rng.choice([1, 3, 5], (n, depth)),
                           stride=np.where(rng.random((n, depth)) < 0.2, 2, 1), padding=1)


def two_dags(n):
    """``n`` rows alternating between two DAGs of different topologies."""
    return rfsearch.encode([DAG, OTHER_DAG]).take(np.arange(n) % 2)


@pytest.fixture
def xla_only(monkeypatch):
    """The compiled DAG kernel off: DAGs run XLA's program."""
    monkeypatch.setattr(K, "uses_native", lambda *a, **k: False)


def rows_in(args) -> int:
    """Rows (padding included) of one call's arguments, tiled or layer-major."""
    kernel = args[1]
    return kernel.shape[0] * kernel.shape[-1] if kernel.ndim == 4 else kernel.shape[-1]


@pytest.fixture
def calls(monkeypatch):
    """(kind, dtype, topology, rows) of every kernel.propagate call."""
    made, propagate = [], K.propagate

    def counted(program, *args):
        made.append((program.kind, program.dtype, program.topology, rows_in(args)))
        return propagate(program, *args)

    monkeypatch.setattr(K, "propagate", counted)
    return made


def assert_same_raw(a: driver.Raw, b: driver.Raw) -> None:
    for mine, theirs in ((a.out, b.out), (a.layers, b.layers)):
        assert (mine is None) == (theirs is None)
        for key in mine or {}:
            assert mine[key].dtype == theirs[key].dtype, key
            np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)


# ------------------------------------------------------------------ the program choice

def test_chain_program_choice():
    """Plain chains at an unknown size run the unrolled program on tiles of TILE chains;
    an input size, per-layer states, int64, 'same' padding or more than UNROLL_DEPTH
    nodes make it a rolled scan over layer-major arrays."""
    chains = random_chains(10, 12)
    assert driver.choose_program(chains) == driver.Program(
        K.UNROLLED, False, K.TILE, axes=1, topology="chain", features=PLAIN, per_layer=False,
        dtype="int32", chunk=driver.UNROLLED_CHUNK)
    scan = driver.Program(K.SCAN, False, 0, axes=1, topology="chain", features=PLAIN,
                          per_layer=False, dtype="int32", chunk=driver.DEFAULT_CHUNK)
    sized = dataclasses.replace(scan, features=PLAIN._replace(sized=True))
    assert driver.choose_program(chains, (224, 224)) == sized
    assert driver.choose_program(chains, (224, 100)) == dataclasses.replace(sized, axes=2)
    assert driver.choose_program(chains, per_layer=True) == dataclasses.replace(
        scan, per_layer=True)
    assert driver.choose_program(chains, dtype="int64") == dataclasses.replace(
        scan, dtype="int64")
    assert driver.choose_program(chains, (SMALL + 1, 7)).dtype == "int64"
    same = rfsearch.encode({"layers": [
        {"op": "conv", "kernel": 3, "stride": 2, "padding": "same"}] * 3})
    assert same.is_chain and driver.choose_program(same).kind == K.SCAN
    wide = rfsearch.chains(np.full((4, 5, 2), [3, 5]))  # h != w: two axes
    assert driver.choose_program(wide) == dataclasses.replace(
        driver.choose_program(chains), axes=2)
    # 128 layers: 129 nodes, unrolled; 129 layers: the next depth bucket, a scan
    assert random_chains(2, 128).depth == driver.UNROLL_DEPTH
    assert driver.choose_program(random_chains(2, 128)).kind == K.UNROLLED
    assert driver.choose_program(random_chains(2, 129)).kind == K.SCAN


def test_dag_program_choice(monkeypatch):
    """DAGs run the compiled kernel where it is available (tiles of its lanes), else, and
    always with per-layer states, XLA's program over layer-major arrays, compiled by the
    loop emitter where it exists."""
    dags = two_dags(4)
    xla = driver.Program(K.XLA_DAG, K.loop_emitter_available(), 0, axes=1, topology="dag",
                         features=R.Features(False, False, False), per_layer=True,
                         dtype="int32", chunk=driver.DAG_CHUNK)
    assert driver.choose_program(dags, per_layer=True) == xla
    if native.available():
        assert driver.choose_program(dags) == dataclasses.replace(
            xla, kind=K.NATIVE, loop_emitter=False, tile=native.lanes(), per_layer=False,
            chunk=driver.NATIVE_DAG_CHUNK)
    monkeypatch.setattr(K, "uses_native", lambda *a, **k: False)
    assert driver.choose_program(dags) == dataclasses.replace(xla, per_layer=False)
    monkeypatch.setattr(K, "loop_emitter_available", lambda: False)
    assert not driver.choose_program(dags).loop_emitter
    sized = driver.choose_program(rfsearch.encode([OTHER_DAG]), (32, 32))
    assert sized.features == R.Features(sized=True, same=False, whole=False)
    assert sized.topology == "dag"  # 'shared' is decided per chunk (kernel_inputs)


def test_program_is_a_frozen_value():
    """One value per batch: immutable, hashable, and its static options are the jitted
    programs' keyword arguments."""
    program = driver.choose_program(random_chains(3, 8))
    with pytest.raises(dataclasses.FrozenInstanceError):
        program.chunk = 1
    assert hash(program) == hash(dataclasses.replace(program))
    assert program.options == {"topology": "chain", "features": PLAIN, "per_layer": False,
                               "dtype": "int32"}


def test_default_chunk_per_program(xla_only):
    chains = random_chains(10, 12)
    assert driver.default_chunk(chains) == driver.UNROLLED_CHUNK
    assert driver.default_chunk(chains, (224, 224)) == driver.DEFAULT_CHUNK
    assert driver.default_chunk(chains, None, per_layer=True) == driver.DEFAULT_CHUNK
    assert driver.default_chunk(chains, None, dtype="int64") == driver.DEFAULT_CHUNK
    assert driver.default_chunk(random_chains(10, 130)) == driver.DEFAULT_CHUNK
    assert driver.default_chunk(two_dags(4)) == driver.DAG_CHUNK
    assert len({driver.DEFAULT_CHUNK, driver.UNROLLED_CHUNK, driver.DAG_CHUNK,
                driver.NATIVE_DAG_CHUNK}) == 4


@pytest.mark.skipif(not native.available(), reason="compiled DAG kernel unavailable")
def test_default_chunk_of_the_compiled_dag_kernel():
    assert driver.default_chunk(two_dags(4)) == driver.NATIVE_DAG_CHUNK
    assert driver.default_chunk(two_dags(4), per_layer=True) == driver.DAG_CHUNK


def test_rows_per_call():
    """DAG programs run at most their default rows (the memory of a call); chain programs
    any number, rounded down to whole tiles of TILE rows above one tile."""
    unrolled = driver.choose_program(random_chains(3, 8))
    scan = driver.choose_program(random_chains(3, 8), (32, 32))
    dag = dataclasses.replace(unrolled, kind=K.XLA_DAG, tile=0, topology="dag",
                              chunk=driver.DAG_CHUNK)
    assert unrolled.rows_per_call() == driver.UNROLLED_CHUNK
    assert scan.rows_per_call() == driver.DEFAULT_CHUNK
    assert dag.rows_per_call() == driver.DAG_CHUNK
    for chain in (unrolled, scan):
        assert [chain.rows_per_call(c) for c in (1, 50, 64, 100, 1000, 10**7)] == [
            1, 50, 64, 64, 960, 10**7 - 10**7 % 64]
    assert [dag.rows_per_call(c) for c in (1, 50, 100, 1000, 10**7)] == [
        1, 50, 100, 1000, driver.DAG_CHUNK]


def test_chunk_bucket():
    """Chunks are padded to a power of two of at least MIN_CHUNK_BUCKET rows, at most the
    chunk: a run compiles a handful of programs."""
    assert driver.MIN_CHUNK_BUCKET == 64
    assert [driver.chunk_bucket(n, 512) for n in (0, 1, 63, 64, 65, 128, 129, 500, 512)] == [
        64, 64, 64, 64, 128, 128, 256, 512, 512]
    assert driver.chunk_bucket(70, 100) == 100
    assert driver.chunk_bucket(10, 32) == 32


def test_compute_dtype():
    """int32 when every parameter, effective kernel and the input size are at most
    LIMITS[int32].param, else int64."""
    chains = random_chains(3, 8)
    assert driver.compute_dtype(chains, None) == "int32"
    assert driver.compute_dtype(chains, (SMALL, SMALL)) == "int32"
    assert driver.compute_dtype(chains, (7, SMALL + 1)) == "int64"
    for params, dtype in (({"kernel": [[SMALL]]}, "int32"), ({"kernel": [[SMALL + 1]]}, "int64"),
                          ({"kernel": [[3]], "stride": [[SMALL + 1]]}, "int64"),
                          ({"kernel": [[3]], "padding": [[SMALL + 1]]}, "int64"),
                          ({"kernel": [[129]], "dilation": [[127]]}, "int32"),  # k_eff 16257
                          ({"kernel": [[129]], "dilation": [[128]]}, "int64")):  # 16385
        assert driver.compute_dtype(rfsearch.chains(**params), None) == dtype, params
    assert driver.compute_dtype(rfsearch.encode(DAG), (SMALL + 1, SMALL + 1)) == "int64"


# ------------------------------------------------------------------ layouts

def test_dag_layouts(xla_only):
    """XLA's DAG program reads layer-major arrays padded to the bucket; a chunk whose
    networks share one DAG reads one [L, M] array of input slots, as 'shared'."""
    mixed, shared = two_dags(10), two_dags(10).take(np.zeros(10, int))
    program = driver.choose_program(mixed)
    args, chunk = driver.kernel_inputs(mixed, slice(None), None, program, 16)
    assert chunk == program and chunk.topology == "dag"
    assert args[1].shape == (mixed.depth, 1, 16) and args[6].shape == (mixed.depth, 2, 16)
    args, chunk = driver.kernel_inputs(shared, slice(None), None, program, 16)
    assert chunk == dataclasses.replace(program, topology="shared")
    assert args[6].shape == (mixed.depth, 2)
    np.testing.assert_array_equal(args[6], shared.preds[0])
    args, chunk = driver.kernel_inputs(mixed, slice(0, 2), None, program, 16)  # rows 0 and 1
    assert chunk.topology == "dag" and args[7].tolist() == [mixed.output[0], mixed.output[1],
                                                            *[mixed.output[0]] * 14]


@pytest.mark.skipif(not native.available(), reason="compiled DAG kernel unavailable")
def test_native_layout():
    """The compiled DAG kernel reads tiles of its lanes: [N / T, L, A, T] parameters,
    [N / T, L, M, T] input slots (or [L, M] shared), outputs for whole tiles."""
    mixed = two_dags(10)
    program = driver.choose_program(mixed)
    width = native.lanes()
    tiles = -(-16 // width)
    args, chunk = driver.kernel_inputs(mixed, slice(None), None, program, 16)
    assert chunk.kind == K.NATIVE and chunk.topology == "dag"
    assert args[0].shape == (tiles, mixed.depth, 1, width)
    assert args[1].shape == (tiles, mixed.depth, 1, width)
    assert args[6].shape == (tiles, mixed.depth, 2, width)
    assert args[7].shape == (tiles * width,)
    shared = mixed.take(np.ones(10, int))
    args, chunk = driver.kernel_inputs(shared, slice(None), None, program, 16)
    assert chunk.topology == "shared" and args[6].shape == (mixed.depth, 2)


# ------------------------------------------------------------------ run_batch

def test_run_batch_on_an_empty_batch(monkeypatch):
    """No networks: empty results typed as the kernel types them, no kernel call."""
    def no_call(*args):
        raise AssertionError("the kernel ran on an empty batch")

    monkeypatch.setattr(K, "propagate", no_call)
    for batch in (random_chains(3, 5).take(np.array([], int)),
                  two_dags(2).take(np.array([], int))):
        for per_layer in (False, True):
            raw = driver.run_batch(batch, None, per_layer=per_layer)
            assert list(raw.out) == list(R.NodeState._fields)
            for key, values in raw.out.items():
                assert values.shape == (2, 0), key
                assert values.dtype == {"flags": np.int8, "fault": np.int32}.get(
                    key, np.int32), key
            if per_layer:
                assert {v.shape for v in raw.layers.values()} == {(batch.depth, 2, 0)}
            else:
                assert raw.layers is None


@pytest.mark.parametrize("per_layer", [False, True])
def test_int32_overflow_rows_are_recomputed_in_int64(calls, per_layer):
    """26 stride-2 layers leave the exact int32 (float32) range: those rows alone, padded
    to one bucket, run again in int64 and replace the int32 ones (the arrays widened)."""
    depth, deep = 26, [3, 70, 99]
    stride = np.ones((100, depth), int)
    stride[deep] = 2
    batch = rfsearch.chains(np.full((100, depth), 3), stride=stride, padding=1)
    raw = driver.run_batch(batch, None, per_layer=per_layer)
    first = K.SCAN if per_layer else K.UNROLLED
    assert calls == [(first, "int32", "chain", 128), (K.SCAN, "int64", "chain", 64)]
    out = raw.out
    assert out["J"].dtype == np.int64 and not raw.overflow.any()
    shallow = np.setdiff1d(np.arange(100), deep)
    assert (out["J"][:, deep] == 2**depth).all() and (out["J"][:, shallow] == 1).all()
    assert (out["u"][:, deep] == -(2**depth - 1)).all() and (out["u"][:, shallow] == -depth).all()
    rf = out["v"] - out["u"] + 1
    assert (rf[:, deep] == 2 ** (depth + 1) - 1).all() and (rf[:, shallow] == 2 * depth + 1).all()
    if per_layer:
        np.testing.assert_array_equal(raw.layers["J"][depth], out["J"])


def test_int32_overflow_in_dags_reruns_in_int64(calls):
    """The same for a DAG program: two branches of 15 stride-2 layers, merged, have a
    jump of 2**15, above int32's limit."""
    branches = [{"name": f"{b}{i}", "op": op, "kernel": k, "stride": 2, "padding": p,
                 "inputs": [f"{b}{i - 1}" if i else "input"]}
                for b, op, k, p in (("a", "conv", 3, 1), ("b", "avgpool", 1, 0))
                for i in range(15)]
    deep = {"name": "deep", "layers": [*branches, {"name": "s", "op": "add",
                                                   "inputs": ["a14", "b14"]}]}
    batch = rfsearch.encode([DAG, deep, DAG])
    assert driver.compute_dtype(batch, None) == "int32"
    program = driver.choose_program(batch, None, rows=len(batch))
    raw = driver.run_batch(batch, None)
    assert calls == [(program.kind, "int32", "dag", 64), (program.kind, "int64", "shared", 64)]
    assert raw.out["J"].dtype == np.int64 and not raw.overflow.any()
    assert raw.out["J"][:, 1].tolist() == [2**15, 2**15] and (raw.out["J"][:, [0, 2]] == 1).all()
    assert (raw.out["fault"] == R.NO_FAULT).all()


@pytest.mark.parametrize("case", ["chains", "sized chains", "per-layer chains", "dags",
                                  "shared dags"])
def test_chunking_does_not_change_results(calls, case):
    """Any chunk size gives the same results as one call for the whole batch, in as many
    calls as the program's rows per call make."""
    size, per_layer = None, False
    if "chains" in case:
        batch = random_chains(300, 10, seed=5)
        size = (40, 40) if case == "sized chains" else None
        per_layer = case == "per-layer chains"
    else:
        batch = two_dags(300) if case == "dags" else two_dags(300).take(np.zeros(300, int))
    program = driver.choose_program(batch, size, per_layer, rows=len(batch))
    whole = driver.run_batch(batch, size, per_layer=per_layer, chunk=1000)
    assert len(calls) == 1
    for chunk in (50, 64, 100, 257):
        calls.clear()
        raw = driver.run_batch(batch, size, per_layer=per_layer, chunk=chunk)
        assert_same_raw(raw, whole)
        rows = program.rows_per_call(chunk)
        assert len(calls) == -(-300 // rows), (chunk, rows)
        assert {c[0] for c in calls} == {program.kind}
        topology = "shared" if case == "shared dags" else program.topology
        assert {c[2] for c in calls} == {topology}


def test_run_batch_runs_the_chosen_program(calls, monkeypatch):
    """run_batch takes the program, its layout and its rows per call from
    choose_program: a rolled scan in chunks of 64 gives the unrolled program's results."""
    batch = random_chains(200, 8, seed=2)
    unrolled = driver.run_batch(batch, None)
    assert calls == [(K.UNROLLED, "int32", "chain", 256)]
    chosen = driver.choose_program(batch)
    scan = dataclasses.replace(chosen, kind=K.SCAN, tile=0, chunk=64)
    monkeypatch.setattr(driver, "choose_program", lambda *a, **k: scan)
    calls.clear()
    assert_same_raw(driver.run_batch(batch, None), unrolled)
    assert calls == [(K.SCAN, "int32", "chain", 64)] * 4


def test_rows_per_call_follow_the_device(monkeypatch):
    """CPUs keep the per-program constants (caches decide them, whatever the core count);
    on an accelerator a call takes ACCELERATOR_CHUNK rows or what fits in a share of the
    device's memory, a power of two, and calls run one at a time."""
    batch = rfsearch.chains(np.full((4, 64), 3))
    assert driver.choose_program(batch).chunk == driver.UNROLLED_CHUNK
    assert driver.choose_program(batch, (224, 224)).chunk == driver.DEFAULT_CHUNK
    monkeypatch.setattr(driver.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(driver, "device_memory", lambda: 80 << 30)
    big = driver.choose_program(batch).chunk
    row = batch.depth * (2 * (driver.STATE_BYTES + 4 * len(driver.PARAM_FIELDS)) + 4 + 1)
    assert big == 1 << 20 and big * row <= (80 << 30) // driver.MEMORY_SHARE
    monkeypatch.setattr(driver, "device_memory", lambda: 1 << 30)
    small = driver.choose_program(batch).chunk
    assert small & (small - 1) == 0 and small * row <= (1 << 30) // driver.MEMORY_SHARE
    assert small * 2 * row > (1 << 30) // driver.MEMORY_SHARE
    assert driver.workers() == 1
    from rfsearch.search import runner
    assert runner.default_chunk() == runner.ACCELERATOR_CHUNK
