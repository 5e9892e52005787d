"""Analysis of networks with resampling layers (issue #14): per-layer rf_min of DAGs
against the brute-force oracle's path enumeration, the rfa-toolbox rules applied in plain
Python to the per-layer rows (exact stride fractions), and rf_at_stride_K on decoders."""

from __future__ import annotations

from fractions import Fraction

import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from oracle import Invalid, simulate
from oracle import rf_min as oracle_rf_min
from oracle_strategies import networks

import rfsearch
from rfsearch import zoo
from rfsearch.axes import AXES, parse_input_sizes, size_for
from rfsearch.spec import parse_network

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])
READS = {"nearest": 1, "linear": 2, "bilinear": 2, "trilinear": 2, "bicubic": 4}


def _per_axis(value, axis: int, dims: int, default: int = 1) -> int:
    if value is None:
        return default
    if isinstance(value, int):
        return value
    return value[axis] if len(value) == dims else value[0]


def read_span(layer: dict, axis: int, dims: int) -> int | None:
    """The most input units one output unit of ``layer`` reads along ``axis`` (None:
    merges and element-wise layers, which the small-map rule sees as 1)."""
    op = layer["op"]
    if op == "upsample":
        return READS[layer.get("mode", "nearest")]
    if op in ("pixel_shuffle", "crop"):
        return 1
    if op == "pixel_unshuffle":
        return _per_axis(layer["factor"], axis, dims)
    k = _per_axis(layer.get("kernel"), axis, dims)
    d = _per_axis(layer.get("dilation"), axis, dims)
    if op == "conv_transpose":  # taps of one residue class modulo the stride
        return d * ((k - 1) // _per_axis(layer.get("stride"), axis, dims)) + 1
    if op in ("conv", "maxpool", "avgpool"):
        return d * (k - 1) + 1
    return None


def plain_rules(spec: dict, rows: list[dict], size: tuple[int, ...]) -> list[tuple]:
    """(unproductive, critical, exceeds) per layer, applied in plain Python to rfsearch's
    own per-layer rows: the documented rules with exact stride fractions."""
    dims = len(size)
    axes = AXES[dims]
    by_name = {r["layer_name"]: r for r in rows}
    by_name["input"] = {**{f"rf_min_{a}": 1 for a in axes},
                        **{f"stride_{a}": 1 for a in axes},
                        **{f"stride_den_{a}": 1 for a in axes}}
    res = dict(zip(axes, size, strict=True))
    out = []
    for index, (layer, row) in enumerate(zip(spec["layers"], rows, strict=True)):
        inputs = layer.get("inputs") or [rows[index - 1]["layer_name"] if index else "input"]
        preds = [by_name[p] for p in inputs]
        spans = [read_span(layer, i, dims) or 1 for i in range(dims)]
        small = all(res[a] * p[f"stride_den_{a}"] // p[f"stride_{a}"] <= spans[i]
                    for p in preds for i, a in enumerate(axes))
        seen = all(res[a] <= p[f"rf_min_{a}"] for p in preds for a in axes)
        rf_rule = seen and all(res[a] < row[f"rf_min_{a}"] for a in axes)
        critical = all(row[f"rf_min_{a}"] > res[a] for a in axes)
        exceeds = all(row[f"rf_{a}"] > res[a] for a in axes)
        out.append((small or rf_rule, critical, exceeds))
    return out


def frame_rows(df: pd.DataFrame) -> list[dict]:
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()}
            for r in df.to_dict("records")]


@SETTINGS
@given(data=st.data())
def test_layer_rules_hold_with_fractional_strides(data):
    spec, input_size = data.draw(networks(merges=True), label="network")
    df = rfsearch.evaluate(spec, input_size=input_size, per_layer=True, analysis=True)
    rows = frame_rows(df)
    assume(all(r["error"] is None and r["rf_min_w"] is not None for r in rows))
    dims = parse_network(spec).dims
    size = size_for(parse_input_sizes(input_size), dims)
    rules = plain_rules(spec, rows, size)
    first = next((i for i, (_, _, exceeds) in enumerate(rules) if exceeds), None)
    for i, (row, (unproductive, critical, _)) in enumerate(zip(rows, rules, strict=True)):
        assert row["unproductive"] == unproductive, (i, spec, input_size)
        assert row["critical"] == critical, (i, spec)
        assert row["border"] == (i == first), (i, spec)


def _truncated(spec: dict, name: str) -> dict:
    """``spec`` with its output at layer ``name`` and only the layers before it."""
    names = [layer["name"] for layer in spec["layers"]]
    return {**spec, "layers": spec["layers"][:names.index(name) + 1], "output": name}


@pytest.mark.parametrize("dims", [1, 2])
@SETTINGS
@given(data=st.data())
def test_per_layer_rf_min_of_dags_is_the_shortest_path(dims, data):
    spec, input_size = data.draw(networks(dims=dims, merges=True), label="network")
    assume(any(len(layer.get("inputs", ())) > 1 or layer.get(
        "inputs", [None])[0] not in (None, "input") for layer in spec["layers"]))
    df = rfsearch.evaluate(spec, input_size=input_size, per_layer=True)
    size = size_for(parse_input_sizes(input_size), dims)
    for row in frame_rows(df):
        if row["error"] is not None or row["rf_min_w"] is None:
            continue
        try:
            sim = simulate(_truncated(spec, row["layer_name"]), size)
        except Invalid:
            continue
        for axis, name in enumerate(AXES[dims]):
            got = sim.axes[axis]
            if got.live.all() and got.path_min is not None and (got.path_min > 0).all():
                assert row[f"rf_min_{name}"] == oracle_rf_min(got), (row["layer_name"], spec)


