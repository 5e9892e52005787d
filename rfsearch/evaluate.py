"""``evaluate``: specs (dicts, files, a Batch) in, one DataFrame out.

Bad specs and invalid networks cost their own row (``error`` filled), never the
batch; :mod:`rfsearch.faults` words the kernel's faults.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pyarrow as pa

from . import recurrence as R
from .analysis import analyze, rf_ratio, rule
from .axes import parse_input_sizes, size_for
from .driver import Raw, run_batch
from .encode import encode_networks
from .errors import Location, SpecError
from .faults import Context, messages_for
from .names import CHAIN_LAYER, arrow_names
from .ops import op_names
from .periodic_eval import unit_by_unit
from .periodic_table import group_columns
from .sources import Source, resolve
from .spec import size_misfit
from .table import ANALYSIS_LAYER, frame
from .threads import concurrently, in_background

LAYER_SCALE = 1 << 32  # sort key of a per-layer row: spec index * LAYER_SCALE + node


def _network_columns(states: dict[str, np.ndarray], valid: np.ndarray):
    """(values, null mask) per numeric column from node states ([2, R] fields), each
    column's values and mask arrays of its own (a square batch's axes share states); the
    two axes are computed side by side (numpy releases the GIL)."""
    unbounded = (states["flags"] & R.UNBOUNDED) != 0  # [2, R]
    known = (states["flags"] & R.KNOWN) != 0

    def axis_columns(axis: int) -> dict:
        u, v, size = states["u"][axis], states["v"][axis], states["size"][axis]
        bad, open_ = ~valid, ~valid | unbounded[axis]
        cols = {
            "rf": (np.subtract(v, u, dtype=np.int64) + 1, open_),
            "rf_min": (np.add(states["rmin"][axis], 1, dtype=np.int64), open_.copy()),
            "stride": (states["J"][axis], bad),
            "stride_den": (np.ones(len(valid), states["J"].dtype), bad.copy()),
            "period": (np.ones(len(valid), states["J"].dtype), bad.copy()),
            "padding": (np.negative(u, dtype=np.int64), open_ | ~known[axis]),
            "out": (size, bad | (size <= 0)),
        }
        return {f"{key}_{'hw'[axis]}": pair for key, pair in cols.items()}

    result = {}
    for part in concurrently(axis_columns, range(2)):
        result.update(part)
    aligned, decided = R.alignment(_distinct_axes(states["flags"]))
    result["aligned"] = (aligned, ~(valid & decided))
    return result


def _distinct_axes(field: np.ndarray) -> np.ndarray:
    """A [2, R] result field without its repeated axis ([1, R]) when both axes are one
    array (a square batch), for reductions over the axes."""
    return field[:1] if field.strides[0] == 0 else field


def _source_table(src: Source, size, per_layer: bool, chunk: int, progress: bool,
                  analysis: dict | None = None):
    """Columns for one source: kernel rows for valid networks, error rows for the rest."""
    batch = src.batch if src.batch is not None else encode_networks(src.networks)
    names = None if per_layer else in_background(arrow_names, batch.names)  # meanwhile
    raw = run_batch(batch, size, per_layer=per_layer or analysis is not None, chunk=chunk,
                    progress=progress)
    ctx = Context(batch, src.label, np.asarray(src.index, dtype=np.int64), size, chunk)
    found = None if analysis is None else analyze(batch, raw.layers, size, **analysis)
    if per_layer:
        return _layer_rows(ctx, raw, src, found)
    overflow = ((_distinct_axes(raw.out["flags"]) & R.OVERFLOW) != 0).any(axis=0)
    fault = _distinct_axes(raw.out["fault"]).min(axis=0)
    invalid = (fault != R.NO_FAULT) | overflow  # exactly the rows with a message
    errors = (messages_for(ctx, np.arange(len(batch)), fault, overflow) if invalid.any()
              else pa.nulls(len(batch), pa.large_string()))  # all valid: no None objects
    cols = _network_columns(raw.out, ~invalid)
    cols["name"] = (names.result(), None)
    cols["error"] = (errors, None)
    if found is not None:
        for key, (values, mask) in found.network.items():
            mask = mask | invalid
            cols[key] = ((np.where(mask, None, values), None) if values.dtype == object
                         else (values, mask))
        cols["rf_ratio"] = _ratio(cols, size)
    order = ctx.spec_index
    if src.errors:
        cols, order = _with_error_rows(cols, src, order)
    return cols, order


def _periodic_rows(src: Source, picks: list[int], sizes, per_layer: bool, analysis):
    """Columns and order of the periodic networks ``src.networks[picks]``, per dims;
    a network whose dims the input size does not fit gets an error row."""
    parts, errors = [], []
    units = {i: sizes is not None and unit_by_unit(src.networks[i]) for i in picks}
    for dims, unit in sorted({(src.networks[i].dims, units[i]) for i in picks}):
        group = [i for i in picks if (src.networks[i].dims, units[i]) == (dims, unit)]
        nets = [src.networks[i] for i in group]
        where = [Location(src.label, src.index[i], src.networks[i].name) for i in group]
        try:
            cols, net, nodes = group_columns(nets, where, sizes, per_layer, analysis)
        except SpecError as err:
            errors += [(src.index[i], src.networks[i].name, f"{w}: {err}")
                       for i, w in zip(group, where, strict=True)]
            continue
        index = np.asarray([src.index[i] for i in group], np.int64)[net]
        cols["name"] = (np.array([n.name for n in nets], dtype=object)[net], None)
        if per_layer:
            cols["layer"] = (nodes - 1, None)
            cols["layer_name"] = (np.array([nets[j].layers[k - 1].name for j, k in zip(
                net, nodes, strict=True)], dtype=object), None)
            cols["op"] = (np.array([nets[j].layers[k - 1].op for j, k in zip(
                net, nodes, strict=True)], dtype=object), None)
        parts.append((cols, index * LAYER_SCALE + nodes if per_layer else index))
    return parts, errors


def _concat_columns(parts: list[tuple[dict, np.ndarray]]):
    """One column dict (and order) from several; a column missing from a part is null
    there."""
    keys = list(dict.fromkeys(k for cols, _ in parts for k in cols))
    merged = {}
    for key in keys:
        values, masks = [], []
        for cols, order in parts:
            n = len(order)
            v, m = cols.get(key, (None, None))
            if v is None:
                kind = next(c[key][0] for c, _ in parts if key in c)
                v = np.full(n, None, object) if np.asarray(kind).dtype == object else \
                    np.zeros(n, np.asarray(kind).dtype)
                m = None if v.dtype == object else np.ones(n, bool)
            values.append(np.asarray(v))
            masks.append(np.zeros(n, bool) if m is None else np.asarray(m, bool))
        joined = np.concatenate([v.astype(object) if any(x.dtype == object for x in values)
                                 else v for v in values])
        merged[key] = (joined, None if joined.dtype == object else np.concatenate(masks))
    return merged, np.concatenate([order for _, order in parts])


def _integer_sources(src: Source, rest: list[int]) -> list[Source]:
    """What the integer kernel computes: the networks ``rest`` (possibly none: an empty
    part declares every column) and the plain specs read column-wise."""
    found = []
    if rest or src.plain is None:
        found.append(Source(src.label, [src.networks[i] for i in rest],
                            [src.index[i] for i in rest], [], src.total))
    if src.plain is not None:
        found.append(Source(src.label, [], src.plain_index, [], src.total, src.plain))
    return found


def _misfits(part: Source, err: SpecError) -> list[tuple[int, str, str]]:
    """An error entry for each spec of ``part``: the input size does not fit it."""
    return [(i, name, f"{Location(part.label, i, name)}: {err}") for i, name in part.parsed()]


def _traced_elsewhere(src: Source, sizes) -> Source:
    """``src`` with its networks imported for another input size (:func:`size_misfit`)
    among its errors."""
    misfits = {i: why for i, net in enumerate(src.networks) if (why := size_misfit(net, sizes))}
    if not misfits:
        return src
    kept = [i for i in range(len(src.networks)) if i not in misfits]
    errors = [(src.index[i], net.name, f"{Location(src.label, src.index[i], net.name)}: {why}")
              for i, why in misfits.items() for net in [src.networks[i]]]
    return replace(src, networks=[src.networks[i] for i in kept],
                   index=[src.index[i] for i in kept], errors=[*src.errors, *errors])


def _table(src: Source, sizes, per_layer: bool, chunk, progress: bool, analysis):
    """Columns and order for one source: the integer kernel computes the 2-D networks of
    integer ops, the periodic program the rest (:mod:`rfsearch.periodic`); a network the
    input size does not fit (a DxHxW size for a 2-D network, another size than the one it
    was imported for) gets an error row."""
    src = _traced_elsewhere(src, sizes)
    if src.batch is not None:  # a chain table: 2-D
        try:
            size2 = size_for(sizes, 2)
        except SpecError as err:  # a DxHxW size: an error row each, as for other specs
            failed = Source(src.label, [], [], [*src.errors, *_misfits(src, err)], src.total)
            return _table(failed, sizes, per_layer, chunk, progress, analysis)
        return _source_table(src, size2, per_layer, chunk, progress, analysis)
    picks = [i for i, net in enumerate(src.networks) if net.periodic]
    rest = [i for i, net in enumerate(src.networks) if not net.periodic]
    parts, errors = _periodic_rows(src, picks, sizes, per_layer, analysis) if picks else ([], [])
    integer = _integer_sources(src, rest)
    size2 = None
    try:
        size2 = size_for(sizes, 2) if rest or src.plain is not None else None
    except SpecError as err:
        errors += [e for part in integer for e in _misfits(part, err)]
        integer = _integer_sources(Source(src.label, [], [], [], src.total), [])
    if not parts and not errors and len(integer) == 1:  # the common case: one kernel run
        only = integer[0]
        only.errors = src.errors
        return _source_table(only, size2, per_layer, chunk, progress, analysis)
    parts[:0] = [_source_table(part, size2, per_layer, chunk, progress, analysis)
                 for part in integer]
    cols, order = _concat_columns(parts)
    failed = Source(src.label, [], [], [*src.errors, *errors], src.total)
    if failed.errors:
        cols, order = _with_error_rows(cols, failed, order, LAYER_SCALE if per_layer else 1)
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


def _ratio(cols: dict, size):
    """rf_ratio (values, null mask) from the rf columns."""
    (h, hm), (w, wm) = cols["rf_h"], cols["rf_w"]
    ratio = rf_ratio(h, w, size)
    return np.nan_to_num(ratio), hm | wm | np.isnan(ratio)


def _layer_rows(ctx: Context, raw: Raw, src: Source, found=None):
    """Long table: one row per (network, layer); a layer is invalid when it or an input is."""
    batch = ctx.batch
    node = np.arange(batch.depth)[:, None]  # [L, 1]
    live = (node >= 1) & (node < batch.length[None, :])  # [L, N]
    net, nodes = np.nonzero(live.T)  # network-major order
    layers = {k: v[nodes, :, net].T for k, v in raw.layers.items()}  # [2, R]
    overflow = ((layers["flags"] & R.OVERFLOW) != 0).any(axis=0)
    fault = layers["fault"].min(axis=0)
    messages = messages_for(ctx, net, fault, overflow)
    cols = _network_columns(layers, (fault == R.NO_FAULT) & ~overflow)
    cols["name"] = (arrow_names(batch.names[net]), None)
    cols["layer"] = (nodes - 1, None)
    if batch.layer_names is not None:
        cols["layer_name"] = (np.array([batch.layer_names[i][j - 1] for i, j in zip(
            net, nodes, strict=True)], dtype=object), None)
        cols["op"] = (np.array([batch.layer_ops[i][j - 1] for i, j in zip(
            net, nodes, strict=True)], dtype=object), None)
    else:
        cols["layer_name"] = (np.char.add(CHAIN_LAYER, (nodes - 1).astype(str)).astype(object),
                              None)
        cols["op"] = (op_names(batch.op[net, nodes]), None)
    cols["error"] = (messages, None)
    if found is not None:
        for key in ANALYSIS_LAYER:
            values, mask = found.layer.get(key, (np.zeros_like(live), np.ones_like(live)))
            cols[key] = (values[nodes, net], mask[nodes, net])
    order = ctx.spec_index[net] * LAYER_SCALE + nodes  # by spec, then by layer
    if src.errors:
        cols, order = _with_error_rows(cols, src, order, LAYER_SCALE)
    return cols, order


def _recorded_size(src: Source, sizes):
    """The input size a table records: fitted to its networks' axes where they agree
    (224 is [224, 224] for 2-D networks, [224] for 1-D ones), else as given (one value:
    every axis). Chain tables and plain chain specs are 2-D."""
    dims = {net.dims for net in src.networks} | (
        {2} if src.plain is not None or src.batch is not None or not src.networks else set())
    if sizes is None or len(dims) > 1:
        return sizes
    try:
        return size_for(sizes, dims.pop())
    except SpecError:  # a size these networks do not take: their rows say so
        return sizes


def source_frame(src: Source, sizes, per_layer: bool, chunk_size, progress: bool,
                 options: dict | None) -> pd.DataFrame:
    """One source's rows, in the source's order (``options``: the analysis options, or
    None without analysis)."""
    cols, order = _table(src, sizes, per_layer, chunk_size, progress, options)
    df = frame(cols, per_layer, _recorded_size(src, sizes))
    if options is not None:
        df.attrs["analysis_rule"] = rule(options["exempt_1x1"])
    if len(order) < 2 or (order[1:] >= order[:-1]).all():  # already in the source's order
        return df
    return df.iloc[np.argsort(order, kind="stable")]


def check_chunk_size(chunk_size) -> None:
    """``chunk_size`` (networks per kernel call) is None or a positive integer."""
    if chunk_size is not None and (isinstance(chunk_size, bool)
                                   or not isinstance(chunk_size, int) or chunk_size < 1):
        raise SpecError(f"chunk_size must be a positive integer, got {chunk_size!r}")


def evaluate(specs, *, input_size=None, per_layer: bool = False, progress: bool = False,
             chunk_size: int | None = None, analysis: bool = False,
             exempt_1x1: bool = False) -> pd.DataFrame:
    """Receptive-field geometry of every network in ``specs``, one row each.

    ``specs``: a spec dict, a list of them, a path (.json / .jsonl / .yaml /
    .parquet) or a list of paths, a :class:`~rfsearch.Batch`, or an Arrow table or
    pandas DataFrame of chains (list columns, see :func:`~rfsearch.read_chains`). ``input_size``:
    int, (H, W) or 'HxW'. ``per_layer=True`` returns one row per (network, layer).
    Rows whose spec is bad or whose network is invalid keep a null geometry and a
    one-line ``error``; every other row is computed. See ``rfsearch.table.COLUMNS``.
    ``analysis=True`` adds the resolution-aware columns of :mod:`rfsearch.analysis`
    (``exempt_1x1``: 1x1 layers are never unproductive by the rf_min rule).
    ``chunk_size``: networks per kernel call (memory is bounded by it; chains round it
    down to a multiple of 64); None picks the default for the batch
    (:func:`rfsearch.driver.default_chunk`).
    """
    sizes = parse_input_sizes(input_size)
    check_chunk_size(chunk_size)
    tables = []
    options = {"exempt_1x1": bool(exempt_1x1)} if analysis else None
    for src in resolve(specs, input_size):
        own = sizes if sizes is not None else src.size  # a fixed-size model file's own
        tables.append(source_frame(src, own, per_layer, chunk_size, progress, options))
    df = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    df = df.reset_index(drop=True)
    df.attrs.update(tables[0].attrs)
    if any(t.attrs["input_size"] != df.attrs["input_size"] for t in tables):
        df.attrs["input_size"] = None  # model files of different sizes: each row's own
    return df
