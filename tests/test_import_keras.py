"""rfsearch.from_keras against Keras itself, on the JAX backend.

The oracle: the Keras model with positive weights, linear activations and average pooling,
differentiated through the JAX backend (``jax.vjp``); every output unit's gradient support
must lie in rfsearch's box and reach its ends inside the input (:mod:`import_oracle`). It
runs on random Keras models of every mapped layer on 1, 2 and 3 axes and on the Keras
twins of the hand-written architectures (``tests/keras_models.py``), which must also give
the rows of their PyTorch twins, layer by layer under the same names.
"""

from __future__ import annotations

import os
import re

import jax
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from import_oracle import check_boxes, gradient_supports

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.backend.backend() != "jax":
    pytest.skip("Keras runs on another backend here", allow_module_level=True)
import keras_models as km  # noqa: E402

import rfsearch  # noqa: E402

C = 4  # channels of the random models


def positive(model):
    """The model as a JAX function of its input, every weight positive."""
    rng = np.random.default_rng(0)
    model.set_weights([rng.uniform(0.1, 1.1, w.shape).astype(w.dtype)
                       for w in model.get_weights()])
    return lambda x: model(x)


def check(spec: dict, model, x: np.ndarray) -> None:
    axes = tuple(range(1, x.ndim - 1))
    with jax.numpy_rank_promotion("allow"):  # Keras broadcasts biases by rank
        supports = gradient_supports(positive(model), x.astype(np.float32), axes)
    check_boxes(spec, supports, tuple(x.shape[a] for a in axes))


ARCHITECTURES = {  # name: (builder, input shape without the batch)
    "resnet18": (lambda m, **kw: m.ResNet18(head=False, **kw), (40, 40, 3)),
    "mobilenetv2": (lambda m, **kw: m.MobileNetV2Blocks(**kw), (24, 24, 3)),
    "unet": (lambda m, **kw: m.UNet(**kw), (16, 16, 3)),
    "unet-bilinear": (lambda m, **kw: m.UNet(upsample="bilinear", **kw), (16, 16, 3)),
    "tcn": (lambda m, **kw: m.TCN(**kw), (40, 1)),
    "fpn": (lambda m, **kw: m.FPN(**kw), (32, 32, 3)),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_gradient_oracle_on_keras_architectures(name):
    build, shape = ARCHITECTURES[name]
    spec = rfsearch.from_keras(build(km, input_shape=shape))
    x = np.random.default_rng(0).uniform(size=(1, *shape))
    check(spec, build(km, act="linear", pool="avg", input_shape=shape), x)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_keras_twins_give_the_rows_of_the_torch_models(name, tmp_path):
    """Per torch layer name, the same row; the Keras twins add ZeroPadding layers
    (``<name>.pad``) where a Keras conv cannot pad as torch does, and order layers by
    depth, so rows are matched by name."""
    torch = pytest.importorskip("torch")
    import torch_models

    build, shape = ARCHITECTURES[name]
    model = build(km, input_shape=shape)
    model.save(tmp_path / "twin.keras")
    spec = rfsearch.from_keras(tmp_path / "twin.keras")
    twin = rfsearch.from_torch(build(torch_models),
                               torch.rand(1, shape[-1], *shape[:-1]))
    size = "x".join(map(str, shape[:-1]))
    rows = rfsearch.evaluate(spec, input_size=size, per_layer=True).set_index("layer_name")
    theirs = rfsearch.evaluate(twin, input_size=size, per_layer=True).set_index("layer_name")
    extra = set(rows.index) - set(theirs.index)
    assert all(n.endswith(".pad") for n in extra), extra
    columns = [c for c in theirs.columns if c not in ("name", "layer")]
    pd.testing.assert_frame_equal(rows.loc[theirs.index, columns], theirs[columns])


def test_keras_resnet50_gives_the_zoos_geometry():
    spec = rfsearch.from_keras(km.ResNet50(head=False, input_shape=(224, 224, 3)))
    row = rfsearch.evaluate(spec, input_size=224).iloc[0]
    zoo = rfsearch.evaluate("zoo:resnet50", input_size=224).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["padding_h"]) == (
        zoo["rf_h"], zoo["stride_h"], zoo["padding_h"]) == (427, 32, 213)


# ---------------------------------------------------------------- random models

