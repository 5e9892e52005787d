"""The periodic program (rfsearch.periodic): fractional jumps, per-unit boxes, 1-D / 3-D.

Hand-worked cases, each derived from what the layer reads (docstring of rfsearch.reads):
nearest x2 after a stride-2 layer (jump 1, period 2), bilinear x2 (jump 1/2), PyTorch's
usual transposed convolution (k=4, s=2, p=1), crops as negative padding, ceil-mode pool
sizes, and 1-D / 3-D networks against the same layers on the 2-D integer kernel.
"""

from __future__ import annotations

import pandas as pd
import pytest

import rfsearch
from rfsearch import SpecError


def row(layers, input_size=None, **network) -> pd.Series:
    df = rfsearch.evaluate({"name": "n", "layers": layers, **network}, input_size=input_size)
    assert len(df) == 1
    return df.iloc[0]


def geometry(r: pd.Series, axis: str = "w") -> tuple:
    return tuple(None if pd.isna(r[f"{c}_{axis}"]) else int(r[f"{c}_{axis}"])
                 for c in ("rf", "rf_min", "stride", "stride_den", "padding", "out"))


def test_nearest_after_a_stride_has_jump_one():
    r = row([{"op": "conv", "kernel": 1, "stride": 2},
             {"op": "upsample", "factor": 2}], 8)
    assert geometry(r) == (1, 1, 1, 1, 0, 8)
    assert r["period_w"] == 2  # units 0 and 1 read pixel 0, units 2 and 3 pixel 2


def test_bilinear_x2_reads_two_pixels_half_a_pixel_apart():
    # units 0..3 read [-1, 0], [0, 1], [0, 1], [1, 2]: rf 2, jump 1/2, padding 1
    r = row([{"op": "upsample", "factor": 2, "mode": "bilinear"}], 5)
    assert geometry(r) == (2, 2, 1, 2, 1, 10)
    assert r["period_w"] == 2


def test_bicubic_reads_four_taps():
    # unit 0: src -1/4, x0 = -1: taps -2 .. 1
    r = row([{"op": "upsample", "factor": 2, "mode": "bicubic"}], 4)
    assert geometry(r) == (4, 4, 1, 2, 2, 8)


def test_transposed_conv_k4_s2_p1_doubles_the_map():
    # y = 2x - 1 + t: unit 0 reads x in {0, -1}, unit 1 reads {1, 0}
    r = row([{"op": "conv_transpose", "kernel": 4, "stride": 2, "padding": 1}], 6)
    assert geometry(r) == (2, 2, 1, 2, 1, 12)


def test_conv_then_transpose_returns_to_jump_one():
    r = row([{"op": "conv", "kernel": 3, "stride": 2, "padding": 1},
             {"op": "conv_transpose", "kernel": 2, "stride": 2}], 8)
    assert geometry(r)[2:4] == (1, 1)
    assert geometry(r)[5] == 8


def test_crop_is_negative_padding():
    a = row([{"op": "conv", "kernel": 3}, {"op": "crop", "crop": [[2, 1], [0, 3]]}], 16)
    b = row([{"op": "conv", "kernel": 3}, {"op": "conv", "kernel": 1,
                                            "padding": [[-2, -1], [0, -3]]}], 16)
    assert geometry(a, "h") == geometry(b, "h") == (3, 3, 1, 1, -2, 11)
    assert geometry(a, "w") == geometry(b, "w") == (3, 3, 1, 1, 0, 11)


@pytest.mark.parametrize(("n", "kernel", "stride", "padding", "expected"), [
    (8, 3, 2, 0, 4),  # floor((8 - 3) / 2) + 1 = 3; ceil gives 4
    (7, 2, 2, 0, 4),  # ceil((7 - 2) / 2) + 1 = 4
    (6, 3, 2, 1, 4),  # ceil((6 + 2 - 3) / 2) + 1 = 4: the last window starts at 6 < 6 + 1
    (5, 2, 2, 1, 3),  # ceil((5 + 2 - 2) / 2) + 1 = 4; window 3 starts at 6 >= 5 + 1: dropped
])
def test_ceil_mode_pool_sizes_follow_pytorch(n, kernel, stride, padding, expected):
    r = row([{"op": "maxpool", "kernel": kernel, "stride": stride, "padding": padding,
              "ceil_mode": True}], n)
    assert int(r["out_w"]) == expected


