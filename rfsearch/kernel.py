"""The kernel: pure, jitted JAX programs from encoded networks to receptive fields.

They run the per-node recurrence of :mod:`rfsearch.recurrence` (re-exported here) over
every node of N networks in topological order. Nothing here is value-dependent:
validation happens on the host, before tracing. Which program runs, and how its inputs
are laid out, is decided once per batch by the driver (:class:`rfsearch.driver.Program`);
:func:`propagate` runs the program it names:

- ``UNROLLED``: plain chains at an unknown input size (the float32 path, without
  per-layer output), fully unrolled: XLA then fuses the layers into a loop over N that
  keeps the state in registers, where a rolled scan re-reads and re-writes the state of
  all N networks at every layer. (Unrolling the map-size recurrence measured slower: its
  floor divisions are not fused across layers.) That loop reads every layer's
  parameters at each step, so it takes them tiled, ``[N / T, L, A, T]``
  (:func:`rfsearch.encode.tiled`): the layers of T networks are then one contiguous
  block instead of L * A rows far apart, which the memory system streams much faster.
- ``SCAN``: other chains, a rolled scan over layer-major ``[L, A, N]`` arrays.
- ``NATIVE_CHAIN``: plain int32 chains on CPUs, ``native/chain.cc``, run by the driver.
- ``XLA_DAG``: DAGs, a scan over the nodes with every node's state in one buffer; on
  CPUs compiled by XLA's older loop emitter, measured faster for these programs alone.
- ``NATIVE``: DAGs on CPUs, the compiled kernel of :mod:`rfsearch.native`.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from . import native
from .recurrence import (
    ALIGNED,
    ERR_EMPTY,
    ERR_NONE,
    FAULT_CODES,
    KNOWN,
    LIMITS,
    NO_FAULT,
    OVERFLOW,
    Features,
    LayerParams,
    NodeState,
    apply_window,
    effective_kernel,
    input_slots,
    input_state,
    merge,
    record_fault,
)

TILE = 64  # networks per tile of the unrolled chain program's parameters (see tiled())

# The kernel's programs: rfsearch.driver.Program.kind names the one a batch runs.
UNROLLED = "unrolled"  # plain chains, unrolled over the layers, parameters tiled
SCAN = "scan"  # chains: a rolled scan over the layers, layer-major
XLA_DAG = "xla_dag"  # DAGs: XLA's scan over the nodes, every node's state in a buffer
NATIVE = "native"  # DAGs on CPUs: the compiled kernel (rfsearch.native)
NATIVE_CHAIN = "native_chain"  # plain chains on CPUs: chain.cc, outside XLA (rfsearch.native)

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


def _spans(size: jax.Array) -> Spans:
    """The input's spans: r - 1 = P = 0, J = 1, map size ``size`` (0 = unknown; its
    shape is the fields' shape)."""
    size = size.astype(jnp.float32)
    zero = jnp.zeros_like(size)
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


def _tiled_chain(params: LayerParams) -> Spans:
    """The unrolled plain-chain program: kernel, stride, dilation and pad_before tiled
    [N / T, L, A, T] (nothing else is read), spans [N / T, A, T]. Node 0 is the input:
    its identity parameters change nothing."""
    tiles, depth, axes, width = params.kernel.shape
    x0 = _spans(jnp.zeros((tiles, axes, width)))
    step = _plain_chain(False, False)

    def tiled_step(x, node):
        def layer_of(a):
            return lax.dynamic_index_in_dim(a, node, 1, keepdims=False)
        layer = LayerParams(None, layer_of(params.kernel), layer_of(params.stride),
                            layer_of(params.dilation), layer_of(params.pad_before), None)
        return step(x, (layer, node))

    spans, _ = lax.scan(tiled_step, x0, jnp.arange(depth, dtype=jnp.int32), unroll=True)
    return spans


def _untiled(y: Spans) -> Spans:
    """[N / T, A, T] fields -> [A, N]."""
    return Spans(*(f.swapaxes(0, 1).reshape(f.shape[1], -1) for f in y))


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


