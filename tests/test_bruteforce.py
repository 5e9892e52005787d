"""Brute-force check of rfsearch: simulate networks on coordinate images, no RF formulas.

Every feature map is stored on an extended grid: its real features plus a margin of
virtual features on both sides. The margin is what padding stands for in the Distill
article: padding position -1 is the feature that would sit just left of feature 0, so
it reads the input pixels one jump to the left. Each stored feature carries the
interval [lo, hi] of input coordinates it reads, per axis, as four int32 channels
``[-lo_row, hi_row, -lo_col, hi_col]`` (at the input, lo = hi = the pixel's own
coordinate, which continues past the image into the margin as -1, -2, ... and
n, n + 1, ...). Then

* a conv / pool layer is one ``jax.lax.reduce_window`` max (window, stride and window
  dilation as in the spec) over the grid cut to start at position -p: the maximum of
  -lo is -min(lo), so the window's union interval comes out directly;
* a merge is an element-wise max of its inputs' grids (the interval union);
* a fifth channel marks the positions inside the layer's padded input
  [-p, n + q); a window is a real output feature iff it touches only such positions,
  which measures the output size without the n_out formula.

'same' padding is resolved by TensorFlow's own definition (output size ceil(n / s)),
not by the formula rfsearch uses. The rows are then read off the simulated grids:
rf = hi - lo + 1 of every real feature, stride = the step of lo between neighbours,
padding = -lo of feature 0, aligned = equal centres lo + hi at every merge, and rf_min
by simulating every input-to-output path as a chain of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
import pytest
from frames import frame_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle_spec import all_paths as paths
from oracle_spec import path_spec
from reference import (
    INPUT,
    MERGE_OPS,
    WHOLE_MAP_OPS,
    WINDOW_OPS,
    axis_value,
    normalized_layers,
    output_name,
    reference_evaluate,
    topological_order,
)
from strategies import dags, input_sizes

import rfsearch

MAX_PATHS = 8  # rf_min is measured by simulating every path when there are at most this many
LOWEST = np.iinfo(np.int32).min


class Invalid(Exception):
    """The simulated network breaks here (empty map, merge of different sizes or jumps)."""


@dataclass(frozen=True)
class Grid:
    """A simulated feature map on its extended grid."""

    values: np.ndarray  # [4, Lh, Lw] int32: -lo_row, hi_row, -lo_col, hi_col
    origin: tuple[int, int]  # stored index of real feature 0, per axis
    size: tuple[int, int]  # number of real features, per axis
    aligned: bool  # every merge upstream saw equal centres lo + hi

    def margin_after(self, axis: int) -> int:
        """Virtual features stored after the last real one."""
        return self.values.shape[1 + axis] - self.origin[axis] - self.size[axis]


@dataclass(frozen=True)
class Window:
    """One layer as a window, per axis (h, w): kernel, stride, dilation, padding."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    before: tuple[int, int]
    after: tuple[int, int]


# ------------------------------------------------------------------------------ layers


def span(kernel: int, dilation: int) -> int:
    """Input positions from the first to the last tap of a dilated kernel."""
    return dilation * (kernel - 1) + 1