def random_model(recipe: list[tuple], dims: int, act: str, pool: str):
    layers = keras.layers
    size = {1: (20,), 2: (12, 12), 3: (6, 6, 6)}[dims]
    x = inputs = keras.Input((*size, C), name="input")
    d = f"{dims}D"
    for i, (op, p) in enumerate(recipe):
        name = f"{op}{i}"
        if op == "conv":
            padding = "causal" if p["pad"] == "same" and dims == 1 and p["s"] == 1 \
                else p["pad"]
            x = getattr(layers, f"Conv{d}")(C, p["k"], strides=p["s"], padding=padding,
                                            dilation_rate=p["d"] if p["s"] == 1 else 1,
                                            kernel_initializer=km.ONES, name=name)(x)
        elif op == "pool":
            kind = "MaxPooling" if pool == "max" else "AveragePooling"
            x = getattr(layers, f"{kind}{d}")(p["k"], strides=p["s"], padding=p["pad"],
                                              name=name)(x)
        elif op == "transpose":
            x = getattr(layers, f"Conv{d}Transpose")(C, p["k"], strides=p["s"],
                                                     padding=p["pad"], name=name,
                                                     kernel_initializer=km.ONES)(x)
        elif op == "upsample":
            interpolation = p["mode"] if dims == 2 else "nearest"
            kwargs = {"interpolation": interpolation} if dims == 2 else {}
            x = getattr(layers, f"UpSampling{d}")(2, name=name, **kwargs)(x)
        elif op == "pad":
            x = getattr(layers, f"ZeroPadding{d}")(tuple((a, b) for a, b in
                                                         p["pads"][:dims])
                                                   if dims > 1 else p["pads"][0],
                                                   name=name)(x)
        elif op == "crop":
            x = getattr(layers, f"Cropping{d}")(p["cut"] if dims == 1 else
                                                tuple([p["cut"]] * dims), name=name)(x)
        elif op == "act":
            x = layers.Activation(act, name=name)(x)
        else:
            side = getattr(layers, f"Conv{d}")(C, 1, kernel_initializer=km.ONES,
                                               name=f"{name}.side")(x)
            x = layers.Add(name=name)([x, side]) if op == "branch_add" else \
                layers.Concatenate(name=name)([x, side])
    return keras.Model(inputs, x)


@st.composite
def recipes(draw, dims: int):
    ops = ["conv", "conv", "pool", "upsample", "transpose", "pad", "crop", "act",
           "branch_add", "branch_cat"]
    recipe = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(ops))
        pad = draw(st.sampled_from(["valid", "same"]))
        if op == "conv":
            p = {"k": draw(st.integers(1, 3)), "s": draw(st.integers(1, 2)), "pad": pad,
                 "d": draw(st.integers(1, 2))}
        elif op == "pool":
            p = {"k": draw(st.integers(2, 3)), "s": draw(st.integers(1, 2)), "pad": pad}
        elif op == "transpose":
            s = draw(st.integers(1, 2))
            p = {"k": draw(st.integers(s, 3)), "s": s, "pad": pad}
        elif op == "upsample":
            p = {"mode": draw(st.sampled_from(["nearest", "bilinear"]))}
        elif op == "pad":
            p = {"pads": [(draw(st.integers(0, 2)), draw(st.integers(0, 2)))
                          for _ in range(3)]}
        elif op == "crop":
            p = {"cut": (draw(st.integers(0, 2)), draw(st.integers(0, 2)))}
        else:
            p = {}
        recipe.append((op, p))
    return [*recipe, ("conv", {"k": 1, "s": 1, "pad": "valid", "d": 1})]


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(dims=st.sampled_from((1, 2, 3)), data=st.data())
def test_gradient_oracle_on_random_keras_models(dims, data):
    recipe = data.draw(recipes(dims), label="recipe")
    try:
        model = random_model(recipe, dims, "gelu", "max")
    except ValueError:  # a map became empty
        return
    if 0 in model.output.shape[1:]:
        return
    spec = rfsearch.from_keras(model)
    x = np.random.default_rng(0).uniform(size=(1, *model.input.shape[1:]))
    check(spec, random_model(recipe, dims, "linear", "avg"), x)


# ---------------------------------------------------------------- options and errors

def test_outputs_cut_at_layer_names_and_unknown_ones_are_refused():
    model = km.ResNet18(head=True, input_shape=(64, 64, 3))
    cut = rfsearch.from_keras(model, outputs="layer4.1.relu:2")
    assert cut["output"] == "layer4.1.relu:2" and "fc" not in [la["name"] for la in
                                                              cut["layers"]]
    with pytest.raises(rfsearch.SpecError, match="name no layer"):
        rfsearch.from_keras(model, outputs="layer9")


def test_unsupported_layers_are_listed_in_one_message():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.RandomFlip(name="augment")(x)  # identity at inference
    x = keras.layers.Permute((2, 1, 3), name="swap")(x)
    x = keras.layers.Lambda(lambda t: t[:, ::-1], name="flip")(x)
    with pytest.raises(rfsearch.SpecError) as err:
        rfsearch.from_keras(keras.Model(inputs, x))
    message = str(err.value)
    assert "\n" not in message and "2 unsupported ops" in message
    assert "swap (top level, Permute" in message and "flip" in message
    assert "outputs=" in message and "augment" not in message


