"""Resolution-aware analysis (``evaluate(..., analysis=True)``, rfsearch.analysis).

Golden values: VGG-16 at input 32 (conv3_2 sees exactly 32 px, conv3_3 is the first
layer that sees more: the border is strict), torchvision ResNet-50's feasible input
range 75..427 (rfa-toolbox README; rfa-toolbox 1.7's own input_resolution_range gives
96..427 through a kernel x stride term that rfsearch leaves out, see rfsearch.analysis),
EfficientNet-B0's 299..851 (rfa-toolbox tests with filter_all_inf_rf; 1.7 agrees). The
layer rules are cross-checked against a plain-Python application
of the same rules to the reference implementation's rows. Filters and top-K on analysis
columns in ``search`` are tested in test_search_filter.py and test_search.py; coordinate
maps in test_coords.py.
"""

import pandas as pd
import pytest
from frames import frame_rows
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import normalized_layers, reference_evaluate_layers
from strategies import dags

import rfsearch
from rfsearch import zoo
from rfsearch.table import ANALYSIS_LAYER, ANALYSIS_NETWORK


def test_vgg16_at_32_border_is_the_first_layer_past_32():
    df = rfsearch.evaluate(zoo.build("vgg_16"), input_size=32, per_layer=True, analysis=True)
    rows = df.set_index("layer_name")
    assert rows.loc["conv3/conv3_2", "rf_h"] == 32 and not rows.loc["conv3/conv3_2", "border"]
    assert rows.loc["conv3/conv3_3", "rf_h"] == 40 and rows.loc["conv3/conv3_3", "border"]
    assert df["border"].sum() == 1
    net = rfsearch.evaluate(zoo.build("vgg_16"), input_size=32, analysis=True).iloc[0]
    assert net["border_layer"] == "conv3/conv3_3"
    # every layer after the border already sees all 32 px on every path
    assert df["unproductive"].tolist() == [False] * 8 + [True] * 10
    assert net["n_unproductive"] == 10 and net["n_critical"] == 10


@pytest.mark.parametrize("name, low, high", [("resnet50", 75, 427),
                                             ("efficientnet_b0", 299, 851),
                                             ("vgg16", 212, 212)])
def test_feasible_input_range(name, low, high):
    row = rfsearch.evaluate(zoo.build(name), analysis=True).iloc[0]
    assert (row["feasible_min"], row["feasible_max"]) == (low, high)
    assert pd.isna(row["n_unproductive"]) and pd.isna(row["rf_ratio"])  # need a size


def test_rf_at_each_output_stride_and_ratio():
    row = rfsearch.evaluate(zoo.build("resnet50"), input_size=224, analysis=True).iloc[0]
    assert (row["rf_at_stride_8"], row["rf_at_stride_16"], row["rf_at_stride_32"]) == (
        91, 267, 427)  # layer2, layer3, layer4 (published torchvision stage values)
    assert row["rf_ratio"] == pytest.approx(427 / 224)
    vgg = rfsearch.evaluate(zoo.build("vgg_16"), input_size=(224, 112), analysis=True).iloc[0]
    assert vgg["rf_ratio"] == pytest.approx(212 / 224)  # the smaller of 212/224, 212/112


def test_analysis_is_opt_in_and_recorded(tmp_path):
    plain = rfsearch.evaluate(zoo.build("resnet18"), input_size=64)
    assert not set(ANALYSIS_NETWORK) & set(plain.columns)
    full = rfsearch.evaluate(zoo.build("resnet18"), input_size=64, analysis=True)
    assert list(full.columns[-len(ANALYSIS_NETWORK) - 1:-1]) == ANALYSIS_NETWORK
    pd.testing.assert_frame_equal(full[plain.columns], plain)
    rfsearch.write_parquet(full, tmp_path / "a.parquet")
    back = pd.read_parquet(tmp_path / "a.parquet")
    pd.testing.assert_frame_equal(back, full)
    import pyarrow.parquet as pq

    meta = pq.read_metadata(tmp_path / "a.parquet").metadata
    assert b"rfa-toolbox" in meta[b"analysis_rule"]


