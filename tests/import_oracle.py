"""The importers' gradient oracle, shared by the importers' tests: every output unit's
gradient support (computed by the framework) against rfsearch's box for that unit, and
the supports of a JAX function (Flax, Equinox, Haiku, Keras on the JAX backend)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rfsearch.periodic_eval import boxes, output_states
from rfsearch.spec import parse_network


def crops(spec: dict) -> bool:
    """Whether a layer cuts units off a map (crop, negative padding, a transposed
    convolution's padding): then a box end inside the input may be read only through a
    cut-off unit, which the article's virtual coordinates keep and the framework does not
    compute, so only containment is checked."""
    def negative(layer):
        pad = np.asarray(layer.get("padding", 0), dtype=object)
        return any(int(v) < 0 for v in np.ravel(pad.tolist()) if not isinstance(v, str))

    return any(layer["op"] == "crop" or negative(layer) or (
        layer["op"] == "conv_transpose" and np.any(np.asarray(layer["padding"]) > 0))
        for layer in spec["layers"])


def check_boxes(spec: dict, supports, size: tuple[int, ...]) -> None:
    """Every output unit's gradient support lies in its box and, unless the network
    crops (:func:`crops`), reaches the box's ends that lie inside the input."""
    state = output_states([parse_network(spec)], size)
    exact = not crops(spec)
    for a, (axis, n) in enumerate(zip(supports, size, strict=True)):
        lo, hi = boxes(state, a, 0)
        assert len(lo) == len(axis), f"axis {a}: {len(lo)} units, torch has {len(axis)}"
        for i, seen in enumerate(axis):
            if not len(seen):
                continue
            assert lo[i] <= seen.min() and seen.max() <= hi[i], (a, i, lo[i], hi[i], seen)
            if exact and lo[i] >= 0:
                assert seen.min() == lo[i], (a, i, "start", lo[i], seen)
            if exact and hi[i] <= n - 1:
                assert seen.max() == hi[i], (a, i, "end", hi[i], seen)


def gradient_supports(f, x: np.ndarray, axes: tuple[int, ...]) -> list[list[np.ndarray]]:
    """Per spatial axis, per output index along it: the input indices its gradient
    reaches (float64; the output keeps the input's spatial dimensions). One backward
    pass per output index, all in one batch."""
    with jax.enable_x64(True):
        x = jnp.asarray(x, dtype=jnp.float64)
        y = jax.eval_shape(f, x)
        cts = []
        for a in axes:
            n = y.shape[a]
            shape = [n] + [1] * len(y.shape)
            shape[1 + a] = n
            cts.append(jnp.broadcast_to(jnp.eye(n, dtype=y.dtype).reshape(shape),
                                        (n, *y.shape)))
        # not under jit: XLA (seen with jax 0.10.2 on CPU) compiles the transpose of a slice of a
        # strided reduce_window wrongly (the gradient of a unit lands on every other row)
        grads = jax.vmap(jax.vjp(f, x)[1])(jnp.concatenate(cts))[0]
        out, start = [], 0
        for a in axes:
            other = tuple(d for d in range(1, grads.ndim) if d != 1 + a)
            reach = np.asarray(jnp.abs(grads[start:start + y.shape[a]]).sum(axis=other))
            out.append([np.flatnonzero(row) for row in reach])
            start += y.shape[a]
    return out