def tf_padding(padding, axis: int, width: int, stride: int, n_in: int) -> tuple[int, int]:
    """(before, after) for one axis; 'same' pads just enough for ceil(n_in / s) outputs."""
    if padding == "valid":
        return 0, 0
    if padding in ("same", "same_lower"):
        n_out = -(-n_in // stride)
        total = max((n_out - 1) * stride + width - n_in, 0)
        small, large = total // 2, total - total // 2
        return (large, small) if padding == "same_lower" else (small, large)
    if isinstance(padding, int):
        return padding, padding
    per_axis = padding[axis]
    return (per_axis, per_axis) if isinstance(per_axis, int) else tuple(per_axis)


def padding_bound(padding, axis: int, width: int) -> int:
    """An upper bound on max(before, after) that needs no map size."""
    if isinstance(padding, str):
        return 0 if padding == "valid" else width - 1
    return max(tf_padding(padding, axis, width, 1, 1))


def layer_window(layer: dict, size: tuple[int, int]) -> Window:
    """The window of a conv / pool or whole-map layer at the given input map size."""
    if layer["op"] in WHOLE_MAP_OPS:
        return Window(size, (1, 1), (1, 1), (0, 0), (0, 0))
    per_axis = []  # (kernel, stride, dilation, before, after) for h, then w
    for axis in (0, 1):
        k = axis_value(layer["kernel"], axis)
        s = axis_value(layer.get("stride", 1), axis)
        d = axis_value(layer.get("dilation", 1), axis)
        p, q = tf_padding(layer.get("padding", 0), axis, span(k, d), s, size[axis])
        per_axis.append((k, s, d, p, q))
    return Window(*zip(*per_axis, strict=True))


# ---------------------------------------------------------------------------- simulate


def input_grid(size: tuple[int, int], margin: tuple[int, int]) -> Grid:
    """Each pixel reads itself; the margin continues the coordinates past the image."""
    rows = np.arange(-margin[0], size[0] + margin[0], dtype=np.int32)  # [Lh]
    cols = np.arange(-margin[1], size[1] + margin[1], dtype=np.int32)  # [Lw]
    row_img, col_img = np.meshgrid(rows, cols, indexing="ij")  # [Lh, Lw] each
    values = np.stack([-row_img, row_img, -col_img, col_img])  # [4, Lh, Lw]
    return Grid(values, margin, size, aligned=True)


def availability(grid: Grid, window: Window) -> np.ndarray:
    """-1 at stored positions inside the padded input [-p, n + q), else 0: [Lh, Lw]."""
    inside = []
    for axis in (0, 1):
        position = np.arange(grid.values.shape[1 + axis]) - grid.origin[axis]
        inside.append((position >= -window.before[axis])
                      & (position < grid.size[axis] + window.after[axis]))
    return -(inside[0][:, None] & inside[1][None, :]).astype(np.int32)


def apply_window(grid: Grid, window: Window) -> Grid:
    """A conv / pool layer: interval union over every window, by reduce_window max."""
    starts, origin = [], []
    for axis in (0, 1):
        p, s = window.before[axis], window.stride[axis]
        assert grid.origin[axis] >= p and grid.margin_after(axis) >= window.after[axis]
        first = -((grid.origin[axis] - p) // s)  # first stored output position (<= 0)
        starts.append(grid.origin[axis] + first * s - p)
        origin.append(-first)
    stacked = np.concatenate([grid.values, availability(grid, window)[None]])  # [5, Lh, Lw]
    cut = stacked[:, starts[0]:, starts[1]:]
    out = np.asarray(jax.lax.reduce_window(
        cut, np.int32(LOWEST), jax.lax.max,
        window_dimensions=(1, *window.kernel), window_strides=(1, *window.stride),
        padding="VALID", window_dilation=(1, *window.dilation),
    ))  # [5, Lh', Lw']
    real = out[4] == -1  # [Lh', Lw']: windows inside the padded input
    rows, cols = np.flatnonzero(real.any(axis=1)), np.flatnonzero(real.any(axis=0))
    if rows.size == 0 or cols.size == 0:
        raise Invalid("empty output")
    size = (rows.size, cols.size)
    for axis, found in enumerate((rows, cols)):
        assert np.array_equal(found, origin[axis] + np.arange(found.size)), "real features"
    assert np.array_equal(real, real.any(axis=1)[:, None] & real.any(axis=0)[None, :])
    return Grid(out[:4], tuple(origin), size, grid.aligned)


def jumps(grid: Grid) -> tuple[int, int]:
    """Input pixels between neighbouring stored features, per axis (measured)."""
    lo_row, lo_col = -grid.values[0, :, 0], -grid.values[2, 0, :]
    return int(lo_row[1] - lo_row[0]), int(lo_col[1] - lo_col[0])


def crop(grid: Grid, before: tuple[int, int], after: tuple[int, int]) -> np.ndarray:
    """The stored values with exactly ``before`` / ``after`` virtual features per axis."""
    (oh, ow), (nh, nw) = grid.origin, grid.size
    return grid.values[:, oh - before[0]:oh + nh + after[0], ow - before[1]:ow + nw + after[1]]


def apply_merge(grids: list[Grid]) -> Grid:
    """A merge: the element-wise interval union of inputs of equal size and jump."""
    if len({g.size for g in grids}) > 1:
        raise Invalid("merge of different sizes")
    if len({jumps(g) for g in grids}) > 1:
        raise Invalid("merge of different jumps")
    before = tuple(min(g.origin[a] for g in grids) for a in (0, 1))
    after = tuple(min(g.margin_after(a) for g in grids) for a in (0, 1))
    values = [crop(g, before, after) for g in grids]  # each [4, Lh, Lw]
    centres = [(v[1] - v[0], v[3] - v[2]) for v in values]  # lo + hi per axis
    aligned = all(np.array_equal(c[a], centres[0][a]) for c in centres for a in (0, 1))
    return Grid(np.maximum.reduce(values), before, grids[0].size,
                aligned and all(g.aligned for g in grids))


def input_margin(layers: list[dict], order: list[str]) -> tuple[int, int]:
    """Virtual features the input needs so that every node keeps at least one per side.

    Walks back from the output: a window layer needs ``s * m + max(p, q)`` before it
    to give ``m`` after it. Only sizes the grids, never their values.
    """
    by_name = {layer["name"]: layer for layer in layers}
    need = {name: [1, 1] for name in [INPUT, *order]}
    for name in reversed(order):
        layer = by_name[name]
        for axis in (0, 1):
            m = need[name][axis]
            if layer["op"] in WINDOW_OPS:
                k = axis_value(layer["kernel"], axis)
                s = axis_value(layer.get("stride", 1), axis)
                width = span(k, axis_value(layer.get("dilation", 1), axis))
                m = s * m + padding_bound(layer.get("padding", 0), axis, width)
            for source in layer["inputs"]:
                need[source][axis] = max(need[source][axis], m)
    return tuple(need[INPUT])


def simulate(spec: dict, input_size: tuple[int, int]) -> dict[str, Grid | str]:
    """Every node's simulated grid, or why it is invalid."""
    layers = normalized_layers(spec)
    order = topological_order(layers)
    by_name = {layer["name"]: layer for layer in layers}
    margin = input_margin(layers, order)
    grids: dict[str, Grid | str] = {INPUT: input_grid(input_size, margin)}
    for name in order:
        layer = by_name[name]
        inputs = [grids[i] for i in layer["inputs"]]
        if any(isinstance(g, str) for g in inputs):
            grids[name] = "after an invalid node"
            continue
        try:
            if layer["op"] in MERGE_OPS:
                grids[name] = apply_merge(inputs)
            elif layer["op"] in WINDOW_OPS or layer["op"] in WHOLE_MAP_OPS:
                grids[name] = apply_window(inputs[0], layer_window(layer, inputs[0].size))
            else:
                grids[name] = inputs[0]
        except Invalid as err:
            grids[name] = str(err)
    return grids


# ----------------------------------------------------------------------------- measure


def axis_intervals(grid: Grid, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of every stored feature along one axis, [L] each."""
    if axis == 0:
        return -grid.values[0, :, 0], grid.values[1, :, 0]
    return -grid.values[2, 0, :], grid.values[3, 0, :]


def measure(grid: Grid) -> dict:
    """rfsearch's geometry columns (except rf_min), read off a simulated grid."""
    row = {"aligned": grid.aligned}
    for axis, suffix in enumerate("hw"):
        lo, hi = axis_intervals(grid, axis)
        jump = jumps(grid)[axis]
        assert np.all(np.diff(lo) == jump) and np.all(np.diff(hi) == jump), "uneven map"
        assert np.all(hi - lo == hi[0] - lo[0]), "features with different fields"
        row[f"rf_{suffix}"] = int(hi[0] - lo[0] + 1)
        row[f"stride_{suffix}"] = jump
        row[f"padding_{suffix}"] = int(-lo[grid.origin[axis]])
        row[f"out_{suffix}"] = grid.size[axis]
    return row


def measured_rf_min(spec: dict, input_size: tuple[int, int]) -> dict | None:
    """rf_min_h / rf_min_w as the smallest field over simulated paths (None: too many)."""
    layers = normalized_layers(spec)
    all_paths = paths(layers, output_name(spec, layers), MAX_PATHS)
    if all_paths is None:
        return None
    fields = []
    for path in all_paths:
        chain = path_spec(layers, path, 2)
        grid = simulate(chain, input_size)[path[-1]]
        assert isinstance(grid, Grid), grid
        fields.append(measure(grid))
    return {f"rf_min_{s}": min(f[f"rf_{s}"] for f in fields) for s in "hw"}


# ------------------------------------------------------------------------------ checks


def as_pair(input_size) -> tuple[int, int]:
    """An int or (H, W) input size as (H, W)."""
    return (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)


def check_against_simulation(row: dict, grid: Grid | str, rf_min: dict | None) -> None:
    """A result row (network or layer) agrees with the simulated grid of its node."""
    if isinstance(grid, str):
        assert row["error"] is not None, f"simulation says invalid ({grid}), row is valid"
        return
    assert row["error"] is None, f"row says {row['error']!r}, simulation is valid"
    expected = measure(grid) | (rf_min or {})
    assert {k: row[k] for k in expected} == expected


def check_network(spec: dict, input_size) -> None:
    """rfsearch's network row and per-layer rows agree with the simulation."""
    size = as_pair(input_size)
    grids = simulate(spec, size)
    layers = normalized_layers(spec)
    out = output_name(spec, layers)
    valid = isinstance(grids[out], Grid)
    (row,) = frame_rows(rfsearch.evaluate([spec], input_size=input_size))
    check_against_simulation(row, grids[out], measured_rf_min(spec, size) if valid else None)
    layer_rows = frame_rows(rfsearch.evaluate([spec], input_size=input_size, per_layer=True))
    assert [r["layer_name"] for r in layer_rows] == [layer["name"] for layer in layers]
    for layer_row in layer_rows:
        check_against_simulation(layer_row, grids[layer_row["layer_name"]], None)


SIM_SETTINGS = settings(max_examples=40, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


@SIM_SETTINGS
@given(dags(max_layers=6), input_sizes(allow_none=False))
def test_random_dags_match_simulation(spec, input_size):
    """rfsearch agrees with the coordinate simulation on random DAGs."""
    check_network(spec, input_size)


@SIM_SETTINGS
@given(dags(max_layers=6), input_sizes(allow_none=False))
def test_reference_matches_simulation(spec, input_size):
    """The plain-Python reference (the other oracle) agrees with the simulation too."""
    size = as_pair(input_size)
    grids = simulate(spec, size)
    out = grids[output_name(spec, normalized_layers(spec))]
    rf_min = measured_rf_min(spec, size) if isinstance(out, Grid) else None
    check_against_simulation(reference_evaluate(spec, input_size), out, rf_min)


def conv(name, kernel, stride=1, padding=0, dilation=1, inputs=None):
    """A conv layer dict."""
    layer = {"name": name, "op": "conv", "kernel": kernel, "stride": stride,
             "padding": padding, "dilation": dilation}
    return layer if inputs is None else {**layer, "inputs": inputs}


HAND_WRITTEN = {
    # Distill article figure: feature 0 reads input pixels [-1, 4].
    "article": {"name": "article", "layers": [conv("c1", 3, 3, 1), conv("c2", 2)]},
    # Residual block with a strided 'same' main path and a 1x1 strided shortcut.
    "residual": {"name": "residual", "layers": [
        conv("stem", 3, 1, "same"),
        conv("a", 3, 2, "same"), conv("b", 3, 1, "same"),
        conv("short", 1, 2, "valid", inputs=["stem"]),
        {"name": "sum", "op": "add", "inputs": ["b", "short"]},
    ]},
    # Non-square, dilated, asymmetric padding, then a concat with a pooled branch.
    "mixed": {"name": "mixed", "layers": [
        conv("c", [3, 5], [2, 1], [[1, 0], [2, 2]], dilation=[1, 2]),
        {"name": "p", "op": "maxpool", "kernel": [3, 1], "stride": [2, 1],
         "padding": "same_lower", "inputs": ["input"]},
        {"name": "cat", "op": "concat", "inputs": ["c", "p"]},
        {"name": "gp", "op": "global_pool"},
    ]},
}


@pytest.mark.parametrize("input_size", [(17, 23), 32])
@pytest.mark.parametrize("name", sorted(HAND_WRITTEN))
def test_hand_written_networks(name, input_size):
    """A few fixed networks, every layer checked against the simulation."""
    check_network(HAND_WRITTEN[name], input_size)


def test_article_feature_zero_reads_minus_one_to_four():
    """The simulation itself reproduces the Distill figure: feature 0 reads [-1, 4]."""
    grid = simulate(HAND_WRITTEN["article"], (12, 12))["c2"]
    for axis in (0, 1):
        lo, hi = axis_intervals(grid, axis)
        assert (lo[grid.origin[axis]], hi[grid.origin[axis]]) == (-1, 4)


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3))
def test_same_padding_gives_ceil_outputs(n, kernel, stride, dilation):
    """'same' keeps ceil(n / s) features in the simulation, as TensorFlow defines it."""
    spec = {"name": "same", "layers": [conv("c", kernel, stride, "same", dilation)]}
    grid = simulate(spec, (n, n))["c"]
    assert grid.size == (-(-n // stride),) * 2
