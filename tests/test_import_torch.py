"""rfsearch.from_torch against PyTorch itself.

The gradient oracle: the model is set up in eval mode and float64 with positive weights,
identity activations and average instead of max pooling, so that no gradient cancels or
vanishes; the input units an output unit's gradient reaches along an axis lie in
rfsearch's box for that unit, and where the box ends inside the input the gradient
reaches exactly that end (unless a layer crops: see :func:`crops`). Every output unit of
a small map is checked, per axis (the gradient of a whole slice of the output: boxes are
separable), on random chains and DAGs
of every mapped op on 1, 2 and 3 axes and on hand-written architectures (ResNet-18 with
torchvision's names, MobileNetV2 blocks, a U-Net, a TCN, an FPN).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from import_oracle import check_boxes  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch_models import (  # noqa: E402
    FPN,
    TCN,
    GlobalContext,
    GlobalQuery,
    Gram,
    LeftWeight,
    ManualAttention,
    MobileNetV2Blocks,
    ResNet18,
    ResNet50,
    Sized,
    TimeAttention,
    TokenAttention,
    TorchAttention,
    UNet,
)
from torch_random import C, Random, recipes  # noqa: E402

import rfsearch  # noqa: E402


def positive(model: nn.Module) -> nn.Module:
    """float64, eval mode, every parameter positive."""
    model = model.double().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.1)
    return model


def gradient_supports(model: nn.Module, shape: tuple[int, ...]) -> list[list[np.ndarray]]:
    """Per axis, per output index along it: the input indices its gradient reaches."""
    x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    y = model(x)
    dims = len(shape) - 2
    out = []
    for a in range(dims):
        axis = []
        for i in range(y.shape[2 + a]):
            (g,) = torch.autograd.grad(y.narrow(2 + a, i, 1).sum(), x, retain_graph=True)
            other = tuple(d for d in range(g.dim()) if d != 2 + a)
            axis.append(np.flatnonzero(g.abs().sum(dim=other).numpy()))
        out.append(axis)
    return out


def oracle(build, shape: tuple[int, ...], outputs=None) -> dict:
    """Import ``build()`` (its real activations and pools) and check it against the
    gradients of ``build(act=nn.Identity, pool="avg")``; returns the spec."""
    spec = rfsearch.from_torch(build(), torch.rand(shape), outputs=outputs)
    gradient_model = positive(build(act=nn.Identity, pool="avg"))
    check_boxes(spec, gradient_supports(gradient_model, shape), tuple(shape[2:]))
    return spec


# ---------------------------------------------------------------- real architectures

def test_resnet18_gives_the_published_geometry_with_torchvisions_names():
    spec = rfsearch.from_torch(ResNet18(), torch.rand(1, 3, 224, 224), outputs="layer4")
    row = rfsearch.evaluate(spec, input_size=224).iloc[0]
    zoo = rfsearch.evaluate("zoo:resnet18", input_size=224).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["padding_h"]) == (435, 32, 217)
    assert (row["rf_w"], row["out_h"]) == (zoo["rf_w"], zoo["out_h"])
    names = [layer["name"] for layer in spec["layers"]]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert {"layer1.0.conv1", "layer2.0.downsample.0", "layer4.1.conv2", "layer4.1.add",
            "layer4.1.relu:2"} <= set(names)
    assert "fc" not in names and spec["output"] == "layer4.1.relu:2"
    assert spec["source"]["tracer"] == "torch.export"
    assert spec["source"]["input_size"] == "224x224"


def test_resnet18_whole_model_ends_in_a_dense_layer():
    spec = rfsearch.from_torch(ResNet18(), torch.rand(1, 3, 64, 64))
    ops = {layer["name"]: layer["op"] for layer in spec["layers"]}
    assert ops["avgpool"] == "global_pool" and ops["fc"] == "dense"


@pytest.mark.parametrize("build, shape", [
    (lambda **kw: ResNet18(head=False, **kw), (1, 3, 40, 40)),
    (MobileNetV2Blocks, (1, 3, 24, 24)),
    (UNet, (1, 3, 16, 16)),
    (lambda **kw: UNet(upsample="bilinear", **kw), (1, 3, 16, 16)),
    (TCN, (1, 1, 40)),
    (FPN, (1, 3, 32, 32)),
], ids=["resnet18", "mobilenetv2", "unet", "unet-bilinear", "tcn", "fpn"])
def test_gradient_oracle_on_real_architectures(build, shape):
    oracle(build, shape)


# ---------------------------------------------------------------- random models

SIZES = {1: (1, C, 20), 2: (1, C, 12, 12), 3: (1, C, 6, 6, 6)}


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dims=st.sampled_from((1, 2, 3)), data=st.data())
def test_gradient_oracle_on_random_models(dims, data):
    recipe = data.draw(recipes(dims), label="recipe")
    shape = SIZES[dims]

    def build(**kw):
        return Random(recipe, dims, **kw)

    try:
        with torch.no_grad():
            build()(torch.rand(shape))
    except RuntimeError:  # a map became empty or a pool's padding was refused by torch
        return
    spec = oracle(build, shape)
    assert spec["dims"] == dims


# ---------------------------------------------------------------- errors and options

class Gate(nn.Module):
    def __init__(self, expand: bool = False):
        super().__init__()
        self.expand = expand

    def forward(self, x):
        gate = torch.sigmoid(x.mean((2, 3), keepdim=True))
        return x * (gate.expand(-1, -1, *x.shape[2:]) if self.expand else gate)


class Unmapped(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = self.conv(x)
        return torch.flip(y, [3]) + torch.roll(y, 1, 3)


def test_unsupported_ops_are_listed_in_one_message():
    with pytest.raises(rfsearch.SpecError) as err:
        rfsearch.from_torch(Unmapped(), torch.rand(1, 3, 16, 16))
    message = str(err.value)
    assert "\n" not in message and "2 unsupported ops" in message
    assert "aten.flip" in message and "aten.roll" in message
    assert "test_import_torch.py" in message and "in 1x4x14x14" not in message
    assert "outputs=" in message and "on_unsupported='identity'" in message


def test_an_unmapped_bare_leaf_module_is_named_by_its_op():
    """A model that is one leaf module named its unmapped op "identity" (its stand-in)."""
    with pytest.raises(rfsearch.SpecError, match=r"1 unsupported op: im2col \(top level, "
                       r"aten\.im2col"):
        rfsearch.from_torch(nn.Unfold(3), torch.rand(1, 4, 8, 8))
    assert [la["name"] for la in rfsearch.from_torch(nn.Conv2d(4, 4, 3),
                                                     torch.rand(1, 4, 8, 8))["layers"]] == ["conv"]


def test_unsupported_ops_read_as_identity_are_recorded():
    spec = rfsearch.from_torch(Unmapped(), torch.rand(1, 3, 16, 16), on_unsupported="identity")
    assert len(spec["source"]["identity"]) == 2
    assert rfsearch.evaluate(spec, input_size=16).iloc[0]["rf_h"] == 3


class Sampled(torch.nn.Module):
    """A conv, then grid_sample (unmapped) onto an ``out`` x ``out`` grid."""

    def __init__(self, out: int):
        super().__init__()
        self.conv, self.out = torch.nn.Conv2d(1, 1, 3), out

    def forward(self, x):
        grid = torch.zeros(1, self.out, self.out, 2)
        return torch.nn.functional.grid_sample(self.conv(x), grid, align_corners=False)


def test_an_unsupported_op_that_resizes_the_map_is_never_read_as_identity():
    """An identity keeps the map's size, so it cannot stand in for an op that changes it:
    the spec's later layers would all have the wrong sizes."""
    with pytest.raises(rfsearch.SpecError, match=r"grid_sampler .* changes the map from 6x6 "
                                                 r"to 12x12\. Cut the model") as err:
        rfsearch.from_torch(Sampled(12), torch.rand(1, 1, 8, 8), on_unsupported="identity")
    assert "\n" not in str(err.value)
    kept = rfsearch.from_torch(Sampled(6), torch.rand(1, 1, 8, 8), on_unsupported="identity")
    assert len(kept["source"]["identity"]) == 1
    cut = rfsearch.from_torch(Sampled(12), torch.rand(1, 1, 8, 8), outputs="conv")
    assert [layer["name"] for layer in cut["layers"]] == ["conv"]


