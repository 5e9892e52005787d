"""One search over several processes (rfsearch.search.cluster): each process writes its
share of the chunks into one folder, a record per process makes every share resumable,
and the completed folder is the single-process dataset. The shares run in this process
(``process=(i, n)``, no runtime), and as ``rfsearch search`` subprocesses joined by JAX's
own runtime (``jax.distributed`` on CPU, a localhost coordinator)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pyarrow.parquet as pq
import pytest
from search_cases import (
    BIG,
    BIG_WIDTH,
    MANIFEST,
    PARTITIONED,
    PARTITIONED_OPTIONS,
    read_folder,
    space_of,
)

from rfsearch import search
from rfsearch.cli import main
from rfsearch.errors import SpecError
from rfsearch.search import cluster, output
from rfsearch.search.manifest import RECORDS, read_state
from rfsearch.search.runner import prepare

IDS = (BIG_WIDTH, BIG_WIDTH * 21)  # 20 chunks of one suffix span each
KWARGS = {"ids": IDS, "chunk": BIG_WIDTH, "where": "rf_h >= 27 and candidate_id % 5 != 0"}


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The single-process folders every multi-process run must reproduce."""
    base = tmp_path_factory.mktemp("single")
    space = space_of(BIG)
    search(space, output=base / "walk", **KWARGS)
    search(space, output=base / "top", **KWARGS, top=7, by="rf_h")
    return base


def folder_bytes(folder) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_same_dataset(folder, reference) -> None:
    """Same rows in file order and by candidate_id, same schema and file metadata."""
    pd.testing.assert_frame_equal(pd.read_parquet(folder), pd.read_parquet(reference))
    pd.testing.assert_frame_equal(read_folder(folder), read_folder(reference))
    schema = {pq.read_schema(p) for p in sorted(folder.rglob("part-*.parquet"))}
    want = pq.read_schema(next(reference.rglob("part-*.parquet")))
    assert all(s.equals(want, check_metadata=True) for s in schema)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["complete"] is True and manifest["done"] == [[0, 20]]


def test_shares_cover_every_chunk_once_in_order():
    for chunks in (0, 1, 2, 7, 20, 101):
        for count in (1, 2, 3, 8):
            blocks = [cluster.share(chunks, count, i) for i in range(count)]
            assert [c for block in blocks for c in block] == list(range(chunks))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


@pytest.mark.parametrize("count", [2, 3])
def test_shares_in_any_order_write_the_single_process_dataset(single, tmp_path, count):
    space = space_of(BIG)
    out = tmp_path / "walk"
    order = list(range(count))[::-1]
    for n, index in enumerate(order):
        summary = search(space, output=out, process=(index, count), **KWARGS)
        assert summary.process == (index, count)
        assert summary.chunks == len(cluster.share(20, count, index))
        assert summary.complete is (n == count - 1)
        assert (out / MANIFEST).exists() is summary.complete  # records only, until then
    assert len(list((out / RECORDS).glob("process-*.json"))) == count
    assert summary.matches == len(pd.read_parquet(single / "walk"))
    assert_same_dataset(out, single / "walk")


