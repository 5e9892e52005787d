"""What each output unit of a layer reads, per axis, and how the map size changes.

Every layer maps output unit ``y`` to the input units ``a(y), a(y) + e, ..., b(y)`` (an
arithmetic progression with step ``e``: the dilation of windows and transposed
convolutions, 1 for upsampling) that is periodic: ``a(y + D) = a(y) + N`` (likewise
``b``), so one period of offsets, ``a0[φ] = a(φ)`` and ``b0[φ] = b(φ)`` for
``0 <= φ < D``, describes the layer:

* windows (conv, pools, crops, pixel_unshuffle; kernel k, stride s, dilation d, padding
  before p): ``D = 1``, ``N = s``, ``a0 = -p``, ``b0 = -p + d (k - 1)``;
* upsample by f (PyTorch ``align_corners=False``): ``D = f``, ``N = 1``; with
  ``src = (y + 1/2) / f - 1/2`` and ``x0 = floor(src)``, nearest reads ``floor(y / f)``,
  linear reads ``x0`` and also ``x0 + 1`` when ``src`` is not an integer (a zero weight
  reads nothing), cubic reads ``x0 - 1 .. x0 + 2`` (PyTorch's cubic weights, A = -0.75,
  are non-zero on all four taps then) or ``x0`` alone;
* upsample by f with ``align_corners=True`` of an n-unit map: ``src = y (n - 1) /
  (n f - 1)``, so ``D = (n f - 1) / g`` and ``N = (n - 1) / g`` (``g`` their gcd), and the
  reads follow from ``src`` as above. The period depends on the map and can exceed it,
  so such networks are evaluated unit by unit (:mod:`rfsearch.periodic_eval`);
* pixel_shuffle by r: ``D = r``, ``N = 1``, unit y reads ``floor(y / r)``;
* transposed convolution (PyTorch): y receives x through tap t when
  ``y = x s - p + t d``; ``D = s``, ``N = 1``, the hull of the x reached.

Reads past the border of the map are not clamped: they are virtual units beyond the
edge, exactly as padding positions are in the article's effective padding (so unit 0 of
a bilinear x2 reads [-1, 0]).

Map sizes: windows ``floor((n + p + q - k_eff) / s) + 1`` (ceil mode: rounded up, minus
one when the last window would start at or after ``n + p``, PyTorch's rule); upsample and
pixel_shuffle ``n f``; transposed convolution ``(n - 1) s - p - q + d (k - 1) + o + 1``.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from . import ops
from .spec import Layer

WINDOW, RESAMPLE, WHOLE = 0, 1, 2  # kinds of layer for the periodic program


def upsample_offsets(factor: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(a0, b0) [factor] of an upsample by ``factor`` (align_corners=False)."""
    phi = np.arange(factor, dtype=np.int64)
    num, den = 2 * phi + 1 - factor, 2 * factor  # src = num / den
    x0 = np.floor_divide(num, den)
    fractional = (num - x0 * den != 0).astype(np.int64)
    if mode == "nearest":
        zero = np.zeros(factor, np.int64)  # floor(phi / factor) = 0 within one period
        return zero, zero
    if mode == "linear":
        return x0, x0 + fractional
    return x0 - fractional, x0 + 2 * fractional  # cubic


