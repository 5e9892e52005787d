"""Networks that resample (issue #14): U-Nets, FPN, DeepLabV3, ESPCN, GoogLeNet, TCN, WaveNet.

They use the periodic program's ops (``conv_transpose``, ``upsample``, ``pixel_shuffle``,
``crop``, ceil-mode pooling) or one axis (``"dims": 1``). Layer names follow the reference
code (torchvision module names, milesial/Pytorch-UNet, locuslab/TCN, ibab/tensorflow-wavenet)
or, for the original U-Net, the levels of the paper's Fig. 1. Activations and
normalisation layers are left out unless they name an end point.
"""

from __future__ import annotations

from ..errors import SpecError
from .graph import Graph
from .torchvision import RESNET_BLOCKS


def _int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _with_dims(spec: dict, dims: int) -> dict:
    """``spec`` with a network-level ``dims`` (Graph writes 2-D specs)."""
    return {**spec, "dims": dims}


# --------------------------------------------------------------------------- U-Nets


def unet_crops(input_size: int = 572) -> dict[int, int | list]:
    """The per-side crop of each skip (levels 1-4) of the valid U-Net at ``input_size``:
    skip size minus the up-convolution's output, halved (the odd pixel after). 572 gives
    88, 40, 16, 4 (Fig. 1: 568 -> 392, 280 -> 200, 136 -> 104, 64 -> 56)."""
    n, skips = _int("input_size", input_size, 1), {}
    for level in range(1, 5):
        n -= 4  # two valid 3x3 convs
        skips[level] = n
        n //= 2  # 2x2 max pool
    n -= 4
    crops = {}
    for level in range(4, 0, -1):
        n *= 2  # 2x2 up-convolution
        diff = skips[level] - n
        if n < 1 or diff < 0:
            break
        before = diff // 2
        crops[level] = before if diff % 2 == 0 else [[before, diff - before] for _ in "hw"]
        n -= 4
    if n < 1 or len(crops) < 4:
        raise SpecError(f"input_size {input_size} is too small for the valid U-Net")
    return crops


def unet(input_size: int = 572) -> dict:
    """The U-Net of Ronneberger, Fischer, Brox 2015 (Fig. 1): per level two unpadded 3x3
    convs; 2x2 max pools down; 2x2 up-convolutions (``conv_transpose`` k=2 s=2) up, each
    concatenated with the centre crop of the skip of its level (copy and crop); a 1x1
    conv at the end. The crops are sized for ``input_size`` (572 -> 388 x 388).

    Names: ``down1.conv1`` .. ``down5.conv2`` (``downN.pool`` enters level N),
    ``up4.upconv``, ``up4.crop``, ``up4.concat``, ``up4.conv1`` .. ``up1.conv2``, ``head``.
    """
    crops = unet_crops(input_size)
    g = Graph("unet", f"U-Net (Ronneberger et al. 2015), crops for input {input_size}")
    x, skips = g.INPUT, {}
    for level in range(1, 6):
        if level > 1:
            x = g.maxpool(f"down{level}.pool", 2, 2, inputs=x)
        g.conv(f"down{level}.conv1", 3, inputs=x)
        x = skips[level] = g.conv(f"down{level}.conv2", 3)
    for level in range(4, 0, -1):
        up = g.layer(f"up{level}.upconv", "conv_transpose", x, kernel=2, stride=2)
        crop = g.layer(f"up{level}.crop", "crop", skips[level], crop=crops[level])
        g.concat(f"up{level}.concat", [crop, up])
        g.conv(f"up{level}.conv1", 3)
        x = g.conv(f"up{level}.conv2", 3)
    g.conv("head", 1)
    return g.spec()


UNET_SAME_UPSAMPLING = ("transposed", "nearest", "bilinear")


