"""Encoding (rfsearch.encode): the Batch card, bucketing and chains() from integer arrays
(chain tables read from Parquet or Arrow are tested in test_sources.py)."""

import sys

import numpy as np
import pandas as pd
import pytest

import rfsearch
from rfsearch import ops
from rfsearch.encode import depth_bucket, fan_in_bucket


def test_card_shapes_and_padding(toy):
    batch = rfsearch.encode([toy, {"name": "one", "layers": [{"op": "relu"}]}])
    assert batch.op.shape == (2, 9) and batch.kernel.shape == (2, 9, 2)
    assert batch.preds.shape == (2, 9, 2)
    assert batch.length.tolist() == [5, 2] and batch.output.tolist() == [4, 1]
    assert batch.op[0, :5].tolist() == [ops.INPUT, ops.CONV, ops.MAXPOOL, ops.CONV, ops.ADD]
    assert batch.preds[0, 4].tolist() == [2, 3]
    assert batch.pad_before[0, 2].tolist() == [ops.PAD_SAME] * 2
    assert batch.pad_before[0, 3].tolist() == [2, 0] and batch.dilation[0, 3].tolist() == [2, 2]
    # padded nodes are identity layers reading the node before
    assert (batch.op[1, 2:] == ops.ELEMENTWISE).all()
    assert batch.preds[1, 2:, 0].tolist() == list(range(1, 8))
    assert (batch.kernel[1, 2:] == 1).all() and (batch.pad_after[1, 2:] == 0).all()
    assert not batch.is_chain and rfsearch.encode(toy["layers"][:2] and {
        "layers": toy["layers"][:2]}).is_chain


def test_buckets():
    assert [depth_bucket(n) for n in (1, 9, 10, 13, 17, 25, 65, 66, 97, 98)] == [
        9, 9, 13, 13, 17, 25, 65, 97, 97, 129]
    assert [fan_in_bucket(m) for m in (1, 2, 3, 4, 5, 9)] == [1, 2, 3, 4, 8, 16]


def test_batch_is_layer_major_in_memory():
    batch = rfsearch.chains(np.full((5, 3, 2), [3, 1]))
    assert batch.kernel.shape == (5, 9, 2) and not batch.square
    major = batch.layer_major("kernel")
    assert major.shape == (9, 2, 5) and major.flags["C_CONTIGUOUS"]
    assert np.shares_memory(major, batch.kernel)


def test_square_batches_store_one_axis():
    square = rfsearch.chains(np.full((5, 3), 3), stride=2, padding=1)
    assert square.square and square.kernel.shape == (5, 9, 2)
    assert square.kernel.strides[-1] == 0 and not square.kernel.flags.writeable
    one = square.axes_major("stride", 1)
    assert one.shape == (9, 1, 5) and one.flags["C_CONTIGUOUS"]
    assert np.shares_memory(one, square.stride)
    assert (square.kernel[..., 0] == square.kernel[..., 1]).all()
    assert square.take([4, 1]).square
    spec = {"layers": [{"op": "conv", "kernel": 3, "stride": 2, "padding": 1}]}
    assert rfsearch.encode(spec).square
    wide = {"layers": [{"op": "conv", "kernel": [3, 1]}]}
    assert not rfsearch.encode(wide).square
    uneven = np.broadcast_to([[1, 1], [0, 0]], (5, 3, 2, 2))
    assert not rfsearch.chains(np.full((5, 3), 3), padding=uneven).square
    # same answers either way, at square, unknown and non-square input sizes
    wide_copy = rfsearch.chains(np.full((5, 3, 2), 3), stride=2, padding=1)
    for size in (None, 32, (32, 48)):
        a = rfsearch.evaluate(square, input_size=size).drop(columns="name")
        b = rfsearch.evaluate(wide_copy, input_size=size).drop(columns="name")
        pd.testing.assert_frame_equal(a, b)


def test_chains_equal_encoded_specs():
    rng = np.random.default_rng(1)
    n, depth = 50, 6
    k = rng.integers(1, 6, (n, depth, 2))
    s = rng.integers(1, 3, (n, depth, 2))
    d = rng.integers(1, 3, (n, depth, 2))
    p = rng.integers(0, 3, (n, depth, 2, 2))
    lengths = rng.integers(1, depth + 1, n)
    specs = [{"name": f"chain{i}", "layers": [
        {"op": "conv", "kernel": k[i, j].tolist(), "stride": s[i, j].tolist(),
         "dilation": d[i, j].tolist(), "padding": p[i, j].tolist()}
        for j in range(lengths[i])]} for i in range(n)]
    a = rfsearch.evaluate(rfsearch.chains(k, s, d, p, lengths=lengths), input_size=64)
    b = rfsearch.evaluate(specs, input_size=64)
    cols = [c for c in a.columns if c != "error"]
    assert a[cols].equals(b[cols])
    assert (a["error"].isna() == b["error"].isna()).all()


