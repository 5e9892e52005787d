"""TF-Slim model definitions (tensorflow/models research/slim/nets), as specs.

Layer names are the TF-Slim scopes, so the end points of Google's receptive_field table
(``Mixed_5c``, ``conv3/conv3_2``, ``block4`` ...) are layer names here. Every branch of
every inception block and every residual shortcut is its own path in the DAG. Each
network ends at the end point the Google table reports (classifier heads left out).
Width / depth multipliers change channels only and are accepted for naming.
"""

from __future__ import annotations

from ..errors import SpecError
from .graph import Graph, explicit_same


def alexnet_v2() -> dict:
    """slim ``alexnet_v2``: conv1 11x11/4 valid ... pool5 (RF 195, S 32, P 64)."""
    g = Graph("alexnet_v2", "TF-Slim alexnet_v2 up to pool5")
    g.conv("conv1", 11, 4, "valid")
    g.maxpool("pool1", 3, 2, "valid")
    g.conv("conv2", 5, 1, "same")
    g.maxpool("pool2", 3, 2, "valid")
    for i in (3, 4, 5):
        g.conv(f"conv{i}", 3, 1, "same")
    g.maxpool("pool5", 3, 2, "valid")
    return g.spec()


VGG_REPEATS = {"vgg_a": (1, 1, 2, 2, 2), "vgg_16": (2, 2, 3, 3, 3), "vgg_19": (2, 2, 4, 4, 4)}


def vgg(variant: str = "vgg_16") -> dict:
    """slim ``vgg_a`` / ``vgg_16`` / ``vgg_19``: 3x3 'same' convs, 2x2/2 valid max pools."""
    if variant not in VGG_REPEATS:
        raise SpecError(f"variant must be one of {sorted(VGG_REPEATS)}, got {variant!r}")
    g = Graph(variant, f"TF-Slim {variant} up to pool5")
    for block, repeats in enumerate(VGG_REPEATS[variant], start=1):
        for i in range(1, repeats + 1):
            g.conv(f"conv{block}/conv{block}_{i}", 3, 1, "same")
        g.maxpool(f"pool{block}", 2, 2, "valid")
    return g.spec()


# --- Inception v2 -------------------------------------------------------------------

def _v2_mixed(g: Graph, name: str) -> str:
    """Inception v2 module: 1x1 | 1x1-3x3 | 1x1-3x3-3x3 | pool3x3-1x1, concatenated."""
    x = g.last
    return g.concat(name, [
        g.path(f"{name}/Branch_0", x, [("Conv2d_0a_1x1", "conv", 1)]),
        g.path(f"{name}/Branch_1", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_0b_3x3", "conv", 3)]),
        g.path(f"{name}/Branch_2", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_0b_3x3", "conv", 3),
                                       ("Conv2d_0c_3x3", "conv", 3)]),
        g.path(f"{name}/Branch_3", x, [("AvgPool_0a_3x3", "avgpool", 3),
                                       ("Conv2d_0b_1x1", "conv", 1)]),
    ])


def _v2_reduction(g: Graph, name: str) -> str:
    """Inception v2 grid reduction ('same' padding): 1x1-3x3/2 | 1x1-3x3-3x3/2 | max3x3/2."""
    x = g.last
    return g.concat(name, [
        g.path(f"{name}/Branch_0", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_1a_3x3", "conv", 3, 2)]),
        g.path(f"{name}/Branch_1", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_0b_3x3", "conv", 3),
                                       ("Conv2d_1a_3x3", "conv", 3, 2)]),
        g.path(f"{name}/Branch_2", x, [("MaxPool_1a_3x3", "maxpool", 3, 2)]),
    ])


def inception_v2(depth_multiplier: float = 1.0) -> dict:
    """slim ``inception_v2_base`` ('same' padding everywhere) up to Mixed_5c."""
    g = Graph(_named("inception_v2", depth_multiplier), "TF-Slim inception_v2 up to Mixed_5c")
    g.conv("Conv2d_1a_7x7", 7, 2, "same")  # separable 7x7/2: same window as a dense conv
    g.maxpool("MaxPool_2a_3x3", 3, 2, "same")
    g.conv("Conv2d_2b_1x1", 1)
    g.conv("Conv2d_2c_3x3", 3, 1, "same")
    g.maxpool("MaxPool_3a_3x3", 3, 2, "same")
    for name in ("Mixed_3b", "Mixed_3c"):
        _v2_mixed(g, name)
    _v2_reduction(g, "Mixed_4a")
    for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e"):
        _v2_mixed(g, name)
    _v2_reduction(g, "Mixed_5a")
    for name in ("Mixed_5b", "Mixed_5c"):
        _v2_mixed(g, name)
    return g.spec()


