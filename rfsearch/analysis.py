"""Resolution-aware analysis: which layers are wasted at an input size (Richter et al.,
rfa-toolbox), the feasible input range, and the RF at each output stride.

Computed from the per-layer states of the kernel, vectorised over networks and layers.
Whole-map layers (global pool, dense) take no part, as rfa-toolbox filters them. For a
layer l with predecessors p, input size ``res`` (per axis; a condition holds when it
holds on every axis) and ``k_eff`` its window:

* ``critical``: rf_min(l) > res;
* ``unproductive`` (rfa-toolbox 1.7 ``is_border``): every predecessor's map is no
  larger than the window, ``res // S(p) <= k_eff(l)`` for all p (a fractional
  stride ``S = num/den`` reads ``res * den // num``; a resampling layer's ``k_eff`` is the
  input units one output unit reads); or every predecessor
  already sees the whole input, ``res <= rf_min(p)``, and so does l, strictly,
  ``res < rf_min(l)`` (with ``exempt_1x1``, 1x1 layers are exempt from this second rule);
* ``border``: the first layer (in spec order) whose receptive field exceeds the input,
  ``rf(l) > res``;
* feasible input range (rfa-toolbox README rule): from the largest rf_min of any layer
  (below it some layer is unproductive) to the largest receptive field of any layer
  (above it no layer covers the input). rfa-toolbox 1.7's ``input_resolution_range``
  also takes the largest kernel x stride after each layer into the minimum, which can put
  it above the maximum (12..7 for two 3x3 stride-2 convolutions) and gives ResNet-50
  96..427 where its README says 75..427: that term is left out;
* ``rf_at_stride_K``: receptive field (height, or a 1-D network's sequence axis) of the
  last layer with effective stride exactly K/1;
* ``rf_ratio``: the output's receptive field over the input size, the smallest ratio over the axes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import ops
from . import recurrence as R
from .encode import Batch
from .names import chain_layer
from .table import RF_AT_STRIDES

RULE = ("rfa-toolbox 1.7 is_border (feature-map rule, then rf_min rule; 1x1 layers "
        "{exempt}); feasible range: largest rf_min .. largest rf (rfa-toolbox README, "
        "without 1.7's kernel x stride term); "
        "whole-map layers excluded")


def rule(exempt_1x1: bool) -> str:
    """The rule variant, recorded in file metadata."""
    return RULE.format(exempt="exempt" if exempt_1x1 else "not exempt")


@dataclass
class Analysis:
    """Per-layer flags [L, N] (node-major, node 0 is the input) and per-network values [N]
    with their null masks."""

    layer: dict[str, tuple[np.ndarray, np.ndarray]]
    network: dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class Layers:
    """What the rules read, node-major (node 0 is the input): [L, N] masks and [L, A, N]
    per-axis values. The effective stride is the fraction ``num / den`` (den 1 without
    upsampling); ``k_eff`` is the span of input units one output unit reads (the dilated
    window); ``name(i, node)`` names a layer; ``axis`` is the axis of ``rf_at_stride_K``
    (the height, or a 1-D network's sequence axis). ``counted``: valid layers that take
    part (not whole-map, bounded); a layer that faults (a dead branch whose map is gone at
    this size: the output's would make an error row) takes none. ``known``: whether a
    layer's rf_min is known (None: every one is; beyond the paths enumerated unit by unit
    it is not, and the rules that read it are then unknown); ``mixed``: layers after a
    merge of different jumps (unit by unit), which no rf_at_stride counts."""

    live: np.ndarray
    valid: np.ndarray
    counted: np.ndarray
    rf: np.ndarray
    rf_min: np.ndarray
    num: np.ndarray
    den: np.ndarray
    k_eff: np.ndarray
    preds: np.ndarray
    name: Callable[[int, int], str]
    axis: int = 0
    mixed: np.ndarray | None = None  # [L, N]: no single stride (num / den: one input's)
    known: np.ndarray | None = None  # [L, N]: rf_min known


def _known(g: Layers) -> tuple[np.ndarray, np.ndarray]:
    """([L, N] rf_min known, [L, N] known for the layer and every predecessor)."""
    known = np.ones(g.live.shape, bool) if g.known is None else g.known
    has = g.preds >= 0  # [L, M, N]
    preds = known[np.clip(g.preds, 0, None), np.arange(known.shape[1])]  # [L, M, N]
    return known, known & (preds | ~has).all(axis=1)


def _gather_preds(values: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """values [L, A, N] at each input slot of each node: [L, M, A, N] (slot -1: node 0)."""
    idx = np.clip(preds, 0, None)[:, :, None, :]  # [L, M, 1, N]
    axis = np.arange(values.shape[1])[None, None, :, None]
    return values[idx, axis, np.arange(values.shape[-1])[None, None, None, :]]


def _wasted(g: Layers, res: np.ndarray, exempt_1x1: bool):
    """(unproductive, critical) [L, N] at the input size ``res`` [1, A, 1], and where each
    is unknown (it reads an unknown rf_min)."""
    has = g.preds >= 0  # [L, M, N]
    pnum, pden = _gather_preds(g.num, g.preds), _gather_preds(g.den, g.preds)
    pmin = _gather_preds(g.rf_min, g.preds)  # [L, M, A, N]
    # a predecessor's map: the size over its stride (0 past an overflow: that row is null)
    pmap = res[:, None] * pden // np.maximum(pnum, 1)
    small_maps = ((pmap <= g.k_eff[:, None]).all(axis=2) | ~has).all(axis=1)
    seen = ((res[:, None] <= pmin).all(axis=2) | ~has).all(axis=1)
    rf_rule = seen & (res < g.rf_min).all(axis=1)
    if exempt_1x1:
        rf_rule &= ~(g.k_eff == 1).all(axis=1)
    known, with_preds = _known(g)
    unproductive = g.counted & (small_maps | (rf_rule & with_preds))
    critical = g.counted & known & (g.rf_min > res).all(axis=1)
    return (unproductive, critical), (g.counted & ~small_maps & ~with_preds,
                                      g.counted & ~known)


def _at_size(g: Layers, size, exempt_1x1: bool) -> tuple[dict, dict]:
    """The layer flags and the network columns that need an input size."""
    n = g.live.shape[1]
    if size is None:
        none = np.ones(n, bool)
        return {}, {"border_layer": (np.full(n, None, object), none),
                    "n_unproductive": (np.zeros(n, np.int64), none),
                    "n_critical": (np.zeros(n, np.int64), none)}
    res = np.asarray(size, np.int64)[None, :, None]  # [1, A, 1]
    (unproductive, critical), (u_unknown, c_unknown) = _wasted(g, res, exempt_1x1)
    exceeds = g.counted & (g.rf > res).all(axis=1)
    first = np.argmax(exceeds, axis=0)  # [N]
    has_border = exceeds.any(axis=0)
    border = exceeds & (np.arange(len(exceeds))[:, None] == first) & has_border
    no = ~g.valid.any(axis=0)
    names = np.array([g.name(i, first[i]) if has_border[i] else None for i in range(n)],
                     dtype=object)
    lay = {"border": (border, ~g.valid), "unproductive": (unproductive, ~g.valid | u_unknown),
           "critical": (critical, ~g.valid | c_unknown)}
    return lay, {"border_layer": (names, ~has_border | no),
                 "n_unproductive": (unproductive.sum(axis=0), no | u_unknown.any(axis=0)),
                 "n_critical": (critical.sum(axis=0), no | c_unknown.any(axis=0))}


def judge(g: Layers, size, exempt_1x1: bool = False) -> Analysis:
    """The analysis columns of networks described by ``g`` at input size ``size`` (one
    value per axis, or None)."""
    L, n = g.live.shape
    lay, net = _at_size(g, size, exempt_1x1)
    bad = ~g.counted.any(axis=0)
    known = _known(g)[0]
    net["feasible_min"] = (np.where(g.counted, g.rf_min.max(axis=1), 0).max(axis=0),
                           bad | (g.counted & ~known).any(axis=0))
    net["feasible_max"] = (np.where(g.counted, g.rf.max(axis=1), 0).max(axis=0), bad)
    a = g.axis
    for s in RF_AT_STRIDES:
        at = g.counted & (g.num[:, a] == s) & (g.den[:, a] == 1)  # exactly stride s
        if g.mixed is not None:
            at &= ~g.mixed
        last = L - 1 - np.argmax(at[::-1], axis=0)
        net[f"rf_at_stride_{s}"] = (g.rf[last, a, np.arange(n)], ~at.any(axis=0) | bad)
    return Analysis(lay, net)


def analyze(batch: Batch, layers: dict[str, np.ndarray], size, exempt_1x1: bool = False
            ) -> Analysis:
    """Analysis columns from the integer kernel's per-layer states (``layers``: fields
    [L, 2, N])."""
    node = np.arange(batch.depth)[:, None]
    live = (node >= 1) & (node < batch.length[None, :])  # [L, N]
    valid = live & (layers["fault"] == R.NO_FAULT).all(axis=1)
    whole = np.isin(batch.layer_major("op"), list(ops.WHOLE_MAP.values()))  # [L, N]
    counted = valid & ~whole & ((layers["flags"] & R.UNBOUNDED) == 0).all(axis=1)
    jump = layers["J"].astype(np.int64)
    names = batch.layer_names

    def name(i: int, node: int) -> str:
        return names[i][node - 1] if names is not None else chain_layer(node - 1)

    g = Layers(live, valid, counted, rf=layers["v"].astype(np.int64) - layers["u"] + 1,
               rf_min=layers["rmin"].astype(np.int64) + 1, num=jump,
               den=np.ones_like(jump), k_eff=batch.layer_major("dilation").astype(np.int64)
               * (batch.layer_major("kernel") - 1) + 1, preds=batch.layer_major("preds"),
               name=name)
    return judge(g, size, exempt_1x1)


def rf_ratio(rf_h, rf_w, size, xp=np):
    """The output's receptive field over the input size, the smallest ratio over the axes
    (NaN where the RF or the size is unknown; ``xp``: numpy or jax.numpy)."""
    if size is None:
        return xp.full(xp.shape(rf_h), np.nan)
    return rf_ratio_axes(xp.stack([rf_h, rf_w]), size, xp)


def rf_ratio_axes(rf, size, xp=np):
    """:func:`rf_ratio` over any axes: ``rf`` [A, ...] (NaN unknown) and one size per
    axis."""
    size = xp.asarray(size).reshape(-1, *(1,) * (rf.ndim - 1))
    return (rf / divisor(size, xp.shape(rf), xp)).min(axis=0)


def divisor(b, shape, xp=np):
    """``b`` as the divisor of an array of ``shape``, so that dividing by it is correctly
    rounded on every device, as numpy's division is: XLA turns a division by a broadcast
    value into a product with its reciprocal (an ulp off for most divisors), so on the
    device the divisor is materialised behind an optimisation barrier."""
    if xp is np:
        return b
    from jax import lax

    full = xp.broadcast_to(xp.asarray(b, dtype=xp.result_type(float)), shape)
    return lax.optimization_barrier(full)
