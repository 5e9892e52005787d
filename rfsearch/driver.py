"""The batch driver: runs the kernel over a Batch in chunks of bounded memory.

Once per batch it chooses the kernel program (:func:`choose_program`, a
:class:`Program`): which of the kernel's programs runs, how its inputs are laid out, its
static options, among them the compute width (int32 when every parameter is small
enough for :data:`~rfsearch.kernel.LIMITS`, else int64), and its rows per call; each
chunk, and the kernel, read that value. Rows that overflow int32 are re-run in int64.
On CPUs, chunks run on one thread per core: XLA's own threading leaves cores idle
between the steps of a scan and during transfers, so concurrent calls measured faster
(least for unrolled chains, most for sized chains and DAGs). The rows per call are the
device's (:func:`device_chunk`): the per-program constants on CPUs, far larger chunks,
bounded by the device's memory, one call at a time, on accelerators.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import jax
import numpy as np
from tqdm.auto import tqdm

from . import kernel as K
from . import native, threads
from . import recurrence as R
from .encode import PARAM_FIELDS, Batch, tiled

UNROLL_DEPTH = 129  # chains this deep or shallower are unrolled (deeper ones compile slowly)
# Rows per kernel call, per program (benchmarks/kernel_throughput.py times run_batch on
# chains by chunk size, and both DAG programs by chunk size):
DEFAULT_CHUNK = 1 << 15  # rolled chain scans re-read their state every layer: larger is slower
UNROLLED_CHUNK = 1 << 17  # the unrolled chain program keeps it in registers: larger is faster
DAG_CHUNK = 1 << 12  # XLA's DAG programs carry every node's state: small chunks stay in cache
NATIVE_DAG_CHUNK = 1 << 14  # the compiled DAG kernel keeps one tile's states at a time
NATIVE_CHAIN_CHUNK = 1 << 16  # the compiled chain program: rows per call (and per thread)
MIN_CHUNK_BUCKET = 64
# On an accelerator a call must keep thousands of cores busy: rows per call grow to
# ACCELERATOR_CHUNK, bounded by the device's memory (a call's arrays use at most
# 1 / MEMORY_SHARE of it; ACCELERATOR_MEMORY when the device does not say).
ACCELERATOR_CHUNK = 1 << 20
MEMORY_SHARE = 8
ACCELERATOR_MEMORY = 16 << 30
STATE_BYTES = 8 * len(R.NodeState._fields)  # one node's state on one axis, int64 at most
KERNEL_FIELDS = ("op", "kernel", "stride", "dilation", "pad_before", "pad_after", "preds")


def device_memory() -> int:
    """Bytes of memory of the default device (ACCELERATOR_MEMORY when it does not say)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except (NotImplementedError, RuntimeError):
        stats = {}
    return int(stats.get("bytes_limit", ACCELERATOR_MEMORY))


def device_chunk(cpu_chunk: int, batch: Batch) -> int:
    """Rows per kernel call for a program whose CPU default is ``cpu_chunk``: that, on
    CPUs (their caches decide it, whatever the core count: cores decide
    :func:`workers`); on accelerators, ACCELERATOR_CHUNK rows or as many as fit in a
    MEMORY_SHARE of the device's memory (every node's state and parameters, both axes),
    a power of two."""
    if jax.default_backend() == "cpu":
        return cpu_chunk
    row = batch.depth * (2 * (STATE_BYTES + 4 * len(PARAM_FIELDS)) + 4 * batch.fan_in + 1)
    fits = device_memory() // MEMORY_SHARE // row
    return max(MIN_CHUNK_BUCKET, 1 << (min(ACCELERATOR_CHUNK, fits).bit_length() - 1))


def workers() -> int:
    """Concurrent kernel calls: one per usable CPU core on the CPU backend, else one."""
    return threads.cores() if jax.default_backend() == "cpu" else 1


