"""The per-node recurrence of Araujo, Norris and Sim (Distill 2019), vectorised.

Per node and per axis (h and w as a leading axis A of 2, or of 1 for square networks at
a square or unknown input size) the state of the article's forward recurrence is:

* ``u``, ``v``: first / last input pixel read by output feature 0 (region start/end);
* ``J``: the jump (effective stride), input pixels between neighbouring features;
* ``rmin``: the smallest path span ``r - 1`` over all input-to-node paths;
* ``size``: the feature-map size (0 when the input size is unknown);
* ``flags``: bits KNOWN (padding resolved), ALIGNED, UNBOUNDED, OVERFLOW, MISALIGNED;
* ``fault``: the first invalid node among the node and its ancestors, encoded as
  ``node * FAULT_CODES + code`` (NO_FAULT when there is none), so a failing branch
  invalidates exactly the nodes that read it.

A node merges its inputs (:func:`merge`: union, u = min, v = max) then applies its
window (:func:`apply_window`). :mod:`rfsearch.kernel` assembles these into programs
over whole batches.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import ops

# MISALIGNED: a merge upstream was misaligned while all its inputs' paddings were known,
# so the network is certainly misaligned even where later padding is unknown.
# MIXED (unit by unit only, rfsearch.periodic): a merge upstream joined different jumps,
# so boxes are exact per unit but there is no single stride.
KNOWN, ALIGNED, UNBOUNDED, OVERFLOW, MISALIGNED, MIXED = 1, 2, 4, 8, 16, 32

# Why a node is invalid. Merge problems come first when one node has two.
ERR_NONE, ERR_JUMP, ERR_SIZE, ERR_EMPTY = 0, 1, 2, 3
FAULT_CODES = 4
NO_FAULT = np.iinfo(np.int32).max


class Limits(NamedTuple):
    """Bounds that keep every intermediate exact in a given integer width.

    Inputs to a node are at most ``param`` (kernel, padding, size, jump), so
    products stay below ``param**2`` and positions below ``position`` without
    wrapping; anything larger sets the OVERFLOW flag instead of a wrong number.
    """

    param: int
    position: int


LIMITS = {np.dtype(np.int32): Limits(2**14, 2**29), np.dtype(np.int64): Limits(2**30, 2**61)}


class NodeState(NamedTuple):
    """The per-axis state of one node for N networks: every field is [A, N]."""

    u: jax.Array
    v: jax.Array
    J: jax.Array
    rmin: jax.Array
    size: jax.Array
    flags: jax.Array
    fault: jax.Array  # int32 per axis; a node's fault is the minimum over its two axes


def fault_code(fault):
    """(code, node) of an encoded fault ([N], the minimum over the axes); code ERR_NONE
    and node -1 when there is none."""
    none = fault == NO_FAULT
    return (np.where(none, ERR_NONE, fault % FAULT_CODES),
            np.where(none, -1, fault // FAULT_CODES))


def alignment(flags):
    """The ``aligned`` column from output flags ([A, ...], numpy or jax): (value, decided).
    Kleene AND over the axes: an axis that is known and not ALIGNED, or any MISALIGNED
    merge, makes it false; otherwise it is true only when every axis's padding is known."""
    known = (flags & KNOWN) != 0
    certainly_not = ((known & ((flags & ALIGNED) == 0)) | ((flags & MISALIGNED) != 0)).any(
        axis=0)
    return ~certainly_not, certainly_not | known.all(axis=0)


class LayerParams(NamedTuple):
    """One node's parameters for N networks (layer-major slices)."""

    op: jax.Array  # [N]
    kernel: jax.Array  # [A, N]
    stride: jax.Array  # [A, N]
    dilation: jax.Array  # [A, N]
    pad_before: jax.Array  # [A, N]
    pad_after: jax.Array  # [A, N]


def effective_kernel(kernel, dilation):
    """k_eff = d * (k - 1) + 1."""
    return dilation * (kernel - 1) + 1


