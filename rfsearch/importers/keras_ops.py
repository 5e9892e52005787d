"""What each Keras layer class is, as spec layers, and the size of the map it makes.

Rules are keyed by the layer's class name and read its config (``kernel_size``,
``strides``, ``padding``, ...). Keras's ``'same'`` is TensorFlow's (the odd unit of padding
after: the spec's ``'same'``); ``'causal'`` pads ``d(k - 1)`` before.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .builder import (
    SPATIAL_CONCAT,
    SpecBuilder,
    Unsupported,
    Value,
    derived,
    flattened,
)
from .merges import merge_operands, same_layout
from .products import attend
from .shapes import carried, refuse_split, transposed_padding


@dataclass
class Layer:
    """One call of a layer being mapped."""

    kind: str  # class name
    config: dict
    ins: list
    name: str
    builder: SpecBuilder
    shapes: tuple = ()  # the input tensors' shapes Keras 3 records (None where it does not)
    kwargs: dict = field(default_factory=dict)  # the call's keyword arguments (Keras 3)

    @property
    def dims(self) -> int:
        return self.builder.dims

    def x(self) -> Value:
        x = self.ins[0]
        if not isinstance(x, Value) or not x.spatial:
            raise Unsupported("its input is not a map")
        return x

    def per_axis(self, key: str, default) -> list[int]:
        value = self.config.get(key, default)
        if value is None:
            value = default
        if isinstance(value, int):
            return [value] * self.dims
        value = [int(v) for v in value]
        return value * self.dims if len(value) == 1 else value

    def layer(self, op: str, inputs: list[Value], sizes=None, axes=None, rank=None,
              **fields) -> Value:
        node = self.builder.add(self.name, op, inputs, **fields)
        first = inputs[0]
        return derived(node, first, first.axes if axes is None else axes,
                       first.sizes if sizes is None else sizes, rank or first.rank)


def out_size(n: int, k: int, s: int, d: int, padding: str) -> int:
    if padding == "same":
        return -(-n // s)
    return (n - d * (k - 1) - 1) // s + 1


def windowed(la: Layer, op: str, kernel: list[int]) -> Value:
    x = la.x()
    stride = la.per_axis("strides", 1) if la.config.get("strides") is not None else kernel
    dilation = la.per_axis("dilation_rate", 1)
    padding = la.config.get("padding", "valid")
    fields = {"kernel": kernel, "stride": stride}
    if op != "avgpool":
        fields["dilation"] = dilation
    if padding == "causal":
        pads = [[d * (k - 1), 0] for k, d in zip(kernel, dilation, strict=True)]
        fields["padding"] = pads
        sizes = [out_size(n + a, k, s, d, "valid") for n, k, s, d, (a, _) in
                 zip(x.sizes, kernel, stride, dilation, pads, strict=True)]
    else:
        fields["padding"] = "same" if padding == "same" else 0
        sizes = [out_size(n, k, s, d, padding) for n, k, s, d in
                 zip(x.sizes, kernel, stride, dilation, strict=True)]
    if any(s < 1 for s in sizes):
        raise Unsupported(f"the window leaves no output unit (sizes {sizes})")
    return la.layer(op, [x], sizes, **fields)


def conv(la: Layer) -> Value:
    """A convolution; its own softmax activation (over the last axis) can span the map."""
    out = windowed(la, "conv", la.per_axis("kernel_size", 1))
    if la.config.get("activation") in ("softmax", "log_softmax"):
        return la.builder.across(la.name, out, [-1]) or out
    return out


def pool(op: str) -> Callable[[Layer], Value]:
    def rule(la: Layer) -> Value:
        kernel = la.per_axis("pool_size", 2)
        if la.config.get("strides") is None:
            la.config = {**la.config, "strides": kernel}
        return windowed(la, op, kernel)
    return rule


def conv_transpose(la: Layer) -> Value:
    """Keras's transposed convolution as an input-dilated one (its JAX backend's pads),
    then the spec's padding and output_padding."""
    x = la.x()
    kernel, stride = la.per_axis("kernel_size", 1), la.per_axis("strides", 1)
    dilation = la.per_axis("dilation_rate", 1)
    extra = la.config.get("output_padding")
    extra = None if extra is None else la.per_axis("output_padding", 0)
    pads = []
    for i, (k, s, d) in enumerate(zip(kernel, stride, dilation, strict=True)):
        span = (k - 1) * d + 1
        o = None if extra is None else extra[i]
        if la.config.get("padding", "valid") == "valid":
            o = max(span, s) - span if o is None else o
            pads.append((span - 1, span - 1 + o))
        else:
            total = s + span - 2 if o is None else span + span % 2 - 2 + o
            lo = min(total // 2 + total % 2, span - 1)
            pads.append((lo, total - lo))
    fields = transposed_padding(kernel, stride, dilation, pads)
    if fields is None:
        raise Unsupported("a transposed convolution whose padding crops more than it "
                          "computes")
    sizes = [(n - 1) * s + lo + hi - d * (k - 1) + 1 for n, s, (lo, hi), d, k in
             zip(x.sizes, stride, pads, dilation, kernel, strict=True)]
    return la.layer("conv_transpose", [x], sizes, kernel=kernel, stride=stride,
                    dilation=dilation, **fields)


def global_pool(la: Layer) -> Value:
    x = la.x()
    node = la.builder.add(la.name, "global_pool", [x])
    if la.config.get("keepdims"):
        return Value(node, x.axes, (1,) * len(x.axes), x.rank, x)
    return Value(node, (), (), x.rank - len(x.axes), x)


def pairs(la: Layer, key: str) -> list[list[int]]:
    """ZeroPadding / Cropping amounts: an int, one per axis, or (before, after) pairs."""
    value = la.config.get(key, 0)
    if isinstance(value, int):
        return [[value, value]] * la.dims
    value = list(value)
    if la.dims == 1 and len(value) == 2 and all(isinstance(v, int) for v in value):
        return [[int(value[0]), int(value[1])]]
    return [[int(v), int(v)] if isinstance(v, int) else [int(v[0]), int(v[1])]
            for v in value]


def zero_padding(la: Layer) -> Value:
    x = la.x()
    pads = pairs(la, "padding")
    return la.layer("pad", [x], [n + a + b for n, (a, b) in zip(x.sizes, pads, strict=True)],
                    padding=pads)


def cropping(la: Layer) -> Value:
    x = la.x()
    crop = pairs(la, "cropping")
    return la.layer("crop", [x], [n - a - b for n, (a, b) in zip(x.sizes, crop, strict=True)],
                    crop=crop)


UPSAMPLE_MODES = {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic"}


def upsampling(la: Layer) -> Value:
    x = la.x()
    factor = la.per_axis("size", 2)
    mode = UPSAMPLE_MODES.get(la.config.get("interpolation", "nearest"))
    if mode is None:
        raise Unsupported(f"interpolation {la.config.get('interpolation')!r} has no spec "
                          "mode")
    return la.layer("upsample", [x], [n * f for n, f in zip(x.sizes, factor, strict=True)],
                    factor=factor, mode=mode)


# ---------------------------------------------------------------- merges and features

def merge_layer(la: Layer) -> Value:
    """Add/Multiply/Maximum/... (:func:`merges.merge_operands`)."""
    values = [v for v in la.ins if isinstance(v, Value)]
    shapes = [s for v, s in zip(la.ins, la.shapes or [None] * len(la.ins), strict=False)
              if isinstance(v, Value)]
    return merge_operands(la.builder, la.name, values, la.kind,
                          lambda op, ins, f: la.layer(op, ins, **f),
                          lambda x: la.layer("mul", [x], comment=la.kind), shapes)


def concatenate(la: Layer) -> Value:
    values = [v for v in la.ins if isinstance(v, Value)]
    axis = int(la.config.get("axis", -1)) % values[0].rank
    if any(axis in v.axes for v in values):
        raise Unsupported(SPATIAL_CONCAT)
    same_layout(values)
    return la.layer("concat", values)


def dense(la: Layer) -> Value:
    """Dense on features is dense; on a channel-last map it mixes channels only."""
    x = la.ins[0]
    if x.spatial and x.rank - 1 not in x.axes:
        return la.layer("identity", [x], comment="Dense over the channels")
    node = la.builder.add(la.name, "dense", [x])
    return Value(node, (), (), 2, x.pooled)


def attention(la: Layer) -> Value:
    """MultiHeadAttention over its ``attention_axes`` (by default every axis between the
    batch and the features), Attention and AdditiveAttention over the sequence (axis 1):
    unmasked, by :func:`attend` (each unit reads the keys and values whole along them)."""
    values = [v for v in la.ins if isinstance(v, Value)]
    if la.kwargs.get("use_causal_mask") or la.config.get("causal") or any(
            la.kwargs.get(k) is not None for k in ("attention_mask", "mask")):
        raise Unsupported("masked attention along the map (a unit reads a part of it that "
                          "depends on the unit)")
    if len(values) < 2:
        raise Unsupported("its value tensor is not in the config (a keyword argument of a "
                          "Keras 2 file)")
    query = values[0]
    axes = la.config.get("attention_axes") if la.kind == "MultiHeadAttention" else [1]
    along = set(range(1, query.rank - 1)) if axes is None else \
        {int(a) % query.rank for a in ([axes] if isinstance(axes, int) else axes)}
    return attend(la.builder, la.name, query, values[1:], along,
                  lambda op, ins, f: la.layer(op, ins, **f))


def flatten(la: Layer) -> Value:
    return flattened(la.builder, la.ins[0], 2,
                     lambda x: Value(la.builder.add(la.name, "dense", [x]), (), (), 2))


def reshape(la: Layer) -> Value:
    x = la.ins[0]
    target = [int(t) for t in la.config.get("target_shape", ())]
    if not x.spatial:
        summary = x.pooled
        if summary is not None and 1 + len(target) == summary.rank and all(
                target[a - 1] == 1 for a in summary.axes):  # pooled features as a 1x1 map
            return Value(x.node, summary.axes, (1,) * len(summary.axes), summary.rank, summary)
        return la.builder.unflattened(la.name, x, [1, *target]) or \
            Value(x.node, (), (), 1 + len(target), x.pooled)
    old = _input_shape(la, x)
    if old is None:
        return flatten(la)
    new = [1, *target]
    if -1 in new:  # the product of the others is -prod(new)
        new[new.index(-1)] = math.prod(old) // max(1, -math.prod(new))
    axes = carried(old, new, x.axes)
    if axes is not None:
        return Value(x.node, axes, x.sizes, len(new), x.pooled)
    refuse_split(old, new, x.axes)
    return flatten(la)


def _input_shape(la: Layer, x: Value) -> list[int] | None:
    """The input's shape (batch 1): as Keras 3 recorded it, else from the map's sizes when
    no other dimension is unknown."""
    recorded = la.shapes[0] if la.shapes else None
    if recorded and len(recorded) == x.rank and None not in recorded[1:]:
        return [1, *recorded[1:]]
    old = [1] + [x.sizes[x.axes.index(d)] if d in x.axes else None for d in range(1, x.rank)]
    return None if None in old else old


def elementwise(la: Layer) -> Value:
    x = next(v for v in la.ins if isinstance(v, Value))
    kind = ELEMENTWISE.get(la.kind, "identity")
    if la.kind == "Activation" or la.kind == "ReLU":
        kind = ACTIVATIONS.get(str(la.config.get("activation", "relu")), "identity")
        if la.kind == "ReLU" and la.config.get("max_value") == 6:
            kind = "relu6"
    if kind == "softmax":  # over ``axis`` (-1: the last dimension)
        across = la.builder.across(la.name, x, [la.config.get("axis", -1)])
        if across is not None:
            return across
    if la.kind in ("GroupNormalization", "LayerNormalization") and \
            set(la.per_axis("axis", -1)) & set(x.axes):
        la.builder.assume(f"{la.kind}: statistics over the map ignored (element-wise, by "
                          "convention)")
    fields = {} if kind != "identity" else {"comment": la.kind}
    return la.layer(kind, [x], **fields)


def alias(la: Layer) -> Value:
    return next(v for v in la.ins if isinstance(v, Value))


ACTIVATIONS = {"relu": "relu", "relu6": "relu6", "gelu": "gelu", "silu": "silu",
               "swish": "silu", "sigmoid": "sigmoid", "hard_sigmoid": "hard_sigmoid",
               "hard_silu": "hard_swish", "hard_swish": "hard_swish", "tanh": "tanh",
               "elu": "elu", "selu": "selu", "softmax": "softmax", "mish": "mish",
               "leaky_relu": "leaky_relu", "linear": "identity"}
ELEMENTWISE = {"BatchNormalization": "batchnorm", "LayerNormalization": "layernorm",
               "GroupNormalization": "groupnorm", "Dropout": "dropout",
               "SpatialDropout1D": "dropout", "SpatialDropout2D": "dropout",
               "SpatialDropout3D": "dropout", "GaussianNoise": "dropout",
               "GaussianDropout": "dropout", "LeakyReLU": "leaky_relu", "PReLU": "prelu",
               "ELU": "elu", "Softmax": "softmax", "Rescaling": "identity",
               "Normalization": "identity", "Activation": "identity", "ReLU": "relu",
               "UnitNormalization": "identity",
               "LayerScale": "identity"}  # keras.applications ConvNeXt: a per-channel scale

ATTENTION = ("MultiHeadAttention", "Attention", "AdditiveAttention")
# data augmentation: identity at inference
AUGMENTATION = ("RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                "RandomContrast", "RandomBrightness")

RULES: dict[str, Callable[[Layer], Value]] = {
    **dict.fromkeys(("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D",
                     "SeparableConv1D", "SeparableConv2D", "Convolution1D",
                     "Convolution2D", "Convolution3D"), conv),
    **dict.fromkeys(("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"),
                    conv_transpose),
    **dict.fromkeys(("MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "MaxPool1D",
                     "MaxPool2D", "MaxPool3D"), pool("maxpool")),
    **dict.fromkeys(("AveragePooling1D", "AveragePooling2D", "AveragePooling3D",
                     "AvgPool1D", "AvgPool2D", "AvgPool3D"), pool("avgpool")),
    **dict.fromkeys(("GlobalAveragePooling1D", "GlobalAveragePooling2D",
                     "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
                     "GlobalMaxPooling3D", "GlobalAvgPool1D", "GlobalAvgPool2D",
                     "GlobalAvgPool3D", "GlobalMaxPool1D", "GlobalMaxPool2D",
                     "GlobalMaxPool3D"), global_pool),
    **dict.fromkeys(("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D"), zero_padding),
    **dict.fromkeys(("Cropping1D", "Cropping2D", "Cropping3D"), cropping),
    **dict.fromkeys(("UpSampling1D", "UpSampling2D", "UpSampling3D"), upsampling),
    **dict.fromkeys(("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"),
                    merge_layer),
    "Concatenate": concatenate, "Dense": dense, "Flatten": flatten, "Reshape": reshape,
    **dict.fromkeys(ATTENTION, attention),
    **dict.fromkeys(ELEMENTWISE, elementwise),
    **dict.fromkeys(("Identity", "InputSpec", "Masking", *AUGMENTATION), alias),
}
