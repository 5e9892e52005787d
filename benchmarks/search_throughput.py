"""How fast does ``rfsearch search`` walk a space on this machine's device?

1. Kernel: the 64-layer chain grid of issue #4 (16 choice slots of kernel {1,3,5,7} x
   dilation {1,2}, 4 stride-2 layers, 'same' padding, input 224; 8^16 candidates):
   candidates/s of the device walk with a filter, median over chunks, compile timed
   separately.
2. End to end: the first 10^9 ids of that grid with a filter keeping about 0.1 %,
   written to a Parquet folder (tables, compile, walk, decoding, writing).
3. ofa-mbv3: the walk's rate on its space (2.19e10 candidates) and the projected
   exhaustive time; ``--ofa-full`` runs it all.
4. nasbench201, natsbench-sss and nasbench101 (from its cache; generated and timed first
   when missing): whole spaces as subprocesses of the CLI (Python start-up included).

Writes benchmarks/results/search_throughput.json and prints one summary line.
Run: python benchmarks/search_throughput.py [--quick] [--ofa-full]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import rfsearch
from rfsearch.search import runner as S
from rfsearch.search import walk as D
from rfsearch.search.device_run import DeviceRun
from rfsearch.search.filter import parse_filter
from rfsearch.spaces import builtin, grid_space

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"grid_kernel_per_s": 100e6, "grid_end_to_end_s": 60.0, "ofa_exhaustive_s": 600.0,
           "small_spaces_s": 10.0}  # on a 2-core CPU
ACCELERATOR_TARGETS = {**TARGETS, "grid_kernel_per_s": 1e10}  # issue #17: on an H100


def targets() -> dict[str, float]:
    """The targets of the default device."""
    return TARGETS if jax.default_backend() == "cpu" else ACCELERATOR_TARGETS


def bench_grid() -> dict:
    """The issue's 64-layer grid: 16 blocks of (choice conv, 3 fixed 3x3 convs), the
    fourth conv of every fourth block with stride 2."""
    layers = []
    for b in range(16):
        layers.append({"name": f"choice{b}", "op": "conv", "kernel": [1, 3, 5, 7],
                       "dilation": [1, 2], "padding": "same"})
        for j, last in enumerate((False, False, True)):
            layers.append({"name": f"fixed{b}.{j}", "op": "conv", "kernel": 3,
                           "stride": 2 if last and b % 4 == 3 else 1, "padding": "same"})
    return {"name": "grid64", "input_size": 224, "layers": layers}


def time_walk(space, where: str, chunks: int, chunk: int, ids=None) -> dict:
    """Median seconds per device call of the walk (mask computed, ready), compile apart."""
    node = parse_filter(where, S.filter_schema(space))
    run = DeviceRun(space, None, node, where, None, 0, chunk, None, ids)
    args = []
    for c in range(min(chunks + 1, run.chunks)):
        lo = c * run.reps
        prefix = np.arange(lo, lo + run.reps, dtype=np.int64) + run.first
        args.append(prefix)
    times = []
    with jax.enable_x64(True):
        bounds = np.array([run.lo, run.hi], np.int64)
        groups = run.t.groups[:run.start]

        def call(prefix):
            mask, _ = D.walk(prefix, run.reps, bounds, run.suffix, groups, t=run.t,
                             start=run.start, where=node, top=None, bounded=False)
            return mask.block_until_ready()
        t0 = time.perf_counter()
        call(args[0])
        first = time.perf_counter() - t0
        for prefix in args[1:]:
            t0 = time.perf_counter()
            call(prefix)
            times.append(time.perf_counter() - t0)
    per_call = statistics.median(times) if times else first
    n = run.reps * run.width
    return {"candidates_per_call": n, "calls": len(times), "first_call_s": first,
            "median_call_s": per_call, "per_s": n / per_call, "groups": len(run.plan.groups),
            "suffix_options": run.width, "dtype": run.plan.dtype, "axes": run.t.axes}


def threshold(space, ids, fraction: float, n: int = 200_000) -> tuple[int, float]:
    """An rf_h threshold that keeps about ``fraction`` of the ids (from a sample)."""
    df = S.search(space, sample=n, seed=1, ids=ids, where="valid and aligned")
    rf = np.sort(df["rf_h"].to_numpy(dtype=np.int64))
    t = int(rf[int(len(rf) * (1 - fraction))])
    return t, float((rf >= t).mean() * len(df) / n)


def end_to_end(space, where: str, ids, chunk: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = S.search(space, output=Path(tmp) / "out", where=where, ids=ids, chunk=chunk)
        seconds = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in (Path(tmp) / "out").iterdir())
    return {"candidates": summary.candidates, "rows": summary.matches, "seconds": seconds,
            "per_s": summary.candidates / seconds, "chunks": summary.chunks,
            "output_mb": size / 1e6, "where": where}


def cli_seconds(space: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "rfsearch.cli", "search", space, "-o",
                               str(Path(tmp) / "out"), "-q"], capture_output=True, text=True,
                              check=False)
        seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"search {space} failed: {proc.stderr.strip()}")
    return {"seconds": seconds, "returncode": proc.returncode}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10^7 candidates end to end")
    parser.add_argument("--ofa-full", action="store_true", help="walk all of ofa-mbv3")
    parser.add_argument("--fresh-nasbench101", action="store_true",
                        help="delete the NAS-Bench-101 caches first (time the generation)")
    parser.add_argument("--chunk", type=int, default=S.default_chunk())
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or RESULTS / ("search_throughput_quick.json" if args.quick
                                 else "search_throughput.json")
    grid, _ = grid_space(bench_grid())
    e2e_n = 10**7 if args.quick else 10**9
    t, kept = threshold(grid, (0, e2e_n), 0.001)
    where = f"rf_h >= {t} and aligned"
    res = {"benchmark": "search_throughput", "quick": args.quick,
           "question": "candidates per second of rfsearch search on this machine's device",
           "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
           "device": str(jax.devices()[0]), "device_count": jax.device_count(),
           "cpu_cores": os.cpu_count(), "rfsearch": rfsearch.__version__,
           "targets": targets(), "chunk": args.chunk}
    res["grid"] = {"layers": 64, "slots": 16, "options_per_slot": 8, "size": grid.size,
                   "where": where, "sample_kept_fraction": kept,
                   "kernel": time_walk(grid, where, 4 if args.quick else 16, args.chunk)}
    res["grid"]["end_to_end"] = end_to_end(grid, where, (0, e2e_n), args.chunk)
    ofa = builtin("ofa-mbv3")
    ofa_where = "rf_h >= 1500 and aligned"  # about 3e-5 of the space
    walk = time_walk(ofa, ofa_where, 4 if args.quick else 16, args.chunk)
    res["ofa"] = {"size": ofa.size, "where": ofa_where, "kernel": walk,
                  "projected_exhaustive_s": ofa.size / walk["per_s"]}
    if args.ofa_full:
        res["ofa"]["exhaustive"] = end_to_end(ofa, ofa_where, None, args.chunk)
    from rfsearch.spaces import nasbench101

    if args.fresh_nasbench101:
        for name in (nasbench101.CELLS, nasbench101.TEXT_CELLS, nasbench101.ENCODED):
            nasbench101.cache_file(name).unlink(missing_ok=True)
    if not nasbench101.cache_file().exists():
        t0 = time.perf_counter()
        nasbench101.cells()
        res["nasbench101_generate_s"] = time.perf_counter() - t0
    if "nasbench101_generate_s" in res:  # the first search encodes the cells: time it apart
        res["nasbench101_first_search_s"] = cli_seconds("nasbench101")["seconds"]
    res["small"] = {name: cli_seconds(name)
                    for name in ("nasbench201", "natsbench-sss", "nasbench101")}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    g, e = res["grid"]["kernel"], res["grid"]["end_to_end"]
    print(f"grid64 walk {g['per_s'] / 1e6:.0f} M cand/s (compile {g['first_call_s']:.2f} s); "
          f"{e['candidates']:.0e} end to end {e['seconds']:.1f} s ({e['rows']:,} rows); "
          f"ofa-mbv3 {walk['per_s'] / 1e6:.0f} M/s, projected "
          f"{res['ofa']['projected_exhaustive_s']:.0f} s; nasbench201 "
          f"{res['small']['nasbench201']['seconds']:.1f} s, natsbench-sss "
          f"{res['small']['natsbench-sss']['seconds']:.1f} s; {res['device']}, "
          f"{res['cpu_cores']} cores" + (" [--quick]" if args.quick else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
