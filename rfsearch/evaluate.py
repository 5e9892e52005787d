"""``evaluate``: specs (dicts, files, a Batch) in, one DataFrame out.

Bad specs and invalid networks cost their own row (``error`` filled), never the
batch. Kernel error codes become one-line messages naming the spec and layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from . import kernel as K
from .driver import DEFAULT_CHUNK, Raw, parse_input_size, run_batch
from .encode import Batch, encode_networks
from .errors import Location, SpecError
from .load import Source, from_objects, read_source
from .ops import op_names
from .table import NETWORK_COLUMNS, frame

LAYER_SCALE = 1 << 32  # sort key of a per-layer row: spec index * LAYER_SCALE + node


def sources(specs) -> list[Source]:
    """Normalise what users pass: a dict, a list of dicts, path(s), a Batch."""
    if isinstance(specs, Batch):
        return [Source(None, [], list(range(len(specs))), [], len(specs), specs)]
    if isinstance(specs, Mapping):
        return [from_objects([specs])]
    if isinstance(specs, str | Path):
        return [_read_or_error(specs)]
    specs = list(specs)
    if specs and all(isinstance(s, str | Path) for s in specs):
        return [_read_or_error(s) for s in specs]
    return [from_objects(specs)]


def _read_or_error(path) -> Source:
    """A file's specs; a file that cannot be read at all becomes one error row."""
    try:
        return read_source(path)
    except SpecError as err:
        return Source(str(path), [], [], [(0, None, str(err))], 1)


def _layer_label(batch: Batch, row: int, node: int) -> tuple[int, str]:
    names = batch.layer_names
    name = names[row][node - 1] if names is not None else f"layer{node - 1}"
    return node - 1, name


def _pairs(values) -> str:
    """'h: 4 vs 2; w: 4 vs 2' from a [M, 2] array of per-input values."""
    axes = []
    for axis, label in enumerate("hw"):
        vals = [str(int(v)) for v in values[:, axis]]
        axes.append(f"{label}: {' vs '.join(vals)}")
    return "; ".join(axes)


def _where(batch: Batch, row: int, node: int | None, label, spec_index) -> Location:
    if node is None:
        return Location(label, int(spec_index[row]), str(batch.names[row]))
    layer_index, layer_name = _layer_label(batch, row, node)
    return Location(label, int(spec_index[row]), str(batch.names[row]), layer_index, layer_name)


def explain(batch: Batch, raw: Raw, failed: np.ndarray, size, label, spec_index, chunk):
    """One-line messages for the rows with a kernel error or an int64 overflow.

    Empty maps (the common case in big searches) are described from the error node
    alone; stride / size mismatches and overflows re-run their few rows per layer to
    name the values involved.
    """
    messages = np.empty(len(failed), dtype=object)
    code = raw.err_code[failed]
    empty = code == K.ERR_EMPTY
    if empty.any():
        problem = f"output is smaller than 1 pixel at input size {size[0]}x{size[1]}"
        messages[empty] = [
            f"{_where(batch, r, int(raw.err_node[r]), label, spec_index)}: {problem}"
            for r in failed[empty]
        ]
    rest = failed[~empty]
    if rest.size:
        detail = run_batch(batch.take(rest), size, per_layer=True, chunk=chunk)
        messages[~empty] = [
            str(_mismatch(batch, detail, j, r, label, spec_index)) for j, r in enumerate(rest)
        ]
    return messages


def _mismatch(batch: Batch, detail: Raw, j: int, row: int, label, spec_index) -> SpecError:
    """The error of row ``row`` (column ``j`` of ``detail``): stride / size mismatch, overflow."""
    code, node = int(detail.err_code[j]), int(detail.err_node[j])
    if code == K.ERR_NONE:
        limits = K.LIMITS[np.dtype(np.int64)]
        return SpecError(
            "receptive-field geometry exceeds the exact integer range (effective stride "
            f"above {limits.param} or a region above {limits.position} pixels)",
            _where(batch, row, None, label, spec_index))
    preds = batch.preds[row, node]
    preds = preds[preds >= 0]
    if code == K.ERR_JUMP:
        values = _pairs(detail.layers["J"][preds, :, j])
        problem = f"inputs have different effective strides ({values})"
    else:
        values = _pairs(detail.layers["size"][preds, :, j])
        problem = f"inputs have different feature-map sizes ({values})"
    return SpecError(problem, _where(batch, row, node, label, spec_index))


def _network_columns(raw: Raw, valid: np.ndarray):
    """(values, null mask) per numeric column from the output states."""
    out = raw.out
    unbounded = (out["flags"] & K.UNBOUNDED) != 0
    known = (out["flags"] & K.KNOWN) != 0
    bad = np.broadcast_to(~valid, out["u"].shape)
    aligned_bits = ((out["flags"] & K.ALIGNED) != 0).all(axis=0)
    cols = {
        "rf": (out["v"] - out["u"] + 1, bad | unbounded),
        "rf_min": (out["rmin"] + 1, bad | unbounded),
        "stride": (out["J"], bad),
        "padding": (-out["u"], bad | unbounded | ~known),
        "out": (out["size"], bad | (out["size"] <= 0)),
    }
    result = {}
    for key, (values, mask) in cols.items():
        for axis, suffix in enumerate("hw"):
            result[f"{key}_{suffix}"] = (values[axis], mask[axis])
    result["aligned"] = (aligned_bits, ~valid | ~known.all(axis=0))
    return result


