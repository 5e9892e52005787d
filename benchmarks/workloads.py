"""Workloads and timing shared by the benchmarks: random square chains and DAGs built as
``rfsearch`` encodes them, their kernel arguments laid out on the device exactly as the
driver lays them out, timed calls of ``rfsearch.kernel.propagate`` (single and chunked, as
the driver calls it), the numpy baseline, and what every result records (device, source).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.metadata
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a source tree without installation
    sys.path.insert(0, str(ROOT))

import rfsearch  # noqa: E402
from rfsearch import driver, ops, periodic, periodic_eval  # noqa: E402
from rfsearch import kernel as K  # noqa: E402
from rfsearch.driver import compute_dtype  # noqa: E402
from rfsearch.encode import (  # noqa: E402
    PARAM_FIELDS,
    Batch,
    _layer_major,
    depth_bucket,
    fan_in_bucket,
    square_view,
)

RESULTS = Path(__file__).resolve().parent / "results"
CHAIN_LAYERS = 64
DAG_LAYERS = 64  # plus node 0, the input: 65 nodes, the 64-layer depth bucket
DAG_MAX_INPUTS = 3
DAG_MAX_DOWNSAMPLES = 5  # 224 / 2**5 = 7: every DAG stays valid at 224x224
STRIDE2_PROBABILITY = 1 / 16
SIZE = 224


# ----------------------------------------------------------------------------- data


def numpy_recurrence(layer, steps: int, shape: tuple, size: int | None) -> dict[str, np.ndarray]:
    """The chain recurrence in numpy, int64, one vectorised step per layer (the baseline
    of the kernel benchmarks): ``layer(i)`` gives layer i's (kernel, stride, dilation,
    padding before) arrays of ``shape``; with ``size``, also the output size.

    u -= p J;  v += (k_eff - 1 - p) J;  rmin += (k_eff - 1) J;  J *= s.
    """
    u, v, rmin = (np.zeros(shape, np.int64) for _ in range(3))
    jump = np.ones(shape, np.int64)
    out = np.full(shape, size or 0, np.int64)
    for i in range(steps):
        k, s, d, p = layer(i)
        k_eff = d.astype(np.int64) * (k - 1) + 1
        u -= p * jump
        v += (k_eff - 1 - p) * jump
        rmin += (k_eff - 1) * jump
        jump *= s
        if size is not None:
            out = (out + 2 * p - k_eff) // s + 1
    result = {"rf": v - u + 1, "rf_min": rmin + 1, "stride": jump, "padding": -u}
    if size is not None:
        result["out"] = out
    return result


def random_chains(n: int, layers: int, rng: np.random.Generator, chunk: int = 1 << 17) -> Batch:
    """``n`` random square chains via ``rfsearch.chains``, built ``chunk`` rows at a time."""
    parts = []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        kernel = rng.choice(np.array([1, 3, 5, 7], np.int8), (m, layers))
        dilation = rng.integers(1, 3, (m, layers), dtype=np.int8)
        stride = np.where(rng.random((m, layers)) < STRIDE2_PROBABILITY, 2, 1).astype(np.int8)
        padding = rng.integers(0, 4, (m, layers), dtype=np.int8)
        names = np.char.add("chain", np.arange(start, start + m).astype(str)).astype(object)
        parts.append(rfsearch.chains(kernel, stride, dilation, padding, names=names))
    if len(parts) == 1:
        return parts[0]
    fields = {}
    for name in ("op", "preds"):
        layer_major = np.concatenate([p.layer_major(name) for p in parts], axis=-1)
        fields[name] = np.moveaxis(layer_major, -1, 0)  # [N, L, ...] view, layer-major memory
    for name in PARAM_FIELDS:  # square chains: one stored axis, as rfsearch.chains keeps it
        fields[name] = square_view(np.concatenate([p.axes_major(name, 1) for p in parts], -1))
    return Batch(
        **fields,
        length=np.concatenate([p.length for p in parts]),
        output=np.concatenate([p.output for p in parts]),
        names=np.concatenate([p.names for p in parts]),
        is_chain=True,
        **{name: getattr(parts[0], name) for name in ("has_same", "has_whole")
           if hasattr(parts[0], name)},
    )


def random_dags(n: int, nodes: int, rng: np.random.Generator) -> tuple[Batch, np.ndarray]:
    """``n`` random valid DAGs of ``nodes`` nodes as a Batch, and each one's downsample count.

    Node i reads node i - 1, so every node is connected and the output (the last node)
    depends on all of them. A few single-input nodes (at most DAG_MAX_DOWNSAMPLES) have
    stride 2; every other window keeps the map size ('same'-style padding, stride 1). A
    merge node ('add', 2 or 3 inputs) adds inputs drawn from the nodes at or after the
    latest stride-2 node, so its inputs share the jump and the map size at any input size.
    """
    L = depth_bucket(nodes)
    M = fan_in_bucket(DAG_MAX_INPUTS)
    # square windows: one stored axis per parameter ([L, 1, N]), as rfsearch.encode keeps it
    major = {name: np.full((L, 1, n), 0 if name.startswith("pad") else 1, np.int8)
             for name in PARAM_FIELDS}
    op = _layer_major((n, L), np.int8)
    op[...] = ops.ELEMENTWISE
    op[:, 0] = ops.INPUT
    preds = _layer_major((n, L, M), np.int32)
    preds[...] = -1
    preds[:, :, 0] = np.arange(L, dtype=np.int32) - 1  # node 0 reads nothing (-1)
    last_down = np.zeros(n, np.int32)  # latest stride-2 node (0 = the input)
    downs = np.zeros(n, np.int32)
    for i in range(1, nodes):
        down = (rng.random(n) < STRIDE2_PROBABILITY) & (downs < DAG_MAX_DOWNSAMPLES)
        span = i - 1 - last_down  # candidates for extra inputs: last_down .. i - 2
        extra = rng.choice(np.array([0, 0, 1, 2]), n)  # extra inputs besides node i - 1
        merge = ~down & (extra > 0) & (span > 0)
        first = last_down + (rng.random(n) * span).astype(np.int32)
        second = last_down + (rng.random(n) * span).astype(np.int32)
        preds[:, i, 1] = np.where(merge, first, -1)
        preds[:, i, 2] = np.where(merge & (extra == 2) & (second != first), second, -1)
        pool = rng.random(n) < 0.25
        kernel = np.where(pool, rng.choice(np.array([2, 3]), n),
                          rng.choice(np.array([1, 3, 5, 7]), n))
        dilation = np.where(pool, 1, rng.integers(1, 3, n))
        k_eff = dilation * (kernel - 1) + 1
        before = (k_eff - 1) // 2
        window = ~merge
        op[:, i] = np.where(merge, ops.ADD, np.where(pool, ops.MAXPOOL, ops.CONV))
        for name, value in (("kernel", kernel), ("dilation", dilation),
                            ("stride", np.where(down, 2, 1)), ("pad_before", before),
                            ("pad_after", k_eff - 1 - before)):
            fill = 0 if name.startswith("pad") else 1
            major[name][i, 0] = np.where(window, value, fill)
        last_down = np.where(down, i, last_down).astype(np.int32)
        downs += down
    flags = {name: False for name in ("has_same", "has_whole")  # no 'same' pads, no dense
             if name in {f.name for f in dataclasses.fields(Batch)}}
    batch = Batch(
        op=op, preds=preds, **{name: square_view(a) for name, a in major.items()},
        length=np.full(n, nodes, np.int32),
        output=np.full(n, nodes - 1, np.int32),
        names=np.char.add("dag", np.arange(n).astype(str)).astype(object),
        is_chain=False, **flags,
    )
    return batch, downs


def device_inputs(batch: Batch, size: int) -> tuple[list[jax.Array], driver.Program]:
    """The kernel's positional arguments on the device, laid out exactly as the driver lays
    them out for the whole batch (``driver.kernel_inputs`` for the program
    ``driver.choose_program`` picks: one stored axis for square batches, tiled parameters
    for the unrolled chain program and the compiled DAG kernel, [L, M] input slots for a
    shared topology), and that program. Where the driver runs the compiled chain program
    (outside XLA, on the Batch itself: :func:`time_native_chains`), XLA's chain program,
    which accelerators run."""
    shape = (size, size) if size else None
    program = driver.choose_program(batch, shape, False, compute_dtype(batch, shape), len(batch))
    if program.kind == K.NATIVE_CHAIN:  # it runs outside XLA: time_native_chains times it
        with xla_programs():
            program = driver.choose_program(batch, shape, False, program.dtype, len(batch))
    arrays, program = driver.kernel_inputs(batch, slice(None), shape, program, len(batch))
    with jax.enable_x64(True):
        args = [None if a is None else jax.device_put(np.ascontiguousarray(a)) for a in arrays]
    return jax.block_until_ready(args), program


def rows_in(args) -> int:
    """Networks in a list of kernel arguments (the kernel parameter is [L, A, N] or tiled)."""
    kernel = args[1]
    return kernel.shape[0] * kernel.shape[-1] if kernel.ndim == 4 else kernel.shape[-1]


def rows_of(a: jax.Array, start: int, count: int, n: int) -> jax.Array:
    """Rows ``start .. start + count`` of a kernel argument for ``n`` networks: along the
    last axis, or along the first for tiled parameters ([n / T, L, A, T]); arguments not
    per row (shared input slots, the input size) and absent ones (None) are returned whole."""
    if a is None:
        return a
    if a.ndim == 4:
        width = a.shape[-1]
        return a[start // width : (start + count) // width]
    return a[..., start : start + count] if a.shape[-1] == n else a


# ----------------------------------------------------------------------------- timing


def describe(program: driver.Program) -> dict:
    """JSON-friendly copy of the kernel program: which one, its layout and static options."""
    return {"program": program.kind, "loop_emitter": program.loop_emitter,
            "tile": program.tile, "axes": program.axes,
            **{k: (v._asdict() if hasattr(v, "_asdict") else v)
               for k, v in program.options.items()}}


def program(batch: Batch) -> str:
    """Which program ``propagate`` runs for ``batch`` without per-layer states: the
    compiled CPU DAG kernel ('native', rfsearch.native, built here if need be) or XLA's
    ('xla')."""
    native = driver.choose_program(batch).kind == K.NATIVE
    return "native" if native else "xla"


@contextlib.contextmanager
def xla_programs():
    """Within: ``propagate``, the driver and the periodic evaluation run XLA's programs
    only, as on GPUs or without a C++ compiler (rfsearch.native off, chains included)."""
    saved, chooser, chains = K.uses_native, periodic_eval.program, driver.native_chain
    K.uses_native = driver.native_chain = lambda *args, **kwargs: False
    periodic_eval.program = lambda rows: periodic.propagate
    try:
        yield
    finally:
        K.uses_native, periodic_eval.program, driver.native_chain = saved, chooser, chains


def time_native_chains(batch: Batch, repeats: int) -> dict | None:
    """The compiled chain program as the driver runs it on CPUs (``driver.run_batch``:
    result arrays, its chunks on one thread per core, the int64 re-run of any overflow),
    at an unknown size and at SIZE; None where the driver runs XLA's program."""
    figures = {}
    for label, size in (("unknown_size", None), ("size_224", (SIZE, SIZE))):
        program = driver.choose_program(batch, size, rows=len(batch))
        if program.kind != K.NATIVE_CHAIN:
            return None
        driver.run_batch(batch, size)  # first call: builds nothing, allocates once
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            driver.run_batch(batch, size)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        figures[label] = {"chunk": program.chunk, "workers": driver.workers(), "times_s": times,
                          "median_s": median, "cand_per_s": len(batch) / median}
    return figures


