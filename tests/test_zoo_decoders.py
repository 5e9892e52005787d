"""The zoo networks of issue #14: U-Nets, FPN, DeepLabV3, ESPCN, GoogLeNet, R3D-18, TCN,
WaveNet. Three kinds of check:

* **published values** (``datasets/reference/published_decoders.csv``; sources there and
  in datasets/reference/README.md, "Decoder, video and sequence networks"): U-Net
  572 -> 388 (Ronneberger et al. 2015, Fig. 1);
  GoogLeNet 7 x 7 at 224 (torchvision googlenet.py; Szegedy et al. 2015, Table 1); ESPCN
  output 3x its input (Shi et al. 2016); FPN P2..P6 strides 4..64 (Lin et al. 2017;
  torchvision LastLevelMaxPool); DeepLabV3 output stride 8 (torchvision,
  replace_stride_with_dilation=[False, True, True]); TCN RF = 1 + 2 (k-1) (2^L - 1) (Bai
  et al. 2018, locuslab/TCN); WaveNet 1024 per 1..512 stack (van den Oord et al. 2016,
  Sec. 2.1) and 3071 for three stacks and the causal layer (ibab/tensorflow-wavenet);
* **hand derivations** (the docstrings say how): U-Net, GoogLeNet, R3D-18, DeepLabV3, FPN
  P5, ESPCN;
* **an independent propagation** (:func:`propagate`): per axis, the hull of the input
  boxes each unit reads, on a concrete line with virtual units on both sides (padding
  positions are the units that would sit there, as in the Distill article), with no
  formula for rf, stride or padding; rfsearch's per-layer rows must agree on every layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rfsearch
from rfsearch import SpecError, zoo

NEW = ["googlenet", "r3d_18", "fpn_resnet50", "deeplabv3_resnet50", "unet", "unet_same",
       "espcn", "tcn", "wavenet"]
TCN_CASES = [(2, 3), (3, 4), (5, 2), (7, 8), (2, 10)]
VARIANTS = ["wavenet(stacks=1,causal_layer=false)", "unet_same(upsample=nearest)",
            "espcn(upscale=2)", *(f"tcn(kernel={k},levels={n})" for k, n in TCN_CASES)]
ALL = NEW + VARIANTS
SIZE = {"unet": 572}  # the rest at 224 (r3d_18: 224 on every axis)

REFERENCE = Path(__file__).resolve().parents[1] / "datasets" / "reference"


def published() -> dict[tuple[str, str], dict[str, int]]:
    """(network, layer): {column: value} from ``published_decoders.csv``; a column without
    an axis holds on every axis the network has."""
    table = pd.read_csv(REFERENCE / "published_decoders.csv")
    assert (table["input_size"] == table["network"].map(lambda n: SIZE.get(n, 224))).all()
    found: dict[tuple[str, str], dict[str, int]] = {}
    for row in table.itertuples():
        found.setdefault((row.network, row.layer), {})[row.column] = int(row.value)
    return found


PUBLISHED = published()


def axes(spec: dict) -> tuple[str, ...]:
    return {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}[spec.get("dims", 2)]


@pytest.fixture(scope="module")
def specs() -> dict[str, dict]:
    return {name: zoo.build(name) for name in ALL}


@pytest.fixture(scope="module")
def results(specs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(network rows, per-layer rows indexed by (name, layer_name)): one batch at 224 and
    the U-Net at 572 (with the other 2-D networks, so the compiled program is shared)."""
    nets, layers = [], []
    for size in (224, 572):
        batch = [specs[n] for n in ALL if SIZE.get(n, 224) == size or (
            size == 572 and specs[n].get("dims", 2) == 2)]
        net = rfsearch.evaluate(batch, input_size=size)
        layer = rfsearch.evaluate(batch, input_size=size, per_layer=True)
        mine = {n for n in ALL if SIZE.get(n, 224) == size}
        nets.append(net[net["name"].isin(mine)])
        layers.append(layer[layer["name"].isin(mine)])
    return (pd.concat(nets).set_index("name"),
            pd.concat(layers).set_index(["name", "layer_name"]))


# --------------------------------------------------------------------------- propagation


