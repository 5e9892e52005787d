"""rfsearch.from_onnx against ONNX Runtime itself.

The forward-impulse oracle: a model is exported (``torch.onnx.export(..., dynamo=True)``)
with identity activations, average instead of max pooling, positive weights and zero
biases, and run in ONNX Runtime on impulses: for every input index along an axis a slab
of ones there (every channel, every position on the other axes). The impulses that reach
an output unit must lie in rfsearch's box for it and reach the box's ends that lie inside
the input (:func:`import_oracle.check_boxes`). Every output unit of a small map is
checked, on random chains and DAGs of every mapped op on 1, 2 and 3 axes and on the
hand-written architectures of the PyTorch importer's tests, which must also give the
rows of ``from_torch``. Then bad files, unsupported ops, ``outputs=``, ceil-mode pooling
(ONNX shape inference before opset 22 counts a window ONNX Runtime drops) and a pooled
summary resized back over the map (DeepLab's image pooling).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # torch.onnx.export(dynamo=True) needs it
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from import_oracle import check_boxes  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
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
    Sized,
    TokenAttention,
    TorchAttention,
    UNet,
)
from torch_random import C, Random, recipes  # noqa: E402

import rfsearch  # noqa: E402

SIZES = {1: (1, C, 20), 2: (1, C, 12, 12), 3: (1, C, 6, 6, 6)}


def positive(model: nn.Module) -> nn.Module:
    """float32, eval mode, weights in [0.1, 1.1) (divided by the fan-in: float32 keeps
    every response of a deep model in range), biases zero: the model is linear with
    positive coefficients (bicubic taps aside), so a unit's response to an impulse is
    nonzero where the impulse reaches it and exactly zero elsewhere (no baseline to
    subtract, nothing lost to rounding)."""
    model = model.float().eval()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.rsplit(".", 1)[-1] == "bias":
                p.zero_()
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_((torch.rand(p.shape, generator=gen) + 0.1) / fan_in)
    return model


def export(model: nn.Module, shape: tuple[int, ...], path, batch: bool = False) -> str:
    """``torch.onnx.export(dynamo=True)`` at ``shape``; ``batch``: a dynamic batch
    dimension (the impulses run in one batch). The exporter folds BatchNorm into the
    convolution before it."""
    x = torch.rand((2, *shape[1:]) if batch else shape)
    dynamic = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if batch else {}
    with contextlib.redirect_stdout(io.StringIO()):  # its progress lines
        torch.onnx.export(model.eval(), (x,), str(path), dynamo=True, **dynamic)
    return str(path)


def impulse_supports(path: str, shape: tuple[int, ...]) -> list[list[np.ndarray]]:
    """Per spatial axis, per output index along it: the input indices whose impulse
    reaches it (the first graph output, in ONNX Runtime; every impulse in one batch)."""
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    dims = len(shape) - 2
    slabs = []
    for a in range(dims):
        slab = np.zeros((shape[2 + a], *shape[1:]), np.float32)
        for i in range(shape[2 + a]):
            slab[(i, slice(None)) + (slice(None),) * a + (i,)] = 1
        slabs.append(slab)
    (y, *_) = session.run(None, {session.get_inputs()[0].name: np.concatenate(slabs)})
    out, start = [], 0
    for a in range(dims):
        response = np.abs(y[start:start + shape[2 + a]])
        other = tuple(d for d in range(1, response.ndim) if d != 2 + a)
        reach = response.sum(axis=other) > 0  # [input index, output index]
        out.append([np.flatnonzero(reach[:, j]) for j in range(reach.shape[1])])
        start += shape[2 + a]
    return out


class Exports:
    """Each model exported once per module, into a temporary folder."""

    def __init__(self, folder):
        self.folder, self.paths = folder, {}

    def __call__(self, key: str, build, shape: tuple[int, ...], oracle: bool = False) -> str:
        """The export of ``build()`` (``oracle``: of its positive, identity-activation,
        average-pooling twin, with a dynamic batch)."""
        key = f"{key}-oracle" if oracle else key
        if key not in self.paths:
            model = positive(build(act=nn.Identity, pool="avg")) if oracle else build()
            self.paths[key] = export(model, shape, self.folder / f"{key}.onnx", batch=oracle)
        return self.paths[key]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return Exports(tmp_path_factory.mktemp("onnx"))


def oracle(exports: Exports, key: str, build, shape: tuple[int, ...]) -> dict:
    """Import the export of ``build()`` (its real activations and pools) and check it
    against ONNX Runtime's impulse responses of its oracle twin; returns the spec."""
    spec = rfsearch.from_onnx(exports(key, build, shape))
    supports = impulse_supports(exports(key, build, shape, oracle=True), shape)
    check_boxes(spec, supports, tuple(shape[2:]))
    return spec