@pytest.mark.parametrize("resize", [
    lambda: keras.layers.UpSampling2D(2, interpolation="lanczos3", name="up"),
    lambda: keras.layers.Resizing(16, 16, name="up")])
@pytest.mark.parametrize("policy", ["error", "identity"])
def test_an_unsupported_layer_that_resizes_the_map_is_named_as_such(resize, policy):
    # before: the next layer's size check fired first ("rfsearch computes a 8x8 map, the
    # Keras config records 16x16"), whatever the policy
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, name="conv")(resize()(inputs)))
    words = ("1 unsupported op: up (top level" if policy == "error" else
             "resizes the map cannot be read as identity: up (")
    with pytest.raises(rfsearch.SpecError, match=re.escape(words)):
        rfsearch.from_keras(model, on_unsupported=policy)



def _attention_model(dims: int, causal: bool = False):
    """A conv front end, attention, a conv back end: 1-D, multi-head self-attention over
    time beside Attention() between two branches; 2-D, multi-head attention along the
    height of every column (attention_axes=(1,))."""
    conv = keras.layers.Conv1D if dims == 1 else keras.layers.Conv2D
    inputs = keras.Input((16, 1) if dims == 1 else (8, 6, 1))
    h = conv(4, 3, padding="same", name="front")(inputs)
    axes = None if dims == 1 else (1,)
    mixed = keras.layers.MultiHeadAttention(2, 2, attention_axes=axes, name="mha")(
        h, h, use_causal_mask=causal)
    if dims == 1:
        other = conv(4, 5, padding="same", name="side")(inputs)
        mixed = keras.layers.Add()([mixed, keras.layers.Attention(name="att")([h, other])])
    return keras.Model(inputs, conv(2, 3, name="back")(mixed))


@pytest.mark.parametrize("dims", [1, 2])
def test_attention_layers_read_the_keys_and_values_whole_along_their_axes(dims):
    """Before: MultiHeadAttention and Attention had no rule (the model was refused)."""
    model = _attention_model(dims)
    spec = rfsearch.from_keras(model)
    size = 16 if dims == 1 else (8, 6)
    row = rfsearch.evaluate(spec, input_size=size).iloc[0]
    if dims == 1:
        assert row["rf_w"] >= 2 * 16 - 1
    else:  # whole along the height, two 3-wide convs across the columns
        assert row["rf_h"] >= 2 * 8 - 1 and row["rf_w"] == 5
    check(spec, model, np.random.default_rng(0).uniform(
        0.1, 1, (1, 16, 1) if dims == 1 else (1, 8, 6, 1)))
    with pytest.raises(rfsearch.SpecError, match="masked attention along the map"):
        rfsearch.from_keras(_attention_model(dims, causal=True))

# ---------------------------------------------------------------- nested models

def _transfer(base, shape):
    """A transfer-learning model: ``base`` called as a layer, then a 3x3 head."""
    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(2, 3, padding="same", name="head",
                            kernel_initializer=km.ONES)(base(inputs))
    return keras.Model(inputs, x)


def test_a_model_called_as_a_layer_is_inlined_under_its_path(tmp_path):
    """ResNet-18 as a backbone: its layers keep their rows under ``<model name>/``, the
    head reads its output, and the whole model passes the gradient oracle, live and saved."""
    shape = (40, 40, 3)
    base = km.ResNet18(head=False, input_shape=shape)
    model = _transfer(base, shape)
    model.save(tmp_path / "transfer.keras")
    alone = rfsearch.evaluate(rfsearch.from_keras(base), input_size=40,
                              per_layer=True).set_index("layer_name")
    for source in (model, tmp_path / "transfer.keras"):
        spec = rfsearch.from_keras(source)
        assert spec["output"] == "head"
        rows = rfsearch.evaluate(spec, input_size=40, per_layer=True).set_index("layer_name")
        inner = rows.loc[[f"{base.name}/{name}" for name in alone.index]]
        columns = ["rf_h", "rf_w", "stride_h", "padding_h", "out_h"]
        np.testing.assert_array_equal(inner[columns].to_numpy(), alone[columns].to_numpy())
    x = np.random.default_rng(0).uniform(size=(1, *shape))
    check(spec, _transfer(km.ResNet18(head=False, act="linear", pool="avg",
                                      input_shape=shape), shape), x)


