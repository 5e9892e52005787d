"""Kernel throughput: how many candidate networks per second does rfsearch's kernel evaluate
on this machine's device?

Three measurements, on data encoded and placed on the device before any clock starts:

1. chains: 2**20 random chains of 64 conv layers (kernel 1/3/5/7, dilation 1/2, stride 2 with
   probability 1/16, padding 0..3, square), built with ``rfsearch.chains``; XLA's chain
   programs (``rfsearch.kernel.propagate``, what accelerators run) at an unknown input
   size and at 224x224; on CPUs that build ``rfsearch.native``, also the compiled chain
   program the driver runs there (``driver.run_batch``, on the Batch's own arrays: no
   transfer to time apart), which the chain targets then judge;
2. the same chain recurrence written as a vectorised numpy loop over layers (int64), on the
   same data (one axis, as the kernel reads square chains), as a baseline; its rf / rf_min
   / stride / padding must equal the kernel's;
3. DAGs: 2**18 random valid DAGs of 64 layers (65 nodes with the input) with up to 3 inputs
   per node (conv / maxpool windows, 'add' merges), built directly as a ``rfsearch.Batch``;
   ``propagate`` on per-network DAGs at both input sizes. On CPUs with a C++ compiler that
   is the compiled DAG kernel (``rfsearch.native``); XLA's DAG program, which GPUs and
   machines without a compiler run, is timed too (``dags.xla_program``).

Each kernel figure is the median of ``--repeats`` timed calls after a first call that pays
for tracing and compilation (reported separately). The targets are judged on the kernel
called as ``rfsearch.evaluate``'s driver calls it: chunks of the driver's chunk size,
inputs laid out as the driver lays them out (square networks: one stored axis). Results go
to a JSON file (default ``benchmarks/results/kernel_throughput.json``) and one summary
line is printed, saying which throughput targets are met.

    python benchmarks/kernel_throughput.py            # full run (a few minutes on a CPU)
    python benchmarks/kernel_throughput.py --quick    # 2**14 chains / 2**12 DAGs smoke test
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
import types
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from workloads import (
    CHAIN_LAYERS,
    DAG_LAYERS,
    DAG_MAX_INPUTS,
    RESULTS,
    SIZE,
    code_changed,
    describe,
    device_info,
    device_inputs,
    numpy_recurrence,
    package_version,
    program,
    random_chains,
    random_dags,
    source_info,
    time_chunked,
    time_kernel,
    time_native_chains,
    xla_programs,
)

import rfsearch
from rfsearch import driver
from rfsearch import recurrence as R
from rfsearch.driver import DEFAULT_CHUNK
from rfsearch.encode import Batch

TARGETS = {  # what "fast enough" means for this project, on a 2-core CPU
    "chains_cand_per_s": 30e6,
    "chains_speedup_vs_numpy": 3.0,
    "dags_cand_per_s": 3e6,
}
ACCELERATOR_TARGETS = {**TARGETS, "chains_cand_per_s": 1e9}  # issue #17: on an H100


def targets() -> dict[str, float]:
    """The targets of the default device."""
    return TARGETS if jax.default_backend() == "cpu" else ACCELERATOR_TARGETS
CHUNKS = sorted({1 << 12, 1 << 14, DEFAULT_CHUNK, 1 << 16, 1 << 17})  # rows per call
DRIVER_CHUNKS = (1 << 15, 1 << 16, 1 << 17)  # run_batch end to end: how the defaults were chosen


# ----------------------------------------------------------------------------- baseline


def time_numpy(batch: Batch, repeats: int) -> tuple[dict, dict]:
    """The numpy baseline on the arrays the kernel reads (one axis for square batches)."""
    axes = driver.state_axes(batch, None)
    lm = {f: np.ascontiguousarray(batch.axes_major(f, axes))
          for f in ("kernel", "stride", "dilation", "pad_before")}
    steps, times = lm["kernel"].shape[0], []
    for _ in range(repeats):
        start = time.perf_counter()
        result = numpy_recurrence(lambda i: tuple(lm[f][i + 1] for f in lm), steps - 1,
                                  lm["kernel"].shape[1:], None)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    figures = {"times_s": times, "median_s": median, "cand_per_s": len(batch) / median,
               "steps": int(steps) - 1}
    return figures, result


def agreement(result, reference: dict[str, np.ndarray]) -> dict:
    """Exact comparison of kernel outputs with the numpy reference, rows without OVERFLOW."""
    out = jax.device_get(result.out)
    ours = {"rf": out.v.astype(np.int64) - out.u + 1, "rf_min": out.rmin.astype(np.int64) + 1,
            "stride": out.J.astype(np.int64), "padding": -out.u.astype(np.int64)}
    overflow = ((out.flags & R.OVERFLOW) != 0).any(axis=0)
    rows = ~overflow
    mismatch = np.zeros(rows.shape, bool)
    for key, ref in reference.items():
        mismatch |= (ours[key] != ref).any(axis=0)
    mismatch &= rows
    return {"rows_checked": int(rows.sum()), "overflow_rows": int(overflow.sum()),
            "mismatched_rows": int(mismatch.sum()), "equal": not mismatch.any()}


def invalid_rows(result) -> int:
    """Rows the kernel marks invalid (works with either error encoding of the kernel)."""
    if hasattr(result, "err_code"):
        return int((np.asarray(result.err_code) != R.ERR_NONE).sum())
    fault = np.asarray(jax.device_get(result.out.fault))
    return int((fault != R.NO_FAULT).any(axis=0).sum())


def verify_dags(batch: Batch, downs: np.ndarray, rows: int = 64) -> dict:
    """rfsearch.evaluate on a few DAGs: no error, stride 2**downsamples, at both sizes."""
    sample = batch.take(np.arange(min(rows, len(batch))))
    expected = 2 ** downs[: len(sample)]
    checked = {}
    for label, size in (("unknown", None), (str(SIZE), SIZE)):
        df = rfsearch.evaluate(sample, input_size=size)
        errors = df["error"].notna()
        if errors.any():
            raise SystemExit(f"invalid generated DAG ({label} size): {df['error'][errors].iloc[0]}")
        if not (df["stride_h"].to_numpy() == expected).all():
            raise SystemExit(f"generated DAGs: unexpected effective stride ({label} size)")
        checked[label] = len(df)
    return {"rows": len(sample), "errors": 0, "stride_matches_downsamples": True,
            "sizes": list(checked)}


# ----------------------------------------------------------------------------- report


def millions(x: float) -> str:
    return f"{x / 1e6:.3g}"


def best_chunk(figures: list[dict]) -> dict | None:
    """The fastest chunked figure (None when every chunk covered the whole batch)."""
    timed = [f for f in figures if "cand_per_s" in f]
    return max(timed, key=lambda f: f["cand_per_s"]) if timed else None


def chunk_text(figures: list[dict]) -> str:
    best = best_chunk(figures)
    if best is None:
        return ""
    return (f", best chunked {millions(best['cand_per_s'])} M/s at "
            f"2^{best['chunk'].bit_length() - 1} rows/call")


def summary_line(res: dict) -> str:
    chains, dags, t = res["chains"], res["dags"], res["targets"]
    dev = res["device"]
    where = dev["platform"] if dev["platform"] == "cpu" else dev["device_kind"]

    def met(key):
        return "met" if t[key]["met"] else "NOT met"

    def driven(part):
        return (f"{millions(part['driver_unknown_size']['cand_per_s'])} M cand/s in chunks of "
                f"{part['driver_unknown_size']['chunk']:,} (one call "
                f"{millions(part['unknown_size']['cand_per_s'])} M/s, "
                f"{millions(part['size_224']['cand_per_s'])} M/s at {SIZE}"
                f"{chunk_text(part['chunked_unknown_size'])}")

    native = chains.get("native")
    compiled = ("" if not native else
                f"compiled CPU program {millions(native['unknown_size']['cand_per_s'])} M/s, "
                f"{millions(native['size_224']['cand_per_s'])} M/s at {SIZE}; XLA's: ")
    return (
        f"chains: {compiled}{driven(chains)}; "
        f"numpy {millions(chains['numpy']['cand_per_s'])} M/s, {chains['speedup_vs_numpy']:.2f}x); "
        f"DAGs ({'compiled CPU kernel' if dags.get('program') == 'native' else 'XLA'}): "
        f"{driven(dags)}"
        + (f"; XLA's program {millions(dags['xla_program']['driver_unknown_size']['cand_per_s'])}"
           " M/s" if "xla_program" in dags else "") + "); "
        f"device {where} ({dev['cpu_cores']} cores) — targets: "
        f"chains >= {t['chains_cand_per_s']['target'] / 1e6:g} M/s {met('chains_cand_per_s')}, "
        f">= {t['chains_speedup_vs_numpy']['target']:g}x numpy "
        f"{met('chains_speedup_vs_numpy')}; "
        f"DAGs >= {t['dags_cand_per_s']['target'] / 1e6:g} M/s {met('dags_cand_per_s')}"
        + (" [--quick: smoke test, not representative]" if res["quick"] else "")
    )


def measure(batch: Batch, what: str, repeats: int, log) -> tuple[dict, object]:
    """Kernel figures for one batch: one call at unknown size and at 224, then chunked.

    Returns the figures and the unknown-size result (for the numpy comparison).
    """
    axes = driver.state_axes(batch, (SIZE, SIZE))  # the same at an unknown (square) size
    figures, result = {"state_axes": axes}, None
    for label, size in (("unknown_size", 0), ("size_224", SIZE)):
        log(f"timing the kernel on {what} at input size {size or 'unknown'} ...")
        figures[label], res = time_kernel(*device_inputs(batch, size), repeats)
        figures[label]["input_size"] = size or None
        figures[label]["invalid_rows"] = invalid_rows(res)
        result = res if size == 0 else result
    log(f"timing the kernel on {what} chunk by chunk ...")
    args, program = device_inputs(batch, 0)
    default = program.chunk  # driver.default_chunk
    figures["chunked_unknown_size"] = [
        time_chunked(args, program, c, repeats) for c in sorted({*CHUNKS, default})]
    driven = [f for f in figures["chunked_unknown_size"] if f["chunk"] == min(default, len(batch))]
    # the figure that counts: the kernel called as the driver calls it (its chunk size)
    figures["driver_unknown_size"] = ({**figures["unknown_size"], "chunk": len(batch)}
                                      if "cand_per_s" not in driven[0] else driven[0])
    args, program = device_inputs(batch, SIZE)
    figures["chunked_size_224"] = [time_chunked(args, program, program.chunk, repeats)]
    return figures, result


def chain_figure(chain_res: dict) -> dict:
    """The chain figure the targets judge: the program the driver runs at an unknown size
    (the compiled chain program on CPUs that build it, else XLA's in the driver's chunks)."""
    native = chain_res.get("native")
    return native["unknown_size"] if native else chain_res["driver_unknown_size"]


def time_driver(batch: Batch, repeats: int, log) -> list[dict]:
    """``driver.run_batch`` end to end (host layout, transfer, kernel, results back on the
    host) per chunk size in DRIVER_CHUNKS, at an unknown size and at 224: the measurement
    behind ``driver.default_chunk`` for chains. Median of ``repeats`` after a warm-up."""
    figures = []
    for size in (None, (SIZE, SIZE)):
        log(f"timing driver.run_batch at input size {size[0] if size else 'unknown'} ...")
        default = driver.default_chunk(batch, size)
        for chunk in DRIVER_CHUNKS:
            driver.run_batch(batch, size, chunk=chunk)  # compiles
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                driver.run_batch(batch, size, chunk=chunk)
                times.append(time.perf_counter() - start)
            median = statistics.median(times)
            figures.append({"input_size": size[0] if size else None, "chunk": chunk,
                            "driver_default": chunk == default, "times_s": times,
                            "median_s": median, "cand_per_s": len(batch) / median})
    return figures


def measure_xla_dags(dags: Batch, repeats: int, log) -> dict:
    """XLA's DAG program (the rfsearch.native kernel off) in its driver chunks, at both
    input sizes: what GPUs and CPUs without a C++ compiler run."""
    figures = {}
    with xla_programs():
        for label, size in (("driver_unknown_size", 0), ("driver_size_224", SIZE)):
            log(f"timing XLA's DAG program at input size {size or 'unknown'} ...")
            args, program = device_inputs(dags, size)
            timed = time_chunked(args, program, program.chunk, repeats)
            if "cand_per_s" not in timed:  # one chunk (--quick): a single call
                timed = {**time_kernel(args, program, repeats)[0], "chunk": len(dags)}
            figures[label] = timed
    return figures


def measure_shared(dags: Batch, repeats: int, log) -> dict:
    """DAGs that share one topology (NAS cells, repeated zoo networks): network 0 of the
    random DAGs repeated, in the driver's chunks at both input sizes. The kernel reads
    their input slots as contiguous blocks, without a gather."""
    shared = dags.take(np.zeros(len(dags), np.int64))
    axes = driver.state_axes(shared, (SIZE, SIZE))
    figures = {"n": len(shared), "network": 0, "state_axes": axes}
    for label, size in (("driver_unknown_size", 0), ("driver_size_224", SIZE)):
        log(f"timing the kernel on DAGs sharing one topology at input size {size or 'unknown'} ...")
        args, program = device_inputs(shared, size)
        assert program.topology == "shared", program
        timed = time_chunked(args, program, program.chunk, repeats)
        if "cand_per_s" not in timed:  # one chunk (--quick): a single call
            timed = {**time_kernel(args, program, repeats)[0], "chunk": len(shared)}
        figures[label] = {**timed, "options": describe(program)}
    return figures


def measure_chains(n: int, repeats: int, rng: np.random.Generator, log) -> dict:
    """Chains: XLA's programs, the numpy baseline on the same data, the compiled program
    (where CPUs run it), and the driver end to end by chunk size."""
    log(f"building {n} chains of {CHAIN_LAYERS} layers ...")
    start = time.perf_counter()
    chains = random_chains(n, CHAIN_LAYERS, rng)
    res = {"n": n, "layers": CHAIN_LAYERS, "depth_bucket": chains.depth,
           "build_s": time.perf_counter() - start}
    figures, result = measure(chains, "chains", repeats, log)
    res.update(figures)
    log("timing the numpy baseline ...")
    res["numpy"], reference = time_numpy(chains, repeats)
    res["agreement"] = agreement(result, reference)
    log("timing the compiled chain program (driver.run_batch) ...")
    res["native"] = time_native_chains(chains, repeats)
    if res["native"]:  # what CPUs run: judged, and compared with numpy too
        raw = driver.run_batch(chains, None)
        res["native"]["agreement"] = agreement(
            types.SimpleNamespace(out=R.NodeState(**raw.out)), reference)
    res["speedup_vs_numpy"] = chain_figure(res)["cand_per_s"] / res["numpy"]["cand_per_s"]
    res["run_batch"] = time_driver(chains, repeats, log)
    if not all(a["equal"] for a in (res["agreement"],
                                    (res["native"] or {}).get("agreement", {"equal": 1}))):
        log(f"MISMATCH between kernel and numpy: {res['agreement']}")
    return res


def measure_dags(n: int, repeats: int, rng: np.random.Generator, log) -> dict:
    """DAGs: the driver's program at both sizes, a shared topology, and XLA's program
    where the compiled kernel is the driver's."""
    log(f"building {n} DAGs of {DAG_LAYERS} layers ...")
    start = time.perf_counter()
    dags, downs = random_dags(n, DAG_LAYERS + 1, rng)
    build = time.perf_counter() - start
    live = dags.preds[:, 1 : DAG_LAYERS + 1] >= 0
    res = {
        "n": n, "layers": DAG_LAYERS, "depth_bucket": dags.depth, "fan_in_bucket": dags.fan_in,
        "max_inputs": DAG_MAX_INPUTS, "build_s": build,
        "merge_nodes_per_dag": float((live.sum(axis=2) > 1).sum() / n),
        "inputs_per_node": float(live.sum() / (n * DAG_LAYERS)),
        "stride2_nodes_per_dag": float(downs.mean()),
        "verified": verify_dags(dags, downs),
    }
    figures, _ = measure(dags, "DAGs", repeats, log)
    res.update(figures)
    if any(res[k]["invalid_rows"] for k in ("unknown_size", "size_224")):
        log("WARNING: the kernel marks some generated DAGs invalid")
    res["shared_topology"] = measure_shared(dags, repeats, log)
    res["program"] = program(dags)
    if res["program"] == "native":
        res["xla_program"] = measure_xla_dags(dags, repeats, log)
    return res


