"""The periodic program: exact receptive fields when the jump is a fraction.

After upsampling, a transposed convolution or a pixel shuffle, output units no longer
all read the same window shifted by one jump: their input boxes repeat with a period.
Per node and per axis the state is

* ``T``, ``K``: the period in output units and the input units one period advances, so
  the jump is ``J = K / T`` (``T = 1`` and ``K = J`` for the integer networks of the
  article);
* ``lo[φ]``, ``hi[φ]`` (``0 <= φ < P``): the input box of output unit ``φ``; unit
  ``y = φ + q T`` reads ``[lo[φ] + q K, hi[φ] + q K]``;
* ``size``, ``flags`` and ``fault`` as in :mod:`rfsearch.recurrence`.

A layer reads ``[a(y), b(y)]`` with ``a(y + D) = a(y) + N`` (:mod:`rfsearch.reads`), so
its output has period ``T' = D T / gcd(N, T)`` and ``K' = K N / gcd(N, T)``, and
``lo'(y) = lo(a(y))``, ``hi'(y) = hi(b(y))``. A merge takes the union on the least common
period, and is aligned when the jumps are equal and every unit's box centre agrees.
Networks that need none of this (2-D, integer ops) never run here: the integer kernel of
:mod:`rfsearch.kernel` computes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import ops
from . import recurrence as R
from .encode import depth_bucket, fan_in_bucket
from .reads import RESAMPLE, WHOLE, WINDOW, layer_reads
from .spec import Network

MAX_PERIOD = 256  # longest period P a network may need (product of its resampling factors)
LIMITS = R.LIMITS[np.dtype(np.int64)]
WIDE = ("k_eff", "s", "pb", "pa", "D", "mul", "add", "step")  # [L, A, N] fields


@dataclass
class PeriodicBatch:
    """Periodic networks of one dimensionality as padded arrays (node 0: the input).

    kind, same, ceil: [L, N]; WIDE fields: [L, A, N]; a0, b0: [L, A, DM, N];
    preds: [L, M, N] (-1: empty slot); output: [N]; period: [N] the bound on any
    node's period (the product of the layers' D)."""

    kind: np.ndarray
    same: np.ndarray
    ceil: np.ndarray
    fields: dict[str, np.ndarray]
    a0: np.ndarray
    b0: np.ndarray
    preds: np.ndarray
    output: np.ndarray
    period: np.ndarray


def _bucket(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def encode_periodic(networks: list[Network]) -> PeriodicBatch:
    """Arrays of ``networks`` (all of one ``dims``), padded with identity nodes."""
    n, dims = len(networks), networks[0].dims
    L = depth_bucket(max(len(net.layers) for net in networks) + 1)
    M = fan_in_bucket(max(len(la.inputs) for net in networks for la in net.layers))
    described = [[[layer_reads(la, a) for a in range(dims)] for la in net.layers]
                 for net in networks]
    DM = _bucket(max([1] + [r["D"] for net in described for la in net for r in la
                            if r["kind"] == RESAMPLE]))
    kind = np.full((L, n), WINDOW, np.int8)
    same, ceil = np.zeros((L, n), np.int8), np.zeros((L, n), bool)
    wide = {f: np.zeros((L, dims, n), np.int64) for f in WIDE}
    for f in ("k_eff", "s", "D", "mul", "step"):
        wide[f][:] = 1
    a0, b0 = np.zeros((L, dims, DM, n), np.int64), np.zeros((L, dims, DM, n), np.int64)
    preds = np.full((L, M, n), -1, np.int32)
    period = np.ones((dims, n), np.int64)  # per axis: the product of its layers' D
    for j, (net, desc) in enumerate(zip(networks, described, strict=True)):
        for i, (layer, axes) in enumerate(zip(net.layers, desc, strict=True)):
            node = i + 1
            preds[node, :len(layer.inputs), j] = layer.inputs
            kind[node, j], same[node, j], ceil[node, j] = axes[0]["kind"], layer.same, \
                layer.ceil_mode
            for a, r in enumerate(axes):
                for f in WIDE:
                    if f in r:
                        wide[f][node, a, j] = r[f]
                if r["kind"] == RESAMPLE:
                    a0[node, a, :r["D"], j], b0[node, a, :r["D"], j] = r["a0"], r["b0"]
                    period[a, j] = min(period[a, j] * r["D"], MAX_PERIOD + 1)
    preds[1:, 0, :] = np.where(preds[1:, 0, :] < 0, np.arange(L - 1)[:, None], preds[1:, 0, :])
    output = np.array([net.output for net in networks], np.int32)
    return PeriodicBatch(kind, same, ceil, wide, a0, b0, preds, output, period.max(axis=0))


def box_at(values, T, K, x):
    """A periodic box table ``values`` [A, P, N] (period ``T``, advance ``K``: [A, N]) at
    units x [A, Q, N]: values[x mod T] + (x div T) K."""
    q = jnp.floor_divide(x, T[:, None, :])
    return jnp.take_along_axis(values, x - q * T[:, None, :], axis=1) + q * K[:, None, :]


def _merge(xs: dict, P: int):
    """Union of M inputs (fields [M, A, ...]) on their least common period; the merged
    state and the per-axis error code (ERR_JUMP, ERR_SIZE or ERR_NONE)."""
    T, K = xs["T"], xs["K"]
    common = T[0]
    for m in range(1, T.shape[0]):
        common = jnp.lcm(common, T[m])
    phi = jnp.broadcast_to(jnp.arange(P)[None, :, None], (T.shape[1], P, T.shape[2]))
    lo = jnp.stack([box_at(xs["lo"][m], T[m], K[m], phi) for m in range(T.shape[0])])
    hi = jnp.stack([box_at(xs["hi"][m], T[m], K[m], phi) for m in range(T.shape[0])])
    same_jump = (K * T[:1] == K[:1] * T).all(axis=0)  # [A, N]
    inside = phi < common[:, None, :]
    centred = ((lo + hi == lo[:1] + hi[:1]) | ~inside[None]).all(axis=(0, 2)) & same_jump
    flags_and = jnp.bitwise_and.reduce(xs["flags"], axis=0)
    flags_or = jnp.bitwise_or.reduce(xs["flags"], axis=0)
    aligned = jnp.where(centred, flags_and & R.ALIGNED, 0)
    certain = jnp.where(~centred & ((flags_and & R.KNOWN) != 0), R.MISALIGNED, 0)
    flags = (flags_and & R.KNOWN) | aligned | certain | (
        flags_or & (R.UNBOUNDED | R.OVERFLOW | R.MISALIGNED))
    same_size = (xs["size"] == xs["size"][:1]).all(axis=0)
    code = jnp.where(~same_jump, R.ERR_JUMP, jnp.where(~same_size, R.ERR_SIZE, R.ERR_NONE))
    state = {"lo": lo.min(axis=0), "hi": hi.max(axis=0), "T": common,
             "K": K[0] * common // T[0], "size": xs["size"][0], "flags": flags,
             "fault": xs["fault"].min(axis=0)}
    return state, code


def _window_sizes(n, pb, pa, k_eff, s, ceil):
    """Output sizes of windows: floor, or PyTorch's ceil mode."""
    span = n + pb + pa - k_eff
    down = jnp.floor_divide(span, s) + 1
    up = -jnp.floor_divide(-span, s) + 1
    up = up - ((up - 1) * s >= n + pb)
    return jnp.where(ceil, up, down)


