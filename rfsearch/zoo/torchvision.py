"""torchvision model definitions (explicit symmetric padding), as specs.

Layer names follow torchvision's module names (``layer3.5.conv2``, ``features.12``), so
per-layer rows join with a model's ``named_modules()``. Networks end at the last spatial
feature map (classifier heads left out).
"""

from __future__ import annotations

from ..errors import SpecError
from .graph import Graph

RESNET_BLOCKS = {18: ((2, 2, 2, 2), False), 34: ((3, 4, 6, 3), False),
                 50: ((3, 4, 6, 3), True), 101: ((3, 4, 23, 3), True),
                 152: ((3, 8, 36, 3), True)}


def resnet(depth: int = 50, stride_in: str = "first") -> dict:
    """torchvision ``resnetN``: residual shortcuts are real DAG edges.

    ``stride_in="first"`` (torchvision, the paper): the first block of stages 2-4 strides,
    on its 3x3 conv. ``stride_in="last"``: the last block of stages 1-3 strides instead,
    as in TF-Slim, so more 3x3 convs see the finer grid (resnet50: 483 instead of 427).
    """
    if depth not in RESNET_BLOCKS:
        raise SpecError(f"depth must be one of {sorted(RESNET_BLOCKS)}, got {depth!r}")
    if stride_in not in ("first", "last"):
        raise SpecError(f"stride_in must be 'first' or 'last', got {stride_in!r}")
    blocks, bottleneck = RESNET_BLOCKS[depth]
    name = f"resnet{depth}" + ("" if stride_in == "first" else "_stride_last")
    g = Graph(name, f"torchvision resnet{depth} up to layer4"
              + ("" if stride_in == "first" else ", stride in the last block of a stage"))
    g.conv("conv1", 7, 2, 3)
    g.act("relu")
    x = g.maxpool("maxpool", 3, 2, 1)
    for stage, count in enumerate(blocks, start=1):
        for b in range(count):
            if stride_in == "first":
                s = 2 if stage > 1 and b == 0 else 1
            else:  # TF-Slim: the last block of stages 1-3 strides, stage 4 keeps its size
                s = 2 if stage < len(blocks) and b == count - 1 else 1
            pre = f"layer{stage}.{b}"
            if bottleneck:
                g.conv(f"{pre}.conv1", 1, inputs=x)
                g.conv(f"{pre}.conv2", 3, s, 1)
                body = g.conv(f"{pre}.conv3", 1)
            else:
                g.conv(f"{pre}.conv1", 3, s, 1, inputs=x)
                body = g.conv(f"{pre}.conv2", 3, 1, 1)
            shortcut = x
            if s != 1 or (b == 0 and (bottleneck or stage > 1)):
                shortcut = g.conv(f"{pre}.downsample", 1, s, inputs=x)
            g.add(f"{pre}.add", [body, shortcut])
            x = g.act(f"layer{stage}" if b == count - 1 else f"{pre}.relu")
    return g.spec()


VGG_CONFIGS = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3),
               19: (2, 2, 4, 4, 4)}


def vgg(depth: int = 16) -> dict:
    """torchvision ``vggN`` ``features``: 3x3 convs padding 1, 2x2/2 max pools."""
    if depth not in VGG_CONFIGS:
        raise SpecError(f"depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
    g = Graph(f"vgg{depth}", f"torchvision vgg{depth} features")
    i = 0
    for repeats in VGG_CONFIGS[depth]:
        for _ in range(repeats):
            g.conv(f"features.{i}", 3, 1, 1)
            g.act(f"features.{i + 1}")
            i += 2
        g.maxpool(f"features.{i}", 2, 2)
        i += 1
    return g.spec()


def alexnet() -> dict:
    """torchvision ``alexnet`` ``features`` (RF 195, S 32)."""
    g = Graph("alexnet", "torchvision alexnet features")
    g.conv("features.0", 11, 4, 2)
    g.act("features.1")
    g.maxpool("features.2", 3, 2)
    g.conv("features.3", 5, 1, 2)
    g.act("features.4")
    g.maxpool("features.5", 3, 2)
    for i in (6, 8, 10):
        g.conv(f"features.{i}", 3, 1, 1)
        g.act(f"features.{i + 1}")
    g.maxpool("features.12", 3, 2)
    return g.spec()


# (expansion t, channels c, repeats n, stride s) of torchvision's MobileNetV2
MOBILENET_V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                         (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def mobilenet_v2(width_mult: float = 1.0) -> dict:
    """torchvision ``mobilenet_v2`` ``features`` (RF 491, S 32): inverted residuals whose
    identity shortcut (stride 1, same width) is a DAG edge."""
    if not width_mult > 0:
        raise SpecError(f"width_mult must be > 0, got {width_mult!r}")
    g = Graph("mobilenet_v2", "torchvision mobilenet_v2 features")
    x = g.conv("features.0", 3, 2, 1)
    block, channels = 1, 32
    for t, c, n, s in MOBILENET_V2_SETTINGS:
        for i in range(n):
            stride = s if i == 0 else 1
            pre = f"features.{block}"
            if t != 1:
                g.conv(f"{pre}.expand", 1, inputs=x)
            g.conv(f"{pre}.depthwise", 3, stride, 1, inputs=None if t != 1 else x)
            body = g.conv(f"{pre}.project", 1)
            x = g.add(f"{pre}.add", [x, body]) if stride == 1 and channels == c else body
            block, channels = block + 1, c
    g.conv(f"features.{block}", 1)
    return g.spec()