# ---------------------------------------------------------------- real architectures

ARCHITECTURES = {
    "resnet18": (lambda **kw: ResNet18(head=False, **kw), (1, 3, 40, 40)),
    "mobilenetv2": (MobileNetV2Blocks, (1, 3, 24, 24)),
    "unet": (UNet, (1, 3, 16, 16)),
    "unet-bilinear": (lambda **kw: UNet(upsample="bilinear", **kw), (1, 3, 16, 16)),
    "tcn": (TCN, (1, 1, 40)),
    "fpn": (FPN, (1, 3, 32, 32)),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_impulse_oracle_on_real_architectures(name, exports):
    build, shape = ARCHITECTURES[name]
    spec = oracle(exports, name, build, shape)
    assert spec["source"]["framework"] == "onnx"
    assert spec["source"]["input_size"] == "x".join(map(str, shape[2:]))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_torch_and_onnx_give_the_same_rows(name, exports):
    """The network's row, on every column but the name. Per-layer rows cannot match:
    ONNX layers are named after the graph's nodes, and the exporter folds each BatchNorm
    into the convolution before it (fewer layers)."""
    build, shape = ARCHITECTURES[name]
    size = shape[2:] if len(shape) > 3 else shape[2]
    ours = rfsearch.evaluate(rfsearch.from_onnx(exports(name, build, shape)), input_size=size)
    twin = rfsearch.evaluate(rfsearch.from_torch(build(), torch.rand(shape)), input_size=size)
    pd.testing.assert_frame_equal(ours.drop(columns="name"), twin.drop(columns="name"))
    assert ours["error"].isna().all()


# ---------------------------------------------------------------- random models

def linear_1d(recipe: list[tuple], dims: int) -> bool:
    """Linear interpolation on one axis: the exporter writes upsample_linear1d as two
    GatherNDs of constant indices (and a weighted sum), which no rule maps yet."""
    return dims == 1 and any(op == "upsample" and p["mode"] == "linear" for op, p in recipe)


LAST = ("conv", {"k": 1, "s": 1, "p": 0, "d": 1})


@settings(max_examples=5, deadline=None, derandomize=True,  # the same cases in CI
          suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from((1, 2, 3)).flatmap(lambda d: st.tuples(st.just(d), recipes(d))))
@example(case=(2, [("pool", {"k": 3, "s": 2, "p": 1, "ceil": True}), ("act", {}),
                   ("upsample", {"f": 2, "mode": "bicubic", "ac": False}),
                   ("unshuffle", {"r": 2}), ("branch_cat", {}), ("shuffle", {"r": 2}), LAST]))
@example(case=(3, [("upsample", {"f": 2, "mode": "linear", "ac": True}),
                   ("pool", {"k": 3, "s": 2, "p": 1, "ceil": True}), ("branch_add", {}),
                   ("transpose", {"k": 3, "s": 2, "p": 1, "o": 1, "d": 1}), LAST]))
@example(case=(1, [("conv", {"k": 2, "s": 1, "p": 0, "d": 1}),  # a ceil window dropped
                   ("pool", {"k": 2, "s": 2, "p": 1, "ceil": True}), ("pad", {"pads": [2, 1]}),
                   ("upsample", {"f": 2, "mode": "nearest", "ac": False}),
                   ("crop", {"cut": (1, 2)}), LAST]))
@example(case=(1, [("upsample", {"f": 2, "mode": "linear", "ac": False}), LAST]))
def test_impulse_oracle_on_random_models(case, exports):
    dims, recipe = case
    shape = SIZES[dims]

    def build(**kw):
        return Random(recipe, dims, **kw)

    try:
        with torch.no_grad():
            build()(torch.rand(shape))
    except RuntimeError:  # a map became empty or a pool's padding was refused by torch
        return
    key = f"random-{len(exports.paths)}"
    if linear_1d(recipe, dims):  # refused in one clean message
        with pytest.raises(rfsearch.SpecError, match=r"unsupported ops: .*onnx GatherND"):
            rfsearch.from_onnx(exports(key, build, shape))
        return
    spec = oracle(exports, key, build, shape)
    assert spec["dims"] == dims


# ---------------------------------------------------------------- ceil mode and summaries

def test_ceil_mode_pooling_follows_onnx_runtime(exports):
    """MaxPool2d(3, 2, ceil_mode=True) at 8: ceil mode keeps a fourth window (floor mode
    gives 3); rfsearch, ONNX Runtime, PyTorch and ONNX shape inference agree."""
    def build(act=nn.ReLU, pool="max"):
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), act(),
                             nn.MaxPool2d(3, 2, ceil_mode=True) if pool == "max"
                             else nn.AvgPool2d(3, 2, ceil_mode=True))

    spec = oracle(exports, "ceil", build, (1, 3, 8, 8))
    row = rfsearch.evaluate(spec, input_size=8).iloc[0]
    assert (row["out_h"], row["rf_h"], row["stride_h"]) == (4, 5, 2)
    assert build()(torch.rand(1, 3, 8, 8)).shape[-1] == 4
    model = onnx.load(exports("ceil", build, (1, 3, 8, 8)))
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"input": np.ones((1, 3, 8, 8), np.float32)})
    del model.graph.value_info[:]  # the exporter's shapes (PyTorch's): ONNX's own instead
    model.graph.output[0].type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(model).graph.output[0]
    assert y.shape[2:] == (4, 4) == tuple(d.dim_value for d in
                                          inferred.type.tensor_type.shape.dim[2:])
    assert [la["ceil_mode"] for la in spec["layers"] if la["op"] == "maxpool"] == [True]
    assert not any("ceil_mode" in a for a in spec["source"]["assumptions"])