def unet_same(upsample: str = "transposed") -> dict:
    """The common padded U-Net, as milesial/Pytorch-UNet writes it: 'same' 3x3 convs
    (padding 1, ``double_conv.0`` / ``.3``), 2x2 max pools, no crops; four levels down
    (``inc``, ``down1`` .. ``down4``), four up (``up1`` .. ``up4``), ``outc``.

    ``upsample="transposed"`` (milesial's default, ``bilinear=False``): ConvTranspose2d
    k=2 s=2. ``"nearest"``: nearest x2 (segmentation_models_pytorch's decoder).
    ``"bilinear"``: milesial's ``bilinear=True``, ``nn.Upsample(scale_factor=2,
    mode="bilinear", align_corners=True)``, evaluated unit by unit (it needs an input
    size). Inputs must be multiples of 16 (milesial pads otherwise).
    """
    if upsample not in UNET_SAME_UPSAMPLING:
        raise SpecError(f"upsample must be one of {', '.join(UNET_SAME_UPSAMPLING)}, got "
                        f"{upsample!r}")
    g = Graph("unet_same", f"padded U-Net (milesial/Pytorch-UNet), {upsample} upsampling")

    def double_conv(prefix: str, inputs: str) -> str:
        g.conv(f"{prefix}.double_conv.0", 3, 1, 1, inputs=inputs)
        return g.conv(f"{prefix}.double_conv.3", 3, 1, 1)

    skips = [double_conv("inc", g.INPUT)]
    for i in range(1, 5):
        pool = g.maxpool(f"down{i}.maxpool_conv.0", 2, 2, inputs=skips[-1])
        skips.append(double_conv(f"down{i}.maxpool_conv.1", pool))
    x = skips.pop()
    for i in range(1, 5):
        if upsample == "transposed":
            up = g.layer(f"up{i}.up", "conv_transpose", x, kernel=2, stride=2)
        elif upsample == "nearest":
            up = g.layer(f"up{i}.up", "upsample", x, factor=2, mode="nearest")
        else:
            up = g.layer(f"up{i}.up", "upsample", x, factor=2, mode="bilinear",
                         align_corners=True)
        cat = g.concat(f"up{i}.cat", [skips.pop(), up])
        x = double_conv(f"up{i}.conv", cat)
    g.conv("outc.conv", 1)
    return g.spec()


# --------------------------------------------------------------------------- sequences


def tcn(kernel: int = 7, levels: int = 8) -> dict:
    """The generic TCN of Bai, Kolter, Koltun 2018 (locuslab/TCN ``TemporalConvNet``), 1-D:
    ``levels`` residual blocks, each two dilated causal convs (dilation 2^i), written as
    the reference code does: padding (k-1)d on both sides, then ``Chomp1d`` drops the last
    (k-1)d units (a ``crop``), so unit t reads [t - RF + 1, t] with
    RF = 1 + 2 (k - 1) (2^levels - 1).

    Defaults k=7, 8 levels: the repository's Sequential / Permuted MNIST experiment
    (``pmnist_test.py``: ``--ksize 7 --levels 8``), the paper's first task, whose RF (3061)
    covers the 784-pixel sequence. The residual is the identity, or a 1x1 ``downsample``
    where the width changes (block 0 there: 1 input channel, 25 hidden).
    """
    _int("kernel", kernel, 2)  # Chomp1d(0) would drop everything
    _int("levels", levels, 1)
    g = Graph("tcn", f"TCN (Bai et al. 2018), kernel {kernel}, {levels} levels")
    x = g.INPUT
    for i in range(levels):
        d, pre = 2**i, f"network.{i}"
        reach = (kernel - 1) * d
        g.conv(f"{pre}.conv1", kernel, padding=reach, dilation=d, inputs=x)
        g.layer(f"{pre}.chomp1", "crop", crop=[[0, reach]])
        g.act(f"{pre}.relu1")
        g.conv(f"{pre}.conv2", kernel, padding=reach, dilation=d)
        g.layer(f"{pre}.chomp2", "crop", crop=[[0, reach]])
        body = g.act(f"{pre}.relu2")
        res = g.conv(f"{pre}.downsample", 1, inputs=x) if i == 0 else x
        g.add(f"{pre}.add", [body, res])
        x = g.act(f"{pre}.relu")
    return _with_dims(g.spec(), 1)


