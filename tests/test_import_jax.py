"""rfsearch.from_jax against JAX itself.

The gradient oracle of the PyTorch importer's tests (:mod:`import_oracle`), with the
gradients from ``jax.vjp`` in float64: models with positive weights, identity activations
and average pooling. It runs on random chains and DAGs of lax primitives on 1, 2 and 3
axes, on Flax NNX versions of the hand-written architectures (which must also give the
rows of their PyTorch twins, layer names included), and on small linen, Equinox and Haiku
models, whose layer names come from their module paths.
"""

from __future__ import annotations

from functools import partial

import flax.linen as nn
import flax_models as fm
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from import_oracle import check_boxes, gradient_supports
from jax import lax

import rfsearch

C = 4  # channels of the random models


def check(spec: dict, f, x: np.ndarray, axes: tuple[int, ...]) -> None:
    check_boxes(spec, gradient_supports(f, x, axes), tuple(x.shape[a] for a in axes))


# ---------------------------------------------------------------- random lax models

def lax_model(recipe: list[tuple], dims: int, act, pool: str):
    """A channel-last chain of lax primitives (N, spatial..., C), some with a 1 x 1 side
    branch merged back by add or concatenate; positive weights."""
    rng = np.random.default_rng(len(recipe))
    spatial = "DHW"[3 - dims:]
    numbers = (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")

    def weights(k, cin, cout):
        return jnp.asarray(rng.uniform(0.1, 1.1, (*[k] * dims, cin, cout)))

    def conv(x, w, s=1, p=((0, 0),), d=1):
        pads = list(p) * dims if len(p) == 1 else list(p)
        return lax.conv_general_dilated(x, w.astype(x.dtype), (s,) * dims, pads,
                                        rhs_dilation=(d,) * dims,
                                        dimension_numbers=numbers)

    layers = []
    for op, p in recipe:
        layers.append((op, p, weights(p.get("k", 1), C, C)))

    def f(x):
        for op, p, w in layers:
            window = (1, *[p.get("k", 1)] * dims, 1)
            if op == "conv":
                x = conv(x, w, p["s"], ((p["p"], p["q"]),), p["d"])
            elif op == "pool":
                pads = ((0, 0), *[(p["p"], p["q"])] * dims, (0, 0))
                strides = (1, *[p["s"]] * dims, 1)
                x = lax.reduce_window(x, -jnp.inf if pool == "max" else 0.0,
                                      lax.max if pool == "max" else lax.add, window,
                                      strides, pads)
            elif op == "transpose":
                x = lax.conv_transpose(x, w.astype(x.dtype), (p["s"],) * dims, p["pad"],
                                       dimension_numbers=numbers)
            elif op == "resize":
                shape = (x.shape[0], *[2 * n for n in x.shape[1:-1]], x.shape[-1])
                x = jax.image.resize(x, shape, p["method"])
            elif op == "pad":
                config = [(0, 0, 0), *[(a, b, 0) for a, b in p["pads"][:dims]], (0, 0, 0)]
                x = lax.pad(x, jnp.zeros((), x.dtype), config)
            elif op == "crop":
                a, b = p["cut"]
                x = x[(slice(None), *[slice(a, n - b) for n in x.shape[1:-1]])]
            elif op == "act":
                x = act(x)
            elif op in ("branch_add", "branch_cat"):
                side = conv(x, w)
                x = x + side if op == "branch_add" else jnp.concatenate([x, side], -1)
                x = x[..., :C]
        return x

    return f


@st.composite
def lax_recipes(draw, dims: int):
    ops = ["conv", "conv", "pool", "resize", "transpose", "pad", "crop", "act",
           "branch_add", "branch_cat"]
    recipe = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(ops))
        if op == "conv":
            p = {"k": draw(st.integers(1, 3)), "s": draw(st.integers(1, 2)),
                 "p": draw(st.integers(0, 2)), "q": draw(st.integers(0, 2)),
                 "d": draw(st.integers(1, 2))}
        elif op == "pool":
            k = draw(st.integers(2, 3))
            p = {"k": k, "s": draw(st.integers(1, 2)), "p": draw(st.integers(0, k - 1)),
                 "q": draw(st.integers(0, k - 1))}
        elif op == "transpose":
            stride = draw(st.integers(1, 2))  # kernel >= stride: every output unit reads
            p = {"k": draw(st.integers(stride, 3)), "s": stride,
                 "pad": draw(st.sampled_from(["SAME", "VALID"]))}
        elif op == "resize":
            p = {"method": draw(st.sampled_from(["nearest", "linear", "cubic"]))}
        elif op == "pad":
            p = {"pads": [(draw(st.integers(-1, 2)), draw(st.integers(-1, 2)))
                          for _ in range(3)]}
        elif op == "crop":
            p = {"cut": (draw(st.integers(0, 2)), draw(st.integers(0, 2)))}
        else:
            p = {}
        recipe.append((op, p))
    return [*recipe, ("conv", {"k": 1, "s": 1, "p": 0, "q": 0, "d": 1})]


