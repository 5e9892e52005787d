"""Where the kernel's time goes on this machine's device: the measurements behind the
README's account of the kernel targets (how the chain target was met, and why the DAG
target needed a compiled CPU kernel).

1. Chains (random 64-layer chains, built by ``workloads.py``): the plain-chain span
   recurrence alone (the first of the kernel's two programs,
   ``rfsearch.kernel._propagate``) on the tiled parameters the driver sends it
   (``[N / T, L, 1, T]``: every layer of T chains contiguous), for tile widths T of 16,
   ``rfsearch.kernel.TILE`` and 256, compiled by XLA's default and (on CPUs) its loop
   emitter; and the same recurrence on the layer-major layout a ``Batch`` stores
   (``[L, 1, N]`` per parameter), which the kernel read before. The spans must agree.
2. DAGs (random 64-layer DAGs with per-network topologies, built by ``workloads.py``):
   the compiled CPU kernel (``rfsearch.native``, where a C++ compiler is available: its
   build time from scratch, and its throughput in XLA's chunk size and in its own);
   XLA's DAG program (``rfsearch.kernel.propagate`` with the compiled kernel off); the
   gather alone (three 5-word slices per
   node read from the ``[L, N, F]`` buffer, summed and written back); the node
   arithmetic alone (every input slot reads the previous node's block, no gather) with
   the kernel's ``[L, N, F]`` buffer and with a field-major ``[L, F, N]`` buffer (the
   layout of shared topologies). The DAG programs are compiled as the kernel compiles
   them (XLA's loop emitter on CPUs, where available).

Every figure: candidates per second, chunks of the driver's size run ``driver.workers()``
at a time, median of ``--repeats`` passes. Writes ``benchmarks/results/kernel_anatomy.json``
(``kernel_anatomy_quick.json`` with ``--quick``) and prints one summary line.

    python benchmarks/kernel_anatomy.py [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workloads as W

from rfsearch import driver, native
from rfsearch import kernel as K
from rfsearch import recurrence as R
from rfsearch.cache import ENV_CACHE
from rfsearch.encode import tiled

SLOT_WORDS = 5  # u, v, J, rmin, fault|flags: the unsized buffer's words per axis


def passes(call, parts, rows: int, repeats: int) -> dict:
    """Median candidates/s of whole passes over ``parts`` (``rows`` candidates in all; one
    call per part, driver.workers() calls in flight), after a first call that compiles."""
    call(parts[0])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        list(driver.concurrently(call, parts))
        times.append(time.perf_counter() - start)
    return {"rows": rows, "times_s": times, "cand_per_s": rows / statistics.median(times)}


# ----------------------------------------------------------------------------- chains

SPAN_FIELDS = ("kernel", "stride", "dilation", "pad_before")


def _layer_major_spans(kernel, stride, dilation, pad_before):
    """The kernel's plain-chain recurrence on layer-major parameters ([L, 1, N]), unrolled
    the same way; spans [1, N]."""
    x0 = K._spans(jnp.zeros(kernel.shape[1:]))
    params = R.LayerParams(None, kernel, stride, dilation, pad_before, None)
    nodes = jnp.arange(kernel.shape[0], dtype=jnp.int32)
    spans, _ = lax.scan(K._plain_chain(False, False), x0, (params, nodes), unroll=True)
    return spans


layer_major_spans = jax.jit(_layer_major_spans)


def chain_anatomy(n: int, repeats: int, rng) -> dict:
    batch = W.random_chains(n, W.CHAIN_LAYERS, rng)
    args, program = W.device_inputs(batch, 0)
    assert args[1].ndim == 4 and program.kind == K.UNROLLED, program
    chunk = min(n, program.chunk)
    major = [jax.device_put(np.ascontiguousarray(batch.axes_major(f, 1))) for f in SPAN_FIELDS]

    def chunks(arrays):
        with jax.enable_x64(True):
            return [jax.block_until_ready([W.rows_of(a, i, chunk, n) for a in arrays])
                    for i in range(0, n, chunk)]

    def kernel_call(part, jitted=K._propagate):  # the spans, before their conversion
        with jax.enable_x64(True):
            return jax.block_until_ready(jitted(*part, **program.options).out)

    def major_call(part):
        return jax.block_until_ready(layer_major_spans(*part))

    def flat(spans):
        return [np.asarray(f).swapaxes(0, 1).reshape(-1) if f.ndim == 3
                else np.asarray(f).reshape(-1) for f in (spans.span, spans.P, spans.J)]

    major_parts = chunks(major)
    agree = all(np.array_equal(a, b) for a, b in zip(
        flat(kernel_call(chunks(args)[0])), flat(major_call(major_parts[0])), strict=True))
    out = {"n": n, "layers": W.CHAIN_LAYERS, "chunk": chunk, "tile": K.TILE,
           "spans_agree": agree, "tiled_spans": {},
           "layer_major_spans": passes(major_call, major_parts, n, repeats)}
    for width in sorted({16, K.TILE, 256}):
        tiles = [None, *(jax.device_put(tiled_view(batch, f, width)) for f in SPAN_FIELDS),
                 *args[5:]]
        out["tiled_spans"][str(width)] = passes(kernel_call, chunks(tiles), n, repeats)
        if width == K.TILE and K.loop_emitter_available():
            out["tiled_spans_loop_emitter"] = passes(
                lambda part: kernel_call(part, K._propagate_loop), chunks(tiles), n, repeats)
    return out


def tiled_view(batch, field: str, width: int) -> np.ndarray:
    """A parameter of a square batch tiled ``width`` chains at a time, [N / width, L, 1, width]."""
    return tiled(batch.axes_major(field, 1), width)


# ----------------------------------------------------------------------------- DAGs

def _gather_only(buf, xs):
    _, pred, node = xs
    idx = R.input_slots(pred)[:, :, None]
    blocks = jnp.take_along_axis(buf, idx, axis=0, mode="promise_in_bounds")  # [M, N, F]
    return lax.dynamic_update_index_in_dim(buf, blocks.sum(0) + node, node, 0), None


def _arithmetic_only(rows: bool):
    features = R.Features(sized=False, same=False, whole=False)
    limits = R.LIMITS[np.dtype(np.int32)]

    def step(buf, xs):
        p, pred, node = xs
        previous = lax.dynamic_index_in_dim(buf, jnp.maximum(node - 1, 0), 0, False)
        blocks = jnp.stack([previous] * pred.shape[0])  # every slot: the previous node
        y = K._node_step(K._from_blocks(blocks, False, rows), p, node, limits, features)
        return K._write_block(buf, y, node, False, rows), None

    return step


def _dag_program(step, rows: bool):
    """A scan of ``step`` over the nodes, with the kernel's unsized int32 buffer."""

    def run(op, kernel, stride, dilation, pad_before, pad_after, preds):
        depth, n = op.shape
        x0 = R.input_state(jnp.zeros(2, jnp.int32), kernel.shape[1], n, np.int32)
        block0 = K._to_block(x0, np.int32, False, rows)
        buf0 = jnp.zeros((depth, *block0.shape), jnp.int32).at[0].set(block0)
        params = R.LayerParams(op, kernel, stride, dilation, pad_before, pad_after)
        buf, _ = lax.scan(step, buf0, (params, preds, jnp.arange(depth, dtype=jnp.int32)))
        return buf[-1]

    options = K.LOOP_EMITTER if K.loop_emitter_available() else None
    return jax.jit(run, compiler_options=options)


