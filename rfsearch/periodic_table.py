"""Result columns of periodic networks (1-D, 3-D, resampling, crops, ceil-mode pools).

Runs the periodic program (:mod:`rfsearch.periodic_eval`) on networks of one dims and
reads the table's columns off the output node, or every node with ``per_layer``: the
geometry, rf_min of DAGs (:mod:`rfsearch.shortest`), alignment, the error of each row,
and the analysis columns (:func:`rfsearch.analysis.judge`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from . import recurrence as R
from .analysis import Analysis, Layers, judge, rf_ratio_axes
from .axes import AXES, size_for
from .errors import Location
from .faults import overflow_problem
from .periodic import PeriodicBatch
from .periodic_eval import layer_geometry, run
from .reads import RESAMPLE, WHOLE
from .shortest import dag_rf_min
from .spec import Layer, Network


def message(net: Network, where: Location, fault: int, overflow: bool, size,
            overflow_node: int = 0) -> str | None:
    """The ``error`` of one network (None when valid); ``overflow_node``: the first node
    whose geometry left the exact range."""
    if fault == R.NO_FAULT and not overflow:
        return None
    if fault == R.NO_FAULT:
        return f"{_at(net, where, overflow_node) if overflow_node else where}: " \
            f"{overflow_problem()}"
    code, node = fault % R.FAULT_CODES, fault // R.FAULT_CODES
    at = _at(net, where, node)
    shown = "x".join(map(str, size)) if size is not None else "unknown"
    problem = {R.ERR_EMPTY: f"output is smaller than 1 pixel at input size {shown}",
               R.ERR_JUMP: "inputs have different effective strides",
               R.ERR_SIZE: "inputs have different feature-map sizes"}[int(code)]
    return f"{at}: {problem}"



def _at(net: Network, where: Location, node: int) -> Location:
    layer: Layer = net.layers[node - 1]
    return replace(where, layer_index=node - 1, layer_name=layer.name)


def _axis_columns(geo: dict, dims: int, bad: np.ndarray) -> dict:
    """Columns key_d / key_h / key_w from per-axis geometry ([A, R] arrays); axes the
    network lacks are null."""
    cols = {}
    for key, (values, mask) in geo.items():
        for axis in AXES[3] if dims == 3 else AXES[2]:  # _d only for 3-D networks
            if axis in AXES[dims]:
                a = AXES[dims].index(axis)
                cols[f"{key}_{axis}"] = (values[a], mask[a] | bad)
            else:
                cols[f"{key}_{axis}"] = (np.zeros(bad.shape, np.int64), np.ones(bad.shape, bool))
    return cols


def _layers(batch: PeriodicBatch, states: dict, geo: dict, live: np.ndarray,
            valid: np.ndarray, networks: list[Network]) -> Layers:
    """What :func:`rfsearch.analysis.judge` reads, from every node's state and geometry."""
    resample = (batch.kind == RESAMPLE)[:, None, :]
    span = (batch.b0 - batch.a0).max(axis=2) + 1  # [L, A, N]: the units one output reads
    rf_min, null = geo["rf_min"]
    unbounded = (states["flags"] & R.UNBOUNDED) != 0
    counted = valid & (batch.kind != WHOLE) & ~unbounded.any(axis=1)
    axes = AXES[networks[0].dims]
    return Layers(live, valid, counted, rf=geo["rf"][0], rf_min=rf_min, num=geo["stride"][0],
                  den=geo["stride_den"][0],
                  k_eff=np.where(resample, span, batch.fields["k_eff"]), preds=batch.preds,
                  name=lambda i, node: networks[i].layers[node - 1].name,
                  mixed=((states["flags"] & R.MIXED) != 0).any(axis=1),
                  known=~null.any(axis=1),
                  axis=axes.index("h") if "h" in axes else 0)


def _errors(networks, where, net, faults, overflow, refused, size,
            first_overflow) -> np.ndarray:
    """The ``error`` of each row (None when valid)."""
    return np.array([message(networks[j], where[j], int(f), bool(o), size,
                             int(first_overflow[j]))
                     if refused[j] is None else f"{where[j]}: {refused[j]}"
                     for j, f, o in zip(net, faults, overflow, strict=True)], dtype=object)


def _analysis_columns(found: Analysis, cols: dict, net, nodes, bad, size, per_layer: bool):
    """Add the analysis columns of the picked rows to ``cols``."""
    if per_layer:
        for key, (values, mask) in found.layer.items():
            cols[key] = (values[nodes, net], mask[nodes, net])
        return
    for key, (values, mask) in found.network.items():
        mask = mask | bad
        cols[key] = ((np.where(mask, None, values), None) if values.dtype == object
                     else (values, mask))
    rf = np.stack([cols[f"rf_{a}"][0] for a in AXES[len(size)]]) if size else None
    ratio = rf_ratio_axes(rf, size) if size else np.full(len(net), np.nan)
    cols["rf_ratio"] = (np.nan_to_num(ratio), bad | np.isnan(ratio))


def group_columns(networks: list[Network], where: list[Location], sizes, per_layer: bool,
                  analysis: dict | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Columns of networks of one dims: (cols, network of each row, node of each row);
    ``analysis``: the options of :func:`rfsearch.analysis.judge`, or None."""
    dims = networks[0].dims
    size = size_for(sizes, dims)
    batch, states, refused = run(networks, size)
    too_long = refused != None  # noqa: E711
    L = states["T"].shape[0]
    geo = layer_geometry(states)  # [L, A, N]
    dag = np.array([not n.is_chain for n in networks])
    if dag.any():
        values, null = dag_rf_min(networks, batch, states, size)
        geo["rf_min"][0][:, :, dag], geo["rf_min"][1][:, :, dag] = values[..., dag], null[..., dag]
    node = np.arange(L)[:, None]
    live = (node >= 1) & (node <= np.array([len(n.layers) for n in networks])[None, :])
    if per_layer:
        net, nodes = np.nonzero(live.T)
    else:
        net, nodes = np.arange(len(networks)), np.array([n.output for n in networks])
    picked = {k: (v[nodes, :, net].T, m[nodes, :, net].T) for k, (v, m) in geo.items()}
    faults = states["fault"][nodes, :, net].min(axis=1)
    flags = states["flags"][nodes, :, net].T
    overflow = ((flags & R.OVERFLOW) != 0).any(axis=0) | too_long[net]
    first_overflow = np.argmax(((states["flags"] & R.OVERFLOW) != 0).any(axis=1), axis=0)
    errors = _errors(networks, where, net, faults, overflow, refused, size, first_overflow)
    bad = errors != None  # noqa: E711
    cols = _axis_columns(picked, dims, bad)
    aligned, decided = R.alignment(flags)
    cols["aligned"] = (aligned, ~(~bad & decided))
    cols["error"] = (errors, None)
    if analysis is not None:
        valid = live & (states["fault"] == R.NO_FAULT).all(axis=1) & ~too_long[None, :] & ~(
            (states["flags"] & R.OVERFLOW) != 0).any(axis=1)
        found = judge(_layers(batch, states, geo, live, valid, networks), size, **analysis)
        _analysis_columns(found, cols, net, nodes, bad, size, per_layer)
    return cols, net, nodes
