"""Search output folders: Parquet part files, the manifest that makes runs resumable,
and the final top-K merge.

A folder holds ``part-NNNNNN.parquet`` files (each the matches of consecutive chunks,
NNNNNN the first) and ``_manifest.json``: the run's parameters and the finished chunks
as [start, stop) ranges, rewritten atomically (write, then rename) after each part.

``run`` arguments are the search's run object (:class:`~.runs.Run`): its ``params()``,
``space``, ``input_size`` and ``top`` are recorded or used here. :class:`Writer` streams
finished chunks into a folder; :class:`Collector` keeps them in memory.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import SpecError
from ..table import file_metadata, search_result, search_schema

MANIFEST = "_manifest.json"


def top_rows(df: pd.DataFrame, top) -> pd.DataFrame:
    column, k, largest = top
    df = df[df[column].notna()]
    key = df[column].astype("float64").to_numpy()
    order = np.lexsort((df["candidate_id"].to_numpy(), -key if largest else key))
    return df.iloc[order[:k]].reset_index(drop=True)


def write_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def to_arrow(df: pd.DataFrame, run) -> pa.Table:
    """Rows of ``run`` as an Arrow table in the declared search schema, with the run's
    parameters in the file metadata."""
    table = pa.Table.from_pandas(df, preserve_index=False)
    choices = {v.name: v.arrow_type for v in run.space.variables}
    depth = run.space.dims == 3
    keys = {f.name: f.type for f in table.schema
            if f.name not in choices and f.name not in search_result(depth)}
    target = search_schema(keys, choices, run.with_analysis(), depth)
    target = pa.schema([f for f in target if f.name in table.column_names])
    meta = {**(table.schema.metadata or {}), **file_metadata(run.input_size, {
        "space": run.space.name, "space_fingerprint": run.space.fingerprint(),
        "space_definition": json.dumps(run.space.definition, default=str),
        "search": json.dumps(run.params())})}
    return table.select(target.names).cast(target).replace_schema_metadata(meta)


def write_table(path: Path, df: pd.DataFrame, run) -> None:
    """One part file, written atomically."""
    write_atomic(path, lambda p: pq.write_table(to_arrow(df, run), p, compression="zstd"))


def read_manifest(folder: Path, run) -> set[int]:
    """Finished chunks of a previous identical run; a different run is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MANIFEST
    if not path.exists():
        if any(folder.glob("part-*.parquet")):
            raise SpecError(f"{folder}: holds part files but no {MANIFEST}; use an empty folder")
        return set()
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SpecError(f"{path}: unreadable manifest ({err})") from None
    if old.get("params") != run.params():
        raise SpecError(f"{folder}: holds a different search ({old.get('params', {}).get('space')}"
                        "); use another folder or delete it")
    return {c for lo, hi in old.get("done", []) for c in range(lo, hi)}


def ranges(chunks: set[int]) -> list[list[int]]:
    """Sorted chunk numbers as [start, stop) ranges (a small manifest for long runs)."""
    out: list[list[int]] = []
    for c in sorted(chunks):
        if out and out[-1][1] == c:
            out[-1][1] = c + 1
        else:
            out.append([c, c + 1])
    return out


def save_manifest(folder: Path, run, done: set[int], complete: bool,
                   top_merged: bool = False) -> None:
    text = json.dumps({"params": run.params(), "done": ranges(done), "complete": complete,
                       "top_merged": top_merged})
    write_atomic(folder / MANIFEST, lambda p: p.write_text(text))


def finish_top(folder: Path, run, done: set[int]) -> None:
    """Keep the global top K of the per-chunk tops in one part file. The manifest says
    when the merged file is complete, so a crash while deleting the chunk parts is
    resumed by deleting the rest."""
    manifest = json.loads((folder / MANIFEST).read_text()) if (folder / MANIFEST).exists() \
        else {}
    parts = sorted(p for p in folder.glob("part-*.parquet") if p.name != "part-top.parquet")
    if not manifest.get("top_merged"):
        frames = [pd.read_parquet(p) for p in parts]
        if frames:
            df = top_rows(pd.concat(frames, ignore_index=True), run.top)
            write_table(folder / "part-top.parquet", df, run)
        save_manifest(folder, run, done, False, top_merged=True)
    for p in parts:
        p.unlink(missing_ok=True)


