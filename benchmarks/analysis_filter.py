"""How fast does ``rfsearch search`` filter on the layer-wise analysis columns
(n_unproductive, n_critical, feasible_*, rf_at_stride_K), now computed in the device walk?

For each workload, the search with an analysis term in ``where`` and the same search
without it (the baseline), written to a Parquet folder as ``rfsearch search ... -o DIR``
does: a first run (compilation, reported apart), then the median of ``--runs`` runs.
Rates are candidates per second end to end (tabulation, walk, rows, writing) and of the
walk alone (``SearchSummary.seconds``: the chunk loop and the output, tabulation apart).

* ofa-mbv3 at 224: the issue's example, ``n_unproductive == 0 and rf_h >= 200`` on the
  first 10^8 ids (its baseline, ``rf_h >= 200``, keeps every candidate, so it is not run),
  and a pair whose geometry term is selective;
* nasbench101 at 32: its whole space (423,624 cells).

Target (issue #17 item 3): >= 1e7 candidates/s with an analysis term.
Writes benchmarks/results/analysis_filter.json (``--quick``: analysis_filter_quick.json).
Run: python benchmarks/analysis_filter.py [--quick] [--runs 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

import rfsearch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from workloads import device_info, source_info  # noqa: E402

TARGET_PER_S = 1e7  # issue #17 item 3
EXAMPLE = "n_unproductive == 0 and rf_h >= 200"


def workloads(quick: bool) -> list[dict]:
    ofa_ids = (0, 20_000_000 if quick else 100_000_000)
    return [
        {"name": "ofa-mbv3 (issue example)", "space": "ofa-mbv3", "input_size": 224,
         "ids": ofa_ids, "where": EXAMPLE, "baseline": None},
        {"name": "ofa-mbv3", "space": "ofa-mbv3", "input_size": 224, "ids": ofa_ids,
         "where": "n_unproductive <= 1 and rf_h <= 600", "baseline": "rf_h <= 600"},
        {"name": "nasbench101", "space": "nasbench101", "input_size": 32, "ids": None,
         "where": "n_unproductive == 0 and rf_h >= 150", "baseline": "rf_h >= 150"},
    ]


def one_run(w: dict, where: str) -> dict:
    """Wall seconds of one search to a fresh folder, its walk seconds and its rows."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        summary = rfsearch.search(w["space"], where=where, input_size=w["input_size"],
                                  ids=w["ids"], output=Path(tmp) / "out")
        wall = time.perf_counter() - start
    return {"seconds": wall, "walk_seconds": summary.seconds, "rows": summary.matches,
            "candidates": summary.candidates}


def measure(w: dict, where: str, runs: int) -> dict:
    """The compile run apart, then the median of ``runs`` runs."""
    first = one_run(w, where)
    timed = [one_run(w, where) for _ in range(runs)]
    wall = statistics.median(r["seconds"] for r in timed)
    walk = statistics.median(r["walk_seconds"] for r in timed)
    n = first["candidates"]
    return {"where": where, "candidates": n, "rows": first["rows"],
            "first_run_s": first["seconds"], "runs": [r["seconds"] for r in timed],
            "median_s": wall, "per_s": n / wall, "walk_median_s": walk, "walk_per_s": n / walk}


def bench(w: dict, runs: int) -> dict:
    result = {"space": w["space"], "input_size": w["input_size"],
              "ids": None if w["ids"] is None else list(w["ids"]),
              "analysis": measure(w, w["where"], runs)}
    if w["baseline"] is not None:
        base = measure(w, w["baseline"], runs)
        result["baseline"] = base
        result["ratio"] = result["analysis"]["per_s"] / base["per_s"]
        result["walk_ratio"] = result["analysis"]["walk_per_s"] / base["walk_per_s"]
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2e7 ofa ids, 2 runs")
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    runs = args.runs or (2 if args.quick else 3)
    out = args.out or HERE / "results" / ("analysis_filter_quick.json" if args.quick
                                          else "analysis_filter.json")
    figures = {w["name"]: bench(w, runs) for w in workloads(args.quick)}
    targets = {name: {"measured_per_s": f["analysis"]["per_s"],
                      "measured_walk_per_s": f["analysis"]["walk_per_s"],
                      "target_per_s": TARGET_PER_S,
                      "met": f["analysis"]["per_s"] >= TARGET_PER_S,
                      "walk_met": f["analysis"]["walk_per_s"] >= TARGET_PER_S}
               for name, f in figures.items()}
    result = {
        "benchmark": "analysis_filter", "quick": args.quick,
        "question": "candidates/s of rfsearch search with a layer-wise analysis term in "
                    "where (computed in the device walk), against the same search without it",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": device_info(), "versions": {"rfsearch": rfsearch.__version__,
                                              "jax": jax.__version__, "source": source_info()},
        "runs": runs, "figures": figures, "targets": targets,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name, f in figures.items():
        a = f["analysis"]
        ratio = f" ({f['ratio']:.2f}x the baseline's rate)" if "ratio" in f else ""
        print(f"{name}: {a['candidates']:,} candidates, '{a['where']}': "
              f"{a['per_s']:.3g}/s end to end{ratio}, walk {a['walk_per_s']:.3g}/s; "
              f"first run {a['first_run_s']:.1f} s" + (" [--quick]" if args.quick else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