# --- Inception v3 / v4 / Inception-ResNet-v2 shared blocks ----------------------------

def _stem_v3(g: Graph, padding: str = "valid") -> str:
    """The inception_v3 / inception_resnet_v2 stem up to MaxPool_5a_3x3."""
    g.conv("Conv2d_1a_3x3", 3, 2, padding)
    g.conv("Conv2d_2a_3x3", 3, 1, padding)
    g.conv("Conv2d_2b_3x3", 3, 1, "same")
    g.maxpool("MaxPool_3a_3x3", 3, 2, padding)
    g.conv("Conv2d_3b_1x1", 1, 1, padding)
    g.conv("Conv2d_4a_3x3", 3, 1, padding)
    return g.maxpool("MaxPool_5a_3x3", 3, 2, padding)


def _block_35(g: Graph, name: str, branch_5x5: bool) -> str:
    """35x35 module: 1x1 | 1x1-5x5 (v3) or 1x1-3x3 (v4) | 1x1-3x3-3x3 | avg3x3-1x1."""
    x = g.last
    b1 = [("Conv2d_0a_1x1", "conv", 1),
          ("Conv2d_0b_5x5", "conv", 5) if branch_5x5 else ("Conv2d_0b_3x3", "conv", 3)]
    return g.concat(name, [
        g.path(f"{name}/Branch_0", x, [("Conv2d_0a_1x1", "conv", 1)]),
        g.path(f"{name}/Branch_1", x, b1),
        g.path(f"{name}/Branch_2", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_0b_3x3", "conv", 3),
                                       ("Conv2d_0c_3x3", "conv", 3)]),
        g.path(f"{name}/Branch_3", x, [("AvgPool_0a_3x3", "avgpool", 3),
                                       ("Conv2d_0b_1x1", "conv", 1)]),
    ])


def _reduction_a(g: Graph, name: str, padding: str = "valid") -> str:
    """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | max3x3/2."""
    x = g.last
    return g.concat(name, [
        g.path(f"{name}/Branch_0", x, [("Conv2d_1a_3x3", "conv", 3, 2, padding)]),
        g.path(f"{name}/Branch_1", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_0b_3x3", "conv", 3),
                                       ("Conv2d_1a_3x3", "conv", 3, 2, padding)]),
        g.path(f"{name}/Branch_2", x, [("MaxPool_1a_3x3", "maxpool", 3, 2, padding)]),
    ])


def _block_17(g: Graph, name: str) -> str:
    """17x17 module: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avg3x3-1x1."""
    x = g.last
    return g.concat(name, [
        g.path(f"{name}/Branch_0", x, [("Conv2d_0a_1x1", "conv", 1)]),
        g.path(f"{name}/Branch_1", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_0b_1x7", "conv", [1, 7]),
                                       ("Conv2d_0c_7x1", "conv", [7, 1])]),
        g.path(f"{name}/Branch_2", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_0b_7x1", "conv", [7, 1]),
                                       ("Conv2d_0c_1x7", "conv", [1, 7]),
                                       ("Conv2d_0d_7x1", "conv", [7, 1]),
                                       ("Conv2d_0e_1x7", "conv", [1, 7])]),
        g.path(f"{name}/Branch_3", x, [("AvgPool_0a_3x3", "avgpool", 3),
                                       ("Conv2d_0b_1x1", "conv", 1)]),
    ])


