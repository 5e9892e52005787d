"""torchvision's video ResNets (``torchvision.models.video``), 3-D specs, axes (D, H, W).

Layer names are torchvision's module names (``stem.0``, ``layer2.0.conv1.0``,
``layer2.0.downsample.0``); networks end at ``layer4`` (classifier head left out).
"""

from __future__ import annotations

from .graph import Graph


def r3d_18() -> dict:
    """torchvision ``r3d_18`` (Tran et al. 2018, R3D): ``BasicStem`` conv 3x7x7, stride
    (1, 2, 2), padding (1, 3, 3), no pooling; four stages of two ``BasicBlock`` (3x3x3
    convs, padding 1); layers 2-4 stride 2 on all three axes in their first block, whose
    shortcut is a 1x1x1 ``downsample`` of stride 2. Layer 1 keeps width 64: no
    downsample. Effective stride (8, 16, 16)."""
    g = Graph("r3d_18", "torchvision r3d_18 up to layer4")
    g.conv("stem.0", (3, 7, 7), (1, 2, 2), (1, 3, 3))
    x = g.act("stem.2")
    for stage in range(1, 5):
        for b in range(2):
            s = 2 if stage > 1 and b == 0 else 1
            pre = f"layer{stage}.{b}"
            g.conv(f"{pre}.conv1.0", 3, s, 1, inputs=x)
            g.act(f"{pre}.conv1.2")
            body = g.conv(f"{pre}.conv2.0", 3, 1, 1)
            shortcut = g.conv(f"{pre}.downsample.0", 1, s, inputs=x) if s != 1 else x
            g.add(f"{pre}.add", [body, shortcut])
            x = g.act(f"layer{stage}" if b == 1 else f"{pre}.relu")
    return {**g.spec(), "dims": 3}