class Windows(torch.nn.Module):
    """A Swin-style window partition: a view that splits H and W into 4 x 4 windows."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)
        b, c, h, w = y.shape
        return y.view(b, c, h // 4, 4, w // 4, 4).permute(0, 2, 4, 1, 3, 5).flatten(3)


def test_a_view_that_splits_the_map_is_refused_and_a_flatten_is_dense():
    with pytest.raises(rfsearch.SpecError, match=r"view .*: a reshape that splits a spatial "
                                                 r"axis of 16 units into 4 x 4"):
        rfsearch.from_torch(Windows(), torch.rand(1, 1, 16, 16))
    flat = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(),
                               torch.nn.Linear(2 * 14 * 14, 3))
    spec = rfsearch.from_torch(flat, torch.rand(1, 1, 16, 16))
    assert [la["op"] for la in spec["layers"]] == ["conv", "dense", "dense"]


class C2f(nn.Module):
    """YOLOv8's C2f: channels chunked in two, one half through a 3x3, all concatenated."""

    def __init__(self, act=nn.Identity, pool="avg"):
        super().__init__()
        self.cv1, self.m, self.cv2 = nn.Conv2d(2, 4, 1), nn.Conv2d(2, 2, 3, 1, 1), \
            nn.Conv2d(6, 2, 1)

    def forward(self, x):
        a, b = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat([a, b, self.m(b)], 1)) * torch.nn.functional.glu(
            torch.cat(self.cv1(x).split([2, 2], 1), 1), 1).sum(1, keepdim=True)