def record(args, source: dict, chain_res: dict, dag_res: dict) -> dict:
    """The result file's contents: the figures, how they were taken, and the targets."""
    values = {"chains_cand_per_s": chain_figure(chain_res)["cand_per_s"],
              "chains_speedup_vs_numpy": chain_res["speedup_vs_numpy"],
              "dags_cand_per_s": dag_res["driver_unknown_size"]["cand_per_s"]}
    results = {
        "benchmark": "kernel_throughput",
        "question": "candidates per second of rfsearch.kernel.propagate on this machine's device",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick, "repeats": args.repeats, "seed": args.seed, "statistic": "median",
        "driver_default_chunk": DEFAULT_CHUNK, "driver_unrolled_chunk": driver.UNROLLED_CHUNK,
        "driver_workers": driver.workers(), "driver_dag_chunk": driver.DAG_CHUNK,
        "driver_native_dag_chunk": driver.NATIVE_DAG_CHUNK,
        "device": device_info(),
        "source": {**source, "changed_during_run": code_changed(source, source_info())},
        "versions": {"jax": jax.__version__, "jaxlib": package_version("jaxlib"),
                     "numpy": np.__version__, "rfsearch": rfsearch.__version__},
        "chains": chain_res,
        "dags": dag_res,
        "targets": {key: {"target": target, "value": values[key], "met": values[key] >= target}
                    for key, target in targets().items()},
    }
    results["summary"] = summary_line(results)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--quick", action="store_true",
                        help="2**14 chains / 2**12 DAGs: a smoke test that runs in seconds")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON output (default benchmarks/results/kernel_throughput.json, "
                             "or kernel_throughput_quick.json with --quick)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per figure (>= 5)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 5:
        parser.error("--repeats must be at least 5")
    out_path = args.out or RESULTS / ("kernel_throughput_quick.json" if args.quick
                                      else "kernel_throughput.json")
    n_chains, n_dags = (1 << 14, 1 << 12) if args.quick else (1 << 20, 1 << 18)
    source = source_info()  # the code imported above; compared again at the end
    rng = np.random.default_rng(args.seed)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    chain_res = measure_chains(n_chains, args.repeats, rng, log)
    results = record(args, source, chain_res, measure_dags(n_dags, args.repeats, rng, log))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(out_path)
    log(f"wrote {out_path}")
    print(results["summary"])
    return 0 if chain_res["agreement"]["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