def test_top_over_three_processes_is_the_single_top(single, tmp_path):
    space = space_of(BIG)
    out = tmp_path / "top"
    for index in (1, 2, 0):
        summary = search(space, output=out, process=(index, 3), **KWARGS, top=7, by="rf_h")
    assert summary.complete and summary.matches == 7
    assert [p.name for p in out.glob("part-*")] == ["part-top.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(single / "top"))


def test_partitioned_and_sampled_shares(tmp_path):
    grid, kwargs = PARTITIONED, dict(PARTITIONED_OPTIONS)
    search(grid, output=tmp_path / "one", **kwargs)
    for index in (0, 1):
        search(grid, output=tmp_path / "two", process=(index, 2), **kwargs)
    a, b = read_folder(tmp_path / "two"), read_folder(tmp_path / "one")
    pd.testing.assert_frame_equal(a, b)


def test_a_killed_share_resumes_and_another_process_count_finishes_it(single, tmp_path,
                                                                      monkeypatch):
    space = space_of(BIG)
    out = tmp_path / "walk"
    monkeypatch.setattr(output, "FLUSH_CHUNKS", 1000)  # parts of whole shares: a part
    monkeypatch.setattr(output, "FLUSH_SECONDS", 1e9)  # left at a share's first chunk
    search(space, output=out, process=(2, 3), **KWARGS)
    real = output.write_atomic

    def killed_after_the_part(path, write):
        real(path, write)
        if path.name.startswith("part-"):
            raise KeyboardInterrupt("killed")  # the part is written, not recorded

    monkeypatch.setattr(output, "write_atomic", killed_after_the_part)
    with pytest.raises(KeyboardInterrupt):
        search(space, output=out, process=(1, 3), **KWARGS)
    monkeypatch.setattr(output, "write_atomic", real)
    assert (out / "part-000006.parquet").exists()  # process 1's unrecorded leftover
    with pytest.raises(SpecError, match="holds a different search"):
        search(space, output=out, process=(0, 2), **(KWARGS | {"where": "rf_h > 3"}))
    first = search(space, output=out, process=(0, 2), **KWARGS)  # chunks 0..9: 6 is inside
    assert not first.complete
    last = search(space, output=out, **KWARGS)  # one process: the rest, then complete
    assert last.complete and last.chunks == 20
    assert not (out / "part-000006.parquet").exists()
    assert_same_dataset(out, single / "walk")
    again = search(space, output=out, process=(1, 3), **KWARGS)  # a rerun: nothing to do
    assert again.complete
    assert_same_dataset(out, single / "walk")


def test_a_finisher_that_finds_a_part_gone_leaves_the_merge_to_the_other(tmp_path,
                                                                         monkeypatch):
    space = space_of(BIG)
    out = tmp_path / "top"
    kwargs = KWARGS | {"top": 3, "by": "rf_h"}
    with monkeypatch.context() as patch:  # both shares recorded, nobody finished yet
        patch.setattr(output, "complete", lambda *args: False)
        for index in (0, 1):
            assert not search(space, output=out, process=(index, 2), **kwargs).complete
    run = prepare(space, output=out, **kwargs)
    late = read_state(out, run)  # read by a second finisher before the first merges
    assert late.finished(run.chunks) and not late.top_merged
    assert output.complete(out, run, read_state(out, run))  # the first finisher
    merged = folder_bytes(out)
    assert not output.complete(out, run, late)  # its parts are gone: left alone
    assert folder_bytes(out) == merged
    assert len(pd.read_parquet(out)) == 3


def test_bad_process_arguments_are_one_line_exit_1(tmp_path, capsys):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(BIG))
    out = str(tmp_path / "out")
    cases = {
        ("--num-processes", "2", "--process-id", "2", "-o", out):
            "--process-id must be below --num-processes (2), got 2",
        ("--coordinator", "localhost:1234", "-o", out):
            "--coordinator needs --num-processes and --process-id",
        ("--coordinator", "localhost:1234", "--num-processes", "2", "-o", out):
            "--coordinator needs --num-processes and --process-id",
        ("--num-processes", "2", "-o", out): "--num-processes and --process-id go together",
        ("--num-processes", "2", "--process-id", "0"):
            "a search over several processes writes one output folder: give -o",
        ("--coordinator", "nohost", "--num-processes", "2", "--process-id", "0", "-o", out):
            "--coordinator must be HOST:PORT (a port from 1 to 65535), got 'nohost'",
        ("--coordinator", "localhost:99999", "--num-processes", "2", "--process-id", "0",
         "-o", out):
            "--coordinator must be HOST:PORT (a port from 1 to 65535), got 'localhost:99999'",
    }
    for args, message in cases.items():
        assert main(["search", str(grid), *args]) == 1
        assert capsys.readouterr().err == f"rfsearch: {message}\n"
    with pytest.raises(SystemExit) as info:
        main(["search", str(grid), "--num-processes", "2", "--process-id", "-1"])
    assert info.value.code == 2
    with pytest.raises(SpecError, match="process index must be below the process count"):
        search(BIG, output=out, process=(3, 3))
    with pytest.raises(SpecError, match="writes one output folder"):
        search(BIG, process=(0, 2))