def aligned_offsets(factor: int, mode: str, n: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """(D, N, a0 [D], b0 [D]) of an upsample with ``align_corners=True`` of an n-unit map:
    ``src(y) = y (n - 1) / (n f - 1) = y N / D`` in lowest terms (PyTorch's scale is 0
    for a 1-unit output, and a 1-unit map has n - 1 = 0: every output reads unit 0, D = 1
    and N = 0)."""
    out = n * factor
    if out == 1 or n == 1:
        return 1, 0, np.zeros(1, np.int64), np.zeros(1, np.int64)
    g = math.gcd(out - 1, n - 1)
    D, N = (out - 1) // g, (n - 1) // g
    num = np.arange(D, dtype=np.int64) * N  # src = num / D
    x0, fractional = num // D, (num % D != 0).astype(np.int64)
    if mode == "linear":
        return D, N, x0, x0 + fractional
    return D, N, x0 - fractional, x0 + 2 * fractional  # cubic


def transpose_offsets(kernel: int, stride: int, dilation: int, pad: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(a0, b0) [stride] of a transposed convolution: the hull of the inputs x with
    ``y = x s - p + t d`` for some tap t (spec validation guarantees one exists)."""
    phi = np.arange(stride, dtype=np.int64)[:, None]
    t = np.arange(kernel, dtype=np.int64)[None, :]
    num = phi + pad - t * dilation  # [s, k]: s * x for the taps that land on a unit
    hits = num % stride == 0
    x = np.where(hits, num // stride, 0)
    big = np.iinfo(np.int64).max
    return (np.where(hits, x, big).min(axis=1), np.where(hits, x, -big).max(axis=1))


def period_factor(layer: Layer, axis: int) -> int:
    """D of a layer whose period does not depend on the map: an upsample's or pixel
    shuffle's factor, a transposed convolution's stride; 1 for windows."""
    return _period(layer.code, layer.factor[axis] if layer.factor else 0, layer.stride[axis])


def _period(code: int, factor: int, stride: int) -> int:
    if code in (ops.UPSAMPLE, ops.PIXEL_SHUFFLE):
        return factor
    return stride if code == ops.CONV_TRANSPOSE else 1


def layer_reads(layer: Layer, axis: int, n: int | None = None) -> dict:
    """The periodic program's description of ``layer`` along ``axis``: its kind and
    either window parameters or one period of offsets (advancing ``s`` input units per
    period) with the size rule ``n' = mul * n + add``. ``n``: the input map's size, which
    an upsample with ``align_corners`` needs (without it, only its size rule is right).
    The result is shared between equal layers: read it, do not change it."""
    def at(values):
        return values[axis] if values else 0

    return _reads(layer.code, layer.kernel[axis], layer.stride[axis], layer.dilation[axis],
                  layer.pad_before[axis], layer.pad_after[axis], at(layer.factor), layer.mode,
                  layer.align_corners, at(layer.output_padding), n if layer.align_corners
                  else None)


@lru_cache(maxsize=1 << 14)
def _reads(code: int, k: int, s: int, d: int, before: int, after: int, f: int, mode: str,
           align_corners: bool, output_padding: int, n: int | None) -> dict:
    """:func:`layer_reads` of one layer's parameters along one axis (equal layers of a
    batch, and of batches that follow, are described once)."""
    if code in ops.WHOLE_MAP.values():
        return {"kind": WHOLE}
    if align_corners:
        D, N, a0, b0 = aligned_offsets(f, mode, n) if n else (
            1, 1, np.zeros(1, np.int64), np.zeros(1, np.int64))
        return {"kind": RESAMPLE, "D": D, "s": N, "a0": a0, "b0": b0, "mul": f, "add": 0,
                "step": 1}
    if code in (ops.UPSAMPLE, ops.PIXEL_SHUFFLE):
        a0, b0 = upsample_offsets(f, mode)
        return {"kind": RESAMPLE, "D": _period(code, f, s), "a0": a0, "b0": b0, "mul": f,
                "add": 0, "step": 1}
    if code == ops.CONV_TRANSPOSE:
        a0, b0 = transpose_offsets(k, s, d, before)
        add = d * (k - 1) + output_padding + 1 - s - before - after
        return {"kind": RESAMPLE, "D": _period(code, f, s), "a0": a0, "b0": b0, "mul": s,
                "add": add,
                "step": d}
    return {"kind": WINDOW, "k_eff": d * (k - 1) + 1, "s": s, "pb": before, "pa": after,
            "step": d}