def kernel_figures(batch, chunk: int, repeats: int) -> dict:
    """XLA's program (``propagate`` with the compiled kernel off) on ``batch`` in chunks at
    an unknown input size, with the emitter it picks and, on CPUs, with the default
    emitter (workloads.time_chunked)."""
    with W.xla_programs():
        return _xla_figures(batch, chunk, repeats)


def _xla_figures(batch, chunk: int, repeats: int) -> dict:
    args, program = W.device_inputs(batch, 0)
    figures = {"topology": program.topology, "kernel": chunked(args, program, chunk, repeats)}
    if program.loop_emitter:
        default = dataclasses.replace(program, loop_emitter=False)
        figures["default_emitter"] = chunked(args, default, chunk, repeats)
    return figures


def dag_anatomy(n: int, chunk: int, repeats: int, rng) -> dict:
    batch, _ = W.random_dags(n, W.DAG_LAYERS + 1, rng)
    with W.xla_programs():  # the parts of XLA's program read its layer-major layout
        args, program = W.device_inputs(batch, 0)
    assert program.topology == "dag" and not program.tile, program
    with jax.enable_x64(True):
        parts = [[a[..., i : i + chunk] for a in args[:-1]] + [args[-1]]
                 for i in range(0, n, chunk)]

    programs = {"gather_only": _dag_program(_gather_only, False),
                "arithmetic_only_LNF": _dag_program(_arithmetic_only(False), False),
                "arithmetic_only_LFN": _dag_program(_arithmetic_only(True), True)}
    per_network = kernel_figures(batch, chunk, repeats)
    shared = kernel_figures(batch.take(np.zeros(n, np.int64)), chunk, repeats)
    out = {"n": n, "nodes": W.DAG_LAYERS + 1, "chunk": chunk, "slot_words": SLOT_WORDS,
           "loop_emitter": K.loop_emitter_available(),
           "kernel": per_network["kernel"],
           "kernel_default_emitter": per_network.get("default_emitter"),
           "shared_kernel": shared["kernel"],
           "shared_kernel_default_emitter": shared.get("default_emitter")}
    for name, program in programs.items():
        out[name] = passes(lambda part, f=program: jax.block_until_ready(f(*part[:7])),
                           parts, n, repeats)
    if W.program(batch) == "native":
        out["native"] = native_figures(batch, chunk, repeats)
    return out