def time_kernel(args, program: driver.Program, repeats: int) -> tuple[dict, object]:
    """First-call and steady-state timings of ``propagate``; returns (figures, last result)."""
    n = rows_in(args)

    def call():
        with jax.enable_x64(True):
            return jax.block_until_ready(K.propagate(program, *args))

    start = time.perf_counter()
    result = call()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    figures = {
        "options": describe(program),
        "first_call_s": first,
        "compile_s": max(0.0, first - median),  # tracing + compilation, first call less a run
        "times_s": times,
        "median_s": median,
        "cand_per_s": n / median,
    }
    return figures, result


def time_chunked(args, program: driver.Program, chunk: int, repeats: int) -> dict:
    """Throughput when the batch goes through ``propagate`` ``chunk`` rows per call, as the
    driver calls it: slices made on the device before timing, ``driver.workers()`` calls
    in flight at a time (one per CPU core); median of whole passes."""
    n = rows_in(args)
    if chunk >= n:
        return {"chunk": n, "calls": 1, "same_as_single_call": True}

    def call(part):
        with jax.enable_x64(True):
            return jax.block_until_ready(K.propagate(program, *part))

    with jax.enable_x64(True):
        parts = [jax.block_until_ready([rows_of(a, i, chunk, n) for a in args])
                 for i in range(0, n, chunk)]
    start = time.perf_counter()
    call(parts[0])
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        list(driver.concurrently(call, parts))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"chunk": chunk, "calls": len(parts), "workers": driver.workers(),
            "first_call_s": first, "compile_s": max(0.0, first - median / len(parts)),
            "times_s": times, "median_s": median, "cand_per_s": n / median}


