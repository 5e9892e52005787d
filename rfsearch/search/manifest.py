"""The manifest of a search output folder: what is finished, so that a killed run resumes.

A single process keeps ``_manifest.json``: the run's parameters (``Run.params()``), the
finished chunks as [start, stop) ranges (``done``), the first chunks of the part files it
recorded (``parts``), ``complete`` and ``top_merged``; rewritten atomically (write a
hidden temporary file, then rename) after each part.

Processes sharing a folder (:mod:`.cluster`) never rewrite a common file while they run:
process I keeps its own record, ``_manifest.d/process-IIIII.json``, with the same fields
and ``process: [I, N]``, written when it starts (before any part file) and after each
part. A reader takes the union of ``_manifest.json`` and every record (all must hold the
same parameters), so any process, all of them, or a run with another process count
resumes from what every process finished. When every chunk is recorded, the process that
completes the dataset writes ``_manifest.json`` with ``complete: true``, as a single run
does. Parquet readers skip files and folders whose names start with ``_`` or ``.``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import write_atomic
from ..errors import SpecError
from .filter import canonical

MANIFEST = "_manifest.json"
RECORDS = "_manifest.d"


@dataclass
class State:
    """What the manifest and the records of a folder say, merged: finished chunks, the
    first chunks of the recorded part files (None: a manifest older than that field),
    whether the top K was merged, and whether ``_manifest.json`` says complete."""

    done: set[int] = field(default_factory=set)
    parts: set[int] | None = field(default_factory=set)
    top_merged: bool = False
    complete: bool = False

    def finished(self, chunks: int) -> bool:
        """Whether every chunk of a run of ``chunks`` chunks is recorded."""
        return len(self.done & set(range(chunks))) == chunks


def ranges(chunks: set[int]) -> list[list[int]]:
    """Sorted chunk numbers as [start, stop) ranges (a small manifest for long runs)."""
    out: list[list[int]] = []
    for c in sorted(chunks):
        if out and out[-1][1] == c:
            out[-1][1] = c + 1
        else:
            out.append([c, c + 1])
    return out


def record_path(folder: Path, index: int) -> Path:
    return folder / RECORDS / f"process-{index:05d}.json"


def _load(path: Path) -> dict | None:
    try:
        entry = json.loads(path.read_text())
    except FileNotFoundError:  # listed, then replaced or removed: nothing to merge
        return None
    except (OSError, json.JSONDecodeError) as err:
        raise SpecError(f"{path}: unreadable manifest ({err})") from None
    if not isinstance(entry, dict) or not isinstance(entry.get("done", []), list):
        raise SpecError(f"{path}: unreadable manifest (not a manifest object)")
    return entry


def _merge(state: State, entry: dict, is_manifest: bool) -> None:
    state.done |= {c for lo, hi in entry.get("done", []) for c in range(lo, hi)}
    if state.parts is not None and isinstance(entry.get("parts"), list):
        state.parts |= set(entry["parts"])
    else:
        state.parts = None
    state.top_merged |= bool(entry.get("top_merged"))
    state.complete |= is_manifest and bool(entry.get("complete"))


def read_state(folder: Path, run) -> State:
    """The merged manifest of an earlier identical run (empty for a new folder); a
    folder of a different search, or with part files but no manifest, is refused."""
    folder.mkdir(parents=True, exist_ok=True)
    records = sorted((folder / RECORDS).glob("process-*.json"))
    state, found = State(), False
    for path in [*records, folder / MANIFEST]:
        entry = _load(path) if path.exists() else None
        if entry is None:
            continue
        found = True
        theirs, ours = (_comparable(p) for p in (entry.get("params") or {}, run.params()))
        if theirs != ours:
            differ = ", ".join(k for k in {**ours, **theirs} if theirs.get(k) != ours.get(k))
            raise SpecError(f"{folder}: holds a different search ({theirs.get('space')}; "
                            f"{differ} differ); use another folder or delete it")
        _merge(state, entry, path.name == MANIFEST)
    if not found and any(folder.glob("part-*.parquet")):
        raise SpecError(f"{folder}: holds part files but no {MANIFEST}; use an empty folder")
    return state


def _comparable(params: dict) -> dict:
    """A run's parameters as two runs of one search share them (its filter's spacing
    aside)."""
    return {**params, "where": canonical(params.get("where"))} if "where" in params else params


def save(folder: Path, run, state: State, process=None, complete: bool = False) -> None:
    """Write ``state``: as this process's record (``process`` of a count above one), else
    as ``_manifest.json``."""
    entry = {"params": run.params(), "done": ranges(state.done),
             "parts": sorted(state.parts) if state.parts is not None else None,
             "complete": complete, "top_merged": state.top_merged}
    path = folder / MANIFEST
    if process is not None and process.count > 1:
        entry["process"] = [process.index, process.count]
        path = record_path(folder, process.index)
        path.parent.mkdir(exist_ok=True)
    text = json.dumps(entry)
    write_atomic(path, lambda p: p.write_text(text))