def pool_graph(opset: int, declared: int | None = None) -> onnx.ModelProto:
    """MaxPool(2, stride 2, pads 1, ceil_mode) at 5, then a 2-wide Conv: its last window
    would start in the right padding (ONNX Runtime drops it: 3 units, not 4).
    ``declared``: a (wrong) size declared for the Conv's output."""
    nodes = [helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2],
                              strides=[2], pads=[1, 1], ceil_mode=1),
             helper.make_node("Conv", ["p", "w"], ["y"], name="conv", kernel_shape=[2])]
    weight = numpy_helper.from_array(np.ones((1, 1, 2), np.float32), "w")
    out = [1, 1, declared] if declared else None
    graph = helper.make_graph(nodes, "pool_graph",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
                              [weight])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def resize_graph(mode: str, where: str, nearest: str, sizes: list[int],
                 shape: tuple[int, ...]) -> onnx.ModelProto:
    """One Resize of a (batch, 1, H, W) input onto ``sizes`` (H', W')."""
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="resize", mode=mode,
                            coordinate_transformation_mode=where, nearest_mode=nearest,
                            axes=[2, 3])
    target = numpy_helper.from_array(np.array(sizes, np.int64), "sizes")
    graph = helper.make_graph([node], "resize_graph", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["batch", 1, *shape])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], [target])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


@pytest.mark.parametrize(("mode", "where", "nearest"), [
    ("nearest", "asymmetric", "floor"), ("nearest", "half_pixel", "round_prefer_floor"),
    ("nearest", "half_pixel", "round_prefer_ceil"), ("nearest", "tf_half_pixel_for_nn", "floor"),
    ("nearest", "pytorch_half_pixel", "ceil"), ("linear", "half_pixel", "floor"),
    ("linear", "asymmetric", "floor"), ("linear", "pytorch_half_pixel", "floor")])
@pytest.mark.parametrize("sizes", [[6, 4], [4, 12], [3, 2], [1, 6]])  # from 12x12: by 2/3, ...
def test_a_resize_onto_a_divisor_of_the_map_is_a_window_as_onnx_runtime_reads_it(
        tmp_path, mode, where, nearest, sizes):
    """Before, any Resize below one unit per unit was refused."""
    model = resize_graph(mode, where, nearest, sizes, (12, 12))
    path = str(tmp_path / "resize.onnx")
    onnx.save(model, path)
    spec = rfsearch.from_onnx(path)
    assert [la["op"] for la in spec["layers"]] == ["pool"]
    check_boxes(spec, impulse_supports(path, (1, 1, 12, 12)), (12, 12))


