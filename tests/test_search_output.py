"""Search output folders (``search(..., output=FOLDER)``): Parquet part files and the
manifest, reruns and refusals, top-K into a folder, hive partitions, and resuming after
a crash or SIGKILL gives the uninterrupted result (rfsearch.search.output)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from search_cases import (
    BIG,
    BIG_WIDTH,
    GEOMETRY,
    MANIFEST,
    PARTITIONED,
    PARTITIONED_OPTIONS,
    SAME,
    SMALL,
    VALID,
    assert_same,
    read_folder,
    sorted_top,
    space_of,
)

import rfsearch
from rfsearch import search
from rfsearch.errors import SpecError


def folder_state(folder) -> dict:
    return {p: (os.stat(os.path.join(folder, p)).st_mtime_ns, open(
        os.path.join(folder, p), "rb").read()) for p in sorted(os.listdir(folder))}


def done_chunks(folder) -> list[int] | None:
    """Finished chunks named by the manifest (stored as [start, stop) ranges)."""
    try:
        ranges = json.loads((folder / MANIFEST).read_text())["done"]
    except (OSError, ValueError, KeyError):
        return None
    return [c for lo, hi in ranges for c in range(lo, hi)]


def test_output_folder_holds_the_same_rows(full, tmp_path):
    space, df, _ = full["valid@64"]
    out = tmp_path / "run"
    summary = search(space, output=out, where="valid")
    assert isinstance(summary, rfsearch.SearchSummary)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] is True
    assert done_chunks(out) == list(range(summary.chunks))
    assert any(p.name.startswith("part-") for p in out.iterdir())
    want = df[df["valid"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_folder(out), want)
    assert (summary.candidates, summary.matches) == (space.size, len(want))
    assert summary.output == str(out) and summary.space == "valid"


def test_an_empty_result_folder_keeps_its_columns(tmp_path):
    rfsearch.search(SMALL, output=tmp_path / "none", where="rf_h > 100000")
    df = pd.read_parquet(tmp_path / "none")
    assert len(df) == 0 and {"candidate_id", "rf_h", "valid"} <= set(df.columns)


def test_output_with_labels_of_mixed_types(tmp_path):
    grid = {"name": "mixed", "input_size": 32, "layers": [
        {"op": "conv", "kernel": 3, "padding": [1, "same"]},
        {"op": "conv", "kernel": [3, [3, 1]]}]}
    df = search(grid)
    search(grid, output=tmp_path / "out")
    back = read_folder(tmp_path / "out")
    assert back["candidate_id"].tolist() == df["candidate_id"].tolist()
    assert [str(v) for v in back["layer0.padding"]] == [str(v) for v in df["layer0.padding"]]
    assert_same(back[list(GEOMETRY)], df[list(GEOMETRY)])


def test_rerun_changes_nothing_and_a_different_run_is_refused(tmp_path, monkeypatch):
    from rfsearch.search import output

    monkeypatch.setattr(output, "FLUSH_CHUNKS", 2)  # several part files
    space = space_of(BIG)
    out = tmp_path / "run"
    kwargs = {"ids": (0, BIG_WIDTH * 6), "chunk": BIG_WIDTH, "where": "rf_h >= 29"}
    first = search(space, output=out, **kwargs)
    assert first.chunks == 6 and len(list(out.glob("part-*.parquet"))) >= 2
    state = folder_state(out)
    time.sleep(0.01)
    again = search(space, output=out, **kwargs)
    assert again.matches == first.matches
    assert (first.resumed, again.resumed) == (0, 6)
    from rfsearch.cli_cluster import summary

    assert "rows written" in summary(first)
    assert summary(again) == (f"{space.name}: {first.candidates} candidates: {out} was "
                              f"already complete ({first.matches} rows); nothing to do")
    after = folder_state(out)
    assert {k: v[1] for k, v in after.items()} == {k: v[1] for k, v in state.items()}
    parts = [k for k in state if k.startswith("part-")]
    assert all(after[p][0] == state[p][0] for p in parts)  # not rewritten
    for other in ({"where": "rf_h >= 30"}, {"chunk": 2 * BIG_WIDTH},
                  {"ids": (0, BIG_WIDTH * 5)}, {"top": 3, "by": "rf_h"}, {"sample": 100}):
        with pytest.raises(SpecError, match="holds a different search"):
            search(space, output=out, **(kwargs | other))
    with pytest.raises(SpecError, match="holds a different search"):
        search(space_of(VALID), output=out)
    assert folder_state(out) == after


def test_a_folder_written_with_other_columns_is_refused(tmp_path):
    """A folder whose rows carry other columns (an analysis search written before its
    rows gained border_layer: its manifest names no columns) is not resumed into a
    dataset of two schemas; the message names what differs."""
    out = tmp_path / "out"
    kwargs = {"where": "n_critical >= 0 and rf_h >= 29", "input_size": 32, "output": out}
    search(space_of(SAME), **kwargs)
    manifest = json.loads((out / "_manifest.json").read_text())
    assert "border_layer" in manifest["params"]["columns"]
    del manifest["params"]["columns"]
    (out / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SpecError) as info:
        search(space_of(SAME), **kwargs)
    assert str(info.value) == (f"{out}: holds a different search (same; columns differ); "
                               "use another folder or delete it")


@pytest.mark.parametrize("partition_by", [(), ("layer0.kernel",)])
def test_a_recorded_part_that_is_gone_is_refused_not_lost(tmp_path, monkeypatch,
                                                          partition_by):
    """Resuming a folder whose manifest records a part file that was deleted would give a
    dataset without its rows: refused in one line instead."""
    from rfsearch.search import output

    monkeypatch.setattr(output, "FLUSH_CHUNKS", 2)  # several part files
    out = tmp_path / "run"
    kwargs = {"ids": (0, BIG_WIDTH * 6), "chunk": BIG_WIDTH, "where": "rf_h >= 29",
              "output": out, "partition_by": partition_by}
    search(space_of(BIG), **kwargs)
    for part in out.rglob("part-000002.parquet"):
        part.unlink()
    with pytest.raises(SpecError) as info:
        search(space_of(BIG), **kwargs)
    assert str(info.value) == (f"{out}: part-000002.parquet is recorded in the manifest but "
                               "missing (1 part(s)); delete the folder to search again")


def test_a_folder_with_stray_parts_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "part-000000.parquet").write_bytes(b"x")
    with pytest.raises(SpecError, match=r"no _manifest\.json"):
        search(VALID, output=out)


def test_top_into_a_folder(full, tmp_path):
    space, df, _ = full["valid@64"]
    summary = search(space, output=tmp_path / "top", top=5, by="rf_h")
    assert [p.name for p in (tmp_path / "top").glob("part-*")] == ["part-top.parquet"]
    got = pd.read_parquet(tmp_path / "top")
    pd.testing.assert_frame_equal(got, sorted_top(df, "rf_h", 5, False))
    assert summary.matches == 5
    again = search(space, output=tmp_path / "top", top=5, by="rf_h")
    assert again.matches == 5
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "top"), got)


def test_top_resume_after_crash_while_merging(tmp_path, monkeypatch):
    from rfsearch.search import output

    monkeypatch.setattr(output, "FLUSH_CHUNKS", 1)  # a part per chunk: several to delete
    space = space_of(BIG)
    out = tmp_path / "top"
    kwargs = {"ids": (0, BIG_WIDTH * 4), "chunk": BIG_WIDTH, "top": 3, "by": "rf_h"}
    real_unlink = type(out).unlink
    calls = []

    def crash_after_first(self, *args, **kw):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(self)
        return real_unlink(self, *args, **kw)

    monkeypatch.setattr(type(out), "unlink", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        search(space, output=out, **kwargs)
    monkeypatch.undo()
    search(space, output=out, **kwargs)
    got = pd.read_parquet(out)
    want = search(space, **kwargs)
    assert got["candidate_id"].is_unique
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)


# --- hive partitions ----------------------------------------------------------------------

def test_hive_partitioned_output_reads_back_the_same_rows(tmp_path):
    grid = {"name": "p", "input_size": 64, "layers": [
        {"op": "conv", "kernel": [1, 3, 5, 7], "dilation": [1, 2], "stride": 2,
         "padding": "same"},
        {"op": "conv", "kernel": [3, 5], "padding": "same"}]}
    out = tmp_path / "hive"
    rfsearch.search(grid, output=out, where="valid", partition_by=["layer0.kernel"], chunk=4)
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == [f"layer0.kernel={k}" for k in (1, 3, 5, 7)]
    back = pd.read_parquet(out).sort_values("candidate_id").reset_index(drop=True)
    want = rfsearch.search(grid, where="valid")
    assert back["candidate_id"].tolist() == want["candidate_id"].tolist()
    assert back["layer0.kernel"].astype(int).tolist() == want["layer0.kernel"].tolist()
    assert back["rf_h"].tolist() == want["rf_h"].tolist()
    with pytest.raises(SpecError, match="not a choice column"):
        rfsearch.search(grid, output=tmp_path / "x", partition_by=["rf_h"])
    with pytest.raises(SpecError, match="holds a different search"):
        rfsearch.search(grid, output=out, where="valid", chunk=4)  # unpartitioned


def test_partitioned_output_resumes_after_a_crash(tmp_path, monkeypatch):
    from rfsearch.search import output

    grid, kwargs = PARTITIONED, dict(PARTITIONED_OPTIONS)
    monkeypatch.setattr(output, "FLUSH_CHUNKS", 2)
    real, calls = output.write_atomic, []

    def crash_later(path, write):
        calls.append(path)
        if len(calls) == 9:  # part files of a group half written, not yet recorded
            raise KeyboardInterrupt("killed")
        return real(path, write)

    monkeypatch.setattr(output, "write_atomic", crash_later)
    with pytest.raises(KeyboardInterrupt):
        rfsearch.search(grid, output=tmp_path / "run", **kwargs)
    monkeypatch.setattr(output, "write_atomic", real)
    rfsearch.search(grid, output=tmp_path / "run", **kwargs)
    rfsearch.search(grid, output=tmp_path / "clean", **kwargs)
    a = pd.read_parquet(tmp_path / "run").sort_values("candidate_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "clean").sort_values("candidate_id").reset_index(drop=True)
    assert a["candidate_id"].is_unique
    pd.testing.assert_frame_equal(a, b)



def test_partitioned_output_flushes_by_time_and_resumes_with_other_groups(tmp_path,
                                                                         monkeypatch):
    """Partitioned runs flushed only every 512 chunks or 2^20 rows, so a slow
    (per-candidate) run recorded nothing for hours; now they flush every few seconds as
    other runs do, and a resume that groups its chunks otherwise gives the same rows."""
    from rfsearch.search import output

    grid, kwargs = PARTITIONED, dict(PARTITIONED_OPTIONS)
    monkeypatch.setattr(output, "FLUSH_SECONDS", 0.0)  # time is up after every chunk
    real, calls = output.write_atomic, []

    def crash_later(path, write):
        calls.append(path)
        if len(calls) == 7:
            raise KeyboardInterrupt("killed")
        return real(path, write)

    monkeypatch.setattr(output, "write_atomic", crash_later)
    with pytest.raises(KeyboardInterrupt):
        rfsearch.search(grid, output=tmp_path / "run", **kwargs)
    assert json.loads((tmp_path / "run" / MANIFEST).read_text())["done"]  # recorded
    monkeypatch.setattr(output, "write_atomic", real)
    monkeypatch.setattr(output, "FLUSH_SECONDS", 3600.0)  # the rest in one group
    rfsearch.search(grid, output=tmp_path / "run", **kwargs)
    rfsearch.search(grid, output=tmp_path / "clean", **kwargs)
    a, b = (pd.read_parquet(tmp_path / f).sort_values("candidate_id").reset_index(drop=True)
            for f in ("run", "clean"))
    assert a["candidate_id"].is_unique
    pd.testing.assert_frame_equal(a, b)

# --- resume after SIGKILL -------------------------------------------------------------------

RESUME_ARGS = {"ids": [BIG_WIDTH, BIG_WIDTH * 41], "chunk": BIG_WIDTH,
               "where": "rf_h >= 27 and candidate_id % 5 != 0"}


SLOW_CHILD = textwrap.dedent("""
    import json, sys, time
    import pyarrow.parquet as pq
    from rfsearch import search
    from rfsearch.search import output
    from rfsearch.spaces import grid_space
    output.FLUSH_CHUNKS = 1  # a part file and a manifest update per chunk
    write_table = pq.write_table
    def slow(*args, **kwargs):  # every chunk writes a part: 50 ms each
        time.sleep(0.05)
        return write_table(*args, **kwargs)
    pq.write_table = slow
    grid, kwargs, out = json.loads(sys.argv[1])
    kwargs["ids"] = tuple(kwargs["ids"])
    search(grid_space(grid)[0], output=out, **kwargs)
