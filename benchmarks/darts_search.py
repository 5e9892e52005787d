"""How many DARTS candidates per second does ``rfsearch search darts --sample N -o DIR``
sample, evaluate and write to Parquet, end to end?

1. Warm-up: one search of two chunks, which pays the compilation of the DAG kernel's
   program for DARTS' batch shape (reported apart).
2. Batched path: ``--runs`` searches of ``--n`` sampled candidates each (other seeds,
   other folders), at DARTS' input size (32); the median run gives the rate.
3. Baseline: the per-spec path (one spec per candidate through ``evaluate``: the same
   space without its batcher) on ``--baseline`` candidates, in the same process; the
   ratio of the two rates is reported.

Writes benchmarks/results/darts_search.json (``--quick``: darts_search_quick.json) and
prints one summary line.
Run: python benchmarks/darts_search.py [--quick] [--n 1000000] [--runs 3] [--out PATH]
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workloads import RESULTS, device_info, package_version, source_info  # noqa: E402

import rfsearch  # noqa: E402
from rfsearch.search.host_run import BATCH_CHUNK  # noqa: E402
from rfsearch.spaces import builtin  # noqa: E402

TARGET_PER_S = 1e5  # issue #17, item 2: DARTS candidates per second, sampled, to Parquet


def timed_search(space, n: int, seed: int, folder: Path) -> dict:
    """One sampled search into ``folder``: wall seconds, CPU seconds of the process (all
    its threads), rows written, bytes on disk, and the load average around it (other
    processes on the machine slow the wall time, not the CPU time)."""
    load = os.getloadavg()[0]
    start, cpu = time.perf_counter(), time.process_time()
    summary = rfsearch.search(space, sample=n, seed=seed, output=folder)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    size = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
    return {"n": n, "seconds": seconds, "per_s": n / seconds, "cpu_seconds": cpu,
            "cpu_us_per_candidate": cpu / n * 1e6, "rows": summary.matches,
            "parquet_mb": size / 1e6, "load_before": load, "load_after": os.getloadavg()[0]}


def batched(n: int, runs: int, tmp: Path) -> dict:
    """Warm-up (compilation), then the median of ``runs`` searches of ``n`` candidates."""
    space = builtin("darts")
    warm = timed_search(space, 2 * BATCH_CHUNK, 1000, tmp / "warm")
    timings = [timed_search(space, n, seed, tmp / f"run{seed}") for seed in range(runs)]
    median = statistics.median(t["seconds"] for t in timings)
    cpu = statistics.median(t["cpu_us_per_candidate"] for t in timings)
    return {"warmup": warm, "runs": timings, "median_seconds": median,
            "per_s": n / median, "cpu_us_per_candidate": cpu, "chunk": BATCH_CHUNK}


def baseline(n: int, tmp: Path) -> dict:
    """The per-spec path: DARTS without its batcher (a spec per candidate)."""
    space = dataclasses.replace(builtin("darts"), batcher=None)
    timed_search(space, 16, 999, tmp / "base-warm")
    return timed_search(space, n, 0, tmp / "base")


def report(args, new: dict, old: dict) -> dict:
    per_s = new["per_s"]
    return {
        "benchmark": "darts_search", "quick": args.quick,
        "question": "DARTS candidates per second, sampled, evaluated and written to "
                    "Parquet (rfsearch search darts --sample N -o DIR), and the per-spec "
                    "path before it",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device_info(), "source": source_info(),
        "versions": {name: package_version(name) for name in
                     ("rfsearch", "jax", "jaxlib", "numpy", "pandas", "pyarrow")},
        "input_size": 32, "batched": new, "per_spec": old,
        "speedup": per_s / old["per_s"],
        "targets": {"darts_sample_per_s": {"target": TARGET_PER_S, "measured": per_s,
                                           "met": per_s >= TARGET_PER_S}},
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="2^18 candidates, 200 for the baseline, smoke test")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=int, default=1000)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    n = 1 << 18 if args.quick else args.n
    out = args.out or RESULTS / ("darts_search_quick.json" if args.quick
                                 else "darts_search.json")
    with tempfile.TemporaryDirectory() as tmp:
        new = batched(n, args.runs, Path(tmp))
        old = baseline(200 if args.quick else args.baseline, Path(tmp))
    res = report(args, new, old)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    met = "met" if res["targets"]["darts_sample_per_s"]["met"] else "NOT met"
    print(f"search darts --sample {n:,} -o DIR at 32: {new['per_s']:,.0f} cand/s (median of "
          f"{args.runs}, {new['cpu_us_per_candidate']:.1f} us CPU each; warm-up "
          f"{new['warmup']['seconds']:.1f} s), per-spec path "
          f"{old['per_s']:,.0f} cand/s, x{res['speedup']:,.0f}; target "
          f"{TARGET_PER_S:,.0f}/s {met} ({res['device']['cpu_cores']} cores)"
          + (" [--quick]" if args.quick else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
