"""Keras 3 functional twins of :mod:`torch_models`, for the Keras importer's tests: the same
receptive-field geometry and the same layer names as the PyTorch architectures.

Every layer is named after the torch module path that the torch importer names it after
(Keras accepts "." and ":" in names; it refuses only "/"): ``layer1.0.conv1``,
``features.1.conv.3``, ``blocks.0.downsample``. Keras calls each layer once, so a module that
torch calls twice is two layers, the second named as torch's importer names the second call
(``layer1.0.relu:2``); functional calls become the matching layer under torch's name
(``out += identity`` an ``Add`` named ``<block>.add``, ``torch.cat`` a ``Concatenate``
named ``cat``, ``F.pad`` a ``ZeroPadding1D`` named ``pad``, ``F.interpolate`` an
``UpSampling2D`` named ``interpolate``). The input layer is named ``input``, as torch's.

Keras convolutions and pools pad only "valid" or "same". A stride-1 layer with torch's
symmetric ``padding = dilation * (kernel - 1) / 2`` is "same" (symmetric at every size); any
other padded layer (the stride-2 stems, 3x3s and pools) is a ``ZeroPadding`` layer named
``<torch name>.pad`` followed by the "valid" layer, the only layers torch has no name for.
Zero padding before a max pool equals torch's -inf padding when the input is non-negative
(after a ReLU, as here); the geometry is the same either way.

Layout is channel-last: ``input_shape`` is (L, C), (H, W, C) or (D, H, W, C) without the batch
axis. Every builder takes ``act`` (a Keras activation name: "relu" unless torch's default is
ReLU6; the oracle passes "linear") and ``pool`` (``"max"`` or ``"avg"``). Set
``KERAS_BACKEND`` (here "jax") before importing this module.
"""

from __future__ import annotations

import keras
from keras import layers

# The weights do not matter here (the oracle sets its own), and Keras's random initialisers
# compile a random program per weight shape, the slowest part of building a model.
ONES = "ones"


def _tuple(v, dims: int) -> tuple:
    return tuple(v) if isinstance(v, tuple | list) else (v,) * dims


def _padded(x, name, kernel, stride, padding, dilation, dims: int):
    """``(x, keras_padding)``: "same" where it is torch's symmetric padding, else "valid",
    after a ``ZeroPadding{dims}D`` named ``<name>.pad`` where torch pads."""
    k, s, p, d = (_tuple(v, dims) for v in (kernel, stride, padding, dilation))
    if not any(p):
        return x, "valid"
    if all(si == 1 and di * (ki - 1) == 2 * pi for ki, si, pi, di in zip(k, s, p, d, strict=True)):
        return x, "same"
    pads = (p[0], p[0]) if dims == 1 else tuple((pi, pi) for pi in p)
    return getattr(layers, f"ZeroPadding{dims}D")(pads, name=f"{name}.pad")(x), "valid"


def conv(x, name, cout, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True, *,
         dims: int = 2):
    """torch's ``nn.Conv{dims}d`` (symmetric integer padding) on ``x``; depthwise
    (``groups`` == channels in == ``cout``) is ``DepthwiseConv{dims}D``, as Keras writes it."""
    x, pad = _padded(x, name, kernel, stride, padding, dilation, dims)
    kw = dict(strides=stride, padding=pad, dilation_rate=dilation, use_bias=bias, name=name)
    if groups > 1 and groups == x.shape[-1] == cout:
        return getattr(layers, f"DepthwiseConv{dims}D")(kernel, depthwise_initializer=ONES,
                                                        **kw)(x)
    return getattr(layers, f"Conv{dims}D")(cout, kernel, groups=groups,
                                           kernel_initializer=ONES, **kw)(x)


def conv_transpose(x, name, cout, kernel, stride=1, bias=True, *, dims: int = 2):
    """torch's ``nn.ConvTranspose{dims}d`` without padding: out = (n - 1) * stride + kernel."""
    return getattr(layers, f"Conv{dims}DTranspose")(cout, kernel, stride, padding="valid",
                                                    use_bias=bias, kernel_initializer=ONES,
                                                    name=name)(x)


def batch_norm(x, name):
    """torch's ``nn.BatchNorm{1,2,3}d`` (momentum 0.1, eps 1e-5) on the channel axis."""
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)(x)


def activation(x, name, act):
    return layers.Activation(act, name=name)(x)


def pool_layer(x, name, pool: str, kernel, stride=None, padding=0, *, dims: int = 2):
    """torch's ``nn.MaxPool{dims}d`` / ``nn.AvgPool{dims}d`` (count_include_pad=True)."""
    stride = kernel if stride is None else stride
    x, pad = _padded(x, name, kernel, stride, padding, 1, dims)
    kind = {"max": "MaxPooling", "avg": "AveragePooling"}[pool]
    return getattr(layers, f"{kind}{dims}D")(kernel, stride, padding=pad, name=name)(x)