def test_a_resize_keeping_the_aspect_ratio_is_refused_by_name():
    model = resize_graph("nearest", "asymmetric", "floor", [24, 36], (12, 12))
    model.graph.node[0].attribute.append(helper.make_attribute("keep_aspect_ratio_policy",
                                                               "not_larger"))
    with pytest.raises(rfsearch.SpecError, match="keep_aspect_ratio_policy 'not_larger'"):
        rfsearch.from_onnx(model)


def test_other_resizes_below_one_unit_per_unit_are_refused(tmp_path):
    for mode, where, sizes in [("cubic", "half_pixel", [6, 6]), ("linear", "align_corners",
                                                                [6, 6]),
                               ("nearest", "asymmetric", [5, 12])]:
        with pytest.raises(rfsearch.SpecError, match="a resize by"):
            rfsearch.from_onnx(resize_graph(mode, where, "floor", sizes, (12, 12)))


class RowPooled(nn.Module):
    """Each column's mean (a coordinate-attention branch), then a conv along the width."""

    def __init__(self, keep: bool = True):
        super().__init__()
        self.keep = keep
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.head = nn.Conv2d(2, 1, (1, 3)) if keep else nn.Conv1d(2, 1, 3)

    def forward(self, x):
        return self.head(self.conv(x).mean(2, keepdim=self.keep))


def test_a_reduction_over_one_spatial_axis_kept_is_a_window_as_onnx_runtime_reads_it(tmp_path):
    """Before: refused ('a reduction over some of the spatial axes'), as it still is when
    the reduced axis is dropped."""
    path = export(positive(RowPooled()), (1, 1, 8, 12), tmp_path / "rows.onnx", batch=True)
    spec = rfsearch.from_onnx(path)
    assert [la["kernel"] for la in spec["layers"] if la["op"] == "avgpool"] == [[8, 1]]
    row = rfsearch.evaluate(spec, input_size=(8, 12)).iloc[0]
    assert (row["rf_h"], row["rf_w"], row["out_h"], row["out_w"]) == (10, 5, 1, 10)
    check_boxes(spec, impulse_supports(path, (1, 1, 8, 12)), (8, 12))
    with pytest.raises(rfsearch.SpecError, match="some of the spatial axes that drops them"):
        rfsearch.from_onnx(export(RowPooled(keep=False), (1, 1, 8, 12),
                                  tmp_path / "dropped.onnx"))


@pytest.mark.parametrize("out", [32, 33, 34])  # the full output is 33 units
def test_a_transposed_convolution_given_its_output_shape_follows_onnx_runtime(tmp_path, out):
    """One unit past the full output is an output_padding (before: refused as negative
    padding)."""
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="up", strides=[2],
                            kernel_shape=[3], output_shape=[out])
    graph = helper.make_graph([node], "up", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["batch", 1, 16])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], [numpy_helper.from_array(
                np.ones((1, 1, 3), np.float32), "w")])
    path = str(tmp_path / "up.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), path)
    spec = rfsearch.from_onnx(path)
    assert spec["layers"][0].get("output_padding", [0]) == [int(out == 34)]
    check_boxes(spec, impulse_supports(path, (1, 1, 16)), (16,))


@pytest.mark.parametrize("opset", [19, 22])
def test_a_ceil_window_in_the_right_padding_is_dropped_as_onnx_runtime_does(opset):
    """ONNX shape inference before opset 22 counts that window (4 units), ONNX Runtime
    (and PyTorch) drop it: rfsearch follows ONNX Runtime, says so, and goes on checking
    the rest of the graph against inference redone from its sizes."""
    model = pool_graph(opset)
    inferred = onnx.shape_inference.infer_shapes(model).graph.value_info
    counted = {v.name: v.type.tensor_type.shape.dim[2].dim_value for v in inferred}
    assert counted["p"] == (4 if opset < 22 else 3)
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.ones((1, 1, 5), np.float32)})
    spec = rfsearch.from_onnx(model)
    row = rfsearch.evaluate(spec, input_size=5).iloc[0]
    assert row["out_w"] == y.shape[2] == 2
    noted = any("ceil_mode" in a for a in spec["source"]["assumptions"])
    assert noted == (opset < 22)


