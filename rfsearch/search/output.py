"""Search output folders: Parquet part files, the manifest that makes runs resumable
(:mod:`.manifest`), and completing the dataset (the top-K merge, leftovers).

A folder holds ``part-NNNNNN.parquet`` files (each the matches of consecutive chunks,
NNNNNN the first) and the manifest. A part file is written before the manifest records
it, so a killed run can leave one that no manifest names: the chunk it starts at is not
finished, and a rerun removes it before it writes from that chunk again; the process that
completes the dataset removes any other part file no manifest names (a rerun with another
process count can start its parts elsewhere).

``run`` arguments are the search's run object (:class:`~.runs.Run`): its ``params()``,
``space``, ``input_size`` and ``top`` are recorded or used here. :class:`Writer` streams
the finished chunks of this process's share (:mod:`.cluster`) into a folder and completes
the dataset once every chunk is recorded; :class:`Collector` keeps them in memory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..analysis import rule as analysis_rule
from ..cache import write_atomic
from ..errors import SpecError
from ..table import schema_text, search_schema
from ..table import to_arrow as frame_to_arrow
from .cluster import SINGLE, Process, barrier
from .manifest import State, read_state, save

TOP = "part-top.parquet"


def top_rows(df: pd.DataFrame, top) -> pd.DataFrame:
    column, k, largest = top
    df = df[df[column].notna()]
    key = df[column].astype("float64").to_numpy()
    order = np.lexsort((df["candidate_id"].to_numpy(), -key if largest else key))
    return df.iloc[order[:k]].reset_index(drop=True)


def to_arrow(df: pd.DataFrame, run) -> pa.Table:
    """Rows of ``run`` as an Arrow table: the frame with the run's attrs (which pandas
    reads back), through :func:`rfsearch.to_arrow` (the declared search schema, the run's
    parameters in the file metadata)."""
    df = df.copy(deep=False)
    df.attrs = frame_attrs(run, declared_schema(run))
    return frame_to_arrow(df)


def declared_schema(run) -> pa.Schema:
    """The Arrow schema of ``run``'s rows: its space's keys and choices as declared."""
    choices = {v.name: v.arrow_type for v in run.space.variables}
    return search_schema(run.space.key_types, choices, run.with_analysis(),
                         run.space.dims == 3)


def frame_attrs(run, declared: pa.Schema) -> dict:
    """A search frame's ``attrs``: what :func:`rfsearch.write_parquet` writes it with."""
    return {"input_size": None if run.input_size is None else list(run.input_size),
            "search": run_metadata(run), "search_schema": schema_text(declared)}


def run_metadata(run) -> dict[str, str]:
    """What a search's files record beside its rows (and its in-memory frame in
    ``attrs["search"]``, for :func:`rfsearch.write_parquet`): the space and the run."""
    rule = {"analysis_rule": analysis_rule(False)} if run.with_analysis() else {}
    return {"space": run.space.name, "space_fingerprint": run.space.fingerprint(),
            "space_definition": json.dumps(run.space.definition, default=str),
            "search": json.dumps(run.params()), **rule}


def write_table(path: Path, df: pd.DataFrame, run) -> None:
    """One part file, written atomically."""
    write_atomic(path, lambda p: pq.write_table(to_arrow(df, run), p, compression="zstd"))


def part_name(first_chunk: int) -> str:
    return f"part-{first_chunk:06d}.parquet"


def first_chunk(path: Path) -> int | None:
    """The chunk a part file is named after (None for ``part-top`` and other names)."""
    digits = path.name[len("part-"):-len(".parquet")]
    return int(digits) if digits.isdigit() else None


def part_files(folder: Path, first: int, partitioned: bool) -> list[Path]:
    """The part files named after chunk ``first``: one, or one per hive folder."""
    name = part_name(first)
    return list(folder.rglob(name)) if partitioned else [
        path for path in [folder / name] if path.exists()]


def remove_leftovers(folder: Path, first: int, partitioned: bool) -> None:
    """Part files named after chunk ``first``, which is not finished: a killed run wrote
    them. Removed before writing from that chunk again, so that none of their rows stays
    beside the rewrite (a hive folder the new part has no rows for keeps nothing)."""
    for path in part_files(folder, first, partitioned):
        path.unlink()


def remove_unrecorded(folder: Path, state: State) -> None:
    """Remove the part files no manifest records (see the module docstring); the
    schema-only ``part-000000`` of a run without matches stays."""
    if state.parts is None:  # a manifest older than the part list: nothing is known
        return
    for path in folder.rglob("part-*.parquet"):
        first = first_chunk(path)
        if first is not None and first not in state.parts and (state.parts or first):
            path.unlink(missing_ok=True)


def _recorded_parts(folder: Path, state: State) -> list[pd.DataFrame] | None:
    """The rows of every recorded part file; None when one is gone (another process is
    merging them)."""
    if state.parts is not None:
        paths = [folder / part_name(c) for c in sorted(state.parts)]
    else:
        paths = sorted(p for p in folder.glob("part-*.parquet") if p.name != TOP)
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_parquet(path))
        except pa.ArrowInvalid as err:
            raise unreadable(path, err) from None
        except OSError:
            return None
    return frames


def unreadable(path: Path, err: Exception) -> SpecError:
    """The one line for a part file that is not Parquet (damaged by hand or by a disk)."""
    return SpecError(f"{path}: not a readable part file ({err}); delete the folder to search "
                     "again")


