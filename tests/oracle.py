"""Oracle: which input units each output unit of a network reads, from real operators.

For today's ops and those of issue #14 (upsample, conv_transpose, pixel (un)shuffle,
crop, negative padding, ceil-mode pooling, 1-D / 3-D networks), with no receptive-field
formula: every layer's read relation is measured per axis by applying the layer's own jax
operator to impulse inputs (:mod:`oracle_reads`). All these ops are separable, so each
axis of a map is simulated as a *line* of units. A unit carries the box ``[lo, hi]`` of
input coordinates it reads (the hull); a layer's unit takes the union of the boxes of
the units it reads, a merge (add, concat) the union over its inputs. A unit that reads
nothing (the odd outputs of a transposed conv with kernel 1, stride 2) is not *live*.

**API.** ``simulate(spec, input_size) -> Simulation``: ``sizes``, ``aligned``,
``rates_equal``, ``reads_nothing`` and, per axis, an :class:`AxisBoxes` (real size,
``lo`` / ``hi`` / ``live`` of every real unit, ``path_min``: each unit's smallest box over
single paths, the extended ``line``); raises :class:`Invalid`. Read off the boxes only:
``period`` / ``jump`` (K, T and the jump K / T), ``rf``, ``rf_min``, ``padding``.

**Border convention.** Lines are stored on an extended grid: the real units plus virtual
units on both sides. Input unit x reads coordinate x, also for x < 0 and x >= n, so a
padding position is the virtual unit that would sit there (the Distill article's
effective padding). Every op's read rule applies unchanged to virtual units and to reads
past the border; nothing is clamped. Interpolation reads past the border are therefore
virtual units, exactly as padding positions are: unit 0 of a bilinear x2 reads [-1, 0]
(PyTorch clamps the source index and the taps, so its unit 0 reads only 0), and a later
'same' conv's padding position -1 reads what the upsample rule gives for unit -1.

**Margins.** A backward walk sizes the input's virtual margins; they are then *checked*:
each op computes only the stored outputs whose every read lies in its stored input, and
:func:`simulate` doubles the margins and starts again (``MarginTooSmall``) unless every
real unit of every node was computed and the output and every merge input keep
``min_margin`` virtual units a side (where jumps are measured). So every box is exact.

**Per axis.** Boxes are per-axis projections (the union over paths of what the axis unit
reads); whether an N-D unit reads nothing is decided on the N-D grid
(``Simulation.reads_nothing``): in a DAG one path dead along H and another dead along W
leave a unit reading nothing although each of its axis units is live.

**Alignment.** At every merge, every real unit has the same liveness and box centre
``lo + hi`` in every input, and the inputs' boxes advance at the same rate (equal jump
fractions on their extended grids); ``rates_equal`` is the second part alone (today's
rfsearch rejects a merge of different jumps).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from oracle_reads import Reads, layer_reads
from oracle_spec import (
    ELEMENTWISE_OPS,
    MERGE_OPS,
    Invalid,
    MarginTooSmall,
    all_paths,
    ancestors,
    network_dims,
    path_spec,
    plan,
)
from reference import INPUT, normalized_layers, output_name, topological_order

__all__ = ["AxisBoxes", "Invalid", "Period", "Simulation", "jump", "padding", "period", "rf",
           "rf_min", "simulate"]

MAX_PATHS = 16  # per-path boxes are simulated when a network has at most this many paths
BIG = np.iinfo(np.int64).max // 4  # lo of a unit that reads nothing (hi: -BIG)


@dataclass(frozen=True)
class Line:
    """One axis of a map on its extended grid."""

    lo: np.ndarray  # [L] int64: first input coordinate read by each stored unit
    hi: np.ndarray  # [L] int64: last one
    live: np.ndarray  # [L] bool: the unit reads something
    origin: int  # stored index of real unit 0
    size: int  # real units

    @property
    def geometry(self) -> tuple[int, int, int]:
        return len(self.lo), self.origin, self.size

    @property
    def after(self) -> int:
        return len(self.lo) - self.origin - self.size

    def cut(self, before: int, after: int) -> slice:
        """The stored range with exactly ``before`` / ``after`` virtual units."""
        return slice(self.origin - before, self.origin + self.size + after)


@dataclass(frozen=True)
class Node:
    """A simulated map: one line per axis, and which N-D stored units read something."""

    lines: tuple[Line, ...]
    live: np.ndarray | None  # N-D stored mask; None when every stored unit is live
    aligned: tuple[bool, ...]  # per axis: every merge upstream was aligned
    rates_equal: tuple[bool, ...]  # per axis: every merge upstream saw equal jumps


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class Period:
    """box(y + period) = box(y) + shift for every y where both units exist."""

    shift: int  # K
    period: int  # T

    @property
    def jump(self) -> Fraction:
        """Input coordinates per output unit: K / T, reduced."""
        return Fraction(self.shift, self.period)


def period(lo: np.ndarray, hi: np.ndarray, live: np.ndarray | None = None) -> Period | None:
    """The smallest period T (< len) with one shift K for lo and hi, live units only
    (dead units must recur with the same period); None if no T < len fits."""
    live = np.ones(len(lo), bool) if live is None else live
    for t in range(1, len(lo)):
        a, b = slice(0, len(lo) - t), slice(t, len(lo))
        both = live[a]
        if not np.array_equal(both, live[b]) or not both.any():
            continue
        shifts = np.concatenate([(lo[b] - lo[a])[both], (hi[b] - hi[a])[both]])
        if np.all(shifts == shifts[0]):
            return Period(int(shifts[0]), t)
    return None


# ---------------------------------------------------------------------------- layers


def advance(line: Line, reads: Reads, origin: int, size: int, keep: tuple) -> Line:
    """The union of the boxes each stored output reads; checks the margins ``keep``."""
    length = reads.length
    if origin < keep[0] or length - origin - size < keep[1]:
        raise MarginTooSmall(f"stored {length}, origin {origin}, size {size}, keep {keep}")
    live_read = line.live[reads.cols]
    rows, cols = reads.rows[live_read], reads.cols[live_read]
    lo, hi = np.full(length, BIG), np.full(length, -BIG)
    np.minimum.at(lo, rows, line.lo[cols])
    np.maximum.at(hi, rows, line.hi[cols])
    live = np.zeros(length, bool)
    live[rows] = True
    return Line(lo, hi, live, origin, size)


def nd_live(node: Node, reads: list[Reads], lines: tuple[Line, ...]) -> np.ndarray | None:
    """Which N-D stored outputs read a live N-D input (None: all of them)."""
    if node.live is None and all(line.live.all() for line in lines):
        return None
    shape = tuple(len(line.lo) for line in node.lines)
    mask = np.ones(shape, np.float32) if node.live is None else node.live.astype(np.float32)
    for axis, relation in enumerate(reads):
        mask = np.tensordot(relation.dense(shape[axis]), mask, axes=([1], [axis]))
        mask = (np.moveaxis(mask, 0, axis) > 0).astype(np.float32)
    return mask > 0


def unary(layer: dict, node: Node, keep: list[tuple]) -> Node:
    """A non-merge layer, axis by axis (an element-wise layer reads its own unit)."""
    if layer["op"] in ELEMENTWISE_OPS:
        if any(line.origin < k[0] or line.after < k[1]
               for line, k in zip(node.lines, keep, strict=True)):
            raise MarginTooSmall(f"{layer['name']} keeps fewer than {keep}")
        return node
    dims = len(node.lines)
    found = [layer_reads(layer, a, dims, line.geometry) for a, line in enumerate(node.lines)]
    lines = tuple(advance(line, *f, keep[a])
                  for a, (line, f) in enumerate(zip(node.lines, found, strict=True)))
    return Node(lines, nd_live(node, [f[0] for f in found], lines), node.aligned,
                node.rates_equal)


def merge_axis(lines: list[Line], keep: tuple, periodic: list[bool]
               ) -> tuple[Line, bool, bool, list[slice]]:
    """(union line, centres equal, jumps equal, each input's cut) along one axis.
    ``periodic``: the input saw equal jumps at every merge upstream (else a union of
    different jumps may have no period at all)."""
    if len({line.size for line in lines}) > 1:
        raise Invalid(f"merge of sizes {sorted({line.size for line in lines})}")
    before = min(line.origin for line in lines)
    after = min(line.after for line in lines)
    if before < keep[0] or after < keep[1]:
        raise MarginTooSmall(f"merge keeps {before}, {after} < {keep}")
    cuts = [line.cut(before, after) for line in lines]
    lo = [line.lo[c] for line, c in zip(lines, cuts, strict=True)]
    hi = [line.hi[c] for line, c in zip(lines, cuts, strict=True)]
    live = [line.live[c] for line, c in zip(lines, cuts, strict=True)]
    real = slice(before, before + lines[0].size)
    centres = {(v[real].tobytes(), np.where(v, a + b, 0)[real].tobytes())
               for a, b, v in zip(lo, hi, live, strict=True)}
    periods = [period(a, b, v) for a, b, v in zip(lo, hi, live, strict=True)]
    if any(p is None and ok for p, ok in zip(periods, periodic, strict=True)):
        raise MarginTooSmall("a merge input's jump cannot be measured")
    union = Line(np.minimum.reduce(lo), np.maximum.reduce(hi), np.logical_or.reduce(live),
                 before, lines[0].size)
    jumps = {None if p is None else p.jump for p in periods}
    return union, len(centres) == 1, len(jumps) == 1 and None not in jumps, cuts


def merge(nodes: list[Node], keep: list[tuple]) -> Node:
    """add / concat: the union of the inputs' boxes (inputs of equal real sizes)."""
    dims = len(nodes[0].lines)
    found = [merge_axis([n.lines[a] for n in nodes], keep[a],
                        [n.rates_equal[a] for n in nodes]) for a in range(dims)]
    live = None
    if any(n.live is not None for n in nodes):
        masks = []
        for i, n in enumerate(nodes):
            shape = tuple(len(line.lo) for line in n.lines)
            mask = np.ones(shape, bool) if n.live is None else n.live
            masks.append(mask[tuple(f[3][i] for f in found)])
        live = np.logical_or.reduce(masks)
    aligned = tuple(all(n.aligned[a] for n in nodes) and f[1] and f[2]
                    for a, f in enumerate(found))
    rates = tuple(all(n.rates_equal[a] for n in nodes) and f[2] for a, f in enumerate(found))
    return Node(tuple(f[0] for f in found), live, aligned, rates)


# -------------------------------------------------------------------------- simulate


def input_node(sizes: tuple[int, ...], margins: list[tuple[int, int]]) -> Node:
    """Each input unit reads its own coordinate; the margins continue the coordinates."""
    lines = []
    for n, (b, a) in zip(sizes, margins, strict=True):
        coords = np.arange(-b, n + a, dtype=np.int64)
        lines.append(Line(coords, coords.copy(), np.ones(len(coords), bool), b, n))
    return Node(tuple(lines), None, (True,) * len(sizes), (True,) * len(sizes))


def run(layers: list[dict], order: list[str], out: str, sizes, margins, keep) -> Node:
    """Every layer the output depends on, in topological order; the output's node."""
    by_name = {layer["name"]: layer for layer in layers}
    nodes = {INPUT: input_node(sizes, margins)}
    for name in order:
        layer = by_name[name]
        inputs = [nodes[i] for i in layer["inputs"]]
        if layer["op"] in MERGE_OPS:
            nodes[name] = merge(inputs, keep[name])
        else:
            (node,) = inputs
            nodes[name] = unary(layer, node, keep[name])
    return nodes[out]


def simulate_node(spec: dict, sizes: tuple[int, ...], extra: int = 0) -> Node:
    """The output's node, margins grown until every needed unit is computed."""
    dims = len(sizes)
    layers = normalized_layers(spec)
    out = output_name(spec, layers)
    needed = ancestors(layers, out)
    order = [name for name in topological_order(layers) if name in needed]
    used = [layer for layer in layers if layer["name"] in needed]
    keep, margins = plan(used, order, out, dims)
    margins = [(b + extra, a + extra) for b, a in margins]
    for _ in range(6):
        try:
            return run(used, order, out, sizes, margins, keep)
        except MarginTooSmall:
            margins = [(2 * b + 8, 2 * a + 8) for b, a in margins]
    raise AssertionError(f"margins {margins} never sufficed for {spec.get('name')}")


def path_minimum(spec: dict, sizes: tuple[int, ...]) -> list[np.ndarray] | None:
    """Per axis, each real unit's smallest box size over single paths (0: no path reads
    it); None when there are more than MAX_PATHS paths."""
    layers = normalized_layers(spec)
    paths = all_paths(layers, output_name(spec, layers), MAX_PATHS)
    if paths is None:
        return None
    best = [np.array(BIG)] * len(sizes)
    for path in paths:
        node = simulate_node(path_spec(layers, path, len(sizes)), sizes)
        for axis, line in enumerate(node.lines):
            real = slice(line.origin, line.origin + line.size)
            width = np.where(line.live, line.hi - line.lo + 1, BIG)[real]
            best[axis] = np.minimum(best[axis], width)
    return [np.where(b == BIG, 0, b) for b in best]


# ---------------------------------------------------------------------------- result


@dataclass(frozen=True)
class AxisBoxes:
    """One axis of the simulated output."""

    size: int  # real output units
    lo: np.ndarray  # [size] box start of every real unit (union over paths; BIG if dead)
    hi: np.ndarray  # [size] box end (-BIG if dead)
    live: np.ndarray  # [size] bool: the axis unit reads something
    path_min: np.ndarray | None  # [size] smallest single-path box size (0: none); None
    aligned: bool  # every merge: equal centres at every real unit, equal jumps
    rates_equal: bool  # every merge: equal jumps
    line: Line  # the extended grid: real and virtual units


@dataclass(frozen=True)
class Simulation:
    """What every real output unit of a network reads, per axis."""

    dims: int
    axes: tuple[AxisBoxes, ...]
    reads_nothing: bool  # some real N-D output unit reads no input unit at all

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(a.size for a in self.axes)

    @property
    def aligned(self) -> bool:
        return all(a.aligned for a in self.axes)

    @property
    def rates_equal(self) -> bool:
        return all(a.rates_equal for a in self.axes)


def as_sizes(input_size, dims: int) -> tuple[int, ...]:
    """An int (every axis) or one size per axis."""
    if isinstance(input_size, int):
        return (input_size,) * dims
    if len(input_size) != dims:
        raise ValueError(f"input size {input_size!r} for a {dims}-D network")
    return tuple(input_size)


def simulate(spec: dict, input_size, *, paths: bool = True, extra_margin: int = 0
             ) -> Simulation:
    """Simulate ``spec`` on an input of ``input_size`` (int or one size per axis).

    Raises :class:`Invalid` for an invalid network. ``paths``: also simulate every
    input-to-output path as a chain (at most MAX_PATHS of them). ``extra_margin``: more
    virtual units at the input (the result must not change)."""
    dims = network_dims(spec)
    sizes = as_sizes(input_size, dims)
    node = simulate_node(spec, sizes, extra_margin)
    minimum = path_minimum(spec, sizes) if paths else None
    axes = []
    for axis, line in enumerate(node.lines):
        real = slice(line.origin, line.origin + line.size)
        axes.append(AxisBoxes(line.size, line.lo[real], line.hi[real], line.live[real],
                              None if minimum is None else minimum[axis],
                              node.aligned[axis], node.rates_equal[axis], line))
    dead = False
    if node.live is not None:
        dead = not node.live[tuple(slice(n.origin, n.origin + n.size) for n in node.lines)].all()
    return Simulation(dims, tuple(axes), dead)


# --------------------------------------------------------------------------- helpers


def jump(axis: AxisBoxes, virtual: bool = False) -> Period | None:
    """The period and jump of the real units' boxes (``virtual``: of the whole extended
    grid, which also measures maps too short to show their period)."""
    if virtual:
        return period(axis.line.lo, axis.line.hi, axis.line.live)
    return period(axis.lo, axis.hi, axis.live)


def rf(axis: AxisBoxes) -> int:
    """The largest box over the real units."""
    return int((axis.hi - axis.lo + 1)[axis.live].max())


def rf_min(axis: AxisBoxes) -> int | None:
    """The smallest box over single paths and real units (None: too many paths)."""
    if axis.path_min is None:
        return None
    return int(axis.path_min[axis.path_min > 0].min())


def padding(axis: AxisBoxes) -> int | None:
    """Minus the box start of real unit 0 (None when it reads nothing)."""
    return int(-axis.lo[0]) if axis.live[0] else None