@pytest.mark.parametrize("mode", ["alone", "concat", "sum"])
@pytest.mark.parametrize("batch", [False, True])  # with a dynamic batch, no inferred sizes
def test_a_summary_expanded_over_the_map_reads_the_whole_map(tmp_path, mode, batch):
    # before: Expand kept the one-unit size (out_w 1 with a dynamic batch; static: refused)
    model = GlobalContext(mode)
    path = export(model, (1, 1, 32), tmp_path / "context.onnx", batch=batch)
    row = rfsearch.evaluate(rfsearch.from_onnx(path), input_size=32).iloc[0]
    assert row["out_w"] == 32 and row["rf_w"] >= 2 * 32 - 1 and pd.isna(row["error"])
    check_boxes(rfsearch.from_onnx(export(positive(GlobalContext(mode)), (1, 1, 32),
                                          tmp_path / "twin.onnx", batch=True)),
                impulse_supports(str(tmp_path / "twin.onnx"), (1, 1, 32)), (32,))



@pytest.mark.parametrize("build", [lambda: ManualAttention(1, 2), lambda: ManualAttention(2),
                                   lambda: ManualAttention(2, 2, einsum=True)],
                         ids=["heads", "axial", "einsum"])  # (3-D sdpa does not export)
def test_attention_between_maps_keeps_the_map_and_reads_the_keys_whole(tmp_path, build):
    """Before: a MatMul of two maps made features, so the conv after attention was
    refused. The rows are from_torch's."""
    shape = (1, 1, 12) if build().dims == 1 else (1, 1, 8, 6)
    spec = rfsearch.from_onnx(export(build(), shape, tmp_path / "attention.onnx"))
    rows = rfsearch.evaluate(spec, input_size=shape[2:])
    twin = rfsearch.evaluate(rfsearch.from_torch(build(), torch.rand(shape)),
                             input_size=shape[2:])
    columns = [c for c in rows.columns if c != "name"]
    pd.testing.assert_frame_equal(rows[columns], twin[columns])
    check_boxes(rfsearch.from_onnx(export(positive(build()), shape, tmp_path / "twin.onnx",
                                          batch=True)),
                impulse_supports(str(tmp_path / "twin.onnx"), shape), tuple(shape[2:]))



@pytest.mark.parametrize("build", [TorchAttention, lambda: TorchAttention(encoder=True),
                                   GlobalQuery, LeftWeight],
                         ids=["mha", "encoder-layer", "global-query", "left-weight"])
def test_attention_modules_and_products_with_the_map_on_the_right(tmp_path, build):
    """Before: Split and Gather (q, k, v out of one projection) had no rule; a MatMul with
    the map on the right read it whole (out_w 1), or dropped it (features @ map)."""
    shape = (1, 1, 12)
    rows = rfsearch.evaluate(rfsearch.from_onnx(export(build(), shape, tmp_path / "m.onnx")),
                             input_size=12)
    twin = rfsearch.evaluate(rfsearch.from_torch(build(), torch.rand(shape)), input_size=12)
    columns = [c for c in rows.columns if c != "name"]
    pd.testing.assert_frame_equal(rows[columns], twin[columns])
    check_boxes(rfsearch.from_onnx(export(positive(build()), shape, tmp_path / "twin.onnx",
                                          batch=True)),
                impulse_supports(str(tmp_path / "twin.onnx"), shape), (12,))


