"""Does ``rfsearch eval`` stay in bounded memory on a chain table larger than memory
would allow in one piece? Writes ``--n`` random ragged chains (8 to 16 layers, as
``end_to_end.py``'s) to Parquet, then runs ``rfsearch eval chains.parquet -o
results.parquet --input-size 224`` in a child process and records its wall time and peak
resident memory (the child's ``ru_maxrss``); checks that every row was written, in order.

Writes benchmarks/results/stream_eval.json.
Run: python benchmarks/stream_eval.py [--n 20000000] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from end_to_end import chain_table  # noqa: E402
from workloads import source_info  # noqa: E402

PIECE = 1_000_000  # chains generated and written at a time
TARGET_S, TARGET_GB = 90.0, 3.0  # issue #17: 2e7 chains at 224 in 90 s within 3 GB


def write_chains(path: Path, n: int) -> None:
    writer = None
    for start in range(0, n, PIECE):
        table = chain_table(min(PIECE, n - start), 16, seed=start)
        writer = writer or pq.ParquetWriter(str(path), table.schema, compression="zstd")
        writer.write_table(table)
    writer.close()


def run_eval(src: Path, dst: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (GB) of ``rfsearch eval`` in a child process."""
    cmd = [sys.executable, "-m", "rfsearch.cli", "eval", str(src), "-o", str(dst),
           "--input-size", "224", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: some rows hold an error, which is a result
        raise SystemExit(f"rfsearch eval failed: {done.stderr.strip()[-500:]}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, peak_kb / 1e6


def in_order(dst: Path, n: int) -> bool:
    """Every row written, the first and last named after their rows."""
    file = pq.ParquetFile(str(dst))
    first = file.read_row_group(0, columns=["name"]).column("name")[0].as_py()
    last = file.read_row_group(file.num_row_groups - 1, columns=["name"]).column("name")
    return file.metadata.num_rows == n and first == "chain0" and \
        last[len(last) - 1].as_py() == f"chain{n - 1}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000_000)
    parser.add_argument("--quick", action="store_true", help="10^5 chains, smoke test")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    n = 100_000 if args.quick else args.n
    out = args.out or HERE / "results" / ("stream_eval_quick.json" if args.quick
                                          else "stream_eval.json")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "chains.parquet", Path(tmp) / "results.parquet"
        write_chains(src, n)
        wall, peak = run_eval(src, dst)
        ordered = in_order(dst, n)
        sizes = src.stat().st_size / 1e6, dst.stat().st_size / 1e6
    result = {
        "benchmark": "stream_eval", "quick": args.quick,
        "question": "rfsearch eval of a large chain table: seconds and peak memory",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_cores": os.cpu_count(), "source": source_info(), "n": n, "input_size": 224,
        "input_mb": sizes[0], "output_mb": sizes[1], "seconds": wall, "peak_rss_gb": peak,
        "rows_in_order": ordered, "target_s": TARGET_S, "target_gb": TARGET_GB,
        "target_met": ordered and wall <= TARGET_S and peak <= TARGET_GB,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"rfsearch eval, {n:,} chains at 224, Parquet to Parquet ({sizes[0]:.0f} MB in, "
          f"{sizes[1]:.0f} MB out): {wall:.1f} s, peak RSS {peak:.2f} GB, rows in order: "
          f"{ordered}" + (" [--quick]" if args.quick else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
