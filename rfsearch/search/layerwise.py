"""The layer-wise analysis columns (``rfsearch.analysis``) of a tabulated space, composed
block by block like the geometry.

Every layer of a candidate lies in one block; relative to its block's input (state
``(m, J)`` per axis: shortest span ``m`` and jump ``J``) it has its own shortest span
``mu`` (``rf_min = m + mu J + 1``), its span ``v - u`` and its jump factor. The columns
split in two kinds:

* maxima and "last layer" values compose like the summaries (:func:`combine_analysis`):
  ``X`` the largest ``mu`` of a counted layer (feasible_min = X + 1 at the network
  input), ``W`` the largest span (feasible_max = W + 1), ``Rs[i]`` the height span of
  the last counted layer whose jump factor is ``2**i`` (rf_at_stride_K = Rs[log2 K] + 1);
  a layer that faults (a dead branch whose map is gone: an on-path one makes the
  candidate invalid) is not counted, as ``evaluate`` counts it;
* the counts (n_critical, n_unproductive) compare each layer with the input size
  ``res``. With ``t = res - 1 - m`` entering a block, a layer is critical when
  ``mu > q = floor(t / J)`` on every axis; unproductive when ``rho < theta`` on every
  axis (``rho = res // J``, ``theta`` = min over its inputs of ``(k_eff + 1) * S_p``:
  the map rule ``res // J_p <= k_eff``) or when ``q1 = floor((t - 1) / J) < pi`` on
  every axis (``pi``: the least ``mu`` of its inputs, each seeing the whole input) and it
  is critical. A block then passes on the key ``q' = floor((q - M) / S)``,
  ``q1' = floor((q1 - M) / S)``, ``rho' = rho // S`` (nested floor division), and
  whether its output is unbounded: the counts of a block depend on its incoming state
  only through this small key (:func:`stage_counts`), so the walk counts the prefix of
  each row once and the suffix once per distinct key (:func:`suffix_counts`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from .. import ops
from .. import recurrence as R

STRIDES = 6  # jump factors 1, 2, 4, ..., 32 tracked for rf_at_stride_K
FAR = 1 << 40  # a threshold no key reaches (a layer without inputs)
AN_FIELDS = ("X", "W", "Rs")


def _gather(values: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """values [L, A, N] at each input slot of each node: [L, P, A, N] (slot -1: node 0),
    one flat take per axis: element (node, a, n) of values is (node * A + a) * N + n."""
    axes, n = values.shape[1:]
    base = np.clip(preds, 0, None).astype(np.intp) * (axes * n) + np.arange(n)  # [L, P, N]
    flat = np.ascontiguousarray(values).reshape(-1)
    return np.stack([flat.take(base + a * n) for a in range(axes)], axis=2)


def _same_axes(batch, layers: dict) -> bool:
    """Whether every layer state and parameter is the same on both axes (a square batch
    at a square or unknown size: the kernel then computes one axis, a stride-0 view)."""
    return batch.square and all(layers[f].strides[1] == 0 for f in ("rmin", "J", "u", "v"))


def _layers_of(batch, layers: dict) -> dict:
    """Per-layer thresholds of one size class: mu, pi, theta [L, 2, N] and the masks
    (computed on one axis and broadcast when both agree)."""
    depth = layers["J"].shape[0]
    node = np.arange(depth)[:, None]
    live = (node >= 1) & (node < batch.length[None, :])  # [L, N]
    clean = (layers["fault"] == R.NO_FAULT).all(axis=1)  # [L, N]
    whole = np.isin(batch.layer_major("op"), list(ops.WHOLE_MAP.values()))
    bounded = ((layers["flags"] & R.UNBOUNDED) == 0).all(axis=1)
    axes = 1 if _same_axes(batch, layers) else 2
    mu = layers["rmin"][:, :axes].astype(np.int64)  # [L, A, N]
    jump = layers["J"][:, :axes].astype(np.int64)
    k_eff = np.broadcast_to(batch.axes_major("dilation", axes).astype(np.int64)
                            * (batch.axes_major("kernel", axes) - 1) + 1, mu.shape)
    preds = batch.layer_major("preds")  # [L, P, N]
    has = (preds >= 0)[:, :, None, :]  # [L, P, 1, N]
    pi = np.where(has, _gather(mu, preds), FAR).min(axis=1)
    theta = np.where(has, (k_eff[:, None] + 1) * _gather(jump, preds), FAR).min(axis=1)
    span = (layers["v"][:, :axes] - layers["u"][:, :axes]).astype(np.int64)
    both = {f: np.broadcast_to(x, (depth, 2, x.shape[-1]))
            for f, x in (("mu", mu), ("pi", pi), ("th", theta), ("span", span), ("jump", jump))}
    return both | {"cnt": live & clean & ~whole & bounded}


def _maxima(g: dict) -> dict:
    """The composable fields of each block: X, W [2, N], Rs [STRIDES, N]."""
    cnt = g["cnt"][:, None]  # [L, 1, N]
    out = {"X": np.where(cnt, g["mu"], -1).max(axis=0),
           "W": np.where(cnt, g["span"], -1).max(axis=0)}
    depth = g["cnt"].shape[0]
    rs = []
    for i in range(STRIDES):
        at = g["cnt"] & (g["jump"][:, 0] == 1 << i)  # [L, N]
        last = depth - 1 - np.argmax(at[::-1], axis=0)
        span = np.take_along_axis(g["span"][:, 0], last[None], axis=0)[0]
        rs.append(np.where(at.any(axis=0), span, -1))
    out["Rs"] = np.stack(rs)
    return out


def block_analysis(batch, per_class: list) -> tuple:
    """(composable fields [.., K, N], layer thresholds) of the distinct blocks of
    ``batch``: ``per_class`` holds the kernel's
    per-layer states at each incoming size class. The thresholds are [L, 2, K, N] (mu,
    pi, th, and span: v - u, for the border of :mod:`~.border`) and [L, K, N] (cnt)."""
    stats = [_layers_of(batch, layers) for layers in per_class]
    maxima = [_maxima(g) for g in stats]
    an = {f: np.stack([m[f] for m in maxima], axis=-2) for f in AN_FIELDS}
    reach = max(int(np.where(g[f] < FAR, g[f], 0).max(initial=0)) for g in stats
                for f in ("mu", "pi", "th", "span"))
    kind = np.int32 if reach < 1 << 30 else np.int64
    lay = {f: np.stack([np.minimum(g[f][1:], np.iinfo(kind).max) for g in stats],
                       axis=2).astype(kind) for f in ("mu", "pi", "th", "span")}  # [L, 2, K, N]
    lay["cnt"] = np.stack([g["cnt"][1:] for g in stats], axis=1)  # [L, K, N]
    return an, lay


def identity_analysis(xp, shape: tuple, dtype) -> dict:
    """The composable fields at the network input (no layer yet)."""
    none = xp.full((2, *shape), -1, dtype)
    return {"X": none, "W": none, "Rs": xp.full((STRIDES, *shape), -1, dtype)}


def _stride_spans(xp, left: dict, right: dict, ok, span):
    """Rs of left then right: a right layer of factor 2**j lands at 2**(d + j) when
    left's jump is 2**d (one select per (d, j): the walk keeps one Rs row)."""
    jump = left["S"][0]
    factor = [jump == 1 << d for d in range(STRIDES)]
    seen = [ok & (right["Rs"][j] >= 0) for j in range(STRIDES)]
    rs = []
    for i in range(STRIDES):
        value = left["Rs"][i]
        for j in range(i + 1):
            value = xp.where(factor[i - j] & seen[j], span + right["Rs"][j] * jump, value)
        rs.append(value)
    return xp.stack(rs)


