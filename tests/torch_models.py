"""Hand-written PyTorch architectures for the importer's tests, with torchvision's module
names where torchvision has the model (torchvision itself does not import beside the CPU
build of torch used here).

Every builder takes ``act`` (the activation module class) and ``pool`` (``"max"`` or
``"avg"``): the gradient oracle builds the same geometry with identity activations and
average pooling, so that no gradient is lost to a ReLU or a max.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def pool_layer(pool: str, kernel, stride=None, padding=0, ceil_mode=False, dims: int = 2):
    kind = {"max": "MaxPool", "avg": "AvgPool"}[pool]
    return getattr(nn, f"{kind}{dims}d")(kernel, stride, padding, ceil_mode=ceil_mode)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, act):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = act()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's resnet18: module names conv1, bn1, relu, maxpool, layer1..4, fc."""

    def __init__(self, act=nn.ReLU, pool="max", width=8, classes=10, head=True):
        super().__init__()
        self.head = head
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = act()
        self.maxpool = pool_layer(pool, 3, 2, 1)
        widths = [width, 2 * width, 4 * width, 8 * width]
        cin = width
        for i, w in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", nn.Sequential(BasicBlock(cin, w, stride, act),
                                                     BasicBlock(w, w, 1, act)))
            cin = w
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1)) if self.head else x


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block (v1.5: the stride on the 3x3), expansion 4."""

    expansion = 4

    def __init__(self, cin, planes, stride, act):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = act()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity
        return self.relu(out)


class ResNet50(nn.Module):
    """torchvision's resnet50 (v1.5): module names conv1, bn1, relu, maxpool, layer1..4
    of [3, 4, 6, 3] Bottleneck blocks, avgpool, fc. ``width=64`` is torchvision's
    (25.6 M parameters with ``classes=1000``)."""

    def __init__(self, act=nn.ReLU, pool="max", width=8, classes=10, head=True):
        super().__init__()
        self.head = head
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = act()
        self.maxpool = pool_layer(pool, 3, 2, 1)
        cin = width
        for i, blocks in enumerate([3, 4, 6, 3], start=1):
            planes, stride = width * 2 ** (i - 1), 1 if i == 1 else 2
            layer = [Bottleneck(cin, planes, stride, act)]
            cin = planes * Bottleneck.expansion
            layer += [Bottleneck(cin, planes, 1, act) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1)) if self.head else x


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: expand 1x1, depthwise 3x3, project 1x1."""

    def __init__(self, cin, cout, stride, expand, act):
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        self.conv = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), act(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), act(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Blocks(nn.Module):
    def __init__(self, act=nn.ReLU6, pool="max"):
        super().__init__()
        settings = [(8, 1, 1, 1), (12, 2, 2, 4), (16, 2, 2, 4), (24, 1, 1, 4)]
        layers = [nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), act())]
        cin = 8
        for cout, repeats, stride, expand in settings:
            for r in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if r == 0 else 1, expand, act))
                cin = cout
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