DECODERS = [("unet", 572), ("unet_same", 256), ("fpn_resnet50", 512),
            ("deeplabv3_resnet50", 512), ("tcn", 4096), ("r3d_18", (16, 112, 112))]


@pytest.mark.parametrize("name,size", DECODERS)
def test_rf_at_stride_is_the_last_layer_at_that_exact_stride(name, size):
    spec = zoo.build(name)
    layers = rfsearch.evaluate(spec, input_size=size, per_layer=True)
    row = rfsearch.evaluate(spec, input_size=size, analysis=True).iloc[0]
    axis = "w" if parse_network(spec).dims == 1 else "h"
    ok = layers[~layers["op"].isin(["global_pool", "dense"])]
    for stride in (8, 16, 32):
        exact = ok[(ok[f"stride_{axis}"] == stride) & (ok[f"stride_den_{axis}"] == 1)]
        want = None if exact.empty else int(exact[f"rf_{axis}"].iloc[-1])
        got = None if pd.isna(row[f"rf_at_stride_{stride}"]) else int(
            row[f"rf_at_stride_{stride}"])
        assert got == want, (name, stride)


def test_unet_analysis_reads_the_decoder():
    row = rfsearch.evaluate(zoo.build("unet"), input_size=572, analysis=True).iloc[0]
    # stride 8 and 16 are met again on the way up: the last such layers are decoder convs
    assert (row["rf_min_h"], row["feasible_min"], row["feasible_max"]) == (9, 140, 204)
    assert (row["rf_at_stride_8"], row["rf_at_stride_16"]) == (172, 140)
    assert row["rf_ratio"] == pytest.approx(204 / 572)


def test_fractional_strides_do_not_count_at_an_integer_stride():
    spec = {"name": "half", "dims": 1, "layers": [
        {"op": "conv", "kernel": 3, "stride": 16},
        {"op": "conv_transpose", "kernel": 4, "stride": 2, "padding": 1},
        {"op": "upsample", "factor": 3}]}
    layers = rfsearch.evaluate(spec, input_size=480, per_layer=True)
    strides = [Fraction(int(n), int(d)) for n, d in zip(layers["stride_w"],
                                                         layers["stride_den_w"], strict=True)]
    assert strides == [16, 8, Fraction(8, 3)]
    row = rfsearch.evaluate(spec, input_size=480, analysis=True).iloc[0]
    assert row["rf_at_stride_8"] == layers["rf_w"].iloc[1] and pd.isna(row["rf_at_stride_16"]) \
        is False and row["rf_at_stride_16"] == 3
    assert pd.isna(row["rf_h"]) and row["rf_ratio"] == pytest.approx(
        int(layers["rf_w"].iloc[-1]) / 480)


def _doubling(blocks: int) -> dict:
    """A bilinear x2 upsample, then ``blocks`` residual 3x3 blocks: 2**blocks paths."""
    layers, prev = [{"name": "up", "op": "upsample", "factor": 2, "mode": "bilinear"}], "up"
    for i in range(blocks):
        layers += [{"name": f"c{i}", "op": "conv", "kernel": 3, "padding": 1, "inputs": [prev]},
                   {"name": f"a{i}", "op": "add", "inputs": [prev, f"c{i}"]}]
        prev = f"a{i}"
    return {"name": f"paths{blocks}", "layers": layers}


def test_an_unknown_rf_min_makes_only_what_reads_it_unknown():
    """Beyond the paths enumerated unit by unit rf_min is null; the counts it decides
    were a definite 0 and the border, feasible_max and the map rule were lost with it.
    Now the columns that read rf_min are null, and the others are what they are."""
    known = rfsearch.evaluate(_doubling(6), input_size=2, analysis=True).iloc[0]
    assert (known["n_unproductive"], known["n_critical"], known["border_layer"],
            known["feasible_min"], known["feasible_max"]) == (7, 6, "c0", 3, 8)
    row = rfsearch.evaluate(_doubling(7), input_size=2, analysis=True).iloc[0]
    assert pd.isna(row["n_unproductive"]) and pd.isna(row["n_critical"])
    assert pd.isna(row["feasible_min"])
    assert (row["rf_h"], row["border_layer"], row["feasible_max"]) == (9, "c0", 9)
    layers = rfsearch.evaluate(_doubling(7), input_size=2, analysis=True,
                               per_layer=True).set_index("layer_name")
    assert layers["rf_min_h"].isna().all()
    assert layers.loc["up", "unproductive"] == True  # noqa: E712  the map rule: 2 // 1 <= 2
    assert layers.drop("up")["unproductive"].isna().all() and layers["critical"].isna().all()
    assert layers["border"].tolist() == [False, True] + [False] * 13