def test_nested_models_called_twice_and_sequential_ones_keep_every_call():
    """A functional model called twice (Keras lists its calls from node 1 in the outputs and
    from 0 in the calls), a Sequential model, and a model inside a model."""
    def conv(name, stride=1):
        return keras.layers.Conv2D(2, 3, strides=stride, name=name, kernel_initializer=km.ONES)
    inner_in = keras.Input((None, None, 2))
    inner = keras.Model(inner_in, conv("c2", 2)(conv("c1")(inner_in)), name="inner")
    block_in = keras.Input((None, None, 2))
    block = keras.Model(block_in, inner(conv("c0")(block_in)), name="block")
    head = keras.Sequential([conv("s1")], name="head")
    x = keras.Input((33, 33, 2))
    model = keras.Model(x, [head(block(x)), inner(x), inner(conv("c3")(x))])
    spec = rfsearch.from_keras(model)
    names = {la["name"] for la in spec["layers"]}
    assert {"block/c0", "block/inner/c1", "block/inner/c2", "head/s1", "inner/c1",
            "inner/c2", "inner:2/c1", "inner:2/c2"} <= names
    rows = rfsearch.evaluate(spec, input_size=33, per_layer=True).set_index("layer_name")
    assert rows.loc["head/s1", ["rf_h", "stride_h", "out_h"]].tolist() == [11, 2, 12]
    assert rows.loc["inner/c2", ["rf_h", "stride_h", "out_h"]].tolist() == [5, 2, 15]
    assert rows.loc["inner:2/c2", ["rf_h", "stride_h", "out_h"]].tolist() == [7, 2, 14]
    xs = np.random.default_rng(0).uniform(size=(1, 33, 33, 2))
    check(spec, keras.Model(x, head(block(x))), xs)
    for output, tensor in (("inner/c2", inner(x)), ("inner:2/c2", inner(conv("c4")(x)))):
        check(rfsearch.from_keras(model, outputs=output), keras.Model(x, tensor), xs)


def _conv(name, kernel=1, **kw):
    return keras.layers.Conv2D(1, kernel, name=name, kernel_initializer=km.ONES, **kw)


def test_nested_models_in_a_sequential_and_with_dict_inputs_and_outputs():
    """A Sequential holding a model then a layer (Keras lists a functional model's calls
    from node 1); a nested model whose inputs and outputs are dicts, which Keras flattens
    by sorted key whatever order they were written in (read by position, the head read
    the 1x1 branch: rf 1 where Keras's gradient gives 9); outputs= naming a second call."""
    x = keras.Input((32, 32, 1))
    base_in = keras.Input((None, None, 1))
    base = keras.Model(base_in, _conv("c1", 3)(base_in), name="base")
    stacked = keras.Sequential([keras.Input((32, 32, 1)), base, _conv("head", 3)])
    assert [la["name"] for la in rfsearch.from_keras(stacked)["layers"]] == ["base/c1", "head"]
    a, b = keras.Input((None, None, 1), name="a"), keras.Input((None, None, 1), name="b")
    sub = keras.Model({"b": b, "a": a}, [_conv("ca")(a), _conv("cb")(b)], name="sub")
    _, from_b = sub({"a": _conv("narrow")(x), "b": _conv("wide", 9, padding="same")(x)})
    pyramid = keras.Model(base_in, {"z_wide": _conv("w", 9, padding="same")(base_in),
                                    "a_narrow": _conv("n")(base_in)}, name="pyramid")
    heads = [_conv("head_b")(from_b), _conv("head_z")(pyramid(x)["z_wide"])]
    xs = np.random.default_rng(0).uniform(size=(1, 32, 32, 1))
    for head in heads:
        model = keras.Model(x, head)
        spec = rfsearch.from_keras(model)
        assert rfsearch.evaluate(spec, input_size=32).iloc[0]["rf_h"] == 9
        check(spec, model, xs)
    twice = keras.Model(x, [base(x), base(_conv("pre", 3)(x)), keras.layers.ReLU(name="r")(
        base(x))])
    for output, rf in (("base", 3), ("base:2", 5), ("base:3", 3)):
        cut = rfsearch.from_keras(twice, outputs=output)
        assert rfsearch.evaluate(cut, input_size=32).iloc[0]["rf_h"] == rf, output


def test_a_squeeze_excite_gate_reshaped_to_a_1x1_map_is_the_keepdims_gate():
    """EfficientNet's squeeze-excite: pooled features reshaped to (1, 1, C) then 1x1 convs
    gate the map, as the keepdims form does; it was refused (a conv on features)."""
    inputs = keras.Input((16, 16, 4))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    squeezed = {
        "reshaped": keras.layers.Reshape((1, 1, 4))(keras.layers.GlobalAveragePooling2D()(x)),
        "keepdims": keras.layers.GlobalAveragePooling2D(keepdims=True)(x)}
    for form, pooled in squeezed.items():
        gated = keras.layers.Multiply()([x, keras.layers.Conv2D(4, 1)(pooled)])
        rf = [rfsearch.evaluate(rfsearch.from_keras(keras.Model(inputs, gated), gates=gates),
                                input_size=16).iloc[0]["rf_h"] for gates in ("local", "global")]
        assert rf == [3, 33], form  # local: the conv's own 3; global: the whole 16x16 map