def test_tokens_put_back_on_the_map_and_windows_no_rule_follows(tmp_path):
    """Tokens after attention, reshaped back and added to the map, were a 1 x 1 gate (the
    attention vanished). Swin's window partition merges the windows into the batch (read
    as a dense layer): put back, every unit reads the whole map, an upper bound that the
    spec notes, no longer the attention silently dropped."""
    shape = (1, 1, 12, 12)
    spec = rfsearch.from_onnx(export(TokenAttention(), shape, tmp_path / "t.onnx"))
    assert rfsearch.evaluate(spec, input_size=(12, 12)).iloc[0]["rf_h"] >= 12
    check_boxes(rfsearch.from_onnx(export(positive(TokenAttention()), shape,
                                          tmp_path / "twin.onnx", batch=True)),
                impulse_supports(str(tmp_path / "twin.onnx"), shape), (12, 12))

    class Windows(nn.Module):
        def __init__(self):
            super().__init__()
            self.front, self.back = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3)

        def forward(self, x):
            h = self.front(x).permute(0, 2, 3, 1)  # (N, H, W, C), windows of 4 x 4
            t = h.reshape(1, 3, 4, 3, 4, 2).permute(0, 1, 3, 2, 4, 5).reshape(-1, 16, 2)
            t = torch.softmax(t @ t.transpose(1, 2), -1) @ t
            back = t.reshape(1, 3, 3, 4, 4, 2).permute(0, 1, 3, 2, 4, 5).reshape(1, 12, 12, 2)
            return self.back((back + h).permute(0, 3, 1, 2))

    windows = rfsearch.from_onnx(export(Windows(), shape, tmp_path / "w.onnx"))
    assert rfsearch.evaluate(windows, input_size=(12, 12)).iloc[0]["rf_h"] >= 12
    assert any("features put back on the map" in a for a in windows["source"]["assumptions"])


@pytest.mark.parametrize(("how", "bound"), [("size", True), ("scale", False),
                                            ("slice", True), ("relative", False),
                                            ("skip", False)])
def test_resizes_to_sizes_and_fixed_slices_are_bound(tmp_path, how, bound):
    """ONNX Resize with sizes, and Slice ends counted from the start, hold at the traced
    size only."""
    spec = rfsearch.from_onnx(export(Sized(how), (1, 1, 32, 32), tmp_path / "s.onnx"))
    assert ("size_bound" in spec["source"]) == bound


def test_depth_to_space_written_as_reshapes_is_a_nearest_upsampling(tmp_path):
    """(N, C r r, H, W) -> (N, C, r, r, H, W) -> (N, C, H, r, W, r) -> (N, C, H r, W r):
    was refused in ONNX (a flatten, then a window over features); JAX read it already."""
    class Shuffle(nn.Module):
        def __init__(self):
            super().__init__()
            self.front, self.back = nn.Conv2d(1, 8, 3), nn.Conv2d(2, 1, 3)

        def forward(self, x):
            h = self.front(x)
            n, _, height, width = h.shape
            y = h.reshape(n, 2, 2, 2, height, width).permute(0, 1, 4, 2, 5, 3)
            return self.back(y.reshape(n, 2, 2 * height, 2 * width))

    shape = (1, 1, 8, 8)
    spec = rfsearch.from_onnx(export(Shuffle(), shape, tmp_path / "d2s.onnx"))
    assert [la["op"] for la in spec["layers"]] == ["conv", "upsample", "conv"]
    check_boxes(rfsearch.from_onnx(export(positive(Shuffle()), shape, tmp_path / "twin.onnx",
                                          batch=True)),
                impulse_supports(str(tmp_path / "twin.onnx"), shape), (8, 8))

def test_a_product_over_every_spatial_axis_is_features(tmp_path):
    """A MatMul of two maps over their positions made one dense layer of two inputs: an
    invalid spec."""
    row = rfsearch.evaluate(rfsearch.from_onnx(export(Gram(), (1, 1, 16), tmp_path / "g.onnx")),
                            input_size=16).iloc[0]
    assert (row["rf_w"], row["out_w"]) == (16, 1) and pd.isna(row["error"])

def test_a_size_onnx_disagrees_with_is_an_error_naming_the_node():
    with pytest.raises(rfsearch.SpecError) as err:
        rfsearch.from_onnx(pool_graph(22, declared=4))
    message = str(err.value)
    assert "\n" not in message
    assert "node 'conv' (Conv): rfsearch computes a 2 map, ONNX shape inference 4" in message


class ImagePooling(nn.Module):
    """DeepLab's ASPP with its image-pooling branch: a pooled summary resized back."""

    def __init__(self, act=nn.ReLU, pool="max"):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)
        self.branch = nn.Conv2d(4, 4, 3, dilation=2, padding=2)
        self.pool_conv = nn.Conv2d(4, 4, 1)
        self.project = nn.Conv2d(8, 4, 1)
        self.act = act()

    def forward(self, x):
        y = self.act(self.conv(x))
        pooled = self.pool_conv(F.adaptive_avg_pool2d(y, 1))
        pooled = F.interpolate(pooled, size=y.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([self.branch(y), pooled], 1))