SIZES = {1: (1, 20, C), 2: (1, 12, 12, C), 3: (1, 6, 6, 6, C)}


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dims=st.sampled_from((1, 2, 3)), data=st.data())
def test_gradient_oracle_on_random_lax_models(dims, data):
    recipe = data.draw(lax_recipes(dims), label="recipe")
    x = np.random.default_rng(0).uniform(size=SIZES[dims])
    real = lax_model(recipe, dims, jax.nn.gelu, "max")
    try:
        y = real(x)
    except (TypeError, ValueError):  # a map became empty
        return
    if 0 in y.shape:
        return
    spec = rfsearch.from_jax(real, x)
    assert spec["dims"] == dims
    check(spec, lax_model(recipe, dims, lambda v: v, "avg"), x, tuple(range(1, dims + 1)))


# ---------------------------------------------------------------- real architectures

def abstract(build, *args, **kwargs) -> nnx.Module:
    """The model with shapes for weights (nnx.eval_shape): importing needs no weights."""
    return nnx.eval_shape(lambda: build(*args, **kwargs))


def positive(model: nnx.Module):
    """The model as a function of its input, with every parameter positive (float64)."""
    graphdef, state = nnx.split(model)
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda a: rng.uniform(0.1, 1.1, a.shape), state)
    return lambda x: nnx.merge(graphdef, state)(x)


def identity(x):
    return x


ARCHITECTURES = {  # name: (builder, channel-last input shape)
    "resnet18": (lambda m, **kw: m.ResNet18(head=False, **kw), (1, 40, 40, 3)),
    "mobilenetv2": (lambda m, **kw: m.MobileNetV2Blocks(**kw), (1, 24, 24, 3)),
    "unet": (lambda m, **kw: m.UNet(**kw), (1, 16, 16, 3)),
    "unet-bilinear": (lambda m, **kw: m.UNet(upsample="bilinear", **kw), (1, 16, 16, 3)),
    "tcn": (lambda m, **kw: m.TCN(**kw), (1, 40, 1)),
    "fpn": (lambda m, **kw: m.FPN(**kw), (1, 32, 32, 3)),
}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_gradient_oracle_on_flax_architectures(name):
    build, shape = ARCHITECTURES[name]
    x = np.random.default_rng(0).uniform(size=shape)
    spec = rfsearch.from_jax(abstract(build, fm), x)
    axes = tuple(range(1, len(shape) - 1))
    check(spec, positive(abstract(build, fm, act=identity, pool="avg")), x, axes)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_flax_twins_give_the_rows_of_the_torch_models(name):
    torch = pytest.importorskip("torch")
    import torch_models

    build, shape = ARCHITECTURES[name]
    torch_shape = (shape[0], shape[-1], *shape[1:-1])
    twin = rfsearch.from_torch(build(torch_models), torch.rand(torch_shape))
    spec = rfsearch.from_jax(abstract(build, fm), np.zeros(shape))
    size = "x".join(map(str, shape[1:-1]))
    rows = rfsearch.evaluate(spec, input_size=size, per_layer=True)
    pd.testing.assert_frame_equal(rows, rfsearch.evaluate(twin, input_size=size,
                                                          per_layer=True))


def test_flax_resnet18_gives_the_published_geometry_with_torchvisions_names():
    spec = rfsearch.from_jax(abstract(fm.ResNet18), np.zeros((1, 224, 224, 3)),
                             outputs="layer4")
    row = rfsearch.evaluate(spec, input_size=224).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["padding_h"]) == (435, 32, 217)
    names = [layer["name"] for layer in spec["layers"]]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert {"layer1.0.conv1", "layer2.0.downsample.0", "layer4.1.conv2", "layer4.1.add",
            "layer4.1.relu:2"} <= set(names)
    assert spec["source"]["tracer"] == "jax.make_jaxpr (flax.nnx)"
    assert spec["source"]["input_size"] == "224x224"


# ---------------------------------------------------------------- other JAX libraries

def test_linen_models_are_named_by_their_scope_paths():
    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.BatchNorm(use_running_average=True, name="bn1")(
                nn.Conv(4, (3, 3), padding=1, name="conv1")(x))
            return nn.relu(y + nn.Conv(4, (1, 1), name="shortcut")(x))

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.Conv(4, (3, 3), strides=2, padding="VALID", name="stem")(x)
            x = nn.max_pool(x, (3, 3), (2, 2), padding="SAME")
            return jnp.mean(Block(name="layer1_0")(x), axis=(1, 2))

    x = np.zeros((1, 17, 17, 3))
    variables = Net().init(jax.random.PRNGKey(0), x)
    spec = rfsearch.from_jax(Net().apply, variables, x)
    assert [(la["name"], la["op"]) for la in spec["layers"]] == [
        ("stem", "conv"), ("max_pool", "maxpool"), ("layer1_0.conv1", "conv"),
        ("layer1_0.bn1", "batchnorm"), ("layer1_0.shortcut", "conv"),
        ("layer1_0.add", "add"), ("layer1_0.relu", "relu"), ("sum", "global_pool")]
    assert spec["name"] == "Net" and spec["source"]["tracer"] == "jax.make_jaxpr (flax.linen)"
    cut = rfsearch.from_jax(Net().apply, variables, x, outputs="layer1_0")
    assert rfsearch.evaluate(cut, input_size=17).iloc[0][["rf_h", "stride_h"]].tolist() == [
        15, 4]