def _reduction_b(g: Graph, name: str) -> str:
    """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max3x3/2 (valid)."""
    x = g.last
    return g.concat(name, [
        g.path(f"{name}/Branch_0", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_1a_3x3", "conv", 3, 2, "valid")]),
        g.path(f"{name}/Branch_1", x, [("Conv2d_0a_1x1", "conv", 1),
                                       ("Conv2d_0b_1x7", "conv", [1, 7]),
                                       ("Conv2d_0c_7x1", "conv", [7, 1]),
                                       ("Conv2d_1a_3x3", "conv", 3, 2, "valid")]),
        g.path(f"{name}/Branch_2", x, [("MaxPool_1a_3x3", "maxpool", 3, 2, "valid")]),
    ])


def _split_1x3_3x1(g: Graph, prefix: str, start: str, tag: str) -> str:
    """The 8x8 modules' fork of a 1x3 and a 3x1 conv, concatenated."""
    return g.concat(f"{prefix}/concat", [
        g.path(prefix, start, [(f"Conv2d_0{tag}_1x3", "conv", [1, 3])]),
        g.path(prefix, start, [(f"Conv2d_0{tag}_3x1", "conv", [3, 1])]),
    ])


def _block_8(g: Graph, name: str, v4: bool) -> str:
    """8x8 module: 1x1 | 1x1-(1x3|3x1) | 1x1-3x3 (v3) or 1x1-3x1-1x3 (v4)-(1x3|3x1) | pool-1x1."""
    x = g.last
    b2 = g.path(f"{name}/Branch_2", x, [("Conv2d_0a_1x1", "conv", 1)] + (
        [("Conv2d_0b_3x1", "conv", [3, 1]), ("Conv2d_0c_1x3", "conv", [1, 3])] if v4
        else [("Conv2d_0b_3x3", "conv", 3)]))
    return g.concat(name, [
        g.path(f"{name}/Branch_0", x, [("Conv2d_0a_1x1", "conv", 1)]),
        _split_1x3_3x1(g, f"{name}/Branch_1",
                       g.path(f"{name}/Branch_1", x, [("Conv2d_0a_1x1", "conv", 1)]), "b"),
        _split_1x3_3x1(g, f"{name}/Branch_2", b2, "d" if v4 else "c"),
        g.path(f"{name}/Branch_3", x, [("AvgPool_0a_3x3", "avgpool", 3),
                                       ("Conv2d_0b_1x1", "conv", 1)]),
    ])


def inception_v3(depth_multiplier: float = 1.0) -> dict:
    """slim ``inception_v3_base`` up to Mixed_7c (RF 1311, S 32, P 618)."""
    g = Graph(_named("inception_v3", depth_multiplier), "TF-Slim inception_v3 up to Mixed_7c")
    _stem_v3(g)
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        _block_35(g, name, branch_5x5=True)
    _reduction_a(g, "Mixed_6a")
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        _block_17(g, name)
    _reduction_b(g, "Mixed_7a")
    for name in ("Mixed_7b", "Mixed_7c"):
        _block_8(g, name, v4=False)
    return g.spec()


def inception_v4() -> dict:
    """slim ``inception_v4_base`` up to Mixed_7d (RF 2071, S 32, P 998)."""
    g = Graph("inception_v4", "TF-Slim inception_v4 up to Mixed_7d")
    g.conv("Conv2d_1a_3x3", 3, 2, "valid")
    g.conv("Conv2d_2a_3x3", 3, 1, "valid")
    x = g.conv("Conv2d_2b_3x3", 3, 1, "same")
    x = g.concat("Mixed_3a", [
        g.path("Mixed_3a/Branch_0", x, [("MaxPool_0a_3x3", "maxpool", 3, 2, "valid")]),
        g.path("Mixed_3a/Branch_1", x, [("Conv2d_0a_3x3", "conv", 3, 2, "valid")])])
    x = g.concat("Mixed_4a", [
        g.path("Mixed_4a/Branch_0", x, [("Conv2d_0a_1x1", "conv", 1),
                                        ("Conv2d_1a_3x3", "conv", 3, 1, "valid")]),
        g.path("Mixed_4a/Branch_1", x, [("Conv2d_0a_1x1", "conv", 1),
                                        ("Conv2d_0b_1x7", "conv", [1, 7]),
                                        ("Conv2d_0c_7x1", "conv", [7, 1]),
                                        ("Conv2d_1a_3x3", "conv", 3, 1, "valid")])])
    g.concat("Mixed_5a", [
        g.path("Mixed_5a/Branch_0", x, [("Conv2d_1a_3x3", "conv", 3, 2, "valid")]),
        g.path("Mixed_5a/Branch_1", x, [("MaxPool_1a_3x3", "maxpool", 3, 2, "valid")])])
    for letter in "bcde":
        _block_35(g, f"Mixed_5{letter}", branch_5x5=False)
    _reduction_a(g, "Mixed_6a")
    for letter in "bcdefgh":
        _block_17(g, f"Mixed_6{letter}")
    _reduction_b(g, "Mixed_7a")
    for letter in "bcd":
        _block_8(g, f"Mixed_7{letter}", v4=True)
    return g.spec()


def _residual(g: Graph, name: str, branches: list[list[tuple]]) -> str:
    """Inception-ResNet block: concat(branches) -> 1x1 -> add to the block input -> relu."""
    x = g.last
    mixed = g.concat(f"{name}/concat", [
        g.path(f"{name}/Branch_{i}", x, steps) for i, steps in enumerate(branches)])
    up = g.conv(f"{name}/Conv2d_1x1", 1, inputs=mixed)
    g.add(f"{name}/add", [x, up])
    return g.act(f"{name}/relu")


def inception_resnet_v2(align_feature_maps: bool = False) -> dict:
    """slim ``inception_resnet_v2_base`` up to Conv2d_7b_1x1 (RF 3039, S 32, P 1482).

    ``align_feature_maps=True`` uses 'same' padding in the stem and the reductions, so
    the effective padding depends on the input size (P None / 1488 at 224 / 1519 at 321).
    """
    pad = "same" if align_feature_maps else "valid"
    name = "inception_resnet_v2" + ("_align_feature_maps" if align_feature_maps else "")
    g = Graph(name, "TF-Slim inception_resnet_v2 up to Conv2d_7b_1x1"
              + (" (align_feature_maps=True)" if align_feature_maps else ""))
    _stem_v3(g, pad)
    x = g.last
    g.concat("Mixed_5b", [
        g.path("Mixed_5b/Branch_0", x, [("Conv2d_1x1", "conv", 1)]),
        g.path("Mixed_5b/Branch_1", x, [("Conv2d_0a_1x1", "conv", 1),
                                        ("Conv2d_0b_5x5", "conv", 5)]),
        g.path("Mixed_5b/Branch_2", x, [("Conv2d_0a_1x1", "conv", 1),
                                        ("Conv2d_0b_3x3", "conv", 3),
                                        ("Conv2d_0c_3x3", "conv", 3)]),
        g.path("Mixed_5b/Branch_3", x, [("AvgPool_0a_3x3", "avgpool", 3),
                                        ("Conv2d_0b_1x1", "conv", 1)])])
    for i in range(1, 11):
        _residual(g, f"Repeat/block35_{i}", [
            [("Conv2d_1x1", "conv", 1)],
            [("Conv2d_0a_1x1", "conv", 1), ("Conv2d_0b_3x3", "conv", 3)],
            [("Conv2d_0a_1x1", "conv", 1), ("Conv2d_0b_3x3", "conv", 3),
             ("Conv2d_0c_3x3", "conv", 3)]])
    _reduction_a(g, "Mixed_6a", pad)
    for i in range(1, 21):
        _residual(g, f"Repeat_1/block17_{i}", [
            [("Conv2d_1x1", "conv", 1)],
            [("Conv2d_0a_1x1", "conv", 1), ("Conv2d_0b_1x7", "conv", [1, 7]),
             ("Conv2d_0c_7x1", "conv", [7, 1])]])
    x = g.act("PreAuxLogits", "identity")
    g.concat("Mixed_7a", [
        g.path("Mixed_7a/Branch_0", x, [("Conv2d_0a_1x1", "conv", 1),
                                        ("Conv2d_1a_3x3", "conv", 3, 2, pad)]),
        g.path("Mixed_7a/Branch_1", x, [("Conv2d_0a_1x1", "conv", 1),
                                        ("Conv2d_1a_3x3", "conv", 3, 2, pad)]),
        g.path("Mixed_7a/Branch_2", x, [("Conv2d_0a_1x1", "conv", 1),
                                        ("Conv2d_0b_3x3", "conv", 3),
                                        ("Conv2d_1a_3x3", "conv", 3, 2, pad)]),
        g.path("Mixed_7a/Branch_3", x, [("MaxPool_1a_3x3", "maxpool", 3, 2, pad)])])
    block8 = [[("Conv2d_1x1", "conv", 1)],
              [("Conv2d_0a_1x1", "conv", 1), ("Conv2d_0b_1x3", "conv", [1, 3]),
               ("Conv2d_0c_3x1", "conv", [3, 1])]]
    for i in range(1, 10):
        _residual(g, f"Repeat_2/block8_{i}", block8)
    _residual(g, "Block8", block8)  # the last block8 has no activation in TF-Slim
    g.conv("Conv2d_7b_1x1", 1)
    return g.spec()


# --- MobileNet v1 -------------------------------------------------------------------

MOBILENET_V1_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)


