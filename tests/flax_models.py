"""Flax NNX twins of :mod:`torch_models`, for the JAX importer's tests: the same
receptive-field geometry and the same layer names as the PyTorch architectures.

Layer names are NNX attribute paths joined with ".", so every module sits under torch's
attribute name, and torch's ``nn.Sequential`` / ``nn.ModuleList`` / ``nn.ModuleDict``
become :class:`Sequential` (an ``nnx.List`` that calls its members in order) / ``nnx.List``
/ ``nnx.Dict`` (not ``nnx.Sequential``, whose members would read ``layer1.layers.0``).
Layers without parameters that torch names (pools, upsampling, activations) are small
modules here, under torch's attribute name or at torch's index in a list.

Layout is channel-last with a batch axis: [N, L, C], [N, H, W, C], [N, D, H, W, C]. Every
builder takes ``act`` (a function: ``jax.nn.relu`` unless torch's default is ReLU6; the
oracle passes ``lambda x: x``), ``pool`` (``"max"`` or ``"avg"``) and a keyword ``rngs``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def _tuple(v, dims: int) -> tuple:
    return tuple(v) if isinstance(v, tuple | list) else (v,) * dims


def _rngs(rngs: nnx.Rngs | None) -> nnx.Rngs:
    return nnx.Rngs(0) if rngs is None else rngs


class Act(nnx.Module):
    """An activation function as a module (torch's ``nn.ReLU()``), so that it has a path."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        return self.fn(x)


class Sequential(nnx.List):
    """torch's ``nn.Sequential``: members at paths ``name.0``, ``name.1``, ..., called in
    order (a module with a call of its own, so its output is named ``name``)."""

    def __call__(self, x):
        for f in self:
            x = f(x)
        return x


def conv(cin, cout, kernel, stride=1, padding=0, dilation=1, groups=1, bias=True, *,
         dims: int = 2, rngs: nnx.Rngs):
    """torch's ``nn.Conv{dims}d`` (symmetric integer padding)."""
    return nnx.Conv(cin, cout, _tuple(kernel, dims), _tuple(stride, dims),
                    padding=[(p, p) for p in _tuple(padding, dims)],
                    kernel_dilation=_tuple(dilation, dims), feature_group_count=groups,
                    use_bias=bias, rngs=rngs)


def conv_transpose(cin, cout, kernel, stride=1, padding=0, output_padding=0, bias=True,
                   dilation=1, *, dims: int = 2, rngs: nnx.Rngs):
    """torch's ``nn.ConvTranspose{dims}d``. lax pads the stride-dilated input by
    ``dilation * (kernel - 1) - padding`` on each side, plus ``output_padding`` on the
    high side: out = (n - 1) * stride - 2 * padding + dilation * (kernel - 1)
    + output_padding + 1, as torch. ``transpose_kernel`` makes it torch's op exactly."""
    k, d = _tuple(kernel, dims), _tuple(dilation, dims)
    pads = [(di * (ki - 1) - p, di * (ki - 1) - p + op) for ki, di, p, op in
            zip(k, d, _tuple(padding, dims), _tuple(output_padding, dims), strict=True)]
    return nnx.ConvTranspose(cin, cout, k, _tuple(stride, dims), padding=pads,
                             kernel_dilation=d, use_bias=bias, transpose_kernel=True,
                             rngs=rngs)


def batch_norm(c, *, rngs: nnx.Rngs):
    """torch's ``nn.BatchNorm{1,2,3}d`` in eval mode (running statistics: element-wise)."""
    return nnx.BatchNorm(c, use_running_average=True, momentum=0.9, epsilon=1e-5, rngs=rngs)


class _Pool(nnx.Module):
    def __init__(self, kernel, stride=None, padding=0, ceil_mode=False, dims: int = 2):
        self.window = _tuple(kernel, dims)
        self.strides = _tuple(kernel if stride is None else stride, dims)
        self.padding = _tuple(padding, dims)
        self.ceil_mode = ceil_mode

    def pads(self, size) -> tuple:
        """(low, high) per axis: torch's padding, and on the high side what ceil_mode adds
        (torch's rule: ceil, but the last window must start inside input or low pad)."""
        out = []
        for n, k, s, p in zip(size, self.window, self.strides, self.padding, strict=True):
            span = n + 2 * p - k
            m = (-(-span // s) if self.ceil_mode else span // s) + 1
            if self.ceil_mode and (m - 1) * s >= n + p:
                m -= 1
            out.append((p, max(p, (m - 1) * s + k - n - p)))
        return tuple(out)


class MaxPool(_Pool):
    """torch's ``nn.MaxPool{dims}d(kernel, stride, padding, ceil_mode=...)``."""

    def __call__(self, x):
        return nnx.max_pool(x, self.window, self.strides, self.pads(x.shape[1:-1]))


class AvgPool(_Pool):
    """torch's ``nn.AvgPool{dims}d`` (count_include_pad=True, torch's default)."""

    def __call__(self, x):
        return nnx.avg_pool(x, self.window, self.strides, self.pads(x.shape[1:-1]),
                            count_include_pad=True)


class GlobalAvgPool(nnx.Module):
    """torch's ``nn.AdaptiveAvgPool{dims}d(1)``: mean over the spatial axes, kept as 1s."""

    def __call__(self, x):
        return x.mean(axis=tuple(range(1, x.ndim - 1)), keepdims=True)


def interpolate(x, scale_factor: int, mode: str = "nearest"):
    """torch's ``F.interpolate`` by an integer factor (align_corners=False)."""
    method = "nearest" if mode == "nearest" else "linear"
    shape = (x.shape[0], *(n * scale_factor for n in x.shape[1:-1]), x.shape[-1])
    return jax.image.resize(x, shape, method)


class Upsample(nnx.Module):
    """torch's ``nn.Upsample(scale_factor=..., mode=...)``."""

    def __init__(self, scale_factor: int, mode: str = "nearest"):
        self.scale_factor, self.mode = scale_factor, mode

    def __call__(self, x):
        return interpolate(x, self.scale_factor, self.mode)


def pool_layer(pool: str, kernel, stride=None, padding=0, ceil_mode=False, dims: int = 2):
    return {"max": MaxPool, "avg": AvgPool}[pool](kernel, stride, padding, ceil_mode, dims)


class BasicBlock(nnx.Module):
    def __init__(self, cin, cout, stride, act, *, rngs: nnx.Rngs | None = None):
        rngs = _rngs(rngs)
        self.conv1 = conv(cin, cout, 3, stride, 1, bias=False, rngs=rngs)
        self.bn1 = batch_norm(cout, rngs=rngs)
        self.relu = Act(act)
        self.conv2 = conv(cout, cout, 3, 1, 1, bias=False, rngs=rngs)
        self.bn2 = batch_norm(cout, rngs=rngs)
        self.downsample = None if stride == 1 and cin == cout else Sequential([
            conv(cin, cout, 1, stride, bias=False, rngs=rngs), batch_norm(cout, rngs=rngs)])

    def __call__(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nnx.Module):
    """torchvision's resnet18: module names conv1, bn1, relu, maxpool, layer1..4, fc."""

    def __init__(self, act=jax.nn.relu, pool="max", width=8, classes=10, head=True, *,
                 rngs: nnx.Rngs | None = None):
        rngs = _rngs(rngs)
        self.head = head
        self.conv1 = conv(3, width, 7, 2, 3, bias=False, rngs=rngs)
        self.bn1 = batch_norm(width, rngs=rngs)
        self.relu = Act(act)
        self.maxpool = pool_layer(pool, 3, 2, 1)
        widths = [width, 2 * width, 4 * width, 8 * width]
        cin = width
        for i, w in enumerate(widths, start=1):
            stride = 1 if i == 1 else 2
            setattr(self, f"layer{i}", Sequential([BasicBlock(cin, w, stride, act, rngs=rngs),
                                                   BasicBlock(w, w, 1, act, rngs=rngs)]))
            cin = w
        self.avgpool = GlobalAvgPool()
        self.fc = nnx.Linear(cin, classes, rngs=rngs)

    def __call__(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return self.fc(self.avgpool(x).reshape(x.shape[0], -1)) if self.head else x


class Bottleneck(nnx.Module):
    """torchvision's ResNet-50 block (v1.5: the stride on the 3x3), expansion 4."""

    expansion = 4

    def __init__(self, cin, planes, stride, act, *, rngs: nnx.Rngs | None = None):
        rngs = _rngs(rngs)
        cout = planes * self.expansion
        self.conv1 = conv(cin, planes, 1, bias=False, rngs=rngs)
        self.bn1 = batch_norm(planes, rngs=rngs)
        self.conv2 = conv(planes, planes, 3, stride, 1, bias=False, rngs=rngs)
        self.bn2 = batch_norm(planes, rngs=rngs)
        self.conv3 = conv(planes, cout, 1, bias=False, rngs=rngs)
        self.bn3 = batch_norm(cout, rngs=rngs)
        self.relu = Act(act)
        self.downsample = None if stride == 1 and cin == cout else Sequential([
            conv(cin, cout, 1, stride, bias=False, rngs=rngs), batch_norm(cout, rngs=rngs)])

    def __call__(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(ResNet18):
    """torchvision's resnet50: [3, 4, 6, 3] bottlenecks; ``width=64`` is torchvision's."""

    def __init__(self, act=jax.nn.relu, pool="max", width=8, classes=10, head=True, *,
                 rngs: nnx.Rngs | None = None):
        rngs = _rngs(rngs)
        super().__init__(act, pool, width, classes, head, rngs=rngs)
        cin = width
        for i, blocks in enumerate([3, 4, 6, 3], start=1):
            planes, stride = width * 2 ** (i - 1), 1 if i == 1 else 2
            layer = [Bottleneck(cin, planes, stride, act, rngs=rngs)]
            cin = planes * Bottleneck.expansion
            layer += [Bottleneck(cin, planes, 1, act, rngs=rngs) for _ in range(blocks - 1)]
            setattr(self, f"layer{i}", Sequential(layer))
        self.fc = nnx.Linear(cin, classes, rngs=rngs)


class InvertedResidual(nnx.Module):
    """torchvision's MobileNetV2 block: expand 1x1, depthwise 3x3, project 1x1."""

    def __init__(self, cin, cout, stride, expand, act, *, rngs: nnx.Rngs | None = None):
        rngs = _rngs(rngs)
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        self.conv = Sequential([
            conv(cin, hidden, 1, bias=False, rngs=rngs), batch_norm(hidden, rngs=rngs), Act(act),
            conv(hidden, hidden, 3, stride, 1, groups=hidden, bias=False, rngs=rngs),
            batch_norm(hidden, rngs=rngs), Act(act),
            conv(hidden, cout, 1, bias=False, rngs=rngs), batch_norm(cout, rngs=rngs)])

    def __call__(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Blocks(nnx.Module):
    def __init__(self, act=jax.nn.relu6, pool="max", *, rngs: nnx.Rngs | None = None):
        rngs = _rngs(rngs)
        settings = [(8, 1, 1, 1), (12, 2, 2, 4), (16, 2, 2, 4), (24, 1, 1, 4)]
        layers = [Sequential([conv(3, 8, 3, 2, 1, bias=False, rngs=rngs),
                              batch_norm(8, rngs=rngs), Act(act)])]
        cin = 8
        for cout, repeats, stride, expand in settings:
            for r in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if r == 0 else 1, expand, act,
                                               rngs=rngs))
                cin = cout
        self.features = Sequential(layers)

    def __call__(self, x):
        return self.features(x)


class UNet(nnx.Module):
    """A small padded U-Net: two levels, max pools, transposed convs up, skips by cat."""

    def __init__(self, act=jax.nn.relu, pool="max", width=4, upsample="transpose", *,
                 rngs: nnx.Rngs | None = None):
        rngs = _rngs(rngs)

        def double(cin, cout):
            return Sequential([conv(cin, cout, 3, padding=1, rngs=rngs), Act(act),
                               conv(cout, cout, 3, padding=1, rngs=rngs), Act(act)])

        self.inc = double(3, width)
        self.down1, self.conv1 = pool_layer(pool, 2), double(width, 2 * width)
        self.down2, self.conv2 = pool_layer(pool, 2), double(2 * width, 4 * width)
        if upsample == "transpose":
            self.up1 = conv_transpose(4 * width, 2 * width, 2, 2, rngs=rngs)
            self.up2 = conv_transpose(2 * width, width, 2, 2, rngs=rngs)
        else:
            self.up1 = Sequential([Upsample(2, upsample), conv(4 * width, 2 * width, 1, rngs=rngs)])
            self.up2 = Sequential([Upsample(2, upsample), conv(2 * width, width, 1, rngs=rngs)])
        self.dec1, self.dec2 = double(4 * width, 2 * width), double(2 * width, width)
        self.outc = conv(width, 2, 1, rngs=rngs)

    def __call__(self, x):
        x1 = self.inc(x)
        x2 = self.conv1(self.down1(x1))
        x3 = self.conv2(self.down2(x2))
        y = self.dec1(jnp.concatenate([x2, self.up1(x3)], -1))
        y = self.dec2(jnp.concatenate([x1, self.up2(y)], -1))
        return self.outc(y)


class TCN(nnx.Module):
    """Bai et al. 2018: causal dilated 1-D convolutions (left padding, jnp.pad), residual."""

    def __init__(self, act=jax.nn.relu, pool="max", levels=3, kernel=3, width=4, *,
                 rngs: nnx.Rngs | None = None):
        rngs = _rngs(rngs)
        self.kernel = kernel
        blocks = []
        cin = 1
        for i in range(levels):
            blocks.append(nnx.Dict({
                "conv1": conv(cin, width, kernel, dilation=2 ** i, dims=1, rngs=rngs),
                "relu1": Act(act),
                "conv2": conv(width, width, kernel, dilation=2 ** i, dims=1, rngs=rngs),
                "relu2": Act(act),
                "downsample": conv(cin, width, 1, dims=1, rngs=rngs)}))
            cin = width
        self.blocks = nnx.List(blocks)

    def __call__(self, x):
        for i, b in enumerate(self.blocks):
            pad = ((0, 0), ((self.kernel - 1) * 2 ** i, 0), (0, 0))
            y = b["relu1"](b["conv1"](jnp.pad(x, pad)))
            y = b["relu2"](b["conv2"](jnp.pad(y, pad)))
            x = y + b["downsample"](x)
        return x


class FPN(nnx.Module):
    """A small feature pyramid: a strided backbone, lateral 1x1s, nearest top-down ×2,
    3x3 outputs (P2..P4) and a max-pooled P5 (torchvision's extra block)."""

    def __init__(self, act=jax.nn.relu, pool="max", width=4, *, rngs: nnx.Rngs | None = None):
        rngs = _rngs(rngs)
        self.body = nnx.List([
            Sequential([conv(3, width, 3, 2, 1, rngs=rngs), Act(act)]),
            Sequential([conv(width, width, 3, 2, 1, rngs=rngs), Act(act)]),
            Sequential([conv(width, width, 3, 2, 1, rngs=rngs), Act(act)])])
        self.inner_blocks = nnx.List([conv(width, width, 1, rngs=rngs) for _ in range(3)])
        self.layer_blocks = nnx.List([conv(width, width, 3, 1, 1, rngs=rngs)
                                      for _ in range(3)])
        self.extra = pool_layer(pool, 1, 2)

    def __call__(self, x):
        feats = []
        for stage in self.body:
            x = stage(x)
            feats.append(x)
        last = self.inner_blocks[2](feats[2])
        outs = [self.layer_blocks[2](last)]
        for i in (1, 0):
            last = self.inner_blocks[i](feats[i]) + interpolate(last, 2, "nearest")
            outs.insert(0, self.layer_blocks[i](last))
        outs.append(self.extra(outs[-1]))
        return outs[0] + interpolate(outs[3], 8, "nearest")