def _source_table(src: Source, size, per_layer: bool, chunk: int, progress: bool):
    """Columns for one source: kernel rows for valid networks, error rows for the rest."""
    batch = src.batch if src.batch is not None else encode_networks(src.networks)
    raw = run_batch(batch, size, per_layer=per_layer, chunk=chunk, progress=progress)
    overflow = ((raw.out["flags"] & K.OVERFLOW) != 0).any(axis=0)
    failed = np.nonzero((raw.err_code != K.ERR_NONE) | overflow)[0]
    spec_index = np.asarray(src.index, dtype=np.int64)
    messages = np.full(len(batch), None, dtype=object)
    if failed.size:
        messages[failed] = explain(batch, raw, failed, size, src.label, spec_index, chunk)
    valid = messages == None  # noqa: E711
    if per_layer:
        return _layer_rows(batch, raw, messages, spec_index, src)
    cols = _network_columns(raw, valid)
    cols["name"] = (batch.names.astype(str), None)
    cols["error"] = (messages, None)
    order = spec_index
    if src.errors:
        cols, order = _with_error_rows(cols, src, order)
    return cols, order


def _with_error_rows(cols, src: Source, order, scale: int = 1):
    """Append rows for specs that failed validation: name and error set, the rest null."""
    k = len(src.errors)
    extra = {"name": [n for _, n, _ in src.errors], "error": [m for _, _, m in src.errors]}
    merged = {}
    for key, (values, mask) in cols.items():
        values = np.asarray(values)
        if values.dtype == object or values.dtype.kind == "U":
            tail = np.array(extra.get(key, [None] * k), dtype=object)
            merged[key] = (np.concatenate([values.astype(object), tail]), None)
        else:
            m = np.zeros(len(values), bool) if mask is None else mask
            merged[key] = (np.concatenate([values, np.zeros(k, values.dtype)]),
                           np.concatenate([m, np.ones(k, bool)]))
    return merged, np.concatenate([order, [i * scale for i, _, _ in src.errors]])


def _layer_rows(batch: Batch, raw: Raw, messages, spec_index, src: Source):
    """Long table: one row per (network, layer) for the valid part of the batch."""
    node = np.arange(batch.depth)[:, None]  # [L, 1]
    live = (node >= 1) & (node < batch.length[None, :])  # [L, N]
    net, nodes = np.nonzero(live.T)  # network-major order
    layers = {k: v[nodes, :, net].T for k, v in raw.layers.items()}  # [2, R]
    errored = (messages[net] != None) & (nodes >= raw.err_node[net])  # noqa: E711
    overflow = ((layers["flags"] & K.OVERFLOW) != 0).any(axis=0)
    valid = ~errored & ~overflow
    cols = _network_columns(Raw(layers, None, None, None), valid)
    cols["name"] = (batch.names[net].astype(str), None)
    cols["layer"] = (nodes - 1, None)
    if batch.layer_names is not None:
        cols["layer_name"] = (np.array([batch.layer_names[i][j - 1] for i, j in zip(
            net, nodes, strict=True)], dtype=object), None)
        cols["op"] = (np.array([batch.layer_ops[i][j - 1] for i, j in zip(
            net, nodes, strict=True)], dtype=object), None)
    else:
        cols["layer_name"] = (np.char.add("layer", (nodes - 1).astype(str)).astype(object), None)
        cols["op"] = (op_names(batch.op[net, nodes]), None)
    cols["error"] = (np.where(errored, messages[net], None), None)
    order = spec_index[net] * LAYER_SCALE + nodes  # by spec, then by layer
    if src.errors:
        cols, order = _with_error_rows(cols, src, order, LAYER_SCALE)
    return cols, order


def evaluate(specs, *, input_size=None, per_layer: bool = False, progress: bool = False,
             chunk_size: int = DEFAULT_CHUNK) -> pd.DataFrame:
    """Receptive-field geometry of every network in ``specs``, one row each.

    ``specs``: a spec dict, a list of them, a path (.json / .jsonl / .yaml /
    .parquet) or a list of paths, or a :class:`~rfsearch.Batch`. ``input_size``:
    int, (H, W) or 'HxW'. ``per_layer=True`` returns one row per (network, layer).
    Rows whose spec is bad or whose network is invalid keep a null geometry and a
    one-line ``error``; every other row is computed. See ``rfsearch.table.COLUMNS``.
    """
    size = parse_input_size(input_size)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise SpecError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    tables = []
    for src in sources(specs):
        cols, order = _source_table(src, size, per_layer, chunk_size, progress)
        df = frame(cols, per_layer, size)
        tables.append(df.iloc[np.argsort(order, kind="stable")])
    if not tables:
        return frame({c: (np.zeros(0), None) for c in NETWORK_COLUMNS}, per_layer, size)
    df = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    df = df.reset_index(drop=True)
    df.attrs.update(tables[0].attrs)
    return df
