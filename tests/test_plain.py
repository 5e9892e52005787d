"""Plain chain specs read column-wise (rfsearch.plain) give exactly what parse_network and
encode_networks give: the same Batch, rows, names and messages; every spec the fast path
is not sure of takes the full path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import rfsearch
from rfsearch import sources
from rfsearch.encode import PARAM_FIELDS, encode_networks
from rfsearch.plain import split_plain
from rfsearch.spec import parse_network

BIG = 2**30
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")  # none, overflow or not

# Layers the fast path must take as they are.
PLAIN_LAYERS = [
    {"op": "conv", "kernel": 3},
    {"op": "conv", "kernel": 3, "stride": 2, "padding": 1, "channels": 64, "groups": 2},
    {"op": "Conv", "kernel": 5, "padding": "SAME"},
    {"op": "maxpool", "kernel": 3, "stride": 2, "padding": "same_lower"},
    {"op": "avgpool", "kernel": 2, "stride": 2, "padding": "valid"},
    {"op": "pool", "kernel": 2, "dilation": 2},
    {"op": "relu"}, {"op": "relu6", "comment": "clipped"}, {"op": "batchnorm"},
    {"op": "global_pool"}, {"op": "dense", "channels": 10},
    {"op": "conv", "kernel": 1, "dilation": BIG},
    {"op": "conv", "kernel": 2, "dilation": BIG - 1},
    {"op": "conv", "kernel": 3, "stride": BIG, "padding": BIG},
]
# Layers it must hand to parse_network: an error, a rename, or another program.
OTHER_LAYERS = [
    {"op": "conv", "kernel": [3, 5]}, {"op": "conv", "kernel": 0}, {"op": "conv", "kernel": True},
    {"op": "conv", "kernel": 3.0}, {"op": "conv", "kernel": 2**70}, {"op": "conv"},
    {"op": "conv", "kernel": 3, "padding": -1}, {"op": "conv", "kernel": 3, "padding": "full"},
    {"op": "conv", "kernel": 3, "padding": [[0, 1], [1, 0]]},
    {"op": "conv", "kernel": 2, "dilation": BIG},
    {"op": "conv", "kernel": 3, "stride": BIG + 1}, {"op": "conv", "kernel": np.int64(3)},
    {"op": "maxpool", "kernel": 3, "ceil_mode": True}, {"op": "pad", "padding": 1},
    {"op": "upsample", "factor": 2}, {"op": "crop", "crop": 1},
    {"op": "relu", "kernel": 3}, {"op": "dense", "stride": 2}, {"op": "add"},
    {"op": "conv", "kernel": 3, "inputs": "input"}, {"op": "conv", "kernel": 3, "kernal": 3},
    {"op": "convv", "kernel": 3}, {"op": 3}, {"kernel": 3}, "conv", None,
    {"op": "conv", "kernel": 3, "name": 7}, {"op": "conv", "kernel": 3, "name": "input"},
    {"op": "conv", "kernel": 3, "name": "conv0"},  # an explicit name a default repeats
]


def _spec(rng, k: int) -> dict:
    """A random spec: mostly plain layers, sometimes one other layer or spec field."""
    depth = int(rng.integers(1, 9))
    layers = [dict(PLAIN_LAYERS[rng.integers(len(PLAIN_LAYERS))]) for _ in range(depth)]
    if rng.random() < 0.3:
        layers[rng.integers(depth)] = OTHER_LAYERS[rng.integers(len(OTHER_LAYERS))]
    if rng.random() < 0.3:
        for i, layer in enumerate(layers):
            if isinstance(layer, dict) and "name" not in layer:
                layer["name"] = f"L{i}"
    spec = {"name": f"s{k}", "layers": layers}
    pick = rng.random()
    if pick < 0.05:
        del spec["name"]  # the default name counts the spec's position
    elif pick < 0.1:
        spec["dims"] = int(rng.integers(1, 4))
    elif pick < 0.15:
        spec["output"] = layers[0].get("name", "x") if isinstance(layers[0], dict) else "x"
    elif pick < 0.2:
        spec["description"] = "from a test"
    elif pick < 0.22:
        spec["name"] = 5
    return spec


def _specs(seed: int, n: int) -> list:
    rng = np.random.default_rng(seed)
    return [_spec(rng, k) for k in range(n)]


def _full_path_only(objects, positions):
    return None, [], list(range(len(objects)))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("size", "per_layer", "analysis"),
                         [(None, False, False), (32, False, True), ((17, 9), True, False),
                          (64, True, True), ("4x4x4", False, False)])
def test_rows_are_those_of_the_full_path(monkeypatch, seed, size, per_layer, analysis):
    specs = _specs(seed, 150)
    fast = rfsearch.evaluate(specs, input_size=size, per_layer=per_layer, analysis=analysis)
    with monkeypatch.context() as m:
        m.setattr(sources, "split_plain", _full_path_only)
        full = rfsearch.evaluate(specs, input_size=size, per_layer=per_layer,
                                 analysis=analysis)
    pd.testing.assert_frame_equal(fast, full)
    assert fast["error"].notna().any()
    assert fast["error"].isna().any() or size == "4x4x4"  # a 3-D size fits 3-D specs only


def test_a_file_of_plain_specs_is_read_as_columns_and_its_rows_kept(tmp_path, monkeypatch):
    specs = _specs(7, 200)
    path = tmp_path / "specs.jsonl"
    path.write_text("".join(json.dumps(s, default=int) + "\n" for s in specs))
    src = sources.read_source(path)
    assert src.plain is not None and len(src.plain) > 100  # most of them take the fast path
    assert len(src.plain) + len(src.networks) + len(src.errors) == 200
    assert [i for i, _ in src.parsed()] == sorted(set(range(200)) - {i for i, _, _ in src.errors})
    fast = rfsearch.evaluate(path, input_size=48, analysis=True)
    monkeypatch.setattr(sources, "split_plain", _full_path_only)
    pd.testing.assert_frame_equal(fast, rfsearch.evaluate(path, input_size=48, analysis=True))


def test_the_batch_is_the_one_encode_networks_packs():
    specs = [s for s in _specs(3, 300) if _parses(s)]
    batch, rows, rest = split_plain(specs, range(len(specs)))
    assert len(rows) > 100 and rest
    nets = [parse_network(specs[i], i) for i in rows]
    ref = encode_networks(nets)
    for name in ("op", "preds", "length", "output", *PARAM_FIELDS):
        assert np.array_equal(getattr(batch, name), getattr(ref, name)), name
    for name in ("names", "layer_names", "layer_ops"):
        assert list(getattr(batch, name)) == list(getattr(ref, name)), name
    assert (batch.is_chain, batch.has_same, batch.has_whole, batch.square) == (
        ref.is_chain, ref.has_same, ref.has_whole, ref.square)


def _parses(spec) -> bool:
    try:
        parse_network(spec)
    except rfsearch.SpecError:
        return False
    return True


def test_every_other_layer_takes_the_full_path():
    for layer in OTHER_LAYERS:
        spec = {"name": "n", "layers": [{"op": "conv", "kernel": 1}, layer]}  # conv0
        assert split_plain([spec], [0])[0] is None, layer


def test_default_names_that_collide_take_the_full_path():
    # 'relu6' at layer 1 and 'relu' at layer 61 would both be 'relu61' by default
    layers = [{"op": "conv", "kernel": 1}, {"op": "relu6"}] + [{"op": "relu"}] * 60
    spec = {"name": "n", "layers": layers}
    assert split_plain([spec], [0])[0] is None
    df = rfsearch.evaluate([spec, spec], per_layer=True)
    assert df["layer_name"].iloc[61] == "relu61_1"


def test_a_dims_that_is_not_an_int_costs_its_row_only():
    """Before: 2.0 passed as 2 and crashed '(1,) * dims'; a list raised 'unhashable' (a
    traceback for the whole call; audit of the input forms)."""
    conv = [{"op": "conv", "kernel": 3}]
    df = rfsearch.evaluate([{"layers": conv, "dims": 2.0}, {"layers": conv, "dims": [2]},
                            {"layers": conv}])
    assert df["error"].str.contains("dims must be 1, 2 or 3").fillna(False).tolist() == [
        True, True, False]
    assert df["name"].tolist() == ["net0", "net1", "net2"]  # a failed spec keeps its name


def test_a_chain_table_at_a_three_axis_size_is_an_error_row_each():
    """As dict specs are; before, the whole call raised."""
    table = pd.DataFrame({"kernel": [[3, 3], [5]], "name": ["a", None]})
    df = rfsearch.evaluate(table, input_size="4x4x4")
    assert df["name"].tolist() == ["a", "chain1"]
    assert df["error"].str.endswith("input size 4x4x4 has 3 axes; this network has 2").all()
