"""Kernel faults become one-line messages naming the file, spec, layer and values.

The kernel reports, per node, the first invalid node among its ancestors (an
encoded fault, see :mod:`rfsearch.kernel`). Turning those into text happens here,
once per distinct (row, fault) pair, so a million vanishing maps cost a list
comprehension, not a kernel call each.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import recurrence as R
from .driver import run_batch
from .encode import Batch
from .errors import Location, where_text
from .names import chain_layer


@dataclass
class Context:
    """What a message needs besides the kernel results: where the rows came from."""

    batch: Batch
    label: str | None  # file name, if any
    spec_index: np.ndarray  # batch row -> index of the spec in its source
    size: tuple[int, int] | None
    chunk: int


def where(ctx: Context, row: int, node: int | None) -> Location:
    """The location of a batch row, and of one of its nodes (node 0 is the input)."""
    name = str(ctx.batch.names[row])
    if node is None:
        return Location(ctx.label, int(ctx.spec_index[row]), name)
    layer_name = _layer_names(ctx, [row], [node - 1])[0]
    return Location(ctx.label, int(ctx.spec_index[row]), name, node - 1, layer_name)


def _layer_names(ctx: Context, rows: list[int], layers: list[int]) -> list[str]:
    """The names of layers ``layers`` of batch rows ``rows`` (default: 'layer{k}')."""
    given = ctx.batch.layer_names
    if given is None:
        return [chain_layer(k) for k in layers]
    return [given[r][k] for r, k in zip(rows, layers, strict=True)]


def wheres(ctx: Context, rows: np.ndarray, nodes: np.ndarray | None) -> list[str]:
    """``str(where(ctx, r, n))`` for batch rows [R] and their nodes [R] (None: the
    networks), the names taken for all rows at once and no Location per row."""
    names = np.asarray(ctx.batch.names[rows], dtype=object).tolist()
    spec = ctx.spec_index[rows].tolist()
    if nodes is None:
        return [where_text(ctx.label, i, str(n)) for i, n in zip(spec, names, strict=True)]
    layers = (np.asarray(nodes) - 1).tolist()
    return [where_text(ctx.label, i, str(n), k, m) for i, n, k, m in zip(
        spec, names, layers, _layer_names(ctx, rows.tolist(), layers), strict=True)]


def pairs(values) -> str:
    """'h: 4 vs 2; w: 4 vs 2' from an [M, 2] array of per-input values."""
    return "; ".join(
        f"{label}: {' vs '.join(str(int(v)) for v in values[:, axis])}"
        for axis, label in enumerate("hw")
    )


def overflow_problem() -> str:
    limits = R.LIMITS[np.dtype(np.int64)]
    return ("receptive-field geometry exceeds the exact integer range (an effective stride or "
            f"a feature-map size above {limits.param}, or a region above {limits.position} "
            "pixels)")


def explain(ctx: Context, rows: np.ndarray, faults: np.ndarray) -> np.ndarray:
    """Messages for (batch row, encoded fault) pairs; NO_FAULT there means overflow.

    Empty maps are described from the fault alone; stride / size mismatches re-run
    their few rows per layer to name the values involved.
    """
    messages = np.empty(len(rows), dtype=object)
    codes, nodes = R.fault_code(faults)
    overflowed = codes == R.ERR_NONE
    if overflowed.any():
        nodes = np.array(nodes)
        nodes[overflowed] = _first_overflow(ctx, rows[overflowed])
    size = ctx.size or (0, 0)
    for code, problem in (
        (R.ERR_EMPTY, f"output is smaller than 1 pixel at input size {size[0]}x{size[1]}"),
        (R.ERR_NONE, overflow_problem()),
    ):
        pick = codes == code
        messages[pick] = [f"{w}: {problem}" for w in wheres(ctx, rows[pick], nodes[pick])]
    mismatch = (codes == R.ERR_JUMP) | (codes == R.ERR_SIZE)
    if mismatch.any():
        unique, column = np.unique(rows[mismatch], return_inverse=True)
        detail = run_batch(ctx.batch.take(unique), ctx.size, per_layer=True, chunk=ctx.chunk)
        messages[mismatch] = [
            _mismatch(ctx, detail.layers, j, r, c, n) for j, r, c, n in zip(
                column, rows[mismatch], codes[mismatch], nodes[mismatch], strict=True)
        ]
    return messages


def _first_overflow(ctx: Context, rows: np.ndarray) -> np.ndarray:
    """Per row, the first layer whose geometry left the exact range (its rows re-run per
    layer, as for mismatches)."""
    unique, column = np.unique(rows, return_inverse=True)
    detail = run_batch(ctx.batch.take(unique), ctx.size, per_layer=True, chunk=ctx.chunk)
    flags = (detail.layers["flags"] & R.OVERFLOW) != 0
    hit = flags.reshape(flags.shape[0], -1, flags.shape[-1]).any(axis=1)  # [L, rows]
    return np.argmax(hit, axis=0)[column.reshape(-1)]


def _mismatch(ctx: Context, layers, j: int, row: int, code: int, node: int) -> str:
    """A stride / size mismatch at ``node`` of ``row`` (column ``j`` of ``layers``)."""
    preds = ctx.batch.preds[row, node]
    preds = preds[preds >= 0]
    field, what = ("J", "effective strides") if code == R.ERR_JUMP else (
        "size", "feature-map sizes")
    return (f"{where(ctx, row, int(node))}: inputs have different {what} "
            f"({pairs(layers[field][preds, :, j])})")


def messages_for(ctx: Context, rows: np.ndarray, fault: np.ndarray,
                 overflow: np.ndarray) -> np.ndarray:
    """The ``error`` column for rows with the given faults / overflow flags (None = valid)."""
    messages = np.full(len(rows), None, dtype=object)
    failed = (fault != R.NO_FAULT) | overflow
    if failed.any():
        # one int64 per (row, fault): rows are below 2**31, faults non-negative int32
        keys = (rows[failed].astype(np.int64) << 32) | fault[failed].astype(np.int64)
        unique, back = np.unique(keys, return_inverse=True)
        messages[failed] = explain(ctx, unique >> 32, unique & 0xFFFFFFFF)[back.reshape(-1)]
    return messages
