"""Render the benchmark tables of README.md and benchmarks/README.md from the results.

Reads ``benchmarks/results/*.json``, takes the newest full run of each benchmark (a
``--quick`` run only when there is no full one) and rewrites the block between
``<!-- benchmarks:start -->`` and ``<!-- benchmarks:end -->`` of two files: README.md gets a
short table of headline figures, benchmarks/README.md every table. Nothing else changes.

    python benchmarks/render_readme.py
    python benchmarks/render_readme.py --readme /tmp/README.md --full /tmp/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from render_format import BENCHMARK, QUICK, Row, kernel_device, load_results, rate, seconds, table
from render_kernel import (
    dag_label,
    kernel_target,
    ofa_row,
    render_anatomy,
    render_end_to_end,
    render_kernel,
    render_search,
    walk_row,
)
from render_more import (
    analysis_rows,
    darts_row,
    evaluate_summary_rows,
    import_summary_row,
    render_analysis,
    render_darts,
    render_evaluate,
    render_import,
    render_stream,
    stream_row,
)

HERE = Path(__file__).resolve().parent
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def render_full(results: dict[str, dict], level: str = "###") -> str:
    """Every table: the block of benchmarks/README.md (``level``: the headings')."""
    lines = []
    for name, title, render in SECTIONS:
        if name in results:
            lines += [f"{level} {title} (`{name}.py`)", "", *render(results[name])]
    return "\n".join(lines).rstrip("\n")


SECTIONS = ((BENCHMARK, "Kernel throughput", render_kernel),
            ("end_to_end", "End to end", render_end_to_end),
            ("evaluate_path", "From arrays to a table", render_evaluate),
            ("kernel_anatomy", "Where the kernel's time goes", render_anatomy),
            ("search_throughput", "Search", render_search),
            ("darts_search", "Sampling DARTS", render_darts),
            ("analysis_filter", "Analysis filters in the walk", render_analysis),
            ("import_speed", "Importing a model", render_import),
            ("stream_eval", "Streaming a large chain table", render_stream))


def load_all(folder: Path) -> dict[str, dict]:
    """Every benchmark's newest result in ``folder``."""
    return {name: res for name, _, _ in SECTIONS
            if (res := load_results(folder, name)) is not None}


def accelerator_folders(folder: Path) -> list[Path]:
    """The subfolders of ``folder`` holding an accelerator's results
    (``benchmarks/device_run.sh`` writes them), by name."""
    return [sub for sub in sorted(p for p in folder.iterdir() if p.is_dir())
            if (res := load_results(sub)) is not None and res["device"]["platform"] != "cpu"]


# --- the short table (README.md) --------------------------------------------------------

def summary_rows(results: dict[str, dict]) -> list[Row]:
    """The headline figures: kernel on chains and DAGs, evaluate end to end, the search."""
    res = results[BENCHMARK]
    compiled = " (compiled CPU program)" if res["chains"].get("native") else ""
    rows = [kernel_target(res, "chains_cand_per_s", f"kernel, {res['chains']['layers']}-layer "
                          f"chains{compiled}"),
            kernel_target(res, "dags_cand_per_s", f"kernel, {res['dags']['layers']}-layer "
                          f"{dag_label(res['dags'])}")]
    if e2e := results.get("end_to_end"):
        rows.append((f"`evaluate`, {e2e['n']:,} chains of ≤ {e2e['max_layers']} layers at "
                     f"{e2e['input_size']}, DataFrame included", f"{seconds(e2e['evaluate_s'])} "
                     f"({rate(e2e['n'] / e2e['evaluate_s'])})", "–", ""))
        if f := e2e.get("spec_file"):
            rows.append((f"`evaluate`, a JSON Lines file of {f['n']:,} chain specs at "
                         f"{f['input_size']}, reading included",
                         f"{seconds(f['evaluate_s'])}, {rate(f['n'] / f['evaluate_s'])} "
                         f"({f['speedup']:.1f}× faster than validating one spec at a time: "
                         f"{seconds(f['per_spec_evaluate_s'])})", "–", ""))
        if dec := e2e.get("decoders"):
            rows.append((f"`evaluate`, {dec['n']:,} encoder-decoders (upsampling) at "
                         f"{dec['input_size']}, from specs", f"{seconds(dec['evaluate_s'])} "
                         f"({rate(dec['n'] / dec['evaluate_s'])})", "–", ""))
    if search := results.get("search_throughput"):
        rows += [walk_row(search, f"`search`, {search['grid']['layers']}-layer grid walk"),
                 ofa_row(search, "`search ofa-mbv3`, exhaustive")]
    if imports := results.get("import_speed"):
        rows.append(import_summary_row(imports, "ResNet-50"))
    if stream := results.get("stream_eval"):
        rows.append(stream_row(stream))
    if path := results.get("evaluate_path"):
        rows += evaluate_summary_rows(path)
    if darts := results.get("darts_search"):
        rows.append(darts_row(darts))
    if analysis := results.get("analysis_filter"):
        rows += analysis_rows(analysis, first_per_space=True)
    return rows


def render_summary(results: dict[str, dict]) -> str:
    """The short table: the block of README.md."""
    res = results[BENCHMARK]
    dates = sorted({r["date"][:10] for r in results.values()})
    when = dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"
    smoke = QUICK if any(r.get("quick") for r in results.values()) else ""
    return "\n".join([
        *table(("benchmark", "measured", "target", "status"), summary_rows(results), "lrrl")[1:],
        f"Measured on {kernel_device(res)}, jax {res['versions']['jax']}, {when}{smoke}. "
        "Every table, and how to re-run them: [benchmarks/README.md](benchmarks/README.md).",
    ])


# --- files ------------------------------------------------------------------------------

def replace_block(text: str, body: str) -> str | None:
    """``text`` with the block between the marker lines (each a line of its own) replaced,
    or None when they are absent."""
    start = text.find(f"\n{START}\n")
    end = text.find(f"\n{END}\n", start + 1) if start >= 0 else -1
    if start < 0 or end < 0:
        return None
    return text[: start + len(START) + 1] + "\n" + body + text[end:]


def write_block(path: Path, body: str) -> bool:
    """Rewrite the block of ``path``; False (with a message) when that is impossible."""
    try:
        text = path.read_text()
    except OSError as exc:
        print(f"render_readme: cannot read {path}: {exc}", file=sys.stderr)
        return False
    new = replace_block(text, body)
    if new is None:
        print(f"render_readme: {path} lacks the markers {START} ... {END}", file=sys.stderr)
        return False
    if new != text:
        path.write_text(new)
    print(f"render_readme: {path} benchmark block {'updated' if new != text else 'unchanged'}")
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--readme", type=Path, default=HERE.parent / "README.md",
                        help="the file that gets the short table")
    parser.add_argument("--full", type=Path, default=HERE / "README.md",
                        help="the file that gets every table")
    parser.add_argument("--results", type=Path, default=HERE / "results",
                        help="folder of benchmark JSON files")
    args = parser.parse_args(argv)
    results = load_all(args.results)
    if BENCHMARK not in results:
        print(f"render_readme: no {BENCHMARK} results in {args.results}", file=sys.stderr)
        return 1
    devices = {sub: load_all(sub) for sub in accelerator_folders(args.results)}
    written = [write_block(args.readme, render_summary(results) + "\n\n"
                           + render_accelerators(devices)),
               write_block(args.full, render_full(results) + "\n\n"
                           + render_accelerators(devices, full=True))]
    return 0 if all(written) else 1


def render_accelerators(devices: dict[Path, dict[str, dict]], full: bool = False) -> str:
    """The accelerators' figures (``benchmarks/device_run.sh``): per device, its short
    table (``full``: every table), or how to measure them when there are none."""
    if not devices:
        return ("No accelerator figures yet: on a machine with a GPU or TPU, `bash "
                "benchmarks/device_run.sh` measures them (within 8 minutes) and `python "
                "benchmarks/render_readme.py` adds them here.")
    parts = []
    for folder, results in devices.items():
        device = kernel_device(next(iter(results.values())))
        if full:
            parts += [f"### On {device} (`results/{folder.name}/`)", "",
                      render_full(results, "####")]
        elif BENCHMARK in results:
            parts.append(render_summary(results).replace(
                "Measured on", "On an accelerator (`benchmarks/device_run.sh`): measured on"))
    return "\n\n".join(parts)

if __name__ == "__main__":
    sys.exit(main())
