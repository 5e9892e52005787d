"""Read relations of single layers, per axis, from real operators (for :mod:`oracle`).

For one layer and one axis, a :class:`Reads` lists the pairs (stored output unit y,
stored input unit x) such that y reads x. It is measured by applying the layer's own
operator, with all-ones kernels, to impulse inputs: ``jax.lax.conv_general_dilated`` /
``jax.lax.reduce_window`` for windows (explicit and negative padding by where the windows
start on the stored line; ceil mode by s - 1 more padding after and PyTorch's drop rule),
``jax.lax.conv_transpose`` for transposed convolutions, a gather-based interpolation
(applied to an identity matrix, a batch of one-hot lines) for upsampling, slicing for
crops, reshapes for pixel (un)shuffle.

The jax operators see *combs* rather than an identity matrix (one line per residue class
of the units instead of one per unit: the same answer, orders of magnitude faster): comb
c holds an impulse of value x + 1 at every stored unit x = c (mod P), with P chosen so
that no output reads two impulses of one comb, which a second line checks for every
output (:func:`probe`); an output's value then names the unit it read.

A stored line is ``geometry = (length, origin, n)``: ``length`` stored units, real unit 0
at index ``origin``, ``n`` real units. Each function returns ``(Reads, origin_out,
n_out)`` and computes only the stored outputs whose every read lies inside the stored
input (outputs touching the columns added to round array shapes up are dropped too), so
every computed unit is exact. The real output size comes from the operator as well: a
flag line marks the stored units outside the padded input, and the real outputs of a
window are those touching none of them; a transposed convolution is run on the real line.

Interpolation source indices are PyTorch's ``area_pixel_compute_source_index`` in exact
arithmetic: align_corners false ``src = (y + 1/2) / f - 1/2``, true
``src = y (n - 1) / (n f - 1)`` (0 when n f = 1); ``x0 = floor(src)``, ``t = src - x0``;
nearest reads ``floor(y / f)``; linear reads x0 (weight 1 - t) and x0 + 1 (weight t);
cubic reads x0 - 1 .. x0 + 2 with PyTorch's cubic-convolution weights (A = -0.75). A zero
weight reads nothing. Indices are never clamped (see :mod:`oracle`, border convention).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from jax import lax
from oracle_spec import (
    ELEMENTWISE_OPS,
    MODES,
    WHOLE_MAP_OPS,
    WINDOW_OPS,
    Invalid,
    MarginTooSmall,
    axis_value,
    pair,
    window_params,
)

CUBIC_A = -0.75  # PyTorch's bicubic


# ------------------------------------------------------------------------- operators


@dataclass(frozen=True)
class Reads:
    """A read relation: stored output unit ``rows[i]`` reads stored input unit ``cols[i]``."""

    rows: np.ndarray
    cols: np.ndarray
    length: int  # stored output units

    def dense(self, length_in: int) -> np.ndarray:
        """[length, length_in] float32 0 / 1."""
        out = np.zeros((self.length, length_in), np.float32)
        out[self.rows, self.cols] = 1
        return out


def pad_line(x: np.ndarray, before: int, after: int) -> np.ndarray:
    """Explicit padding of the last axis of [B, W]; negative amounts slice it (a crop)."""
    x = np.pad(x, ((0, 0), (max(before, 0), max(after, 0))))
    return x[:, max(-before, 0):max(x.shape[1] - max(-after, 0), 0)]


def bucket(n: int, least: int = 64) -> int:
    """``n`` rounded up to a power of two: few array shapes, so few jax compilations."""
    return max(least, 1 << (n - 1).bit_length())


def probe(op, width: int, period: int, maxlike: bool, flags: list[np.ndarray]):
    """Apply ``op`` ([B, W] -> [B, W_out]) to impulse combs and decode what it reads.

    Comb c < ``period`` has an impulse at every stored unit x = c (mod period), of value
    x + 1; a second line holds 1 there (a sum-like op must then output 0 or 1: at most
    one impulse per output) or 2^20 - x (``maxlike``: its max gives the smallest x read,
    which must equal the largest). Then the ``flags`` lines, then one marking the columns
    added to reach a bucketed width: outputs touching them are dropped.
    Returns (Reads, the flags' outputs)."""
    x = np.arange(width)
    comb = (x % period)[None, :] == np.arange(period)[:, None]  # [P, W]
    second = np.where(comb, (1 << 20) - x, 0) if maxlike else comb
    lines = np.vstack([np.where(comb, x + 1, 0), second, *flags])
    batch = np.zeros((bucket(len(lines) + 1, 8), bucket(width)), np.float32)
    batch[:len(lines), :width] = lines
    batch[len(lines), width:] = 1
    out = np.asarray(op(batch))
    kept = np.flatnonzero(out[len(lines)] != 0)
    out = out[:, :kept[0] if kept.size else out.shape[1]]
    value, check = out[:period], out[period:2 * period]
    hit = value > 0
    unique = (1 << 20) - check == value - 1 if maxlike else check == 1
    assert np.all(unique[hit]) and (maxlike or not check[~hit].any()), "two impulses read"
    comb_index, y = np.nonzero(hit)
    reads = Reads(y, value[comb_index, y].astype(np.int64) - 1, out.shape[1])
    return reads, out[2 * period:2 * period + len(flags)]


def coprime_at_least(k: int, d: int) -> int:
    """The smallest period >= k coprime with d: taps t d (t < k) fall in different combs."""
    return next(p for p in range(max(k, 1), k + d + 1) if np.gcd(p, d) == 1)


def window_op(x: np.ndarray, kind: str, k: int, s: int, d: int):
    """The layer's own operator over [B, W] lines, VALID: [B, W_out]."""
    if x.shape[1] < d * (k - 1) + 1:
        return np.zeros((x.shape[0], 0), x.dtype)
    if kind == "maxpool":
        return lax.reduce_window(x, -np.inf, lax.max, (1, k), (1, s), "VALID",
                                 window_dilation=(1, d))
    if kind in ("avgpool", "pool", "global_pool"):
        return lax.reduce_window(x, 0.0, lax.add, (1, k), (1, s), "VALID",
                                 window_dilation=(1, d))
    return np.asarray(lax.conv_general_dilated(  # conv, dense: an all-ones kernel
        x[:, None], np.ones((1, 1, k), x.dtype), (s,), "VALID", rhs_dilation=(d,)))[:, 0]


@functools.lru_cache(maxsize=256)
def window_reads(kind, k, s, d, before, after, ceil, geometry):
    """Conv / pool / whole-map reads on a stored line ``geometry = (length, origin, n)``.

    Output y's window starts at input y*s - before. A flag line marks the stored units
    outside the padded input [-before, n + after) (ceil mode: s - 1 more after): the real
    outputs are the windows that touch none of them (then PyTorch's ceil rule drops a
    last window that starts at or after n + before)."""
    length, origin, n = geometry
    low, high = origin - before, origin + n + after + (s - 1) * ceil  # padded input, stored
    if high - low < d * (k - 1) + 1:
        raise Invalid(f"{kind}: empty output from {n} units")
    if low < 0 or high > length:
        raise MarginTooSmall(f"padded input [{low}, {high}) of a {length}-unit line")
    start = low % s  # stored index of the first window that fits
    outside = (np.arange(start, length) < low) | (np.arange(start, length) >= high)
    reads, (flag,) = probe(lambda b: window_op(b, kind, k, s, d), length - start,
                           coprime_at_least(k, d), kind == "maxpool", [outside])
    inside = np.flatnonzero(flag == 0)
    origin_out = (low - start) // s
    assert inside.size and np.array_equal(inside, origin_out + np.arange(inside.size))
    n_out = inside.size - (ceil and (inside.size - 1) * s >= n + before)
    if n_out < 1:
        raise Invalid(f"{kind}: empty output from {n} units")
    return Reads(reads.rows, reads.cols + start, reads.length), origin_out, n_out


@functools.lru_cache(maxsize=256)
def crop_reads(before, after, geometry):
    """Crop: slicing the real line; the stored units stay, real unit 0 moves."""
    length, origin, n = geometry
    if min(before, after) < 0:
        raise ValueError("crop amounts must be non-negative")
    n_out = len(range(n)[before:n - after])
    if n_out < 1:
        raise Invalid(f"crop ({before}, {after}) of {n} units is empty")
    return Reads(np.arange(length), np.arange(length), length), origin + before, n_out


@functools.lru_cache(maxsize=256)
def shuffle_reads(r, geometry):
    """pixel_shuffle (depth_to_space): the r channels of a unit reshaped into r units
    (applied to the units' indices)."""
    length, origin, n = geometry
    channels = np.repeat(np.arange(length)[:, None], r, axis=1)  # [W, r]
    return Reads(np.arange(length * r), channels.reshape(-1), length * r), origin * r, n * r


@functools.lru_cache(maxsize=256)
def unshuffle_reads(r, geometry):
    """pixel_unshuffle (space_to_depth): r units reshaped into r channels of one unit."""
    length, origin, n = geometry
    if n % r:
        raise Invalid(f"pixel_unshuffle by {r} of {n} units")
    start = origin % r
    units = (length - start) // r
    blocks = np.arange(start, start + units * r).reshape(units, r)  # [W / r, r channels]
    reads = Reads(np.repeat(np.arange(units), r), blocks.reshape(-1), units)
    return reads, (origin - start) // r, n // r


@functools.lru_cache(maxsize=256)
def transpose_reads(k, s, d, before, after, output_padding, geometry):
    """conv_transpose (PyTorch): ``jax.lax.conv_transpose`` with lhs padding
    d(k-1) - p before and d(k-1) - p + output_padding after (negative: sliced)."""
    length, origin, n = geometry
    reach = d * (k - 1)
    kernel = np.ones((1, 1, k), np.float32)

    def run(x, lo, hi):
        if (x.shape[1] - 1) * s + 1 + max(lo, 0) + max(hi, 0) <= reach:
            return np.zeros((x.shape[0], 0), x.dtype)
        out = lax.conv_transpose(x[:, None], kernel, (s,), [(max(lo, 0), max(hi, 0))],
                                 rhs_dilation=(d,), dimension_numbers=("NCH", "OIH", "NCH"))
        return pad_line(np.asarray(out)[:, 0], min(lo, 0), min(hi, 0))

    n_out = run(np.ones((1, n), np.float32), reach - before,
                reach - after + output_padding).shape[1]
    if n_out < 1:
        raise Invalid(f"conv_transpose: empty output from {n} units")
    reads, _ = probe(lambda b: run(b, 0, 0), length, reach // s + 2, False, [])
    return reads, origin * s + before - reach, n_out


def source_taps(mode: str, f: int, n: int, align: bool, y: np.ndarray):
    """PyTorch's interpolation taps, unclamped: (taps [Y, m] int, weights [Y, m] float)."""
    if mode == "nearest":
        return (y // f)[:, None], np.ones((len(y), 1))
    num, den = (y * (n - 1), n * f - 1) if align else (2 * y + 1 - f, 2 * f)
    if den == 0:  # a single output unit: src = 0
        num, den = 0 * y, 1
    x0 = num // den
    t = (num - x0 * den) / den  # exact fraction, then float
    if mode == "linear":
        return np.stack([x0, x0 + 1], 1), np.stack([1 - t, t], 1)

    def near(x):  # |x| <= 1
        return ((CUBIC_A + 2) * x - (CUBIC_A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((CUBIC_A * x - 5 * CUBIC_A) * x + 8 * CUBIC_A) * x - 4 * CUBIC_A

    weights = np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], 1)
    return np.stack([x0 - 1, x0, x0 + 1, x0 + 2], 1), weights


@functools.lru_cache(maxsize=256)
def upsample_reads(mode, f, align, geometry):
    """Gather-based interpolation over the stored line: every stored output whose
    non-zero-weight taps are all stored."""
    length, origin, n = geometry
    wide = 2 * f  # align_corners steps by (n - 1) / (n f - 1) >= 1 / (2 f) for n >= 2
    ys = np.arange(-(origin + 3) * wide, (length - origin + 3) * wide)
    taps, weights = source_taps(mode, f, n, align, ys)
    index = taps + origin  # stored input index of each tap
    stored = np.where(weights != 0, (index >= 0) & (index < length), True).all(axis=1)
    gaps = np.flatnonzero(~stored) - (origin + 3) * wide  # y of the units not computed
    first = gaps[gaps < 0].max(initial=ys[0] - 1) + 1
    last = gaps[gaps >= 0].min(initial=ys[-1] + 1)
    if first > 0 or last < n * f:
        raise MarginTooSmall(f"upsample: real units of a {length}-unit line not computed")
    keep = np.arange(first, last) - ys[0]  # the run of computed units around the real ones
    index = np.clip(index[keep], 0, length - 1)  # only zero-weight taps are clipped
    weights = weights[keep].astype(np.float32)
    identity, rows, cols = np.eye(length, dtype=np.float32), [], []
    for start in range(0, length, 256):  # 256 one-hot lines at a time: bounded memory
        lines = identity[start:start + 256]
        out = np.einsum("bym,ym->by", lines[:, index], weights)  # the gather, weighted
        line, y = np.nonzero(out)
        rows.append(y)
        cols.append(line + start)
    return Reads(np.concatenate(rows), np.concatenate(cols), len(keep)), int(-first), n * f


def layer_reads(layer: dict, axis: int, dims: int, geometry: tuple):
    """(Reads, origin_out, n_out) of a unary layer on one axis of a stored line."""
    op, n = layer["op"], geometry[2]
    if op in WINDOW_OPS or op in WHOLE_MAP_OPS:
        return window_reads(*window_params(layer, axis, dims, n), geometry)
    value = functools.partial(axis_value, axis=axis, dims=dims)
    if op == "upsample":
        mode = MODES[layer.get("mode", "nearest")]
        align = bool(layer.get("align_corners", False))
        if align and mode == "nearest":
            raise ValueError("align_corners with nearest upsampling")
        return upsample_reads(mode, value(layer["factor"]), align, geometry)
    if op == "conv_transpose":
        before, after = pair(layer.get("padding", 0), axis, dims)
        return transpose_reads(value(layer["kernel"]), value(layer.get("stride", 1)),
                               value(layer.get("dilation", 1)), before, after,
                               value(layer.get("output_padding", 0)), geometry)
    if op == "pixel_shuffle":
        return shuffle_reads(value(layer["factor"]), geometry)
    if op == "pixel_unshuffle":
        return unshuffle_reads(value(layer["factor"]), geometry)
    if op == "crop":
        return crop_reads(*pair(layer["crop"], axis, dims), geometry)
    if op in ELEMENTWISE_OPS:
        return Reads(np.arange(geometry[0]), np.arange(geometry[0]), geometry[0]), \
            geometry[1], n
    raise ValueError(f"unknown op {op!r}")


