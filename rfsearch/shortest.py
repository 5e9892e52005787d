"""rf_min of periodic DAGs: the smallest box of a unit along one input-to-output path.

The union the periodic program computes at a merge says nothing about single paths, and
a DAG can have exponentially many. Two facts keep it exact and small:

* A node whose jump is an integer (period ``T = 1``, as are all its ancestors: a *flat*
  node) has, along each path, boxes that are translates ``[u K + c, u K + c + r - 1]``
  of one box. Any later layer grows every such path by the same amount, so per axis
  only the smallest ``r`` matters, and the article's recurrence is exact there:
  ``r(v) = min over inputs r(m) + span(v) K(m)`` (``span``: the input units one
  output unit reads, minus one).
* Elsewhere, paths are enumerated backwards from the output, following at a flat node
  only the inputs with the smallest ``r`` on some axis (they contain every other
  path's boxes up to a shift, so nothing downstream can be smaller). Each path runs as
  a chain of its own; a node's rf_min is the least over the paths through it.

Paths end at the output and at every node nothing reads (an FPN's other levels), so
every node lies on one. A network with more than :data:`MAX_PATHS` such paths gets a
null rf_min at its non-flat nodes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .periodic import PeriodicBatch
from .periodic_eval import distinct, layer_geometry, run
from .reads import RESAMPLE, WHOLE
from .spec import Network

MAX_PATHS = 64  # a DAG's non-flat rf_min is null above this many enumerated paths
BIG = np.iinfo(np.int64).max


def flat_recurrence(batch: PeriodicBatch, states: dict) -> tuple[np.ndarray, ...]:
    """Per node (node-major): flat [L, N], the recurrence's r [L, A, N] (meaningful at
    flat nodes) and the inputs holding the smallest r on some axis, best [L, M, N]."""
    L, A, n = states["T"].shape
    cols = np.arange(n)
    resample = (batch.kind == RESAMPLE) & (batch.fields["D"] > 1).any(axis=1)
    integer = (states["T"] == 1).all(axis=1) & (batch.kind != WHOLE) & ~resample  # [L, N]
    span = np.where((batch.kind == RESAMPLE)[:, None, :], batch.b0[:, :, 0] - batch.a0[:, :, 0],
                    batch.fields["k_eff"] - 1)  # [L, A, N]
    flat, r = np.zeros((L, n), bool), np.ones((L, A, n), np.int64)
    best = np.zeros(batch.preds.shape, bool)
    flat[0] = True
    for v in range(1, L):  # node order; vectorised over networks
        preds = batch.preds[v]  # [M, N]
        has, idx = preds >= 0, np.clip(preds, 0, None)
        theirs = np.where(has[:, None], r[idx, :, cols[None, :]].transpose(0, 2, 1), BIG)
        low = theirs.min(axis=0)  # [A, N]
        best[v] = has & (theirs == low[None]).any(axis=1)
        flat[v] = integer[v] & (flat[idx, cols[None, :]] | ~has).all(axis=0)
        r[v] = np.where(flat[v], low + span[v] * states["K"][idx[0], :, cols].T, 1)
    return flat, r, best


def sinks(net: Network) -> list[int]:
    """The output and every node no other node reads (every node lies on a path to one)."""
    read = {m for layer in net.layers for m in layer.inputs}
    return [net.output, *(v for v in range(1, len(net.layers) + 1)
                          if v not in read and v != net.output)]


def paths(net: Network, follow) -> list[list[int]] | None:
    """Paths of ``net`` from the input to its sinks as lists of node indices, taking at
    node v only the inputs ``follow(v)`` (None above MAX_PATHS)."""
    found: list[list[int]] = []
    stack = [[v] for v in sinks(net)]
    while stack:
        path = stack.pop()
        if path[-1] == 0:
            found.append(path[::-1][1:])
            if len(found) > MAX_PATHS:
                return None
            continue
        stack.extend([*path, i] for i in follow(path[-1]))
    return found


def path_chain(net: Network, nodes: list[int]) -> Network:
    """One path of ``net`` as a chain (its merges become identities)."""
    layers = [replace(net.layers[node - 1], inputs=(i,)) for i, node in enumerate(nodes)]
    return Network(f"{net.name}/path", tuple(layers), len(layers), net.dims)


def _enumerate(networks: list[Network], flat, best):
    """The representative paths of every network: (chains, owner network and node of each
    chain step, its chain and position), and the networks with too many paths."""
    chains, owner, nodes, steps, too_many = [], [], [], [], []
    for j, net in enumerate(networks):
        def follow(v, j=j, net=net):
            inputs = net.layers[v - 1].inputs
            return [m for slot, m in enumerate(inputs) if not flat[v, j] or best[v, slot, j]]
        found = paths(net, follow)
        too_many.append(found is None)
        for c, path in enumerate(found or (), start=len(chains)):
            chains.append(path_chain(net, path))
            owner += [j] * len(path)
            nodes += path
            steps += [(c, i + 1) for i in range(len(path))]
    return chains, np.array(owner, int), np.array(nodes, int), np.array(steps, int).reshape(
        -1, 2), np.array(too_many)


def dag_rf_min(networks: list[Network], batch: PeriodicBatch, states: dict, size
               ) -> tuple[np.ndarray, np.ndarray]:
    """rf_min [L, A, N] of every node of the DAGs ``networks`` (encoded as ``batch``,
    propagated as ``states``) and its null mask."""
    L, A, _ = states["T"].shape
    flat, r, best = flat_recurrence(batch, states)
    unique, inverse = distinct(networks)  # equal geometry: the same paths
    first = np.unique(inverse, return_index=True)[1]
    chains, owner, nodes, steps, too_many = _enumerate(unique, flat[:, first],
                                                       best[..., first])
    n = len(unique)
    values, null = np.full((L, A, n), BIG), np.zeros((L, A, n), bool)
    if chains:
        _, found, _ = run(chains, size, units=bool(states["origin"].any()))
        rmin, rnull = layer_geometry(found)["rf_min"]  # [Lc, A, C]
        c, i = steps.T
        for a in range(A):
            np.minimum.at(values[:, a], (nodes, owner), rmin[i, a, c])
            np.logical_or.at(null[:, a], (nodes, owner), rnull[i, a, c])
    values, null, too_many = values[..., inverse], null[..., inverse], too_many[inverse]
    values = np.where(flat[:, None], r, values)
    null = np.where(flat[:, None], False, null | (values == BIG) | too_many[None, None, :])
    return values, null
