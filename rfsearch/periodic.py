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
    node's period (the product of the layers' D); reads: the most input units an output
    unit of a window or resampling layer reads."""

    kind: np.ndarray
    same: np.ndarray
    ceil: np.ndarray
    fields: dict[str, np.ndarray]
    a0: np.ndarray
    b0: np.ndarray
    preds: np.ndarray
    output: np.ndarray
    period: np.ndarray
    reads: int  # the most units any output unit reads (whole-map layers aside)


def pow2_bucket(n: int) -> int:
    """The least power of two >= n (table and period sizes: few shapes to compile)."""
    return 1 << max(0, int(n) - 1).bit_length()


def encode_periodic(networks: list[Network], in_sizes: np.ndarray | None = None
                    ) -> PeriodicBatch:
    """Arrays of ``networks`` (all of one ``dims``), padded with identity nodes;
    ``in_sizes`` [L, A, N]: each node's input map size (what ``align_corners`` reads)."""
    n, dims = len(networks), networks[0].dims
    L = depth_bucket(max(len(net.layers) for net in networks) + 1)
    M = fan_in_bucket(max(len(la.inputs) for net in networks for la in net.layers))
    described = [[[layer_reads(la, a, None if in_sizes is None else int(in_sizes[i + 1, a, j]))
                   for a in range(dims)] for i, la in enumerate(net.layers)]
                 for j, net in enumerate(networks)]
    DM = pow2_bucket(max([1] + [r["D"] for net in described for la in net for r in la
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
    reads = np.where(kind[:, None] == RESAMPLE, (b0 - a0).max(axis=2) // wide["step"] + 1,
                     (wide["k_eff"] - 1) // wide["step"] + 1)
    return PeriodicBatch(kind, same, ceil, wide, a0, b0, preds, output, period.max(axis=0),
                         int(reads.max()))


def box_at(values, T, K, x, M: int = 0):
    """A box table ``values`` [A, P, N] at units x [A, Q, N]. Periodic (``M = 0``): period
    ``T``, advance ``K`` ([A, N]), values[x mod T] + (x div T) K. Unit by unit (``M > 0``:
    the table holds units -M .. P - M - 1): values[x + M], clipped (:func:`known_at` says
    where that is not the unit's box)."""
    if M:
        return jnp.take_along_axis(values, jnp.clip(x + M, 0, values.shape[1] - 1), axis=1)
    q = jnp.floor_divide(x, T[:, None, :])
    return jnp.take_along_axis(values, x - q * T[:, None, :], axis=1) + q * K[:, None, :]


def known_at(known, x, M: int):
    """Unit by unit: whether units x [A, Q, N] lie in the table and have known boxes."""
    inside = (x + M >= 0) & (x + M < known.shape[1])
    return inside & jnp.take_along_axis(known, jnp.clip(x + M, 0, known.shape[1] - 1), axis=1)


def _real(size, P: int, M: int):
    """[A, P, N]: the table entries that are units of the map (0 .. size - 1)."""
    unit = jnp.arange(P)[None, :, None] - M
    return (unit >= 0) & (unit < size[:, None, :])


def _merge(xs: dict, P: int, M: int):
    """Union of M inputs (fields [M, A, ...]) on their least common period (unit by unit:
    on the shared table); the merged state and the per-axis error code (ERR_JUMP, ERR_SIZE
    or ERR_NONE)."""
    T, K = xs["T"], xs["K"]
    g = jnp.gcd(K, T)
    same_jump = ((K // g == K[:1] // g[:1]) & (T // g == T[:1] // g[:1])).all(axis=0)  # [A, N]
    if M:
        common, lo, hi = T[0], xs["lo"], xs["hi"]
        known = xs["known"].all(axis=0)
        inside = _real(xs["size"][0], P, M) & known
    else:
        common = T[0]
        for m in range(1, T.shape[0]):
            common = jnp.lcm(common, T[m])
        phi = jnp.broadcast_to(jnp.arange(P)[None, :, None], (T.shape[1], P, T.shape[2]))
        lo = jnp.stack([box_at(xs["lo"][m], T[m], K[m], phi) for m in range(T.shape[0])])
        hi = jnp.stack([box_at(xs["hi"][m], T[m], K[m], phi) for m in range(T.shape[0])])
        known, inside = xs["known"][0], phi < common[:, None, :]
    centred = ((lo + hi == lo[:1] + hi[:1]) | ~inside[None]).all(axis=(0, 2)) & same_jump
    flags_and = jnp.bitwise_and.reduce(xs["flags"], axis=0)
    flags_or = jnp.bitwise_or.reduce(xs["flags"], axis=0)
    aligned = jnp.where(centred, flags_and & R.ALIGNED, 0)
    certain = jnp.where(~centred & ((flags_and & R.KNOWN) != 0), R.MISALIGNED, 0)
    flags = (flags_and & R.KNOWN) | aligned | certain | (
        flags_or & (R.UNBOUNDED | R.OVERFLOW | R.MISALIGNED | R.MIXED))
    same_size = (xs["size"] == xs["size"][:1]).all(axis=0)
    if M:  # unit by unit, different jumps still have exact boxes: no single stride
        flags = flags | jnp.where(same_jump, 0, R.MIXED).astype(flags.dtype)
        same_jump = jnp.ones_like(same_jump)
    code = jnp.where(~same_jump, R.ERR_JUMP, jnp.where(~same_size, R.ERR_SIZE, R.ERR_NONE))
    state = {"lo": lo.min(axis=0), "hi": hi.max(axis=0), "T": common,
             "K": K[0] * common // T[0], "size": xs["size"][0], "flags": flags,
             "fault": xs["fault"].min(axis=0), "known": known}
    return state, code


def _window_sizes(n, pb, pa, k_eff, s, ceil):
    """Output sizes of windows: floor, or PyTorch's ceil mode."""
    span = n + pb + pa - k_eff
    down = jnp.floor_divide(span, s) + 1
    up = -jnp.floor_divide(-span, s) + 1
    up = up - ((up - 1) * s >= n + pb)
    return jnp.where(ceil, up, down)


def _padding(x: dict, p: dict, k_eff, sized: bool):
    """(pad before, pad after, flags): 'same' padding resolved where the size allows."""
    s, flags, n = p["s"], x["flags"], x["size"]
    same = (p["same"] != 0)[None, :]
    sb, sa = R.same_padding(k_eff, s, n if sized else None,
                            (p["same"] == ops.PAD_SAME_LOWER)[None, :])
    if not sized:  # 'same' with a stride pads by the size: unknown here
        unknown = same & (s > 1) & (k_eff > 1)
        flags = jnp.where(unknown, flags & ~R.KNOWN, flags).astype(flags.dtype)
    return jnp.where(same, sb, p["pb"]), jnp.where(same, sa, p["pa"]), flags


def _reads(p: dict, pb, k_eff, P: int, M: int):
    """First and last unit read by every table unit ([A, P, N] each). Windows advance s
    units per unit; resampling layers ``s`` units per period of D (:mod:`rfsearch.reads`)."""
    window = (p["kind"] != RESAMPLE)[None, :]
    s, D = p["s"], jnp.where(window, 1, p["D"])
    unit = jnp.arange(P)[None, :, None] - M
    phase, period = unit % D[:, None, :], unit // D[:, None, :]
    first = jnp.where(window[:, None], unit * s[:, None] - pb[:, None],
                      jnp.take_along_axis(p["a0"], phase, axis=1) + period * s[:, None])
    last = jnp.where(window[:, None], first + k_eff[:, None] - 1,
                     jnp.take_along_axis(p["b0"], phase, axis=1) + period * s[:, None])
    return first, last


def _whole(x: dict, box: tuple, P: int, M: int):
    """Unit by unit, a whole-map layer: every unit reads the union of the map's units."""
    real = _real(x["size"], P, M)
    big = jnp.iinfo(jnp.int64).max
    lo = jnp.where(real, x["lo"], big).min(axis=1, keepdims=True)
    hi = jnp.where(real, x["hi"], -big).max(axis=1, keepdims=True)
    known = (x["known"] | ~real).all(axis=1, keepdims=True)
    return tuple(jnp.broadcast_to(v, b.shape) for v, b in zip((lo, hi, known), box, strict=True))


def _apply(x: dict, p: dict, P: int, sized: bool, M: int, R_: int):
    """One node's layer after its merge: the new state and its 'map became empty' mask."""
    kind, n = p["kind"][None, :], x["size"]
    whole = kind == WHOLE
    k_eff = jnp.where(whole, jnp.maximum(n, 1) if sized else 1, p["k_eff"])
    pb, pa, flags = _padding(x, p, k_eff, sized)
    if not sized:  # the map size is unknown: a whole-map region is unbounded
        flags = flags | jnp.where(whole, R.UNBOUNDED, 0).astype(flags.dtype)
    first, last = _reads(p, pb, k_eff, P, M)
    box = _hull(x, first, last, p["step"], R_, M)
    if M:
        box = tuple(jnp.where(whole[:, None], w, b) for w, b in zip(
            _whole(x, box, P, M), box, strict=True))
    window = kind != RESAMPLE
    D, N = jnp.where(window, 1, p["D"]), p["s"]
    g = jnp.gcd(N, x["T"])
    T, K = D * x["T"] // g, x["K"] * N // g
    if M:  # unit by unit, T and K only carry the jump: lowest terms
        h = jnp.gcd(T, K)
        T, K = T // h, K // h
    size = jnp.where(window, _window_sizes(n, pb, pa, k_eff, p["s"], p["ceil"][None, :]),
                     p["mul"] * n + p["add"]) if sized else n
    lo, hi, known = box
    overflow = (((T > P) if not M else (T > LIMITS.param)) | (K > LIMITS.param)
                | (jnp.abs(lo).max(axis=1) > LIMITS.position)
                | (jnp.abs(hi).max(axis=1) > LIMITS.position) | (size > LIMITS.param))
    flags = flags | jnp.where(overflow, R.OVERFLOW, 0).astype(flags.dtype)
    y = {"lo": lo, "hi": hi, "T": T, "K": K, "size": size, "flags": flags,
         "fault": x["fault"], "known": known}
    return y, (size < 1) if sized else None


def _hull(x: dict, first, last, step, R_: int, M: int):
    """Boxes of units reading ``first, first + step, ..., last`` ([A, P, N] each): the
    union of the boxes read, and whether they are known. Boxes need not grow with the unit
    (a cubic upsample reads one unit at an integer source and four around it), but
    periodically ``lo(u + T) = lo(u) + K >= lo(u)``, so the least ``lo`` is among the first
    T units read, the largest ``hi`` among the last T. ``R_``: the most units read."""
    T, K = x["T"], x["K"]
    lo, hi = box_at(x["lo"], T, K, first, M), box_at(x["hi"], T, K, last, M)
    known = known_at(x["known"], first, M) & known_at(x["known"], last, M) if M else x["known"]
    if R_ == 1:
        return lo, hi, known
    A, P, n = first.shape
    count = (last - first) // step[:, None, :] + 1  # [A, P, N]
    if not M:
        count = jnp.minimum(count, T[:, None, :])
    j = jnp.arange(1, R_)[None, :, None, None]  # [1, R_ - 1, 1, 1]: further units read
    valid = j < count[:, None]  # [A, R_ - 1, P, N]
    offsets = j * step[:, None, None, :]

    def units(start, sign):
        return (start[:, None] + sign * offsets).reshape(A, -1, n)

    def extreme(values, start, sign, reduce):
        found = box_at(values, T, K, units(start, sign), M).reshape(A, R_ - 1, P, n)
        fill = jnp.iinfo(jnp.int64).max * sign  # never the extreme
        return reduce(jnp.where(valid, found, fill), axis=1)

    if M:
        read = known_at(x["known"], units(first, 1), M).reshape(A, R_ - 1, P, n)
        known = known & (read | ~valid).all(axis=1)
    return (jnp.minimum(lo, extreme(x["lo"], first, 1, jnp.min)),
            jnp.maximum(hi, extreme(x["hi"], last, -1, jnp.max)), known)


def _input_state(input_size, A: int, P: int, n: int, M: int) -> dict:
    zero = jnp.zeros((A, n), jnp.int64)
    units = jnp.broadcast_to(jnp.arange(P, dtype=jnp.int64)[None, :, None] - M, (A, P, n))
    return {"lo": units if M else jnp.zeros((A, P, n), jnp.int64), "hi": units if M else
            jnp.zeros((A, P, n), jnp.int64), "T": zero + 1, "K": zero + 1,
            "size": jnp.broadcast_to(input_size[:, None], (A, n)).astype(jnp.int64),
            "flags": jnp.full((A, n), R.KNOWN | R.ALIGNED, jnp.int32),
            "fault": jnp.full((A, n), R.NO_FAULT, jnp.int32),
            "known": jnp.ones((A, P, n), bool)}


@partial(jax.jit, static_argnames=("P", "sized", "M", "R_"))
def propagate(params: dict, preds, input_size, *, P: int, sized: bool, M: int = 0,
              R_: int | None = None) -> dict:
    """Every node's state ([L, ...] fields) of a PeriodicBatch's arrays ``params`` (kind,
    same, ceil: [L, N]; WIDE fields [L, A, N]; a0, b0 [L, A, DM, N]), ``preds`` [L, M, N]
    and ``input_size`` [A] (ignored unless ``sized``). Periodic tables of ``P`` units, or
    with ``M > 0`` (sized only) tables of units -M .. P - M - 1; ``R_``: the most units an
    output unit reads (default P)."""
    L, A, n = params["k_eff"].shape
    x0 = _input_state(input_size, A, P, n, M)
    buf = {k: jnp.zeros((L, *v.shape), v.dtype).at[0].set(v) for k, v in x0.items()}

    def step(buf, xs):
        p, pred, node = xs
        slots = R.input_slots(pred)  # [M, N]
        gathered = {k: jnp.take_along_axis(v, _index(slots, v.ndim), axis=0)
                    for k, v in buf.items()}  # [M, A, ..., N]
        x, code = _merge(gathered, P, M)
        y, empty = _apply(x, p, P, sized, M, R_ or P)
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
