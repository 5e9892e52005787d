"""Searching spaces that are evaluated candidate by candidate (``Space.builder``).

Some macro structures are not a chain of blocks (a DARTS cell reads the two cells
before it), so no block tables apply: each drawn id becomes its full spec and goes
through the core :func:`~rfsearch.evaluate`, the filter runs in numpy over those rows.
Exact, at a few hundred candidates per second: such spaces are for sampling.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .analysis import LAYERWISE_COLUMNS, rf_ratio
from .errors import SpecError
from .evaluate import evaluate
from .filter import Node, filter_mask
from .spaces.device import GEOMETRY as RESULT_GEOMETRY

HOST_CHUNK = 4096
EXHAUSTIVE_LIMIT = 1_000_000
GEOMETRY = tuple(c for c in RESULT_GEOMETRY if c != "valid")
ANALYSIS = (*LAYERWISE_COLUMNS, "rf_ratio")


class HostRun:
    """The run object of :func:`rfsearch.search` for builder spaces (same interface as
    the device run: chunks, matches, rows, params)."""

    def __init__(self, space, size, where: Node | None, where_text, sample, seed, chunk, top,
                 output, ids=None):
        self.space, self.where, self.where_text, self.top = space, where, where_text, top
        self.sample, self.seed, self.host = sample, seed, None
        self.plan = SimpleNamespace(input_size=size or space.input_size)
        self.lo, self.hi = (0, space.size) if ids is None else ids
        if not 0 <= self.lo < self.hi <= space.size:
            raise SpecError(f"ids must be a range within [0, {space.size}), got "
                            f"{self.lo}:{self.hi}")
        self.chunk = min(chunk, HOST_CHUNK)
        self.total = min(sample, self.hi - self.lo) if sample is not None else self.hi - self.lo
        if sample is None and self.total > EXHAUSTIVE_LIMIT:
            raise SpecError(f"space {space.name!r} is evaluated per candidate: use --sample N "
                            f"(or --ids) for its {self.total:,} candidates")
        self.chunks = math.ceil(self.total / self.chunk)
        used = (where.columns() if where is not None else set()) | (
            {top[0]} if top is not None else set())
        self.analysis = bool(used & set(ANALYSIS))
        self._rows = pd.DataFrame()

    def params(self) -> dict:
        size = self.plan.input_size
        return {"space": self.space.name, "fingerprint": self.space.fingerprint(),
                "input_size": None if size is None else list(size), "where": self.where_text,
                "sample": self.sample, "seed": self.seed,
                "top": None if self.top is None else list(self.top), "ids": [self.lo, self.hi],
                "chunk_candidates": self.chunk, "chunks": self.chunks,
                "partition_by": list(getattr(self, "partition_by", ()))}

    def count_of(self, c: int) -> int:
        return min(self.chunk, self.total - c * self.chunk)

    def ids_of(self, c: int) -> np.ndarray:
        n = self.count_of(c)
        if self.sample is None:
            start = self.lo + c * self.chunk
            return np.arange(start, start + n, dtype=np.int64)
        from .searcher import sample_ids

        return sample_ids(self.lo, self.hi, c * self.chunk, n, self.seed)

    def evaluate(self, ids: np.ndarray) -> pd.DataFrame:
        """Result rows of ``ids``: keys, choices, geometry, valid (and analysis)."""
        specs = [self.space.spec(int(i)) for i in ids]
        ev = evaluate(specs, input_size=self.plan.input_size, analysis=self.analysis) if len(
            ids) else pd.DataFrame(columns=[*GEOMETRY, *ANALYSIS, "error"])
        data = {"candidate_id": ids}
        if self.space.keys is not None:
            data.update(self.space.keys(ids))
        data.update(self.space.choice_columns(ids))
        df = pd.DataFrame(data)
        for column in (*GEOMETRY, *(ANALYSIS if self.analysis else ())):
            df[column] = ev[column].to_numpy() if column in ev else pd.NA
        df["valid"] = ev["error"].isna().to_numpy()
        if not self.analysis:
            df["rf_ratio"] = pd.array(rf_ratio(*(df[c].to_numpy(dtype=float, na_value=np.nan)
                                                 for c in ("rf_h", "rf_w")),
                                               self.plan.input_size), dtype="Float64")
        return df

    def matches(self, c: int) -> np.ndarray:
        ids = self.ids_of(c)
        df = self.evaluate(ids)
        if self.where is not None:
            cols = {}
            for name in self.where.columns():
                values = df[name] if name != "candidate_id" else pd.Series(ids)
                known = values.notna().to_numpy()
                if values.dtype == bool or str(values.dtype) == "boolean":
                    cols[name] = (values.fillna(False).to_numpy(dtype=bool), known)
                else:
                    cols[name] = (values.to_numpy(dtype=float, na_value=0.0), known)
            df = df[filter_mask(self.where, cols, np)]
        if self.top is not None:
            from .dataset import top_rows

            df = top_rows(df, self.top).sort_values("candidate_id")
        self._rows = df.set_index("candidate_id", drop=False)
        return df["candidate_id"].to_numpy(dtype=np.int64)

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        if not len(ids):
            return self.evaluate(np.zeros(0, np.int64)).iloc[:0]
        return self._rows.loc[ids].reset_index(drop=True)