def test_channel_splits_and_glu_keep_every_part():
    """chunk / split along channels give every part (C2f, ShuffleNetV2) and glu is
    element-wise; each was an unmapped op, and the second part 'no traced tensor'."""
    spec = oracle(C2f, (1, 2, 11, 11))
    assert rfsearch.evaluate(spec, input_size=11).iloc[0]["rf_h"] == 3


class Resampled(nn.Module):
    def __init__(self, **options):
        super().__init__()
        self.conv, self.options = nn.Conv2d(1, 1, 3), options

    def forward(self, x):
        return torch.nn.functional.interpolate(self.conv(x), **self.options)


def test_a_scale_factor_that_is_not_the_sizes_ratio_is_refused():
    """scale_factor=2.1 gives 2x the units but maps coordinates by 1/2.1: the x2 boxes
    were wrong for some units; recompute_scale_factor makes the ratio the factor."""
    with pytest.raises(rfsearch.SpecError, match=r"a scale factor \[2\.1, 2\.1\] that is "
                                                 r"not the sizes' ratio \[2, 2\]"):
        rfsearch.from_torch(Resampled(scale_factor=2.1), torch.rand(1, 1, 7, 7))
    for options in ({"scale_factor": 2.0}, {"scale_factor": 2.1,
                                            "recompute_scale_factor": True}):
        spec = rfsearch.from_torch(Resampled(**options), torch.rand(1, 1, 7, 7))
        assert spec["layers"][-1]["factor"] == [2, 2]


class Pooled(nn.Module):
    """A conv, then an adaptive pool with even windows that do not divide the map, or a
    mean over the width kept as one unit (coordinate attention's pooling)."""

    def __init__(self, act=nn.Identity, pool="avg", adaptive=True):
        super().__init__()
        self.conv, self.adaptive = nn.Conv2d(1, 1, 3), adaptive

    def forward(self, x):
        y = self.conv(x)
        if self.adaptive == "area":  # an adaptive pool onto twice the units
            return nn.functional.interpolate(y, scale_factor=2, mode="area")
        return nn.functional.adaptive_avg_pool2d(y, (3, 7)) if self.adaptive else \
            y.mean(3, keepdim=True)


@pytest.mark.parametrize("adaptive", [True, False, "area"])
def test_pools_with_one_even_window_per_axis_are_exact(adaptive):
    """13 -> 3 is kernel 5 stride 4, 21 -> 7 kernel 3; a mean over W with keepdim is a
    window over the whole width; area x2 is nearest x2. Each was refused; 13 -> 7
    (uneven) still is."""
    spec = oracle(lambda **kw: Pooled(adaptive=adaptive, **kw), (1, 1, 15, 23))
    row = rfsearch.evaluate(spec, input_size=(15, 23)).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["rf_w"]) == {
        True: (7, 4, 5), False: (3, 1, 23), "area": (3, 1, 3)}[adaptive]
    with pytest.raises(rfsearch.SpecError, match="not one window"):
        rfsearch.from_torch(nn.AdaptiveAvgPool2d(7), torch.rand(1, 1, 13, 13))


class FrequencyPooled(nn.Module):
    """A CRNN head: the frequency axis averaged away, then a 1-D conv over time."""

    def __init__(self):
        super().__init__()
        self.conv, self.tconv = nn.Conv2d(1, 4, 3, padding=1), nn.Conv1d(4, 4, 3)

    def forward(self, x):
        return self.tconv(self.conv(x).mean(2))


def test_an_unmapped_op_that_drops_a_dimension_is_one_line():
    """Its stand-in kept the input's rank, and the next op raised IndexError."""
    for policy, words in (("error", "a reduction over some of the spatial axes"),
                          ("identity", "changes the map from 4 dimensions to 3")):
        with pytest.raises(rfsearch.SpecError, match=words) as err:
            rfsearch.from_torch(FrequencyPooled(), torch.rand(1, 1, 16, 20),
                                on_unsupported=policy)
        assert "\n" not in str(err.value)