def test_a_pooled_summary_resized_over_the_map_reads_the_whole_map(exports):
    spec = oracle(exports, "image-pooling", ImagePooling, (1, 3, 16, 16))
    row = rfsearch.evaluate(spec, input_size=16).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["out_h"]) == (31, 2, 8)
    assert any("whole map" in a for a in spec["source"]["assumptions"])


# ---------------------------------------------------------------- errors and options

def small_graph(ops: tuple[str, ...] = (), spatial=(16, 16)) -> onnx.ModelProto:
    """conv1 (3x3) -> relu -> conv2 (3x3), then ``ops`` on the map's last axis (TopK,
    CumSum); ``spatial`` may hold dim names (a dynamic size)."""
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c1"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3])]
    last = "c2"
    inits = [numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w1"),
             numpy_helper.from_array(np.ones((4, 4, 3, 3), np.float32), "w2"),
             numpy_helper.from_array(np.array([2], np.int64), "k"),
             numpy_helper.from_array(np.array(3, np.int64), "axis")]
    for op in ops:
        ins = [last, "k"] if op == "TopK" else [last, "axis"]
        outs = [f"{op}_out", f"{op}_index"] if op == "TopK" else [f"{op}_out"]
        nodes.append(helper.make_node(op, ins, outs, name=op.lower()))
        last = outs[0]
    graph = helper.make_graph(
        nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, *spatial])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])


def test_unsupported_ops_are_listed_in_one_message():
    with pytest.raises(rfsearch.SpecError) as err:
        rfsearch.from_onnx(small_graph(("TopK", "CumSum")))
    message = str(err.value)
    assert "\n" not in message and "2 unsupported ops" in message
    assert "topk (top level, onnx TopK, in 12x12 -> out [1, 4, 12, 2])" in message
    assert "cumsum (top level, onnx CumSum" in message and "no rule maps this op" in message
    assert "outputs=" in message and "on_unsupported='identity'" in message


def test_unsupported_ops_read_as_identity_are_recorded():
    spec = rfsearch.from_onnx(small_graph(("CumSum", "CumSum")), on_unsupported="identity")
    assert len(spec["source"]["identity"]) == 2
    assert rfsearch.evaluate(spec, input_size=16).iloc[0]["rf_h"] == 5
    with pytest.raises(rfsearch.SpecError, match=r"topk .* changes the map from 12x12 to "
                                                 r"12x2"):  # an identity keeps 12x12
        rfsearch.from_onnx(small_graph(("TopK", "CumSum")), on_unsupported="identity")


@pytest.mark.parametrize("cut", ["conv2", "c2", ["relu"]])
def test_outputs_cut_at_a_node_or_tensor_name(cut):
    spec = rfsearch.from_onnx(small_graph(("TopK",)), outputs=cut)
    names = [layer["name"] for layer in spec["layers"]]
    assert names == (["conv1", "relu"] if cut == ["relu"] else ["conv1", "relu", "conv2"])
    with pytest.raises(rfsearch.SpecError, match="name no node or tensor"):
        rfsearch.from_onnx(small_graph(), outputs="conv9")


def test_outputs_cut_an_exported_resnet_at_its_max_pool(exports):
    build, shape = ARCHITECTURES["resnet18"]
    model = onnx.load(exports("resnet18", build, shape))
    pool = next(node.name for node in model.graph.node if node.op_type == "MaxPool")
    ours = rfsearch.evaluate(rfsearch.from_onnx(model, outputs=pool), input_size=40)
    twin = rfsearch.evaluate(rfsearch.from_torch(build(), torch.rand(shape), outputs="maxpool"),
                             input_size=40)
    assert ours.iloc[0]["rf_h"] == 11
    pd.testing.assert_frame_equal(ours.drop(columns="name"), twin.drop(columns="name"))


def test_a_dynamic_spatial_size_needs_input_size():
    model = small_graph(spatial=("height", "width"))
    with pytest.raises(rfsearch.SpecError, match="dynamic spatial size") as err:
        rfsearch.from_onnx(model)
    assert "\n" not in str(err.value) and "input_size" in str(err.value)
    spec = rfsearch.from_onnx(model, input_size=20)
    assert spec["source"]["input_size"] == "20x20"
    row = rfsearch.evaluate(spec, input_size=20).iloc[0]
    assert (row["rf_h"], row["out_h"]) == (5, 16)
    with pytest.raises(rfsearch.SpecError, match="input_size"):
        rfsearch.from_onnx(small_graph(), input_size=20)  # fixed at 16


