"""``search``: walk or sample a space on the device, filter there, stream matches to Parquet.

Exhaustive mode walks the id range in chunks of whole suffix spans (see
:func:`rfsearch.spaces.device.walk`); sampling mode takes consecutive positions of a
seeded random permutation of the ids (:func:`sample_ids`), so chunks never overlap and
any chunk can be recomputed alone. Only the
rows that pass ``where`` (or the chunk's top K) are decoded and leave the device.

Output folder: ``part-NNNNNN.parquet`` files, each holding the matches of consecutive
chunks (NNNNNN: the first), and ``_manifest.json``, rewritten atomically after each part,
naming the finished chunks and the run's parameters. Re-running the same command
resumes: finished chunks are skipped, and a part written but not yet recorded starts at
the first unfinished chunk, so it is rewritten: no candidate is lost or duplicated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .analysis import LAYERWISE_COLUMNS, rf_ratio
from .dataset import (
    finish_top,
    read_manifest,
    save_manifest,
    to_arrow,
    top_rows,
    write_atomic,
    write_part,
)
from .driver import parse_input_size
from .errors import SpecError
from .evaluate import evaluate
from .filter import Node, filter_mask, parse_filter, split_filter
from .host import HostRun
from .spaces import device as D
from .spaces.registry import resolve_space
from .spaces.space import Plan, Space, plan

DEFAULT_CHUNK = 1 << 22
MIN_BUCKET = 1 << 10
# Finished chunks are written together (one part file, one manifest update) when this
# many rows or chunks have gathered, or this many seconds have passed.
FLUSH_ROWS, FLUSH_CHUNKS, FLUSH_SECONDS = 1 << 20, 512, 5.0
# Analysis columns need every layer: evaluated on the host for the device's survivors.
HOST_COLUMNS = LAYERWISE_COLUMNS
HOST_BATCH = 20_000
HOST_LIMIT = 1_000_000  # candidates a filter may send to the host stage unfiltered
RESULT_COLUMNS = D.GEOMETRY


@dataclass
class SearchSummary:
    """What a run did: candidates covered, rows in the output, chunks, seconds, where."""

    space: str
    candidates: int
    matches: int
    chunks: int
    seconds: float
    output: str | None


def filter_schema(space: Space) -> dict[str, str]:
    """Columns a ``where`` filter may use, with their types."""
    schema = {c: "bool" if c in ("aligned", "valid") else "number" for c in RESULT_COLUMNS}
    schema["candidate_id"] = "number"
    for alias in space.id_aliases:
        schema[alias] = "number"
    for var in space.variables:
        if all(isinstance(x, int | float) and not isinstance(x, bool) for x in var.labels):
            schema[var.name] = "number"
    schema["rf_ratio"] = "number"
    for column in HOST_COLUMNS:
        schema[column] = "number"
    return schema


def _feistel(x: np.ndarray, half: int, keys: np.ndarray) -> np.ndarray:
    """A keyed bijection of [0, 2**(2*half)): four Feistel rounds on uint64."""
    mask = np.uint64((1 << half) - 1)
    left, right = x >> np.uint64(half), x & mask
    for key in keys:
        mixed = (right * np.uint64(0x9E3779B97F4A7C15) + key) & np.uint64(0xFFFFFFFFFFFFFFFF)
        mixed ^= mixed >> np.uint64(29)
        left, right = right, left ^ (mixed & mask)
    return (left << np.uint64(half)) | right


def sample_ids(lo: int, hi: int, start: int, count: int, seed: int) -> np.ndarray:
    """Positions [start, start + count) of a seeded random permutation of [lo, hi), sorted:
    chunks of a sample never share an id (sampling without replacement), and each chunk
    can be recomputed alone."""
    n = hi - lo
    half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    keys = np.random.default_rng([seed, 0x5EED]).integers(0, 2**63, 4, dtype=np.int64)
    keys = keys.astype(np.uint64)
    y = _feistel(np.arange(start, start + count, dtype=np.uint64), half, keys)
    out = y >= np.uint64(n)
    while out.any():  # cycle-walk back into [0, n): the domain is under 4n
        y[out] = _feistel(y[out], half, keys)
        out = y >= np.uint64(n)
    return np.sort(y.astype(np.int64) + lo)


def _bucket(n: int, smallest: int = MIN_BUCKET) -> int:
    """Padded length: a power of two, so a run compiles a few times."""
    return max(smallest, 1 << max(0, n - 1).bit_length())


def _shard(array: np.ndarray):
    """Spread the leading axis over the local devices (a no-op with one device)."""
    devices = jax.local_devices()
    if len(devices) == 1 or array.shape[0] % len(devices):
        return array
    mesh = jax.sharding.Mesh(np.array(devices), ("d",))
    return jax.device_put(array, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d")))


def rows_of(plan_: Plan, t: D.DeviceTables, ids: np.ndarray) -> pd.DataFrame:
    """The result rows of ``ids``: candidate_id, native keys, choices, geometry."""
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.size
    padded = np.concatenate([ids, np.repeat(ids[:1], _bucket(n) - n)]) if n else np.zeros(
        MIN_BUCKET, np.int64)
    with jax.enable_x64(True):
        cols, _ = D.evaluate_ids(_shard(padded), t.groups, t=t, names=RESULT_COLUMNS,
                                 where=None)
        cols = jax.device_get(cols)
    space = plan_.space
    data = {"candidate_id": ids}
    if space.keys is not None:
        data.update(space.keys(ids))
    data.update(space.choice_columns(ids))
    for name in (*RESULT_COLUMNS, "rf_ratio"):
        if name == "rf_ratio":
            ratio = rf_ratio(*(data[c].to_numpy(dtype=float, na_value=np.nan)
                               for c in ("rf_h", "rf_w")), plan_.input_size)
            data[name] = pd.array(ratio, dtype="Float64")
            continue
        value, known = cols[name]
        value = np.broadcast_to(np.asarray(value), padded.shape)[:n]
        known = np.broadcast_to(np.asarray(known), padded.shape)[:n]
        if name == "valid":
            data[name] = value.astype(bool)
            continue
        dtype = {"Int64": np.int64, "Int32": np.int32, "boolean": np.bool_}[
            "boolean" if name == "aligned" else "Int32" if name[:3] in ("str", "out")
            else "Int64"]
        arr = value.astype(dtype)
        data[name] = (pd.arrays.BooleanArray(arr, ~known) if dtype is np.bool_
                      else pd.arrays.IntegerArray(arr, ~known))
    return pd.DataFrame(data)


class _Run:
    """One search: the plan, the filter, the chunks, the output folder."""

    def __init__(self, space: Space, size, where: Node | None, where_text, sample, seed,
                 chunk, top, output, ids=None):
        self.where_text = where_text
        self.where, self.host = split_filter(where, set(HOST_COLUMNS))
        self.uses_host = self.host is not None or (top is not None and top[0] in HOST_COLUMNS)
        self.space = space
        self.plan = plan(space, size)
        self.t = D.device_tables(self.plan)
        self.sample, self.seed, self.top, self.output = sample, seed, top, output
        if space.size >= 1 << 63:
            raise SpecError(f"space {space.name!r} has {space.size:.3g} candidates, more than "
                            "64-bit ids can number; split it")
        self.lo, self.hi = (0, space.size) if ids is None else ids
        if not 0 <= self.lo < self.hi <= space.size:
            raise SpecError(f"ids must be a range within [0, {space.size}), got "
                            f"{self.lo}:{self.hi}")
        if sample is None:
            self.start, self.suffix = D.suffix_tables(self.plan, self.t.axes)
            self.width = int(self.suffix["V"].shape[-1])
            self.first = self.lo // self.width
            self.prefixes = -(-self.hi // self.width) - self.first
            self.reps = min(max(1, chunk // self.width), _bucket(self.prefixes, 1))
            self.chunks = -(-self.prefixes // self.reps)
            self.total = self.hi - self.lo
        else:
            self.chunk = chunk
            self.total = min(sample, self.hi - self.lo)  # without replacement
            self.chunks = -(-self.total // chunk)

    def params(self) -> dict:
        return {"space": self.space.name, "fingerprint": self.space.fingerprint(),
                "input_size": None if self.plan.input_size is None else list(
                    self.plan.input_size), "where": self.where_text, "sample": self.sample,
                "seed": self.seed, "top": None if self.top is None else list(self.top),
                "ids": [self.lo, self.hi], "chunk_candidates": self.chunk_candidates(),
                "chunks": self.chunks,
                "partition_by": list(getattr(self, "partition_by", ()))}

    def chunk_candidates(self) -> int:
        return self.chunk if self.sample is not None else self.reps * self.width

    def count_of(self, c: int) -> int:
        """Candidates chunk c evaluates."""
        if self.sample is not None:
            return min(self.chunk, self.total - c * self.chunk)
        first = (self.first + c * self.reps) * self.width
        last = (self.first + min(self.prefixes, (c + 1) * self.reps)) * self.width
        return min(last, self.hi) - max(first, self.lo)

    def ids_of(self, c: int) -> tuple[np.ndarray | None, int]:
        """Sampled ids of chunk c (None in exhaustive mode) and its candidate count."""
        if self.sample is None:
            return None, self.count_of(c)
        n = self.count_of(c)
        return sample_ids(self.lo, self.hi, c * self.chunk, n, self.seed), n

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        """Result rows of matching ids (with the analysis columns a host filter used)."""
        df = rows_of(self.plan, self.t, ids)
        if self.uses_host:
            extra = self.last_analysis.reset_index(drop=True)
            df = pd.concat([df, extra.astype(dict.fromkeys(extra.columns, "Int64"))], axis=1)
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
            df = evaluate(specs, input_size=self.plan.input_size, analysis=True)
            frames.append(df[list(HOST_COLUMNS)].set_index(pd.Index(part, name="candidate_id")))
        return pd.concat(frames) if frames else pd.DataFrame(
            columns=list(HOST_COLUMNS), index=pd.Index([], name="candidate_id"))

    def matches(self, c: int) -> np.ndarray:
        """Ids of chunk c that pass the filter (or its top K): the device filters, then
        any analysis terms run on the host for the survivors."""
        if not self.uses_host:
            return self._device_matches(c, self.top)
        ids = self._device_matches(c, None)
        table = self.analysis_of(ids)
        cols = {name: (table[name].to_numpy(dtype=float, na_value=0.0),
                       table[name].notna().to_numpy()) for name in HOST_COLUMNS}
        others = (self.host.columns() if self.host is not None else set()) - set(HOST_COLUMNS)
        if others:
            rows = rows_of(self.plan, self.t, ids)
            for name in others:
                values = rows[name]
                boolean = str(values.dtype) in ("bool", "boolean")
                cols[name] = (values.fillna(False).to_numpy(dtype=bool) if boolean
                              else values.to_numpy(dtype=float, na_value=0.0),
                              values.notna().to_numpy())
        if self.host is not None:
            ids = ids[filter_mask(self.host, cols, np)]
        if self.top is not None and ids.size:
            ranked = rows_of(self.plan, self.t, ids)
            for name in HOST_COLUMNS:
                ranked[name] = table.loc[ids, name].to_numpy()
            ids = np.sort(top_rows(ranked, self.top)["candidate_id"].to_numpy())
        self.last_analysis = table.loc[ids]
        return ids

    def _device_matches(self, c: int, top) -> np.ndarray:
        ids, _ = self.ids_of(c)
        with jax.enable_x64(True):
            if ids is None:
                lo = c * self.reps
                real = min(self.prefixes, lo + self.reps) - lo
                prefix = np.arange(lo, lo + self.reps, dtype=np.int64) + self.first
                prefix[real:] = prefix[0]
                bounded = (self.lo, self.hi) != (0, self.space.size)
                mask, top = D.walk(_shard(prefix), real, np.array([self.lo, self.hi], np.int64),
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
            n = ids.size
            padded = np.concatenate([ids, np.repeat(ids[:1], _bucket(n) - n)])
            cols, mask = D.evaluate_ids(_shard(padded), self.t.groups, t=self.t,
                                        names=() if top is None else (top[0],),
                                        where=self.where)
            mask = np.asarray(mask)[:n]
            if top is None:
                return ids[mask]
            value, known = cols[top[0]]
            value = np.broadcast_to(np.asarray(value), padded.shape)[:n].astype(float)
            keep = mask & np.broadcast_to(np.asarray(known), padded.shape)[:n]
            order = np.lexsort((ids, -value if top[2] else value))
            order = order[keep[order]][: top[1]]
            return np.sort(ids[order])








def search(space, *, output=None, where: str | None = None, sample: int | None = None,
           seed: int = 0, input_size=None, chunk: int = DEFAULT_CHUNK, top: int | None = None,
           by: str | None = None, ascending: bool = False, ids: tuple[int, int] | None = None,
           partition_by=(), progress: bool = False):
    """Evaluate a space (built-in name, grid file or dict, or :class:`Space`).

    Without ``output`` returns a DataFrame of the matching rows (for spaces small
    enough to hold); with ``output`` writes a Parquet dataset folder and returns a
    :class:`SearchSummary`. ``where``: filter expression (default: the grid's own);
    ``sample``: draw that many distinct ids (seeded) instead of walking all; ``top``/``by``:
    keep the K rows with the largest (``ascending``: smallest) ``by``; ``ids``: only the
    candidates in ``[start, stop)`` (walked, or sampled from); ``partition_by``: choice
    columns to hive-partition the output folder by (``col=value/`` directories).
    """
    space_obj, default_where = resolve_space(space)
    where_text = where if where is not None else default_where
    node = parse_filter(where_text, filter_schema(space_obj)) if where_text else None
    for name, value, low in (("chunk", chunk, 1), ("sample", sample, 1), ("top", top, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise SpecError(f"{name} must be a positive integer, got {value!r}")
    if (top is None) != (by is None):
        raise SpecError("top and by go together: keep the K rows with the best 'by' column")
    if by is not None and filter_schema(space_obj).get(by) != "number":
        raise SpecError(f"by must name a numeric column, got {by!r}")
    top_spec = None if top is None else (by, top, not ascending)
    size = parse_input_size(input_size) if input_size is not None else None
    partition = (partition_by,) if isinstance(partition_by, str) else tuple(partition_by)
    choices = {v.name for v in space_obj.variables}
    for column in partition:
        if column not in choices:
            raise SpecError(f"partition_by: {column!r} is not a choice column of "
                            f"{space_obj.name!r} (choices: {', '.join(sorted(choices))})")
    if partition and (output is None or top is not None):
        raise SpecError("partition_by needs an output folder and no top")
    kind = _Run if space_obj.builder is None else HostRun
    run = kind(space_obj, size, node, where_text, sample, seed, chunk, top_spec, output, ids)
    if getattr(run, "uses_host", False) and run.where is None and run.total > HOST_LIMIT:
        raise SpecError(f"where: the analysis columns are computed per candidate on the host; "
                        f"add a cheaper condition (e.g. on rf_h) with 'and' to search "
                        f"{run.total:,} candidates")
    run.partition_by = partition
    folder = Path(output) if output is not None else None
    done = read_manifest(folder, run) if folder else set()
    frames, matches, t0 = [], 0, time.perf_counter()
    with tqdm(total=run.total, unit="cand", unit_scale=True, disable=not progress,
              desc=space_obj.name) as bar:
        pending: list[pd.DataFrame] = []  # rows of finished chunks not yet written
        pending_chunks: list[int] = []
        last_flush = time.perf_counter()

        def flush():
            nonlocal last_flush
            if pending:
                write_part(folder, pending_chunks[0], pd.concat(pending, ignore_index=True),
                           run, partition)
            done.update(pending_chunks)
            save_manifest(folder, run, done, False)
            pending.clear()
            pending_chunks.clear()
            last_flush = time.perf_counter()

        for c in range(run.chunks):
            count = run.count_of(c)
            if c in done:
                if pending_chunks and folder is not None:
                    flush()  # a part file holds consecutive chunks only
                bar.update(count)
                continue
            ids = run.matches(c)
            df = run.rows(ids) if ids.size else None
            matches += 0 if df is None else len(df)
            if folder is not None:
                pending_chunks.append(c)
                if df is not None:
                    pending.append(df)
                if (sum(map(len, pending)) >= FLUSH_ROWS or len(pending_chunks) >= FLUSH_CHUNKS
                        or (not partition  # partitioned groups must not depend on time
                            and time.perf_counter() - last_flush >= FLUSH_SECONDS)):
                    flush()
            elif df is not None:
                frames.append(df)
            bar.update(count)
            bar.set_postfix(matches=matches)
        if folder is not None and pending_chunks:
            flush()
    seconds = time.perf_counter() - t0
    if folder is None:
        df = pd.concat(frames, ignore_index=True) if frames else run.rows(
            np.zeros(0, np.int64))
        return top_rows(df, top_spec) if top_spec else df
    if top_spec is not None:
        finish_top(folder, run, done)
    if not any(folder.rglob("part-*.parquet")):  # no match at all: keep the schema readable
        empty = run.rows(np.zeros(0, np.int64))
        write_atomic(folder / "part-000000.parquet",
                     lambda p: pq.write_table(to_arrow(empty, run), p, compression="zstd"))
    save_manifest(folder, run, done, True, top_merged=top_spec is not None)
    rows = sum(pq.read_metadata(p).num_rows for p in folder.rglob("part-*.parquet"))
    return SearchSummary(space_obj.name, run.total, rows, run.chunks, seconds, str(folder))
