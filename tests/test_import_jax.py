"""rfsearch.from_jax against JAX itself.

The gradient oracle of the PyTorch importer's tests (:mod:`import_oracle`), with the
gradients from ``jax.vjp`` in float64: models with positive weights, identity activations
and average pooling. It runs on random chains and DAGs of lax primitives on 1, 2 and 3
axes, on Flax NNX versions of the hand-written architectures (which must also give the
rows of their PyTorch twins, layer names included), and on small linen, Equinox and Haiku
models, whose layer names come from their module paths.
"""

from __future__ import annotations

import flax_models as fm
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from flax import nnx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from import_oracle import check_boxes
from jax import lax

import rfsearch

C = 4  # channels of the random models


def gradient_supports(f, x: np.ndarray, axes: tuple[int, ...]) -> list[list[np.ndarray]]:
    """Per spatial axis, per output index along it: the input indices its gradient
    reaches (float64; the output keeps the input's spatial dimensions)."""
    with jax.enable_x64(True):
        x = jnp.asarray(x, dtype=jnp.float64)
        y, vjp = jax.vjp(f, x)
        out = []
        for a in axes:
            n = y.shape[a]
            shape = [n] + [1] * y.ndim
            shape[1 + a] = n
            cts = jnp.broadcast_to(jnp.eye(n, dtype=y.dtype).reshape(shape), (n, *y.shape))
            (grads,) = jax.vmap(vjp)(cts)
            other = tuple(d for d in range(1, grads.ndim) if d != 1 + a)
            reach = np.asarray(jnp.abs(grads).sum(axis=other))
            out.append([np.flatnonzero(row) for row in reach])
    return out


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

def positive(model: nnx.Module):
    """The model as a function of its input, with every parameter positive (float64)."""
    graphdef, state = nnx.split(model)
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda a: rng.uniform(0.1, 1.1, np.shape(a)), state)
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
    spec = rfsearch.from_jax(build(fm), x)
    axes = tuple(range(1, len(shape) - 1))
    check(spec, positive(build(fm, act=identity, pool="avg")), x, axes)


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_flax_twins_give_the_rows_of_the_torch_models(name):
    torch = pytest.importorskip("torch")
    import torch_models

    build, shape = ARCHITECTURES[name]
    torch_shape = (shape[0], shape[-1], *shape[1:-1])
    twin = rfsearch.from_torch(build(torch_models), torch.rand(torch_shape))
    spec = rfsearch.from_jax(build(fm), np.zeros(shape))
    size = "x".join(map(str, shape[1:-1]))
    rows = rfsearch.evaluate(spec, input_size=size, per_layer=True)
    pd.testing.assert_frame_equal(rows, rfsearch.evaluate(twin, input_size=size,
                                                          per_layer=True))


def test_flax_resnet18_gives_the_published_geometry_with_torchvisions_names():
    spec = rfsearch.from_jax(fm.ResNet18(), np.zeros((1, 224, 224, 3)), outputs="layer4")
    row = rfsearch.evaluate(spec, input_size=224).iloc[0]
    assert (row["rf_h"], row["stride_h"], row["padding_h"]) == (435, 32, 217)
    names = [layer["name"] for layer in spec["layers"]]
    assert names[:4] == ["conv1", "bn1", "relu", "maxpool"]
    assert {"layer1.0.conv1", "layer2.0.downsample.0", "layer4.1.conv2", "layer4.1.add",
            "layer4.1.relu:2"} <= set(names)
    assert spec["source"]["tracer"] == "jax.make_jaxpr (flax.nnx)"
    assert spec["source"]["input_size"] == "224x224"
