"""Result columns of periodic networks (1-D, 3-D, resampling, crops, ceil-mode pools).

Runs :func:`rfsearch.periodic.propagate` in chunks and reads the columns off the output
node (or every node, per layer): rf is the largest box over the units of one period,
the stride is the fraction K / T in lowest terms (``stride_*`` over ``stride_den_*``),
the padding is minus the box start of unit 0. rf_min, the smallest box of a unit along
one input-to-output path, is read off the period of a chain; a DAG's paths are
enumerated and run as chains of their own (up to :data:`MAX_PATHS`, else null).
"""

from __future__ import annotations

from dataclasses import replace

import jax
import numpy as np

from . import recurrence as R
from .axes import AXES, size_for
from .errors import Location
from .faults import overflow_problem
from .periodic import MAX_PERIOD, encode_periodic, propagate
from .spec import Layer, Network

CHUNK = 1024  # networks per call
MAX_PATHS = 64  # a DAG's rf_min is null above this many input-to-output paths
GEOMETRY = ("rf", "rf_min", "stride", "stride_den", "padding", "out")


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def run(networks: list[Network], size) -> tuple[dict, np.ndarray]:
    """Every node's state (host arrays, [L, ...] fields, N last) of networks of one dims,
    and the networks whose period would exceed MAX_PERIOD ([N] bool)."""
    batch = encode_periodic(networks)
    too_long = batch.period > MAX_PERIOD
    P = _pow2(min(int(batch.period.max()), MAX_PERIOD))
    dims = networks[0].dims
    params = {"kind": batch.kind, "same": batch.same, "ceil": batch.ceil, **batch.fields,
              "a0": batch.a0, "b0": batch.b0}
    sized = size is not None
    shape = np.asarray(size if sized else (0,) * dims, np.int64)
    parts = []
    with jax.enable_x64(True):
        for lo in range(0, len(networks), CHUNK):
            cut = slice(lo, lo + CHUNK)
            chunk = {k: v[..., cut] for k, v in params.items()}
            parts.append(jax.device_get(propagate(chunk, batch.preds[..., cut], shape, P=P,
                                                  sized=sized)))
    states = {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
    return states, too_long


def _take(states: dict, nodes: np.ndarray) -> dict:
    """The states of node ``nodes[j]`` of network j: fields [..., N]."""
    cols = np.arange(len(nodes))
    return {k: v[nodes, ..., cols].transpose(*range(1, v.ndim - 1), 0) if v.ndim > 2
            else v[nodes, cols] for k, v in states.items()}


def output_states(networks: list[Network], size) -> dict:
    """The output node's state of each network (fields [..., N])."""
    states, _ = run(networks, size)
    return _take(states, np.array([net.output for net in networks]))


def geometry(state: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-axis columns (values [A, N], null mask [A, N]) of node states."""
    T, K = state["T"], state["K"]
    inside = np.arange(state["lo"].shape[1])[None, :, None] < T[:, None, :]
    span = np.where(inside, state["hi"] - state["lo"], 0)
    smallest = np.where(inside, state["hi"] - state["lo"], np.iinfo(np.int64).max)
    g = np.gcd(K, T)
    flags = state["flags"]
    unbounded, known = (flags & R.UNBOUNDED) != 0, (flags & R.KNOWN) != 0
    no = np.zeros(T.shape, bool)
    return {"rf": (span.max(axis=1) + 1, unbounded),
            "rf_min": (smallest.min(axis=1) + 1, unbounded.copy()),
            "stride": (K // g, no), "stride_den": (T // g, no),
            "padding": (-state["lo"][:, 0], unbounded | ~known),
            "out": (state["size"], state["size"] <= 0)}


def paths(net: Network) -> list[list[int]] | None:
    """Input-to-output paths of ``net`` as lists of node indices (None above MAX_PATHS)."""
    found: list[list[int]] = []
    stack = [[net.output]]
    while stack:
        path = stack.pop()
        if path[-1] == 0:
            found.append(path[::-1][1:])
            if len(found) > MAX_PATHS:
                return None
            continue
        stack.extend([*path, i] for i in net.layers[path[-1] - 1].inputs)
    return found


def path_chain(net: Network, nodes: list[int]) -> Network:
    """One path of ``net`` as a chain (its merges become identities)."""
    layers = [replace(net.layers[node - 1], inputs=(i,)) for i, node in enumerate(nodes)]
    return Network(f"{net.name}/path", tuple(layers), len(layers), net.dims)


def rf_min_of_paths(networks: list[Network], size) -> tuple[np.ndarray, np.ndarray]:
    """rf_min (values [A, N], null mask [A, N]) of DAGs: the least over their paths."""
    dims, n = networks[0].dims, len(networks)
    values, null = np.zeros((dims, n), np.int64), np.ones((dims, n), bool)
    chains, owner = [], []
    for j, net in enumerate(networks):
        found = paths(net) if not net.is_chain else None
        for nodes in found or ():
            chains.append(path_chain(net, nodes))
            owner.append(j)
    if not chains:
        return values, null
    states, _ = run(chains, size)
    out = geometry(_take(states, np.array([c.output for c in chains])))
    owner = np.array(owner)
    for j in np.unique(owner):
        mine = owner == j
        values[:, j] = out["rf_min"][0][:, mine].min(axis=1)
        null[:, j] = out["rf_min"][1][:, mine].any(axis=1)
    return values, null


def message(net: Network, where: Location, fault: int, overflow: bool, size) -> str | None:
    """The ``error`` of one network (None when valid)."""
    if fault == R.NO_FAULT and not overflow:
        return None
    if fault == R.NO_FAULT:
        return f"{where}: {overflow_problem()}"
    code, node = fault % R.FAULT_CODES, fault // R.FAULT_CODES
    layer: Layer = net.layers[node - 1]
    at = replace(where, layer_index=node - 1, layer_name=layer.name)
    shown = "x".join(map(str, size)) if size is not None else "unknown"
    problem = {R.ERR_EMPTY: f"output is smaller than 1 pixel at input size {shown}",
               R.ERR_JUMP: "inputs have different effective strides",
               R.ERR_SIZE: "inputs have different feature-map sizes"}[int(code)]
    return f"{at}: {problem}"



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


def group_columns(networks: list[Network], where: list[Location], sizes, per_layer: bool
                  ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Columns of networks of one dims: (cols, network of each row, node of each row)."""
    dims = networks[0].dims
    size = size_for(sizes, dims)
    states, too_long = run(networks, size)
    L = states["T"].shape[0]
    if per_layer:
        node = np.arange(L)[:, None]
        live = (node >= 1) & (node <= np.array([len(n.layers) for n in networks])[None, :])
        net, nodes = np.nonzero(live.T)
    else:
        net, nodes = np.arange(len(networks)), np.array([n.output for n in networks])
    picked = _take({k: v[..., net] for k, v in states.items()}, nodes)
    geo = geometry(picked)
    faults = picked["fault"].min(axis=0)
    overflow = ((picked["flags"] & R.OVERFLOW) != 0).any(axis=0) | too_long[net]
    errors = np.array([message(networks[j], where[j], int(f), bool(o), size)
                       if not too_long[j] else f"{where[j]}: needs a period longer than "
                       f"{MAX_PERIOD} output units" for j, f, o in zip(net, faults, overflow,
                                                                         strict=True)],
                      dtype=object)
    bad = errors != None  # noqa: E711
    dag = np.array([not networks[j].is_chain for j in net])
    if not per_layer and dag.any():
        values, null = rf_min_of_paths([networks[j] for j in net[dag]], size)
        geo["rf_min"][0][:, dag], geo["rf_min"][1][:, dag] = values, null
    elif per_layer:
        geo["rf_min"] = (geo["rf_min"][0], geo["rf_min"][1] | dag[None, :])
    cols = _axis_columns(geo, dims, bad)
    aligned, decided = R.alignment(picked["flags"])
    cols["aligned"] = (aligned, ~(~bad & decided))
    cols["error"] = (errors, None)
    return cols, net, nodes