def test_empty_and_single_batches():
    empty = rfsearch.evaluate([])
    assert len(empty) == 0 and "rf_h" in empty.columns
    assert len(rfsearch.evaluate(rfsearch.chains(np.zeros((0, 4), int) + 3))) == 0
    one = rfsearch.evaluate(rfsearch.chains([[3, 3, 3]], dilation=2))
    assert one["rf_h"].tolist() == [13]  # published: three 3x3 convs with dilation 2


@pytest.mark.parametrize("bad", [np.ones((2, 3)) * 1.5, np.ones((2, 3, 3), int),
                                 [[3, 3], [3]]])
def test_chains_validates_arrays(bad):
    with pytest.raises(rfsearch.SpecError, match=r"^kernel must"):
        rfsearch.chains(bad)


@pytest.mark.parametrize("field", ["stride", "dilation", "padding"])
def test_a_scalar_wider_than_8_bits_is_its_value(field):
    """A scalar field of 128 or more was written into the int8 pass and raised NumPy's
    OverflowError; it gives the rows of the same value as a full array."""
    k = np.full((2, 3), 3)
    scalar = rfsearch.evaluate(rfsearch.chains(k, **{field: 300}))
    full = rfsearch.evaluate(rfsearch.chains(k, **{field: np.full((2, 3), 300)}))
    assert scalar.equals(full) and scalar["error"].isna().all()


def test_specs_that_are_no_specs_are_one_line():
    with pytest.raises(rfsearch.SpecError, match=r"^specs must be a spec, a path, a table or "
                       r"a list of them, got NoneType$"):
        rfsearch.evaluate(None)


def test_chains_validates_lengths_and_names():
    with pytest.raises(rfsearch.SpecError, match=r"^lengths must be 2 integers between 1 and 3$"):
        rfsearch.chains(np.full((2, 3), 3), lengths=[1.5, 2])
    with pytest.raises(rfsearch.SpecError, match=r"^names must hold 2 names, got 1$"):
        rfsearch.chains(np.full((2, 3), 3), names=["a"])


def test_chain_layers_past_lengths_are_identity_across_transpose_blocks(monkeypatch):
    monkeypatch.setattr(sys.modules["rfsearch.chain_arrays"], "TRANSPOSE_BLOCK", 7)  # many blocks
    rng = np.random.default_rng(5)
    n, depth = 50, 6
    k = rng.integers(1, 6, (n, depth))
    s = rng.integers(1, 3, (n, depth))
    p = rng.integers(0, 3, (n, depth))
    lengths = rng.integers(1, depth + 1, n)
    got = rfsearch.chains(k, s, 2, p, lengths=lengths)
    layer = np.arange(depth)[None, :]
    alive = layer < lengths[:, None]
    filled = rfsearch.chains(np.where(alive, k, 1), np.where(alive, s, 1), 2,
                             np.where(alive, p, 0), lengths=lengths, padded=True)
    specs = [{"layers": [{"op": "conv", "kernel": int(k[i, j]), "stride": int(s[i, j]),
                          "dilation": 2, "padding": int(p[i, j])} for j in range(lengths[i])]}
             for i in range(n)]
    want = rfsearch.evaluate(specs, input_size=64).drop(columns="name")
    for batch in (got, filled):
        assert batch.square
        assert (batch.op[:, 1:depth + 1] == np.where(alive, ops.CONV, ops.ELEMENTWISE)).all()
        assert (batch.kernel[:, 1:depth + 1, 0] == np.where(alive, k, 1)).all()
        have = rfsearch.evaluate(batch, input_size=64).drop(columns="name")
        pd.testing.assert_frame_equal(have, want, check_dtype=False)


def test_a_batch_of_jax_arrays_still_evaluates():
    import dataclasses

    import jax.numpy as jnp

    batch = rfsearch.encode([{"name": "a", "layers": [{"op": "conv", "kernel": 3, "stride": 2}]}])
    fields = ("op", "kernel", "stride", "dilation", "pad_before", "pad_after", "preds")
    on_device = dataclasses.replace(
        batch, **{f: jnp.asarray(np.ascontiguousarray(getattr(batch, f))) for f in fields})
    assert not on_device.square
    got = rfsearch.evaluate(on_device, input_size=32)
    assert got[["rf_h", "out_h"]].values.tolist() == [[3, 15]]


def test_chains_name_the_first_layer_whose_effective_kernel_is_too_large():
    from rfsearch.axes import MAX_PARAM
    kernel = np.full((3, 4), 3, np.int64)
    dilation = np.ones((3, 4), np.int64)
    kernel[2, 1], dilation[2, 1] = 1000, MAX_PARAM // 999 + 1  # each fine alone
    with pytest.raises(rfsearch.SpecError, match=r"^spec #2, layer #1: dilation\*\(kernel-1\)"
                                                 rf"\+1 must be at most {MAX_PARAM}, got \d+$"):
        rfsearch.chains(kernel, dilation=dilation)