def test_equinox_models_are_named_by_their_attribute_paths():
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        conv1: eqx.nn.Conv2d
        norm: eqx.nn.GroupNorm | None
        layers: list
        pool: eqx.nn.Pool
        act: object = eqx.field(static=True)

        def __init__(self, key, act=jax.nn.relu, pool=eqx.nn.MaxPool2d, norm=True):
            k1, k2 = jax.random.split(key)
            self.conv1 = eqx.nn.Conv2d(3, 4, 3, padding=1, key=k1)
            self.norm = eqx.nn.GroupNorm(2, 4) if norm else None
            self.layers = [eqx.nn.Conv2d(4, 4, 3, stride=2, key=k2)]
            self.pool = pool(2, 2)
            self.act = act

        def __call__(self, x):
            x = self.conv1(x)
            x = self.norm(x) if self.norm is not None else x
            return self.layers[0](self.pool(self.act(x)))

    x = np.random.default_rng(0).uniform(size=(3, 16, 16))  # Equinox: [C, H, W]
    spec = rfsearch.from_jax(Net(jax.random.PRNGKey(0)), x)
    assert [(la["name"], la["op"]) for la in spec["layers"]] == [
        ("conv1", "conv"), ("norm", "groupnorm"), ("relu", "relu"), ("pool", "maxpool"),
        ("layers.0", "conv")]
    assert any("groupnorm" in a for a in spec["source"]["assumptions"])
    plain = Net(jax.random.PRNGKey(0), identity, eqx.nn.AvgPool2d, norm=False)
    params, static = eqx.partition(plain, eqx.is_array)
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda a: rng.uniform(0.1, 1.1, a.shape), params)
    check(spec, lambda v: eqx.combine(params, static)(v), x, (1, 2))