def _node_step(gathered: NodeState, p, node, limits, features) -> NodeState:
    """Merge the gathered inputs ([M, A, N] fields), apply the window, record faults."""
    x, code = merge(gathered)
    y, empty = apply_window(x, p, limits, features)
    if features.sized:
        code = jnp.where(code != ERR_NONE, code, jnp.where(empty, ERR_EMPTY, ERR_NONE))
    return record_fault(y, node, code)


FLAG_BITS = 5  # KNOWN | ALIGNED | UNBOUNDED | OVERFLOW | MISALIGNED
PACKED_NO_FAULT = (1 << 26) - 1  # NO_FAULT in a buffer word (fault << FLAG_BITS | flags)


def _to_block(state: NodeState, dtype, sized: bool, rows: bool) -> jax.Array:
    """A node's state ([A, N] fields) as one block of the buffer: [N, F] (each network's
    state is F contiguous words, so one input slot is one gathered slice) or, with
    ``rows``, [F, N] (one row per word: contiguous, vectorised reads and writes when no
    gather is needed). The words are u, v, J, rmin, the map size (only when ``sized``;
    it is 0 otherwise) and fault << FLAG_BITS | flags: F = 5 or 6 words per axis."""
    fault = jnp.minimum(state.fault, PACKED_NO_FAULT).astype(dtype)
    word = (fault << FLAG_BITS) | state.flags.astype(dtype)
    fields = [state.u, state.v, state.J, state.rmin, *([state.size] if sized else []), word]
    block = jnp.stack([f.astype(dtype) for f in fields]).reshape(-1, state.u.shape[-1])
    return block if rows else block.T


def _from_blocks(blocks: jax.Array, sized: bool, rows: bool) -> NodeState:
    """[..., N, F] blocks ([..., F, N] with ``rows``) -> NodeState with [..., A, N]
    fields (inverse of _to_block)."""
    words = 6 if sized else 5
    if rows:
        fields = blocks.reshape(*blocks.shape[:-2], words, -1, blocks.shape[-1])
        u, v, J, rmin, *size, word = jnp.moveaxis(fields, -3, 0)  # each [..., A, N]
    else:
        fields = blocks.reshape(*blocks.shape[:-1], words, -1)  # [..., N, words, A]
        u, v, J, rmin, *size, word = jnp.moveaxis(fields, (-2, -1, -3), (0, -2, -1))
    fault = (word >> FLAG_BITS).astype(jnp.int32)
    return NodeState(u, v, J, rmin, size[0] if sized else jnp.zeros_like(u),
                     (word & ((1 << FLAG_BITS) - 1)).astype(jnp.int8),
                     jnp.where(fault == PACKED_NO_FAULT, NO_FAULT, fault))


def _write_block(buf: jax.Array, y: NodeState, node, sized: bool, rows: bool) -> jax.Array:
    """Store a node's state as one block of the [L, N, F] (or [L, F, N]) buffer.
    (Per-field updates measured slower on random DAGs, and make XLA copy the buffer
    each step for shared topologies.)"""
    return lax.dynamic_update_index_in_dim(buf, _to_block(y, buf.dtype, sized, rows), node, 0)


def _dag(limits, features):
    """DAGs with per-network topologies: the carry is [L, N, F] and each input slot is a
    gather of one F-word slice per network (measured faster on CPUs than gathering F
    separate words from an [L, F, N] buffer)."""

    def step(buf, xs):
        p, pred, node = xs  # pred: [M, N]
        idx = input_slots(pred)[:, :, None]  # [M, N, 1]: the slice along F is whole
        blocks = jnp.take_along_axis(buf, idx, axis=0, mode="promise_in_bounds")  # [M, N, F]
        gathered = _from_blocks(blocks, features.sized, False)  # fields [M, A, N]
        y = _node_step(gathered, p, node, limits, features)
        return _write_block(buf, y, node, features.sized, False), None

    return step