def wavenet(stacks: int = 3, layers: int = 10, causal_layer: bool = True) -> dict:
    """WaveNet (van den Oord et al. 2016), 1-D, as ibab/tensorflow-wavenet builds it: an
    initial causal conv (kernel 2, ``causal_layer``), then ``stacks`` x ``layers`` gated
    residual layers with kernel-2 causal convs of dilation 1, 2, ..., 2^(layers-1) (a
    ``filter`` and a ``gate`` conv whose product is a merge, a 1x1 ``dense`` conv added to
    the residual, a 1x1 ``skip`` conv), the skips summed pairwise (``sum(outputs)``)
    into two 1x1 post-processing convs. Causal padding [[d, 0]] keeps the length (ibab
    uses valid convs and cuts the residual and skips instead: the same RF, boxes shifted
    by RF - 1).

    RF = (2 - 1) * sum(dilations) + 1, plus 1 for the causal layer: 3 x 1023 + 2 = 3071
    (ibab's ``calculate_receptive_field``); one 1..512 stack alone: 1024 (the paper).
    """
    _int("stacks", stacks, 1)
    _int("layers", layers, 1)
    if not isinstance(causal_layer, bool):
        raise SpecError(f"causal_layer must be true or false, got {causal_layer!r}")
    g = Graph("wavenet", f"WaveNet, {stacks} stacks of dilations 1..{2 ** (layers - 1)}")
    x = g.conv("causal_layer", 2, padding=[[1, 0]]) if causal_layer else g.INPUT
    skips = []
    for i in range(stacks * layers):
        d, pre = 2 ** (i % layers), f"dilated_stack.layer{i}"
        f = g.conv(f"{pre}.filter", 2, padding=[[d, 0]], dilation=d, inputs=x)
        gate = g.conv(f"{pre}.gate", 2, padding=[[d, 0]], dilation=d, inputs=x)
        out = g.layer(f"{pre}.out", "add", [f, gate],
                      comment="tanh(filter) * sigmoid(gate): a product, a merge")
        skips.append(g.conv(f"{pre}.skip", 1, inputs=out))
        dense = g.conv(f"{pre}.dense", 1, inputs=out)
        x = g.add(f"{pre}.residual", [x, dense])
    total = skips[0]
    for i, skip in enumerate(skips[1:], start=1):  # ibab: total = sum(outputs)
        total = g.add(f"postprocessing.sum{i}", [total, skip])
    g.act("postprocessing.relu1", inputs=total)
    g.conv("postprocessing.postprocess1", 1)
    g.act("postprocessing.relu2")
    g.conv("postprocessing.postprocess2", 1)
    return _with_dims(g.spec(), 1)


# --------------------------------------------------------------------------- 2-D, one output


def espcn(upscale: int = 3) -> dict:
    """ESPCN (Shi et al. 2016), l = 3: conv 5x5, conv 3x3, conv 3x3 (f1=5, f2=3, f3=3,
    padded to keep the size) and the periodic shuffle x ``upscale``: the output is
    ``upscale`` x the input, stride 1/``upscale``, RF 1 + 4 + 2 + 2 = 9 input pixels."""
    _int("upscale", upscale, 1)
    g = Graph("espcn", f"ESPCN (Shi et al. 2016), x{upscale}")
    g.conv("conv1", 5, 1, 2)
    g.act("tanh1", "tanh")
    g.conv("conv2", 3, 1, 1)
    g.act("tanh2", "tanh")
    g.conv("conv3", 3, 1, 1)
    g.layer("pixel_shuffle", "pixel_shuffle", factor=upscale)
    return g.spec()


GOOGLENET_STAGES = (("3a", "3b"), ("4a", "4b", "4c", "4d", "4e"), ("5a", "5b"))
GOOGLENET_POOLS = (("maxpool3", 3), ("maxpool4", 2))  # between the stages, stride 2