class UNet(nn.Module):
    """A small padded U-Net: two levels, max pools, transposed convs up, skips by cat."""

    def __init__(self, act=nn.ReLU, pool="max", width=4, upsample="transpose"):
        super().__init__()

        def double(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), act(),
                                 nn.Conv2d(cout, cout, 3, padding=1), act())

        self.inc = double(3, width)
        self.down1, self.conv1 = pool_layer(pool, 2), double(width, 2 * width)
        self.down2, self.conv2 = pool_layer(pool, 2), double(2 * width, 4 * width)
        if upsample == "transpose":
            self.up1 = nn.ConvTranspose2d(4 * width, 2 * width, 2, 2)
            self.up2 = nn.ConvTranspose2d(2 * width, width, 2, 2)
        else:
            self.up1 = nn.Sequential(nn.Upsample(scale_factor=2, mode=upsample),
                                     nn.Conv2d(4 * width, 2 * width, 1))
            self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode=upsample),
                                     nn.Conv2d(2 * width, width, 1))
        self.dec1, self.dec2 = double(4 * width, 2 * width), double(2 * width, width)
        self.outc = nn.Conv2d(width, 2, 1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.conv1(self.down1(x1))
        x3 = self.conv2(self.down2(x2))
        y = self.dec1(torch.cat([x2, self.up1(x3)], 1))
        y = self.dec2(torch.cat([x1, self.up2(y)], 1))
        return self.outc(y)


class TCN(nn.Module):
    """Bai et al. 2018: causal dilated 1-D convolutions (left padding, F.pad), residual."""

    def __init__(self, act=nn.ReLU, pool="max", levels=3, kernel=3, width=4):
        super().__init__()
        self.kernel = kernel
        self.blocks = nn.ModuleList()
        cin = 1
        for i in range(levels):
            self.blocks.append(nn.ModuleDict({
                "conv1": nn.Conv1d(cin, width, kernel, dilation=2 ** i), "relu1": act(),
                "conv2": nn.Conv1d(width, width, kernel, dilation=2 ** i), "relu2": act(),
                "downsample": nn.Conv1d(cin, width, 1)}))
            cin = width

    def forward(self, x):
        for i, b in enumerate(self.blocks):
            pad = (self.kernel - 1) * 2 ** i
            y = b["relu1"](b["conv1"](F.pad(x, (pad, 0))))
            y = b["relu2"](b["conv2"](F.pad(y, (pad, 0))))
            x = y + b["downsample"](x)
        return x


class FPN(nn.Module):
    """A small feature pyramid: a strided backbone, lateral 1x1s, nearest top-down ×2,
    3x3 outputs (P2..P4) and a max-pooled P5 (torchvision's extra block)."""

    def __init__(self, act=nn.ReLU, pool="max", width=4):
        super().__init__()
        self.body = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), act()),
            nn.Sequential(nn.Conv2d(width, width, 3, 2, 1), act()),
            nn.Sequential(nn.Conv2d(width, width, 3, 2, 1), act())])
        self.inner_blocks = nn.ModuleList([nn.Conv2d(width, width, 1) for _ in range(3)])
        self.layer_blocks = nn.ModuleList([nn.Conv2d(width, width, 3, 1, 1) for _ in range(3)])
        self.extra = pool_layer(pool, 1, 2)

    def forward(self, x):
        feats = []
        for stage in self.body:
            x = stage(x)
            feats.append(x)
        last = self.inner_blocks[2](feats[2])
        outs = [self.layer_blocks[2](last)]
        for i in (1, 0):
            last = self.inner_blocks[i](feats[i]) + F.interpolate(last, scale_factor=2,
                                                                   mode="nearest")
            outs.insert(0, self.layer_blocks[i](last))
        outs.append(self.extra(outs[-1]))
        return outs[0] + F.interpolate(outs[3], scale_factor=8, mode="nearest")


class GlobalContext(nn.Module):
    """PointNet segmentation's head in 1-D: a global summary expanded back to every point,
    alone (``mode='alone'``), concatenated to the per-point features ('concat') or twice,
    added ('sum': two one-unit operands, a map no box describes)."""

    def __init__(self, mode: str = "concat"):
        super().__init__()
        self.mode = mode
        self.c1 = nn.Conv1d(1, 4, 3, padding=1)
        self.c2 = nn.Conv1d(8 if mode == "concat" else 4, 1, 3, padding=1)

    def forward(self, x):
        h = self.c1(x)
        g = h.mean(2, keepdim=True).expand(-1, -1, h.shape[2])
        if self.mode == "sum":
            return self.c2(g + h.amax(2, keepdim=True).expand_as(h))
        return self.c2(torch.cat([h, g], 1) if self.mode == "concat" else g)


class TimeAttention(nn.Module):
    """A conv front end, self-attention over time (the sequence axis of an (N, T, C)
    transpose), a conv back end: an audio encoder block. ``mask``: a local band mask."""

    def __init__(self, mask: bool = False):
        super().__init__()
        self.mask = mask
        self.front, self.back = nn.Conv1d(1, 4, 3, padding=1), nn.Conv1d(4, 1, 3)
        self.query = nn.Linear(4, 4)

    def forward(self, x):
        t = self.front(x).transpose(1, 2)
        band = None
        if self.mask:
            steps = torch.arange(t.shape[1])
            band = (steps[:, None] - steps[None, :]).abs() <= 1
        mixed = F.scaled_dot_product_attention(self.query(t), t, t, attn_mask=band)
        return self.back(mixed.transpose(1, 2))


