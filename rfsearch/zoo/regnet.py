"""RegNet / AnyNet (Radosavovic et al. 2020, pycls), as specs.

The RegNet generator turns (w0, wa, wm, depth) into per-stage widths and depths; the
AnyNetX body is a stem (3x3/2), then stages of X blocks (1x1, 3x3 group conv with the
stage's stride in its first block, 1x1) with a 1x1 projection shortcut where the stride
or the width changes. Only stage depths change the geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SpecError
from .graph import Graph


@dataclass(frozen=True)
class RegNetParams:
    """pycls RegNet parameters: initial width w0, slope wa, width multiplier wm, depth,
    group width (channels only)."""

    w0: int
    wa: float
    wm: float
    depth: int
    group_width: int


REGNETX = {"200mf": RegNetParams(24, 36.44, 2.49, 13, 8),
           "400mf": RegNetParams(24, 24.48, 2.54, 22, 16),
           "600mf": RegNetParams(48, 36.97, 2.24, 16, 24),
           "800mf": RegNetParams(56, 35.73, 2.28, 16, 16),
           "1.6gf": RegNetParams(80, 34.01, 2.25, 18, 24)}


def regnet_stages(w0: float, wa: float, wm: float, depth: int, group_width: int = 1,
                  q: int = 8) -> tuple[list[int], list[int]]:
    """pycls ``generate_regnet``: per-block widths u_j = w0 + wa*j, quantised to
    w0 * wm^round(log(u_j / w0) / log(wm)) (multiples of q); equal widths form a stage;
    then widths rounded to multiples of the group width (``adjust_block_compatibility``,
    bottleneck ratio 1). Returns (stage widths, stage depths)."""
    if w0 <= 0 or wa < 0 or wm <= 1 or depth < 1 or w0 % q:
        raise SpecError(f"invalid RegNet parameters w0={w0}, wa={wa}, wm={wm}, depth={depth}")
    continuous = np.arange(depth) * wa + w0
    exponents = np.round(np.log(continuous / w0) / np.log(wm))
    widths = (np.round(w0 * np.power(wm, exponents) / q) * q).astype(int)
    stage_widths, stage_depths = np.unique(widths, return_counts=True)
    groups = [min(group_width, int(w)) for w in stage_widths]
    adjusted = [max(g, int(round(int(w) / g) * g)) for w, g in zip(stage_widths, groups,
                                                                    strict=True)]
    return adjusted, stage_depths.tolist()


def anynet(depths, widths=None, name: str = "anynet", description: str | None = None) -> dict:
    """AnyNetX body with the given stage depths (every stage strides 2 in its first block)."""
    depths = [int(d) for d in depths]
    if not depths or min(depths) < 1:
        raise SpecError(f"stage depths must be positive integers, got {depths!r}")
    widths = list(widths) if widths is not None else [None] * len(depths)
    g = Graph(name, description or f"AnyNetX, stage depths {depths}")
    x = g.conv("stem.conv", 3, 2, 1)
    width_in = 32
    for s, (count, width) in enumerate(zip(depths, widths, strict=True), start=1):
        for b in range(1, count + 1):
            pre = f"s{s}.b{b}"
            stride = 2 if b == 1 else 1
            g.conv(f"{pre}.f.a", 1, inputs=x)
            g.conv(f"{pre}.f.b", 3, stride, 1)
            body = g.conv(f"{pre}.f.c", 1)
            shortcut = x
            if stride != 1 or width != width_in:
                shortcut = g.conv(f"{pre}.proj", 1, stride, inputs=x)
            g.add(f"{pre}.add", [body, shortcut])
            x = g.act(f"s{s}" if b == count else f"{pre}.relu")
            width_in = width
    return g.spec()


def regnetx(flops: str = "200mf") -> dict:
    """RegNetX-200MF .. -1.6GF as pycls defines them (its width rounding and layer
    names; torchvision has 400MF, 800MF and 1.6GF with the same stage depths, strides and
    so the same geometry) up to the last stage."""
    key = flops.lower()
    if key not in REGNETX:
        raise SpecError(f"flops must be one of {sorted(REGNETX)}, got {flops!r}")
    p = REGNETX[key]
    widths, depths = regnet_stages(p.w0, p.wa, p.wm, p.depth, p.group_width)
    return anynet(depths, widths, name=f"regnetx_{key.replace('.', '_')}",
                  description=f"RegNetX-{flops.upper()}: stage depths {depths}, "
                              f"widths {widths}")