def _inception(g: Graph, pre: str, x: str) -> str:
    b1 = g.conv(f"{pre}.branch1", 1, inputs=x)
    g.conv(f"{pre}.branch2.0", 1, inputs=x)
    b2 = g.conv(f"{pre}.branch2.1", 3, 1, 1)
    g.conv(f"{pre}.branch3.0", 1, inputs=x)
    b3 = g.conv(f"{pre}.branch3.1", 3, 1, 1)  # torchvision's 3x3 here (vision#906), not 5x5
    g.layer(f"{pre}.branch4.0", "maxpool", x, kernel=3, stride=1, padding=1, ceil_mode=True)
    b4 = g.conv(f"{pre}.branch4.1", 1)
    return g.concat(pre, [b1, b2, b3, b4])


def googlenet() -> dict:
    """torchvision ``googlenet`` up to ``inception5b`` (7 x 7 at 224): every max pool is
    ``ceil_mode=True`` (3/2 after conv1, conv3 and inception3b, 2/2 after inception4e,
    3/1 pad 1 in each inception's branch4). Names are the BasicConv2d modules
    (``conv1``, ``inception3a.branch2.1``); an inception's concat carries its name."""
    g = Graph("googlenet", "torchvision googlenet up to inception5b")
    g.conv("conv1", 7, 2, 3)
    g.layer("maxpool1", "maxpool", kernel=3, stride=2, ceil_mode=True)
    g.conv("conv2", 1)
    g.conv("conv3", 3, 1, 1)
    x = g.layer("maxpool2", "maxpool", kernel=3, stride=2, ceil_mode=True)
    for stage, names in enumerate(GOOGLENET_STAGES):
        for name in names:
            x = _inception(g, f"inception{name}", x)
        if stage < len(GOOGLENET_POOLS):
            pool, kernel = GOOGLENET_POOLS[stage]
            x = g.layer(pool, "maxpool", x, kernel=kernel, stride=2, ceil_mode=True)
    return g.spec()


# --------------------------------------------------------------------------- ResNet heads


def resnet_body(g: Graph, prefix: str = "", depth: int = 50,
                dilate: tuple[bool, bool, bool] = (False, False, False)) -> list[str]:
    """torchvision's ResNet up to layer4 into ``g`` (names as :func:`..torchvision.resnet`,
    after ``prefix``); ``dilate`` is ``replace_stride_with_dilation``: such a stage keeps
    stride 1, its first block the previous dilation, the others twice it. Returns the
    stage end points (C2 .. C5)."""
    if depth not in RESNET_BLOCKS:
        raise SpecError(f"depth must be one of {sorted(RESNET_BLOCKS)}, got {depth!r}")
    blocks, bottleneck = RESNET_BLOCKS[depth]
    g.conv(f"{prefix}conv1", 7, 2, 3)
    g.act(f"{prefix}relu")
    x = g.maxpool(f"{prefix}maxpool", 3, 2, 1)
    dilation, ends = 1, []
    for stage, count in enumerate(blocks, start=1):
        stride, previous = (1 if stage == 1 else 2), dilation
        if stage > 1 and dilate[stage - 2]:
            dilation, stride = dilation * stride, 1
        for b in range(count):
            s, d = (stride, previous) if b == 0 else (1, dilation)
            pre = f"{prefix}layer{stage}.{b}"
            if bottleneck:
                g.conv(f"{pre}.conv1", 1, inputs=x)
                g.conv(f"{pre}.conv2", 3, s, d, d)
                body = g.conv(f"{pre}.conv3", 1)
            else:
                g.conv(f"{pre}.conv1", 3, s, d, d, inputs=x)
                body = g.conv(f"{pre}.conv2", 3, 1, dilation, dilation)
            shortcut = x
            if s != 1 or (b == 0 and (bottleneck or stage > 1)):
                shortcut = g.conv(f"{pre}.downsample", 1, s, inputs=x)
            g.add(f"{pre}.add", [body, shortcut])
            x = g.act(f"{prefix}layer{stage}" if b == count - 1 else f"{pre}.relu")
        ends.append(x)
    return ends


