"""Resolution-aware analysis and coordinate maps.

Golden values: VGG-16 at input 32 (conv3_2 sees exactly 32 px, conv3_3 is the first
layer that sees more: the border is strict), torchvision ResNet-50's feasible input
range 75..427 (rfa-toolbox README), EfficientNet-B0's 299..851 (rfa-toolbox tests with
filter_all_inf_rf), Inception-ResNet-v2 Conv2d_7b_1x1 feature (x=0, y=2) centred at
input (37, 101) (published-values.md). The layer rules are cross-checked against a
plain-Python application of the same rules to the reference implementation's rows.
"""

import numpy as np
import pandas as pd
import pytest
from frames import frame_rows
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import normalized_layers, reference_evaluate_layers
from strategies import dags

import rfsearch
from rfsearch import SpecError, zoo
from rfsearch.coords import ReceptiveField
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


def test_inception_resnet_v2_feature_centre():
    row = rfsearch.evaluate(zoo.build("inception_resnet_v2"), input_size=299).iloc[0]
    rf = ReceptiveField.from_row(row)
    assert rf == ReceptiveField((3039, 3039), (32, 32), (1482, 1482))
    assert tuple(rf.center(y=2, x=0)) == (101, 37)
    assert tuple(rf.feature(101, 37)) == (2, 0)
    box = rf.box(2, 0)
    assert (box.top, box.left, box.bottom, box.right) == (64 - 1482, -1482, 64 - 1482 + 3038,
                                                          3038 - 1482)


def test_article_example_feature_0_reads_minus_1_to_4():
    spec = {"name": "distill", "layers": [{"op": "conv", "kernel": 3, "stride": 3, "padding": 1},
                                          {"op": "conv", "kernel": 2}]}
    rf = ReceptiveField.from_row(rfsearch.evaluate(spec).iloc[0])
    box = rf.box(0, 0)
    assert (box.top, box.bottom) == (-1, 4)


@settings(max_examples=100, deadline=None)
@given(rf=st.integers(1, 5000), stride=st.integers(1, 64), padding=st.integers(0, 3000),
       ys=st.lists(st.integers(-50, 500), min_size=1, max_size=20))
def test_coordinate_maps_round_trip(rf, stride, padding, ys):
    field = ReceptiveField((rf, rf + 1), (stride, stride), (padding, padding))
    y = np.array(ys)
    x = y[::-1]
    centre = field.center(y, x)
    back = field.feature(*centre)
    np.testing.assert_array_equal(back.y, y)
    np.testing.assert_array_equal(back.x, x)
    np.testing.assert_array_equal(field.nearest_feature(*centre).y, y)
    box = field.box(y, x)
    np.testing.assert_array_equal(box.bottom - box.top + 1, rf)
    np.testing.assert_array_equal((box.top + box.bottom) / 2, centre.y)


def test_unknown_geometry_cannot_map_coordinates():
    row = rfsearch.evaluate(zoo.build("mobilenet_v1")).iloc[0]  # 'same': padding unknown
    with pytest.raises(SpecError, match="padding_h, padding_w unknown"):
        ReceptiveField.from_row(row)


GRID = {"name": "g", "input_size": 32, "layers": [
    {"op": "conv", "kernel": [3, 7], "stride": 2, "padding": 1},
    {"repeat": [1, 2, 3], "layers": [{"op": "conv", "kernel": [1, 3, 5], "padding": "same"}]},
    {"op": "maxpool", "kernel": 2, "stride": 2},
    {"op": "conv", "kernel": [3, 5], "dilation": [1, 2], "padding": "same"}]}


def test_search_filters_on_analysis_columns_like_evaluate():
    from rfsearch.spaces import grid_space

    space, _ = grid_space(GRID)
    where = "valid and rf_h > 20 and n_unproductive <= 1 and feasible_min < 40"
    got = rfsearch.search(GRID, where=where)
    specs = [space.spec(i) for i in range(space.size)]
    ev = rfsearch.evaluate(specs, input_size=32, analysis=True)
    keep = ev["error"].isna() & (ev["rf_h"] > 20) & (ev["n_unproductive"] <= 1) & (
        ev["feasible_min"] < 40)
    assert got["candidate_id"].tolist() == np.flatnonzero(keep.to_numpy()).tolist()
    assert got["n_unproductive"].tolist() == ev.loc[keep, "n_unproductive"].tolist()
    top = rfsearch.search(GRID, where="n_critical == 0 and valid", top=2, by="rf_h")
    want = ev[ev["n_critical"] == 0].sort_values(["rf_h"], ascending=False, kind="stable")
    assert top["rf_h"].tolist() == want["rf_h"].head(2).tolist()


def test_rf_ratio_filters_on_the_device():
    got = rfsearch.search(GRID, where="rf_ratio >= 1.5")
    assert (got["rf_h"] / 32 >= 1.5).all() and len(got) > 0
    every = rfsearch.search(GRID, where="valid")
    assert len(got) == int((every["rf_h"] / 32 >= 1.5).sum())


def test_analysis_only_filters_need_a_device_condition_on_large_spaces():
    with pytest.raises(SpecError, match="add a cheaper condition"):
        rfsearch.search("ofa-mbv3", where="n_unproductive == 0")


def test_top_by_an_analysis_column():
    from rfsearch.spaces import grid_space

    space, _ = grid_space(GRID)
    got = rfsearch.search(GRID, where="valid", top=4, by="feasible_min", ascending=True)
    ev = rfsearch.evaluate([space.spec(i) for i in range(space.size)], input_size=32,
                           analysis=True)
    ev["candidate_id"] = range(space.size)
    want = ev[ev["error"].isna()].sort_values(["feasible_min", "candidate_id"]).head(4)
    assert got["candidate_id"].tolist() == want["candidate_id"].tolist()
    assert got["feasible_min"].tolist() == want["feasible_min"].tolist()