def mobilenet_v1(depth_multiplier: float = 1.0, use_explicit_padding: bool = False) -> dict:
    """slim ``mobilenet_v1_base`` up to Conv2d_13_pointwise (RF 315, S 32).

    'same' padding by default (P None / 126 at 224 / 157 at 321);
    ``use_explicit_padding=True`` pads k-1 explicitly as TF-Slim's ``_fixed_padding``.
    """
    def pad(kernel):
        return explicit_same(kernel) if use_explicit_padding else "same"
    g = Graph(_named("mobilenet_v1", depth_multiplier), "TF-Slim mobilenet_v1 up to "
              "Conv2d_13_pointwise")
    g.conv("Conv2d_0", 3, 2, pad(3))
    for i, stride in enumerate(MOBILENET_V1_STRIDES, start=1):
        g.conv(f"Conv2d_{i}_depthwise", 3, stride, pad(3))
        g.conv(f"Conv2d_{i}_pointwise", 1)
    return g.spec()


# --- ResNet v1 / v2 -----------------------------------------------------------------

RESNET_SLIM_UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
                     200: (3, 24, 36, 3)}


def resnet_slim(depth: int = 50, version: int = 1) -> dict:
    """slim ``resnet_v1_N`` / ``resnet_v2_N`` up to block4 (same geometry for v1 and v2).

    TF-Slim puts the stride in the LAST unit of blocks 1-3; strided 3x3 convs use
    ``conv2d_same`` (explicit padding), the root max pool uses 'same'.
    """
    if depth not in RESNET_SLIM_UNITS:
        raise SpecError(f"depth must be one of {sorted(RESNET_SLIM_UNITS)}, got {depth!r}")
    if version not in (1, 2):
        raise SpecError(f"version must be 1 or 2, got {version!r}")
    g = Graph(f"resnet_v{version}_{depth}", f"TF-Slim resnet_v{version}_{depth} up to block4")
    g.conv("conv1", 7, 2, explicit_same(7))
    x = g.maxpool("pool1", 3, 2, "same")
    unit = f"bottleneck_v{version}"
    for b, count in enumerate(RESNET_SLIM_UNITS[depth], start=1):
        for u in range(1, count + 1):
            stride = 2 if b < 4 and u == count else 1
            pre = f"block{b}/unit_{u}/{unit}"
            if version == 2:
                x = g.act(f"{pre}/preact", "batchnorm", x)
            if u == 1:
                shortcut = g.conv(f"{pre}/shortcut", 1, stride, inputs=x)
            elif stride > 1:  # slim's ``subsample``: a 1x1 max pool with the stride
                shortcut = g.maxpool(f"{pre}/shortcut", 1, stride, inputs=x)
            else:
                shortcut = x
            g.conv(f"{pre}/conv1", 1, inputs=x)
            g.conv(f"{pre}/conv2", 3, stride, explicit_same(3) if stride > 1 else "same")
            body = g.conv(f"{pre}/conv3", 1)
            x = g.add(f"{pre}/add", [shortcut, body])
            if version == 1 or (b == 4 and u == count):
                x = g.act(f"block{b}" if u == count else f"{pre}/relu",
                          "relu" if version == 1 else "batchnorm")
            elif u == count:
                x = g.act(f"block{b}", "identity")
    return g.spec()


def _named(base: str, depth_multiplier: float) -> str:
    """The network name, with TF-Slim's suffix for a depth multiplier (``_075``)."""
    if not depth_multiplier > 0:
        raise SpecError(f"depth_multiplier must be > 0, got {depth_multiplier!r}")
    if depth_multiplier == 1:
        return base
    return f"{base}_{round(depth_multiplier * 100):03d}"