def source_info() -> dict:
    """The rfsearch source measured: git commit and a digest of any local rfsearch/ changes."""
    def git(*cmd):
        try:
            return subprocess.run(["git", *cmd], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    diff = git("diff", "HEAD", "--", "rfsearch")
    return {"commit": git("rev-parse", "HEAD"),
            "rfsearch_tree": git("rev-parse", "HEAD:rfsearch"),
            "rfsearch_modified": None if diff is None else bool(diff),
            "rfsearch_diff_sha1": hashlib.sha1(diff.encode()).hexdigest() if diff else None}


def code_changed(before: dict, after: dict) -> bool:
    """Whether rfsearch/ (committed tree or local changes) differs between two source_info()."""
    keys = ("rfsearch_tree", "rfsearch_diff_sha1")
    return any(before[k] != after[k] for k in keys)


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def device_info() -> dict:
    dev = jax.devices()[0]
    cpu_model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": dev.platform,
        "device_kind": dev.device_kind,
        "device": str(dev),
        "device_count": jax.device_count(),
        "cpu_model": cpu_model,
        "cpu_cores": cores,
        "host": platform.node(),
        "python": platform.python_version(),
    }


def random_decoders(n: int, rng: np.random.Generator) -> list[dict]:
    """n distinct random 2-D encoder-decoder chains (the periodic program's workload): two
    to four stride-2 convs down, as many 2x upsamplings (nearest, bilinear or a transposed
    conv) each followed by a conv, kernels drawn from 1, 3, 5, 7."""
    specs = []
    for i in range(n):
        levels = int(rng.integers(2, 5))
        layers = [{"op": "conv", "kernel": int(rng.choice([3, 5, 7])), "stride": 2,
                   "padding": "same"} for _ in range(levels)]
        for _ in range(levels):
            kind = int(rng.integers(3))
            layers.append({"op": "conv_transpose", "kernel": 2, "stride": 2} if kind == 2 else
                          {"op": "upsample", "factor": 2,
                           "mode": ("nearest", "bilinear")[kind]})
            layers.append({"op": "conv", "kernel": int(rng.choice([1, 3, 5, 7])),
                           "padding": "same"})
        specs.append({"name": f"decoder{i}", "layers": layers})
    return specs


