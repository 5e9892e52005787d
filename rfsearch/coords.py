"""Coordinate maps between output features and input pixels, vectorised.

Per axis, output feature ``i`` of a layer with receptive field ``r``, effective stride
``S`` and effective padding ``P`` reads input pixels::

    [i*S - P, i*S - P + r - 1]          (it may reach into the padding)

whose centre is ``c = i*S - P + (r - 1) / 2``; the inverse map is
``i = (c + P - (r - 1) / 2) / S`` (Araujo, Norris, Sim, Distill 2019). Arguments
broadcast like numpy arrays, so millions of features map in one call. Axes are named:
``y`` (height, the ``_h`` columns) and ``x`` (width, the ``_w`` columns).

After upsampling the stride is a fraction and boxes repeat with a period T instead:
feature ``i = φ + q T`` reads ``[lo[φ] + q K, hi[φ] + q K]`` (:mod:`rfsearch.periodic`).
:meth:`ReceptiveField.of` keeps those tables, so :meth:`~ReceptiveField.box` is exact for
every feature; a result row alone (:meth:`~ReceptiveField.from_row`) cannot describe it.
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


class Phases(NamedTuple):
    """One axis of a periodic geometry: period T, advance K, boxes of units 0 .. T-1."""

    T: int
    K: int
    lo: tuple[int, ...]
    hi: tuple[int, ...]

    def at(self, i, table) -> np.ndarray:
        q, r = np.divmod(np.asarray(i, dtype=np.int64), self.T)
        return np.asarray(table, np.int64)[r] + q * self.K


def _phases(state: dict, axis: int) -> Phases:
    """One axis of a network's output state: its period, or unit by unit (align_corners)
    the map's own units, later ones repeating them shifted by the map's length times the
    jump (rounded down: those units are past the map)."""
    from .periodic_eval import boxes

    T, K, origin, n = (int(state[k][axis, 0]) for k in ("T", "K", "origin", "size"))
    if origin:
        lo, hi = boxes(state, axis, 0)
        T, K = n, n * K // T
    else:
        lo, hi = state["lo"][axis, :T, 0], state["hi"][axis, :T, 0]
    return Phases(T, K, tuple(int(v) for v in lo), tuple(int(v) for v in hi))


@dataclass(frozen=True)
class ReceptiveField:
    """The geometry of one layer's features: (h, w) pairs of size, stride and padding
    (and, from :meth:`of`, the per-unit boxes of each axis over one period)."""

    rf: tuple[int, ...]  # one per axis: (h, w); from :meth:`of`, (w,) or (d, h, w) too
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    phases: tuple[Phases, ...] | None = None

    @classmethod
    def of(cls, spec, input_size=None) -> ReceptiveField:
        """The exact geometry of one network's output, every unit's box included. A 1-D
        or 3-D network (audio, video) has one entry per axis in PyTorch's order, read
        with :meth:`start` / :meth:`end`; the (y, x) methods take a 2-D one."""
        from . import recurrence as R
        from .axes import parse_input_sizes, size_for
        from .periodic_eval import geometry, output_states
        from .sources import resolve
        from .spec import size_misfit

        src = resolve(spec, input_size)[0]
        if src.errors or len(src.networks) != 1:
            raise SpecError(src.errors[0][2] if src.errors else
                            "ReceptiveField.of takes one network")
        dims = src.networks[0].dims
        sizes = parse_input_sizes(input_size) if input_size is not None else src.size
        misfit = size_misfit(src.networks[0], sizes)
        if misfit:
            raise SpecError(f"{src.networks[0].name}: {misfit}")
        state = output_states(src.networks, size_for(sizes, dims))  # a model file: its own
        if (state["fault"] != R.NO_FAULT).any():  # evaluate's own message says why
            from .evaluate import evaluate

            why = evaluate(spec, input_size=input_size)["error"].iloc[0]
            raise SpecError(why if isinstance(why, str) else
                            f"{src.networks[0].name}: not a valid network at this size")
        geo = geometry(state)
        phases = tuple(_phases(state, a) for a in range(dims))
        return cls(*(tuple(int(geo[k][0][a, 0]) for a in range(dims))
                     for k in ("rf", "stride", "padding")), phases=phases)

    def _plane(self, what: str) -> None:
        if len(self.rf) != 2:
            raise SpecError(f"{what} takes (y, x) of a 2-D network; this one has "
                            f"{len(self.rf)} axes: use start(i, axis) and end(i, axis)")

    @classmethod
    def from_row(cls, row) -> ReceptiveField:
        """From a result row (``evaluate``'s network or per-layer row, or a search row)."""
        values = {c: (row[f"{c}_h"], row[f"{c}_w"]) for c in ("rf", "stride", "padding")}
        missing = [f"{c}_{a}" for c, pair in values.items() for a, v in zip("hw", pair,
                                                                           strict=True)
                   if pd.isna(v)]
        name = row.get("name", "this row") if hasattr(row, "get") else "this row"
        periodic = [f"{c}_{a}" for c in ("period", "stride_den") for a in "hw"
                    if f"{c}_{a}" in row and not pd.isna(row[f"{c}_{a}"]) and row[f"{c}_{a}"] != 1]
        if periodic:  # a stride_den > 1 makes a period > 1 (tables written before 'period')
            raise SpecError(f"{name}: {periodic[0]} is {row[periodic[0]]}: the boxes repeat only "
                            "after a period of several units and differ within it: use "
                            "ReceptiveField.of(spec, input_size)")
        if missing:
            raise SpecError(f"{name}: {', '.join(missing)} unknown (an invalid row, a global "
                            "pool without input size, or 'same' padding without input size)")
        return cls(*({k: tuple(int(v) for v in pair) for k, pair in values.items()}.values()))

    def start(self, i, axis: int) -> np.ndarray:
        """First input pixel read by feature ``i`` along ``axis`` (0 = y, 1 = x)."""
        if self.phases is not None:
            return self.phases[axis].at(i, self.phases[axis].lo)
        return np.asarray(i) * self.stride[axis] - self.padding[axis]

    def end(self, i, axis: int) -> np.ndarray:
        """Last input pixel read by feature ``i`` along ``axis``."""
        if self.phases is not None:
            return self.phases[axis].at(i, self.phases[axis].hi)
        return self.start(i, axis) + self.rf[axis] - 1

    def box(self, y, x) -> Box:
        """Inclusive input box of feature (y, x)."""
        self._plane("box")
        return Box(self.start(y, 0), self.start(x, 1), self.end(y, 0), self.end(x, 1))

    def center(self, y, x) -> Point:
        """Input coordinates of the centre of feature (y, x) (half-pixels for even RFs)."""
        self._plane("center")
        return Point(*((self.start(i, a) + self.end(i, a)) / 2 for a, i in enumerate((y, x))))

    def _origin(self, axis: int) -> float:
        """Where the features' centres would put feature 0 at the mean jump: its centre
        (the Distill formula), or with a period the mean over one period of each unit's
        centre less its place ``φ K / T``."""
        if self.phases is None:
            return (self.rf[axis] - 1) / 2 - self.padding[axis]
        p = self.phases[axis]
        return float(np.mean([(lo + hi) / 2 - phi * p.K / p.T
                              for phi, (lo, hi) in enumerate(zip(p.lo, p.hi, strict=True))]))

    def feature(self, cy, cx) -> Point:
        """The (fractional) feature coordinates whose centre is input point (cy, cx) (with a
        period: at the mean jump K / T, on the line through the units' centres)."""
        self._plane("feature")
        jump = [p.K / p.T for p in self.phases] if self.phases else self.stride
        return Point(*((np.asarray(c) - self._origin(a)) / jump[a]
                       for a, c in enumerate((cy, cx))))

    def nearest_feature(self, cy, cx) -> Point:
        """The feature whose centre is nearest to input point (cy, cx) (ties round down).
        With a period, of the units within a period of :meth:`feature`'s estimate, one
        whose centre is nearest; several units may share a centre (nearest upsampling):
        then the one nearest the estimate, and of two the lower."""
        found = []
        for a, (f, c) in enumerate(zip(self.feature(cy, cx), (cy, cx), strict=True)):
            guess = np.ceil(f - 0.5).astype(np.int64)
            period = self.phases[a].T if self.phases else 1
            if period == 1:
                found.append(guess)
                continue
            units = guess[..., None] + np.arange(-period, period + 1)  # ascending
            centre = (self.start(units, a) + self.end(units, a)) / 2
            dist = np.abs(centre - np.asarray(c, float)[..., None])
            tied = dist <= dist.min(axis=-1, keepdims=True)
            pick = np.argmin(np.where(tied, np.abs(units - f[..., None]), np.inf), axis=-1)
            found.append(np.take_along_axis(units, pick[..., None], axis=-1)[..., 0])
        return Point(*found)
