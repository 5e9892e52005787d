"""Reading specs from files: JSON, JSON Lines, YAML (safe_load) and Parquet chain tables.

Spec files are data only: nothing is evaluated, unpickled or imported. Each spec
is validated on its own, so one bad spec costs one row, never the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .encode import Batch, chains
from .errors import Location, SpecError
from .spec import Network, parse_network

SPEC_SUFFIXES = (".json", ".jsonl", ".ndjson", ".yaml", ".yml", ".parquet")
CHAIN_COLUMNS = ("kernel", "stride", "dilation", "padding")


@dataclass
class Source:
    """Specs from one place: validated networks and the specs that failed.

    ``networks[i]`` is spec ``index[i]`` of the source; ``errors`` holds
    (spec index, spec name or None, one-line message) for the rest.
    """

    label: str | None
    networks: list[Network]
    index: list[int]
    errors: list[tuple[int, str | None, str]]
    total: int
    batch: Batch | None = None  # set instead of networks for columnar sources


def from_objects(objects: list, label: str | None = None,
                 positions: list[int] | None = None) -> Source:
    """Validate spec dicts one by one; bad ones become error entries."""
    src = Source(label, [], [], [], len(objects))
    for i, raw in enumerate(objects):
        where = i if positions is None else positions[i]
        try:
            src.networks.append(parse_network(raw, where, label))
            src.index.append(i)
        except SpecError as err:
            name = raw.get("name") if isinstance(raw, dict) else None
            src.errors.append((i, name if isinstance(name, str) else None, str(err)))
    return src


def _json_error(label: str, err: json.JSONDecodeError, line: int | None = None) -> str:
    lineno = err.lineno if line is None else line
    return f"{label}: invalid JSON at line {lineno}, column {err.colno}: {err.msg}"


def _as_list(data) -> list:
    return data if isinstance(data, list) else [data]


def read_source(path: str | Path) -> Source:
    """Read one spec file; a file-level problem raises SpecError naming the file."""
    path = Path(path)
    label = str(path)
    suffix = path.suffix.lower()
    if suffix not in SPEC_SUFFIXES:
        raise SpecError(f"{label}: unsupported file type {suffix or '(none)'!r}; "
                        f"use one of {', '.join(SPEC_SUFFIXES)}")
    if not path.is_file():
        raise SpecError(f"{label}: no such file")
    if suffix == ".parquet":
        batch = read_chains(path)
        return Source(label, [], list(range(len(batch))), [], len(batch), batch)
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise SpecError(f"{label}: file is empty")
    if suffix in (".jsonl", ".ndjson"):
        return _read_json_lines(text, label)
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise SpecError(f"{label}: invalid YAML{at}: {getattr(err, 'problem', err)}") from None
        return from_objects(_as_list(data), label)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise SpecError(_json_error(label, err)) from None
    return from_objects(_as_list(data), label)


def _read_json_lines(text: str, label: str) -> Source:
    objects, positions, bad = [], [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            objects.append(json.loads(line))
            positions.append(len(positions) + len(bad))
        except json.JSONDecodeError as err:
            bad.append((len(positions) + len(bad), _json_error(label, err, lineno)))
    src = from_objects(objects, label, positions)
    # Map indices back to positions in the file (bad lines included).
    src.index = [positions[i] for i in src.index]
    src.errors = [(positions[i], n, m) for i, n, m in src.errors] + [(i, None, m) for i, m in bad]
    src.total = len(positions) + len(bad)
    return src


def _list_column(table: pa.Table, name: str, n: int, fill: int):
    """A list<int> column -> ([N, depth] int64 padded with ``fill``, lengths [N])."""
    col = table.column(name).combine_chunks()
    if not pa.types.is_list(col.type) and not pa.types.is_large_list(col.type):
        raise SpecError(f"column {name!r} must be a list of integers, got {col.type}")
    if col.null_count:
        raise SpecError(f"column {name!r} has null rows")
    offsets = col.offsets.to_numpy()
    values = col.values.to_numpy(zero_copy_only=False)
    if values.dtype.kind not in "iu":
        raise SpecError(f"column {name!r} must hold integers, got {col.values.type}")
    lengths = np.diff(offsets)
    depth = int(lengths.max(initial=1))
    out = np.full((n, max(depth, 1)), fill, np.result_type(values.dtype, np.int8))
    # Row-major boolean scatter: the mask's True cells are the flattened list values.
    out[np.arange(out.shape[1])[None, :] < lengths[:, None]] = values[offsets[0] : offsets[-1]]
    return out, lengths


def read_chains(path: str | Path) -> Batch:
    """A Parquet / Arrow table of chains -> Batch, vectorised over rows (no Python per row).

    Columns: ``kernel`` (list<int>, required), ``stride``, ``dilation``, ``padding``
    (list<int>, same lengths, optional), ``name`` (string, optional). Square layers;
    padding is symmetric.
    """
    label = str(path)
    try:
        table = pq.read_table(path) if not isinstance(path, pa.Table) else path
    except (pa.ArrowInvalid, OSError) as err:
        raise SpecError(f"{label}: not a readable Parquet file ({err})") from None
    if "kernel" not in table.column_names:
        raise SpecError(f"{label}: a chain table needs a list column 'kernel'")
    unknown = set(table.column_names) - {*CHAIN_COLUMNS, "name"}
    if unknown:
        raise SpecError(f"{label}: unknown column {sorted(unknown)[0]!r}; "
                        f"allowed: name, {', '.join(CHAIN_COLUMNS)}")
    n = table.num_rows
    try:
        kernel, lengths = _list_column(table, "kernel", n, 1)
        if (lengths < 1).any():
            raise SpecError(f"spec #{int(np.argmax(lengths < 1))}: kernel list is empty")
        rest = {}
        for name, fill in (("stride", 1), ("dilation", 1), ("padding", 0)):
            if name in table.column_names:
                rest[name], other = _list_column(table, name, n, fill)
                if (other != lengths).any():
                    row = int(np.argmax(other != lengths))
                    raise SpecError(f"spec #{row}: {name} has {other[row]} entries, "
                                    f"kernel has {lengths[row]}")
                rest[name] = rest[name][:, : kernel.shape[1]]
        names = (table.column("name").to_numpy(zero_copy_only=False).astype(object)
                 if "name" in table.column_names else None)
        return chains(kernel, **rest, lengths=lengths, names=names)
    except SpecError as err:
        raise err.at(Location(file=label)) from None
