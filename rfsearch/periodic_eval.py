"""The periodic program in chunks, and the geometry read off its states.

:func:`run` runs :func:`rfsearch.periodic.propagate` over networks of one dims in chunks
sized to bound memory; :func:`geometry` reads the columns off node states: rf is the
largest box over the units of one period, the stride is the fraction K / T in lowest
terms (``stride_*`` over ``stride_den_*``), the padding is minus the box start of unit 0,
and rf_min the smallest box of a unit (exact for chains; DAGs: :mod:`rfsearch.shortest`).
"""

from __future__ import annotations

import jax
import numpy as np

from . import recurrence as R
from .periodic import MAX_PERIOD, PeriodicBatch, encode_periodic, propagate
from .spec import Network

CHUNK = 1024  # most networks per call
BUDGET = 1 << 23  # elements of the largest intermediate of a call ([A, P, P, N], int64)
GEOMETRY = ("rf", "rf_min", "stride", "stride_den", "padding", "out")


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def chunk_for(dims: int, P: int, n: int) -> int:
    """Networks per call: at most CHUNK, and few enough that the hull's [A, P, P, N]
    intermediate stays within BUDGET elements."""
    return max(1, min(CHUNK, n, BUDGET // (dims * P * P)))


def run(networks: list[Network], size) -> tuple[PeriodicBatch, dict, np.ndarray]:
    """The encoded networks (all of one dims), every node's state (host arrays, [L, ...]
    fields, N last) and the networks whose period would exceed MAX_PERIOD ([N] bool)."""
    batch = encode_periodic(networks)
    too_long = batch.period > MAX_PERIOD
    P = _pow2(min(int(batch.period.max()), MAX_PERIOD))
    dims = networks[0].dims
    params = {"kind": batch.kind, "same": batch.same, "ceil": batch.ceil, **batch.fields,
              "a0": batch.a0, "b0": batch.b0}
    sized = size is not None
    shape = np.asarray(size if sized else (0,) * dims, np.int64)
    parts, step = [], chunk_for(dims, P, len(networks))
    with jax.enable_x64(True):
        for lo in range(0, len(networks), step):
            cut = slice(lo, lo + step)
            chunk = {k: v[..., cut] for k, v in params.items()}
            parts.append(jax.device_get(propagate(chunk, batch.preds[..., cut], shape, P=P,
                                                  sized=sized)))
    states = {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
    return batch, states, too_long


def _take(states: dict, nodes: np.ndarray) -> dict:
    """The states of node ``nodes[j]`` of network j: fields [..., N]."""
    cols = np.arange(len(nodes))
    return {k: v[nodes, ..., cols].transpose(*range(1, v.ndim - 1), 0) if v.ndim > 2
            else v[nodes, cols] for k, v in states.items()}


def output_states(networks: list[Network], size) -> dict:
    """The output node's state of each network (fields [..., N])."""
    _, states, _ = run(networks, size)
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


def layer_geometry(states: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`geometry` of every node: values and null masks [L, A, N]."""
    L, n = states["T"].shape[0], states["T"].shape[-1]
    flat = {k: np.moveaxis(v, 0, -2).reshape(*v.shape[1:-1], L * n) for k, v in states.items()}
    return {key: tuple(x.reshape(-1, L, n).transpose(1, 0, 2) for x in pair)
            for key, pair in geometry(flat).items()}
