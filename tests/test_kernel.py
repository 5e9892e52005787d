"""Kernel properties: compile count per bucket, integer widths and overflow, nulls."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from frames import frame_rows
from reference import reference_evaluate

import rfsearch
from rfsearch import kernel as K
from rfsearch import recurrence as R
from rfsearch.driver import compute_dtype

pytestmark = pytest.mark.usefixtures("xla_chain_programs")  # the programs accelerators run


def random_chains(n, depth, seed=0):
    rng = np.random.default_rng(seed)
    return rfsearch.chains(rng.choice([1, 3, 5], (n, depth)),
                           stride=np.where(rng.random((n, depth)) < 0.2, 2, 1), padding=1)


def test_compile_count_is_bounded_across_chunk_sizes():
    before = K.propagate._cache_size()
    for n in (1, 3, 70, 200, 1000, 1500):
        rfsearch.evaluate(random_chains(n, 12, seed=n), chunk_size=512)
    # chunks are padded to 64, 128, 256 or 512 rows: at most four new programs
    assert K.propagate._cache_size() - before <= 4
    again = K.propagate._cache_size()
    for chunk in (512, 512, 512):
        rfsearch.evaluate(random_chains(3000, 12, seed=chunk), chunk_size=chunk)
    assert K.propagate._cache_size() == again


@pytest.mark.parametrize("square", [True, False])
@pytest.mark.parametrize("size", [None, 300])
def test_chunking_does_not_change_results(size, square):
    # at an unknown size the unrolled chain program reads tiles of TILE chains: chunks of
    # 64, 100 and 699 rows run as 64, 64 and 640 rows per call, the last one padded
    rng = np.random.default_rng(3)
    shape = (700, 10) if square else (700, 10, 2)
    params = {"kernel": rng.choice([1, 2, 3, 5], shape), "stride": rng.choice([1, 1, 2], shape),
              "dilation": rng.choice([1, 2], shape), "padding": rng.choice([0, 1], shape)}
    batch = rfsearch.chains(**params)
    assert batch.square == square
    whole = rfsearch.evaluate(batch, input_size=size)
    for chunk in (64, 100, 699):
        assert rfsearch.evaluate(batch, input_size=size, chunk_size=chunk).equals(whole)
    for row in (0, 63, 64, 65, 399, 699):  # first, tile edges, last
        spec = {"name": whole["name"][row], "layers": [
            {"op": "conv", **{k: np.broadcast_to(v[row, i], (2,)).tolist()
                              for k, v in params.items()}} for i in range(shape[1])]}
        expected = reference_evaluate(spec, size)
        assert frame_rows(whole.iloc[[row]])[0] == expected, row


@pytest.mark.parametrize("workers", [1, 3])
def test_concurrent_chunks_keep_order_and_results(monkeypatch, workers):
    from rfsearch import driver

    deep = rfsearch.chains(np.full((5, 20), 3), stride=2, padding=1)  # int64 re-runs
    rows = np.concatenate([np.arange(700), np.arange(5)])
    mixed = random_chains(700, 20, seed=4)
    serial = [rfsearch.evaluate(b, input_size=size, chunk_size=64)
              for b in (mixed, deep) for size in (None, 300)]
    monkeypatch.setattr(driver, "workers", lambda: workers)
    again = [rfsearch.evaluate(b, input_size=size, chunk_size=64)
             for b in (mixed, deep) for size in (None, 300)]
    for a, b in zip(serial, again, strict=True):
        assert a.equals(b)
    assert list(driver.concurrently(lambda x: x * x, rows)) == (rows * rows).tolist()


def test_int32_fast_path_falls_back_to_int64_exactly():
    # 20 stride-2 layers: J = 2**20 exceeds the int32 tier's limit of 2**14
    depth = 20
    batch = rfsearch.chains(np.full((3, depth), 3), stride=2, padding=1)
    assert compute_dtype(batch, None) == "int32"
    df = rfsearch.evaluate(batch)
    assert df["error"].isna().all()
    assert df["stride_h"].tolist() == [2**depth] * 3
    assert df["rf_h"].tolist() == [1 + sum(2 * 2**i for i in range(depth))] * 3  # 2**21 - 1
    assert df["padding_h"].tolist() == [sum(2**i for i in range(depth))] * 3


def test_overflow_is_an_error_not_a_wrapped_number():
    batch = rfsearch.chains(np.full((2, 40), 3), stride=[[2] * 40, [1] * 40], padding=1)
    df = rfsearch.evaluate(batch)
    assert df["error"][0] == (  # stride 2**31 at layer 30: the first beyond 2**30
        "spec #0 'chain0', layer #30 'layer30': receptive-field geometry exceeds the exact "
        "integer range "
        "(an effective stride or a feature-map size above 1073741824, or a region above "
        "2305843009213693952 pixels)")
    assert df.iloc[0][["rf_h", "stride_h", "padding_h"]].isna().all()
    assert df["rf_h"][1] == 81 and df["error"].isna()[1]
    padded = {"name": "padded", "layers": [{"op": "conv", "kernel": 3, "padding": 2**29}]}
    assert "feature-map size above" in rfsearch.evaluate(padded, input_size=10)["error"][0]
    one_d = {"name": "wide", "dims": 1, "layers": [  # the periodic program names it too
        {"name": f"c{i}", "op": "conv", "kernel": 1000, "stride": 1000} for i in range(5)]}
    assert rfsearch.evaluate(one_d)["error"][0].startswith(
        "spec #0 'wide', layer #3 'c3': receptive-field geometry exceeds the exact integer")


def test_large_parameters_use_int64():
    net = {"name": "big", "layers": [{"op": "conv", "kernel": 40000, "padding": "same"},
                                     {"op": "global_pool"}]}
    assert compute_dtype(rfsearch.encode(net), None) == "int64"
    df = rfsearch.evaluate(net, input_size=100000)
    assert df["rf_h"][0] == 40000 + 100000 - 1 and df["out_h"][0] == 1


def test_unbounded_and_unknown_are_null_not_guesses(toy):
    df = rfsearch.evaluate({"name": "g", "layers": [{"op": "conv", "kernel": 3},
                                                    {"op": "global_pool"}]})
    assert df[["rf_h", "rf_min_h", "padding_h", "out_h"]].iloc[0].isna().all()
    assert df["stride_h"][0] == 1 and df["error"].isna()[0]
    unknown = rfsearch.evaluate(toy)  # 'same' with stride 2 and no input size
    assert unknown["rf_h"][0] == 27 and unknown["rf_w"][0] == 11
    assert unknown[["padding_h", "padding_w", "aligned", "out_h"]].iloc[0].isna().all()
    known = rfsearch.evaluate(toy, input_size=224)
    assert known[["padding_h", "padding_w"]].iloc[0].tolist() == [11, 3]
    assert bool(known["aligned"][0])


def test_same_padding_stride_one_is_known_without_size():
    df = rfsearch.evaluate({"layers": [{"op": "conv", "kernel": 4, "padding": "same"},
                                       {"op": "conv", "kernel": 4, "padding": "same_lower"}]})
    assert df[["rf_h", "padding_h"]].iloc[0].tolist() == [7, 1 + 2]


def test_per_layer_last_row_matches_network_row(toy):
    for size in (None, 64):
        net = rfsearch.evaluate(toy, input_size=size)
        layers = rfsearch.evaluate(toy, input_size=size, per_layer=True)
        assert layers["layer"].tolist() == [0, 1, 2, 3]
        assert layers["layer_name"].tolist() == ["c1", "p1", "b", "sum"]
        last = layers.drop(columns=["layer", "layer_name", "op"]).iloc[[-1]].reset_index(drop=True)
        assert last.equals(net)


@pytest.mark.parametrize("output", ["a", "b"])
def test_output_need_not_be_the_last_layer(output):
    net = {"layers": [{"name": "a", "op": "conv", "kernel": 3},
                      {"name": "b", "op": "conv", "kernel": 5}], "output": output}
    assert rfsearch.evaluate(net)["rf_h"][0] == {"a": 3, "b": 7}[output]


def test_a_failing_branch_invalidates_only_what_reads_it():
    net = {"name": "branchy", "layers": [
        {"name": "a", "op": "conv", "kernel": 3},
        {"name": "dead", "op": "conv", "kernel": 9, "inputs": ["input"]},  # empty at 8
        {"name": "after", "op": "relu"},
        {"name": "b", "op": "conv", "kernel": 3, "inputs": ["a"]},
    ], "output": "b"}
    df = rfsearch.evaluate(net, input_size=8)
    assert df["error"].isna()[0] and df["rf_h"][0] == 5 and df["out_h"][0] == 4
    layers = rfsearch.evaluate(net, input_size=8, per_layer=True)
    message = "spec #0 'branchy', layer #1 'dead': output is smaller than 1 pixel at input size 8x8"
    assert layers["error"].fillna("").tolist() == ["", message, message, ""]
    assert layers["rf_h"].isna().tolist() == [False, True, True, False]
    net["output"] = "after"
    assert rfsearch.evaluate(net, input_size=8)["error"][0] == message


def test_certain_misalignment_survives_later_unknown_padding():
    # NB201 residual reduction: 3x3 s2 p1 main path against avg-pool 2x2 s2 + 1x1
    block = [{"name": "a", "op": "conv", "kernel": 3, "stride": 2, "padding": 1},
             {"name": "p", "op": "avgpool", "kernel": 2, "stride": 2, "inputs": ["input"]},
             {"name": "c", "op": "conv", "kernel": 1},
             {"name": "s", "op": "add", "inputs": ["a", "c"]}]
    tail = [{"name": "t", "op": "conv", "kernel": 3, "stride": 2, "padding": "same"}]
    for layers, size in ((block, None), (block + tail, None), (block + tail, 64)):
        df = rfsearch.evaluate({"name": "nb", "layers": layers}, input_size=size)
        assert df["aligned"].tolist() == [False]
        assert df["error"].isna()[0]


def test_per_layer_dead_branches_are_recomputed_exactly():
    net = {"name": "x", "output": "main", "layers": [
        {"name": "main", "op": "conv", "kernel": 3, "padding": 1},
        {"name": "d1", "op": "conv", "kernel": 3, "stride": 200, "inputs": ["input"]},
        {"name": "d2", "op": "conv", "kernel": 3, "stride": 200},
        {"name": "d3", "op": "conv", "kernel": 3, "stride": 200}]}
    layers = rfsearch.evaluate(net, per_layer=True)
    assert layers["stride_h"].tolist() == [1, 200, 40000, 8000000]
    assert layers["error"].isna().all()


@pytest.mark.parametrize("per_layer", [False, True])
def test_float32_chain_path_hands_inexact_rows_to_int64(per_layer):
    # 26 stride-2 layers: J = 2**26 passes float32's exact range (2**24), not int64's
    depth = 26
    batch = rfsearch.chains(np.full((2, depth), 3), stride=[[2] * depth, [1] * depth],
                            padding=1)
    df = rfsearch.evaluate(batch, per_layer=per_layer)
    last = df.groupby("name").tail(1) if per_layer else df
    assert last["stride_h"].tolist() == [2**depth, 1]
    assert last["rf_h"].tolist() == [2 ** (depth + 1) - 1, 2 * depth + 1]
    assert last["padding_h"].tolist() == [2**depth - 1, depth]
    assert df["error"].isna().all()


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("sized", [False, True])
@pytest.mark.parametrize("rows", [False, True])
def test_dag_buffer_words_round_trip(dtype, sized, rows):
    """A node state survives the packed [N, F] (or [F, N]) buffer block: every flag bit,
    no fault, the largest fault a network can have, and values at the width's limits."""
    big = R.LIMITS[np.dtype(dtype)].position
    n = 6
    state = R.NodeState(
        u=np.array([[-big, 0, -1, 5, -7, 0]], dtype),
        v=np.array([[big, 0, 3, 9, 7, 1]], dtype),
        J=np.array([[1, 2, 4, 8, 16, 2**13]], dtype),
        rmin=np.array([[0, 1, 2, 3, 4, big]], dtype),
        size=np.array([[224, 1, 0, 7, 2**14, 3]], dtype) if sized else np.zeros((1, n), dtype),
        flags=np.array([[0, R.KNOWN, R.ALIGNED | R.KNOWN, 31, R.OVERFLOW, R.MISALIGNED]],
                       np.int8),
        fault=np.array([[R.NO_FAULT, 0, 5 * R.FAULT_CODES + R.ERR_JUMP,
                         K.PACKED_NO_FAULT - 1, R.NO_FAULT, 3]], np.int32),
    )
    with jax.enable_x64(True):
        block = K._to_block(R.NodeState(*map(jnp.asarray, state)), dtype, sized, rows)
        words = 6 if sized else 5
        assert block.shape == ((words, n) if rows else (n, words))
        back = K._from_blocks(block, sized, rows)
    for name, want in state._asdict().items():
        got = np.asarray(getattr(back, name))
        assert got.dtype == want.dtype and (got == want).all(), name


