"""Progress bars of ``rfsearch eval`` and ``rfsearch search``: drawn on a terminal or on
request (``--progress``), never into a log file by default, never with ``-q``.

The commands run as subprocesses with standard error redirected to a file, as in
``rfsearch eval specs.jsonl -o out.parquet 2> log``: the file must hold only the summary
line and the error lines, no carriage-return frames of a bar.
"""

import argparse
import io
import os
import subprocess
import sys

import pytest

from rfsearch.cli import _progress, main

SPECS = ('{"name": "ok", "layers": [{"op": "conv", "kernel": 3}]}\n'
         '{"name": "bad", "layers": [{"op": "conv", "kernel": 0}]}\n')
BAD_LINE = ("rfsearch: bad.jsonl: spec #1 'bad', layer #0 'conv0': kernel must be a positive "
            "integer, got 0")
GRID = ("name: g\ninput_size: 32\nlayers:\n  - {op: conv, kernel: [3, 5, 7], stride: [1, 2]}\n"
        "  - {op: conv, kernel: [1, 3]}\n")


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "bad.jsonl").write_text(SPECS)
    (tmp_path / "grid.yaml").write_text(GRID)
    return tmp_path


def run_logged(folder, *args) -> tuple[int, str]:
    """Run ``rfsearch ARGS`` in ``folder`` with standard error going to a file; return
    the exit code and the file's text (bytes decoded, carriage returns kept)."""
    log = folder / "stderr.log"
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    with open(log, "wb") as err:
        proc = subprocess.run([sys.executable, "-m", "rfsearch.cli", *args], cwd=folder,
                              stdout=subprocess.DEVNULL, stderr=err, env=env, check=False,
                              timeout=300)
    return proc.returncode, log.read_bytes().decode()


def test_eval_into_a_file_logs_only_the_summary_and_the_errors(folder):
    code, log = run_logged(folder, "eval", "bad.jsonl", "-o", "out.parquet")
    assert code == 1
    assert "\r" not in log and "%|" not in log
    assert log.splitlines() == ["wrote 2 rows (1 valid) to out.parquet", BAD_LINE]
    assert (folder / "out.parquet").exists()


def test_eval_with_progress_draws_a_bar_into_the_file(folder):
    code, log = run_logged(folder, "eval", "bad.jsonl", "-o", "out.parquet", "--progress")
    assert code == 1
    assert "\r" in log and "100%|" in log
    assert log.split("\r")[-1].splitlines()[-2:] == ["wrote 2 rows (1 valid) to out.parquet",
                                                     BAD_LINE]


def test_search_into_a_folder_logs_only_the_summary(folder):
    code, log = run_logged(folder, "search", "grid.yaml", "-o", "found")
    assert code == 0
    assert "\r" not in log and "%|" not in log
    (line,) = log.splitlines()
    assert line.startswith("g: 12 candidates, 12 rows written to found in ")
    assert (folder / "found" / "_manifest.json").exists()


def test_search_with_progress_draws_a_bar_into_the_file(folder):
    code, log = run_logged(folder, "search", "grid.yaml", "-o", "found", "--progress")
    assert code == 0
    assert "\r" in log and "100%|" in log
    assert log.splitlines()[-1].startswith("g: 12 candidates, 12 rows written to found in ")


@pytest.mark.parametrize("command", [["eval", "bad.jsonl", "-o", "out.parquet"],
                                     ["search", "grid.yaml", "-o", "found"]])
def test_progress_and_quiet_together_are_a_usage_error(folder, monkeypatch, capsys, command):
    monkeypatch.chdir(folder)
    with pytest.raises(SystemExit) as info:
        main([*command, "--progress", "-q"])
    assert info.value.code == 2
    assert "not allowed with argument --progress" in capsys.readouterr().err
    assert not (folder / "out.parquet").exists() and not (folder / "found").exists()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("output", "progress", "quiet", "terminal", "bar"), [
    ("out", False, False, True, True),  # a terminal: a bar
    ("out", False, False, False, False),  # a file or a pipe: none
    ("out", True, False, False, True),  # asked for
    ("out", False, True, True, False),  # -q
    (None, False, False, True, False),  # printing the table: no bar
    (None, True, False, False, True),  # unless asked for (it was ignored)
])
def test_when_a_bar_is_drawn(monkeypatch, output, progress, quiet, terminal, bar):
    monkeypatch.setattr(sys, "stderr", Terminal() if terminal else io.StringIO())
    args = argparse.Namespace(output=output, progress=progress, quiet=quiet)
    assert _progress(args) is bar


def test_a_reader_that_leaves_early_gets_no_error_line(folder):
    """``rfsearch show ... | head -1``: the pipe closes early; nothing on standard error."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-m", "rfsearch.cli", "show", "zoo:unet",
                             "--input-size", "572"], cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    first = proc.stdout.readline()
    proc.stdout.close()  # the reader leaves, as head does
    err = proc.stderr.read()
    proc.wait(timeout=300)
    assert first.startswith(b"unet at 572x572") and err == b""
