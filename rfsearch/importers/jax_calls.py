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
    up = e.layer("upsample", [x], factor=[m // n for n, m in zip(x.sizes, out, strict=True)],
                 mode=method)
    e.builder.bound(up.node, f"a resize to {'x'.join(map(str, out))} units",  # (a shape)
                    guarded=True)
    return up


def copied_pad(e: Eqn, readings: list) -> Value:
    """A jnp.pad call, read off its (before, after, mode) per spatial axis: zero padding
    in the spec; padding that copies units (reflect, symmetric, edge) is checked where a
    window reads it (:mod:`.repeats`), and the far side (wrap) refused."""
    x = e.values[0]
    if any(r is None for r in readings):
        raise Unsupported("a jnp.pad whose padded units are not copies of the near border "
                          "(wrap reads the far side of the map; a statistic reads all of it; "
                          "on a one-unit axis where the copies start is unknown)")
    modes = {mode for _, _, mode in readings if mode != "constant"}
    padding = [[before, after] for before, after, _ in readings]
    if all(p == [0, 0] for p in padding):
        return Value(x.node, x.axes, x.sizes, len(e.out), x.pooled)
    out = e.layer("pad", [x], padding=padding)
    mode = "reflect" if modes & {"reflect", "symmetric"} else "edge" if modes else "constant"
    e.builder.padded(out.node, mode, ("reflect", "edge"))  # symmetric reaches no further
    return out


DIGIT = 64  # a probe's values stay within 1..DIGIT: exact in bfloat16 and in int8


def pad_reading(sub, eqn, x: Value) -> list[tuple[int, int, str] | None]:
    """Per spatial axis of ``x``, (before, after, mode) of a jnp.pad call, read off the call
    run on probes that number the units along that axis, once from each end (a statistic
    such as maximum or minimum reads as the same copy from one end only); None where a
    padded unit is no copy a mode makes (wrap's far side, a statistic)."""
    from jax.extend.core import jaxpr_as_fun

    data = eqn.invars[0].aval
    rest = [np.zeros(v.aval.shape, v.aval.dtype) for v in eqn.invars[1:]]

    def run(probe: np.ndarray) -> np.ndarray:
        (got,) = jaxpr_as_fun(sub)(probe.astype(data.dtype), *rest)
        return np.asarray(got, np.float64)

    readings = []
    for a in x.axes:
        ways = [_source_units(run, data.shape, a, reverse) for reverse in (False, True)]
        agree = ways[0] is not None and ways[1] is not None and np.array_equal(*ways)
        readings.append(_copies(ways[0], data.shape[a]) if agree else None)
    return readings


def _source_units(run, shape: tuple, a: int, reverse: bool) -> np.ndarray | None:
    """The input unit each unit of padded axis ``a`` holds (-1: the pad's constant), from
    probes numbering the units (from the far end with ``reverse``) one base-DIGIT digit
    at a time; None where a value is no digit (a statistic)."""
    n = shape[a]
    number = np.arange(n)[::-1] if reverse else np.arange(n)
    held, constant, place = 0, None, 1
    while place == 1 or place < n:
        digit = (number // place) % DIGIT + 1  # 1..DIGIT: 0 is the pad's constant
        got = run(np.broadcast_to(digit.reshape([-1 if d == a else 1
                                                 for d in range(len(shape))]), shape))
        lines = np.moveaxis(got, a, -1).reshape(-1, got.shape[a])
        line = lines[np.argmax((lines != 0).sum(axis=1))]  # through the map, not a padding
        values = np.rint(line).astype(np.int64)
        if not np.array_equal(line, values) or values.min() < 0 or values.max() > DIGIT:
            return None
        if constant is not None and not np.array_equal(values == 0, constant):
            return None
        constant = values == 0
        held, place = held + (values - 1) * place, place * DIGIT
    units = (n - 1 - held) if reverse else held
    return np.where(constant, -1, units)


def _copies(src: np.ndarray, n: int) -> tuple[int, int, str] | None:
    """(before, after, mode) of a padded line whose unit j copies input unit src[j] (-1: a
    constant): the map's n units in order, padded by a mode's copies on both sides. On a
    one-unit axis every copy is unit 0, so where they start is unknown: None."""
    start = next((b for b in range(len(src) - n + 1)
                  if np.array_equal(src[b:b + n], np.arange(n))), None)
    if start is None or (n == 1 and (src >= 0).sum() > 1):
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