def test_outputs_cut_before_unsupported_ops():
    spec = rfsearch.from_torch(Unmapped(), torch.rand(1, 3, 16, 16), outputs="conv")
    assert [layer["name"] for layer in spec["layers"]] == ["conv"]


@pytest.mark.parametrize("expand", [False, True])  # broadcast, or expanded first
def test_squeeze_excitation_gates_are_element_wise(expand):
    spec = rfsearch.from_torch(nn.Sequential(nn.Conv2d(3, 3, 3), Gate(expand)),
                               torch.rand(1, 3, 16, 16))
    assert rfsearch.evaluate(spec, input_size=16).iloc[0]["rf_h"] == 3
    assert any("gates" in a for a in spec["source"]["assumptions"])


@pytest.mark.parametrize("mode", ["alone", "concat", "sum"])
def test_a_summary_expanded_over_the_map_and_convolved_reads_the_whole_map(mode):
    # before: expand kept the one-unit size (out_w 1, rf_w 36 where torch has 32 units)
    spec = rfsearch.from_torch(GlobalContext(mode), torch.rand(1, 1, 32))
    row = rfsearch.evaluate(spec, input_size=32).iloc[0]
    assert row["out_w"] == 32 and row["rf_w"] >= 2 * 32 - 1 and pd.isna(row["error"])
    check_boxes(spec, gradient_supports(positive(GlobalContext(mode)), (1, 1, 32)), (32,))


