"""Cases a review of the importers found wrong, each against the framework itself:
transposed convolutions with ONNX's automatic padding, ArgMax, Resize over named axes,
softmax across the map, cubic resizing by an odd factor, layer names that collide with
the network input or with each other, and malformed Keras inputs."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest
from import_oracle import check_boxes, gradient_supports

import rfsearch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from test_import_onnx import impulse_supports  # noqa: E402


def graph(tmp_path, nodes, shape, inits=(), opset=17) -> str:
    """A one-input graph (dynamic batch for the impulses) saved under ``tmp_path``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *shape[1:]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(inits)),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    path = str(tmp_path / f"g{len(list(tmp_path.iterdir()))}.onnx")
    onnx.save(model, path)
    return path


def weight(name, shape):
    return numpy_helper.from_array(
        np.random.default_rng(0).uniform(0.1, 1.1, shape).astype(np.float32), name)


def const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(values, dtype), name)


def agrees(path, shape, **options) -> dict:
    spec = rfsearch.from_onnx(path, **options)
    check_boxes(spec, impulse_supports(path, shape), tuple(shape[2:]))
    return spec


@pytest.mark.parametrize("attrs", [{"auto_pad": "SAME_UPPER"}, {"auto_pad": "SAME_LOWER"},
                                   {"output_shape": [12, 12]}])
def test_transposed_convolutions_pad_on_onnx_runtimes_side(tmp_path, attrs):
    shape = (1, 2, 6, 6)  # kernel 3, stride 2: an odd total padding
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], **attrs)
    agrees(graph(tmp_path, [node], shape, [weight("w", (2, 3, 3, 3))]), shape)


@pytest.mark.parametrize("keep", [0, 1])
def test_argmax_over_channels_is_element_wise(tmp_path, keep):
    shape = (1, 2, 8, 8)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ArgMax", ["c"], ["y"], axis=1, keepdims=keep)]
    spec = rfsearch.from_onnx(graph(tmp_path, nodes, shape, [weight("w", (3, 2, 3, 3))]))
    assert rfsearch.evaluate(spec, input_size=8).iloc[0][["rf_h", "out_h"]].tolist() == [3, 8]


@pytest.mark.parametrize("kind", ["scales", "sizes"])
def test_resize_over_named_axes(tmp_path, kind):
    shape = (1, 2, 5, 5)
    values = const(kind, [2.0, 2.0] if kind == "scales" else [10, 10],
                   np.float32 if kind == "scales" else np.int64)
    inputs = ["x", "", "scales"] if kind == "scales" else ["x", "", "", "sizes"]
    node = helper.make_node("Resize", inputs, ["y"], axes=[2, 3], mode="nearest",
                            coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    spec = agrees(graph(tmp_path, [node], shape, [values], opset=18), shape)
    assert spec["layers"][0]["factor"] == [2, 2]


def test_a_softmax_across_the_map_reads_the_whole_axis(tmp_path):
    shape = (1, 2, 6, 6)
    node = helper.make_node("Softmax", ["x"], ["y"], axis=1)  # opset 11: C, H and W
    spec = agrees(graph(tmp_path, [node], shape, opset=11), shape)
    assert rfsearch.evaluate(spec, input_size=6).iloc[0]["rf_h"] == 11
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(2, 2, 1), torch.nn.Softmax(dim=2))
    row = rfsearch.evaluate(rfsearch.from_torch(model, torch.rand(1, 2, 5, 5)),
                            input_size=5).iloc[0]
    assert (row["rf_h"], row["rf_w"]) == (9, 1)  # every row of a column, one column


def test_a_jax_softmax_across_the_map_is_refused_not_dropped():
    with pytest.raises(rfsearch.SpecError, match="unsupported"):
        rfsearch.from_jax(lambda v: jax.nn.softmax(v, axis=1), np.ones((1, 5, 5, 2)))


def test_cubic_resize_by_an_odd_factor():
    def f(v):
        return jax.image.resize(v, (1, 9, 9, 2), "cubic")

    x = np.random.default_rng(0).uniform(size=(1, 3, 3, 2))
    spec = rfsearch.from_jax(f, x)
    assert spec["layers"][0]["mode"] == "cubic"
    check_boxes(spec, gradient_supports(f, x, (1, 2)), (3, 3))