def write_part(folder: Path, first_chunk: int, df: pd.DataFrame, run,
               partition_by: tuple[str, ...] = ()) -> None:
    """Write the rows of consecutive chunks starting at ``first_chunk``: one file, or with
    ``partition_by`` one file per hive directory ``col=value/...`` (the same name in each,
    so a rerun of the same chunks overwrites exactly what it wrote before)."""
    name = f"part-{first_chunk:06d}.parquet"
    if not partition_by:
        write_table(folder / name, df, run)
        return
    from urllib.parse import quote

    for key, group in df.groupby(list(partition_by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        sub = folder.joinpath(*(f"{c}={quote(str(v), safe='')}"
                                for c, v in zip(partition_by, key, strict=True)))
        sub.mkdir(parents=True, exist_ok=True)
        rows = group.drop(columns=list(partition_by)).reset_index(drop=True)
        write_table(sub / name, rows, run)


# Finished chunks are written together (one part file, one manifest update) when this
# many rows or chunks have gathered, or this many seconds have passed.
FLUSH_ROWS, FLUSH_CHUNKS, FLUSH_SECONDS = 1 << 20, 512, 5.0


class Writer:
    """Streams the rows of finished chunks into an output folder: a part file holds
    consecutive chunks, and the manifest is rewritten after each part, so a killed run
    resumes at its first unrecorded chunk."""

    def __init__(self, folder: Path, run):
        self.folder, self.run = folder, run
        self.done = read_manifest(folder, run)  # finished chunks of an earlier run
        self.pending: list[pd.DataFrame] = []  # rows of finished chunks not yet written
        self.chunks: list[int] = []
        self.last_flush = time.perf_counter()

    def skip(self, c: int) -> None:
        """Chunk c was finished by an earlier run."""
        if self.chunks:
            self.flush()  # a part file holds consecutive chunks only

    def add(self, c: int, df: pd.DataFrame | None) -> None:
        """The rows of chunk c (None: no match)."""
        self.chunks.append(c)
        if df is not None:
            self.pending.append(df)
        if (sum(map(len, self.pending)) >= FLUSH_ROWS or len(self.chunks) >= FLUSH_CHUNKS
                or (not self.run.partition_by  # partitioned groups must not depend on time
                    and time.perf_counter() - self.last_flush >= FLUSH_SECONDS)):
            self.flush()

    def flush(self) -> None:
        if self.pending:
            write_part(self.folder, self.chunks[0], pd.concat(self.pending, ignore_index=True),
                       self.run, self.run.partition_by)
        self.done.update(self.chunks)
        save_manifest(self.folder, self.run, self.done, False)
        self.pending.clear()
        self.chunks.clear()
        self.last_flush = time.perf_counter()

    def finish(self) -> int:
        """Write what is pending, merge the top K, mark the run complete; rows written."""
        folder, run = self.folder, self.run
        if self.chunks:
            self.flush()
        if run.top is not None:
            finish_top(folder, run, self.done)
        if not any(folder.rglob("part-*.parquet")):  # no match at all: keep the schema readable
            write_table(folder / "part-000000.parquet", run.rows(np.zeros(0, np.int64)), run)
        save_manifest(folder, run, self.done, True, top_merged=run.top is not None)
        return sum(pq.read_metadata(p).num_rows for p in folder.rglob("part-*.parquet"))


class Collector:
    """Keeps the rows of every chunk in memory (a search without an output folder)."""

    def __init__(self, run):
        self.run, self.done, self.frames = run, set(), []

    def skip(self, c: int) -> None:
        pass

    def add(self, c: int, df: pd.DataFrame | None) -> None:
        if df is not None:
            self.frames.append(df)

    def finish(self) -> pd.DataFrame:
        """Every matching row (the top K of them with ``top``)."""
        run = self.run
        df = pd.concat(self.frames, ignore_index=True) if self.frames else run.rows(
            np.zeros(0, np.int64))
        return top_rows(df, run.top) if run.top is not None else df
