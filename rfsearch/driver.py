"""The batch driver: runs the kernel over a Batch in chunks of bounded memory.

It picks the compute width per batch (int32 when every parameter is small enough
for :data:`~rfsearch.kernel.LIMITS`, else int64), re-runs the rare rows that
overflow int32 in int64. On CPUs, chunks run on one thread per core: XLA's own
threading leaves cores idle between the steps of a scan and during transfers, and
concurrent calls measured 1.1x (unrolled chains) to 2x (sized chains, DAGs) faster on
2 cores.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import jax
import numpy as np
from tqdm.auto import tqdm

from . import kernel as K
from . import native
from . import recurrence as R
from .encode import PARAM_FIELDS, Batch, tiled

DEFAULT_CHUNK = 1 << 15  # chains with a rolled scan (see default_chunk)
UNROLLED_CHUNK = 1 << 17  # the unrolled chain program: state in registers (see default_chunk)
DAG_CHUNK = 1 << 12  # XLA's DAG programs carry every node's state: small chunks stay in cache
NATIVE_DAG_CHUNK = 1 << 14  # the compiled DAG kernel keeps one tile's states at a time
MIN_CHUNK_BUCKET = 64
KERNEL_FIELDS = ("op", "kernel", "stride", "dilation", "pad_before", "pad_after", "preds")
MAX_WORKERS = 8  # concurrent kernel calls at most (each holds one chunk in memory)


def workers() -> int:
    """Concurrent kernel calls: one per usable CPU core on the CPU backend, else one."""
    if jax.default_backend() != "cpu":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_WORKERS))


_POOL: ThreadPoolExecutor | None = None  # created on first use, its threads reused
_POOL_LOCK = threading.Lock()
_THREAD_PREFIX = "rfsearch-chunk"


def _forget_pool() -> None:
    """In a forked child the pool's threads are gone: start a new pool there."""
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def _pool(count: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers != count:
            _POOL = ThreadPoolExecutor(count, thread_name_prefix=_THREAD_PREFIX)
        return _POOL


def concurrently(fn: Callable, items: Iterable) -> Iterator:
    """``map(fn, items)`` in order, with :func:`workers` calls in flight at a time.

    The threads live in one reused pool (JAX's dispatch caches are per thread, so fresh
    threads would pay for them on every call); from a pool thread it runs serially."""
    items = list(items)
    count = workers()
    if count <= 1 or len(items) <= 1 or threading.current_thread().name.startswith(
            _THREAD_PREFIX):
        return map(fn, items)
    return _pool(count).map(fn, items)


def default_chunk(batch: Batch, size=None, per_layer: bool = False,
                  dtype: str | None = None) -> int:
    """Rows per kernel call when the caller does not choose: NATIVE_DAG_CHUNK for DAGs on
    the compiled CPU kernel, DAG_CHUNK for other DAGs, UNROLLED_CHUNK for chains that run
    the unrolled program (unknown input size), else DEFAULT_CHUNK.
    benchmarks/kernel_throughput.py times run_batch by chunk size; on
    2 cores, 2 workers, 2^20 random chains:
    at an unknown size, 64 layers took 0.087 s in chunks of 2^15 and 0.075 s in chunks
    of 2^17 (16 layers: 0.045 and 0.030 s); at 224, whose rolled scan re-reads its state
    every layer, 64 layers took 0.11 s with 2^15, 0.13 s with 2^16 and 0.15 s with 2^17
    (16 layers: 0.05 s each). For DAGs it times both DAG programs by chunk size."""
    if not batch.is_chain:
        native = K.uses_native("dag", per_layer, batch.fan_in, len(batch))
        return NATIVE_DAG_CHUNK if native else DAG_CHUNK
    dtype = dtype or compute_dtype(batch, size)  # run_batch has it already
    options = kernel_options(batch, None, size, per_layer, dtype)
    return UNROLLED_CHUNK if K.unrolled(batch.depth, **options) else DEFAULT_CHUNK


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


def kernel_options(batch: Batch, preds: np.ndarray | None, size, per_layer: bool,
                   dtype: str) -> dict:
    """The static arguments of :func:`~rfsearch.kernel.propagate` for a chunk whose
    layer-major input slots are ``preds`` [L, M, N] (not read for chains): one compiled
    program per value."""
    features = R.Features(sized=size is not None, same=batch.has_same, whole=batch.has_whole)
    return {"topology": topology_of(batch, preds), "features": features,
            "per_layer": per_layer, "dtype": dtype}


def state_axes(batch: Batch, size) -> int:
    """Axes the kernel computes: 1 for a square batch at a square or unknown input size
    (h and w are then equal everywhere), else 2."""
    return 1 if batch.square and (size is None or size[0] == size[1]) else 2


def kernel_arrays(batch: Batch, rows: slice | np.ndarray, axes: int) -> list[np.ndarray]:
    """The kernel's layer-major inputs for ``rows``: op [L, n], parameters [L, axes, n],
    preds [L, M, n] (views where possible; the device transfer makes them contiguous)."""
    return [batch.axes_major(f, axes)[..., rows] if f in PARAM_FIELDS
            else np.moveaxis(getattr(batch, f), 0, -1)[..., rows] for f in KERNEL_FIELDS]


def kernel_inputs(batch: Batch, rows: slice | np.ndarray, size, per_layer: bool, dtype: str,
                  bucket: int) -> tuple[list[np.ndarray], dict]:
    """The positional arguments of :func:`~rfsearch.kernel.propagate` for ``rows`` padded to
    ``bucket`` rows (copies of the first; the unrolled chain program's to whole tiles of
    :data:`~rfsearch.kernel.TILE` rows), laid out as the chosen program reads them, and
    its static options."""
    axes = state_axes(batch, size)
    *fields, preds = kernel_arrays(batch, rows, axes)
    output = batch.output[rows]
    n = output.shape[0]

    def padded(a, rows=bucket):
        return np.concatenate([a, np.repeat(a[..., :1], rows - n, -1)], -1) if rows > n else a

    def tiles(a, width):  # [N / width, ..., width], whole tiles (narrow ones run slowly)
        return tiled(padded(a, -(-bucket // width) * width), width)

    # a chain program never reads its input slots: one column stands in for them
    slots = preds
    preds = np.ascontiguousarray(preds[..., :1]) if batch.is_chain else padded(preds)
    options = kernel_options(batch, preds, size, per_layer, dtype)
    if K.unrolled(batch.depth, **options):  # it reads four tiled parameters, nothing else
        kernel, stride, dilation, pad_before = (tiles(a, K.TILE) for a in fields[1:5])
        return [None, kernel, stride, dilation, pad_before, None, None, None,
                np.zeros(2, np.int64)], options
    shared = options["topology"] == "shared"
    if K.uses_native(options["topology"], per_layer, preds.shape[1], len(batch)):
        # the compiled DAG kernel reads each tile of networks as one block
        width = native.lanes()
        op, *params = (tiles(a, width) for a in (fields[0][:, None], *fields[1:]))
        preds = np.ascontiguousarray(preds[..., 0]) if shared else tiles(slots, width)
        return [op, *params, preds, padded(output, op.shape[0] * width),
                np.asarray(size or (0, 0), np.int64)], options
    fields, output = [padded(a) for a in fields], padded(output)
    if shared:
        preds = np.ascontiguousarray(preds[..., 0])  # [L, M]: one topology for all
    return [*fields, preds, output, np.asarray(size or (0, 0), np.int64)], options


def _run(batch: Batch, rows: slice | np.ndarray, size, per_layer: bool, dtype: str,
         bucket: int) -> Raw:
    """One kernel call on the given rows, padded to ``bucket`` rows."""
    args, options = kernel_inputs(batch, rows, size, per_layer, dtype, bucket)
    n = len(batch.output[rows])
    axes = state_axes(batch, size)
    with jax.enable_x64(True):
        res = jax.device_get(K.propagate(*args, **options))

    def trim(d):  # [..., axes, bucket] -> [..., 2, n]
        return {k: np.repeat(np.asarray(v)[..., :n], 2 // axes, axis=-2)
                for k, v in d._asdict().items()}
    return Raw(trim(res.out), None if res.layers is None else trim(res.layers))


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


def run_batch(batch: Batch, size, *, per_layer=False, chunk: int | None = None,
              progress=False) -> Raw:
    """Kernel results for a whole Batch, chunk by chunk, int32 with int64 fallback.

    ``chunk``: rows per kernel call (None: :func:`default_chunk`; DAGs use at most their
    default, which bounds the memory of a call; chains a multiple of the unrolled
    program's tile, TILE rows)."""
    n = len(batch)
    dtype = compute_dtype(batch, size)
    best = default_chunk(batch, size, per_layer, dtype)
    chunk = best if chunk is None else chunk if batch.is_chain else min(chunk, best)
    if batch.is_chain and chunk > K.TILE:  # whole tiles: no padded copy per chunk
        chunk -= chunk % K.TILE
    def chunk_result(start: int) -> Raw:
        rows = slice(start, min(n, start + chunk))
        raw = _run(batch, rows, size, per_layer, dtype, chunk_bucket(rows.stop - start, chunk))
        overflow = np.nonzero(raw.overflow)[0]
        if dtype == "int32" and overflow.size:
            sub = batch.take(overflow + start)
            fix = _run(sub, slice(None), size, per_layer, "int64",
                       chunk_bucket(overflow.size, chunk))
            _overwrite(raw, fix, overflow)
        return raw

    parts = []
    with tqdm(total=n, unit="cand", unit_scale=n >= 10_000, disable=not progress or n == 0,
              desc="rfsearch") as bar:
        for raw in concurrently(chunk_result, range(0, n, chunk)):
            parts.append(raw)
            bar.update(raw.out["u"].shape[-1])
    if not parts:
        return _empty(batch, dtype, per_layer)
    cat = lambda key, d: np.concatenate([p.__dict__[d][key] for p in parts], axis=-1)  # noqa: E731
    return Raw(
        {k: cat(k, "out") for k in parts[0].out},
        None if not per_layer else {k: cat(k, "layers") for k in parts[0].layers},
    )