def test_layer_names_never_collide_with_the_input_or_each_other(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.input = torch.nn.Conv2d(1, 1, 3)
            self.body = torch.nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.body(self.input(x))

    spec = rfsearch.from_torch(Net(), torch.rand(1, 1, 9, 9))
    assert [la["name"] for la in spec["layers"]] == ["input:2", "body"]
    assert rfsearch.evaluate(spec, input_size=9).iloc[0]["rf_h"] == 5
    shape = (1, 1, 9, 9)
    nodes = [helper.make_node("Conv", [src, "w"], [out], name=name)
             for src, out, name in (("x", "a", "a"), ("a", "b", "a:2"), ("b", "y", "a"))]
    spec = rfsearch.from_onnx(graph(tmp_path, nodes, shape, [weight("w", (1, 1, 3, 3))]))
    assert [la["name"] for la in spec["layers"]] == ["a", "a:2", "a:3"]
    assert rfsearch.evaluate(spec, input_size=9).iloc[0]["rf_h"] == 7


def test_malformed_keras_inputs_are_one_line(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(2, 3, name="c")])
    with pytest.raises(rfsearch.SpecError, match="has 3 axes, the model's input 2"):
        rfsearch.from_keras(model, input_size="9x10x11")
    config = model.get_config()
    config["layers"][1]["config"]["kernel_size"] = ["a", "b"]

    class Broken:
        layers = ()

        def get_config(self):
            return config

    Broken.__name__ = "Sequential"
    with pytest.raises(rfsearch.SpecError, match=r"layer 'c' .* cannot be read") as err:
        rfsearch.from_keras(Broken())
    assert "\n" not in str(err.value)


def test_smaller_findings(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3), torch.nn.LPPool2d(2, 2))
    spec = rfsearch.from_torch(model, torch.rand(1, 1, 10, 10))  # aten.sign is element-wise
    assert rfsearch.evaluate(spec, input_size=10).iloc[0][["rf_h", "stride_h"]].tolist() == [
        4, 2]
    with pytest.raises(rfsearch.SpecError, match="outputs is empty"):
        rfsearch.from_torch(model, torch.rand(1, 1, 10, 10), outputs=[])
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    inputs = keras.Input((2, 6, 6))
    out = keras.layers.Conv2D(2, 3, padding="same", activation="softmax",
                              data_format="channels_first", name="head")(inputs)
    spec = rfsearch.from_keras(keras.Model(inputs, out))
    row = rfsearch.evaluate(spec, input_size=6).iloc[0]
    assert (row["rf_h"], row["rf_w"]) == (3, 13)  # the softmax runs along W


def test_reshapes_that_split_a_spatial_axis_are_refused_and_flattens_still_read_dense(
        tmp_path):
    """Flax's circular transposed convolution folds its padded output back with a reshape
    that splits a spatial axis (24 into 3 x 8) and a sum over the 3: the wrapped window has
    no box, so it is refused like a circular Conv; it was read as flatten + dense. A split
    into (n / r, r) is a pixel unshuffle (windows of r units), as in ONNX; into three
    parts it is refused; a flatten only merges, and stays dense."""
    flax = pytest.importorskip("flax.linen")
    layer = flax.ConvTranspose(2, (3, 3), padding="CIRCULAR")
    x = np.ones((1, 8, 8, 1), np.float32)
    params = layer.init(jax.random.PRNGKey(0), x)
    with pytest.raises(rfsearch.SpecError, match=r"ConvTranspose.*a reduction over some of "
                                                 r"the spatial axes") as err:
        rfsearch.from_jax(lambda v: layer.apply(params, v), x)
    assert "\n" not in str(err.value)
    def conv(v, k):
        return jax.lax.conv(v.transpose(0, 3, 1, 2), np.ones((1, 1, k, k), np.float32),
                            (1, 1), "VALID")

    windows = rfsearch.from_jax(lambda v: conv(v, 1).reshape(1, 1, 2, 4, 8), x)
    assert [la.get("factor") for la in windows["layers"]] == [None, [4, 1]]
    with pytest.raises(rfsearch.SpecError, match="of 8 units into 2 x 2 x 2"):
        rfsearch.from_jax(lambda v: conv(v, 1).reshape(1, 1, 2, 2, 2, 8), x)
    flat = rfsearch.from_jax(lambda v: conv(v, 3).reshape(1, -1), x)
    assert [la["op"] for la in flat["layers"]] == ["conv", "dense"]
    shape = (1, 1, 8, 8)  # ONNX reads (n/r, r) as a pixel unshuffle; three parts are not
    path = graph(tmp_path, [helper.make_node("Conv", ["x", "w"], ["c"]),
                            helper.make_node("Reshape", ["c", "s"], ["y"])], shape,
                 [weight("w", (1, 1, 1, 1)), const("s", [1, 1, 2, 2, 2, 8])])
    with pytest.raises(rfsearch.SpecError, match="of 8 units into 2 x 2 x 2"):
        rfsearch.from_onnx(path)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")  # Keras 3 records the shape a Reshape reads
    inputs = keras.Input((16, 16, 4))
    y = keras.layers.Conv2D(4, 3, padding="same", name="c")(inputs)
    with pytest.raises(rfsearch.SpecError, match="of 16 units into 4 x 4"):
        rfsearch.from_keras(keras.Model(inputs, keras.layers.Reshape((4, 4, 4, 4, 4))(y)))
    kept = keras.layers.Reshape((16, 16, 4))(keras.layers.Reshape((16, 16, 2, 2))(y))
    spec = rfsearch.from_keras(keras.Model(inputs, kept))  # channels regrouped: the map kept
    assert [la["op"] for la in spec["layers"]] == ["conv"]
