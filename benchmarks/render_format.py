"""Formatting shared by the benchmark renderers: loading results, numbers, table rows."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCHMARK = "kernel_throughput"
QUICK = " (--quick smoke run, not representative)"

Row = tuple[str, ...]


def load_results(folder: Path, benchmark: str = BENCHMARK) -> dict | None:
    """The newest full result of ``benchmark`` in ``folder`` (else the newest quick one)."""
    runs = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"render_readme: skipping {path}: {exc}", file=sys.stderr)
            continue
        if isinstance(data, dict) and data.get("benchmark") == benchmark:
            runs.append((not data.get("quick", False), data.get("date", ""), data))
    if not runs:
        return None
    return max(runs, key=lambda r: (r[0], r[1]))[2]


def rate(x: float) -> str:
    """Candidates per second in millions, three significant digits (below 10^5: plain)."""
    return f"{x / 1e6:.3g} M/s" if x >= 1e5 else f"{x:,.0f} /s"


def seconds(x: float) -> str:
    """Two decimals of a second; below 10 ms, milliseconds (not "0.00 s")."""
    return f"{x:.2f} s" if x >= 0.01 else f"{x * 1e3:.2g} ms"


def status(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def quick(res: dict) -> str:
    return QUICK if res.get("quick") else ""


def check(label: str, measured: str, value: float, bound: float, bound_text: str) -> Row:
    """A row judged against a target: ``≥ bound`` (throughput) or ``≤ bound`` (seconds)."""
    at_least = bound_text.startswith("≥")
    return (label, measured, bound_text, status(value >= bound if at_least else value <= bound))


def timed(label: str, what: str, fig: dict) -> Row:
    """A kernel figure: throughput and compile time."""
    return (label, what, rate(fig["cand_per_s"]), seconds(fig["compile_s"]))


def table(header: Row, rows: list[Row], align: str) -> list[str]:
    """A markdown table between blank lines; ``align``: one l or r per column."""
    rule = ["---:" if a == "r" else "---" for a in align]
    return ["", f"| {' | '.join(header)} |", f"| {' | '.join(rule)} |",
            *(f"| {' | '.join(row)} |" for row in rows), ""]


def kernel_device(res: dict) -> str:
    dev = res["device"]
    if dev["platform"] == "cpu":
        return f"CPU: {dev['cpu_model']}, {dev['cpu_cores']} cores"
    return f"{dev['platform']}: {dev['device_kind']} (host {dev['cpu_model']})"


def dag_label(dag: dict) -> str:
    return "DAGs (compiled CPU kernel)" if dag.get("program") == "native" else "DAGs"
