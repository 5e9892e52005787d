"""Sampling without replacement: positions of a seeded random permutation of an id range.

A keyed Feistel network permutes [0, 2**(2*half)); cycle-walking maps it onto [0, n).
Any chunk of positions can be computed alone, so chunks of a sample never overlap and
a killed run resumes exactly. Ids come in draw order (position order), never re-sorted
per chunk: a seed gives the same rows in the same order whatever the chunk size, and so
on every device.
"""

from __future__ import annotations

import numpy as np


def _feistel(x: np.ndarray, half: int, keys: np.ndarray) -> np.ndarray:
    """A keyed bijection of [0, 2**(2*half)): four Feistel rounds on uint64."""
    mask = np.uint64((1 << half) - 1)
    left, right = x >> np.uint64(half), x & mask
    for key in keys:
        mixed = (right * np.uint64(0x9E3779B97F4A7C15) + key) & np.uint64(0xFFFFFFFFFFFFFFFF)
        mixed ^= mixed >> np.uint64(29)
        left, right = right, left ^ (mixed & mask)
    return (left << np.uint64(half)) | right


def sample_ids(lo: int, hi: int, start: int, count: int, seed: int) -> np.ndarray:
    """Positions [start, start + count) of a seeded random permutation of [lo, hi), in
    position order: chunks of a sample never share an id (sampling without replacement),
    and each chunk can be recomputed alone."""
    n = hi - lo
    half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    keys = np.random.default_rng([seed, 0x5EED]).integers(0, 2**63, 4, dtype=np.int64)
    keys = keys.astype(np.uint64)
    y = _feistel(np.arange(start, start + count, dtype=np.uint64), half, keys)
    out = y >= np.uint64(n)
    while out.any():  # cycle-walk back into [0, n): the domain is under 4n
        y[out] = _feistel(y[out], half, keys)
        out = y >= np.uint64(n)
    return y.astype(np.int64) + lo