""")


def run_child(script: str, *args) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_resume_after_sigkill_gives_the_uninterrupted_result(tmp_path):
    space = space_of(BIG)
    out = tmp_path / "killed"
    child = run_child(SLOW_CHILD, json.dumps([BIG, RESUME_ARGS, str(out)]))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = done_chunks(out)
            if done is not None and len(done) >= 4:
                break
            assert child.poll() is None, child.stderr.read().decode()
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    done = done_chunks(out)
    assert done is not None and 4 <= len(done) < 40
    assert json.loads((out / MANIFEST).read_text())["complete"] is False
    kwargs = dict(RESUME_ARGS, ids=tuple(RESUME_ARGS["ids"]))
    resumed = search(space, output=out, **kwargs)
    clean = search(space, output=tmp_path / "clean", **kwargs)
    assert resumed.matches == clean.matches > 0
    assert resumed.resumed == len(done) and clean.resumed == 0
    from rfsearch.cli_cluster import summary

    assert f"resumed ({len(done)} of {resumed.chunks} chunks were done)" in summary(resumed)
    a, b = read_folder(out), read_folder(tmp_path / "clean")
    assert a["candidate_id"].is_unique
    pd.testing.assert_frame_equal(a, b)
    memory = search(space, **kwargs)
    pd.testing.assert_frame_equal(a, memory)
    assert json.loads((out / MANIFEST).read_text())["complete"] is True


KILL_BETWEEN_PART_AND_MANIFEST = textwrap.dedent("""
    import json, os, signal, sys
    from rfsearch import search
    from rfsearch.search import output
    output.FLUSH_CHUNKS = 1  # a part file and a manifest update per chunk
    replace = os.replace
    manifests = []
    def replace_or_die(src, dst):
        if os.path.basename(dst) == "_manifest.json":
            manifests.append(dst)
            if len(manifests) == 3:  # chunk 2's part is in place, its manifest entry is not
                os.kill(os.getpid(), signal.SIGKILL)
        return replace(src, dst)
    os.replace = replace_or_die
    space, kwargs, out = json.loads(sys.argv[1])
    search(space, output=out, **kwargs)