def interpolate(x, name, scale_factor: int, mode: str = "nearest"):
    """torch's ``F.interpolate`` / ``nn.Upsample`` by an integer factor (align_corners=False)."""
    return layers.UpSampling2D(scale_factor, interpolation=mode, name=name)(x)


def BasicBlock(x, name, cin, cout, stride, act):
    identity = x
    if stride != 1 or cin != cout:
        identity = conv(x, f"{name}.downsample.0", cout, 1, stride, bias=False)
        identity = batch_norm(identity, f"{name}.downsample.1")
    out = conv(x, f"{name}.conv1", cout, 3, stride, 1, bias=False)
    out = activation(batch_norm(out, f"{name}.bn1"), f"{name}.relu", act)
    out = batch_norm(conv(out, f"{name}.conv2", cout, 3, 1, 1, bias=False), f"{name}.bn2")
    out = layers.Add(name=f"{name}.add")([out, identity])
    return activation(out, f"{name}.relu:2", act)


def Bottleneck(x, name, cin, planes, stride, act):
    """torchvision's ResNet-50 block (v1.5: the stride on the 3x3), expansion 4."""
    cout = planes * 4
    identity = x
    if stride != 1 or cin != cout:
        identity = conv(x, f"{name}.downsample.0", cout, 1, stride, bias=False)
        identity = batch_norm(identity, f"{name}.downsample.1")
    out = batch_norm(conv(x, f"{name}.conv1", planes, 1, bias=False), f"{name}.bn1")
    out = activation(out, f"{name}.relu", act)
    out = batch_norm(conv(out, f"{name}.conv2", planes, 3, stride, 1, bias=False), f"{name}.bn2")
    out = activation(out, f"{name}.relu:2", act)
    out = batch_norm(conv(out, f"{name}.conv3", cout, 1, bias=False), f"{name}.bn3")
    out = layers.Add(name=f"{name}.add")([out, identity])
    return activation(out, f"{name}.relu:3", act)


def _resnet(block, blocks, expansion, act, pool, width, classes, head, input_shape, name):
    inputs = keras.Input(input_shape, name="input")
    x = batch_norm(conv(inputs, "conv1", width, 7, 2, 3, bias=False), "bn1")
    x = pool_layer(activation(x, "relu", act), "maxpool", pool, 3, 2, 1)
    cin = width
    for i, n in enumerate(blocks, start=1):
        planes = width * 2 ** (i - 1)
        for b in range(n):
            x = block(x, f"layer{i}.{b}", cin, planes, 2 if i > 1 and b == 0 else 1, act)
            cin = planes * expansion
    if head:
        x = layers.GlobalAveragePooling2D(name="avgpool")(x)
        x = layers.Dense(classes, kernel_initializer=ONES, name="fc")(x)
    return keras.Model(inputs, x, name=name)


def ResNet18(act="relu", pool="max", width=8, classes=10, head=True, input_shape=(40, 40, 3)):
    """torchvision's resnet18: layer names conv1, bn1, relu, maxpool, layer1..4, avgpool, fc
    (Keras's global pool already flattens: torch's ``torch.flatten`` has no layer)."""
    return _resnet(BasicBlock, [2, 2, 2, 2], 1, act, pool, width, classes, head, input_shape,
                   "resnet18")


def ResNet50(act="relu", pool="max", width=8, classes=10, head=True,
             input_shape=(224, 224, 3)):
    """torchvision's resnet50 (v1.5): [3, 4, 6, 3] bottlenecks; ``width=64`` is torchvision's."""
    return _resnet(Bottleneck, [3, 4, 6, 3], 4, act, pool, width, classes, head, input_shape,
                   "resnet50")


def InvertedResidual(x, name, cin, cout, stride, expand, act):
    """torchvision's MobileNetV2 block: expand 1x1, depthwise 3x3, project 1x1."""
    hidden, c = cin * expand, f"{name}.conv"
    y = batch_norm(conv(x, f"{c}.0", hidden, 1, bias=False), f"{c}.1")
    y = activation(y, f"{c}.2", act)
    y = conv(y, f"{c}.3", hidden, 3, stride, 1, groups=hidden, bias=False)
    y = activation(batch_norm(y, f"{c}.4"), f"{c}.5", act)
    y = batch_norm(conv(y, f"{c}.6", cout, 1, bias=False), f"{c}.7")
    return layers.Add(name=f"{name}.add")([x, y]) if stride == 1 and cin == cout else y


