"""Framework-neutral geometry of layout and resampling ops: where a reshape carries the
map's axes (or splits one), a transposed convolution's padding, a subsampling resize's
window, and the layout windows run over."""

from __future__ import annotations

import itertools
import math
import operator

from .builder import Unsupported, Value


def standard_layout(x: Value, dims: int) -> None:
    """Windows run over tensor dimensions 2.. (N, C, spatial...)."""
    if not x.spatial:
        raise Unsupported("a window over features: an earlier op read the map whole or "
                          "flattened it (a dense layer, a product of two maps as in "
                          "attention)")
    if x.axes != tuple(range(2, 2 + dims)):
        raise Unsupported("a window over a tensor whose spatial axes were moved")


def subsampled(factors, first, taps) -> dict:
    """The window of a resize that divides each axis by an integer factor ``r``: output
    unit ``y`` reads ``taps`` units from ``r * y + first`` on (a window of ``taps``,
    stride ``r``, the first ``first`` units cropped), ending where the map does."""
    return {"kernel": list(taps), "stride": list(factors),
            "padding": [[-f, max(0, f + t - r)] for r, f, t in zip(factors, first, taps,
                                                                strict=True)]}


def carried(old, new, axes) -> tuple[int, ...] | None:
    """Where a row-major reshape from ``old`` to ``new`` puts the dimensions ``axes`` (in
    any order: a permuted map's), if it keeps each whole (size-1 dimensions come and go;
    others may merge or split)."""
    before = list(itertools.accumulate(old, operator.mul, initial=1))
    after = list(itertools.accumulate(new, operator.mul, initial=1))
    used, where = set(), {}
    for a in sorted(axes):  # a reshape keeps the dimensions' order
        found = [j for j in range(len(new)) if j not in used and new[j] == old[a]
                 and after[j] == before[a]]
        if not found or (where and found[0] < max(where.values())):
            return None
        used.add(found[0])
        where[a] = found[0]
    return tuple(where[a] for a in axes)


def split(old, new, axes) -> tuple[tuple[int, ...], list[int]] | None:
    """Where a row-major reshape that splits spatial axes of ``n`` units into
    ``(n / r, r)`` (and keeps every other dimension) puts their ``n / r`` halves, and the
    factors ``r``, both in the order of ``axes``: space to depth, a pixel unshuffle (unit
    ``y`` of the half reads units ``r y .. r y + r - 1``, held along the ``r`` dimension)."""
    j, found = 0, {}
    for i, size in enumerate(old):
        if j >= len(new):
            return None
        pair = new[j] != size and j + 1 < len(new) and new[j] * new[j + 1] == size
        if (not pair and new[j] != size) or (pair and i not in axes):
            return None
        if i in axes:
            found[i] = (j, new[j + 1] if pair else 1)
        j += 2 if pair else 1
    if j != len(new) or max((r for _, r in found.values()), default=1) == 1:
        return None
    return tuple(found[a][0] for a in axes), [found[a][1] for a in axes]


def refuse_split(old, new, axes) -> None:
    """Refuse a row-major reshape from ``old`` to ``new`` that splits a spatial dimension
    among several (windows, tiles, a hand-written pixel shuffle, a circular transposed
    convolution folding its output back): its units no longer sit at one position each,
    so no box describes what a later unit reads. Reshapes that only merge the map into
    features (a flatten) pass."""
    before = list(itertools.accumulate(old, operator.mul, initial=1))
    after = set(itertools.accumulate(new, operator.mul, initial=1))
    for a in axes:
        cuts = sorted(b for b in after if before[a] < b < before[a + 1])
        if cuts:
            edges = [before[a], *cuts, before[a + 1]]
            parts = [f"{j // i}" if j % i == 0 else "?" for i, j in itertools.pairwise(edges)]
            raise Unsupported(f"a reshape that splits a spatial axis of {old[a]} units into "
                              f"{' x '.join(parts)} (windows, tiles or a wrap-around have "
                              "no box)")


def merged_into(old, new) -> list[int] | None:
    """The result dimension each dimension of ``old`` lands in, where the reshape only
    merges runs of adjacent dimensions (else None)."""
    where, j, acc = [], 0, 1
    for n in old:
        if j >= len(new):
            return None
        acc *= n
        where.append(j)
        if acc == new[j]:
            j, acc = j + 1, 1
        elif acc > new[j] or new[j] % acc:
            return None
    return where if j == len(new) else None


def repeat_factors(old, new, axes) -> list[int] | None:
    """A reshape merging each spatial axis (``axes``) with the dimensions after it, each
    into its own dimension (``jnp.repeat``, a pixel shuffle written as reshapes): unit
    ``h * r + i`` of the result holds unit ``h``, a nearest upsampling by ``r`` (the
    factors, in the order of ``axes``); None if the reshape does not only merge that way.
    Merged after another dimension, the axis interleaves: refused."""
    where = merged_into(old, new)
    if where is None or len({where[a] for a in axes}) != len(axes):
        return None
    factors = []
    for a in axes:
        group = [d for d in range(len(old)) if where[d] == where[a]]
        if any(old[d] > 1 for d in group if d < a):
            raise Unsupported("a reshape that merges a spatial axis after another dimension "
                              "(its units interleave)")
        factors.append(math.prod(old[d] for d in group if d > a))
    return factors


def transposed_padding(kernel, stride, dilation, pads) -> dict | None:
    """The spec's ``padding`` and ``output_padding`` of a transposed convolution given as
    an input-dilated one with pads ``(lo, hi)`` per axis: it crops ``d(k-1) - lo`` units
    before and ``d(k-1) - hi`` after the full output, and output_padding takes an end
    cropped less than the start. None when that does not fit (a crop below zero, or
    output_padding not below the stride or dilation)."""
    padding, extra = [], []
    for k, s, d, (lo, hi) in zip(kernel, stride, dilation, pads, strict=True):
        a, b = d * (k - 1) - lo, d * (k - 1) - hi
        x = max(0, a - b)
        if a < 0 or b + x < 0 or x >= max(s, d):
            return None
        padding.append([a, b + x])
        extra.append(x)
    fields: dict = {"padding": [a for a, _ in padding] if all(a == b for a, b in padding)
                    else padding}
    if any(extra):
        fields["output_padding"] = extra
    return fields
