"""The kernel: a pure, jitted JAX function from encoded networks to receptive fields.

Per node and per axis (h and w, vectorised together as a leading axis A of 2, or of 1
for square networks at a square or unknown input size) it propagates, in topological
order, the state of the article's forward recurrence:

* ``u``, ``v``: first / last input pixel read by output feature 0 (region start/end);
* ``J``: the jump (effective stride), input pixels between neighbouring features;
* ``rmin``: the smallest path span ``r - 1`` over all input-to-node paths;
* ``size``: the feature-map size (0 when the input size is unknown);
* ``flags``: bits KNOWN (padding resolved), ALIGNED, UNBOUNDED, OVERFLOW, MISALIGNED;
* ``fault``: the first invalid node among the node and its ancestors, encoded as
  ``node * FAULT_CODES + code`` (NO_FAULT when there is none), so a failing branch
  invalidates exactly the nodes that read it.

A node merges its inputs (union: u = min, v = max) then applies its window.
Nothing here is value-dependent: validation happens on the host, before tracing.
Arrays are layer-major, ``[L, A, N]``; the scan runs over L, vectorised over N. Plain
chains at an unknown input size (the float32 path, without per-layer output) of up to
:data:`UNROLL_DEPTH` nodes are fully unrolled: XLA then fuses the layers into a loop over
N that keeps the state in registers, where a rolled scan re-reads and re-writes the state
of all N networks at every layer. (Unrolling the map-size recurrence measured slower:
its floor divisions are not fused across layers.)
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import ops

# MISALIGNED: a merge upstream was misaligned while all its inputs' paddings were known,
# so the network is certainly misaligned even where later padding is unknown.
KNOWN, ALIGNED, UNBOUNDED, OVERFLOW, MISALIGNED = 1, 2, 4, 8, 16

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


UNROLL_DEPTH = 129  # chains this deep or shallower are unrolled (compile time stays < 1 s)


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


def merge(xs: NodeState, valid: jax.Array) -> tuple[NodeState, jax.Array]:
    """Union of M inputs (fields [M, A, N], ``valid`` [M, N]): u = min, v = max.

    The jump and size are input 0's; the node is aligned when every input has the
    same jump and the same centre (u + v) / 2. Returns the state and a per-axis error
    code (ERR_JUMP for different jumps, ERR_SIZE for different map sizes).
    Slot 0 is always an input; an empty slot repeats it, so the fold over the (few,
    static) slots is plain element-wise min / max / compare that XLA fuses.
    """
    first = NodeState(*(f[0] for f in xs))
    u, v, rmin, fault = first.u, first.v, first.rmin, first.fault
    flags_and = flags_or = first.flags
    same_jump = same_centre = same_size = jnp.ones_like(first.u, dtype=bool)
    for m in range(1, xs.u.shape[0]):
        ok = valid[m][None, :]  # [1, N]
        x = NodeState(*(jnp.where(ok, f[m], f0) for f, f0 in zip(xs, first, strict=True)))
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


EXACT_F32 = 2**24  # float32 holds every integer below this exactly


class Spans(NamedTuple):
    """A plain chain's state in float32 ([A, N] fields). r - 1 = v - u, P = -u and J never
    decrease: r' = r + (k_eff - 1) J, P' = P + p J, J' = J s. With an input size, also
    the map size n, the bound B = n_in + sum(p + q) >= every n, and the first node whose
    map became empty (``NO_EMPTY`` if none)."""

    span: jax.Array
    P: jax.Array
    J: jax.Array
    size: jax.Array
    bound: jax.Array
    empty_at: jax.Array


NO_EMPTY = float(2**24)


def _spans(x0: NodeState) -> Spans:
    zero = jnp.zeros(x0.u.shape, jnp.float32)
    size = x0.size.astype(jnp.float32)
    return Spans(zero, zero, zero + 1, size, size, zero + NO_EMPTY)


def _plain_chain(sized: bool, per_layer: bool):
    """Chains with explicit padding and no whole-map layer: the float32 fast path.

    The spans and the bound only grow, so when their final values are below 2**24
    every intermediate product, sum and floor division was exact in float32;
    otherwise the row is flagged and recomputed in int64 (:func:`_from_spans`).
    """

    def step(x, xs):
        p, node = xs
        f32 = jnp.float32
        k_eff = effective_kernel(p.kernel.astype(f32), p.dilation.astype(f32))
        before, stride = p.pad_before.astype(f32), p.stride.astype(f32)
        y = Spans(x.span + (k_eff - 1) * x.J, x.P + before * x.J, x.J * stride,
                  x.size, x.bound, x.empty_at)
        if sized:
            after = p.pad_after.astype(f32)
            size = jnp.floor((x.size + before + after - k_eff) / stride) + 1
            first = (size < 1) & (x.empty_at == NO_EMPTY)
            y = y._replace(size=size, bound=x.bound + before + after,
                           empty_at=jnp.where(first, node.astype(f32), x.empty_at))
        return y, (y if per_layer else None)

    return step


def _from_spans(y: Spans) -> NodeState:
    """Spans (fields [..., A, N]) back to a NodeState, OVERFLOW where not exact."""
    exact = (y.span < EXACT_F32) & (y.P < EXACT_F32) & (y.J < EXACT_F32) & (
        y.bound < EXACT_F32)
    span, P, J, size = (a.astype(jnp.int32) for a in (y.span, y.P, y.J, y.size))
    u = -P
    flags = jnp.where(exact, KNOWN | ALIGNED, KNOWN | ALIGNED | OVERFLOW).astype(jnp.int8)
    empty = y.empty_at < NO_EMPTY
    fault = jnp.where(empty, y.empty_at.astype(jnp.int32) * FAULT_CODES + ERR_EMPTY, NO_FAULT)
    return NodeState(u, u + span, J, span, size, flags, fault.astype(jnp.int32))


def _chain(limits, features, per_layer):
    """Chains: each node reads the one before, so the carry is one NodeState."""

    def step(x, xs):
        p, node = xs
        y, empty = apply_window(x, p, limits, features)
        y = y._replace(rmin=x.rmin)  # one path: rf_min = rf, set once after the scan
        if features.sized:
            y = record_fault(y, node, jnp.where(empty, ERR_EMPTY, ERR_NONE))
        return y, (y if per_layer else None)

    return step


def _node_step(gathered: NodeState, valid, p, node, limits, features) -> NodeState:
    """Merge the gathered inputs ([M, A, N] fields), apply the window, record faults."""
    x, code = merge(gathered, valid)
    y, empty = apply_window(x, p, limits, features)
    if features.sized:
        code = jnp.where(code != ERR_NONE, code, jnp.where(empty, ERR_EMPTY, ERR_NONE))
    return record_fault(y, node, code)


FLAG_BITS = 5  # KNOWN | ALIGNED | UNBOUNDED | OVERFLOW | MISALIGNED
PACKED_NO_FAULT = (1 << 26) - 1  # NO_FAULT in a buffer word (fault << FLAG_BITS | flags)


def _to_block(state: NodeState, dtype, sized: bool) -> jax.Array:
    """A node's state ([A, N] fields) as one [N, F] block of the buffer: each network's
    state is F contiguous words, so one input slot is one gathered slice. The words are
    u, v, J, rmin, the map size (only when ``sized``; it is 0 otherwise) and
    fault << FLAG_BITS | flags: F = 5 or 6 words per axis."""
    fault = jnp.minimum(state.fault, PACKED_NO_FAULT).astype(dtype)
    word = (fault << FLAG_BITS) | state.flags.astype(dtype)
    fields = [state.u, state.v, state.J, state.rmin, *([state.size] if sized else []), word]
    return jnp.stack([f.astype(dtype) for f in fields]).reshape(-1, state.u.shape[-1]).T


def _from_blocks(blocks: jax.Array, sized: bool) -> NodeState:
    """[..., N, F] blocks -> NodeState with [..., A, N] fields (inverse of _to_block)."""
    words = 6 if sized else 5
    axes = blocks.shape[-1] // words
    fields = blocks.reshape(*blocks.shape[:-1], words, axes)  # [..., N, words, A]
    u, v, J, rmin, *size, word = jnp.moveaxis(fields, (-2, -1, -3), (0, -2, -1))
    fault = (word >> FLAG_BITS).astype(jnp.int32)
    return NodeState(u, v, J, rmin, size[0] if sized else jnp.zeros_like(u),
                     (word & ((1 << FLAG_BITS) - 1)).astype(jnp.int8),
                     jnp.where(fault == PACKED_NO_FAULT, NO_FAULT, fault))


def _write_block(buf: jax.Array, y: NodeState, node, sized: bool) -> jax.Array:
    """Store a node's state as one [N, F] block of the [L, N, F] buffer. (Per-field
    updates measured slower on random DAGs, and make XLA copy the buffer each step for
    shared topologies.)"""
    return lax.dynamic_update_index_in_dim(buf, _to_block(y, buf.dtype, sized), node, 0)


def _dag(limits, features):
    """DAGs with per-network topologies: the carry is [L, N, F] and each input slot is a
    gather of one F-word slice per network (2.5x faster on CPUs than gathering F
    separate words from an [L, F, N] buffer)."""

    def step(buf, xs):
        p, pred, node = xs  # pred: [M, N]
        idx = jnp.maximum(pred, 0)[:, :, None]  # [M, N, 1]: the slice along F is whole
        blocks = jnp.take_along_axis(buf, idx, axis=0, mode="promise_in_bounds")  # [M, N, F]
        gathered = _from_blocks(blocks, features.sized)  # fields [M, A, N]
        valid = (pred >= 0).at[0].set(True)  # [M, N]; node 0 re-reads itself
        y = _node_step(gathered, valid, p, node, limits, features)
        return _write_block(buf, y, node, features.sized), None

    return step


def _shared_dag(limits, features):
    """DAGs whose networks share one topology (NAS cells, repeated zoo networks): the
    carry is [L, N, F] and each input slot is one contiguous [N, F] block, no gather."""

    def step(buf, xs):
        p, pred, node = xs  # pred: [M] node indices shared by every network
        blocks = jnp.stack([lax.dynamic_index_in_dim(buf, jnp.maximum(i, 0), 0, False)
                            for i in pred])  # [M, N, F]
        gathered = _from_blocks(blocks, features.sized)  # fields [M, A, N]
        valid = jnp.broadcast_to(((pred >= 0).at[0].set(True))[:, None],
                                 (pred.shape[0], buf.shape[1]))  # [M, N]
        y = _node_step(gathered, valid, p, node, limits, features)
        return _write_block(buf, y, node, features.sized), None

    return step


class KernelResult(NamedTuple):
    """Kernel output: the output node's state and, optionally, every node's state."""

    out: NodeState  # fields [A, N]
    layers: NodeState | None  # fields [L, A, N] when per_layer


@partial(jax.jit, static_argnames=("topology", "features", "per_layer", "dtype"))
def _propagate(op, kernel, stride, dilation, pad_before, pad_after, preds, output, input_size, *,
              topology: str, features: Features, per_layer: bool, dtype: str) -> KernelResult:
    """Receptive-field geometry of N encoded networks.

    op: [L, N]; kernel, stride, dilation, pad_before, pad_after: [L, A, N], where A = 2
    (h, w) or A = 1 for square networks (the input size is then square or unknown);
    preds: [L, M, N] ([L, M] when ``topology == 'shared'``); output: [N] (output node);
    input_size: [2] (ignored unless ``features.sized``). ``topology``: 'chain' (each
    node reads the one before), 'shared' (one DAG for all N) or 'dag' (one per network).
    ``dtype`` ('int32' or 'int64') is the compute width. Result fields are [A, N].
    """
    dt = np.dtype(dtype)
    limits = LIMITS[dt]
    L, n = op.shape
    axes = kernel.shape[1]
    x0 = input_state(input_size, axes, n, dt)
    params = LayerParams(op, kernel, stride, dilation, pad_before, pad_after)
    # Node 0 is an identity layer over the input state, so the scan covers every node
    # and reads the parameter arrays in place (no sliced copies).
    nodes = jnp.arange(L, dtype=jnp.int32)
    layers = None
    if topology == "chain" and dt == np.int32 and not (features.same or features.whole):
        unroll = L <= UNROLL_DEPTH and not (features.sized or per_layer)
        out, ys = lax.scan(_plain_chain(features.sized, per_layer), _spans(x0),
                           (params, nodes), unroll=unroll)
        if unroll:  # converted by a second program: see propagate
            return KernelResult(out, None)
        out = _from_spans(out)
        layers = None if ys is None else _from_spans(ys)
    elif topology == "chain":
        out, ys = lax.scan(_chain(limits, features, per_layer), x0, (params, nodes))
        out = out._replace(rmin=out.v - out.u)
        if per_layer:
            layers = ys._replace(rmin=ys.v - ys.u)
    else:
        step = (_shared_dag if topology == "shared" else _dag)(limits, features)
        if L * FAULT_CODES >= PACKED_NO_FAULT:
            raise ValueError(f"networks of {L} nodes are too deep for the DAG kernel")
        block0 = _to_block(x0, dt, features.sized)  # [N, F]
        buf0 = jnp.zeros((L, *block0.shape), dt).at[0].set(block0)  # [L, N, F]
        blocks, _ = lax.scan(step, buf0, (params, preds, nodes))
        out = _from_blocks(jnp.take_along_axis(blocks, output[None, :, None], axis=0)[0],
                           features.sized)
        layers = _from_blocks(blocks, features.sized) if per_layer else None  # [L, A, N]
    return KernelResult(out, layers if per_layer else None)


_states_from_spans = jax.jit(_from_spans)


def propagate(op, kernel, stride, dilation, pad_before, pad_after, preds, output, input_size,
              **static) -> KernelResult:
    """Receptive-field geometry of N encoded networks (see :func:`_propagate` for the
    arguments; the keyword arguments are static, one compiled program per value).

    An unrolled chain returns its float32 spans, converted to node states by a second,
    separate program: XLA does not fuse sibling outputs on CPUs, so converting inside
    the unrolled program would re-read every layer's parameters once per state field.
    """
    res = _propagate(op, kernel, stride, dilation, pad_before, pad_after, preds, output,
                     input_size, **static)
    if isinstance(res.out, Spans):
        res = KernelResult(_states_from_spans(res.out), None)
    return res


propagate._cache_size = _propagate._cache_size  # compiled programs (tests bound it)
