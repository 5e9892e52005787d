"""Resolution-aware analysis: which layers are wasted at an input size (Richter et al.,
rfa-toolbox), the feasible input range, and the RF at each output stride.

Computed from the per-layer states of the kernel, vectorised over networks and layers.
Whole-map layers (global pool, dense) take no part, as rfa-toolbox filters them. For a
layer l with predecessors p, input size ``res`` (per axis; a condition holds when it
holds on every axis) and ``k_eff`` its window:

* ``critical``: rf_min(l) > res;
* ``unproductive`` (rfa-toolbox 1.7 ``is_border``): every predecessor's map is no
  larger than the window, ``res // S(p) <= k_eff(l)`` for all p; or every predecessor
  already sees the whole input, ``res <= rf_min(p)``, and so does l, strictly,
  ``res < rf_min(l)`` (with ``exempt_1x1``, 1x1 layers are exempt from this second rule);
* ``border``: the first layer (in spec order) whose receptive field exceeds the input,
  ``rf(l) > res``;
* feasible input range (rfa-toolbox README rule): from the largest rf_min of any layer
  (below it some layer is unproductive) to the largest receptive field of any layer
  (above it no layer covers the input);
* ``rf_at_stride_K``: receptive field (height) of the last layer with effective stride K;
* ``rf_ratio``: the output's receptive field over the input size, the smaller axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ops
from . import recurrence as R
from .encode import Batch
from .table import RF_AT_STRIDES

RULE = ("rfa-toolbox 1.7 is_border (feature-map rule, then rf_min rule; 1x1 layers "
        "{exempt}); feasible range: largest rf_min .. largest rf (rfa-toolbox README); "
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


def _gather_preds(values: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """values [L, 2, N] at each input slot of each node: [L, M, 2, N] (slot -1: node 0)."""
    idx = np.clip(preds, 0, None)[:, :, None, :]  # [L, M, 1, N]
    axis = np.arange(2)[None, None, :, None]
    return values[idx, axis, np.arange(values.shape[-1])[None, None, None, :]]


def analyze(batch: Batch, layers: dict[str, np.ndarray], size, exempt_1x1: bool = False
            ) -> Analysis:
    """Analysis columns from the kernel's per-layer states (``layers``: fields [L, 2, N])."""
    L, n = batch.depth, len(batch)
    node = np.arange(L)[:, None]
    live = (node >= 1) & (node < batch.length[None, :])  # [L, N]
    valid = live & (layers["fault"] == R.NO_FAULT).all(axis=1)
    whole = np.isin(batch.layer_major("op"), list(ops.WHOLE_MAP.values()))  # [L, N]
    counted = valid & ~whole & ((layers["flags"] & R.UNBOUNDED) == 0).all(axis=1)
    rf = layers["v"].astype(np.int64) - layers["u"] + 1  # [L, 2, N]
    rf_min = layers["rmin"].astype(np.int64) + 1
    jump = layers["J"].astype(np.int64)
    k_eff = batch.layer_major("dilation").astype(np.int64) * (
        batch.layer_major("kernel") - 1) + 1  # [L, 2, N]
    lay = {}
    net = {}
    if size is not None:
        res = np.asarray(size, np.int64)[None, :, None]  # [1, 2, 1]
        preds = batch.layer_major("preds")  # [L, M, N]
        has = preds >= 0  # [L, M, N]
        pj, pmin = _gather_preds(jump, preds), _gather_preds(rf_min, preds)  # [L, M, 2, N]
        small_maps = ((res[:, None] // pj <= k_eff[:, None]).all(axis=2) | ~has).all(axis=1)
        seen = ((res[:, None] <= pmin).all(axis=2) | ~has).all(axis=1)
        rf_rule = seen & (res < rf_min).all(axis=1)
        if exempt_1x1:
            rf_rule &= ~(k_eff == 1).all(axis=1)
        unproductive = counted & (small_maps | rf_rule)
        critical = counted & (rf_min > res).all(axis=1)
        exceeds = counted & (rf > res).all(axis=1)
        first = np.argmax(exceeds, axis=0)  # [N]
        has_border = exceeds.any(axis=0)
        border = exceeds & (node == first[None, :]) & has_border[None, :]
        no = ~valid.any(axis=0) | (~valid & live).any(axis=0)  # a network with a bad layer
        lay = {"border": (border, ~valid), "unproductive": (unproductive, ~valid),
               "critical": (critical, ~valid)}
        names = np.array([batch.layer_names[i][first[i] - 1] if batch.layer_names is not None
                          and has_border[i] else f"layer{first[i] - 1}" for i in range(n)],
                         dtype=object)
        net["border_layer"] = (names, ~has_border | no)
        net["n_unproductive"] = (unproductive.sum(axis=0), no)
        net["n_critical"] = (critical.sum(axis=0), no)
    else:  # these need an input size
        none = np.ones(n, bool)
        net = {"border_layer": (np.full(n, None, object), none),
               "n_unproductive": (np.zeros(n, np.int64), none),
               "n_critical": (np.zeros(n, np.int64), none)}
    bad = ~counted.any(axis=0) | (live & ~valid).any(axis=0)
    net["feasible_min"] = (np.where(counted, rf_min.max(axis=1), 0).max(axis=0), bad)
    net["feasible_max"] = (np.where(counted, rf.max(axis=1), 0).max(axis=0), bad)
    for s in RF_AT_STRIDES:
        at = counted & (jump[:, 0] == s)  # [L, N]
        last = L - 1 - np.argmax(at[::-1], axis=0)
        net[f"rf_at_stride_{s}"] = (rf[last, 0, np.arange(n)], ~at.any(axis=0) | bad)
    return Analysis(lay, net)


def rf_ratio(rf_h, rf_w, size, xp=np):
    """The output's receptive field over the input size, the smaller axis (NaN where the
    RF or the size is unknown; ``xp``: numpy or jax.numpy)."""
    if size is None:
        return xp.full(xp.shape(rf_h), np.nan)
    return xp.minimum(rf_h / size[0], rf_w / size[1])