def test_one_and_three_axes_match_the_integer_kernel_per_axis():
    layers2 = [{"op": "conv", "kernel": [3, 5], "stride": 2, "padding": "same"},
               {"op": "maxpool", "kernel": 3, "stride": 2, "padding": 1}]
    flat = row(layers2, (32, 40))
    one = row([{"op": "conv", "kernel": [5], "stride": [2], "padding": "same"},
               {"op": "maxpool", "kernel": [3], "stride": [2], "padding": [1]}], 40)
    three = row([{"op": "conv", "kernel": [7, 3, 5], "stride": 2, "padding": "same"},
                 {"op": "maxpool", "kernel": 3, "stride": 2, "padding": 1}], (9, 32, 40))
    assert geometry(one, "w") == geometry(flat, "w") == geometry(three, "w")
    assert geometry(three, "h") == geometry(flat, "h")
    assert pd.isna(one["rf_h"]) and "rf_d" in three.index and int(three["rf_d"]) > 0


def test_integer_networks_gain_a_denominator_of_one():
    r = rfsearch.evaluate("zoo:resnet18", input_size=224).iloc[0]
    assert (int(r["stride_h"]), int(r["stride_den_h"])) == (32, 1)
    assert "rf_d" not in r.index


def test_unet_skip_with_nearest_upsampling_is_misaligned():
    layers = [{"name": "enc", "op": "conv", "kernel": 3, "padding": "same"},
              {"name": "down", "op": "maxpool", "kernel": 2, "stride": 2},
              {"name": "mid", "op": "conv", "kernel": 3, "padding": "same"},
              {"name": "up", "op": "upsample", "factor": 2},
              {"name": "cat", "op": "concat", "inputs": ["enc", "up"]}]
    assert not bool(row(layers, 16)["aligned"])


def test_bad_inputs_are_one_line_each():
    bad = [{"name": "f", "layers": [{"op": "upsample", "factor": 1.5}]},
           {"name": "t", "layers": [{"op": "conv_transpose", "kernel": 1, "stride": 2}]},
           {"name": "o", "layers": [{"op": "conv_transpose", "kernel": 3, "stride": 2,
                                     "output_padding": 2}]},
           {"name": "c", "layers": [{"op": "crop", "crop": 5}]},
           {"name": "m", "layers": [{"op": "conv", "kernel": [3, 3]},
                                    {"op": "conv", "kernel": [3, 3, 3]}]},
           {"name": "ok", "layers": [{"op": "upsample", "factor": 2}]}]
    df = rfsearch.evaluate(bad, input_size=8)
    assert df["error"].iloc[:5].notna().all() and pd.isna(df["error"].iloc[5])
    assert all("\n" not in e for e in df["error"].iloc[:5])
    assert "factor must be a positive integer, got 1.5" in df["error"].iloc[0]
    assert "read no input" in df["error"].iloc[1]
    assert "output_padding" in df["error"].iloc[2]
    assert "smaller than 1 pixel" in df["error"].iloc[3]
    assert "mixed arities" in df["error"].iloc[4]


def test_integer_encoding_refuses_periodic_networks():
    with pytest.raises(SpecError, match="resampling"):
        rfsearch.encode({"layers": [{"op": "upsample", "factor": 2}]})


def periodic_row(spec: dict, size) -> dict:
    """The periodic program's geometry of a 2-D network (rf, stride, padding, out, aligned)."""
    from rfsearch.periodic_eval import geometry, output_states
    from rfsearch.recurrence import alignment
    from rfsearch.spec import parse_network

    state = output_states([parse_network(spec)], size)
    geo = geometry(state)
    out = {f"{k}_{a}": int(geo[k][0][i, 0]) for k in ("rf", "stride", "padding", "out")
           for i, a in enumerate("hw") if not geo[k][1][i, 0]}
    aligned, decided = alignment(state["flags"])
    out["aligned"] = bool(aligned[0]) if decided[0] else None
    out["valid"] = bool((state["fault"] == 2**31 - 1).all())
    return out


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "inception_v3", "mobilenet_v2",
                                  "efficientnet_b0", "nasbench201", "vgg_16",
                                  "inception_resnet_v2"])
@pytest.mark.parametrize("size", [None, 224, (199, 257)])
def test_periodic_program_agrees_with_the_integer_kernel_on_the_zoo(name, size):
    spec = rfsearch.zoo.build(name)
    want = rfsearch.evaluate(spec, input_size=size).iloc[0]
    got = periodic_row(spec, None if size is None else (size, size) if isinstance(size, int)
                       else size)
    assert got["valid"] == pd.isna(want["error"])
    if not got["valid"]:
        return
    for key, value in got.items():
        if key in want.index:
            expected = None if pd.isna(want[key]) else (bool(want[key]) if key == "aligned"
                                                          else int(want[key]))
            assert value == expected, key
    for key in ("rf_h", "stride_h", "padding_h", "out_w"):
        if not pd.isna(want[key]):
            assert key in got, key