def MobileNetV2Blocks(act="relu6", pool="max", input_shape=(24, 24, 3)):
    inputs = keras.Input(input_shape, name="input")
    x = batch_norm(conv(inputs, "features.0.0", 8, 3, 2, 1, bias=False), "features.0.1")
    x = activation(x, "features.0.2", act)
    settings = [(8, 1, 1, 1), (12, 2, 2, 4), (16, 2, 2, 4), (24, 1, 1, 4)]
    cin, i = 8, 1
    for cout, repeats, stride, expand in settings:
        for r in range(repeats):
            x = InvertedResidual(x, f"features.{i}", cin, cout, stride if r == 0 else 1,
                                 expand, act)
            cin, i = cout, i + 1
    return keras.Model(inputs, x, name="mobilenetv2_blocks")


def UNet(act="relu", pool="max", width=4, upsample="transpose", input_shape=(16, 16, 3)):
    """A small padded U-Net: two levels, max pools, transposed convs up, skips by cat."""

    def double(x, name, cout):
        x = activation(conv(x, f"{name}.0", cout, 3, padding=1), f"{name}.1", act)
        return activation(conv(x, f"{name}.2", cout, 3, padding=1), f"{name}.3", act)

    def up(x, name, cout):
        if upsample == "transpose":
            return conv_transpose(x, name, cout, 2, 2)
        return conv(interpolate(x, f"{name}.0", 2, upsample), f"{name}.1", cout, 1)

    inputs = keras.Input(input_shape, name="input")
    x1 = double(inputs, "inc", width)
    x2 = double(pool_layer(x1, "down1", pool, 2), "conv1", 2 * width)
    x3 = double(pool_layer(x2, "down2", pool, 2), "conv2", 4 * width)
    y = layers.Concatenate(name="cat")([x2, up(x3, "up1", 2 * width)])
    y = double(y, "dec1", 2 * width)
    y = layers.Concatenate(name="cat:2")([x1, up(y, "up2", width)])
    y = double(y, "dec2", width)
    return keras.Model(inputs, conv(y, "outc", 2, 1), name="unet")


def TCN(act="relu", pool="max", levels=3, kernel=3, width=4, input_shape=(40, 1)):
    """Bai et al. 2018: causal dilated 1-D convolutions (left padding: torch's ``F.pad`` as
    ``ZeroPadding1D`` layers ``pad``, ``pad:2``, ...), residual adds ``add``, ``add:2``, ..."""
    inputs = keras.Input(input_shape, name="input")
    x, calls = inputs, {"pad": 0, "add": 0}

    def called(op):  # torch's importer's name for the n-th call of a function
        calls[op] += 1
        return op if calls[op] == 1 else f"{op}:{calls[op]}"

    for i in range(levels):
        d, b = 2 ** i, f"blocks.{i}"
        pad = ((kernel - 1) * d, 0)
        y = layers.ZeroPadding1D(pad, name=called("pad"))(x)
        y = activation(conv(y, f"{b}.conv1", width, kernel, dilation=d, dims=1), f"{b}.relu1", act)
        y = layers.ZeroPadding1D(pad, name=called("pad"))(y)
        y = activation(conv(y, f"{b}.conv2", width, kernel, dilation=d, dims=1), f"{b}.relu2", act)
        x = layers.Add(name=called("add"))([y, conv(x, f"{b}.downsample", width, 1, dims=1)])
    return keras.Model(inputs, x, name="tcn")


def FPN(act="relu", pool="max", width=4, input_shape=(32, 32, 3)):
    """A small feature pyramid: a strided backbone, lateral 1x1s, nearest top-down ×2,
    3x3 outputs (P2..P4) and a max-pooled P5 (torchvision's extra block). Torch computes
    ``layer_blocks.1`` but never uses it: it is left out here, as torch's importer leaves it."""
    inputs = keras.Input(input_shape, name="input")
    x, feats = inputs, []
    for i in range(3):
        x = activation(conv(x, f"body.{i}.0", width, 3, 2, 1), f"body.{i}.1", act)
        feats.append(x)
    last = conv(feats[2], "inner_blocks.2", width, 1)
    p4 = conv(last, "layer_blocks.2", width, 3, 1, 1)
    for i, suffix in ((1, ""), (0, ":2")):
        lateral = conv(feats[i], f"inner_blocks.{i}", width, 1)
        top = interpolate(last, f"interpolate{suffix}", 2)
        last = layers.Add(name=f"add{suffix}")([lateral, top])
    p2 = conv(last, "layer_blocks.0", width, 3, 1, 1)
    p5 = pool_layer(p4, "extra", pool, 1, 2)
    out = layers.Add(name="add:3")([p2, interpolate(p5, "interpolate:3", 8)])
    return keras.Model(inputs, out, name="fpn")