def test_tiled_and_layer_major_chain_programs_agree():
    """The driver sends the unrolled chain program tiled views; layer-major arrays run the
    same recurrence as a rolled scan. Both give the same states."""
    from rfsearch import driver

    rng = np.random.default_rng(1)
    batch = rfsearch.chains(rng.choice([1, 3, 5], (300, 20, 2)),
                            stride=rng.choice([1, 2], (300, 20)),
                            dilation=rng.choice([1, 2], (300, 20)), padding=1)
    program = driver.choose_program(batch, None, False, "int32", len(batch))
    assert program.kind == K.UNROLLED and program.tile == K.TILE == 64
    args, chunk_program = driver.kernel_inputs(batch, slice(None), None, program, 320)
    assert chunk_program == program
    assert args[1].shape == (320 // 64, batch.depth, 2, 64)  # tiles of 64 chains
    odd, _ = driver.kernel_inputs(batch, slice(0, 299), None, program, 299)
    assert odd[1].shape == (5, batch.depth, 2, 64)  # padded to whole tiles
    major = driver.kernel_arrays(batch, slice(None), 2)
    major = [*major[:6], major[6][..., :1], batch.output, np.zeros(2, np.int64)]
    scan = dataclasses.replace(program, kind=K.SCAN, tile=0)
    with jax.enable_x64(True):
        tiled = K.propagate(program, *args).out
        rolled = K.propagate(scan, *major).out
    for name, a, b in zip(tiled._fields, tiled, rolled, strict=True):
        assert np.array_equal(np.asarray(a)[:, :300], np.asarray(b)), name
    # arguments laid out for another program are refused, not misread
    with pytest.raises(ValueError, match="unrolled program reads tiled"):
        K.propagate(program, *major)
    with pytest.raises(ValueError, match="scan program reads layer-major"):
        K.propagate(scan, *args)