def _shared_dag(limits, features):
    """DAGs whose networks share one topology (NAS cells, repeated zoo networks): the
    carry is [L, F, N] and each input slot is one contiguous [F, N] block, no gather."""

    def step(buf, xs):
        p, pred, node = xs  # pred: [M] node indices shared by every network
        blocks = jnp.stack([lax.dynamic_index_in_dim(buf, i, 0, False)
                            for i in input_slots(pred)])  # [M, F, N]
        gathered = _from_blocks(blocks, features.sized, True)  # fields [M, A, N]
        y = _node_step(gathered, p, node, limits, features)
        return _write_block(buf, y, node, features.sized, True), None

    return step


class KernelResult(NamedTuple):
    """Kernel output: the output node's state and, optionally, every node's state."""

    out: NodeState  # fields [A, N]
    layers: NodeState | None  # fields [L, A, N] when per_layer


def unrollable(topology: str, features: Features, per_layer: bool, dtype: str) -> bool:
    """Whether the unrolled chain program computes networks with these static options:
    plain chains (explicit padding, no whole-map layer) at an unknown input size, in
    int32, without per-layer states. It reads tiled parameters and returns Spans; the
    driver runs it for chains of at most ``rfsearch.driver.UNROLL_DEPTH`` nodes."""
    return (topology == "chain" and np.dtype(dtype) == np.int32
            and not (features.same or features.whole or features.sized or per_layer))


def _program(op, kernel, stride, dilation, pad_before, pad_after, preds, output, input_size, *,
             topology: str, features: Features, per_layer: bool, dtype: str) -> KernelResult:
    """Receptive-field geometry of N encoded networks.

    op: [L, N]; kernel, stride, dilation, pad_before, pad_after: [L, A, N], where A = 2
    (h, w) or A = 1 for square networks (the input size is then square or unknown);
    preds: [L, M, N] ([L, M] when ``topology == 'shared'``); output: [N] (output node).
    The unrolled chain program (:func:`unrollable` options) reads only kernel, stride,
    dilation and pad_before, tiled: [N / T, L, A, T] (:func:`rfsearch.encode.tiled`); the
    driver then sends None for op, pad_after, preds and output. (Given layer-major arrays
    instead, the same recurrence runs as a rolled scan: the same numbers, slower.)
    input_size: [2] (ignored unless ``features.sized``). ``topology``: 'chain' (each
    node reads the one before), 'shared' (one DAG for all N) or 'dag' (one per network).
    ``dtype`` ('int32' or 'int64') is the compute width. Result fields are [A, N].
    """
    dt = np.dtype(dtype)
    limits = LIMITS[dt]
    params = LayerParams(op, kernel, stride, dilation, pad_before, pad_after)
    if kernel.ndim == 4:  # tiled: the unrolled chain program, converted by a second
        if not unrollable(topology, features, per_layer, dtype):
            raise ValueError("only the unrolled chain program reads tiled parameters")
        return KernelResult(_tiled_chain(params), None)  # program: see propagate
    L, n = op.shape
    axes = kernel.shape[1]
    x0 = input_state(input_size, axes, n, dt)
    # Node 0 is an identity layer over the input state, so the scan covers every node
    # and reads the parameter arrays in place (no sliced copies).
    nodes = jnp.arange(L, dtype=jnp.int32)
    layers = None
    if topology == "chain" and dt == np.int32 and not (features.same or features.whole):
        step = _plain_chain(features.sized, per_layer)
        out, ys = lax.scan(step, _spans(x0.size), (params, nodes))
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
        rows = topology == "shared"  # its [L, F, N] buffer is read without a gather
        block0 = _to_block(x0, dt, features.sized, rows)  # [N, F] ([F, N] with rows)
        buf0 = jnp.zeros((L, *block0.shape), dt).at[0].set(block0)  # [L, N, F] / [L, F, N]
        blocks, _ = lax.scan(step, buf0, (params, preds, nodes))
        at = output[None, None, :] if rows else output[None, :, None]
        out = _from_blocks(jnp.take_along_axis(blocks, at, axis=0)[0], features.sized, rows)
        layers = _from_blocks(blocks, features.sized, rows) if per_layer else None
    return KernelResult(out, layers if per_layer else None)