def concurrently(fn: Callable, items: Iterable) -> Iterator:
    """``map(fn, items)`` in order, with :func:`workers` kernel calls in flight at a time
    (:func:`rfsearch.threads.concurrently`)."""
    return threads.concurrently(fn, items, workers())


@dataclass(frozen=True)
class Program:
    """The kernel program a batch runs, chosen once per batch by :func:`choose_program` and
    read by :func:`run_batch`, :func:`kernel_inputs` and :func:`rfsearch.kernel.propagate`."""

    kind: str  # which program: kernel.UNROLLED, kernel.SCAN, kernel.XLA_DAG or kernel.NATIVE
    loop_emitter: bool  # XLA's DAG program compiled by XLA's CPU loop emitter
    tile: int  # networks per tile of its inputs ([N / tile, L, A, tile]); 0: layer-major
    axes: int  # state axes: 1 for a square batch at a square or unknown size, else 2
    topology: str  # 'chain' or 'dag' ('shared' for a chunk whose networks share one DAG)
    features: R.Features
    per_layer: bool  # every node's state, not only the output node's
    dtype: str  # compute width: 'int32' or 'int64'
    chunk: int  # rows per kernel call when the caller does not choose

    @property
    def options(self) -> dict:
        """The static arguments of the jitted programs: one compiled program per value."""
        return {"topology": self.topology, "features": self.features,
                "per_layer": self.per_layer, "dtype": self.dtype}

    def rows_per_call(self, chunk: int | None = None) -> int:
        """Rows per kernel call when the caller asks for ``chunk`` (None: :attr:`chunk`).
        A DAG program runs at most its default, which bounds the memory of a call; a
        chain program a multiple of the unrolled program's tile, TILE rows (whole tiles:
        no padded copy per chunk)."""
        chain = self.topology == "chain"
        chunk = self.chunk if chunk is None else chunk if chain else min(chunk, self.chunk)
        return chunk - chunk % K.TILE if chain and chunk > K.TILE else chunk


def choose_program(batch: Batch, size=None, per_layer: bool = False, dtype: str | None = None,
                   rows: int | None = None) -> Program:
    """The kernel program for ``batch`` at input ``size`` (None: unknown), with or without
    per-layer states, in ``dtype`` (None: :func:`compute_dtype`).

    On CPUs, plain chains in int32 without per-layer states run the compiled chain
    program on the Batch's own arrays where it can read them (:func:`native_chain`),
    NATIVE_CHAIN_CHUNK rows per call. Other chains run the unrolled program where the
    kernel can unroll them
    (:func:`~rfsearch.kernel.unrollable`) and they have at most UNROLL_DEPTH nodes:
    parameters tiled, TILE networks per tile, UNROLLED_CHUNK rows per call (on CPUs; see
    :func:`device_chunk`); else a rolled scan over layer-major arrays, DEFAULT_CHUNK rows.
    DAGs run the compiled CPU kernel where it can run them
    (:func:`~rfsearch.kernel.uses_native`; ``rows``: the networks about to be evaluated,
    which decide whether it is worth building, None: build it if needed): tiles of
    :func:`rfsearch.native.lanes` networks, NATIVE_DAG_CHUNK rows; else XLA's program
    over layer-major arrays, DAG_CHUNK rows, compiled by XLA's CPU
    loop emitter where it is available."""
    dtype = dtype or compute_dtype(batch, size)
    features = R.Features(sized=size is not None, same=batch.has_same, whole=batch.has_whole)
    common = {"axes": state_axes(batch, size), "features": features, "per_layer": per_layer,
              "dtype": dtype}
    if batch.is_chain:
        if native_chain(batch, common["axes"], features, per_layer, dtype, rows):
            return Program(K.NATIVE_CHAIN, False, 0, topology="chain",
                           chunk=NATIVE_CHAIN_CHUNK, **common)
        if K.unrollable("chain", features, per_layer, dtype) and batch.depth <= UNROLL_DEPTH:
            return Program(K.UNROLLED, False, K.TILE, topology="chain",
                           chunk=device_chunk(UNROLLED_CHUNK, batch), **common)
        return Program(K.SCAN, False, 0, topology="chain",
                       chunk=device_chunk(DEFAULT_CHUNK, batch), **common)
    if K.uses_native("dag", per_layer, batch.fan_in, rows):
        return Program(K.NATIVE, False, native.lanes(), topology="dag",
                       chunk=device_chunk(NATIVE_DAG_CHUNK, batch), **common)
    return Program(K.XLA_DAG, K.loop_emitter_available(), 0, topology="dag",
                   chunk=device_chunk(DAG_CHUNK, batch), **common)