def _stride_spans_np(xp, left: dict, right: dict, ok, span):
    """:func:`_stride_spans` for numpy tables: one gather per row of Rs."""
    jump = left["S"][0]
    shift = np.where((jump & (jump - 1)) == 0, np.log2(np.maximum(jump, 1)).astype(np.int64),
                     -STRIDES)  # d where the jump is 2**d
    rows = np.broadcast_to(right["Rs"], (STRIDES, *np.broadcast_shapes(jump.shape,
                                                                       right["Rs"].shape[1:])))
    rs = []
    for i in range(STRIDES):
        j = i - shift
        at = np.take_along_axis(rows, np.clip(j, 0, STRIDES - 1)[None], axis=0)[0]
        hit = ok & (j >= 0) & (j < STRIDES) & (at >= 0)
        rs.append(np.where(hit, span + at * jump, left["Rs"][i]))
    return np.stack(rs)


def combine_analysis(xp, left: dict, right: dict) -> dict:
    """The composable fields of ``left`` then ``right`` (the module docstring)."""
    jump, span = left["S"], left["B"] - left["A"]
    ok = ((left["F"] & R.UNBOUNDED) == 0).all(axis=0)  # right's layers are bounded
    x = xp.where(ok[None] & (right["X"] >= 0), left["M"] + right["X"] * jump, -1)
    w = xp.where(ok[None] & (right["W"] >= 0), span + right["W"] * jump, -1)
    rs = (_stride_spans_np if xp is np else _stride_spans)(xp, left, right, ok, span[0])
    return {"X": xp.maximum(left["X"], x), "W": xp.maximum(left["W"], w), "Rs": rs}


