"""The periodic program in chunks, and the geometry read off its states.

:func:`run` runs :func:`rfsearch.periodic.propagate` over networks of one dims in chunks
sized to bound memory; :func:`geometry` reads the columns off node states: rf is the
largest box over the units of one period, the stride is the fraction K / T in lowest
terms (``stride_*`` over ``stride_den_*``), the period the least number of units after
which the boxes repeat (:func:`least_period`), the padding is minus the box start of unit
0, and rf_min the smallest box of a unit (exact for chains; DAGs: :mod:`rfsearch.shortest`).
"""

from __future__ import annotations

import math
from dataclasses import fields

import jax
import numpy as np

from . import native
from . import recurrence as R
from .periodic import MAX_PERIOD, PeriodicBatch, encode_periodic, pow2_bucket, propagate
from .reads import RESAMPLE, WHOLE, period_factor
from .spec import Network

CHUNK = 1024  # most networks per call
BUDGET = 1 << 23  # elements of the largest intermediate of a call ([A, R, P, N], int64)
GEOMETRY = ("rf", "rf_min", "stride", "stride_den", "period", "padding", "out")


def chunk_for(dims: int, P: int, reads: int, n: int) -> int:
    """Networks per call: at most CHUNK, and few enough that the hull's [A, R, P, N]
    intermediate stays within BUDGET elements."""
    return max(1, min(CHUNK, n, BUDGET // (dims * P * reads)))


def unit_by_unit(net: Network) -> bool:
    """Whether ``net`` is evaluated unit by unit when an input size is given: its
    ``align_corners`` reads depend on the map, or its period may exceed MAX_PERIOD."""
    if any(layer.align_corners for layer in net.layers):
        return True
    return any(math.prod(period_factor(la, a) for la in net.layers) > MAX_PERIOD
               for a in range(net.dims))


def _aligned_corners(networks: list[Network]) -> np.ndarray:
    """[N] bool: the networks with an ``align_corners`` upsample (reads depend on sizes)."""
    return np.array([any(layer.align_corners for layer in net.layers) for net in networks])


def program(rows: int):
    """The periodic program for ``rows`` networks: the compiled CPU kernel where the
    native library has it (built, or worth building: :func:`rfsearch.native.available`),
    else XLA's :func:`rfsearch.periodic.propagate`. Both compute the same states."""
    return native.periodic_states if native.available(rows) else propagate


def _propagate(batch: PeriodicBatch, size, P: int, M: int = 0) -> dict:
    """Every node's state, chunk by chunk (host arrays, [L, ...] fields, N last)."""
    dims, n = batch.fields["k_eff"].shape[1:]
    params = {"kind": batch.kind, "same": batch.same, "ceil": batch.ceil, **batch.fields,
              "a0": batch.a0, "b0": batch.b0}
    sized = size is not None
    shape = np.asarray(size if sized else (0,) * dims, np.int64)
    whole = (batch.kind == WHOLE).any() and not M  # periodic whole-map reads span a period
    reads = P if whole else min(P, batch.reads) if not M else batch.reads
    parts, step, states_of = [], chunk_for(dims, P, reads, n), program(n)
    with jax.enable_x64(True):
        for lo in range(0, n, step):
            cut = slice(lo, lo + step)
            chunk = {k: v[..., cut] for k, v in params.items()}
            parts.append(jax.device_get(states_of(chunk, batch.preds[..., cut], shape, P=P,
                                                  sized=sized, M=M, R_=reads)))
    states = {k: np.concatenate([p[k] for p in parts], axis=-1) for k in parts[0]}
    states["origin"] = np.full(states["T"].shape, M, np.int64)
    return states


def _enough(networks: list[Network], states: dict, M: int) -> bool:
    """Unit by unit: whether every real unit of every valid node has a known box."""
    L, _, P, _ = states["known"].shape
    unit = np.arange(P)[None, None, :, None] - M
    real = (unit >= 0) & (unit < states["size"][:, :, None, :])
    node = np.arange(L)[:, None]
    live = (node <= np.array([len(net.layers) for net in networks])[None, :]) & (
        states["fault"] == R.NO_FAULT).all(axis=1)
    return bool((states["known"] | ~real).all(axis=(1, 2))[live].all())


def _read_bounds(batch: PeriodicBatch) -> tuple[np.ndarray, ...]:
    """(D, N, c_lo, c_hi) [L, A, N]: every layer reads, for output unit y, units within
    ``[(y N + c_lo) / D, (y N + c_hi) / D]`` (y = qD + φ: ``a(y) D = a0[φ] D - φ N + y N``;
    windows: D = 1, N = s, a0 = -p, b0 = a0 + k_eff - 1, 'same' padding bounded by the
    window)."""
    f = batch.fields
    window = (batch.kind != RESAMPLE)[:, None, :]
    D, N = np.where(window, 1, f["D"]), f["s"]
    phi = np.arange(batch.a0.shape[2])[None, None, :, None]
    inside = phi < D[:, :, None]
    big = np.iinfo(np.int64).max // 4
    c_lo = np.where(inside, batch.a0 * D[:, :, None] - phi * N[:, :, None], big).min(axis=2)
    c_hi = np.where(inside, batch.b0 * D[:, :, None] - phi * N[:, :, None], -big).max(axis=2)
    pb = np.where(batch.same[:, None, :] != 0, f["k_eff"] - 1, f["pb"])
    return D, N, np.where(window, -pb, c_lo), np.where(window, f["k_eff"] - 1 - pb, c_hi)


def _margin(batch: PeriodicBatch, sizes: np.ndarray) -> int:
    """Unit by unit: the virtual units each side of a map that the tables need, so that
    every real unit of every node is computed from known boxes. Backwards over the nodes
    (vectorised over networks): the units a node needs, read through its layer, are units
    its inputs need (a whole-map layer reads real units only)."""
    L, A, n = sizes.shape
    left, right = np.zeros((L, A, n), np.int64), np.zeros((L, A, n), np.int64)
    D, N, c_lo, c_hi = _read_bounds(batch)
    reads = (batch.kind != WHOLE)[:, None, :]
    cols = np.arange(n)
    for v in range(L - 1, 0, -1):
        first = (-left[v] * N[v] + c_lo[v]) // D[v]  # [A, N]
        last = ((sizes[v] + right[v] - 1) * N[v] + c_hi[v]) // D[v]
        for slot in batch.preds[v]:  # [N]
            has, p = (slot >= 0) & reads[v], np.clip(slot, 0, None)
            left[p, :, cols] = np.maximum(left[p, :, cols], np.where(has, -first, 0).T)
            right[p, :, cols] = np.maximum(right[p, :, cols], np.where(
                has, last - sizes[p, :, cols].T + 1, 0).T)
    return int(max(left.max(), right.max(), 0)) + 1


def _units(networks: list[Network], batch: PeriodicBatch, size) -> tuple[PeriodicBatch, dict]:
    """Unit by unit: sizes first (any period), then the boxes of every map's units and a
    margin of virtual units each side, as wide as the layers read beyond the borders."""
    # [L, A, N]; a map below one unit makes its network an error row (its fault), and
    # is read as one unit here, so that no read table is built from it
    sizes = np.maximum(_propagate(batch, size, P=1)["size"], 1)
    first = np.clip(batch.preds[:, 0, :], 0, None)  # a node's map size is its first input's
    batch = encode_periodic(networks, np.take_along_axis(sizes, first[:, None, :], axis=0))
    M = pow2_bucket(_margin(batch, sizes))  # a power of two: fewer shapes to compile
    while True:  # the margin suffices by construction; widening is a safety net
        states = _propagate(batch, size, pow2_bucket(int(sizes.max()) + 2 * M), M)
        if _enough(networks, states, M) or M > 64 * int(sizes.max()):
            return batch, states
        M *= 2


def distinct(networks: list[Network]) -> tuple[list[Network], np.ndarray]:
    """The distinct networks (equal layers and output: equal geometry; names of networks
    aside) and, per network, the index of its copy among them."""
    seen: dict = {}
    inverse = np.array([seen.setdefault((net.layers, net.output, net.dims), len(seen))
                        for net in networks], np.int64)
    first = np.unique(inverse, return_index=True)[1]
    return [networks[i] for i in first], inverse


def _expand(batch: PeriodicBatch, states: dict, inverse: np.ndarray
            ) -> tuple[PeriodicBatch, dict]:
    """Batch and states of the distinct networks, repeated for every network."""
    def take(v):
        if isinstance(v, dict):
            return {k: take(x) for k, x in v.items()}
        return v[..., inverse] if isinstance(v, np.ndarray) else v

    return PeriodicBatch(**{f.name: take(getattr(batch, f.name)) for f in fields(batch)}), \
        take(states)


def run(networks: list[Network], size, units: bool | None = None
        ) -> tuple[PeriodicBatch, dict, np.ndarray]:
    """The encoded networks (all of one dims), every node's state (host arrays, [L, ...]
    fields, N last; ``origin`` [L, A, N]: 0, or unit by unit the table entry of unit 0) and
    why a network cannot be evaluated ([N] object: None, or a reason). ``units``: evaluate
    unit by unit (default: when some network needs it and the size is known; callers keep
    such networks in batches of their own, :func:`unit_by_unit`, so that no network's rows
    depend on its companions). Networks of equal geometry are computed once."""
    unique, inverse = distinct(networks)
    if len(unique) < len(networks):
        batch, states, refused = run(unique, size, units)
        return (*_expand(batch, states, inverse), refused[inverse])
    batch = encode_periodic(networks)
    corners = _aligned_corners(networks)
    if units is None:  # sizes are needed by align_corners, and make long periods affordable
        units = size is not None and bool((corners | (batch.period > MAX_PERIOD)).any())
    refused = np.array([None] * len(networks), dtype=object)
    if units:
        batch, states = _units(networks, batch, size)
        return batch, states, refused
    for j in range(len(networks)):
        if corners[j]:
            refused[j] = "align_corners=true needs an input size (its reads depend on the map)"
        elif batch.period[j] > MAX_PERIOD:
            refused[j] = (f"needs a period longer than {MAX_PERIOD} output units; give an "
                          "input size to evaluate it unit by unit")
    P = pow2_bucket(min(int(batch.period.max()), MAX_PERIOD))
    return batch, _propagate(batch, size, P), refused


def _take(states: dict, nodes: np.ndarray) -> dict:
    """The states of node ``nodes[j]`` of network j: fields [..., N]."""
    cols = np.arange(len(nodes))
    return {k: v[nodes, ..., cols].transpose(*range(1, v.ndim - 1), 0) if v.ndim > 2
            else v[nodes, cols] for k, v in states.items()}


def output_states(networks: list[Network], size) -> dict:
    """The output node's state of each network (fields [..., N])."""
    _, states, _ = run(networks, size)
    return _take(states, np.array([net.output for net in networks]))


def units_of(state: dict) -> np.ndarray:
    """[A, P, N]: the table entries whose boxes describe the geometry: one period, or unit
    by unit the map's real units."""
    T, origin, size = state["T"][:, None, :], state["origin"][:, None, :], state["size"]
    entry = np.arange(state["lo"].shape[1])[None, :, None]
    return np.where(origin > 0, (entry >= origin) & (entry < origin + size[:, None, :]),
                    entry < T)


def boxes(state: dict, axis: int, j: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of every real output unit of network ``j`` along ``axis``."""
    T, K, M = (int(state[k][axis, j]) for k in ("T", "K", "origin"))
    n = int(state["size"][axis, j])
    if M:
        return state["lo"][axis, M:M + n, j], state["hi"][axis, M:M + n, j]
    q, r = np.divmod(np.arange(n), T)
    return state["lo"][axis, r, j] + q * K, state["hi"][axis, r, j] + q * K


def _repeats(state: dict, inside: np.ndarray, t: np.ndarray,
             cols: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Whether the boxes of the (axis, network) pairs ``cols`` repeat after ``t`` units
    (one length per pair), shifted by t K / T input units: ``box(y + t) = box(y) + t K /
    T`` for every unit of the table (``inside``: :func:`units_of`; a period of T units:
    wrapping around it, K units further; unit by unit: every real unit with a real unit t
    further)."""
    a, j = cols
    T, K, M, n = (state[k][a, j][:, None] for k in ("T", "K", "origin", "size"))
    lo, hi = state["lo"][a, :, j], state["hi"][a, :, j]  # [pairs, P]
    y, t = np.arange(lo.shape[1])[None, :], t[:, None]
    periodic = M == 0
    nxt = np.where(periodic, (y + t) % T, y + t)
    wraps = np.where(periodic, (y + t) // T, 0) * K
    held = inside[a, :, j] & (periodic | (nxt < M + n))
    nxt = np.minimum(nxt, lo.shape[1] - 1)
    shift = t * K // T
    same = (np.take_along_axis(lo, nxt, 1) + wraps == lo + shift) & (
        np.take_along_axis(hi, nxt, 1) + wraps == hi + shift)
    return (same | ~held).all(axis=1)


def _prime_factors(values) -> list[int]:
    """The primes dividing any of ``values`` (positive integers), ascending."""
    primes = set()
    for v in values:
        d = 2
        while d * d <= v:
            while v % d == 0:
                primes.add(d)
                v //= d
            d += 1
        if v > 1:
            primes.add(v)
    return sorted(primes)


def least_period(state: dict) -> np.ndarray:
    """[A, N] the least number of output units after which the boxes repeat. Every period
    that divides the program's period T (which can be a multiple of the least one, e.g.
    after a merge) is a multiple of the least, and must advance a whole number of input
    units (t K / T); so T is divided by each of its primes while what is left still
    repeats. One numpy pass per prime and step, over the pairs it may still divide."""
    T, K = state["T"], state["K"]
    inside, period = units_of(state), T.copy()
    for p in _prime_factors(np.unique(T).tolist()):
        trying = period % p == 0
        while True:
            t = period // p
            cols = np.nonzero(trying & (t * K % T == 0))
            if not len(cols[0]):
                break
            held = _repeats(state, inside, t[cols], cols)
            period[tuple(c[held] for c in cols)] = t[cols][held]
            trying[tuple(c[~held] for c in cols)] = False
            trying &= period % p == 0
    return period


def geometry(state: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-axis columns (values [A, N], null mask [A, N]) of node states."""
    T, K = state["T"], state["K"]
    inside = units_of(state)
    span = np.where(inside, state["hi"] - state["lo"], 0)
    smallest = np.where(inside, state["hi"] - state["lo"], np.iinfo(np.int64).max)
    g = np.gcd(K, T)
    flags = state["flags"]
    unbounded, known = (flags & R.UNBOUNDED) != 0, (flags & R.KNOWN) != 0
    mixed = (flags & R.MIXED) != 0
    return {"rf": (span.max(axis=1) + 1, unbounded),
            "rf_min": (smallest.min(axis=1) + 1, unbounded.copy()),
            "stride": (K // g, mixed), "stride_den": (T // g, mixed.copy()),
            "period": (least_period(state), mixed.copy()),
            "padding": (-np.take_along_axis(state["lo"], state["origin"][:, None], axis=1)[:, 0],
                        unbounded | ~known),
            "out": (state["size"], state["size"] <= 0)}


def layer_geometry(states: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:func:`geometry` of every node: values and null masks [L, A, N]."""
    L, n = states["T"].shape[0], states["T"].shape[-1]
    flat = {k: np.moveaxis(v, 0, -2).reshape(*v.shape[1:-1], L * n) for k, v in states.items()}
    return {key: tuple(x.reshape(-1, L, n).transpose(1, 0, 2) for x in pair)
            for key, pair in geometry(flat).items()}