def _apply(x: dict, p: dict, P: int, sized: bool):
    """One node's layer after its merge: the new state and its 'map became empty' mask."""
    kind, flags, n = p["kind"][None, :], x["flags"], x["size"]
    k_eff, s, pb, pa = p["k_eff"], p["s"], p["pb"], p["pa"]
    whole = kind == WHOLE
    if sized:
        k_eff = jnp.where(whole, jnp.maximum(n, 1), k_eff)
    else:  # the map size is unknown: the region is unbounded
        k_eff = jnp.where(whole, 1, k_eff)
        flags = flags | jnp.where(whole, R.UNBOUNDED, 0).astype(flags.dtype)
    same = (p["same"] != 0)[None, :]
    sb, sa = R.same_padding(k_eff, s, n if sized else None,
                            (p["same"] == ops.PAD_SAME_LOWER)[None, :])
    pb, pa = jnp.where(same, sb, pb), jnp.where(same, sa, pa)
    if not sized:  # 'same' with a stride pads by the size: unknown here
        unknown = same & (s > 1) & (k_eff > 1)
        flags = jnp.where(unknown, flags & ~R.KNOWN, flags).astype(flags.dtype)
    window = kind != RESAMPLE  # [1, N]
    D, N = jnp.where(window, 1, p["D"]), jnp.where(window, s, 1)
    phi = jnp.arange(P)[None, :, None]
    phase, period = phi % D[:, None, :], phi // D[:, None, :]
    first = jnp.where(window[:, None], phi * s[:, None] - pb[:, None],
                      jnp.take_along_axis(p["a0"], phase, axis=1) + period)
    last = jnp.where(window[:, None], first + k_eff[:, None] - 1,
                     jnp.take_along_axis(p["b0"], phase, axis=1) + period)
    lo, hi = _hull(x, first, last, p["step"], P)
    g = jnp.gcd(N, x["T"])
    T, K = D * x["T"] // g, x["K"] * N // g
    size = jnp.where(window, _window_sizes(n, pb, pa, k_eff, s, p["ceil"][None, :]),
                     p["mul"] * n + p["add"]) if sized else n
    overflow = ((T > P) | (K > LIMITS.param) | (jnp.abs(lo).max(axis=1) > LIMITS.position)
                | (jnp.abs(hi).max(axis=1) > LIMITS.position) | (size > LIMITS.param))
    flags = flags | jnp.where(overflow, R.OVERFLOW, 0).astype(flags.dtype)
    y = {"lo": lo, "hi": hi, "T": T, "K": K, "size": size, "flags": flags,
         "fault": x["fault"]}
    return y, (size < 1) if sized else None


