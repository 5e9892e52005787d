"""Searching tabulated spaces on the device.

Exhaustive mode walks the id range in chunks of whole suffix spans
(:func:`~.walk.walk`); sampling mode evaluates the sampled ids of each chunk
(:func:`~.walk.evaluate_ids`). Only the ids that pass the filter (or the chunk's top K)
leave the device; their rows are then evaluated once more, column by column. Filter
terms on the LAYERWISE analysis columns need every layer: they run on the host, from
the full specs of the device's survivors.
"""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from ..analysis import rf_ratio
from ..errors import SpecError
from ..evaluate import evaluate
from ..table import GEOMETRY, LAYERWISE, typed_array
from . import walk as W
from .filter import Node, filter_mask, split_filter
from .output import top_rows
from .plan import plan
from .runs import Run, filter_columns

MIN_BUCKET = 1 << 10
HOST_BATCH = 20_000  # candidates per evaluate() call of the host stage
HOST_LIMIT = 1_000_000  # candidates a filter may send to the host stage unfiltered


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
        self.plan = plan(space, size)
        super().__init__(space, self.plan.input_size, where_text, sample, seed, top, ids,
                         partition_by)
        self.where, self.host = split_filter(where, set(LAYERWISE))
        self.uses_host = self.host is not None or (top is not None and top[0] in LAYERWISE)
        if self.uses_host and self.where is None and self.total > HOST_LIMIT:
            raise SpecError(f"where: the analysis columns are computed per candidate on the "
                            f"host; add a cheaper condition (e.g. on rf_h) with 'and' to search "
                            f"{self.total:,} candidates")
        self.t = W.device_tables(self.plan)
        if sample is not None:
            self.split(chunk)
            return
        self.start, self.suffix = W.suffix_tables(self.plan, self.t.axes)
        self.width = int(self.suffix["V"].shape[-1])
        self.first = self.lo // self.width
        self.prefixes = -(-self.hi // self.width) - self.first
        self.reps = min(max(1, chunk // self.width), bucket(self.prefixes, 1))
        self.chunks = -(-self.prefixes // self.reps)
        self.chunk_candidates = self.reps * self.width

    def with_analysis(self) -> bool:
        return self.uses_host

    def count_of(self, c: int) -> int:
        if self.sample is not None:
            return super().count_of(c)
        first = (self.first + c * self.reps) * self.width
        last = (self.first + min(self.prefixes, (c + 1) * self.reps)) * self.width
        return min(last, self.hi) - max(first, self.lo)

    def geometry(self, ids: np.ndarray) -> pd.DataFrame:
        """candidate_id, native keys, choices, geometry, valid and rf_ratio of ``ids``."""
        ids = np.asarray(ids, dtype=np.int64)
        n = ids.size
        padded = _padded(ids)
        with jax.enable_x64(True):
            cols, _ = W.evaluate_ids(_shard(padded), self.t.groups, t=self.t,
                                     names=(*GEOMETRY, "valid"), where=None)
            cols = jax.device_get(cols)
        space = self.space
        data = {"candidate_id": ids}
        if space.keys is not None:
            data.update(space.keys(ids))
        data.update(space.choice_columns(ids))
        for name in (*GEOMETRY, "valid"):
            value, known = (np.broadcast_to(np.asarray(a), padded.shape)[:n] for a in cols[name])
            data[name] = value.astype(bool) if name == "valid" else typed_array(
                name, value, ~known)
        ratio = rf_ratio(*(data[c].to_numpy(dtype=float, na_value=np.nan)
                           for c in ("rf_h", "rf_w")), self.input_size)
        data["rf_ratio"] = typed_array("rf_ratio", np.nan_to_num(ratio), np.isnan(ratio))
        return pd.DataFrame(data)

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        """Result rows of matching ids (with the analysis columns a host filter used)."""
        df = self.geometry(ids)
        if self.uses_host:
            extra = self.last_analysis.reset_index(drop=True)
            for name in LAYERWISE:
                values = extra[name]
                df[name] = typed_array(name, values.to_numpy(dtype=float, na_value=0),
                                       values.isna().to_numpy())
        return df

    def analysis_of(self, ids: np.ndarray) -> pd.DataFrame:
        """Analysis columns of ``ids`` (index candidate_id), from their full specs."""
        frames = []
        for lo in range(0, ids.size, HOST_BATCH):
            part, specs = ids[lo:lo + HOST_BATCH], []
            for i in part:
                try:
                    specs.append(self.space.spec(int(i)))
                except SpecError:  # not a network (invalid choice): null analysis
                    specs.append({"name": "invalid", "layers": []})
            df = evaluate(specs, input_size=self.input_size, analysis=True)
            frames.append(df[list(LAYERWISE)].set_index(pd.Index(part, name="candidate_id")))
        return pd.concat(frames) if frames else pd.DataFrame(
            columns=list(LAYERWISE), index=pd.Index([], name="candidate_id"))

    def matches(self, c: int) -> np.ndarray:
        """Ids of chunk c that pass the filter (or its top K): the device filters, then
        any analysis terms run on the host for the survivors."""
        if not self.uses_host:
            return self._device_matches(c, self.top)
        ids = self._device_matches(c, None)
        table = self.analysis_of(ids)
        cols = filter_columns(table, LAYERWISE)
        others = (self.host.columns() if self.host is not None else set()) - set(LAYERWISE)
        if others:
            cols |= filter_columns(self.geometry(ids), others)
        if self.host is not None:
            ids = ids[filter_mask(self.host, cols, np)]
        if self.top is not None and ids.size:
            ranked = self.geometry(ids)
            for name in LAYERWISE:
                ranked[name] = table.loc[ids, name].to_numpy()
            ids = np.sort(top_rows(ranked, self.top)["candidate_id"].to_numpy())
        self.last_analysis = table.loc[ids]
        return ids

    def _device_matches(self, c: int, top) -> np.ndarray:
        with jax.enable_x64(True):
            if self.sample is None:
                return self._walk(c, top)
            return self._sampled(self.sampled_ids(c), top)

    def _walk(self, c: int, top) -> np.ndarray:
        """Matching ids of chunk c of the exhaustive walk."""
        lo = c * self.reps
        real = min(self.prefixes, lo + self.reps) - lo
        prefix = np.arange(lo, lo + self.reps, dtype=np.int64) + self.first
        prefix[real:] = prefix[0]
        bounded = (self.lo, self.hi) != (0, self.space.size)
        mask, top = W.walk(_shard(prefix), real, np.array([self.lo, self.hi], np.int64),
                           self.suffix, self.t.groups[:self.start], t=self.t,
                           start=self.start, where=self.where, bounded=bounded,
                           top=None if top is None else (
                               top[0], min(top[1], self.reps * self.width), top[2]))
        if top is not None:
            best, index = jax.device_get(top)
            index = index[np.isfinite(best)]
            return np.sort(prefix[index // self.width] * self.width + index % self.width)
        mask = np.asarray(mask)[:real].reshape(-1)
        hits = np.flatnonzero(mask)
        return prefix[hits // self.width] * self.width + hits % self.width

    def _sampled(self, ids: np.ndarray, top) -> np.ndarray:
        """Matching ids among sampled ``ids``."""
        n = ids.size
        padded = _padded(ids)
        cols, mask = W.evaluate_ids(_shard(padded), self.t.groups, t=self.t,
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