FPN_LEVELS = ("P2", "P3", "P4", "P5", "P6")


def fpn_resnet(depth: int = 50, level: str = "P2") -> dict:
    """torchvision's ``FeaturePyramidNetwork`` on a ResNet (``resnet_fpn_backbone``, all
    four stages, ``LastLevelMaxPool``), ending at ``level``: P2 .. P5 (strides 4 .. 32) are
    the 3x3 ``layer_blocks`` on C2 .. C5's 1x1 lateral ``inner_blocks`` plus the nearest x2
    top-down path; P6 (stride 64) is ``max_pool2d(P5, 1, 2)``. Every level is in the
    spec (identity end points ``P2`` .. ``P6``); ``level`` picks the output. Names:
    ``body.*`` (the ResNet), ``fpn.*`` (torchvision >= 0.13: ``fpn.inner_blocks.0.0``);
    inputs must be multiples of 32 (else torchvision's interpolation to the lateral's
    size is no longer x2)."""
    if level not in FPN_LEVELS:
        raise SpecError(f"level must be one of {', '.join(FPN_LEVELS)}, got {level!r}")
    g = Graph(f"fpn_resnet{depth}", f"torchvision FPN on resnet{depth}, output {level}")
    c = resnet_body(g, "body.", depth)
    inner = [g.conv(f"fpn.inner_blocks.{i}.0", 1, inputs=c[i]) for i in range(4)]
    last, outs = inner[3], {3: g.conv("fpn.layer_blocks.3.0", 3, 1, 1, inputs=inner[3])}
    for i in (2, 1, 0):
        up = g.layer(f"fpn.inner_top_down.{i}", "upsample", last, factor=2, mode="nearest")
        last = g.add(f"fpn.last_inner.{i}", [inner[i], up])
        outs[i] = g.conv(f"fpn.layer_blocks.{i}.0", 3, 1, 1, inputs=last)
    outs[4] = g.maxpool("fpn.extra_blocks", 1, 2, inputs=outs[3])
    for i, name in enumerate(FPN_LEVELS):
        g.act(name, "identity", inputs=outs[i])
    return g.spec(output=level)


ASPP_RATES = (12, 24, 36)


def deeplabv3_resnet(depth: int = 50) -> dict:
    """torchvision ``deeplabv3_resnetN``: the ResNet with ``replace_stride_with_dilation=
    [False, True, True]`` (output stride 8), ``DeepLabHead`` (ASPP: a 1x1 conv and 3x3
    convs of rate 12, 24, 36, concatenated, 1x1 ``project``; a 3x3 and a 1x1 conv) and the
    bilinear interpolation back to the input size: x8 (``align_corners=False``), so
    inputs must be multiples of 8.

    Left out: ASPP's image-pooling branch (``classifier.0.convs.4``: a global average
    pool broadcast back over the map). rfsearch has no broadcast; with it every output
    unit reads the whole input, whatever the RF below says.
    """
    g = Graph(f"deeplabv3_resnet{depth}", f"torchvision deeplabv3_resnet{depth} "
              "(output stride 8), without ASPP's image pooling")
    x = resnet_body(g, "backbone.", depth, dilate=(False, True, True))[-1]
    branches = [g.conv("classifier.0.convs.0.0", 1, inputs=x)]
    for j, rate in enumerate(ASPP_RATES, start=1):
        branches.append(g.conv(f"classifier.0.convs.{j}.0", 3, 1, rate, rate, inputs=x))
    g.concat("classifier.0.cat", branches)
    g.conv("classifier.0.project.0", 1)
    g.conv("classifier.1", 3, 1, 1)
    g.conv("classifier.4", 1)
    g.layer("interpolate", "upsample", factor=8, mode="bilinear")
    return g.spec()