def test_equinox_adaptive_pools_and_reshaped_windows_are_pools():
    """A reshape splitting the map into windows of r units (Equinox's adaptive pools, a
    space-to-depth) was refused; it is a pixel unshuffle, and Equinox's adaptive pool is
    bound to the traced size."""
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        conv: eqx.nn.Conv2d
        pool: eqx.nn.AdaptiveAvgPool2d
        head: eqx.nn.Conv2d

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.conv = eqx.nn.Conv2d(1, 2, 3, key=k1)
            self.pool = eqx.nn.AdaptiveAvgPool2d((7, 2))
            self.head = eqx.nn.Conv2d(2, 2, (3, 1), key=k2)

        def __call__(self, x):
            return self.head(self.pool(self.conv(x)))

    x = np.random.default_rng(0).uniform(size=(1, 16, 16))  # Equinox: [C, H, W]
    net = Net(jax.random.PRNGKey(0))
    spec = rfsearch.from_jax(net, x)
    row = rfsearch.evaluate(spec, input_size=16).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["rf_w"], row["stride_w"]) == (8, 2, 9, 7)
    assert spec["source"]["size_bound"][0].startswith("pool (AdaptiveAvgPool2d over 14x14")
    params, static = eqx.partition(net, eqx.is_array)
    params = jax.tree.map(lambda a: np.random.default_rng(1).uniform(0.1, 1.1, a.shape),
                          params)
    check(spec, lambda v: eqx.combine(params, static)(v), x, (1, 2))

    deep = jnp.asarray(np.random.default_rng(3).uniform(0.1, 1, (3, 3, 12, 3)))

    def space_to_depth(x):  # (N, H, W, C) -> (N, H/2, W/2, 4C), then a 3 x 3 conv
        n, h, w, c = x.shape
        y = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
        return lax.conv_general_dilated(y.reshape(n, h // 2, w // 2, 4 * c),
                                        deep.astype(x.dtype), (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))
    spec = rfsearch.from_jax(space_to_depth, x)
    assert "size_bound" not in spec["source"]
    assert rfsearch.evaluate(spec, input_size=(12, 10)).iloc[0]["rf_h"] == 6
    check(spec, space_to_depth, x, (1, 2))

    def mean_pool(x):  # channel-first: a 2 x 2 mean pool written as reshape + mean (crashed)
        y = conv3(x).transpose(0, 3, 1, 2)
        n, c, h, w = y.shape
        return y.reshape(n, c, h // 2, 2, w // 2, 2).mean((3, 5)).transpose(0, 2, 3, 1)

    spec = rfsearch.from_jax(mean_pool, x)
    assert rfsearch.evaluate(spec, input_size=(12, 10)).iloc[0]["rf_h"] == 4
    check(spec, mean_pool, x, (1, 2))

def test_haiku_models_are_named_by_their_module_names():
    hk = pytest.importorskip("haiku")

    def forward(x):
        x = jax.nn.relu(hk.Conv2D(4, 3, name="conv1")(x))
        x = hk.MaxPool(2, 2, "SAME")(x)
        return hk.Conv2D(4, 1)(x)

    model = hk.transform(forward)
    x = np.zeros((1, 16, 16, 3))
    params = model.init(jax.random.PRNGKey(0), x)
    spec = rfsearch.from_jax(model.apply, params, None, x)
    assert [(la["name"], la["op"]) for la in spec["layers"]] == [
        ("conv1", "conv"), ("relu", "relu"), ("max_pool", "maxpool"), ("conv2_d", "conv")]


def test_plain_functions_are_named_by_their_parameters():
    def net(params, x):
        y = lax.conv_general_dilated(x, params["stem"]["w"], (2, 2), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jax.nn.gelu(y)

    params = {"stem": {"w": np.ones((3, 3, 3, 4), np.float32)}}
    spec = rfsearch.from_jax(net, params, np.zeros((1, 16, 16, 3), np.float32))
    assert [(la["name"], la["op"]) for la in spec["layers"]] == [("stem", "conv"),
                                                                 ("gelu", "gelu")]
    assert spec["name"] == "net"


# ---------------------------------------------------------------- whole-map summaries

class SqueezeExcite(nnx.Module):
    def __init__(self, rngs=None):
        rngs = rngs or nnx.Rngs(0)
        self.conv = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=rngs)
        self.fc = nnx.Linear(4, 4, rngs=rngs)

    def __call__(self, x):
        y = self.conv(x)
        return y * jax.nn.sigmoid(self.fc(jnp.mean(y, axis=(1, 2), keepdims=True)))


class ImagePooling(nnx.Module):
    """DeepLab's ASPP with its image-pooling branch: a pooled summary resized back."""

    def __init__(self, rngs=None):
        rngs = rngs or nnx.Rngs(0)
        self.conv = nnx.Conv(3, 4, (3, 3), strides=2, padding=1, rngs=rngs)
        self.branch = nnx.Conv(4, 4, (3, 3), kernel_dilation=2, padding=2, rngs=rngs)
        self.pool_conv = nnx.Conv(4, 4, (1, 1), rngs=rngs)
        self.project = nnx.Conv(8, 4, (1, 1), rngs=rngs)

    def __call__(self, x):
        y = self.conv(x)
        pooled = self.pool_conv(jnp.mean(y, axis=(1, 2), keepdims=True))
        pooled = jax.image.resize(pooled, y.shape, "linear")
        return self.project(jnp.concatenate([self.branch(y), pooled], -1))


def test_channel_gates_are_local_unless_asked_global():
    x = np.random.default_rng(0).uniform(size=(1, 16, 16, 3))
    local = rfsearch.from_jax(SqueezeExcite(), x)
    assert rfsearch.evaluate(local, input_size=16).iloc[0]["rf_h"] == 3
    assert local["source"]["gates"] == "local"
    assert any("gates='local'" in a for a in local["source"]["assumptions"])
    spec = rfsearch.from_jax(SqueezeExcite(), x, gates="global")
    row = rfsearch.evaluate(spec, input_size=16).iloc[0]
    assert (row["rf_h"], row["out_h"]) == (2 * 14 - 1 + 2, 14)  # every unit reads the map
    check(spec, positive(SqueezeExcite()), x, (1, 2))


def test_a_pooled_summary_resized_over_the_map_reads_the_whole_map():
    x = np.random.default_rng(0).uniform(size=(1, 16, 16, 3))
    spec = rfsearch.from_jax(ImagePooling(), x)
    row = rfsearch.evaluate(spec, input_size=16).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["out_h"]) == (31, 2, 8)
    check(spec, positive(ImagePooling()), x, (1, 2))



# ---------------------------------------------------------------- loops, softmax, products

KERNEL = jnp.asarray(np.random.default_rng(1).uniform(0.1, 1.1, (3, 3, 3, 3)))


def conv3(x):
    return lax.conv_general_dilated(x, KERNEL.astype(x.dtype), (1, 1), "SAME",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


def fori(x):
    return lax.fori_loop(0, 4, lambda i, h: conv3(h), x)


def scanned(x):
    return lax.scan(lambda h, _: (conv3(h), None), x, None, length=3)[0]


class Block(nn.Module):
    @nn.compact
    def __call__(self, h, _):
        return nn.Conv(3, (3, 3))(h), None


class Stack(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.scan(Block, variable_axes={"params": 0}, split_rngs={"params": True},
                       length=4)()(x, None)[0]


@pytest.mark.parametrize("f, rf", [(fori, 9), (scanned, 7), ("linen", 9)])
def test_loops_are_unrolled(f, rf):
    """A scan's body was read once: fori_loop of four 3x3 convolutions gave rf 3."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 20, 18, 3))
    args = (f,) if f != "linen" else (Stack().apply, jax.tree_util.tree_map(
        jnp.abs, Stack().init(jax.random.PRNGKey(0), x)))
    spec = rfsearch.from_jax(*args, x)
    assert rfsearch.evaluate(spec, input_size=(20, 18)).iloc[0]["rf_h"] == rf
    assert [layer["op"] for layer in spec["layers"]] == ["conv"] * ((rf - 1) // 2)
    check(spec, partial(args[0], *args[1:]), x, (1, 2))


def test_a_reduce_window_with_its_own_reducer_is_a_pool_and_odd_loops_are_refused():
    """A custom reducer's jaxpr was walked as the model (an IndexError traceback)."""
    x = np.zeros((1, 20, 18, 3))
    spec = rfsearch.from_jax(lambda x: lax.reduce_window(
        conv3(x), 0.0, lambda a, b: a + 2 * b, (1, 5, 5, 1), (1, 2, 2, 1), "SAME"), x)
    row = rfsearch.evaluate(spec, input_size=(20, 18)).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["out_h"]) == (7, 2, 10)
    for f, words in [(lambda x: lax.scan(lambda c, r: (c, conv3(r[None])[0]), 0.0, x)[1],
                      "a loop over slices of the map"),
                     (lambda x: lax.fori_loop(0, 5000, lambda i, h: conv3(h), x),
                      "a loop of 5000 steps"),
                     (lambda x: lax.scan(lambda h, _: (conv3(h), h), x, None, length=2)[1],
                      "a loop that stacks maps"),
                     (lambda x: lax.while_loop(lambda c: c[0] < 3,  # refused for itself,
                                               lambda c: (c[0] + 1, conv3(c[1])), (0, x))[1],
                      "unsupported op: while")]:  # not 'the model returns nothing
        with pytest.raises(rfsearch.SpecError, match=words):
            rfsearch.from_jax(f, x)


def test_a_softmax_over_the_map_reads_the_whole_map():
    """jax.nn.softmax over the spatial axes was read as element-wise (rf 3)."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))
    spec = rfsearch.from_jax(lambda x: jax.nn.softmax(conv3(x), axis=(1, 2)), x)
    supports = gradient_supports(lambda x: jax.nn.softmax(conv3(x), axis=(1, 2)), x, (1, 2))
    assert all(len(seen) == n for axis, n in zip(supports, (12, 10), strict=True)
               for seen in axis)  # every unit reads every row and column
    check_boxes(spec, supports, (12, 10))
    over_channels = rfsearch.from_jax(lambda x: jax.nn.softmax(conv3(x), axis=-1), x)
    assert rfsearch.evaluate(over_channels, input_size=(12, 10)).iloc[0]["rf_h"] == 3
    with pytest.raises(rfsearch.SpecError, match="a softmax over some of the spatial axes"):
        rfsearch.from_jax(lambda x: jax.nn.softmax(conv3(x), axis=1), x)


def test_a_unit_by_unit_product_of_two_maps_merges_them():
    """einsum('bhwc,bhwc->bhw') was read as attention on its first operand alone."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))
    wide = jnp.asarray(np.random.default_rng(2).uniform(0.1, 1, (5, 5, 3, 3)))

    def f(x):
        other = lax.conv_general_dilated(x, wide.astype(x.dtype), (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.einsum("bhwc,bhwc->bhw", conv3(x), other)[..., None]

    spec = rfsearch.from_jax(f, x)
    assert sorted(layer["op"] for layer in spec["layers"]) == ["add", "conv", "conv"]
    assert rfsearch.evaluate(spec, input_size=(12, 10)).iloc[0]["rf_h"] == 5
    check(spec, f, x, (1, 2))



def test_attention_over_the_rows_reads_the_keys_whole_and_keeps_the_map():
    """Before: any product of two maps other than unit by unit made features (every
    unit read both maps whole), so a conv after attention was refused."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))

    def f(x):  # in every column, each row attends to every row
        y = conv3(x)
        scores = jax.nn.softmax(jnp.einsum("bhwc,bgwc->bwhg", y, y), axis=-1)
        return conv3(jnp.einsum("bwhg,bgwc->bhwc", scores, y))

    spec = rfsearch.from_jax(f, x)
    row = rfsearch.evaluate(spec, input_size=(12, 10)).iloc[0]
    assert row["rf_h"] >= 2 * 12 - 1 and row["rf_w"] == 5 and row["out_h"] == 12
    check(spec, f, x, (1, 2))


def test_tokens_put_back_on_the_map_read_it_whole():
    """Attention over all positions as tokens, reshaped back and added to the map, was a
    1 x 1 gate: the attention vanished (rf 5 where every unit reads the whole map)."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 10, 10, 3))

    def f(x):
        y = conv3(x)
        t = y.reshape(1, 100, 3)
        t = jax.nn.softmax(t @ t.transpose(0, 2, 1), -1) @ t
        return conv3(t.reshape(1, 10, 10, 3) + y)

    spec = rfsearch.from_jax(f, x)
    assert rfsearch.evaluate(spec, input_size=(10, 10)).iloc[0]["rf_h"] >= 10
    check(spec, f, x, (1, 2))


def test_resizes_and_end_crops_are_bound_to_the_traced_size():
    """A jaxpr holds a resize's target shape and a slice's end as units: the spec holds at
    the traced size only (a strided slice to the end, or a crop at the start, at any)."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))
    cases = {lambda x: jax.image.resize(conv3(x), (1, 24, 20, 3), "nearest"): True,
             lambda x: conv3(x)[:, 1:-1, 1:-1]: True,
             lambda x: conv3(x)[:, 2:, ::2]: False}
    for f, bound in cases.items():
        spec = rfsearch.from_jax(f, x)
        assert ("size_bound" in spec["source"]) == bound
        check(spec, f, x, (1, 2))

def test_an_expanded_summary_concatenated_with_the_map_reads_the_whole_map():
    """broadcast_to of a keepdims mean, or its resize, beside the map gave an invalid spec."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))

    def broadcast(x):
        y = conv3(x)
        return jnp.concatenate([y, jnp.broadcast_to(y.mean((1, 2), keepdims=True),
                                                    y.shape)], -1)

    def resized(x):
        y = conv3(x)
        return jnp.concatenate([y, jax.image.resize(y.mean((1, 2), keepdims=True), y.shape,
                                                    "linear")], -1)

    for f in (broadcast, resized):
        spec = rfsearch.from_jax(f, x)
        row = rfsearch.evaluate(spec, input_size=(12, 10)).iloc[0]
        assert pd.isna(row["error"]) and row["out_h"] == 12
        check(spec, f, x, (1, 2))


def test_a_first_pool_of_width_one_along_an_axis_keeps_both_axes():
    """The layout came from the first window's dims wider than 1: a (1, 2) pool made a
    2-D image 1-D, and a convolution after it failed."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))
    spec = rfsearch.from_jax(lambda x: nn.avg_pool(x, (1, 2), (1, 2)).mean((1, 2)), x)
    assert spec["dims"] == 2
    spec = rfsearch.from_jax(lambda x: conv3(nn.max_pool(x, (1, 2), (1, 2))), x)
    row = rfsearch.evaluate(spec, input_size=(12, 10)).iloc[0]
    assert (row["rf_h"], row["rf_w"], row["out_w"]) == (3, 6, 5)


def test_a_reshape_that_repeats_units_is_a_nearest_upsampling():
    """jnp.repeat and a pixel shuffle written as reshapes (a spatial axis merged with the
    dimensions after it) were read as a flatten into a dense layer: out_h 1."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))
    wide = jnp.asarray(np.random.default_rng(3).uniform(0.1, 1, (3, 3, 3, 12)))

    def repeat(x):
        return conv3(jnp.repeat(jnp.repeat(x[:, ::2, ::2], 2, axis=1), 3, axis=2))

    def shuffle(x):
        y = lax.conv_general_dilated(x, wide.astype(x.dtype), (2, 2), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        n, h, w, _ = y.shape
        y = y.reshape(n, h, w, 2, 2, 3).transpose(0, 1, 3, 2, 4, 5)
        return conv3(y.reshape(n, 2 * h, 2 * w, 3))

    for f, factors in ((repeat, [[2, 1], [1, 3]]), (shuffle, [[2, 2]])):
        spec = rfsearch.from_jax(f, x)
        assert [la["factor"] for la in spec["layers"] if la["op"] == "upsample"] == factors
        check(spec, f, x, (1, 2))

    def interleave(x):  # unit i * 12 + h holds unit h: not a local op
        y = conv3(x)
        return jnp.broadcast_to(y[:, None], (1, 2, 12, 10, 3)).reshape(1, 24, 10, 3)

    with pytest.raises(rfsearch.SpecError, match="merges a spatial axis after another"):
        rfsearch.from_jax(interleave, x)


def test_strided_same_paddings_are_same_at_every_size():
    """'SAME' is explicit in a jaxpr: a stride-2 window's pads at 20 are not those at 21,
    and the spec kept the pads of 20."""
    def f(x):
        return nn.max_pool(conv3(x), (3, 3), (2, 2), "SAME")

    x = np.zeros((1, 20, 18, 3))
    spec = rfsearch.from_jax(f, x)
    assert [la["padding"] for la in spec["layers"] if la["op"] == "maxpool"] == ["same"]
    odd = np.random.default_rng(0).uniform(0.1, 1, (1, 21, 19, 3))
    rows = rfsearch.evaluate(spec, input_size=(21, 19))
    again = rfsearch.evaluate(rfsearch.from_jax(f, odd), input_size=(21, 19))
    pd.testing.assert_frame_equal(rows, again)
    check(spec, f, odd, (1, 2))
    for g in (conv3, lambda x: nn.max_pool(x, (3, 3), (2, 2), ((0, 1), (1, 1)))):
        spec = rfsearch.from_jax(g, x)  # stride 1 'SAME', or other pads: kept
        assert "same" not in [la.get("padding") for la in spec["layers"]]
        assert not any("'SAME'" in a for a in spec["source"]["assumptions"])
    # at 21, k3 s2 'SAME' pads (1, 1), as PyTorch-style code does: kept, bound to 21
    symmetric = rfsearch.from_jax(lambda x: nn.max_pool(x, (3, 3), (2, 2), "SAME"), odd)
    assert [la["padding"] for la in symmetric["layers"]] == [[[1, 1], [1, 1]]]
    assert "also 'SAME''s" in symmetric["source"]["size_bound"][0]
    assert "imported at 21x19" in rfsearch.evaluate(symmetric, input_size=20).iloc[0]["error"]


SEVEN = jnp.asarray(np.random.default_rng(4).uniform(0.1, 1, (7, 7, 3, 3)))


def seven(x):
    return lax.conv_general_dilated(x, SEVEN.astype(x.dtype), (1, 1), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@pytest.mark.parametrize("mode, pads", [("reflect", ((3, 3), (3, 2))),
                                        ("symmetric", ((2, 1), (2, 2))),
                                        ("edge", ((3, 3), (1, 0))),
                                        ("constant", ((1, 2), (0, 1)))])
def test_jnp_pad_copying_units_is_read_off_the_call(mode, pads):
    """jnp.pad's reflect and edge modes (slices and flips inside one call; Flax's and
    Equinox's REFLECT padding) were refused as a flip and a spatial concatenation."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))

    def f(x):
        return seven(jnp.pad(conv3(x), ((0, 0), *pads, (0, 0)), mode=mode))

    spec = rfsearch.from_jax(f, x)
    assert [la["padding"] for la in spec["layers"] if la["op"] == "pad"] == [
        [list(p) for p in pads]]
    check(spec, f, x, (1, 2))


def test_jnp_pad_reading_the_far_side_or_a_statistic_is_refused():
    x = np.zeros((1, 12, 10, 3))
    for mode in ("wrap", "mean"):
        with pytest.raises(rfsearch.SpecError, match=r"jax\.numpy\.pad.*not copies of the near"):
            rfsearch.from_jax(lambda x, mode=mode: seven(jnp.pad(
                conv3(x), ((0, 0), (3, 3), (3, 3), (0, 0)), mode=mode)), x)
    with pytest.raises(rfsearch.SpecError, match="reflect padding 'pad' repeats input units"):
        rfsearch.from_jax(lambda x: conv3(jnp.pad(conv3(x), ((0, 0), (2, 2), (2, 2), (0, 0)),
                                                  mode="reflect")), x)


def test_review_fixes_pads_loops_softmax_and_reshapes():
    """From a review: jnp.pad 'maximum' padded on one side read as edge, a 1-unit axis's
    pads split wrongly, bf16 maps over 256 refused; a scan's summary ys refused; nested
    loops unrolled without a bound; a softmax's two statistics counted twice; a VALID
    stride-2 pool noted as 'SAME'; (N, H, W*C) before a dense read as upsampling."""
    x = np.random.default_rng(0).uniform(0.1, 1, (1, 12, 10, 3))

    def padded(mode, pads, y=None):
        return lambda x: seven(jnp.pad(conv3(x) if y is None else y, ((0, 0), *pads, (0, 0)),
                                       mode=mode))

    for mode, pads in (("maximum", ((0, 3), (0, 3))), ("minimum", ((3, 0), (3, 0)))):
        with pytest.raises(rfsearch.SpecError, match="not copies of the near border"):
            rfsearch.from_jax(padded(mode, pads), x)
    with pytest.raises(rfsearch.SpecError, match="on a one-unit axis"):
        rfsearch.from_jax(lambda x: seven(jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)),
                                                  mode="edge")), np.zeros((1, 1, 10, 3)))
    wide = rfsearch.from_jax(lambda x: seven(jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)),
                                                     mode="reflect")),
                             jnp.zeros((1, 300, 8, 3), jnp.bfloat16))
    assert [la["padding"] for la in wide["layers"] if la["op"] == "pad"] == [[[3, 3], [3, 3]]]

    def summaries(x):
        return lax.scan(lambda h, _: (conv3(h), conv3(h).mean()), x, None, length=2)[0]

    spec = rfsearch.from_jax(summaries, x)
    assert rfsearch.evaluate(spec, input_size=(12, 10)).iloc[0]["rf_h"] == 5
    with pytest.raises(rfsearch.SpecError, match="a loop over slices of the map"):
        rfsearch.from_jax(lambda x: lax.scan(lambda c, r: (c + r, c + r), jnp.zeros((10, 3)),
                                             conv3(x)[0])[1][None], x)  # ys alone reach it
    with pytest.raises(rfsearch.SpecError, match="a loop of 1240 steps with the loops"):
        rfsearch.from_jax(lambda x: lax.fori_loop(0, 40, lambda i, h: lax.fori_loop(
            0, 30, lambda j, g: g * 2.0, h), x), x)
    softmax = rfsearch.from_jax(lambda x: jax.nn.softmax(conv3(x), axis=(1, 2)), x)
    assert rfsearch.evaluate(softmax, input_size=(12, 10)).iloc[0]["rf_h"] == 2 * 12 + 1
    valid = rfsearch.from_jax(lambda x: nn.max_pool(x, (2, 2), (2, 2)), np.zeros((1, 20, 18, 3)))
    assert not valid["source"]["assumptions"]
    dense = rfsearch.from_jax(lambda x: conv3(x).reshape(1, 12, 30) @ jnp.ones((30, 4)), x)
    assert [la["op"] for la in dense["layers"]] == ["conv", "dense", "dense"]

# ---------------------------------------------------------------- errors and options

class Unmapped(nnx.Module):
    def __init__(self, rngs=None):
        self.conv = nnx.Conv(3, 4, (3, 3), padding="VALID", rngs=rngs or nnx.Rngs(0))

    def __call__(self, x):
        y = self.conv(x)
        return jnp.flip(y, 2) + jnp.cumsum(y, axis=2)


def test_unsupported_primitives_are_listed_in_one_message():
    with pytest.raises(rfsearch.SpecError) as err:
        rfsearch.from_jax(Unmapped(), np.zeros((1, 16, 16, 3)))
    message = str(err.value)
    assert "\n" not in message and "2 unsupported ops" in message
    assert "jax.lax.rev" in message and "jax.lax.cumsum" in message
    assert "test_import_jax.py" in message and "in Unmapped.__call__" in message
    assert "outputs=" in message and "on_unsupported='identity'" in message
    spec = rfsearch.from_jax(Unmapped(), np.zeros((1, 16, 16, 3)), on_unsupported="identity")
    assert len(spec["source"]["identity"]) == 2
    cut = rfsearch.from_jax(Unmapped(), np.zeros((1, 16, 16, 3)), outputs="conv")
    assert [layer["name"] for layer in cut["layers"]] == ["conv"]


def test_an_unsupported_resize_is_never_read_as_identity():
    def lanczos(x):  # refused: its window is not a box of the units it weighs
        return jax.image.resize(x, (1, 32, 32, 3), "lanczos3")

    with pytest.raises(rfsearch.SpecError, match="changes the map from 16x16 to 32x32"):
        rfsearch.from_jax(lanczos, np.zeros((1, 16, 16, 3)), on_unsupported="identity")


def data_dependent(x):
    return x * 2 if x.sum() > 0 else x


@pytest.mark.parametrize("fn, args, match", [
    (data_dependent, (np.ones((1, 8, 8, 3)),), "data-dependent control flow"),
    (Unmapped(), (np.ones((1, 8, 8, 5)),), "cannot be traced"),
    (Unmapped(), (), "give the example input"),
    (Unmapped(), (3.0,), "must be the input array"),
])
def test_bad_models_and_inputs_are_one_clear_error(fn, args, match):
    with pytest.raises(rfsearch.SpecError, match=match) as err:
        rfsearch.from_jax(fn, *args)
    assert "\n" not in str(err.value)


def test_unknown_outputs_and_options_are_refused():
    x = np.zeros((1, 16, 16, 3))
    with pytest.raises(rfsearch.SpecError, match="name no module"):
        rfsearch.from_jax(Unmapped(), x, outputs="layer9")
    with pytest.raises(rfsearch.SpecError, match="on_unsupported"):
        rfsearch.from_jax(Unmapped(), x, on_unsupported="skip")
    with pytest.raises(rfsearch.SpecError, match="gates"):
        rfsearch.from_jax(Unmapped(), x, gates="nearby")


@pytest.mark.parametrize("method", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("n", [1, 2, 5])
def test_a_resize_of_a_small_map_keeps_its_method(method, n):
    """A map of one or two units shows no impulse the whole reach of a cubic kernel: the
    method is read by rerunning the call, and the boxes hold the gradient's support."""
    def f(x):
        return jax.image.resize(x, (1, 3 * n, 3 * n, 1), method)

    x = np.random.default_rng(0).uniform(size=(1, n, n, 1))
    spec = rfsearch.from_jax(f, x)
    assert [layer.get("mode") for layer in spec["layers"]] == [method]
    check(spec, f, x, (1, 2))


def test_supported_ops_lists_the_mapped_primitives():
    mapped = rfsearch.importers.supported_ops("jax")
    assert {"conv_general_dilated", "reduce_window_max", "jax.image.resize", "pad",
            "concatenate"} <= set(mapped)


def test_docs_flax_example_runs_as_written(capsys):
    """docs/importers.md's Flax example prints the table shown below it."""
    with open("docs/importers.md") as fh:
        text = fh.read().split("rfsearch.from_jax(fn", 1)[1]
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    shown = text.split("```text\n", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/importers.md", "exec"), {})
    assert capsys.readouterr().out == shown
