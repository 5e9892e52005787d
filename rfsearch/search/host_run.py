"""Searching spaces that are evaluated candidate by candidate (``Space.per_candidate``).

Some macro structures are not a chain of blocks (a DARTS cell reads the two cells
before it), and blocks that resample (upsampling, transposed convolutions, pixel
shuffles), crop, pool in ceil mode or have 1 or 3 axes need the periodic program, so no
block tables apply: each id becomes its full spec and goes through the core
:func:`~rfsearch.evaluate` in chunks, and the filter runs in numpy over those rows.
Exact, and far slower than the tabulated walk: such spaces are for sampling or for grids
of up to a million candidates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..analysis import rf_ratio_axes
from ..axes import size_for
from ..errors import SpecError
from ..evaluate import evaluate
from ..table import LAYERWISE, geometry, typed_array
from .filter import Node, filter_mask
from .output import top_rows
from .runs import Run, filter_columns, uses_analysis

HOST_CHUNK = 4096
EXHAUSTIVE_LIMIT = 1_000_000


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
        if sample is None and self.total > EXHAUSTIVE_LIMIT:
            raise SpecError(f"space {space.name!r} is evaluated per candidate: use --sample N "
                            f"(or --ids) for its {self.total:,} candidates")
        self.split(min(chunk, HOST_CHUNK))
        used = (where.columns() if where is not None else set()) | (
            {top[0]} if top is not None else set())
        self.analysis = uses_analysis(used)
        self._rows = pd.DataFrame()

    def with_analysis(self) -> bool:
        return self.analysis

    def ids_of(self, c: int) -> np.ndarray:
        if self.sample is not None:
            return self.sampled_ids(c)
        start = self.lo + c * self.chunk_candidates
        return np.arange(start, start + self.count_of(c), dtype=np.int64)

    def evaluate(self, ids: np.ndarray) -> pd.DataFrame:
        """Result rows of ``ids`` in the declared order: keys, choices, geometry, valid,
        rf_ratio (and the analysis columns)."""
        analysis = LAYERWISE if self.analysis else ()
        specs = [self.space.spec(int(i)) for i in ids]
        ev = evaluate(specs, input_size=self.input_size, analysis=self.analysis) if len(
            ids) else None
        data = {"candidate_id": ids}
        if self.space.keys is not None:
            data.update(self.space.keys(ids))
        data.update(self.space.choice_columns(ids))
        df = pd.DataFrame(data)
        for column in geometry(self.space.dims == 3):
            df[column] = ev[column].array if ev is not None else typed_array(
                column, np.zeros(0))
        df["valid"] = ev["error"].isna().to_numpy() if ev is not None else np.zeros(0, bool)
        ratio = _ratio(ev, self.input_size)
        df["rf_ratio"] = typed_array("rf_ratio", np.nan_to_num(ratio), np.isnan(ratio))
        for column in analysis:
            df[column] = ev[column].array if ev is not None else typed_array(
                column, np.zeros(0))
        return df

    def matches(self, c: int) -> np.ndarray:
        ids = self.ids_of(c)
        df = self.evaluate(ids)
        if self.where is not None:
            df = df[filter_mask(self.where, filter_columns(df, self.where.columns()), np)]
        if self.top is not None:
            df = top_rows(df, self.top).sort_values("candidate_id")
        self._rows = df.set_index("candidate_id", drop=False)
        return df["candidate_id"].to_numpy(dtype=np.int64)

    def rows(self, ids: np.ndarray) -> pd.DataFrame:
        if not len(ids):
            return self.evaluate(np.zeros(0, np.int64))
        return self._rows.loc[ids].reset_index(drop=True)