def bad_file(kind: str, folder) -> str:
    path = folder / f"{kind}.onnx"
    if kind == "corrupt":
        path.write_bytes(b"\x0a\xff\xff\xff\xff\x0f not an onnx model")
    elif kind == "truncated":
        whole = small_graph().SerializeToString()
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    return path


@pytest.mark.parametrize("kind, match", [
    ("corrupt", "cannot read .* as an ONNX model"),
    ("truncated", "cannot read .* as an ONNX model"),
    ("empty", "holds no ONNX graph"),
    ("missing", "no such file"),
])
def test_bad_files_are_one_clear_error(kind, match, tmp_path):
    with pytest.raises(rfsearch.SpecError, match=match) as err:
        rfsearch.from_onnx(bad_file(kind, tmp_path))
    assert "\n" not in str(err.value)


def test_unknown_policies_are_refused():
    with pytest.raises(rfsearch.SpecError, match="on_unsupported"):
        rfsearch.from_onnx(small_graph(), on_unsupported="skip")
    with pytest.raises(rfsearch.SpecError, match="gates"):
        rfsearch.from_onnx(small_graph(), gates="nearby")


def test_supported_ops_lists_the_mapped_onnx_ops():
    mapped = rfsearch.importers.supported_ops("onnx")
    assert {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "Resize", "DepthToSpace",
            "Pad", "Slice", "Concat", "Reshape"} <= set(mapped)
    assert not {"TopK", "CumSum", "GatherND"} & set(mapped)
    assert mapped == sorted(mapped)


@pytest.mark.parametrize(("mode", "pad", "exact"), [
    ("reflect", 1, True), ("reflect", 2, False), ("replicate", 2, True),
    ("replicate", 3, False)])
def test_repeating_pads_are_exact_or_refused(exports, mode, pad, exact):
    """ONNX Pad (reflect, edge) before a 3-wide convolution: exact where the window reaches
    the units it copies (impulse responses agree), else one line."""
    def build(**_):
        return nn.Sequential(nn.Conv2d(1, 1, 3, padding=pad, padding_mode=mode))

    key, shape = f"{mode}-{pad}", (1, 1, 12, 12)
    if exact:
        oracle(exports, key, build, shape)
    else:
        onnx_mode = "reflect" if mode == "reflect" else "edge"
        with pytest.raises(rfsearch.SpecError, match=rf"^onnx import: {onnx_mode} padding "
                           r"'.*' repeats input units beyond the window of"):
            rfsearch.from_onnx(exports(key, build, shape))


def test_a_grouped_transposed_convolution_follows_onnx_runtime(exports):
    """Groups split the channels, not the windows: the boxes of ConvTranspose2d(groups=2)
    are those of the ungrouped layer, unit by unit (it was refused)."""
    def build(**_):
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1),
                             nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, groups=2))

    spec = oracle(exports, "grouped-transpose", build, (1, 2, 6, 6))
    assert spec["layers"][-1]["groups"] == 2


def test_an_opset_10_resize_is_an_upsample(tmp_path):
    """Resize of opset 10 is Upsample renamed (X, scales): nearest x2 reads unit y // 2, as
    ONNX Runtime's impulses show; its linear mode (asymmetric coordinates) is refused.
    Scales were read from the third input, as from opset 11, and reported unknown."""
    def model(mode: str) -> str:
        node = helper.make_node("Resize", ["x", "s"], ["y"], mode=mode)
        graph = helper.make_graph(
            [node], "r10", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 5, 6])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 10, 12])],
            [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "s")])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
        proto.ir_version = 8
        path = str(tmp_path / f"{mode}.onnx")
        onnx.save(proto, path)
        return path

    spec = rfsearch.from_onnx(model("nearest"))
    assert [(la["op"], la["mode"], la["factor"]) for la in spec["layers"]] == [
        ("upsample", "nearest", [2, 2])]
    check_boxes(spec, impulse_supports(model("nearest"), (1, 2, 5, 6)), (5, 6))
    with pytest.raises(rfsearch.SpecError, match="linear mode of opset 10 and earlier"):
        rfsearch.from_onnx(model("linear"))
