"""Search output folders: Parquet part files, the manifest that makes runs resumable,
and the final top-K merge.

A folder holds ``part-NNNNNN.parquet`` files (each the matches of consecutive chunks,
NNNNNN the first) and ``_manifest.json``: the run's parameters and the finished chunks
as [start, stop) ranges, rewritten atomically (write, then rename) after each part.

``run`` arguments are the search's run object: its ``params()``, ``space``, ``plan`` and
``top`` are recorded or used here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import SpecError
from .table import COLUMNS, file_metadata

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
    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = [f.with_metadata({"description": COLUMNS[f.name][1]}) if f.name in COLUMNS
              else f for f in table.schema]
    meta = {**(table.schema.metadata or {}), **file_metadata(run.plan.input_size, {
        "space": run.space.name, "space_fingerprint": run.space.fingerprint(),
        "space_definition": json.dumps(run.space.definition, default=str),
        "search": json.dumps(run.params())})}
    return table.cast(pa.schema(fields)).replace_schema_metadata(meta)


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
            write_atomic(folder / "part-top.parquet",
                          lambda p: pq.write_table(to_arrow(df, run), p, compression="zstd"))
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
        write_atomic(folder / name, lambda p: pq.write_table(to_arrow(df, run), p,
                                                             compression="zstd"))
        return
    from urllib.parse import quote

    for key, group in df.groupby(list(partition_by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        sub = folder.joinpath(*(f"{c}={quote(str(v), safe='')}"
                                for c, v in zip(partition_by, key, strict=True)))
        sub.mkdir(parents=True, exist_ok=True)
        rows = group.drop(columns=list(partition_by)).reset_index(drop=True)
        write_atomic(sub / name, lambda p, rows=rows: pq.write_table(
            to_arrow(rows, run), p, compression="zstd"))