def test_a_rule_whose_map_is_not_the_traced_one_is_refused(monkeypatch):
    from rfsearch.importers import torch_import, torch_ops

    def shrunk(c):  # a rule that forgets a resize: its map is not the traced tensor's
        x = c.value("input")
        return torch_ops.Value(c.builder.add(c.base, "conv", [x], kernel=1), x.axes,
                               tuple(n // 2 for n in x.sizes), x.rank)

    monkeypatch.setitem(torch_import.RULES, "conv1d", shrunk)
    with pytest.raises(rfsearch.SpecError, match=r"operand of \[16\] units broadcast over a "
                       r"map of \[32\]"):
        rfsearch.from_torch(nn.Conv1d(1, 1, 3, padding=1), torch.rand(1, 1, 32))


def test_self_attention_over_time_reads_the_whole_clip():
    """Before: the attention made features and the conv after it was refused ('a window
    over a tensor whose spatial axes were moved')."""
    spec = rfsearch.from_torch(TimeAttention(), torch.rand(1, 1, 24))
    row = rfsearch.evaluate(spec, input_size=24).iloc[0]
    assert row["out_w"] == 22 and row["rf_w"] >= 2 * 24 - 1
    check_boxes(spec, gradient_supports(positive(TimeAttention()), (1, 1, 24)), (24,))
    with pytest.raises(rfsearch.SpecError, match="masked attention along the map"):
        rfsearch.from_torch(TimeAttention(mask=True), torch.rand(1, 1, 24))



def test_a_product_over_every_spatial_axis_is_features_of_the_whole_input():
    """Before: the product kept its first operand as an element-wise layer (PyTorch), or
    made one dense layer of two inputs, an invalid spec (ONNX)."""
    spec = rfsearch.from_torch(Gram(), torch.rand(1, 1, 16))
    row = rfsearch.evaluate(spec, input_size=16).iloc[0]
    assert (row["rf_w"], row["out_w"]) == (16, 1) and pd.isna(row["error"])


@pytest.mark.parametrize("build", [TorchAttention, lambda: TorchAttention(batch_first=False),
                                   lambda: TorchAttention(encoder=True), GlobalQuery,
                                   LeftWeight],
                         ids=["mha", "mha-seq-first", "encoder-layer", "global-query",
                              "left-weight"])
def test_torch_attention_modules_and_products_with_the_map_on_the_right(build):
    """Before: nn.MultiheadAttention was refused (unflatten, select); features @ map
    dropped the map (the softmax over positions then read as a gate: rf 5, not the clip);
    weight @ map had 'no traced input'."""
    spec = rfsearch.from_torch(build(), torch.rand(1, 1, 12))
    row = rfsearch.evaluate(spec, input_size=12).iloc[0]
    whole = not isinstance(build(), LeftWeight)
    assert (row["rf_w"] >= 2 * 12 - 1) == whole and pd.isna(row["error"])
    check_boxes(spec, gradient_supports(positive(build()), (1, 1, 12)), (12,))



@pytest.mark.parametrize("bottleneck", [False, True], ids=["tokens", "bottleneck"])
def test_features_put_back_on_the_map_read_it_whole(bottleneck):
    """Tokens after attention over all positions, reshaped back onto the grid and added to
    the map, were read as a 1 x 1 gate (the attention vanished: rf 7 where every unit reads
    the whole image); a dense bottleneck reshaped to a map was refused at the next conv."""
    spec = rfsearch.from_torch(TokenAttention(bottleneck), torch.rand(1, 1, 12, 12))
    row = rfsearch.evaluate(spec, input_size=12).iloc[0]
    assert row["rf_h"] >= 12 and pd.isna(row["error"])
    check_boxes(spec, gradient_supports(positive(TokenAttention(bottleneck)), (1, 1, 12, 12)),
                (12, 12))

def test_a_map_merged_with_its_own_transpose_is_refused():
    """h + h.transpose(2, 3) on a square map merged unit by unit: rf_h was 1 where a unit
    reads a whole column (the transpose of a (1, 3) window)."""
    class Swap(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, (1, 3), padding=(0, 1))

        def forward(self, x):
            h = self.conv(x)
            return h + h.transpose(2, 3)

    with pytest.raises(rfsearch.SpecError, match="a map and a transpose of it"):
        rfsearch.from_torch(Swap(), torch.rand(1, 1, 6, 6))
    class Transposed(nn.Module):  # an output whose tensor holds (w, h): noted
        def forward(self, x):
            return x.transpose(2, 3) * 2

    for model, noted in ((Transposed(), True), (nn.Conv2d(1, 1, (1, 3)), False)):
        spec = rfsearch.from_torch(model, torch.rand(1, 1, 6, 8))
        assert any("other tensor dimensions" in a for a in spec["source"]["assumptions"]) \
            == noted

def test_attention_of_a_map_with_itself_reads_it_whole():
    """sdpa(t, t, t): the keys are the queries' own tensor and are still read whole."""
    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.front, self.back = nn.Conv1d(1, 4, 3, padding=1), nn.Conv1d(4, 1, 3)

        def forward(self, x):
            t = self.front(x).transpose(1, 2)
            return self.back(F.scaled_dot_product_attention(t, t, t).transpose(1, 2))

    spec = rfsearch.from_torch(Plain(), torch.rand(1, 1, 16))
    assert rfsearch.evaluate(spec, input_size=16).iloc[0]["rf_w"] >= 2 * 16 - 1
    check_boxes(spec, gradient_supports(positive(Plain()), (1, 1, 16)), (16,))



@pytest.mark.parametrize(("dims", "heads", "einsum"), [(1, 1, False), (1, 2, False),
                                                     (2, 1, False), (2, 2, False),
                                                     (1, 2, True), (2, 2, True)])
def test_attention_written_with_matmul_reads_the_keys_and_values_whole(dims, heads, einsum):
    """Before: a product of two maps kept its first operand alone (q @ k^T read q unit by
    unit, so the clip's context was 5 samples where every output reads the whole clip),
    and splitting the channels into heads flattened the map; torch.einsum had no rule."""
    shape = (1, 1, 12) if dims == 1 else (1, 1, 8, 6)
    spec = rfsearch.from_torch(ManualAttention(dims, heads, einsum), torch.rand(shape))
    row = rfsearch.evaluate(spec, input_size=shape[2:]).iloc[0]
    along = 12 if dims == 1 else 8  # time, or the height of each column
    assert row["rf_w" if dims == 1 else "rf_h"] >= 2 * along - 1
    if dims == 2:
        assert row["rf_w"] == 5  # two 3-wide convs across the columns
    assert any("attention's scores" in a for a in spec["source"]["assumptions"])
    check_boxes(spec, gradient_supports(positive(ManualAttention(dims, heads, einsum)), shape),
                tuple(shape[2:]))

class Shrink(nn.Module):
    def __init__(self, **interpolate):
        super().__init__()
        self.conv, self.interpolate = nn.Conv2d(1, 1, 3, padding=1), interpolate

    def forward(self, x):
        return F.interpolate(self.conv(x), **self.interpolate)


@pytest.mark.parametrize("interpolate", [
    {"scale_factor": 0.5}, {"size": (4, 5), "mode": "nearest-exact"},
    {"scale_factor": 0.5, "mode": "bilinear"}, {"size": (4, 5), "mode": "bilinear"},
    {"scale_factor": 0.25, "mode": "bilinear"}])
def test_interpolating_onto_a_divisor_of_the_map_is_a_window(interpolate):
    """Before: refused ("not an integer factor"); a 16x15 map onto 1/r of each axis."""
    spec = rfsearch.from_torch(Shrink(**interpolate), torch.rand(1, 1, 16, 15 if "size" in
                                                                  interpolate else 16))
    shape = (1, 1, 16, 15 if "size" in interpolate else 16)
    check_boxes(spec, gradient_supports(positive(Shrink(**interpolate)), shape), shape[2:])


@pytest.mark.parametrize("interpolate", [
    {"scale_factor": 0.5, "mode": "bicubic"}, {"size": (4, 6)},
    {"scale_factor": 0.5, "mode": "bilinear", "antialias": True},
    {"scale_factor": 0.5, "mode": "bilinear", "align_corners": True}])
def test_other_interpolations_below_one_unit_per_unit_are_refused(interpolate):
    with pytest.raises(rfsearch.SpecError, match=r"a resize from \[16, 16\] to"):
        rfsearch.from_torch(Shrink(**interpolate), torch.rand(1, 1, 16, 16))


class DataDependent(nn.Module):
    def forward(self, x):
        return x * 2 if x.sum() > 0 else x


@pytest.mark.parametrize("model, example, match", [
    (DataDependent(), torch.rand(1, 3, 8, 8), "data-dependent control flow"),
    (nn.Conv2d(3, 4, 3), torch.rand(3, 8), "example_input must be a tensor"),
    (nn.Conv2d(3, 4, 3), torch.rand(1, 5, 8, 8), "cannot be traced"),
])
def test_bad_models_and_inputs_are_one_clear_error(model, example, match):
    with pytest.raises(rfsearch.SpecError, match=match) as err:
        rfsearch.from_torch(model, example)
    assert "\n" not in str(err.value)


def test_unknown_outputs_and_policies_are_refused():
    with pytest.raises(rfsearch.SpecError, match="name no module"):
        rfsearch.from_torch(ResNet18(), torch.rand(1, 3, 32, 32), outputs="layer9")
    with pytest.raises(rfsearch.SpecError, match="on_unsupported"):
        rfsearch.from_torch(ResNet18(), torch.rand(1, 3, 32, 32), on_unsupported="skip")


def test_supported_ops_lists_the_mapped_aten_ops():
    mapped = rfsearch.importers.supported_ops("torch")
    assert {"conv2d", "upsample_bilinear2d", "pixel_shuffle", "max_pool2d"} <= set(mapped)
    with pytest.raises(rfsearch.SpecError, match="framework"):
        rfsearch.importers.supported_ops("caffe")


def test_readme_example_runs_as_written(capsys):
    """README.md's "Your own model" example prints the table shown below it."""
    with open("README.md") as fh:
        text = fh.read().split("## Your own model", 1)[1]
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    shown = text.split("```text\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    assert capsys.readouterr().out == shown


def test_resnet50_gives_the_zoos_geometry_with_torchvisions_names():
    """Bottleneck blocks, stride on the 3x3 (v1.5): the zoo's resnet50 at 224."""
    spec = rfsearch.from_torch(ResNet50(width=8, head=True), torch.zeros(1, 3, 224, 224),
                               outputs="layer4")
    row = rfsearch.evaluate(spec, input_size=224).iloc[-1]
    zoo = rfsearch.evaluate("zoo:resnet50", input_size=224).iloc[-1]
    columns = ["rf_h", "rf_w", "stride_h", "stride_w", "padding_h", "padding_w", "out_h"]
    assert (row["rf_h"], row["stride_h"]) == (427, 32)
    assert row[columns].tolist() == zoo[columns].tolist()
    names = {layer["name"] for layer in spec["layers"]}
    assert {"layer1.0.downsample.0", "layer3.5.conv3", "layer4.2.bn3"} <= names
    assert "fc" not in names and spec["output"] == "layer4.2.relu:3"


class Scripted(nn.Module):
    """A TorchScript submodule: torch.export refuses it, torch.fx's make_fx traces it."""

    def __init__(self, script: bool = True):
        super().__init__()
        block = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.block = torch.jit.script(block) if script else block
        self.head = nn.Conv2d(4, 4, 3, dilation=2)

    def forward(self, x):
        return self.head(self.block(x))


def test_models_export_refuses_are_traced_by_make_fx_with_a_warning():
    with pytest.warns(RuntimeWarning, match="make_fx"):
        spec = rfsearch.from_torch(Scripted(), torch.rand(1, 3, 32, 32))
    assert spec["source"]["tracer"].startswith("torch.fx make_fx (torch.export failed")
    ops = [layer["op"] for layer in spec["layers"]]
    assert ops == ["conv", "relu", "maxpool", "conv"]
    plain = rfsearch.from_torch(Scripted(script=False), torch.rand(1, 3, 32, 32))
    assert spec["source"]["tracer"] != plain["source"]["tracer"]
    columns = ["rf_h", "rf_w", "stride_h", "padding_h", "out_h"]
    assert (rfsearch.evaluate(spec, input_size=32)[columns].values.tolist()
            == rfsearch.evaluate(plain, input_size=32)[columns].values.tolist())


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize(("pad", "kernel", "dilation"), [
    (1, 3, 1), (3, 7, 1), (2, 3, 1), (3, 3, 1), (2, 3, 2), (5, 3, 2)])
def test_repeating_padding_is_exact_or_refused(mode, pad, kernel, dilation):
    """Reflect padding copies units 1 .. p into the border (replicate: unit 0): the boxes
    of zero padding hold them only when the window reaches them (reach >= 2p, or p);
    such a model matches the gradient, any other is refused in one line."""
    def build(**_):
        return nn.Sequential(nn.Conv2d(1, 1, kernel, padding=pad, dilation=dilation,
                                       padding_mode=mode))

    reach = dilation * (kernel - 1)
    if reach >= (2 if mode == "reflect" else 1) * pad:
        oracle(build, (1, 1, 12, 12))
    else:
        with pytest.raises(rfsearch.SpecError, match=rf"^torch import: {mode} padding '0' "
                           r"repeats input units beyond the window of '0:2'"):
            rfsearch.from_torch(build(), torch.rand(1, 1, 12, 12))


class PaddedTwice(nn.Module):
    """A reflect pad, then a zero pad, then a 3x3 window."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.conv(F.pad(F.pad(x, (1, 1, 1, 1), mode="reflect"), (1, 1, 1, 1)))


def test_a_pad_after_reflect_padding_is_refused_as_a_pad():
    """The message called the second pad a window (kernel [1, 1])."""
    with pytest.raises(rfsearch.SpecError, match=r"reflect padding 'pad' repeats input units "
                       r"into another padding, 'pad:2', before a window reads them"):
        rfsearch.from_torch(PaddedTwice(), torch.rand(1, 1, 12, 12))


def test_a_linear_layer_over_one_axis_of_a_map_is_refused():
    """nn.Linear on an NCHW map mixes W only (torch's output is 5 x 5); read as a dense
    layer it gave 1 x 1. Over flattened features it stays a dense layer."""
    along_w = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Linear(5, 5))
    with pytest.raises(rfsearch.SpecError, match="a product over some of the spatial axes"):
        rfsearch.from_torch(along_w, torch.rand(1, 1, 11, 11))
    flat = nn.Sequential(nn.Conv2d(1, 1, 3, stride=2), nn.Flatten(), nn.Linear(25, 5))
    spec = rfsearch.from_torch(flat, torch.rand(1, 1, 11, 11))
    assert spec["layers"][-1]["op"] == "dense"


def test_a_spec_with_layers_read_off_the_traced_map_is_refused_at_another_size():
    """An adaptive pool (or a whole-map window) was evaluated at any size, describing
    another network there (AdaptiveAvgPool2d(7) on 28 units is kernel 4 stride 4; on 56,
    kernel 8 stride 8)."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(7), nn.Conv2d(4, 4, 3))
    spec = rfsearch.from_torch(model, torch.rand(1, 3, 30, 30))
    assert spec["source"]["size_bound"] == ["1 (an adaptive pool from 28x28 to 7x7 units)"]
    plain = {"name": "plain", "layers": [{"op": "conv", "kernel": 3}]}
    rows = rfsearch.evaluate([spec, plain], input_size=58)
    assert rows["error"].iloc[0] == (
        "spec #0 'Sequential': imported at 30x30, and layer 1 (an adaptive pool from 28x28 "
        "to 7x7 units) holds at that size only: evaluate at 30x30, or import the model "
        "again at 58x58")
    assert rows["rf_h"].tolist()[1] == 3  # the good row is kept
    at_own = rfsearch.evaluate(spec, input_size=30).iloc[0]
    again = rfsearch.from_torch(model, torch.rand(1, 3, 58, 58))
    assert pd.isna(at_own["error"]) and (at_own["rf_h"], at_own["stride_h"]) == (14, 4)
    assert rfsearch.evaluate(again, input_size=58).iloc[0]["stride_h"] == 8
    with pytest.raises(rfsearch.SpecError, match="imported at 30x30"):
        rfsearch.coords.ReceptiveField.of(spec, 58)
    cut = rfsearch.from_torch(model, torch.rand(1, 3, 30, 30), outputs="0")
    assert "size_bound" not in cut["source"]  # the pool is not in the cut spec
    for broken, words in (({**spec["source"], "input_size": None}, "needs source.input_size"),
                          ({**spec["source"], "size_bound": "pool"}, "a list of strings")):
        row = rfsearch.evaluate({**spec, "source": broken}, input_size=30).iloc[0]
        assert words in row["error"]


@pytest.mark.parametrize(("how", "bound"), [("size", True), ("scale", False),
                                            ("slice", True), ("relative", False),
                                            ("skip", False)])
def test_resizes_and_slices_given_in_units_are_bound_to_the_traced_size(how, bound):
    """F.interpolate(size=16) imported at 32 and evaluated at 48 gave stride 2 and 24 units
    (the model gives stride 3 and 16); x[..., 2:20] gave 32 units (18). A resize to the
    size of the map it joins is checked by the join at any size: free."""
    spec = rfsearch.from_torch(Sized(how), torch.rand(1, 1, 32, 32))
    assert ("size_bound" in spec["source"]) == bound
    at_48 = rfsearch.evaluate(spec, input_size=48).iloc[0]
    fresh = rfsearch.evaluate(rfsearch.from_torch(Sized(how), torch.rand(1, 1, 48, 48)),
                              input_size=48).iloc[0]
    if bound:
        assert "imported at 32x32" in at_48["error"]
    else:
        assert at_48.drop("name").equals(fresh.drop("name"))



def test_einsum_implicit_outputs_and_small_operands_follow_numpy():
    """The implicit output of '...ij,...jk' put the broadcast dimensions in the order they
    were met (a rank-3 operand first): the map came out transposed."""
    from rfsearch.importers.products import einsum_places

    assert einsum_places("...ij,...jk", [3, 4]) == ([(1, 2, None), (0, 1, None, 3)], 4)
    assert einsum_places("ij,jk", [2, 2]) == ([(0, None), (None, 1)], 2)


class Gated1d(nn.Module):
    """A 1-D squeeze-and-excitation gate viewed as (N, C, 1), its channels as many as the
    clip is long; ``bias``: a linear layer whose bias comes from the clip; ``transposed``:
    a 2-D map product written with .t()."""

    def __init__(self, how: str):
        super().__init__()
        self.how, self.conv, self.fc = how, nn.Conv1d(1, 4, 3, padding=1), nn.Linear(4, 4)

    def forward(self, x):
        h = self.conv(x)  # (1, 4, 4): C == T
        if self.how == "gate":
            return h * torch.sigmoid(self.fc(h.mean(-1))).view(1, 4, 1)
        if self.how == "bias":
            return F.linear(h.transpose(1, 2), self.fc.weight, h.mean(-1)).transpose(1, 2)
        q = h[0]  # (C, T)
        return (q.t() @ q).sum(1).view(1, 1, 4)


@pytest.mark.parametrize("how", ["gate", "bias", "transposed"])
def test_gates_biases_and_t_read_by_their_shapes(how):
    """A (N, C, 1) gate with C == T was taken for the map put back (refused); a bias of
    F.linear computed from the clip was dropped; x.t() lost the value (it was ignored).
    Each reads the whole clip (gates='global')."""
    spec = rfsearch.from_torch(Gated1d(how), torch.rand(1, 1, 4), gates="global")
    row = rfsearch.evaluate(spec, input_size=4).iloc[0]
    assert pd.isna(row["error"]) and row["rf_w"] >= 2 * 4 - 1
    check_boxes(spec, gradient_supports(positive(Gated1d(how)), (1, 1, 4)), (4,))


def test_a_slice_from_the_end_is_bound_to_the_traced_size():
    """x[..., -5:] kept 21 units at 48 where the model keeps 5."""
    class Tail(nn.Module):
        def forward(self, x):
            return x[:, :, -5:] * 2

    spec = rfsearch.from_torch(Tail(), torch.rand(1, 1, 32))
    assert "imported at 32" in rfsearch.evaluate(spec, input_size=48).iloc[0]["error"]


def test_an_exported_program_takes_an_example_tensor_as_its_size():
    """from_torch(program, tensor) raised AttributeError inside the input-size parser (a
    torch dtype has no .kind); an array given as an input size printed its values."""
    program = torch.export.export(nn.Conv2d(3, 4, 3), (torch.rand(1, 3, 32, 32),))
    spec = rfsearch.from_torch(program, torch.rand(1, 3, 32, 32))
    assert rfsearch.evaluate(spec, input_size=32).iloc[0]["out_h"] == 30
    with pytest.raises(rfsearch.SpecError, match=r"got a ndarray of shape \(2, 2\)$"):
        rfsearch.evaluate(spec, input_size=np.zeros((2, 2)))