def finish_top(folder: Path, run, state: State) -> bool:
    """Keep the global top K of the per-chunk tops in one part file; False when another
    process is doing it. The manifest says when the merged file is written, so a crash
    while deleting the chunk parts is resumed by deleting the rest."""
    if not state.top_merged:
        frames = _recorded_parts(folder, state)
        if frames is None:
            return False
        if frames:
            write_table(folder / TOP, top_rows(pd.concat(frames, ignore_index=True),
                                               run.top), run)
        state.top_merged = True
        save(folder, run, state)
    for p in folder.glob("part-*.parquet"):
        if p.name != TOP:
            p.unlink(missing_ok=True)
    return True


def complete(folder: Path, run, state: State) -> bool:
    """Finish a folder whose every chunk is recorded: merge the top K or remove the
    unrecorded part files, keep the schema readable without any match, and mark the
    manifest complete. Safe to run by several processes at once, and again."""
    if run.top is not None:
        if not finish_top(folder, run, state):
            return False
    else:
        remove_unrecorded(folder, state)
    if not any(folder.rglob("part-*.parquet")):  # no match at all: keep the schema readable
        write_table(folder / part_name(0), run.rows(np.zeros(0, np.int64)), run)
    save(folder, run, state, complete=True)
    return True


def count_rows(folder: Path, run) -> int:
    """Rows in a completed folder."""
    paths = [folder / TOP] if run.top is not None else folder.rglob("part-*.parquet")
    total = 0
    for path in paths:
        try:
            total += pq.read_metadata(path).num_rows
        except FileNotFoundError:  # removed by another process finishing the folder
            continue
        except pa.ArrowInvalid as err:
            raise unreadable(path, err) from None
    return total


def write_part(folder: Path, first_chunk: int, df: pd.DataFrame, run,
               partition_by: tuple[str, ...] = ()) -> None:
    """Write the rows of consecutive chunks starting at ``first_chunk``: one file, or with
    ``partition_by`` one file per hive directory ``col=value/...`` (the same name in each,
    so a rerun of the same chunks overwrites exactly what it wrote before)."""
    name = part_name(first_chunk)
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


def _check_recorded_parts(folder: Path, run, state: State) -> None:
    """A recorded part file that is gone would lose its rows from the resumed dataset (a
    top-K run merges and deletes its parts by design)."""
    if run.top is not None:
        return
    missing = sorted(c for c in state.parts or ()
                     if not part_files(folder, c, bool(run.partition_by)))
    if missing:
        raise SpecError(f"{folder}: {part_name(missing[0])} is recorded in the manifest but "
                        f"missing ({len(missing)} part(s)); delete the folder to search again")


class Writer:
    """Streams the rows of finished chunks into an output folder: a part file holds
    consecutive chunks, and the manifest (or this process's record) is rewritten after
    each part, so a killed run resumes at its first unrecorded chunk."""

    def __init__(self, folder: Path, run, process: Process = SINGLE):
        self.folder, self.run, self.process = folder, run, process
        self.state = read_state(folder, run)
        _check_recorded_parts(folder, run, self.state)
        self.done = self.state.done  # finished chunks of earlier runs, of any process
        self.pending: list[pd.DataFrame] = []  # rows of finished chunks not yet written
        self.chunks: list[int] = []
        self.written = 0  # rows this process wrote
        self.last_flush = time.perf_counter()
        if process.count > 1:  # a record before any part file: others see a started run
            save(folder, run, self.state, process)

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
                or time.perf_counter() - self.last_flush >= FLUSH_SECONDS):
            self.flush()

    def flush(self) -> None:
        first, partition_by = self.chunks[0], self.run.partition_by
        remove_leftovers(self.folder, first, bool(partition_by))
        if self.pending:
            df = pd.concat(self.pending, ignore_index=True)
            write_part(self.folder, first, df, self.run, partition_by)
            self.written += len(df)
            if self.state.parts is not None:
                self.state.parts.add(first)
        self.done.update(self.chunks)
        save(self.folder, self.run, self.state, self.process)
        self.pending.clear()
        self.chunks.clear()
        self.last_flush = time.perf_counter()

    def finish(self) -> tuple[int, bool]:
        """Write what is pending; then, if every chunk of the run is recorded (and, with
        the JAX runtime, after every process has got here, on process 0 only), complete
        the dataset. Returns (rows in the dataset, True) when it is complete, else (rows
        this process wrote, False)."""
        if self.chunks:
            self.flush()
        if self.process.synced:
            barrier()
            if self.process.index != 0:
                return self.written, False
        state = read_state(self.folder, self.run)  # what every process has recorded
        if not state.finished(self.run.chunks) or not complete(self.folder, self.run, state):
            return self.written, False
        return count_rows(self.folder, self.run), True


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
        target = declared_schema(run)
        if self.frames:
            df = pd.concat(self.frames, ignore_index=True)
        else:  # keys typed as declared: pandas makes an empty list column double
            df = run.rows(np.zeros(0, np.int64))
            keys = list(run.space.key_types)
            df[keys] = target.empty_table().select(keys).to_pandas()
        df = top_rows(df, run.top) if run.top is not None else df
        df.attrs.update(frame_attrs(run, target))
        return df