# --- counting: n_critical and n_unproductive ---------------------------------------------

def input_key(size, shape: tuple = ()) -> dict:
    """The key at the network input (``size``: (H, W)): q = res - 1, q1 = res - 2,
    rho = res, bounded, size class 0."""
    res = np.asarray(size, np.int64).reshape(2, *(1,) * len(shape))
    full = (2, *shape)
    return {"q": np.broadcast_to(res - 1, full), "q1": np.broadcast_to(res - 2, full),
            "rho": np.broadcast_to(res, full), "unb": np.zeros(shape, bool),
            "cls": np.zeros(shape, np.int64)}


def stage_counts(key: dict, table, idx: np.ndarray, axes: int) -> tuple:
    """(critical, unproductive) layers [E] of one slot's blocks ``idx`` [E] entered with
    ``key`` (arrays [2, E] and [E]), and the key after the slot."""
    lay, at = table.lay, table.taker(key["cls"], idx)
    mu, pi, th = (at(lay[f][:, :axes]) for f in ("mu", "pi", "th"))  # [L, A, E]
    live = at(lay["cnt"]) & ~key["unb"]  # [L, E]
    q, q1, rho = (key[f][None, :axes] for f in ("q", "q1", "rho"))  # [1, A, E]
    deep = (q < mu).all(axis=1)
    critical = live & deep
    unproductive = live & ((rho < th).all(axis=1) | ((q1 < pi).all(axis=1) & deep))
    m, s = at(table.M), np.maximum(at(table.S), 1)  # [2, E]
    after = {"q": np.maximum((key["q"] - m) // s, -1),
             "q1": np.maximum((key["q1"] - m) // s, -1), "rho": key["rho"] // s,
             **passed_on(key, table, at)}
    return critical.sum(axis=0), unproductive.sum(axis=0), after


def passed_on(key: dict, table, at) -> dict:
    """The unbounded flag and size class a slot passes on (``at``: :meth:`~.tables.Table.taker`
    of its entries)."""
    return {"unb": key["unb"] | ((at(table.F) & R.UNBOUNDED) != 0).any(axis=0),
            "cls": at(table.nxt).astype(np.int64)}


def group_counts(key: dict, stages, option: np.ndarray, axes: int) -> tuple:
    """(critical, unproductive, key after) of a group's options ``option`` [E]:
    ``stages`` are its slots, (slot table, slot block of each group option)."""
    critical = unproductive = 0
    for table, slot_option in stages:
        c, u, key = stage_counts(key, table, slot_option[option], axes)
        critical, unproductive = critical + c, unproductive + u
    return critical, unproductive, key


def id_counts(key: dict, groups, layout, ids: np.ndarray, axes: int) -> tuple:
    """(critical, unproductive, key after) of ids [N] over ``groups`` (digit = id //
    below % radix per ``layout``), entered with ``key``."""
    critical = unproductive = np.zeros(ids.shape, np.int64)
    for group, (radix, below) in zip(groups, layout, strict=True):
        c, u, key = group_counts(key, group.stages, (ids // below) % radix, axes)
        critical, unproductive = critical + c, unproductive + u
    return critical, unproductive, key


def key_rows(key: dict) -> np.ndarray:
    """One row per entry [E, 3 * 2 + 2]: the key as a hashable table."""
    return np.concatenate([key["q"], key["q1"], key["rho"], key["unb"][None],
                           key["cls"][None]]).T.astype(np.int64)


def pick(key: dict, rows) -> dict:
    """The entries ``rows`` of every field of a key (fields [..., E])."""
    return {f: v[..., rows] for f, v in key.items()}


def distinct_options(group) -> tuple[np.ndarray, np.ndarray]:
    """(one option per distinct tuple of slot blocks, the tuple of each option): options
    built of the same blocks count alike (NAS-Bench-101's cells share 64,029 geometries)."""
    if group.classes is not None:
        return group.classes
    return option_classes([index for _, index in group.stages])


def option_classes(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(one option of each class, the class of each option) of the options whose blocks
    are ``columns`` (one [options] array per slot): a class is one tuple of blocks.
    Classes are numbered in the order of their tuples; any option may represent its class."""
    keys, scale = row_keys(columns)
    if keys.shape[1] == 1 and scale <= 4 * len(keys) + 1024:  # dense keys: no sort
        key = keys[:, 0]
        seen = np.bincount(key, minlength=scale) > 0
        inverse = (np.cumsum(seen) - 1)[key]
    else:
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
    rep = np.empty(int(inverse.max(initial=-1)) + 1, np.int64)
    rep[inverse] = np.arange(inverse.size)  # whichever write lands is in the class
    return rep, inverse


def row_keys(columns: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """Rows of non-negative integer ``columns`` ([E] each) as keys that are equal exactly
    where the rows are, and their range: one int64 per row (mixed radix over the distinct
    columns) when it fits, which sorts far faster than rows; else the [E, columns] rows."""
    distinct = list({c.tobytes(): c for c in columns}.values())  # slots with one index
    key, scale = np.zeros(len(columns[0]), np.int64), 1
    for column in distinct:
        radix = int(column.max(initial=0)) + 1
        if scale * radix >= 1 << 62:
            return np.stack(distinct, axis=1), 0
        key, scale = key * radix + column, scale * radix
    return key[:, None], scale


def suffix_counts(key: dict, groups, axes: int, distinct: list) -> np.ndarray:
    """[2, C] (critical, unproductive) of every suffix entry (left-major over
    ``groups``, as :func:`~.tables.outer` composes them) entered with one ``key``
    (arrays [2, 1] and [1]). Each group counts its distinct options (``distinct``: per
    group, :func:`distinct_options`) once per distinct key."""
    counts = np.zeros((2, 1), np.int64)
    for n, (group, (reps, same)) in enumerate(zip(groups, distinct, strict=True)):
        _, first, inverse = np.unique(key_rows(key), axis=0, return_index=True,
                                      return_inverse=True)
        inverse = inverse.reshape(-1)
        width = (*first.shape, reps.size)
        distinct_keys = {f: np.broadcast_to(v[..., None], (*v.shape, reps.size))
                         for f, v in pick(key, first).items()}  # [.., U, R']
        c, u, after = group_counts(distinct_keys, group.stages, reps[None, :], axes)
        grid = np.stack([np.broadcast_to(c, width), np.broadcast_to(u, width)])[:, :, same]
        counts = (counts[:, :, None] + grid[:, inverse]).reshape(2, -1)  # [2, P * R]
        if n + 1 < len(groups):
            key = {f: v[..., same][..., inverse, :].reshape(*v.shape[:-2], -1)
                   for f, v in after.items()}
    return counts


def count_axes(plan) -> int:
    """1 when the input size, every slot's geometry (which moves the key from slot to
    slot: a stride on one axis only changes one axis's key) and every layer threshold
    agree on both axes, else 2."""
    size = plan.input_size
    if size is None or size[0] != size[1]:
        return 2
    seen = {id(t): t for g in plan.groups for t, _ in g.stages}
    same = all((getattr(t, f)[0] == getattr(t, f)[1]).all() for t in seen.values()
               for f in ("M", "S"))  # the slot's rf_min growth and jump: they move the key
    return 1 if same and all((t.lay[f][:, 0] == t.lay[f][:, 1]).all() for t in seen.values()
                             for f in ("mu", "pi", "th")) else 2


class LayerCounts:
    """The layer counts of a plan's candidates, on the host: per prefix row (the groups
    before the plan's suffix, counted per row) plus one table of the suffix's entries per
    distinct key (kept while they fit ``memory`` bytes)."""

    def __init__(self, plan, start: int | None = None, memory: int = 1 << 29):
        self.plan, self.memory = plan, memory
        self.start = plan.suffix_start() if start is None else start  # the first suffix group
        self.axes = count_axes(plan)
        self.memo: dict[tuple, np.ndarray] = {}
        self.distinct = [distinct_options(g) for g in plan.groups[self.start:]]
        self.lock = threading.Lock()

    def of_ids(self, ids: np.ndarray) -> np.ndarray:
        """[2, N] (critical, unproductive) of ids [N]: their prefix counted per id, their
        suffix looked up by key."""
        width = self.plan.groups[self.start].below * self.plan.groups[self.start].radix
        prefixes, row = np.unique(ids // width, return_inverse=True)  # ids share prefixes
        c, u, key = self._prefix(prefixes, width)
        out = np.stack([c, u])[:, row.reshape(-1)]  # [2, N]
        distinct, index = np.unique(key_rows(key), axis=0, return_inverse=True)
        index, entry = index.reshape(-1)[row.reshape(-1)], ids % width
        for k, key_row in enumerate(distinct):
            mine = index == k
            out[:, mine] += self._suffix(key_row)[:, entry[mine]]
        return out.astype(np.int32)

    def _prefix(self, prefix_ids: np.ndarray, width: int) -> tuple:
        """(critical, unproductive, key at the suffix) of prefix ids [R]."""
        groups = self.plan.groups[:self.start]
        layout = [(g.radix, g.below // width) for g in groups]
        key = input_key(self.plan.input_size, prefix_ids.shape)
        return id_counts(key, groups, layout, prefix_ids, self.axes)

    def _suffix(self, row: np.ndarray) -> np.ndarray:
        """[2, C] counts of the suffix entered with the key of one ``row``."""
        key = tuple(row.tolist())
        with self.lock:  # a run may compute its next chunk on another thread
            table = self.memo.get(key)
        if table is None:
            one = {"q": row[0:2, None], "q1": row[2:4, None], "rho": row[4:6, None],
                   "unb": row[6:7].astype(bool), "cls": row[7:8]}
            table = suffix_counts(one, self.plan.groups[self.start:], self.axes,
                                  self.distinct).astype(np.int32)
            with self.lock:
                while self.memo and (len(self.memo) + 1) * table.nbytes > self.memory:
                    self.memo.pop(next(iter(self.memo)))
                self.memo[key] = table
        return table

    def of_rows(self, prefix_ids: np.ndarray, width: int, keys: Callable[[int], int]
                ) -> dict:
        """The walk's counts for prefix rows [R]: ``rows`` [2, R], ``keys`` [U, 2, C] (U
        padded to ``keys(U)``) and ``key`` [R], the index of each row's suffix key."""
        c, u, key = self._prefix(prefix_ids, width)
        distinct, index = np.unique(key_rows(key), axis=0, return_inverse=True)
        tables = [self._suffix(row) for row in distinct]
        tables += tables[:1] * (keys(len(tables)) - len(tables))
        return {"rows": np.stack([c, u]).astype(np.int32), "keys": np.stack(tables),
                "key": index.reshape(-1).astype(np.int32)}