def test_cluster_detection_follows_jax(monkeypatch):
    slurm = {"SLURM_JOB_ID": "77", "SLURM_STEP_NODELIST": "node[001-002]",
             "SLURM_NTASKS": "1", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    for key, value in slurm.items():
        monkeypatch.setenv(key, value)
    assert cluster.detected_cluster() is None  # one task: no runtime to start
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert cluster.detected_cluster() == "slurm"


# --- rfsearch search over jax.distributed (subprocesses, a localhost coordinator) ---------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def cli_args(grid_file, out, *extra, quiet: bool = True) -> list[str]:
    lo, hi = KWARGS["ids"]
    return ["search", str(grid_file), "-o", str(out), "--ids", f"{lo}:{hi}", "--chunk",
            str(KWARGS["chunk"]), "--where", KWARGS["where"], *extra] + ["-q"] * quiet


def start(args, script: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    command = ["-c", script, json.dumps(args)] if script else ["-m", "rfsearch.cli", *args]
    return subprocess.Popen([sys.executable, *command], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_two_processes_joined_by_jax_distributed(single, tmp_path):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(BIG))
    out, port = tmp_path / "top", free_port()
    procs = [start(cli_args(grid, out, "--top", "7", "--by", "rf_h", "--coordinator",
                            f"localhost:{port}", "--num-processes", "2", "--process-id",
                            str(i))) for i in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(single / "top"))
    assert json.loads((out / MANIFEST).read_text())["complete"] is True


DIES_MIDWAY = textwrap.dedent("""
    import json, os, signal, sys
    from rfsearch.cli import main
    from rfsearch.search import output
    output.FLUSH_CHUNKS = 1  # a part file and a record per chunk
    replace = os.replace
    records = []
    def replace_or_die(src, dst):
        if os.path.basename(dst).startswith("process-"):
            records.append(dst)
            if len(records) == 4:  # chunks 6 and 7 recorded, chunk 8's part written
                os.kill(os.getpid(), signal.SIGKILL)
        return replace(src, dst)
    os.replace = replace_or_die  # as rfsearch.cache.write_atomic renames a record
    main(json.loads(sys.argv[1]))
""")


def recorded(out, index: int) -> set[int]:
    try:
        entry = json.loads((out / RECORDS / f"process-{index:05d}.json").read_text())
    except (OSError, ValueError):
        return set()
    return {c for lo, hi in entry["done"] for c in range(lo, hi)}


def test_three_processes_one_killed_then_run_again_alone(single, tmp_path, capsys):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(BIG))
    out, port = tmp_path / "walk", free_port()
    args = [cli_args(grid, out, "--coordinator", f"localhost:{port}", "--num-processes",
                     "3", "--process-id", str(i)) for i in range(3)]
    procs = [start(args[i], DIES_MIDWAY if i == 1 else None) for i in range(3)]
    try:
        assert procs[1].wait(timeout=120) == -signal.SIGKILL, procs[1].stderr.read()
        deadline = time.monotonic() + 120
        while not (set(range(6)) <= recorded(out, 0) and set(range(13, 20)) <= recorded(out, 2)):
            assert time.monotonic() < deadline and procs[0].poll() in (None, 0)
            time.sleep(0.05)
    finally:  # the survivors wait for the dead process at JAX's barrier: stop them
        for p in procs:
            p.kill()
            p.communicate()
    assert recorded(out, 1) == {6, 7} and (out / "part-000008.parquet").exists()
    assert not (out / MANIFEST).exists()
    assert main(cli_args(grid, out, "--num-processes", "3", "--process-id", "1",
                         quiet=False)) == 0
    err = capsys.readouterr().err
    assert err.startswith("big: process 1 of 3: 7168 candidates in ")
    assert err.endswith(f"; {out} is complete: {len(pd.read_parquet(single / 'walk'))} rows\n")
    assert_same_dataset(out, single / "walk")
