"""Coordinate maps between output features and input pixels, vectorised.

Per axis, output feature ``i`` of a layer with receptive field ``r``, effective stride
``S`` and effective padding ``P`` reads input pixels::

    [i*S - P, i*S - P + r - 1]          (it may reach into the padding)

whose centre is ``c = i*S - P + (r - 1) / 2``; the inverse map is
``i = (c + P - (r - 1) / 2) / S`` (Araujo, Norris, Sim, Distill 2019). Arguments
broadcast like numpy arrays, so millions of features map in one call. Axes are named:
``y`` (height, the ``_h`` columns) and ``x`` (width, the ``_w`` columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from .errors import SpecError


class Point(NamedTuple):
    y: np.ndarray
    x: np.ndarray


class Box(NamedTuple):
    """Inclusive input-pixel bounds of a receptive field."""

    top: np.ndarray
    left: np.ndarray
    bottom: np.ndarray
    right: np.ndarray


@dataclass(frozen=True)
class ReceptiveField:
    """The geometry of one layer's features: (h, w) pairs of size, stride and padding."""

    rf: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]

    @classmethod
    def from_row(cls, row) -> ReceptiveField:
        """From a result row (``evaluate``'s network or per-layer row, or a search row)."""
        values = {c: (row[f"{c}_h"], row[f"{c}_w"]) for c in ("rf", "stride", "padding")}
        missing = [f"{c}_{a}" for c, pair in values.items() for a, v in zip("hw", pair,
                                                                           strict=True)
                   if pd.isna(v)]
        if missing:
            name = row.get("name", "this row") if hasattr(row, "get") else "this row"
            raise SpecError(f"{name}: {', '.join(missing)} unknown (an invalid row, a global "
                            "pool without input size, or 'same' padding without input size)")
        return cls(*({k: tuple(int(v) for v in pair) for k, pair in values.items()}.values()))

    def start(self, i, axis: int) -> np.ndarray:
        """First input pixel read by feature ``i`` along ``axis`` (0 = y, 1 = x)."""
        return np.asarray(i) * self.stride[axis] - self.padding[axis]

    def box(self, y, x) -> Box:
        """Inclusive input box of feature (y, x)."""
        top, left = self.start(y, 0), self.start(x, 1)
        return Box(top, left, top + self.rf[0] - 1, left + self.rf[1] - 1)

    def center(self, y, x) -> Point:
        """Input coordinates of the centre of feature (y, x) (half-pixels for even RFs)."""
        return Point(*(self.start(i, a) + (self.rf[a] - 1) / 2 for a, i in enumerate((y, x))))

    def feature(self, cy, cx) -> Point:
        """The (fractional) feature coordinates whose centre is input point (cy, cx)."""
        return Point(*((np.asarray(c) + self.padding[a] - (self.rf[a] - 1) / 2)
                       / self.stride[a] for a, c in enumerate((cy, cx))))

    def nearest_feature(self, cy, cx) -> Point:
        """The feature whose centre is nearest to input point (cy, cx) (ties round down)."""
        f = self.feature(cy, cx)
        return Point(*(np.ceil(v - 0.5).astype(np.int64) for v in f))
