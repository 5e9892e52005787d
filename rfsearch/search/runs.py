"""What every search run shares: the id range, the chunks of a sample, the parameters a
manifest records, and the filter's view of a table of rows.

A run is the object :func:`rfsearch.search` drives: ``total`` candidates in ``chunks``
chunks; ``count_of(c)`` candidates in chunk c; ``matches(c)`` the ids of chunk c that
pass the filter (or its top K); ``rows(ids)`` their result rows in the declared
search schema (:func:`rfsearch.table.search_schema`). :class:`~.device_run.DeviceRun`
evaluates tabulated spaces on the device, :class:`~.host_run.HostRun` the spaces that
build each candidate's spec.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..errors import SpecError
from ..spaces.space import Space
from ..table import LAYERWISE, SEARCH_ANALYSIS, search_result
from .sampling import sample_ids

MAX_IDS = 1 << 63  # candidate ids are int64


class Run:
    """The shared part of a search run (see the module docstring)."""

    chunk_candidates: int  # candidates per chunk, set by each kind of run
    chunks: int

    def __init__(self, space: Space, input_size, where_text: str | None, sample: int | None,
                 seed: int, top: tuple | None, ids: tuple[int, int] | None,
                 partition_by: tuple[str, ...] = ()):
        if space.size >= MAX_IDS:
            raise SpecError(f"space {space.name!r} has {space.size:.3g} candidates, more than "
                            "64-bit ids can number; split it")
        self.lo, self.hi = (0, space.size) if ids is None else ids
        if not 0 <= self.lo < self.hi <= space.size:
            raise SpecError(f"ids must be a range within [0, {space.size}), got "
                            f"{self.lo}:{self.hi}")
        self.space, self.input_size, self.where_text = space, input_size, where_text
        self.sample, self.seed, self.top, self.partition_by = sample, seed, top, partition_by
        self.total = min(sample, self.hi - self.lo) if sample is not None else self.hi - self.lo

    def split(self, chunk: int) -> None:
        """Chunks of ``chunk`` consecutive positions (of the sample, or of the range)."""
        self.chunk_candidates = chunk
        self.chunks = math.ceil(self.total / chunk)

    def count_of(self, c: int) -> int:
        """Candidates chunk c evaluates."""
        return min(self.chunk_candidates, self.total - c * self.chunk_candidates)

    def sampled_ids(self, c: int) -> np.ndarray:
        """The ids of chunk c of the sample, in draw order."""
        return sample_ids(self.lo, self.hi, c * self.chunk_candidates, self.count_of(c),
                          self.seed)

    def expect(self, order: list[int]) -> None:
        """The chunks :meth:`matches` will be asked for, in order (a run may start the
        next one early)."""

    def close(self) -> None:
        """The run is over (finished or failed): stop any work started early."""

    def with_analysis(self) -> bool:
        """Whether the rows carry the SEARCH_ANALYSIS columns (a filter or ranking reads
        a LAYERWISE one)."""
        raise NotImplementedError

    def columns(self) -> list[str]:
        """The declared result columns its rows carry (besides the space's keys and
        choices)."""
        return [c for c in search_result(self.space.dims == 3)
                if self.with_analysis() or c not in SEARCH_ANALYSIS]

    def params(self) -> dict:
        """What identifies the run: a manifest with other parameters is another search
        (or the same one written by a version of rfsearch whose rows differ)."""
        size = self.input_size
        return {"space": self.space.name, "fingerprint": self.space.fingerprint(),
                "columns": self.columns(),
                "input_size": None if size is None else list(size), "where": self.where_text,
                "sample": self.sample, "seed": self.seed,
                "top": None if self.top is None else list(self.top), "ids": [self.lo, self.hi],
                "chunk_candidates": self.chunk_candidates, "chunks": self.chunks,
                "partition_by": list(self.partition_by),
                # a sample's rows in draw order (earlier versions sorted each chunk's)
                **({"sample_order": "draw"} if self.sample is not None else {})}


def uses_analysis(columns: set[str]) -> bool:
    """Whether these filter or ranking columns include a LAYERWISE analysis column."""
    return bool(columns & set(LAYERWISE))


def filter_columns(df: pd.DataFrame, names) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The (value, known) arrays the filter reads, for columns ``names`` of ``df``:
    booleans as bool, integers as int64 (ids beyond 2^53 stay exact, as on the device),
    the rest as float64, nulls unknown."""
    cols = {}
    for name in names:
        values = df[name]
        known = values.notna().to_numpy()
        if str(values.dtype) in ("bool", "boolean"):
            cols[name] = (values.fillna(False).to_numpy(dtype=bool), known)
        elif pd.api.types.is_integer_dtype(values.dtype):
            cols[name] = (values.to_numpy(dtype=np.int64, na_value=0), known)
        else:
            cols[name] = (values.to_numpy(dtype=float, na_value=0.0), known)
    return cols