""")


def test_resume_rewrites_a_part_whose_chunk_was_not_recorded(tmp_path):
    out = tmp_path / "killed"
    kwargs = {"sample": 3000, "chunk": 500, "seed": 9, "where": "rf_h > 800"}
    child = run_child(KILL_BETWEEN_PART_AND_MANIFEST, json.dumps(["ofa-mbv3", kwargs,
                                                                  str(out)]))
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err.decode()
    assert done_chunks(out) == [0, 1]
    assert (out / "part-000002.parquet").exists()
    resumed = search("ofa-mbv3", output=out, **kwargs)
    clean = search("ofa-mbv3", output=tmp_path / "clean", **kwargs)
    assert resumed.matches == clean.matches > 0
    a, b = read_folder(out), read_folder(tmp_path / "clean")
    pd.testing.assert_frame_equal(a, b)
    assert a["candidate_id"].is_unique  # 3,000 draws from 117**5: no repeats expected
    assert done_chunks(out) == list(range(6))


@pytest.mark.parametrize("top", [None, 3])
def test_a_damaged_folder_is_one_line(tmp_path, top):
    """A manifest that is JSON but not a manifest, and a part file that is not Parquet,
    are refused in one line on resume (they were AttributeError and ArrowInvalid)."""
    kwargs = {"output": tmp_path / "a", "top": top, "by": "rf_h" if top else None}
    search(VALID, **kwargs)
    (tmp_path / "a" / "_manifest.json").write_text("[]")
    with pytest.raises(SpecError, match=r"_manifest\.json: unreadable manifest \(not a"):
        search(VALID, **kwargs)
    kwargs["output"] = tmp_path / "b"
    search(VALID, **kwargs)
    for part in (tmp_path / "b").glob("part-*.parquet"):
        part.write_bytes(b"garbage")
    with pytest.raises(SpecError, match=r"part-.*\.parquet: not a readable part file"):
        search(VALID, **kwargs)


def test_bad_partition_by_and_a_file_as_output_are_one_line(tmp_path):
    """partition_by=5 raised TypeError, a repeated name nested a=1/a=1/ folders, and an
    existing file as the output folder raised FileExistsError (the CLI checked it)."""
    space = space_of(BIG)
    with pytest.raises(SpecError, match=r"^partition_by must be a column name or a list of "
                                        r"them, got 5$"):
        search(space, output=tmp_path / "p", partition_by=5)
    column = space.variables[0].name
    with pytest.raises(SpecError, match=f"^partition_by names '{column}' twice$"):
        search(space, output=tmp_path / "p", partition_by=[column, column])
    taken = tmp_path / "taken"
    taken.write_text("")
    with pytest.raises(SpecError, match="cannot write the output: not a folder"):
        search(space, output=taken, ids=(0, 10))


def test_parts_declare_key_types_and_the_analysis_rule(tmp_path):
    """A search with no match wrote ofa-mbv3's list keys (d, ks) as double, so its part and
    a non-empty one could not be read together; parts with analysis columns lacked the
    analysis_rule that eval's files carry."""
    kwargs = {"sample": 300, "seed": 1}
    none = search("ofa-mbv3", output=tmp_path / "none", where="rf_h > 100000", **kwargs)
    some = search("ofa-mbv3", output=tmp_path / "some", where="rf_h > 300", **kwargs)
    assert none.matches == 0 < some.matches
    empty, full = (pq.read_schema(tmp_path / f / "part-000000.parquet")
                   for f in ("none", "some"))
    assert empty.field("d").type == full.field("d").type == pa.list_(pa.int64())
    assert empty.remove_metadata() == full.remove_metadata()
    from rfsearch.table import CHOICE_DESCRIPTION, KEY_DESCRIPTION
    described = {c: full.field(c).metadata[b"description"].decode() for c in ("d", "stage1")}
    assert described == {"d": KEY_DESCRIPTION, "stage1": CHOICE_DESCRIPTION}
    assert b"analysis_rule" not in full.metadata
    search("ofa-mbv3", output=tmp_path / "an", where="n_unproductive >= 0", **kwargs)
    meta = pq.read_schema(tmp_path / "an" / "part-000000.parquet").metadata
    assert meta[b"analysis_rule"].decode() == rfsearch.analysis.rule(False)