def native_chain(batch: Batch, axes: int, features: R.Features, per_layer: bool, dtype: str,
                 rows: int | None) -> bool:
    """Whether the compiled chain program (``kernel.NATIVE_CHAIN``) computes ``batch``: a
    plain chain (explicit padding, no whole-map layer) in int32 without per-layer states,
    on CPUs, its parameters laid out as it reads them (:func:`rfsearch.native.reads_chain`),
    once the library is built (``rows``: see :func:`rfsearch.native.available`)."""
    return (batch.is_chain and not (per_layer or features.same or features.whole)
            and dtype == "int32" and native.reads_chain(chain_params(batch, axes))
            and native.available(rows))


def chain_params(batch: Batch, axes: int) -> list[np.ndarray]:
    """The five window parameters as layer-major [L, axes, N] views, in chain.cc's order."""
    return [batch.axes_major(f, axes) for f in PARAM_FIELDS]


def default_chunk(batch: Batch, size=None, per_layer: bool = False,
                  dtype: str | None = None) -> int:
    """Rows per kernel call when the caller does not choose: the chosen program's
    (:func:`choose_program`)."""
    return choose_program(batch, size, per_layer, dtype, len(batch)).chunk


def compute_dtype(batch: Batch, size: tuple[int, int] | None) -> str:
    """int32 when every parameter and the input size fit its limits, else int64."""
    small = R.LIMITS[np.dtype(np.int32)].param
    if size is not None and max(size) > small:
        return "int64"
    if batch.kernel.dtype == np.int8:  # every value <= 127, so k_eff <= 127 * 126 + 1 < 2**14
        return "int32"
    top = max(int(np.abs(getattr(batch, f)).max(initial=0)) for f in PARAM_FIELDS)
    k_eff = int((batch.dilation.astype(np.int64) * (batch.kernel - 1) + 1).max(initial=1))
    return "int32" if max(top, k_eff) <= small else "int64"


def state_axes(batch: Batch, size) -> int:
    """Axes the kernel computes: 1 for a square batch at a square or unknown input size
    (h and w are then equal everywhere), else 2."""
    return 1 if batch.square and (size is None or size[0] == size[1]) else 2


def chunk_bucket(n: int, chunk: int) -> int:
    """Rows a chunk is padded to: a power of two in [MIN_CHUNK_BUCKET, chunk]."""
    return min(chunk, max(MIN_CHUNK_BUCKET, 1 << max(0, n - 1).bit_length()))


@dataclass
class Raw:
    """Host copies of kernel results for a batch: output and per-node states."""

    out: dict[str, np.ndarray]  # NodeState fields, [2, N]
    layers: dict[str, np.ndarray] | None  # [L, 2, N]

    @property
    def overflow(self) -> np.ndarray:
        """[N] rows whose output (or, with per-layer states, any node) left the exact
        range of the compute width."""
        flags = self.out["flags"] if self.layers is None else self.layers["flags"]
        return ((flags & R.OVERFLOW) != 0).reshape(-1, flags.shape[-1]).any(axis=0)


def topology_of(batch: Batch, preds: np.ndarray) -> str:
    """'chain', 'shared' (every network in ``preds`` [L, M, N] has the same DAG) or 'dag'."""
    if batch.is_chain:
        return "chain"
    if preds.shape[-1] == 0:  # no networks (an empty batch)
        return "dag"
    first = preds[..., :1]
    if not (preds[..., -1:] == first).all():  # per-network topologies: usually known here
        return "dag"
    return "shared" if (preds == first).all() else "dag"


