"""Coordinate maps of a network's output (rfsearch.coords.ReceptiveField): feature
centres, boxes and their inverses.

Golden values: Inception-ResNet-v2 Conv2d_7b_1x1 feature (x=0, y=2) centred at input
(37, 101) (google-research/receptive_field's README example); the Distill article's
figure, whose output feature 0 reads input [-1, 4] (Araujo, Norris, Sim, Computing
Receptive Fields of Convolutional Neural Networks, Distill 2019).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rfsearch
from rfsearch import SpecError, zoo
from rfsearch.coords import ReceptiveField


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


def exact_boxes(spec: dict, size: int, units: int) -> list[tuple[int, int]]:
    field = ReceptiveField.of(spec, size)
    return [(int(field.start(y, 0)), int(field.end(y, 0))) for y in range(units)]


def test_a_period_of_several_units_is_reported_and_refused_by_from_row():
    """A stride-2 layer then nearest x2: the stride is 1/1, but units 0 and 1 read the same
    box (as torch's gradient shows), so the row's formula cannot give every unit's box."""
    spec = {"name": "s2-up2", "layers": [{"op": "conv", "kernel": 3, "stride": 2},
                                         {"op": "upsample", "factor": 2}]}
    row = rfsearch.evaluate(spec, input_size=11).iloc[0]
    assert (row["stride_h"], row["stride_den_h"], row["period_h"], row["period_w"]) == \
        (1, 1, 2, 2)
    assert exact_boxes(spec, 11, 4) == [(0, 2), (0, 2), (2, 4), (2, 4)]
    with pytest.raises(SpecError, match=r"^s2-up2: period_h is 2: the boxes repeat only"):
        ReceptiveField.from_row(row)


def test_an_invalid_network_is_refused_with_its_reason():
    spec = {"name": "m", "layers": [
        {"name": "a", "op": "conv", "kernel": 3, "stride": 2},
        {"name": "b", "op": "conv", "kernel": 1, "inputs": ["input"]},
        {"name": "c", "op": "add", "inputs": ["a", "b"]}]}
    with pytest.raises(SpecError, match=r"layer #2 'c': inputs have different effective "
                                        r"strides \(h: 2 vs 1"):
        ReceptiveField.of(spec, 32)


def test_the_period_is_the_least_one_not_the_programs():
    """A merge takes the least common period of its inputs (2 here), but where one input's
    boxes lie inside the other's every unit reads [y - 1, y + 1]: period 1, and the row's
    formula gives the exact boxes."""
    spec = {"name": "covered", "layers": [
        {"name": "a", "op": "conv", "kernel": 1, "stride": 2, "inputs": ["input"]},
        {"name": "up", "op": "upsample", "factor": 2},
        {"name": "b", "op": "conv", "kernel": 3, "padding": 1, "inputs": ["input"]},
        {"name": "sum", "op": "add", "inputs": ["up", "b"]}]}
    row = rfsearch.evaluate(spec, input_size=8).iloc[0]
    assert row["period_h"] == 1
    field = ReceptiveField.from_row(row)
    assert [(int(field.start(y, 0)), int(field.end(y, 0))) for y in range(8)] == \
        exact_boxes(spec, 8, 8) == [(y - 1, y + 1) for y in range(8)]


@pytest.mark.parametrize("up", [
    {"op": "upsample", "factor": 2}, {"op": "upsample", "factor": 3, "mode": "bilinear"},
    {"op": "conv_transpose", "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}])
def test_with_a_period_each_units_centre_maps_back_to_a_unit_with_that_centre(up):
    """Before: the inverse map used the largest box and unit 0's start, which is no unit's
    centre: a stride-2 conv, nearest x2 and a 2x2 conv sent unit 0's centre to unit -1."""
    spec = {"name": "dec", "layers": [{"op": "conv", "kernel": 3, "stride": 2, "padding": 1},
                                      up, {"op": "conv", "kernel": 2}]}
    field = ReceptiveField.of(spec, 32)
    assert field.phases[0].T > 1
    units = np.arange(40)
    centre = field.center(units, units)
    found = field.nearest_feature(*centre)
    np.testing.assert_array_equal(field.center(found.y, found.x).y, centre.y)
    assert (np.abs(found.y - units) < field.phases[0].T).all()  # units sharing a centre
    ahead = field.nearest_feature(centre.y + 0.25, centre.x + 0.25)  # off-centre points
    assert (np.abs(field.center(ahead.y, ahead.x).y - (centre.y + 0.25)) <=
            np.abs(centre.y - (centre.y + 0.25)) + 1e-9).all()


def test_one_and_three_axis_networks_have_boxes_per_axis():
    """Audio and video: a causal dilated 1-D stack then x2 upsampling; a 3-D conv with a
    temporal stride (before: 'ReceptiveField.of takes one 2-D network')."""
    audio = {"name": "wave", "layers": [
        {"op": "pad", "padding": [[2, 0]]}, {"op": "conv", "kernel": [3], "dilation": 1},
        {"op": "pad", "padding": [[4, 0]]}, {"op": "conv", "kernel": [3], "dilation": 2},
        {"op": "conv", "kernel": [4], "stride": 4}, {"op": "upsample", "factor": [2]}]}
    field = ReceptiveField.of(audio, 64)
    assert len(field.rf) == 1 and field.phases[0].T == 2
    row = rfsearch.evaluate(audio, input_size=64, per_layer=True).iloc[3]  # the causal part
    assert (row["rf_w"], row["padding_w"]) == (7, 6)
    assert [(int(field.start(i, 0)), int(field.end(i, 0))) for i in range(4)] == \
        [(-6, 3), (-6, 3), (-2, 7), (-2, 7)]
    with pytest.raises(SpecError, match=r"box takes \(y, x\) of a 2-D network; this one has 1"):
        field.box(0, 0)
    video = {"name": "clip", "layers": [{"op": "conv", "kernel": [3, 7, 7],
                                         "stride": [2, 2, 2], "padding": [1, 3, 3]}]}
    field = ReceptiveField.of(video, "16x32x32")
    assert field.rf == (3, 7, 7) and field.stride == (2, 2, 2)
    assert [int(field.start(5, a)) for a in range(3)] == [9, 7, 7]