def _hull(x: dict, first, last, step, P: int):
    """Boxes of units reading ``first, first + step, ..., last`` ([A, P, N] each): the
    union of the boxes read. Boxes need not grow with the unit (a cubic upsample reads one
    unit at an integer source and four around it), but ``lo(u + T) = lo(u) + K >= lo(u)``,
    so the least ``lo`` is among the first T units read, the largest ``hi`` among the
    last T."""
    T, K = x["T"], x["K"]
    lo, hi = box_at(x["lo"], T, K, first), box_at(x["hi"], T, K, last)
    if P == 1:  # period 1: boxes grow with the unit, the ends decide
        return lo, hi
    A, _, n = first.shape
    j = jnp.arange(1, P)[None, :, None, None]  # [1, P - 1, 1, 1]: further units read
    count = jnp.minimum((last - first) // step[:, None, :] + 1, T[:, None, :])  # [A, P, N]
    valid = j < count[:, None]  # [A, P - 1, P, N]
    offsets = j * step[:, None, None, :]

    def extreme(values, start, sign, reduce):
        units = (start[:, None] + sign * offsets).reshape(A, -1, n)
        found = box_at(values, T, K, units).reshape(A, P - 1, P, n)
        fill = jnp.iinfo(jnp.int64).max * sign  # never the extreme
        return reduce(jnp.where(valid, found, fill), axis=1)

    return (jnp.minimum(lo, extreme(x["lo"], first, 1, jnp.min)),
            jnp.maximum(hi, extreme(x["hi"], last, -1, jnp.max)))


def _input_state(input_size, A: int, P: int, n: int) -> dict:
    zero = jnp.zeros((A, n), jnp.int64)
    return {"lo": jnp.zeros((A, P, n), jnp.int64), "hi": jnp.zeros((A, P, n), jnp.int64),
            "T": zero + 1, "K": zero + 1,
            "size": jnp.broadcast_to(input_size[:, None], (A, n)).astype(jnp.int64),
            "flags": jnp.full((A, n), R.KNOWN | R.ALIGNED, jnp.int32),
            "fault": jnp.full((A, n), R.NO_FAULT, jnp.int32)}


@partial(jax.jit, static_argnames=("P", "sized"))
def propagate(params: dict, preds, input_size, *, P: int, sized: bool) -> dict:
    """Every node's state ([L, ...] fields) of a PeriodicBatch's arrays ``params`` (kind,
    same, ceil: [L, N]; WIDE fields [L, A, N]; a0, b0 [L, A, DM, N]), ``preds`` [L, M, N]
    and ``input_size`` [A] (ignored unless ``sized``)."""
    L, A, n = params["k_eff"].shape
    x0 = _input_state(input_size, A, P, n)
    buf = {k: jnp.zeros((L, *v.shape), v.dtype).at[0].set(v) for k, v in x0.items()}

    def step(buf, xs):
        p, pred, node = xs
        slots = R.input_slots(pred)  # [M, N]
        gathered = {k: jnp.take_along_axis(v, _index(slots, v.ndim), axis=0)
                    for k, v in buf.items()}  # [M, A, ..., N]
        x, code = _merge(gathered, P)
        y, empty = _apply(x, p, P, sized)
        if sized:
            code = jnp.where(code != R.ERR_NONE, code, jnp.where(empty, R.ERR_EMPTY, R.ERR_NONE))
        own = jnp.where(code == R.ERR_NONE, R.NO_FAULT, node * R.FAULT_CODES + code)
        y["fault"] = jnp.minimum(y["fault"], own).astype(jnp.int32)
        return {k: lax.dynamic_update_index_in_dim(buf[k], y[k], node, 0) for k in buf}, None

    nodes = jnp.arange(1, L, dtype=jnp.int32)
    xs = ({k: v[1:] for k, v in params.items()}, preds[1:], nodes)
    buf, _ = lax.scan(step, buf, xs)
    return buf


def _index(slots, ndim: int):
    """Gather indices [M, 1, ..., N] for a buffer field of ``ndim`` dims ([L, A, ..., N])."""
    return slots.reshape(slots.shape[0], *(1,) * (ndim - 2), slots.shape[1])