def kernel_arrays(batch: Batch, rows: slice | np.ndarray, axes: int) -> list[np.ndarray]:
    """The kernel's layer-major inputs for ``rows``: op [L, n], parameters [L, axes, n],
    preds [L, M, n] (views where possible; the device transfer makes them contiguous)."""
    return [batch.axes_major(f, axes)[..., rows] if f in PARAM_FIELDS
            else np.moveaxis(getattr(batch, f), 0, -1)[..., rows] for f in KERNEL_FIELDS]


def kernel_inputs(batch: Batch, rows: slice | np.ndarray, size, program: Program,
                  bucket: int) -> tuple[list[np.ndarray], Program]:
    """The positional arguments of :func:`~rfsearch.kernel.propagate` for ``rows`` padded to
    ``bucket`` rows (copies of the first; a tiled program's to whole tiles), laid out as
    ``program`` reads them, and the program for these rows: a DAG program's topology
    becomes 'shared' when all of them have the same DAG (its input slots are then one
    [L, M] array for all)."""
    *fields, preds = kernel_arrays(batch, rows, program.axes)
    output = batch.output[rows]
    n = output.shape[0]
    size = np.asarray(size or (0, 0), np.int64)

    def padded(a, rows=bucket):
        return np.concatenate([a, np.repeat(a[..., :1], rows - n, -1)], -1) if rows > n else a

    def tiles(a):  # [N / tile, ..., tile], whole tiles (narrow ones run slowly)
        return tiled(padded(a, -(-bucket // program.tile) * program.tile), program.tile)

    if program.kind == K.UNROLLED:  # it reads four tiled parameters, nothing else
        return [None, *(tiles(a) for a in fields[1:5]), None, None, None, size], program
    if program.topology == "chain":  # it never reads its input slots: one column stands in
        return [*map(padded, fields), np.ascontiguousarray(preds[..., :1]), padded(output),
                size], program
    program = replace(program, topology=topology_of(batch, preds))
    shared = np.ascontiguousarray(preds[..., 0]) if program.topology == "shared" else None
    if program.kind == K.NATIVE:  # the compiled DAG kernel reads each tile as one block
        op, *params = (tiles(a) for a in (fields[0][:, None], *fields[1:]))
        return [op, *params, tiles(preds) if shared is None else shared,
                padded(output, op.shape[0] * program.tile), size], program
    return [*map(padded, fields), padded(preds) if shared is None else shared,
            padded(output), size], program


def _run(batch: Batch, rows: slice | np.ndarray, size, program: Program, bucket: int) -> Raw:
    """One kernel call of ``program`` on the given rows, padded to ``bucket`` rows."""
    args, chunk_program = kernel_inputs(batch, rows, size, program, bucket)
    n = len(batch.output[rows])
    with jax.enable_x64(True):
        res = jax.device_get(K.propagate(chunk_program, *_on_device(args)))

    def trim(d):  # [..., axes, bucket] -> [..., axes, n]
        return {k: np.asarray(v)[..., :n] for k, v in d._asdict().items()}
    return Raw(trim(res.out), None if res.layers is None else trim(res.layers))


def _on_device(args: list) -> list:
    """The kernel's arguments on the device, each distinct array transferred once
    (symmetric padding: one array read as both pad_before and pad_after)."""
    moved = {}

    def put(a):
        if not isinstance(a, np.ndarray):
            return a
        key = (a.__array_interface__["data"][0], a.shape, a.strides, a.dtype.str)
        if key not in moved:
            moved[key] = jax.device_put(a)
        return moved[key]
    return [put(a) for a in args]


def _overwrite(raw: Raw, fix: Raw, rows: np.ndarray) -> None:
    """Replace ``rows`` of ``raw`` with the int64 re-run ``fix`` (widening the arrays)."""
    for mine, theirs in ((raw.out, fix.out), (raw.layers, fix.layers)):
        if mine is None:
            continue
        for key, values in theirs.items():
            merged = mine[key].astype(np.promote_types(mine[key].dtype, values.dtype))
            merged[..., rows] = values
            mine[key] = merged


def _empty(batch: Batch, dtype: str, per_layer: bool) -> Raw:
    """The results of a batch without networks: every field [..., 2, 0], typed as the
    kernel types them."""
    def fields(*lead):
        return {name: np.zeros((*lead, 2, 0), {"flags": np.int8, "fault": np.int32}.get(
            name, dtype)) for name in R.NodeState._fields}
    return Raw(fields(), fields(batch.depth) if per_layer else None)


class _ChainRows:
    """The compiled chain program (``kernel.NATIVE_CHAIN``) on a whole batch: each call
    computes a range of rows into result arrays [axes, N] shared by every call."""

    def __init__(self, batch: Batch, size, axes: int):
        self.params, self.size = chain_params(batch, axes), size
        self.out = {k: np.empty((axes, len(batch)), np.int8 if k == "flags" else np.int32)
                    for k in R.NodeState._fields}

    def __call__(self, rows: slice) -> Raw:
        native.chain_rows(self.params, self.size, rows, self.out)
        return Raw({k: v[:, rows] for k, v in self.out.items()}, None)


def run_batch(batch: Batch, size, *, per_layer=False, chunk: int | None = None,
              progress=False) -> Raw:
    """Kernel results for a whole Batch, chunk by chunk, int32 with int64 fallback.

    ``chunk``: rows per kernel call (None: the program's default; see
    :meth:`Program.rows_per_call`)."""
    n = len(batch)
    program = choose_program(batch, size, per_layer, rows=n)
    wide = program if program.dtype == "int64" else choose_program(
        batch, size, per_layer, "int64", n)  # for the rows that overflow int32
    chunk = program.rows_per_call(chunk)
    in_place = _ChainRows(batch, size, program.axes) if program.kind == K.NATIVE_CHAIN else None
    fixed = []  # chunks with rows computed again in int64

    def chunk_result(start: int) -> Raw:
        rows = slice(start, min(n, start + chunk))
        raw = in_place(rows) if in_place else _run(batch, rows, size, program,
                                                   chunk_bucket(rows.stop - start, chunk))
        overflow = np.nonzero(raw.overflow)[0]
        if program.dtype == "int32" and overflow.size:
            sub = batch.take(overflow + start)
            fix = _run(sub, slice(None), size, wide, chunk_bucket(overflow.size, chunk))
            _overwrite(raw, fix, overflow)
            fixed.append(start)
        return raw

    parts = []
    with tqdm(total=n, unit="cand", unit_scale=n >= 10_000, disable=not progress or n == 0,
              desc="rfsearch") as bar:
        for raw in concurrently(chunk_result, range(0, n, chunk)):
            parts.append(raw)
            bar.update(raw.out["u"].shape[-1])
    if not parts:
        return _empty(batch, program.dtype, per_layer)
    if in_place and not fixed:  # every chunk is in the shared arrays already
        return Raw({k: _two_axes(v) for k, v in in_place.out.items()}, None)
    return Raw(_joined([p.out for p in parts]),
               None if not per_layer else _joined([p.layers for p in parts]))


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Chunk results ([..., axes, n] each) as one [..., 2, N] array per field, of its own."""
    return {key: _two_axes(np.concatenate([p[key] for p in parts], axis=-1))
            for key in parts[0]}


def _two_axes(values: np.ndarray) -> np.ndarray:
    """[..., axes, N] results as [..., 2, N]: one computed axis (a square batch) is read
    for both, as a broadcast view."""
    shape = (*values.shape[:-2], 2, values.shape[-1])
    return values if values.shape == shape else np.broadcast_to(values, shape)
