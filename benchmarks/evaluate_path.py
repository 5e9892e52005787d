"""Is a user's whole path at kernel speed? From int32 arrays of 2^20 chains x 64 layers,
``rfsearch.chains(...)`` builds the Batch, ``rfsearch.evaluate(batch)`` returns the
DataFrame (names, geometry, errors) and ``write_parquet`` writes it; at an unknown input
size and at 224. Beside them, in the same run, the chain recurrence in numpy, int64
(plus the size recurrence at 224), on the same data:
- on the Batch's layer-major arrays (what ``evaluate`` starts from);
- on the user's network-major [N, L] arrays, the faster of reading their columns and
  transposing them first (what ``chains`` + ``evaluate`` start from).

Writes benchmarks/results/evaluate_path.json and prints one summary line.
Run: python benchmarks/evaluate_path.py [--n 1048576] [--quick] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import rfsearch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import workloads as W  # noqa: E402
from end_to_end import timed  # noqa: E402

LAYERS = 64
TARGETS = {"evaluate_cand_per_s": 1e7, "evaluate_vs_numpy": 5.0, "path_vs_numpy": 3.0}
FIELDS = ("kernel", "stride", "dilation", "padding")


def user_arrays(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random square chains as the int32 [N, L] arrays a user holds; 'same' padding, so
    that every chain stays valid at 224."""
    rng = np.random.default_rng(seed)
    kernel = rng.choice(np.array([1, 3, 5, 7], np.int32), (n, LAYERS))
    dilation = rng.integers(1, 3, (n, LAYERS), dtype=np.int32)
    return {"kernel": kernel,
            "stride": np.where(rng.random((n, LAYERS)) < W.STRIDE2_PROBABILITY, 2,
                               1).astype(np.int32),
            "dilation": dilation, "padding": dilation * (kernel - 1) // 2}


def numpy_on_batch(batch, size):
    """The recurrence on the Batch's own layer-major arrays (one axis: square chains)."""
    lm = {f: batch.axes_major(f, 1)[1:, 0] for f in ("kernel", "stride", "dilation",
                                                      "pad_before")}  # [L, N] views
    return W.numpy_recurrence(lambda i: tuple(lm[f][i] for f in lm), batch.depth - 1,
                              len(batch), size)


def numpy_on_columns(arrays, size):
    """The recurrence reading the user's [N, L] arrays column by column."""
    return W.numpy_recurrence(lambda i: tuple(arrays[f][:, i] for f in FIELDS), LAYERS,
                              len(arrays["kernel"]), size)


def numpy_transposed(arrays, size):
    """The recurrence after transposing the user's arrays to [L, N]."""
    t = {f: np.ascontiguousarray(arrays[f].T) for f in FIELDS}
    return W.numpy_recurrence(lambda i: tuple(t[f][i] for f in FIELDS), LAYERS,
                              len(arrays["kernel"]), size)


def agree(df, reference: dict[str, np.ndarray]) -> bool:
    """The DataFrame's geometry equals numpy's, row for row."""
    return all((df[f"{key}_h"].to_numpy(dtype=np.int64) == values).all()
               for key, values in reference.items())


def figures_at(arrays, size, repeats: int, tmp: Path) -> dict:
    """Every timing of the path at one input size (None: unknown)."""
    n = len(arrays["kernel"])
    batch = rfsearch.chains(*(arrays[f] for f in FIELDS))
    first = time.perf_counter()
    rfsearch.evaluate(batch, input_size=size)  # compiles every chunk bucket it uses
    first_s = time.perf_counter() - first
    chains_s, chains_t, batch = timed(
        lambda: rfsearch.chains(*(arrays[f] for f in FIELDS)), repeats)
    eval_s, eval_t, df = timed(lambda: rfsearch.evaluate(batch, input_size=size),
                                     repeats)
    path_s, path_t, _ = timed(lambda: rfsearch.evaluate(
        rfsearch.chains(*(arrays[f] for f in FIELDS)), input_size=size), repeats)
    write_s, write_t, _ = timed(
        lambda: rfsearch.write_parquet(df, tmp / "results.parquet"), repeats)
    np_batch_s, np_batch_t, reference = timed(lambda: numpy_on_batch(batch, size),
                                                    repeats)
    columns_s, _, _ = timed(lambda: numpy_on_columns(arrays, size), max(1, repeats // 2))
    transposed_s, _, _ = timed(lambda: numpy_transposed(arrays, size),
                                     max(1, repeats // 2))
    np_user_s = min(columns_s, transposed_s)
    return {
        "input_size": size, "n": n, "compile_s": max(0.0, first_s - eval_s),
        "chains_s": chains_s, "chains_times": chains_t,
        "evaluate_s": eval_s, "evaluate_times": eval_t, "evaluate_cand_per_s": n / eval_s,
        "path_s": path_s, "path_times": path_t, "path_cand_per_s": n / path_s,
        "write_parquet_s": write_s, "write_parquet_times": write_t,
        "numpy_batch_s": np_batch_s, "numpy_batch_times": np_batch_t,
        "numpy_columns_s": columns_s, "numpy_transposed_s": transposed_s,
        "numpy_user_s": np_user_s,
        "evaluate_vs_numpy": np_batch_s / eval_s, "path_vs_numpy": np_user_s / path_s,
        "agrees_with_numpy": agree(df, reference) and bool(df["error"].isna().all()),
        "rows": len(df),
    }


def judged(at: dict) -> dict:
    """Each target: measured, target, met."""
    return {key: {"measured": at[key], "target": target, "met": at[key] >= target}
            for key, target in TARGETS.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1 << 20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2^16 chains, smoke test")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    n, repeats = (1 << 16, 2) if args.quick else (args.n, args.repeats)
    out = args.out or HERE / "results" / ("evaluate_path_quick.json" if args.quick
                                          else "evaluate_path.json")
    arrays = user_arrays(n)
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {str(size): figures_at(arrays, size, repeats, Path(tmp))
                 for size in (None, 224)}
    result = {
        "benchmark": "evaluate_path", "quick": args.quick,
        "question": "arrays -> chains() -> evaluate() -> write_parquet at kernel speed?",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": W.device_info(), "source": W.source_info(), "layers": LAYERS,
        "repeats": repeats, "statistic": "median", "sizes": sizes,
        "targets": {size: judged(at) for size, at in sizes.items()},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for size, at in sizes.items():
        print(f"input {size}: chains {at['chains_s']:.3f} s, evaluate {at['evaluate_s']:.3f} s "
              f"({at['evaluate_cand_per_s'] / 1e6:.1f} M/s, {at['evaluate_vs_numpy']:.1f}x "
              f"numpy), chains+evaluate {at['path_vs_numpy']:.1f}x numpy, write_parquet "
              f"{at['write_parquet_s']:.3f} s, agrees: {at['agrees_with_numpy']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