class ManualAttention(nn.Module):
    """Attention written out with matmul and softmax, as most audio and vision code
    writes it: a conv front end, ``heads`` heads over time (or, 2-D, along the height of
    each column: axial attention), a conv back end; ``einsum``: the products written as
    torch.einsum."""

    def __init__(self, dims: int = 1, heads: int = 1, einsum: bool = False):
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.dims, self.heads, self.einsum = dims, heads, einsum
        self.front, self.back = conv(1, 4, 3, padding=1), conv(4, 2, 3)
        self.query, self.key, self.value = (nn.Linear(4, 4) for _ in range(3))

    def split(self, t):
        """(..., T, C) to (..., heads, T, C / heads)."""
        *lead, steps, channels = t.shape
        return t.reshape(*lead, steps, self.heads, channels // self.heads).transpose(-3, -2)

    def forward(self, x):
        h = self.front(x)
        # (N, T, C), or (N, W, H, C): attention along H in every column
        t = h.transpose(1, 2) if self.dims == 1 else h.permute(0, 3, 2, 1)
        q, k, v = (self.split(f(t)) for f in (self.query, self.key, self.value))
        if self.einsum:  # heads written as einsum: (N, heads, T, D)
            scores = torch.einsum("...id,...jd->...ij", q, k)
            mixed = torch.einsum("...ij,...jd->...id", torch.softmax(scores, -1), v)
        else:
            mixed = torch.softmax(q @ k.transpose(-1, -2), dim=-1) @ v
        mixed = mixed.transpose(-3, -2).flatten(-2)
        return self.back(mixed.transpose(1, 2) if self.dims == 1 else mixed.permute(0, 3, 2, 1))


class Gram(nn.Module):
    """A Gram matrix over positions (bilinear pooling, a style loss): features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3)

    def forward(self, x):
        h = self.conv(x)
        return (h @ h.transpose(1, 2)).flatten(1)


class TorchAttention(nn.Module):
    """A conv front end, torch's own attention module over time (nn.MultiheadAttention,
    batch-first or sequence-first, or a whole nn.TransformerEncoderLayer), a conv back
    end: a conformer-style audio block."""

    def __init__(self, batch_first: bool = True, encoder: bool = False):
        super().__init__()
        self.batch_first, self.encoder = batch_first, encoder
        self.front, self.back = nn.Conv1d(1, 4, 3, padding=1), nn.Conv1d(4, 2, 3)
        self.mix = (nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=batch_first)
                    if encoder else nn.MultiheadAttention(4, 2, batch_first=batch_first))

    def forward(self, x):
        h = self.front(x)
        t = h.transpose(1, 2) if self.batch_first else h.permute(2, 0, 1)
        mixed = self.mix(t) if self.encoder else self.mix(t, t, t, need_weights=False)[0]
        return self.back(mixed.transpose(1, 2) if self.batch_first else mixed.permute(1, 2, 0))


class GlobalQuery(nn.Module):
    """A query pooled from the map scores every position (``features @ map``); the
    softmax over positions makes every unit read the whole clip."""

    def __init__(self):
        super().__init__()
        self.front, self.query, self.back = nn.Conv1d(1, 4, 3, padding=1), nn.Linear(4, 4), \
            nn.Conv1d(4, 2, 3)

    def forward(self, x):
        h = self.front(x)
        weights = torch.softmax(self.query(h.mean(-1))[:, None, :] @ h, -1)
        return self.back(h * weights)


class LeftWeight(nn.Module):
    """A 1 x 1 convolution written as a matrix product with the weight on the left."""

    def __init__(self):
        super().__init__()
        self.front = nn.Conv1d(1, 4, 3, padding=1)
        self.weight = nn.Parameter(torch.rand(2, 4))

    def forward(self, x):
        return self.weight @ self.front(x)


class TokenAttention(nn.Module):
    """Self-attention over all H x W positions as tokens (BoTNet, ViT hybrids): flatten,
    attend, put the tokens back on the grid, a residual add and a conv; ``bottleneck``:
    a dense bottleneck instead of attention (an autoencoder's)."""

    def __init__(self, bottleneck: bool = False):
        super().__init__()
        self.bottleneck = bottleneck
        self.front, self.back = nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.Conv2d(3, 2, 3)
        self.mix = nn.Linear(3 * 6 * 6, 3 * 6 * 6)

    def forward(self, x):
        h = self.front(x)
        n, c, height, width = h.shape
        if self.bottleneck:
            back = self.mix(h.flatten(1)).reshape(n, c, height, width)
            return self.back(back)
        t = h.flatten(2).transpose(1, 2)  # (N, HW, C)
        mixed = torch.softmax(t @ t.transpose(1, 2), -1) @ t
        return self.back(mixed.transpose(1, 2).reshape(n, c, height, width) + h)


class Sized(nn.Module):
    """A conv, then a resize or a slice written with sizes (``bound``) or relative to the
    map (not)."""

    def __init__(self, how: str):
        super().__init__()
        self.how, self.conv = how, nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        h = self.conv(x)
        if self.how == "skip":  # the size of the map it joins (a U-Net's, an FPN's)
            small = F.max_pool2d(h, 2)
            return torch.cat([h, F.interpolate(small, size=h.shape[2:])], 1)
        return {"size": lambda: F.interpolate(h, size=(16, 16)),
                "scale": lambda: F.interpolate(h, scale_factor=2.0),
                "slice": lambda: h[:, :, 2:20, 2:20],
                "relative": lambda: h[:, :, 2:-2, 2:-2]}[self.how]()
