"""Jitted evaluation of candidate ids on the device: decode, look up, compose, filter.

Two programs, both pure functions of their array arguments (tables are arguments, not
constants, so a space compiles once per chunk shape):

* :func:`evaluate_ids` decodes any ids (mixed radix) into one table entry per group and
  folds them with :func:`~rfsearch.search.tables.combine` (sampling, and the rows of
  matches);
* :func:`walk` scores a contiguous id range: the prefix groups give one state per row of
  ``[rows, suffix]`` and the precomposed suffix table is broadcast against it, a few
  multiply-adds per candidate whatever the depth (the exhaustive walk).

Columns are built lazily, so a filter on ``rf_h`` never computes padding or sizes. With
the layer-wise analysis (``t.analysis``) the tables carry its composable fields, folded
with the geometry, and the programs take the layer counts of their candidates
(:mod:`~.layerwise`): per id for :func:`evaluate_ids`, per row and per suffix key for
:func:`walk`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial

import jax
import jax.numpy as jnp
import numpy as np

from .. import recurrence as R
from ..analysis import rf_ratio
from ..spaces.space import place_values
from ..table import GEOMETRY, LAYERWISE
from .filter import Node, evaluate_filter
from .layerwise import AN_FIELDS
from .plan import Plan
from .tables import FIELDS, Table, combine, identity_state

PER_AXIS = (*FIELDS, "X", "W")  # fields with one row per axis
COUNTS = ("n_critical", "n_unproductive")


@dataclass(frozen=True, eq=False)  # a static argument of the programs: see signature
class DeviceTables:
    """A plan's tables as device-ready arrays (one axis when the space is isotropic).

    Equal (and hashed alike) when everything the programs read from it, all but the
    ``groups`` arrays (which they take as arguments), is equal: a space searched again
    reuses its compiled programs."""

    groups: tuple  # per group: dict of fields [axes, K*C] and "nxt" [K*C]
    layout: tuple  # per group: (radix, below)
    sizes: np.ndarray  # [classes, 2] output sizes (zeros without an input size)
    sized: bool
    input_size: tuple  # (H, W), (1, 1) without one
    axes: int  # 1 when h and w are identical everywhere, else 2
    labels: tuple  # per variable: numeric labels array, or None
    var_layout: tuple  # per variable: (radix, below)
    var_names: tuple
    id_aliases: tuple  # key columns equal to candidate_id (nb201_index, ...)
    dtype: str
    analysis: bool = False  # the tables carry the layer-wise analysis fields

    @property
    def fields(self) -> tuple[str, ...]:
        """The per-entry fields of the tables, besides nxt."""
        return (*FIELDS, "V", *(AN_FIELDS if self.analysis else ()))

    @cached_property
    def signature(self) -> tuple:
        """What the traced programs depend on, hashable (arrays by their bytes)."""
        def frozen(a):
            if a is None:
                return None
            return tuple(a.tolist()) if a.dtype == object else (str(a.dtype), a.shape,
                                                                a.tobytes())
        return (self.layout, frozen(self.sizes), self.sized, self.input_size, self.axes,
                tuple(frozen(x) for x in self.labels), self.var_layout, self.var_names,
                self.id_aliases, self.dtype, self.analysis)

    def __eq__(self, other) -> bool:
        return isinstance(other, DeviceTables) and self.signature == other.signature

    def __hash__(self) -> int:
        return hash(self.signature)


def _typed(table: Table, axes: int, dtype) -> dict:
    """The table's fields [rows, K, C] as the programs take them (``axes`` rows per axis)."""
    out = {}
    for f in table.fields():
        value = getattr(table, f)
        value = value[:axes] if f in PER_AXIS else value
        out[f] = value.astype(np.int32 if f == "F" else bool if f == "V" else dtype)
    out["nxt"] = table.nxt.astype(np.int32)
    return out


def _flat(table: Table, axes: int, dtype) -> dict:
    k, c = table.shape
    return {f: v.reshape(*v.shape[:-2], k * c) for f, v in _typed(table, axes, dtype).items()}


def _isotropic(plan: Plan) -> bool:
    size = plan.input_size
    if size is not None and size[0] != size[1]:
        return False
    fields = PER_AXIS if plan.analysis else FIELDS
    return all((getattr(g.table, f)[0] == getattr(g.table, f)[1]).all()
               for g in plan.groups for f in fields)