@dataclass
class Line:
    """One axis of a map: stored units ``start``, ``start + 1``, ... (those outside
    [0, size) are virtual), the input box [lo, hi] of each, and whether every merge up
    to here was aligned (equal jumps, equal box centres on every common unit)."""

    start: int
    lo: np.ndarray
    hi: np.ndarray
    size: int
    aligned: bool = True

    def jump(self) -> Fraction:
        """K / T for the least period T with lo and hi both advancing K every T units."""
        for t in range(1, len(self.lo) // 3):
            dlo, dhi = self.lo[t:] - self.lo[:-t], self.hi[t:] - self.hi[:-t]
            if (dlo == dlo[0]).all() and (dhi == dlo[0]).all():
                return Fraction(int(dlo[0]), t)
        raise AssertionError("no period found")

    def row(self) -> dict:
        return {"rf": int((self.hi - self.lo).max() + 1), "stride": self.jump(),
                "padding": int(-self.lo[-self.start]), "out": self.size}


def per_axis(value, axis: int, dims: int) -> tuple[int, int]:
    """(before, after) of an int, a per-axis list, or per-axis [before, after] pairs."""
    if isinstance(value, list) and len(value) == dims and isinstance(value[0], list):
        return tuple(value[axis])
    v = value[axis] if isinstance(value, list) else value
    return v, v


def read(x: Line, y: np.ndarray, taps: list[np.ndarray], size: int) -> Line:
    """Units ``y`` reading input units ``taps`` (one array per tap); those with a read
    outside the stored units are dropped."""
    end = x.start + len(x.lo)
    ok = np.all([(t >= x.start) & (t < end) for t in taps], axis=0)
    y, taps = y[ok], [t[ok] - x.start for t in taps]
    assert (np.diff(y) == 1).all() and y[0] <= 0 and y[-1] >= size - 1
    lo = np.min([x.lo[t] for t in taps], axis=0)
    hi = np.max([x.hi[t] for t in taps], axis=0)
    return Line(int(y[0]), lo, hi, size, x.aligned)


def window(x: Line, layer: dict, axis: int, dims: int) -> Line:
    k, s, d = (per_axis(layer.get(f, 1), axis, dims)[0] for f in ("kernel", "stride",
                                                                    "dilation"))
    p, q = per_axis(layer.get("padding", 0), axis, dims)
    span = (x.size + p + q - d * (k - 1) - 1)
    size = (-(-span // s) if layer.get("ceil_mode") else span // s) + 1
    if layer.get("ceil_mode") and (size - 1) * s >= x.size + p:
        size -= 1  # PyTorch: the last window starts inside the input or its left padding
    y = np.arange((x.start + p) // s - 1, (x.start + len(x.lo) + p) // s + 2)
    return read(x, y, [y * s - p + t * d for t in range(k)], size)


def resample(x: Line, layer: dict, axis: int, dims: int) -> Line:
    """upsample (nearest, bilinear with align_corners=False, no clamping at the border),
    pixel_shuffle, conv_transpose (dilation 1), crop."""
    op = layer["op"]
    if op == "crop":
        b, a = per_axis(layer["crop"], axis, dims)
        y = np.arange(x.start - b, x.start + len(x.lo) - b)
        return read(x, y, [y + b], x.size - b - a)
    if op == "conv_transpose":
        k, s = (per_axis(layer.get(f, 1), axis, dims)[0] for f in ("kernel", "stride"))
        p = per_axis(layer.get("padding", 0), axis, dims)[0]
        y = np.arange(x.start * s - p - k, (x.start + len(x.lo)) * s - p + k)
        base = (y + p) // s  # the tap t = (y + p) % s < k always lands
        taps = [np.where((y + p - t) % s == 0, (y + p - t) // s, base) for t in range(k)]
        return read(x, y, taps, (x.size - 1) * s - 2 * p + k)
    f = per_axis(layer["factor"], axis, dims)[0]
    y = np.arange(x.start * f - f, (x.start + len(x.lo)) * f + f)
    if layer.get("mode", "nearest") == "nearest":  # also pixel_shuffle
        return read(x, y, [y // f], x.size * f)
    assert layer["mode"] == "bilinear"
    num = 2 * y + 1 - f  # source coordinate (y + 1/2) / f - 1/2 = num / (2 f)
    return read(x, y, [num // (2 * f), num // (2 * f) + (num % (2 * f) != 0)], x.size * f)


def merge(xs: list[Line]) -> Line:
    start = max(x.start for x in xs)
    end = min(x.start + len(x.lo) for x in xs)
    cut = [slice(start - x.start, end - x.start) for x in xs]
    assert len({x.size for x in xs}) == 1
    centres = {tuple(x.lo[c] + x.hi[c]) for x, c in zip(xs, cut, strict=True)}
    aligned = (len(centres) == 1 and len({x.jump() for x in xs}) == 1
               and all(x.aligned for x in xs))
    return Line(start, np.min([x.lo[c] for x, c in zip(xs, cut, strict=True)], axis=0),
                np.max([x.hi[c] for x, c in zip(xs, cut, strict=True)], axis=0),
                xs[0].size, aligned)


def propagate(spec: dict, size: int, axis: int = 0, margin: int = 4096) -> dict[str, Line]:
    """Every layer's :class:`Line` along ``axis`` for an input of ``size`` units."""
    dims = spec.get("dims", 2)
    units = np.arange(-margin, size + margin)
    lines, prev = {"input": Line(-margin, units, units, size)}, "input"
    for layer in spec["layers"]:
        xs = [lines[i] for i in layer.get("inputs", [prev])]
        op = layer["op"]
        if op in ("add", "concat"):
            lines[layer["name"]] = merge(xs)
        elif op in ("conv", "maxpool", "avgpool"):
            lines[layer["name"]] = window(xs[0], layer, axis, dims)
        elif op in ("upsample", "pixel_shuffle", "conv_transpose", "crop"):
            lines[layer["name"]] = resample(xs[0], layer, axis, dims)
        else:
            lines[layer["name"]] = xs[0]
        prev = layer["name"]
    return lines


@pytest.mark.parametrize("name", ALL)
def test_every_layer_agrees_with_the_propagation(specs, results, name):
    _, layers = results
    spec = specs[name]
    for a, axis in enumerate(axes(spec)[:2]):  # 2-D and 3-D: h = w by symmetry
        lines = propagate(spec, SIZE.get(name, 224), a)
        for layer in spec["layers"]:
            got, want = layers.loc[(name, layer["name"])], lines[layer["name"]]
            expected = want.row()
            assert pd.isna(got["error"])
            assert (got[f"rf_{axis}"], got[f"padding_{axis}"], got[f"out_{axis}"]) == (
                expected["rf"], expected["padding"], expected["out"]), layer["name"]
            stride = Fraction(int(got[f"stride_{axis}"]), int(got[f"stride_den_{axis}"]))
            assert stride == expected["stride"], layer["name"]
            assert bool(got["aligned"]) == want.aligned, layer["name"]


# --------------------------------------------------------------------------- published


@pytest.mark.parametrize("key", list(PUBLISHED), ids="{0[0]}:{0[1]}".format)
def test_published_value(specs, results, key):
    row = results[1].loc[key]
    assert pd.isna(row["error"])
    for column, value in PUBLISHED[key].items():
        for axis in axes(specs[key[0]]):
            assert row[f"{column}_{axis}"] == value, f"{column}_{axis}"


def test_network_rows_equal_their_output_layer(specs, results):
    """The network row is its output layer's row (rf_min aside: paths vs layers)."""
    nets, layers = results
    for name in ALL:
        spec = specs[name]
        out = spec.get("output", spec["layers"][-1]["name"])
        for axis in axes(spec):
            for column in ("rf", "stride", "stride_den", "padding", "out"):
                got, want = nets.loc[name, f"{column}_{axis}"], layers.loc[
                    (name, out), f"{column}_{axis}"]
                assert not pd.isna(got) and got == want, f"{name}: {column}_{axis} {got} != {want}"


def test_tcn_and_wavenet_are_causal():
    """Unit t reads [t - RF + 1, t]: padding RF - 1, every box ends at its own unit."""
    for name in ("tcn(kernel=3,levels=4)", "wavenet"):
        spec = zoo.build(name)
        line = propagate(spec, 16)[spec["layers"][-1]["name"]]
        real = slice(-line.start, -line.start + 16)
        assert (line.hi[real] == np.arange(16)).all()
        assert (line.hi - line.lo + 1 == line.row()["rf"]).all()


def test_wavenet_follows_ibab_calculate_receptive_field(results):
    """ibab/tensorflow-wavenet: (filter_width - 1) * sum(dilations) + 1, plus
    filter_width - 1 for the causal layer (scalar_input false)."""
    dilations = [2**i for i in range(10)] * 3
    assert (2 - 1) * sum(dilations) + 1 + (2 - 1) == 3071
    assert results[1].loc[("wavenet", "dilated_stack.layer9.residual"), "rf_w"] == 1025


# --------------------------------------------------------------------------- by hand


def chain_rf(steps) -> tuple[int, int, int]:
    """(rf, jump, padding) of a chain of (kernel, stride, padding) windows (Distill)."""
    rf, jump, padding = 1, 1, 0
    for k, s, p in steps:
        rf, padding, jump = rf + (k - 1) * jump, padding + p * jump, jump * s
    return rf, jump, padding


def test_unet_receptive_field_by_hand(results):
    """One bottom unit (after down5.conv2) sees 1 + 2*2*(1+2+4+8+16) + (1+2+4+8) = 140 px
    (a chain of valid 3x3 convs and 2x2 pools). Going up, a unit after a level's two
    valid 3x3 convs reads 5 consecutive units of its up-convolution, and unit v of a
    2x2 up-convolution reads unit v // 2 below: walking these index ranges down from
    output unit y gives 4 or 5 consecutive bottom units (by y mod 16), 16 px apart, so
    rf = 140 + 16 * (5 - 1) = 204 (4 units: 188). The skip paths read less (their boxes
    lie inside). Unpadded: unit 0 starts at input 0, padding 0."""
    assert chain_rf([(3, 1, 0), (3, 1, 0), (2, 2, 0)] * 4 + [(3, 1, 0)] * 2)[0] == 140
    counts = set()
    for y in range(32):
        first, last = y, y
        for _ in range(4):
            first, last = first // 2, (last + 4) // 2
        counts.add(last - first + 1)
    assert counts == {4, 5}
    row = results[1].loc[("unet", "head")]
    assert (row["rf_h"], row["padding_h"], row["stride_h"]) == (140 + 16 * 4, 0, 1)
    assert (row["out_h"], row["out_w"]) == (388, 388)


def test_googlenet_by_hand(results):
    """The 3x3 branch is the widest path: conv1 7/2 p3, maxpool1 3/2, conv3 3 p1,
    maxpool2 3/2, two 3x3 inceptions, maxpool3 3/2, five, maxpool4 2/2, two. The
    unpadded ceil-mode pools do not add padding, so the box is not centred
    (379 != 2 * 167 + 1)."""
    inc = [(3, 1, 1)]
    steps = [(7, 2, 3), (3, 2, 0), (3, 1, 1), (3, 2, 0), *inc * 2, (3, 2, 0), *inc * 5,
             (2, 2, 0), *inc * 2]
    assert chain_rf(steps) == (379, 32, 167)
    row = results[1].loc[("googlenet", "inception5b")]
    assert (row["rf_h"], row["stride_h"], row["padding_h"], row["out_h"]) == (379, 32, 167, 7)


def test_r3d_18_by_hand(results):
    """The body path: stem (3, 7, 7) / (1, 2, 2) padding (1, 3, 3), four 3x3x3 convs in
    layer1, then per stage a stride-2 3x3x3 conv and three more; all padded by 1."""
    row = results[1].loc[("r3d_18", "layer4")]
    for axis, stem, want in (("d", (3, 1, 1), (109, 8, 54)), ("h", (7, 2, 3), (219, 16, 109))):
        steps = [stem] + [(3, 1, 1)] * 4 + ([(3, 2, 1)] + [(3, 1, 1)] * 3) * 3
        assert chain_rf(steps) == want
        assert (row[f"rf_{axis}"], row[f"stride_{axis}"], row[f"padding_{axis}"]) == want
    assert (row["out_d"], row["out_h"], row["out_w"]) == (28, 14, 14)


def test_deeplab_and_fpn_by_hand(results):
    """DeepLabV3: the dilated resnet50 keeps layer4 at 427 (torchvision resnet50's RF:
    dilation 2 and 4 at stride 8 read as far as stride 16 and 32 do), ASPP's rate-36 3x3
    adds 2 * 36 * 8, classifier.1's 3x3 adds 16: 1019, centred (padding 509); the
    bilinear x8 reads two units 8 px apart: 1027, and unit 0 reads units -1 and 0:
    padding 509 + 8. FPN: P5 is layer4 (427) plus a 3x3 at stride 32: 491."""
    layers = results[1]
    assert layers.loc[("deeplabv3_resnet50", "backbone.layer4"), "rf_h"] == 427
    head = layers.loc[("deeplabv3_resnet50", "classifier.1")]
    assert (head["rf_h"], head["padding_h"]) == (427 + 2 * 36 * 8 + 16, 509)
    out = layers.loc[("deeplabv3_resnet50", "interpolate")]
    assert (out["rf_h"], out["padding_h"], out["stride_den_h"]) == (1027, 517, 1)
    assert layers.loc[("fpn_resnet50", "P5"), "rf_h"] == 491


def test_espcn_by_hand(results):
    """5x5, 3x3, 3x3 padded: 9 LR pixels, centred (padding 4); the shuffle's output unit
    y reads LR unit y // 3: stride 1/3, same box."""
    row = results[1].loc[("espcn", "pixel_shuffle")]
    assert (row["rf_h"], row["padding_h"], row["stride_h"], row["stride_den_h"]) == (9, 4, 1, 3)


# --------------------------------------------------------------------------- alignment


def test_which_networks_are_aligned(results):
    """rfsearch's rule: equal jumps and equal box centres for every unit at every merge.
    Upsampling by 2 (nearest, a k=2 s=2 transposed conv) makes the coarse path's centre
    alternate half a coarse stride around the skip's, so U-Nets and FPN are not aligned;
    causal convs put the conv path's centre behind the residual's."""
    nets = results[0]
    aligned = {n for n in NEW if bool(nets.loc[n, "aligned"])}
    assert aligned == {"googlenet", "r3d_18", "deeplabv3_resnet50", "espcn"}


def test_fpn_top_down_merge_is_half_a_coarse_stride_off(specs):
    """At fpn.last_inner.2 (C4's lateral + nearest x2 of C5's): the lateral's unit y is
    centred at 16 y; the top-down unit y reads C5 unit y // 2, centred at 32 (y // 2):
    the odd units are 16 px (one C4 stride) off."""
    lines = propagate(specs["fpn_resnet50"], 224)
    lateral, top = lines["fpn.inner_blocks.2.0"], lines["fpn.inner_top_down.2"]
    y = np.arange(14)
    assert ((lateral.lo + lateral.hi)[y - lateral.start] == 32 * y).all()
    offset = (top.lo + top.hi)[y - top.start] - (lateral.lo + lateral.hi)[y - lateral.start]
    assert (offset // 2).tolist() == [0, -16] * 7
    assert lateral.jump() == top.jump() == 16


# --------------------------------------------------------------------------- builders


def test_resnet_body_is_torchvision_resnet():
    g = zoo.Graph("resnet50")
    zoo.resnet_body(g)
    assert g.layers == zoo.resnet(50)["layers"]


def test_unet_crops_follow_the_input_size():
    assert zoo.unet_crops(572) == {4: 4, 3: 16, 2: 40, 1: 88}  # Fig. 1
    row = rfsearch.evaluate(zoo.build("unet(input_size=224)"), input_size=224).iloc[0]
    assert pd.isna(row["error"]) and row["out_h"] == 36
    bad = rfsearch.evaluate(zoo.build("unet"), input_size=224).iloc[0]
    assert "different feature-map sizes" in bad["error"]


def test_fpn_levels_and_registry():
    for level in ("P2", "P6"):
        spec = zoo.build(f"fpn_resnet50(level={level})")
        assert spec.get("output", spec["layers"][-1]["name"]) == level
    assert zoo.build("fpn_resnet50")["output"] == "P2"
    families = {zoo.REGISTRY[n].family for n in NEW}
    assert families == {"torchvision", "U-Net", "super-resolution", "audio / sequence"}


@pytest.mark.parametrize("reference, message", [
    ("fpn_resnet50(level=P7)", "level must be one of P2, P3, P4, P5, P6"),
    ("unet(input_size=187)", "too small for the valid U-Net"),
    ("unet_same(upsample=bicubic)", "upsample must be one of transposed, nearest, bilinear"),
    ("tcn(kernel=1)", "kernel must be an integer >= 2"),
    ("wavenet(causal_layer=1)", "causal_layer must be true or false"),
    ("espcn(upscale=0)", "upscale must be an integer >= 1"),
])
def test_bad_arguments_are_one_line_errors(reference, message):
    with pytest.raises(SpecError, match=message):
        zoo.build(reference)
