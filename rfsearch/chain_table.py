"""Tables of chains (Parquet files, Arrow or pandas tables): list columns read into
padded arrays without a Python loop over rows, each row validated on its own (one bad row
costs its row), and the valid rows made a :class:`Batch`.

Columns: ``kernel`` (list<int>, required), ``stride``, ``dilation``, ``padding``
(list<int>, same lengths, optional), ``name`` (string, optional). Square layers; padding
is symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .axes import MAX_PARAM
from .chain_arrays import chains, default_names
from .encode import Batch
from .errors import Location, SpecError
from .names import chain_layer

CHAIN_COLUMNS = ("kernel", "stride", "dilation", "padding")

SMALLEST = {"kernel": 1, "stride": 1, "dilation": 1, "padding": 0}  # smallest valid value
BEYOND = np.iinfo(np.int64).max  # an unsigned value beyond int64, read as this


@dataclass
class ListColumn:
    """A list<int> column as a padded [N, depth] array, per-row lengths and bad rows."""

    values: np.ndarray  # [N, depth], padded with the column's neutral value
    lengths: np.ndarray  # [N]
    null_rows: np.ndarray  # [N] bool: the list or one of its values is null


def _list_column(table: pa.Table, name: str, fill: int) -> ListColumn:
    """Read a list<int> column without a Python loop over rows."""
    col = table.column(name).combine_chunks()
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)) or not (
            pa.types.is_integer(col.type.value_type)):
        raise SpecError(f"column {name!r} must be a list of integers, got {col.type}")
    n = len(col)
    null_rows = col.is_null().to_numpy(zero_copy_only=False)
    col = col.fill_null(pa.scalar([], col.type))
    offsets = col.offsets.to_numpy()
    flat = col.values.slice(offsets[0], offsets[-1] - offsets[0])
    if flat.null_count:  # null values inside lists: mark their rows, read them as `fill`
        parents = pc.list_parent_indices(col).to_numpy()
        null_rows[parents[flat.is_null().to_numpy(zero_copy_only=False)]] = True
        flat = flat.fill_null(fill)
    values = flat.to_numpy(zero_copy_only=False)
    if values.dtype == np.uint64:  # out of range anyway above int64; flagged as BEYOND
        values = np.minimum(values, BEYOND).astype(np.int64)
    lengths = np.diff(offsets)
    out = np.full((n, max(int(lengths.max(initial=1)), 1)), fill,
                  np.result_type(values.dtype, np.int8))
    # Row-major boolean scatter: the mask's True cells are the flattened list values.
    out[np.arange(out.shape[1])[None, :] < lengths[:, None]] = values
    return ListColumn(out, lengths, null_rows)


def _row_problems(columns: dict[str, ListColumn]) -> dict[int, tuple[int | None, str]]:
    """Per-row validation, vectorised: {row: (layer or None, problem)} for bad rows."""
    kernel = columns["kernel"]
    problems: dict[int, tuple[int | None, str]] = {}

    def flag(rows: np.ndarray, describe) -> None:
        for row in np.nonzero(rows)[0]:
            problems.setdefault(int(row), describe(int(row)))

    for name, col in columns.items():
        flag(col.null_rows, lambda r, name=name: (None, f"{name} is null or holds nulls"))
    flag(kernel.lengths < 1, lambda r: (None, "kernel list is empty"))
    for name, col in columns.items():
        flag(col.lengths != kernel.lengths, lambda r, name=name, col=col: (
            None, f"{name} has {col.lengths[r]} entries, kernel has {kernel.lengths[r]}"))
    for name, col in columns.items():
        if col.values.size == 0 or (col.values.min() >= SMALLEST[name]
                                    and col.values.max() <= MAX_PARAM):
            continue  # the common case: one pass of min / max, no masks
        live = np.arange(col.values.shape[1])[None, :] < col.lengths[:, None]
        bad = live & ((col.values < SMALLEST[name]) | (col.values > MAX_PARAM))
        kind = "a positive integer" if SMALLEST[name] else "a non-negative integer"
        flag(bad.any(axis=1), lambda r, name=name, col=col, bad=bad, kind=kind: (
            int(np.argmax(bad[r])), f"{name} must be {kind} at most {MAX_PARAM}, "
            f"got {_shown(int(col.values[r, np.argmax(bad[r])]))}"))
    if "dilation" in columns and (int(columns["dilation"].values.max(initial=1))
                                  * (int(kernel.values.max(initial=1)) - 1) + 1 > MAX_PARAM):
        depth = min(kernel.values.shape[1], columns["dilation"].values.shape[1])
        k_eff = columns["dilation"].values[:, :depth].astype(np.int64) * (
            kernel.values[:, :depth] - 1) + 1
        big = k_eff > MAX_PARAM
        flag(big.any(axis=1), lambda r: (
            int(np.argmax(big[r])), f"dilation*(kernel-1)+1 must be at most {MAX_PARAM}"))
    return problems


def _shown(value: int) -> str:
    return "a value beyond int64" if value == BEYOND else str(value)


def _fit(values: np.ndarray, depth: int, fill: int) -> np.ndarray:
    """[N, d] -> [N, depth], cut or padded with ``fill`` (rows were checked to agree)."""
    if values.shape[1] >= depth:
        return values[:, :depth]
    return np.pad(values, ((0, 0), (0, depth - values.shape[1])), constant_values=fill)


def frame_table(frame: pd.DataFrame) -> tuple[pa.Table, dict[int, str]]:
    """A pandas frame of chains as an Arrow table, and {row: problem} for the rows whose
    cells Arrow cannot read as integer lists (a string, a scalar, a bool, a value beyond
    int64): those rows are nulled, so that they cost their own row only."""
    try:
        return pa.Table.from_pandas(frame, preserve_index=False), {}
    except (pa.ArrowException, OverflowError, TypeError, ValueError):
        pass  # find the rows at fault, one cell at a time (only a failed table pays this)
    bad: dict[int, str] = {}
    frame = frame.copy()
    for column in (c for c in CHAIN_COLUMNS if c in frame.columns):
        cells = []
        for row, cell in enumerate(frame[column].tolist()):
            problem, values = _cell(cell)
            if problem and row not in bad:
                bad[row] = f"{column} {problem}"
            cells.append(values)
        frame[column] = cells
    for column in (c for c in CHAIN_COLUMNS if c in frame.columns):
        frame[column] = [None if row in bad else v for row, v in enumerate(frame[column])]
    if "name" in frame.columns:
        frame["name"] = [None if v is None or v is pd.NA or (isinstance(v, float) and v != v)
                         else str(v) for v in frame["name"].tolist()]
    return pa.Table.from_pandas(frame, preserve_index=False), bad


def _cell(cell) -> tuple[str | None, list[int] | None]:
    """(why a cell is not a list of integers, or None; its values as Python ints)."""
    if cell is None:
        return None, None
    if np.isscalar(cell):
        return f"must be a list of integers, got {cell!r}", None
    values = np.ravel(np.asarray(cell, dtype=object)).tolist()
    for v in values:
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
            return f"must hold integers, got {v!r}", None
        if not -2**63 <= int(v) < 2**63:
            return f"must hold integers, got {v!r} (beyond int64)", None
    return None, [int(v) for v in values]


def chain_rows(table: pa.Table, label: str, offset: int = 0, bad: dict | None = None
               ) -> tuple[Batch, np.ndarray, list[tuple[int, str | None, str]]]:
    """The table's valid rows as a Batch, their row numbers, and (row, name, message) for
    each invalid row; ``offset``: the table's first row in a larger file (a streamed record
    batch), for default names and error locations; ``bad``: {row: problem} found before
    (:func:`frame_table`)."""
    if "kernel" not in table.column_names:
        raise SpecError(f"{label}: a chain table needs a list column 'kernel'")
    unknown = set(table.column_names) - {*CHAIN_COLUMNS, "name"}
    if unknown:
        raise SpecError(f"{label}: unknown column {sorted(unknown)[0]!r}; "
                        f"allowed: name, {', '.join(CHAIN_COLUMNS)}")
    n = table.num_rows
    names = None
    if "name" in table.column_names:
        names = np.array([None if v is None else str(v) for v in
                          table.column("name").to_pylist()], dtype=object)
    try:
        columns = {c: _list_column(table, c, SMALLEST[c] and 1)
                   for c in CHAIN_COLUMNS if c in table.column_names}
    except SpecError as err:
        raise err.at(Location(file=label)) from None
    problems = {**_row_problems(columns), **{r: (None, m) for r, m in (bad or {}).items()}}
    keep = np.ones(n, bool)
    keep[list(problems)] = False
    good = np.nonzero(keep)[0]
    rows = slice(None) if keep.all() else good  # no copies when every row is valid
    depth = columns["kernel"].values.shape[1]
    arrays = {c: _fit(col.values[rows], depth, SMALLEST[c] and 1)
              for c, col in columns.items() if c != "kernel"}
    if names is None:  # default names follow the table row, not the row among valid ones
        shown = default_names(good + offset)
    else:
        shown = np.where(names[rows] == None, np.asarray(default_names(good + offset)),  # noqa: E711
                         names[rows])
    # _list_column filled every layer past a row's length with identity values
    batch = chains(columns["kernel"].values[rows], **arrays,
                   lengths=np.maximum(columns["kernel"].lengths[rows], 1), names=shown,
                   padded=True)
    errors = []
    for row, (layer, problem) in sorted(problems.items()):
        name = names[row] if names is not None and names[row] is not None else \
            default_names([row + offset])[0]  # as a valid row's, and as dict specs keep net{i}
        where = Location(label, row + offset, name, layer,
                         None if layer is None else chain_layer(layer))
        errors.append((row + offset, name, str(SpecError(problem, where))))
    return batch, good, errors
