"""EfficientNet-B0..B7 (tensorflow/tpu ``efficientnet_model``, TF 'same' padding), as specs.

Only the depth coefficient changes the geometry (width scales channels, resolution is
the input size). Layer names follow Keras (``block2a_dwconv``). Squeeze-and-excitation
is a channel gate and is modelled element-wise (``squeeze_excite``), as in the Google
receptive_field library: its global average does not widen the spatial field.
"""

from __future__ import annotations

import math

from ..errors import SpecError
from .graph import Graph

# (kernel, stride, expansion, repeats) per stage of EfficientNet-B0
B0_STAGES = ((3, 1, 1, 1), (3, 2, 6, 2), (5, 2, 6, 2), (3, 2, 6, 3), (5, 1, 6, 3),
             (5, 2, 6, 4), (3, 1, 6, 1))
# variant: (width coefficient, depth coefficient, native resolution)
VARIANTS = {"b0": (1.0, 1.0, 224), "b1": (1.0, 1.1, 240), "b2": (1.1, 1.2, 260),
            "b3": (1.2, 1.4, 300), "b4": (1.4, 1.8, 380), "b5": (1.6, 2.2, 456),
            "b6": (1.8, 2.6, 528), "b7": (2.0, 3.1, 600)}


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    """EfficientNet's depth scaling: ceil(depth_coefficient * repeats)."""
    return math.ceil(depth_coefficient * repeats)


def efficientnet(variant: str = "b0", depth_coefficient: float | None = None) -> dict:
    """EfficientNet ``variant`` (b0..b7) up to ``top_conv``; ``depth_coefficient``
    overrides the variant's (compound-scaling grids)."""
    if variant not in VARIANTS:
        raise SpecError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    _, depth, resolution = VARIANTS[variant]
    name = f"efficientnet_{variant}"
    if depth_coefficient is not None:
        if not depth_coefficient > 0:
            raise SpecError(f"depth_coefficient must be > 0, got {depth_coefficient!r}")
        depth, name = depth_coefficient, f"efficientnet_d{depth_coefficient:g}"
    g = Graph(name, f"EfficientNet-{variant.upper()} (TF 'same' padding, native input "
              f"{resolution}) up to top_conv")
    x = g.conv("stem_conv", 3, 2, "same")
    for stage, (kernel, stride, expand, repeats) in enumerate(B0_STAGES, start=1):
        for i in range(round_repeats(repeats, depth)):
            pre = f"block{stage}{chr(ord('a') + i)}" if i < 26 else f"block{stage}_{i}"
            if expand != 1:
                g.conv(f"{pre}_expand_conv", 1, inputs=x)
            g.conv(f"{pre}_dwconv", kernel, stride if i == 0 else 1, "same",
                   inputs=None if expand != 1 else x)
            g.act(f"{pre}_se", "squeeze_excite")
            body = g.conv(f"{pre}_project_conv", 1)
            x = g.add(f"{pre}_add", [body, x]) if i > 0 else body
    g.conv("top_conv", 1)
    return g.spec()