def native_figures(batch, chunk: int, repeats: int) -> dict:
    """The compiled CPU DAG kernel: its build from scratch (a fresh cache directory), and
    its throughput in XLA's chunk size and in the driver's chunk size for it."""
    with tempfile.TemporaryDirectory() as cache:
        saved = os.environ.get(ENV_CACHE)
        os.environ[ENV_CACHE] = cache
        try:
            start = time.perf_counter()
            native.build(native.compiler())
            build_s = time.perf_counter() - start
        finally:
            if saved is None:
                del os.environ[ENV_CACHE]
            else:
                os.environ[ENV_CACHE] = saved
    args, program = W.device_inputs(batch, 0)
    assert program.kind == K.NATIVE, program
    return {"build_s": build_s, "compiler": native.compiler(), "flags": list(native.FLAGS),
            "lanes": native.lanes(),
            "xla_chunk": chunked(args, program, chunk, repeats),
            "driver_chunk": chunked(args, program, program.chunk, repeats)}


def chunked(args, program, chunk: int, repeats: int) -> dict:
    """workloads.time_chunked, or one timed call when one chunk covers the batch (--quick)."""
    timed = W.time_chunked(args, program, chunk, repeats)
    if "cand_per_s" not in timed:
        timed = {**W.time_kernel(args, program, repeats)[0], "chunk": W.rows_in(args)}
    return timed


def summary_line(res: dict) -> str:
    c, d = res["chains"], res["dags"]

    def m(fig):
        return f"{fig['cand_per_s'] / 1e6:.3g} M/s"

    return (f"chain spans: layer-major {m(c['layer_major_spans'])}, tiled "
            f"{m(c['tiled_spans'][str(c['tile'])])}"
            f" (agree: {c['spans_agree']}); DAGs: "
            + (f"compiled kernel {m(d['native']['driver_chunk'])} (built in "
               f"{d['native']['build_s']:.1f} s), " if "native" in d else "")
            + f"XLA's program {m(d['kernel'])}, gather only "
            f"{m(d['gather_only'])}, arithmetic only {m(d['arithmetic_only_LNF'])} "
            f"([L, N, F]) / {m(d['arithmetic_only_LFN'])} ([L, F, N]); "
            f"device {res['device']['platform']} ({res['device']['cpu_cores']} cores)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--quick", action="store_true", help="2**15 chains / 2**13 DAGs")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    n_chains, n_dags = (1 << 15, 1 << 13) if args.quick else (1 << 20, 1 << 16)
    res = {
        "benchmark": "kernel_anatomy",
        "question": "where the kernel's time goes: layouts and gather versus arithmetic",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "repeats": args.repeats, "seed": args.seed,
        "statistic": "median", "workers": driver.workers(), "device": W.device_info(),
        "chains": chain_anatomy(n_chains, args.repeats, rng),
        "dags": dag_anatomy(n_dags, driver.DAG_CHUNK, args.repeats, rng),
    }
    res["summary"] = summary_line(res)
    out = args.out or W.RESULTS / ("kernel_anatomy_quick.json" if args.quick
                                    else "kernel_anatomy.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(res["summary"])
    return 0 if res["chains"]["spans_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