def same_padding(k_eff, stride, size, lower):
    """TF / ONNX 'same': total = max(k_eff - s, 0) if n % s == 0 else max(k_eff - n % s, 0).

    Returns (before, after); the odd pixel goes after (SAME_UPPER) or before
    (``lower``). With an unknown size (None) the n % s == 0 case is used.
    """
    rem = 0 if size is None else size - stride * floor_divide(size, stride)
    total = jnp.maximum(k_eff - jnp.where(rem == 0, stride, rem), 0)
    before = jnp.where(lower, total - total // 2, total // 2)
    return before, total - before


def floor_divide(a, b):
    """floor(a / b) for integers, b > 0.

    Vectorised integer division is slow on CPUs; in int32 every operand here is
    below 2**16 in magnitude (see :data:`LIMITS`), where a float32 quotient rounds
    to the exact floor (operands below 2**24 suffice). int64 divides exactly.
    """
    if a.dtype == jnp.int32:
        return jnp.floor(a.astype(jnp.float32) / b.astype(jnp.float32)).astype(a.dtype)
    return a // b


def output_size(size, before, after, k_eff, stride):
    """n_out = floor((n_in + p + q - k_eff) / s) + 1."""
    return floor_divide(size + before + after - k_eff, stride) + 1


class Features(NamedTuple):
    """The parts of the recurrence a batch needs; static, so each combination is one
    program and a plain chain of convolutions pays only for u, v and J."""

    sized: bool  # an input size is given: track map sizes and empty maps
    same: bool  # some layer has 'same' / 'same_lower' padding
    whole: bool  # some layer reads the whole map (global_pool, dense)


def apply_window(x: NodeState, p: LayerParams, limits: Limits,
                 features: Features) -> tuple[NodeState, jax.Array | None]:
    """u' = u - p J;  v' = v + (k_eff - 1 - p) J;  J' = J s;  rmin' = rmin + (k_eff - 1) J.

    Whole-map ops read a window of the current map size (unbounded when unknown);
    'same' padding is resolved here because it may depend on the map size.
    Returns the new state and, with an input size, a per-axis "map became empty" mask.
    """
    dt = x.u.dtype
    k, s, d = p.kernel.astype(dt), p.stride.astype(dt), p.dilation.astype(dt)
    before, after = p.pad_before.astype(dt), p.pad_after.astype(dt)
    k_eff = effective_kernel(k, d)
    flags = x.flags
    if features.whole:
        whole = ((p.op == ops.GLOBAL_POOL) | (p.op == ops.DENSE))[None, :]  # [1, N]
        if features.sized:
            k_eff = jnp.where(whole, jnp.maximum(x.size, 1), k_eff)
        else:  # the map size is unknown: the region is unbounded
            k_eff = jnp.where(whole, 1, k_eff)
            flags = flags | jnp.where(whole, UNBOUNDED, 0).astype(flags.dtype)
    if features.same:
        same = before < 0
        size = x.size if features.sized else None
        same_before, same_after = same_padding(k_eff, s, size, before == ops.PAD_SAME_LOWER)
        before = jnp.where(same, same_before, before)
        after = jnp.where(same, same_after, after)
        if not features.sized:  # k_eff = 1 pads 0 at any size; s = 1 pads (k_eff-1)/2
            unknown = same & (s > 1) & (k_eff > 1)
            flags = jnp.where(unknown, flags & ~KNOWN, flags).astype(flags.dtype)
    u = x.u - before * x.J
    v = x.v + (k_eff - 1 - before) * x.J
    J = x.J * s
    rmin = x.rmin + (k_eff - 1) * x.J
    overflow = (J > limits.param) | (-u > limits.position) | (v - u > limits.position)
    size, empty = x.size, None
    if features.sized:
        size = output_size(x.size, before, after, k_eff, s)
        overflow = overflow | (size > limits.param)
        empty = size < 1
    flags = flags | jnp.where(overflow, OVERFLOW, 0).astype(flags.dtype)
    return NodeState(u, v, J, rmin, size, flags, x.fault), empty


def merge(xs: NodeState) -> tuple[NodeState, jax.Array]:
    """Union of M inputs (fields [M, A, N]): u = min, v = max.

    The jump and size are input 0's; the node is aligned when every input has the
    same jump and the same centre (u + v) / 2. Returns the state and a per-axis error
    code (ERR_JUMP for different jumps, ERR_SIZE for different map sizes).
    Slot 0 is always an input and an empty slot repeats it (see :func:`input_slots`):
    the union is idempotent, so the fold over the (few, static) slots is plain
    element-wise min / max / compare that XLA fuses, with no masks.
    """
    first = NodeState(*(f[0] for f in xs))
    u, v, rmin, fault = first.u, first.v, first.rmin, first.fault
    flags_and = flags_or = first.flags
    same_jump = same_centre = same_size = jnp.ones_like(first.u, dtype=bool)
    for m in range(1, xs.u.shape[0]):
        x = NodeState(*(f[m] for f in xs))
        u, v = jnp.minimum(u, x.u), jnp.maximum(v, x.v)
        rmin, fault = jnp.minimum(rmin, x.rmin), jnp.minimum(fault, x.fault)
        same_jump = same_jump & (x.J == first.J)
        same_centre = same_centre & (x.u + x.v == first.u + first.v)
        same_size = same_size & (x.size == first.size)
        flags_and, flags_or = flags_and & x.flags, flags_or | x.flags
    centred = same_jump & same_centre
    aligned = jnp.where(centred, flags_and & ALIGNED, 0)
    certain = jnp.where(~centred & ((flags_and & KNOWN) != 0), MISALIGNED, 0)
    flags = (flags_and & KNOWN) | aligned | certain | (
        flags_or & (UNBOUNDED | OVERFLOW | MISALIGNED))
    code = jnp.where(~same_jump, ERR_JUMP, jnp.where(~same_size, ERR_SIZE, ERR_NONE))  # [A, N]
    state = NodeState(u, v, first.J, rmin, first.size, flags.astype(first.flags.dtype), fault)
    return state, code


def input_slots(pred: jax.Array) -> jax.Array:
    """Node indices to read for input slots ``pred`` ([M, ...], -1 = empty): an empty
    slot repeats slot 0, and node 0 (no inputs) reads itself, the input state."""
    first = jnp.maximum(pred[0], 0)
    return jnp.where(pred >= 0, pred, first)


def input_state(input_size: jax.Array, axes: int, n: int, dtype) -> NodeState:
    """Node 0: u = v = 0, J = 1, rmin = 0, size = the input size (0 = unknown).

    With one axis (square networks) the input size is square and its first entry is used."""
    zero = jnp.zeros((axes, n), dtype)
    size = jnp.broadcast_to(input_size[:axes].astype(dtype)[:, None], (axes, n))
    flags = jnp.full((axes, n), KNOWN | ALIGNED, jnp.int8)
    fault = jnp.full((axes, n), NO_FAULT, jnp.int32)
    return NodeState(zero, zero, zero + 1, zero, size, flags, fault)


def record_fault(y: NodeState, node, code) -> NodeState:
    """fault' = min(fault inherited from the inputs, node * FAULT_CODES + code) if code.

    Per axis ([A, N]): the network's fault is the smaller of the two, taken on the host.
    """
    own = jnp.where(code == ERR_NONE, NO_FAULT, node * FAULT_CODES + code)  # [A, N]
    return y._replace(fault=jnp.minimum(y.fault, own))