def random_chain_specs(n: int, rng: np.random.Generator) -> list[dict]:
    """n random plain chain specs of 4 to 16 layers, as a JSON Lines file of candidates
    holds them: convs (kernel 1/3/5/7, stride 2 one time in six, padding an int or
    'same'), pools and activations."""
    specs = []
    for i in range(n):
        layers = []
        for _ in range(int(rng.integers(4, 17))):
            kind = int(rng.integers(6))
            if kind < 4:
                layers.append({"op": "conv", "kernel": int(rng.choice([1, 3, 5, 7])),
                               "stride": 2 if kind == 0 and rng.random() < 0.5 else 1,
                               "padding": "same" if kind == 1 else int(rng.integers(0, 3))})
            else:
                layers.append({"op": "maxpool", "kernel": 3, "stride": 2, "padding": 1}
                              if kind == 4 else {"op": "relu"})
        specs.append({"name": f"net{i}", "layers": layers})
    return specs


@contextlib.contextmanager
def per_spec_parsing():
    """Within: every spec is validated one by one (``spec.parse_network``), the path all
    specs took before plain chains were read column-wise (``rfsearch.plain``)."""
    from rfsearch import sources

    def full_path_only(objects, positions):
        return None, [], list(range(len(objects)))

    saved, sources.split_plain = sources.split_plain, full_path_only
    try:
        yield
    finally:
        sources.split_plain = saved
