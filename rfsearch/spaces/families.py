"""Network-family spaces: Once-for-All MobileNetV3, AnyNetX, RegNetX, EfficientNet.

Only what changes the geometry is a choice (depths, kernels); widths, expansion ratios
and group widths are projected out, as stated per space.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..zoo.efficientnet import VARIANTS, efficientnet
from ..zoo.graph import Graph
from ..zoo.regnet import regnet_stages
from .space import Slot, Space, Variable, mixed_radix

# --- Once-for-All MobileNetV3 ----------------------------------------------------------
OFA_STRIDES = (2, 2, 2, 1, 2)
OFA_DEPTHS = (2, 3, 4)
OFA_KERNELS = (3, 5, 7)


def _mbconv_stage(kernels, stride: int) -> dict:
    """OFA MobileNetV3 stage: inverted residual blocks (1x1, depthwise k with padding
    k//2, 1x1); every block after the first adds its input (identity shortcut)."""
    g = Graph("stage")
    x = Graph.INPUT
    for i, k in enumerate(kernels):
        g.conv(f"b{i}.expand", 1, inputs=x)
        g.conv(f"b{i}.depthwise", k, stride if i == 0 else 1, k // 2)
        body = g.conv(f"b{i}.project", 1)
        x = g.add(f"b{i}.add", [x, body]) if i else body
    return g.spec()


def _ofa_options() -> list[tuple[int, tuple[int, ...]]]:
    """(depth, active kernels) per stage option: 3^2 + 3^3 + 3^4 = 117."""
    return [(d, ks) for d in OFA_DEPTHS for ks in itertools.product(OFA_KERNELS, repeat=d)]


def ofa_mbv3() -> Space:
    options = _ofa_options()
    labels = tuple(f"d={d} ks={','.join(map(str, ks))}" for d, ks in options)
    first = Graph("first")
    first.conv("first_conv", 3, 2, 1)
    first.conv("blocks.0.depthwise", 3, 1, 1)
    first.conv("blocks.0.project", 1)
    slots = [Slot("first", (), (first.spec(),))]
    for s, stride in enumerate(OFA_STRIDES):
        slots.append(Slot(f"stage{s + 1}", (s,), tuple(_mbconv_stage(ks, stride)
                                                      for _, ks in options)))
    depth = np.array([d for d, _ in options])
    kernels = np.zeros((len(options), 4), np.int64)
    for j, (_, ks) in enumerate(options):
        kernels[j, :len(ks)] = ks

    def keys(ids):
        digits = mixed_radix(ids, [len(options)] * 5)
        return {"d": list(depth[digits]), "ks": list(kernels[digits].reshape(len(ids), 20))}
    return Space("ofa-mbv3", [Variable(f"stage{i + 1}", labels) for i in range(5)], slots,
                 input_size=(224, 224), definition={"space": "ofa-mbv3", "depths": OFA_DEPTHS,
                                                    "kernels": OFA_KERNELS,
                                                    "strides": OFA_STRIDES},
                 description="Once-for-All MobileNetV3 (depth x kernel; expansion projected "
                             "out); ks is 0 past a stage's depth", keys=keys)


# --- AnyNetX / RegNetX -----------------------------------------------------------------

def _xblocks(g: Graph, prefix: str, x: str, depth: int) -> str:
    """AnyNetX stage: X blocks (1x1, 3x3 with the stage's stride 2 in block 1, 1x1) with
    a 1x1/2 projection shortcut in block 1 and identity shortcuts after."""
    for b in range(depth):
        stride = 2 if b == 0 else 1
        g.conv(f"{prefix}b{b}.a", 1, inputs=x)
        g.conv(f"{prefix}b{b}.b", 3, stride, 1)
        body = g.conv(f"{prefix}b{b}.c", 1)
        shortcut = g.conv(f"{prefix}b{b}.proj", 1, stride, inputs=x) if b == 0 else x
        x = g.add(f"{prefix}b{b}.add", [body, shortcut])
    return x


def _xblock_stage(depth: int) -> dict:
    g = Graph("stage")
    _xblocks(g, "", Graph.INPUT, depth)
    return g.spec()


def _stem() -> dict:
    g = Graph("stem")
    g.conv("stem.conv", 3, 2, 1)
    return g.spec()


ANYNET_DEPTHS = tuple(range(1, 17))


def anynet_space() -> Space:
    stages = tuple(_xblock_stage(d) for d in ANYNET_DEPTHS)
    slots = [Slot("stem", (), (_stem(),))] + [Slot(f"s{i + 1}", (i,), stages) for i in range(4)]
    return Space("anynet", [Variable(f"d{i + 1}", ANYNET_DEPTHS) for i in range(4)], slots,
                 input_size=(224, 224), definition={"space": "anynet", "depths": ANYNET_DEPTHS},
                 description="AnyNetX stage depths (widths, groups, bottleneck projected out)")


REGNET_W0 = tuple(range(8, 257, 8))
REGNET_WA = tuple(range(8, 257, 8))
REGNET_WM = (1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0)
REGNET_DEPTH = tuple(range(12, 29))


def regnet_space() -> Space:
    """The RegNet generator over a grid of (w0, wa, wm, depth); a candidate whose widths
    do not form exactly 4 stages is invalid (as in the RegNet design space)."""
    stems = (_stem(),)
    by_depths: dict[tuple, dict] = {}
    blocks = []
    for w0, wa, wm, d in itertools.product(REGNET_W0, REGNET_WA, REGNET_WM, REGNET_DEPTH):
        _, depths = regnet_stages(w0, wa, wm, d)
        if len(depths) != 4:
            blocks.append(None)
            continue
        key = tuple(depths)
        if key not in by_depths:
            g = Graph("body")
            x = Graph.INPUT
            for stage, depth in enumerate(depths, start=1):
                x = _xblocks(g, f"s{stage}.", x, depth)
            by_depths[key] = g.spec()
        blocks.append(by_depths[key])
    variables = [Variable("w0", REGNET_W0), Variable("wa", REGNET_WA), Variable("wm", REGNET_WM),
                 Variable("depth", REGNET_DEPTH)]
    return Space("regnet", variables, [Slot("stem", (), stems), Slot("body", (0, 1, 2, 3),
                                                                        tuple(blocks))],
                 input_size=(224, 224), definition={"space": "regnet", "w0": REGNET_W0,
                                                    "wa": REGNET_WA, "wm": REGNET_WM,
                                                    "depth": REGNET_DEPTH},
                 description="RegNetX generator grid (stage depths from w0, wa, wm, depth)")


EFFICIENTNET_DEPTH = tuple(round(1.0 + 0.05 * i, 2) for i in range(61))  # 1.00 .. 4.00


def efficientnet_space() -> Space:
    """EfficientNet with 'same' padding: the depth coefficient scales each stage's repeats
    (ceil); the named variants B0-B7 are the points of their coefficients."""
    blocks = tuple(efficientnet(depth_coefficient=c) for c in EFFICIENTNET_DEPTH)
    variants = {depth: name for name, (_, depth, _) in VARIANTS.items()}

    def keys(ids):
        coefficient = np.asarray(EFFICIENTNET_DEPTH)[np.asarray(ids, np.int64)]
        return {"variant": np.array([variants.get(float(c)) for c in coefficient], object)}
    return Space("efficientnet", [Variable("depth_coefficient", EFFICIENTNET_DEPTH)],
                 [Slot("body", (0,), blocks)], input_size=(224, 224),
                 definition={"space": "efficientnet", "depth": EFFICIENTNET_DEPTH},
                 description="EfficientNet depth scaling (B0-B7 named)", keys=keys)


def ofa_mbv3_size() -> int:
    """Per-stage options (depth, then a kernel per block) over the five stages."""
    return len(_ofa_options()) ** len(OFA_STRIDES)


def anynet_size() -> int:
    return len(ANYNET_DEPTHS) ** 4


def regnet_size() -> int:
    return math.prod(map(len, (REGNET_W0, REGNET_WA, REGNET_WM, REGNET_DEPTH)))


def efficientnet_size() -> int:
    return len(EFFICIENTNET_DEPTH)
