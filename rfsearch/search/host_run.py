"""Searching spaces that are evaluated candidate by candidate (``Space.per_candidate``).

Some macro structures are not a chain of blocks (a DARTS cell reads the two cells
before it), and blocks that resample (upsampling, transposed convolutions, pixel
shuffles), crop, pool in ceil mode or have 1 or 3 axes need the periodic program, so no
block tables apply: each id becomes its full spec and goes through the core
:func:`~rfsearch.evaluate` in chunks, and the filter runs in numpy over those rows.
Exact, and far slower than the tabulated walk: such spaces are for sampling or for grids
of up to a million candidates. A space with a ``batcher`` (DARTS) encodes a whole chunk
of ids as one DAG Batch instead, without a loop per candidate, whenever its rows need no
analysis column and the input size is 2-D (the same rows, far faster).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import rf_ratio_axes
from ..axes import size_for
from ..errors import SpecError
from ..evaluate import evaluate
from ..table import SEARCH_ANALYSIS, geometry, typed_array
from .ahead import Ahead
from .filter import Node, filter_mask
from .output import top_rows
from .runs import Run, filter_columns, uses_analysis

HOST_CHUNK = 4096
# Candidates per chunk encoded as one Batch (DARTS: ~4.5 kB each), and per kernel call
# within it (several calls run concurrently). Small enough that the host reuses the
# chunk's memory instead of mapping fresh pages for every chunk.
BATCH_CHUNK, BATCH_CALL = 1 << 13, 1 << 12
EXHAUSTIVE_LIMIT = 1_000_000
BATCHED_EXHAUSTIVE_LIMIT = 1 << 30  # walked without --sample when encoded as batches


def _ratio(ev: pd.DataFrame | None, size) -> np.ndarray:
    """rf_ratio of evaluate's rows: the smallest rf over input size among the axes each
    row has (1-D rows fill only ``_w``; NaN without a size or for an invalid row)."""
    if ev is None:
        return np.zeros(0)
    axes = [a for a in "dhw" if f"rf_{a}" in ev]
    rf = np.stack([ev[f"rf_{a}"].to_numpy(dtype=float, na_value=np.nan) for a in axes])
    ratio = np.full(len(ev), np.nan)
    if size is None:
        return ratio
    dims = (~np.isnan(rf)).sum(axis=0)
    for d in (1, 2, 3):
        try:
            per_axis = np.asarray(size_for(tuple(size), d), float)
        except SpecError:  # the size does not fit such rows: they are error rows anyway
            continue
        rows = dims == d
        ratio[rows] = rf_ratio_axes(rf[len(axes) - d:, rows], per_axis)
    return ratio


class HostRun(Run):
    """A search of a space built candidate by candidate (see the module docstring)."""

    def __init__(self, space, size, where: Node | None, where_text, sample, seed, chunk, top,
                 ids=None, partition_by=()):
        super().__init__(space, size or space.input_size, where_text, sample, seed, top, ids,
                         partition_by)
        self.where = where
        used = (where.columns() if where is not None else set()) | (
            {top[0]} if top is not None else set())
        self.analysis = uses_analysis(used)
        size = self.input_size
        self.batched = space.batcher is not None and not self.analysis and (
            size is None or len(size) <= 2)
        limit = BATCHED_EXHAUSTIVE_LIMIT if self.batched else EXHAUSTIVE_LIMIT
        if sample is None and self.total > limit:
            asked = "--ids covers" if ids is not None else "the space has"
            raise SpecError(f"space {space.name!r} is evaluated per candidate, at most "
                            f"{limit:,} in one search ({asked} {self.total:,}): use "
                            f"--sample N, or --ids A:B for a range of at most {limit:,}")
        self.split(min(chunk, BATCH_CHUNK if self.batched else HOST_CHUNK))
        self._rows = pd.DataFrame()
        self._ahead = Ahead(lambda c: self.evaluate(self.ids_of(c)), self.chunks)

    def with_analysis(self) -> bool:
        return self.analysis

    def expect(self, order: list[int]) -> None:
        self._ahead.expect(order)

    def close(self) -> None:
        self._ahead.close()

    def ids_of(self, c: int) -> np.ndarray:
        if self.sample is not None:
            return self.sampled_ids(c)
        start = self.lo + c * self.chunk_candidates
        return np.arange(start, start + self.count_of(c), dtype=np.int64)

    def evaluate(self, ids: np.ndarray) -> pd.DataFrame:
        """Result rows of ``ids`` in the declared order: keys, choices, geometry, valid,
        rf_ratio (and the analysis columns)."""
        analysis = SEARCH_ANALYSIS if self.analysis else ()
        networks = self.space.batcher(ids) if self.batched else [
            self.space.spec(int(i)) for i in ids]
        ev = evaluate(networks, input_size=self.input_size, analysis=self.analysis,
                      chunk_size=BATCH_CALL if self.batched else None) if len(ids) else None
        data = {"candidate_id": ids}
        if self.space.keys is not None:
            data.update(self.space.keys(ids))
        data.update(self.space.choice_columns(ids))
        df = pd.DataFrame(data)
        for column in geometry(self.space.dims == 3):  # a chunk without a 3-D network
            df[column] = ev[column].array if ev is not None and column in ev else typed_array(
                column, np.zeros(len(ids)), np.ones(len(ids), bool))  # has no _d columns
        df["valid"] = ev["error"].isna().to_numpy() if ev is not None else np.zeros(0, bool)
        ratio = _ratio(ev, self.input_size)
        df["rf_ratio"] = typed_array("rf_ratio", np.nan_to_num(ratio), np.isnan(ratio))
        for column in analysis:
            df[column] = ev[column].array if ev is not None else typed_array(
                column, np.zeros(0))
        return df

    def matches(self, c: int) -> np.ndarray:
        df = self._ahead.get(c) if self.batched else self.evaluate(self.ids_of(c))
        if self.where is not None:  # a constant filter ('true') gives one value: every row's
            mask = filter_mask(self.where, filter_columns(df, self.where.columns()), np)
            df = df[np.broadcast_to(mask, len(df))]
        if self.top is not None:
            df = top_rows(df, self.top).sort_values("candidate_id")
        self._rows = df.set_index("candidate_id", drop=False)
        return df["candidate_id"].to_numpy(dtype=np.int64)

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        if not len(ids):
            return self.evaluate(np.zeros(0, np.int64))
        return self._rows.loc[ids].reset_index(drop=True)
