"""The benchmark tooling: the accelerator run script names scripts that exist and write
where it says, and the README renderer adds an accelerator's figures when a run left them."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


def _run_lines() -> list[tuple[int, str]]:
    """(seconds, script) of every ``run`` line of device_run.sh."""
    text = (BENCH / "device_run.sh").read_text()
    return [(int(s), name) for s, name in re.findall(r"^run (\d+) (\w+)", text, re.M)]


def test_device_run_names_scripts_that_take_out_and_fit_in_8_minutes():
    runs = _run_lines()
    assert {"kernel_throughput", "evaluate_path", "search_throughput",
            "darts_search"} <= {name for _, name in runs}
    assert sum(s for s, _ in runs) <= 8 * 60
    for _, name in runs:
        tree = ast.parse((BENCH / f"{name}.py").read_text())
        flags = {node.args[0].value for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and getattr(node.func, "attr", "") ==
                 "add_argument" and node.args and isinstance(node.args[0], ast.Constant)}
        assert {"--out", "--quick"} <= flags, name


def _render(results: Path, tmp: Path) -> tuple[str, str]:
    readme, full = tmp / "README.md", tmp / "BENCH.md"
    block = "x\n<!-- benchmarks:start -->\nold\n<!-- benchmarks:end -->\ny\n"
    readme.write_text(block)
    full.write_text(block)
    done = subprocess.run([sys.executable, str(BENCH / "render_readme.py"), "--results",
                           str(results), "--readme", str(readme), "--full", str(full)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return readme.read_text(), full.read_text()


def test_render_adds_an_accelerators_tables_from_its_folder(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(BENCH / "results", results)
    readme, _ = _render(results, tmp_path)
    assert "No accelerator figures yet" in readme and "kernel, 64-layer chains" in readme
    gpu = results / "gpu-nvidia-h100"
    gpu.mkdir()
    kernel = json.loads((results / "kernel_throughput.json").read_text())
    kernel["device"] |= {"platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3"}
    (gpu / "kernel_throughput.json").write_text(json.dumps(kernel))
    readme, full = _render(results, tmp_path)
    assert "No accelerator figures yet" not in readme
    assert "On an accelerator (`benchmarks/device_run.sh`): measured on gpu: NVIDIA H100" in readme
    assert "### On gpu: NVIDIA H100 80GB HBM3" in full and "#### Kernel throughput" in full
    assert readme.startswith("x\n") and readme.endswith("\ny\n")