def test_error_rows_keep_null_analysis():
    df = rfsearch.evaluate([zoo.build("resnet18"), {"name": "bad", "layers": [{"op": "conv"}]}],
                           input_size=64, analysis=True, per_layer=True)
    bad = df[df["name"] == "bad"]
    assert len(bad) == 1 and bad[ANALYSIS_LAYER].isna().all().all()


def _rules(rows, layers, size, exempt):
    """The documented rules, applied in plain Python to reference per-layer rows."""
    by_name = {r["layer_name"]: r for r in rows}
    by_name["input"] = {"rf_min_h": 1, "rf_min_w": 1, "stride_h": 1, "stride_w": 1}
    res = {"h": size[0], "w": size[1]}
    out = []
    for layer, row in zip(layers, rows, strict=True):
        if row["error"] is not None or row["rf_h"] is None or layer["op"] in (
                "global_pool", "dense"):
            out.append((False, False, False))
            continue
        k = layer.get("kernel", 1)
        d = layer.get("dilation", 1)
        keff = {a: (d if isinstance(d, int) else d[i]) * ((k if isinstance(k, int) else k[i])
                                                         - 1) + 1
                for i, a in enumerate("hw")}
        preds = [by_name[p] for p in layer["inputs"]]
        small = all(res[a] // p[f"stride_{a}"] <= keff[a] for p in preds for a in "hw")
        seen = all(res[a] <= p[f"rf_min_{a}"] for p in preds for a in "hw")
        rf_rule = seen and all(res[a] < row[f"rf_min_{a}"] for a in "hw")
        if exempt and all(v == 1 for v in keff.values()):
            rf_rule = False
        critical = all(row[f"rf_min_{a}"] > res[a] for a in "hw")
        exceeds = all(row[f"rf_{a}"] > res[a] for a in "hw")
        out.append((small or rf_rule, critical, exceeds))
    return out


@settings(max_examples=60, deadline=None)
@given(spec=dags(whole_map=False), size=st.tuples(st.integers(1, 24), st.integers(1, 24)),
       exempt=st.booleans())
def test_layer_rules_match_a_plain_python_application(spec, size, exempt):
    df = rfsearch.evaluate(spec, input_size=size, per_layer=True, analysis=True,
                           exempt_1x1=exempt)
    ref = reference_evaluate_layers(spec, size)
    layers = normalized_layers(spec)
    rules = _rules(ref, layers, size, exempt)
    got = frame_rows(df)
    first_border = next((i for i, (_, _, e) in enumerate(rules) if e), None)
    for i, (row, (unproductive, critical, _)) in enumerate(zip(got, rules, strict=True)):
        if row["error"] is not None:
            assert row["unproductive"] is None
            continue
        assert row["unproductive"] == unproductive, (i, row["layer_name"])
        assert row["critical"] == critical
        assert row["border"] == (i == first_border)


def test_a_dead_branch_that_fails_at_this_size_takes_no_part():
    """A branch the output does not read, whose map is gone at this size, left the row
    valid but nulled every analysis column, against the per-layer rows' own flags. It now
    takes no part; the row's counts are the per-layer sums."""
    dead = {"name": "dead", "layers": [
        {"name": "a", "op": "conv", "kernel": 3, "padding": 1},
        {"name": "b", "op": "conv", "kernel": 3, "padding": 1},
        {"name": "side", "op": "conv", "kernel": 5, "inputs": ["a"]}], "output": "b"}
    row = rfsearch.evaluate(dead, input_size=3, analysis=True).iloc[0]
    assert pd.isna(row["error"]) and row["rf_h"] == 5
    assert (row["n_unproductive"], row["n_critical"], row["border_layer"],
            row["feasible_min"], row["feasible_max"]) == (2, 1, "b", 5, 5)
    layers = rfsearch.evaluate(dead, input_size=3, analysis=True, per_layer=True)
    assert layers["unproductive"].tolist()[:2] == [True, True]
    assert layers["critical"].tolist()[:2] == [False, True]
    assert pd.isna(layers["unproductive"][2]) and "smaller than 1 pixel" in layers["error"][2]