_STATIC = ("topology", "features", "per_layer", "dtype")
_propagate = jax.jit(_program, static_argnames=_STATIC)
_states_from_tiles = jax.jit(lambda y: _from_spans(_untiled(y)))

# XLA's older CPU loop emitter (its "fusion emitters" off) measured faster for the DAG
# programs on CPUs, per-network and shared topologies alike, but not for the chain
# programs (rolled scans ran slower): benchmarks/kernel_anatomy.py compares the emitters.
LOOP_EMITTER = {"xla_cpu_use_fusion_emitters": False}
_propagate_loop = jax.jit(_program, static_argnames=_STATIC, compiler_options=LOOP_EMITTER)


@cache
def loop_emitter_available() -> bool:
    """True on the CPU backend when this XLA still has the option (it is a debug option
    of XLA, so a later version may drop it: the default emitter is then used)."""
    if jax.default_backend() != "cpu":
        return False
    try:  # lower and compile explicitly: a call under jax.disable_jit() would not compile
        jax.jit(lambda x: x + 1, compiler_options=LOOP_EMITTER).lower(
            np.zeros(1, np.int32)).compile()
    except jax.errors.JaxRuntimeError:
        return False
    return True


def _native_program(op, kernel, stride, dilation, pad_before, pad_after, preds, output,
                    input_size, *, topology: str, features: Features, per_layer: bool,
                    dtype: str) -> KernelResult:
    """The DAG programs' compiled CPU kernel (:mod:`rfsearch.native`): the arguments of
    :func:`_program`, layer-major or tiled (:func:`rfsearch.native.dag_states`); the
    output node's state only."""
    del topology, per_layer  # DAGs (per-network or shared), no per-layer states
    out = native.dag_states(op, kernel, stride, dilation, pad_before, pad_after, preds,
                            output, input_size, features=features, dtype=dtype)
    return KernelResult(out, None)


_propagate_native = jax.jit(_native_program, static_argnames=_STATIC)


def uses_native(topology: str, per_layer: bool, slots: int, rows: int | None = None) -> bool:
    """Whether the compiled CPU kernel (:mod:`rfsearch.native`) can run networks with these
    options and ``slots`` input slots per node (asked by
    :func:`rfsearch.driver.choose_program`): DAGs without per-layer states, once it is
    built. ``rows``: the networks about to be evaluated, which decide whether it is
    worth building if it is not built yet (:func:`rfsearch.native.available`; 0: never)."""
    return (topology != "chain" and not per_layer and slots in native.SLOTS
            and native.available(rows))


def propagate(program, op, kernel, stride, dilation, pad_before, pad_after, preds, output,
              input_size) -> KernelResult:
    """Receptive-field geometry of N encoded networks, computed by ``program`` (an
    :class:`rfsearch.driver.Program`: which program, its static options) from arguments
    laid out as it reads them (:func:`rfsearch.driver.kernel_inputs`, :func:`_program`):
    tiled when ``program.tile`` is set, else layer-major.

    The unrolled chain program returns its float32 spans, converted to node states by a
    second program: XLA does not fuse sibling outputs on CPUs, so converting inside the
    unrolled program would re-read every layer's parameters once per state field.
    """
    if program.kind == NATIVE_CHAIN:
        raise ValueError("the compiled chain program runs outside XLA (driver.run_batch)")
    if (kernel.ndim == 4) != bool(program.tile):
        raise ValueError(f"the {program.kind} program reads "
                         f"{'tiled' if program.tile else 'layer-major'} parameters")
    jitted = (_propagate_native if program.kind == NATIVE else _propagate_loop
              if program.loop_emitter else _propagate)
    res = jitted(op, kernel, stride, dilation, pad_before, pad_after, preds, output,
                 input_size, **program.options)
    if program.kind == UNROLLED:
        res = KernelResult(_states_from_tiles(res.out), None)
    return res


def _cache_size() -> int:
    """Compiled programs (tests bound it)."""
    return sum(p._cache_size() for p in (_propagate, _propagate_loop, _propagate_native))


propagate._cache_size = _cache_size