@pytest.mark.parametrize("where", ["rf_h >= 20", "n_unproductive == 0 and rf_h >= 20",
                                   "rf_h > 100000"])
def test_write_parquet_of_a_search_frame_is_the_folder_as_one_file(tmp_path, where):
    """rfsearch.write_parquet refused search() frames (it asked for 'name' and 'error')."""
    df = search("nasbench201", where=where)
    rfsearch.write_parquet(df, tmp_path / "one.parquet")
    search("nasbench201", where=where, output=tmp_path / "dir")
    one, folder = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "dir")
    assert one.schema.equals(folder.schema) and one.equals(folder)
    for key in (b"space", b"search", b"input_size", b"analysis_rule"):
        assert one.schema.metadata.get(key) == folder.schema.metadata.get(key)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one.parquet"), df)


def test_an_empty_search_frame_keeps_its_key_types(tmp_path):
    """An empty in-memory result typed ofa-mbv3's list keys (d, ks) as double."""
    kwargs = {"sample": 300, "seed": 1}
    none = search("ofa-mbv3", where="rf_h > 100000", **kwargs)
    some = search("ofa-mbv3", where="rf_h > 300", **kwargs)
    assert len(none) == 0 < len(some)
    assert (none.dtypes == some.dtypes).all()
    schemas = []
    rest = list(some.columns[some.columns.get_loc("rf_h"):])
    for name, df in (("none", none), ("some", some), ("part", some[["candidate_id", "d", *rest]])):
        rfsearch.write_parquet(df, tmp_path / f"{name}.parquet")
        schemas.append(pq.read_schema(tmp_path / f"{name}.parquet").remove_metadata())
    assert schemas[0] == schemas[1]
    assert schemas[2].field("d").type == schemas[1].field("d").type == pa.list_(pa.int64())
    with pytest.raises(SpecError, match="search table lacks the result columns"):
        rfsearch.write_parquet(some.drop(columns="rf_w"), tmp_path / "bad.parquet")


def test_edited_and_read_back_search_frames_write(tmp_path):
    """write_parquet of a search frame raised ArrowInvalid when a choice column was retyped,
    took a frame with a user 'name' column for evaluate's, and wrote a frame read back
    from a folder without the search's metadata."""
    grid = {"name": "g", "input_size": 64, "layers": [{"op": "conv", "kernel": [3, 5, 7]}]}
    df = search(grid)
    halved = df.assign(**{"layer0.kernel": df["layer0.kernel"] / 2, "name": "mine"})
    rfsearch.write_parquet(halved, tmp_path / "h.parquet")
    assert pq.read_schema(tmp_path / "h.parquet").field("layer0.kernel").type == pa.float64()
    search(grid, output=tmp_path / "dir")
    back = pd.read_parquet(tmp_path / "dir")
    rfsearch.write_parquet(back, tmp_path / "back.parquet")
    one, folder = pq.read_table(tmp_path / "back.parquet"), pq.read_table(tmp_path / "dir")
    assert one.equals(folder) and one.schema.equals(folder.schema)
    assert one.schema.metadata[b"search"] == folder.schema.metadata[b"search"]
