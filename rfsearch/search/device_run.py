"""Searching tabulated spaces on the device.

Exhaustive mode walks the id range in chunks of whole suffix spans
(:func:`~.walk.walk`); sampling mode evaluates the sampled ids of each chunk
(:func:`~.walk.evaluate_ids`). Only the ids that pass the filter (or the chunk's top K)
leave the device; their rows are then evaluated once more, column by column. A filter
or ranking on the LAYERWISE analysis columns tabulates the space with the layer-wise
analysis (:mod:`~.layerwise`) and runs on the device like the geometry: the composable
fields fold with the geometry, the layer counts come from the host per prefix row and
per distinct suffix key (:class:`~.layerwise.LayerCounts`).
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from ..analysis import rf_ratio
from ..table import GEOMETRY, LAYERWISE, typed_array
from . import walk as W
from .border import border_layer
from .filter import Node
from .layerwise import LayerCounts
from .plan import plan
from .runs import Run, uses_analysis

MIN_BUCKET = 1 << 10


def bucket(n: int, smallest: int = MIN_BUCKET) -> int:
    """Padded length: a power of two, so a run compiles a few times."""
    return max(smallest, 1 << max(0, n - 1).bit_length())


def _shard(array: np.ndarray):
    """Spread the leading axis over the local devices (a no-op with one device)."""
    devices = jax.local_devices()
    if len(devices) == 1 or array.shape[0] % len(devices):
        return array
    mesh = jax.sharding.Mesh(np.array(devices), ("d",))
    return jax.device_put(array, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))


def _padded(ids: np.ndarray) -> np.ndarray:
    """ids padded to their bucket with copies of the first (zeros when there are none)."""
    n = ids.size
    if not n:
        return np.zeros(MIN_BUCKET, np.int64)
    return np.concatenate([ids, np.repeat(ids[:1], bucket(n) - n)])


class DeviceRun(Run):
    """A search of a tabulated space (see the module docstring)."""

    def __init__(self, space, size, where: Node | None, where_text, sample, seed, chunk, top,
                 ids=None, partition_by=()):
        used = (set() if where is None else where.columns()) | (
            set() if top is None else {top[0]})
        self.analysis = uses_analysis(used)
        self.plan = plan(space, size, analysis=self.analysis)
        super().__init__(space, self.plan.input_size, where_text, sample, seed, top, ids,
                         partition_by)
        self.where = where
        self._matched = None  # (ids, their layer counts) of the last chunk walked
        self._vocabularies: dict = {}  # slot -> its layer names (border_layer)
        self.t = W.device_tables(self.plan)
        self.start = len(self.plan.groups)
        if sample is None:
            self.start, self.suffix = W.suffix_tables(self.plan, self.t.axes)
        counted = self.analysis and self.input_size is not None
        self.counts = LayerCounts(self.plan) if counted else None
        if sample is not None:
            self.split(chunk)
            return
        self.width = int(self.suffix["V"].shape[-1])
        self.first = self.lo // self.width
        self.prefixes = -(-self.hi // self.width) - self.first
        self.reps = min(max(1, chunk // self.width), bucket(self.prefixes, 1))
        self.chunks = -(-self.prefixes // self.reps)
        self.chunk_candidates = self.reps * self.width

    def with_analysis(self) -> bool:
        return self.analysis

    def _id_counts(self, padded: np.ndarray):
        """The layer counts [2, N] of (padded) ids, or None: the walk's own for the ids
        it just matched, else counted per id."""
        if self.counts is None:
            return None
        last = self._matched
        n = 0 if last is None else last[0].size
        if n and padded.size >= n and np.array_equal(padded[:n], last[0]):
            return np.concatenate([last[1], np.repeat(last[1][:, :1], padded.size - n, 1)], 1)
        return self.counts.of_ids(padded)

    def _found(self, prefix: np.ndarray, counts, at: np.ndarray) -> np.ndarray:
        """The ids at flat positions ``at`` [n] of the walk's [R, C] block, remembering
        their layer counts for :meth:`rows`."""
        row, col = at // self.width, at % self.width
        ids = prefix[row] * self.width + col
        if counts is not None:
            own = counts["keys"][counts["key"][row], :, col].T  # [2, n]
            self._matched = (ids, counts["rows"][:, row] + own)
        return ids

    def count_of(self, c: int) -> int:
        if self.sample is not None:
            return super().count_of(c)
        first = (self.first + c * self.reps) * self.width
        last = (self.first + min(self.prefixes, (c + 1) * self.reps)) * self.width
        return min(last, self.hi) - max(first, self.lo)

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        """candidate_id, native keys, choices, geometry, valid and rf_ratio of ``ids``
        (and the SEARCH_ANALYSIS columns when a filter or ranking uses them)."""
        ids = np.asarray(ids, dtype=np.int64)
        n = ids.size
        padded = _padded(ids)
        names = (*GEOMETRY, "valid", *(LAYERWISE if self.analysis else ()))
        with jax.enable_x64(True):
            cols, _ = W.evaluate_ids(_shard(padded), self.t.groups, self._id_counts(padded),
                                     t=self.t, names=names, where=None)
            cols = jax.device_get(cols)
        space = self.space
        data = {"candidate_id": ids}
        if space.keys is not None:
            data.update(space.keys(ids))
        data.update(space.choice_columns(ids))
        def column(name):
            value, known = (np.broadcast_to(np.asarray(a), padded.shape)[:n] for a in cols[name])
            return value.astype(bool) if name == "valid" else typed_array(name, value, ~known)

        data.update({name: column(name) for name in (*GEOMETRY, "valid")})
        ratio = rf_ratio(*(data[c].to_numpy(dtype=float, na_value=np.nan)
                           for c in ("rf_h", "rf_w")), self.input_size)
        data["rf_ratio"] = typed_array("rf_ratio", np.nan_to_num(ratio), np.isnan(ratio))
        if self.analysis:
            layerwise = {name: column(name) for name in LAYERWISE}
            data["border_layer"] = self._border(ids, layerwise["n_critical"])
            data.update(layerwise)
        return pd.DataFrame(data)

    def _border(self, ids: np.ndarray, n_critical):
        """The border_layer column of ``ids``: null where n_critical is (no input size,
        an invalid candidate) or no layer exceeds the input."""
        known = ~np.asarray(pd.isna(n_critical))
        if not known.any():
            return typed_array("border_layer", np.full(ids.size, None, object))
        return border_layer(self.plan, ids, known, self._vocabularies)

    def matches(self, c: int) -> np.ndarray:
        """Ids of chunk c that pass the filter (or its top K)."""
        with jax.enable_x64(True):
            if self.sample is None:
                return self._walk(c, self.top)
            return self._sampled(self.sampled_ids(c), self.top)

    def _walk(self, c: int, top) -> np.ndarray:
        """Matching ids of chunk c of the exhaustive walk."""
        lo = c * self.reps
        real = min(self.prefixes, lo + self.reps) - lo
        prefix = np.arange(lo, lo + self.reps, dtype=np.int64) + self.first
        prefix[real:] = prefix[0]
        bounded = (self.lo, self.hi) != (0, self.space.size)
        counts = None if self.counts is None else self.counts.of_rows(
            prefix, self.width, lambda u: bucket(u, 1))
        mask, top = W.walk(_shard(prefix), real, np.array([self.lo, self.hi], np.int64),
                           self.suffix, self.t.groups[:self.start], counts, t=self.t,
                           start=self.start, where=self.where, bounded=bounded,
                           top=None if top is None else (
                               top[0], min(top[1], self.reps * self.width), top[2]))
        if top is not None:
            best, index = jax.device_get(top)
            index = np.sort(index[np.isfinite(best)])  # ids grow with the flat position
            return self._found(prefix, counts, index)
        mask = np.asarray(mask)[:real].reshape(-1)
        return self._found(prefix, counts, np.flatnonzero(mask))

    def _sampled(self, ids: np.ndarray, top) -> np.ndarray:
        """Matching ids among sampled ``ids``."""
        n = ids.size
        padded = _padded(ids)
        cols, mask = W.evaluate_ids(_shard(padded), self.t.groups, self._id_counts(padded),
                                    t=self.t,
                                    names=() if top is None else (top[0],), where=self.where)
        mask = np.asarray(mask)[:n]
        if top is None:
            return ids[mask]
        value, known = cols[top[0]]
        value = np.broadcast_to(np.asarray(value), padded.shape)[:n].astype(float)
        keep = mask & np.broadcast_to(np.asarray(known), padded.shape)[:n]
        order = np.lexsort((ids, -value if top[2] else value))
        order = order[keep[order]][: top[1]]
        return np.sort(ids[order])
