"""Library calls :func:`~rfsearch.importers.from_jax` reads whole instead of following
into them: what the call does is read off the call itself (its program, or its result on
a probe), since its inside (a resize's matrix products, a reflect pad's slices and flips)
maps to no layer one primitive at a time."""

from __future__ import annotations

import itertools
from functools import partial

import jax
import numpy as np

from .builder import Unsupported, Value
from .jax_ops import Eqn

# library calls read whole (what they do is read off the call), not followed into:
# jax.image.resize, and jnp.pad (whose reflect and edge modes are slices and flips)
OPAQUE_CALLS = {"_resize": "jax.image.resize", "_pad": "jax.numpy.pad"}


def read_call(e: Eqn, sub, eqn) -> Value:
    """The layer of an OPAQUE_CALLS call (``sub``: its jaxpr, ``eqn``: the equation)."""
    if e.prim == "_pad":
        return copied_pad(e, pad_reading(sub, eqn, e.values[0]))
    return resize(e, resize_method(sub, eqn))


# jax.image.resize's methods; the spec has modes of the same names but for lanczos
RESIZE_METHODS = ("nearest", "linear", "cubic", "lanczos3", "lanczos5")
SPEC_MODES = ("nearest", "linear", "cubic")


def resize(e: Eqn, method: str) -> Value:
    """jax.image.resize by an integer factor; ``method``: its method (RESIZE_METHODS)."""
    x = e.values[0]
    source = x.pooled  # a global summary kept with its dims (keepdims) stands at the map's
    axes = source.axes if not x.spatial and source is not None and \
        len(e.out) == source.rank else x.axes
    out = [e.out[a] for a in axes]
    if all(n == 1 for n in x.sizes) and source is not None and source.sizes == tuple(out):
        node = e.builder.broadcast(e.base, source, "a global summary resized to the map")
        return Value(node, axes, tuple(out), len(e.out))
    if not x.spatial:
        raise Unsupported("a resize of features that are no map's summary")
    if any(m % n or m < n for n, m in zip(x.sizes, out, strict=True)):
        raise Unsupported(f"a resize from {list(x.sizes)} to {out} is not an integer "
                          "upsampling")
    if method not in SPEC_MODES:
        raise Unsupported(f"a resize method no spec mode reads like ({method})")
    return e.layer("upsample", [x], factor=[m // n for n, m in zip(x.sizes, out,
                                                                   strict=True)],
                   mode=method)


def copied_pad(e: Eqn, readings: list) -> Value:
    """A jnp.pad call, read off its (before, after, mode) per spatial axis: zero padding
    in the spec; padding that copies units (reflect, symmetric, edge) is checked where a
    window reads it (:mod:`.repeats`), and the far side (wrap) refused."""
    x = e.values[0]
    if any(r is None for r in readings):
        raise Unsupported("a jnp.pad whose padded units are not copies of the near border "
                          "(wrap reads the far side of the map; a statistic reads all of it)")
    modes = {mode for _, _, mode in readings if mode != "constant"}
    padding = [[before, after] for before, after, _ in readings]
    if all(p == [0, 0] for p in padding):
        return Value(x.node, x.axes, x.sizes, len(e.out), x.pooled)
    out = e.layer("pad", [x], padding=padding)
    mode = "reflect" if modes & {"reflect", "symmetric"} else "edge" if modes else "constant"
    e.builder.padded(out.node, mode, ("reflect", "edge"))  # symmetric reaches no further
    return out


def pad_reading(sub, eqn, x: Value) -> list[tuple[int, int, str] | None]:
    """Per spatial axis of ``x``, (before, after, mode) of a jnp.pad call: the call run on
    a probe numbering the units along that axis 1..n (0 where the pad writes a constant);
    None where a padded unit is no copy a mode makes (wrap's far side, a statistic)."""
    from jax.extend.core import jaxpr_as_fun

    data = eqn.invars[0].aval
    rest = [np.zeros(v.aval.shape, v.aval.dtype) for v in eqn.invars[1:]]
    readings = []
    for a in x.axes:
        n = data.shape[a]
        numbers = np.arange(1, n + 1).reshape([n if d == a else 1 for d in range(x.rank)])
        (got,) = jaxpr_as_fun(sub)(np.broadcast_to(numbers, data.shape).astype(data.dtype),
                                   *rest)
        lines = np.moveaxis(np.asarray(got, np.float64), a, -1).reshape(-1, got.shape[a])
        line = lines[np.argmax(lines.sum(axis=1))]  # one through the map, not its padding
        exact = np.array_equal(line, np.rint(line))
        readings.append(_copies(np.rint(line).astype(np.int64) - 1, n) if exact else None)
    return readings


def _copies(src: np.ndarray, n: int) -> tuple[int, int, str] | None:
    """(before, after, mode) of a padded line whose unit j copies input unit src[j] (-1: a
    constant): the map's n units in order, padded by a mode's copies on both sides."""
    start = next((b for b in range(len(src) - n + 1)
                  if np.array_equal(src[b:b + n], np.arange(n))), None)
    if start is None:
        return None
    left, right = src[:start][::-1], src[start + n:]  # nearest padded unit first
    for mode, near, far in (("constant", lambda t: -1, lambda t: -1),
                            ("reflect", lambda t: t + 1, lambda t: n - 2 - t),
                            ("symmetric", lambda t: t, lambda t: n - 1 - t),
                            ("edge", lambda t: 0, lambda t: n - 1)):
        if all(v == near(t) for t, v in enumerate(left)) and \
                all(v == far(t) for t, v in enumerate(right)):
            return start, len(right), mode
    return None


def resize_method(sub, eqn) -> str:
    """The method of a jax.image.resize call (an impulse's reach, cut by the border of a
    small map, would read a cubic as linear): the method whose own trace at the call's
    shapes is the call's program, else (another JAX's trace) whose result on a random map
    is the call's."""
    from jax.extend.core import jaxpr_as_fun

    aval_in, aval_out = eqn.invars[0].aval, eqn.outvars[0].aval
    probe = np.random.default_rng(0).uniform(1, 2, aval_in.shape).astype(aval_in.dtype)

    def resized(method: str, antialias: bool):
        return partial(jax.image.resize, shape=aval_out.shape, method=method,
                       antialias=antialias)

    program = str(sub)
    for method, antialias in itertools.product(RESIZE_METHODS, (True, False)):
        traced = jax.make_jaxpr(resized(method, antialias))(probe).jaxpr.eqns
        if len(traced) == 1 and str(traced[0].params.get("jaxpr")) == program:
            return method
    (got,) = jaxpr_as_fun(sub)(probe)
    for method in RESIZE_METHODS:
        want = resized(method, True)(probe)
        if np.allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6):
            return method
    return "unknown"