def device_tables(plan: Plan) -> DeviceTables:
    axes = 1 if _isotropic(plan) else 2
    dtype = np.dtype(plan.dtype)
    space = plan.space
    below = place_values(space.radices)
    labels = [var.column_labels if var.numeric else None for var in space.variables]
    sized = plan.input_size is not None
    sizes = np.array(plan.sizes_out if sized else [(0, 0)], dtype=np.int32)
    return DeviceTables(
        groups=tuple(_flat(g.table, axes, dtype) for g in plan.groups),
        layout=tuple((g.radix, g.below) for g in plan.groups), sizes=sizes, sized=sized,
        input_size=tuple(plan.input_size) if sized else (1, 1),
        axes=axes, labels=tuple(labels),
        var_layout=tuple((int(r), int(b)) for r, b in zip(space.radices, below, strict=True)),
        var_names=tuple(v.name for v in space.variables), id_aliases=space.id_aliases,
        dtype=plan.dtype, analysis=plan.analysis)


def suffix_tables(plan: Plan, axes: int) -> tuple[int, dict]:
    """(first suffix group, suffix table fields [axes, K, C], V [K, C], ...)."""
    start, table = plan.suffix()
    return start, _typed(table, axes, np.dtype(plan.dtype))


def _fold(ids, groups, layout, dtype, axes, fields):
    """State and size class after every group, for ids [...]."""
    state = identity_state(jnp, ids.shape, np.dtype(dtype), "X" in fields)
    state = {k: v[:axes] if k in PER_AXIS else v for k, v in state.items()}
    cls = jnp.zeros(ids.shape, jnp.int32)
    for (radix, below), tab in zip(layout, groups, strict=True):
        flat = cls * radix + ((ids // below) % radix).astype(jnp.int32)
        entry = {f: jnp.take(tab[f], flat, axis=-1) for f in fields}
        state = combine(jnp, state, entry)
        cls = jnp.take(tab["nxt"], flat)
    return state, cls


class Columns:
    """Result columns computed on demand from a folded state: name -> (value, known)."""

    def __init__(self, state, cls, ids, t: DeviceTables, ids_fn=None, counts=None):
        self.s, self.cls, self.t, self._ids, self._ids_fn = state, cls, t, ids, ids_fn
        self.counts = counts  # (n_critical, n_unproductive) of each candidate, or None
        self.cache = {}

    def ids(self):
        if self._ids is None:
            self._ids = self._ids_fn()
        return self._ids

    def __getitem__(self, name: str):
        if name not in self.cache:
            self.cache[name] = self._compute(name)
        return self.cache[name]

    def _valid(self):
        """Valid, and within the core kernel's exact range (its int64 limits): a
        candidate that evaluate() would reject for overflow is invalid here too."""
        if "valid" not in self.cache:
            s, valid = self.s, self.s["V"]
            if np.dtype(self.t.dtype) == np.int64:
                lim = R.LIMITS[np.dtype(np.int64)]
                fits = (s["S"] <= lim.param) & (-s["A"] <= lim.position) & (
                    s["B"] - s["A"] <= lim.position)
                valid = valid & fits.all(axis=0)
            self.cache["valid"] = (valid, True)
        return self.cache["valid"][0]

    def _axis(self, suffix: str) -> int:
        return 0 if self.t.axes == 1 else "hw".index(suffix)

    def _compute(self, name: str):
        s, valid = self.s, self._valid()
        flags = s["F"]
        if name == "valid":
            return valid, True  # (cached by _valid)
        if name == "candidate_id" or name in self.t.id_aliases:
            return self.ids(), True
        if name == "rf_ratio":
            (h, hk), (w, wk) = self["rf_h"], self["rf_w"]
            return rf_ratio(h, w, self.t.input_size, jnp), hk & wk & self.t.sized
        if name == "aligned":
            aligned, decided = R.alignment(flags)
            return aligned, valid & decided
        if name in LAYERWISE:
            return self._layerwise(name, valid)
        if name in GEOMETRY:
            base, suffix = name.rsplit("_", 1)
            a = self._axis(suffix)
            bounded = valid & ((flags[a] & R.UNBOUNDED) == 0)
            if base == "rf":
                return s["B"][a] - s["A"][a] + 1, bounded
            if base == "rf_min":
                return s["M"][a] + 1, bounded
            if base == "stride":
                return s["S"][a], valid
            if base in ("stride_den", "period"):  # a space's blocks never resample
                return jnp.ones_like(s["S"][a]), valid
            if base == "padding":
                return -s["A"][a], bounded & ((flags[a] & R.KNOWN) != 0)
            out = jnp.take(jnp.asarray(self.t.sizes[:, "hw".index(suffix)]), self.cls)
            return out, valid & self.t.sized
        j = self.t.var_names.index(name)
        radix, below = self.t.var_layout[j]
        digit = (self.ids() // below) % radix
        return jnp.take(jnp.asarray(self.t.labels[j]), digit), True


    def _layerwise(self, name: str, ok):
        """An analysis column (value, known) from the composable fields or the counts."""
        s = self.s
        if name in COUNTS:
            if self.counts is None:  # no input size: null, as evaluate() gives them
                return jnp.zeros(ok.shape, jnp.int32), jnp.zeros(ok.shape, bool)
            return self.counts[COUNTS.index(name)], ok & self.t.sized
        if name.startswith("rf_at_stride_"):
            span = s["Rs"][int(name.rsplit("_", 1)[1]).bit_length() - 1]
        else:
            span = (s["X"] if name == "feasible_min" else s["W"]).max(axis=0)
        return span + 1, ok & (span >= 0)


def _columns_for(state, cls, ids, t, names):
    cols = Columns(state, cls, ids, t)
    return {n: cols[n] for n in names}


@partial(jax.jit, static_argnames=("t", "names", "where"))
def evaluate_ids(ids, groups, counts=None, *, t, names: tuple, where: Node | None):
    """Columns ``names`` (value, known) and the filter mask for ids [N] (``counts``
    [2, N]: their layer counts, with the analysis)."""
    state, cls = _fold(ids, groups, t.layout, t.dtype, t.axes, t.fields)
    cols = Columns(state, cls, ids, t, counts=counts)
    mask = jnp.broadcast_to(True if where is None else _mask(where, cols), ids.shape)
    return {n: cols[n] for n in names}, mask


def _mask(where: Node, cols: Columns):
    value, known = evaluate_filter(where, cols, jnp)
    return jnp.asarray(value) & known


def _walk_counts(counts, width: int):
    """(n_critical, n_unproductive) [R, C] of the walk: each row's prefix counts
    ``rows`` [2, R] plus its suffix key's counts ``keys`` [U, 2, C] (``key`` [R])."""
    if counts is None:
        return None
    suffix = jnp.take(counts["keys"], counts["key"], axis=0)  # [R, 2, C]
    return tuple(counts["rows"][i][:, None] + suffix[:, i] for i in range(2))


@partial(jax.jit, static_argnames=("t", "start", "where", "top", "bounded"))
def walk(prefix_ids, real, bounds, suffix, prefix_groups, counts=None, *, t, start: int,
         where: Node | None, top: tuple | None, bounded: bool):
    """Filter mask [R, C] (and top-k scores) for ids ``prefix_ids[:, None] * C + arange(C)``;
    rows from ``real`` on are padding, and with ``bounded`` ids outside
    ``[bounds[0], bounds[1])`` never match (``counts``: see :func:`_walk_counts`)."""
    width = suffix["V"].shape[-1]
    layout = tuple((radix, below // width) for radix, below in t.layout[:start])  # prefix ids
    state, cls = _fold(prefix_ids, prefix_groups, layout, t.dtype, t.axes, t.fields)
    if suffix["V"].shape[0] == 1:
        entry = {f: suffix[f][..., 0, None, :] for f in t.fields}  # [axes, 1, C]
        nxt = suffix["nxt"][0][None, :]
    else:
        entry = {f: jnp.take(suffix[f], cls, axis=-2) for f in t.fields}  # [axes, R, C]
        nxt = jnp.take(suffix["nxt"], cls, axis=0)
    wide = {k: v[..., None] for k, v in state.items()}
    full = combine(jnp, wide, entry)
    cols = Columns(full, nxt, None, t, counts=_walk_counts(counts, width),
                   ids_fn=lambda: prefix_ids[:, None] * width + jnp.arange(width)[None, :])
    rows = (jnp.arange(prefix_ids.shape[0]) < real)[:, None]
    if bounded:
        ids = cols.ids()
        rows = rows & (ids >= bounds[0]) & (ids < bounds[1])
    mask = jnp.broadcast_to(rows & (True if where is None else _mask(where, cols)),
                            (prefix_ids.shape[0], width))
    if top is None:
        return mask, None
    column, k, largest = top
    value, known = cols[column]
    value = jnp.broadcast_to(value, mask.shape).astype(jnp.float64)
    score = jnp.where(mask & known, value if largest else -value, -jnp.inf).reshape(-1)
    best, index = jax.lax.top_k(score, k)
    return mask, (best, index)
