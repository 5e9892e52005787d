"""What each ONNX node is, as spec layers, and the size of the map it makes.

Rules are keyed by op type. They see the node's attributes, its inputs (a :class:`Value`
for what derives from the model input, a numpy array for constants, None where unknown)
and compute the output map's size with rfsearch's own arithmetic (the walker checks it
against ONNX shape inference). Layout is NCHW: spatial axes are dimensions 2...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .builder import (
    SPATIAL_CONCAT,
    SpecBuilder,
    Unsupported,
    Value,
    derived,
    zero_padding,
)
from .merges import merge_operands, same_layout
from .products import einsum, matmul_places, placed_product, read_whole
from .shapes import standard_layout


@dataclass
class Node:
    """One node being mapped."""

    node: object  # onnx.NodeProto
    ins: list
    shapes: list  # full shapes of the inputs, where known
    base: str
    builder: SpecBuilder
    inferred: tuple | None  # ONNX shape inference's shape of the first output
    counted: tuple | None = None  # sizes counting a dropped ceil_mode window (see window)
    opset: int = 18  # the model's default-domain opset
    readers: tuple[str, ...] = ()  # op types reading the first output ('output': the graph's)

    @property
    def op(self) -> str:
        return self.node.op_type

    @property
    def values(self) -> list[Value]:
        return [v for v in self.ins if isinstance(v, Value)]

    @property
    def dims(self) -> int:
        return self.builder.dims

    def attr(self, name: str, default=None):
        from onnx import helper

        for a in self.node.attribute:
            if a.name == name:
                value = helper.get_attribute_value(a)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def const(self, index: int, what: str):
        """Input ``index`` as a numpy constant (None if absent)."""
        if index >= len(self.ins) or not self.node.input[index]:
            return None
        value = self.ins[index]
        if not isinstance(value, np.ndarray):
            raise Unsupported(f"its {what} is not a constant")
        return value

    def x(self) -> Value:
        x = self.ins[0]
        if not isinstance(x, Value):
            raise Unsupported("its first input does not derive from the model input")
        standard_layout(x, self.dims)
        return x

    def layer(self, op: str, inputs: list[Value], sizes=None, axes=None, rank=None,
              **fields) -> Value:
        node = self.builder.add(self.base, op, inputs, **fields)
        first = inputs[0]
        return derived(node, first, first.axes if axes is None else axes,
                       first.sizes if sizes is None else sizes, rank or first.rank)

    def shape_of(self, result) -> tuple | None:
        """The full shape of ``result``: ONNX's inferred shape with rfsearch's sizes."""
        if not isinstance(result, Value):
            return None
        shape = list(self.inferred) if self.inferred and len(self.inferred) == result.rank \
            else None
        if shape is None:
            first = self.shapes[0] if self.shapes and self.shapes[0] else None
            if first is None or len(first) != result.rank:
                return None
            shape = list(first)
        for a, s in zip(result.axes, result.sizes, strict=True):
            shape[a] = s
        return tuple(shape)


def ints(values, dims: int, default: int, name: str) -> list[int]:
    if values is None or len(values) == 0:
        return [default] * dims
    values = [int(v) for v in values]
    if len(values) != dims:
        raise Unsupported(f"{name} has {len(values)} values for {dims} axes")
    return values


def out_size(n, k, s, d, lo, hi, ceil=False, drop=True) -> int:
    """Output units of a window (PyTorch's and ONNX Runtime's ceil rule: a last window
    starting in the right padding is dropped, unless ``drop`` is False, as ONNX's shape
    inference before opset 22 does)."""
    span = n + lo + hi - d * (k - 1) - 1
    if not ceil:
        return span // s + 1
    out = -(-span // s) + 1
    return out - 1 if drop and (out - 1) * s >= n + lo else out


# ---------------------------------------------------------------- windows

def window(n: Node, x: Value, kernel: list[int]) -> tuple[dict, list[int]]:
    """The window fields (kernel, stride, dilation, padding) and the output sizes."""
    dims = n.dims
    stride = ints(n.attr("strides"), dims, 1, "strides")
    dilation = ints(n.attr("dilations"), dims, 1, "dilations")
    auto = n.attr("auto_pad", "NOTSET")
    ceil = bool(n.attr("ceil_mode", 0))
    fields = {"kernel": kernel, "stride": stride, "dilation": dilation}
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        fields["padding"] = "same" if auto == "SAME_UPPER" else "same_lower"
        return fields, [-(-size // s) for size, s in zip(x.sizes, stride, strict=True)]
    pads = ints(n.attr("pads"), 2 * dims, 0, "pads") if auto == "NOTSET" else [0] * 2 * dims
    pairs = [[pads[i], pads[i + dims]] for i in range(dims)]
    fields["padding"] = pairs
    if ceil:
        fields["ceil_mode"] = True
    geometry = list(zip(x.sizes, kernel, stride, dilation, pairs, strict=True))
    sizes = [out_size(size, k, s, d, lo, hi, ceil) for size, k, s, d, (lo, hi) in geometry]
    if ceil:
        n.counted = tuple(out_size(size, k, s, d, lo, hi, True, False)
                          for size, k, s, d, (lo, hi) in geometry)
    if any(s < 1 for s in sizes):
        raise Unsupported(f"the window leaves no output unit (sizes {sizes})")
    return fields, sizes


def conv(n: Node) -> Value:
    x = n.x()
    weight = n.shapes[1]
    if weight is None:
        raise Unsupported("its weight's shape is unknown")
    kernel = ints(n.attr("kernel_shape"), n.dims, 0, "kernel_shape") \
        if n.attr("kernel_shape") else [int(k) for k in weight[2:]]
    fields, sizes = window(n, x, kernel)
    groups = int(n.attr("group", 1))
    return n.layer("conv", [x], sizes, **fields, **({"groups": groups} if groups != 1 else {}))


def conv_transpose(n: Node) -> Value:
    x = n.x()
    weight = n.shapes[1]
    if weight is None:
        raise Unsupported("its weight's shape is unknown")
    dims = n.dims
    kernel = [int(k) for k in weight[2:]]
    stride = ints(n.attr("strides"), dims, 1, "strides")
    dilation = ints(n.attr("dilations"), dims, 1, "dilations")
    extra = ints(n.attr("output_padding"), dims, 0, "output_padding")
    full = [s * (size - 1) + o + d * (k - 1) + 1 for size, s, o, d, k in
            zip(x.sizes, stride, extra, dilation, kernel, strict=True)]
    wanted = n.attr("output_shape")
    auto = n.attr("auto_pad", "NOTSET")
    if wanted or auto in ("SAME_UPPER", "SAME_LOWER"):
        out = [int(v) for v in wanted][-dims:] if wanted else \
            [size * s for size, s in zip(x.sizes, stride, strict=True)]
        total = [f - o for f, o in zip(full, out, strict=True)]
        lower = [t // 2 for t in total]
        pairs = [[a, t - a] if auto == "SAME_UPPER" else [t - a, a]
                 for t, a in zip(total, lower, strict=True)]
    else:
        pads = ints(n.attr("pads"), 2 * dims, 0, "pads")
        pairs = [[pads[i], pads[i + dims]] for i in range(dims)]
    sizes = [f - a - b for f, (a, b) in zip(full, pairs, strict=True)]
    for i, (a, b) in enumerate(pairs):  # units past the full output: output_padding
        if a >= 0 > b and extra[i] - b < max(stride[i], dilation[i]):
            pairs[i], extra[i] = [a, 0], extra[i] - b
    if any(a < 0 or b < 0 for a, b in pairs):
        raise Unsupported("a transposed convolution with negative padding")
    fields = {"kernel": kernel, "stride": stride, "dilation": dilation, "padding": pairs}
    if any(extra):
        fields["output_padding"] = extra
    groups = int(n.attr("group", 1))  # channel groups: the same windows on every map
    return n.layer("conv_transpose", [x], sizes, **fields,
                   **({"groups": groups} if groups != 1 else {}))


def pool(op: str) -> Callable[[Node], Value]:
    def rule(n: Node) -> Value:
        x = n.x()
        kernel = ints(n.attr("kernel_shape"), n.dims, 1, "kernel_shape")
        fields, sizes = window(n, x, kernel)
        if op != "maxpool" and all(d == 1 for d in fields["dilation"]):
            fields.pop("dilation")  # AveragePool and LpPool have dilations since opset 18/19
        return n.layer(op, [x], sizes, **fields)
    return rule


def global_pool(n: Node, x: Value, keep: bool = True) -> Value:
    node = n.builder.add(n.base, "global_pool", [x])
    if keep:
        return Value(node, x.axes, (1,) * len(x.axes), x.rank, x)
    return Value(node, (), (), x.rank - len(x.axes), x)


def pad(n: Node) -> Value:
    x = n.x()
    pads = n.const(1, "pads") if len(n.node.input) > 1 else n.attr("pads")
    if pads is None:
        raise Unsupported("its pads are unknown")
    pads = [int(p) for p in np.ravel(pads)]
    axes = n.const(3, "axes")
    axes = [int(a) % x.rank for a in axes] if axes is not None else list(range(x.rank))
    half = len(pads) // 2
    pairs = {a: (pads[i], pads[i + half]) for i, a in enumerate(axes)}
    mode = n.attr("mode", "constant")
    if mode == "wrap":
        raise Unsupported("circular padding reads the far side of the map")
    repeating = ("reflect", "edge")
    padding = zero_padding(n.builder, x, pairs, mode, repeating)
    sizes = [s + a + b for s, (a, b) in zip(x.sizes, padding, strict=True)]
    padded = n.layer("pad", [x], sizes, padding=padding)
    n.builder.padded(padded.node, mode, repeating)
    return padded


# ---------------------------------------------------------------- merges and reductions

MERGES = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow", "Where", "And", "Or",
          "Xor", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual")


def merge(n: Node) -> Value:
    """Add/Sub/Mul/... (:func:`merges.merge_operands`)."""
    return merge_operands(n.builder, n.base, n.values, n.op,
                          lambda op, ins, f: n.layer(op, ins, **f),
                          lambda x: elementwise(n, x),
                          [s for v, s in zip(n.ins, n.shapes, strict=False)
                           if isinstance(v, Value)])


def concat(n: Node) -> Value:
    values = n.values
    axis = int(n.attr("axis", 1)) % values[0].rank
    if any(axis in v.axes for v in values):
        raise Unsupported(SPATIAL_CONCAT)
    same_layout(values)
    n.builder.merged([v for v in values if v.spatial])
    return values[0] if len(values) == 1 else n.layer("concat", values)


def reduce(n: Node) -> Value:
    x = n.ins[0]
    axes = [n.attr("axis", 0)] if n.op in ("ArgMax", "ArgMin") else n.attr("axes")
    if axes is None and len(n.node.input) > 1 and n.node.input[1]:
        axes = n.const(1, "axes")
    if (axes is None or len(axes) == 0) and n.attr("noop_with_empty_axes", 0):
        return elementwise(n, x)
    axes = set(range(x.rank)) if axes is None or len(axes) == 0 else \
        {int(a) % x.rank for a in axes}
    keep = bool(n.attr("keepdims", 1))
    spatial = axes & set(x.axes)
    if not spatial:
        kept = [d for d in range(x.rank) if keep or d not in axes]
        return elementwise(n, x, tuple(kept.index(a) for a in x.axes))
    if spatial != set(x.axes):  # kept as one unit: a window over the whole of those axes
        if not keep:
            raise Unsupported("a reduction over some of the spatial axes that drops them")
        kernel = [size if a in spatial else 1 for a, size in zip(x.axes, x.sizes, strict=True)]
        op = "maxpool" if n.op in ("ReduceMax", "ReduceMin", "ArgMax", "ArgMin") else "avgpool"
        return n.layer(op, [x], [1 if a in spatial else size for a, size in zip(
            x.axes, x.sizes, strict=True)], kernel=kernel, stride=kernel)
    return global_pool(n, x, keep)


def dense(n: Node) -> Value:
    """Gemm / MatMul: on features a dense layer; over the channels of a channel-last map
    element-wise; over a spatial axis (an NCHW map's last dimension), whole-map. A MatMul
    places its operands as NumPy's matmul does (:func:`products.placed_product`)."""
    values = n.values
    x = values[0]
    ranks = [_rank(n, k) for k in range(2)]
    if n.op == "MatMul" and None not in ranks:
        lhs, rhs, rank = matmul_places(*ranks)
        return placed_product(n.builder, n.base, list(zip(n.ins[:2], (lhs, rhs), strict=True)),
                              rank, lambda op, ins, f: n.layer(op, ins, **f), "onnx MatMul")
    if len(values) == 1 and x.spatial and x.rank - 1 not in x.axes:
        return elementwise(n, x)
    return read_whole(n.builder, n.base, values, max(v.rank for v in values),
                      f"onnx {n.op}")


def einsum_(n: Node) -> Value:
    """Einsum (:func:`products.einsum`); a weight's shape from the graph."""
    operands = [v if isinstance(v, Value | np.ndarray) else None for v in n.ins]
    if any(v is None for v in operands):
        raise Unsupported("an einsum operand of unknown shape")
    return einsum(n.builder, n.base, n.attr("equation"), operands,
                  lambda op, ins, f: n.layer(op, ins, **f))


def _rank(n: Node, k: int) -> int | None:
    """The rank of input ``k`` (a traced value, a constant, or one of known shape)."""
    v = n.ins[k] if k < len(n.ins) else None
    if isinstance(v, Value):
        return v.rank
    if isinstance(v, np.ndarray):
        return v.ndim
    shape = n.shapes[k] if k < len(n.shapes) else None
    return None if shape is None else len(shape)


# ---------------------------------------------------------------- element-wise

ELEMENTWISE = {
    "Relu": "relu", "LeakyRelu": "leaky_relu", "PRelu": "prelu", "Elu": "elu",
    "Selu": "selu", "Celu": "elu", "Gelu": "gelu", "Sigmoid": "sigmoid",
    "HardSigmoid": "hard_sigmoid", "HardSwish": "hard_swish", "Mish": "mish",
    "Tanh": "tanh", "Softmax": "softmax", "LogSoftmax": "softmax",
    "BatchNormalization": "batchnorm", "LayerNormalization": "layernorm",
    "GroupNormalization": "groupnorm", "InstanceNormalization": "instancenorm",
    "Dropout": "dropout", "Clip": "identity", "Softplus": "identity", "Softsign": "identity",
    "Exp": "identity", "Log": "identity", "Sqrt": "identity", "Reciprocal": "identity",
    "Neg": "identity", "Abs": "identity", "Floor": "identity", "Ceil": "identity",
    "Round": "identity", "Sign": "identity", "Erf": "identity", "Sin": "identity",
    "Cos": "identity", "Not": "identity", "IsNaN": "identity", "IsInf": "identity",
    "ThresholdedRelu": "relu", "Shrink": "identity", "LpNormalization": "identity",
}
NORMS_OVER_MAPS = ("GroupNormalization", "InstanceNormalization")
ALIASES = ("Identity", "Cast", "CastLike")


def elementwise(n: Node, x: Value | None = None, axes=None) -> Value:
    x = x or n.values[0]
    name = ELEMENTWISE.get(n.op, "identity")
    if n.op in NORMS_OVER_MAPS:
        n.builder.assume(f"{n.op}: statistics over the map ignored (element-wise, by "
                         "convention)")
    fields = {} if name != "identity" else {"comment": f"onnx {n.op}"}
    rank = len(n.inferred) if n.inferred and axes is not None else None
    return n.layer(name, [x], axes=axes, rank=rank, **fields)


def alias(n: Node) -> Value:
    return n.values[0]


def softmax(n: Node) -> Value:
    """Softmax over an axis (before opset 13: over the axis and every one after it)."""
    x = n.values[0]
    axis = int(n.attr("axis", -1 if n.opset >= 13 else 1)) % x.rank
    dims = [axis] if n.opset >= 13 else list(range(axis, x.rank))
    return n.builder.across(n.base, x, dims) or elementwise(n, x)


RULES: dict[str, Callable[[Node], Value]] = {
    "Conv": conv, "ConvTranspose": conv_transpose,
    "MaxPool": pool("maxpool"), "AveragePool": pool("avgpool"), "LpPool": pool("avgpool"),
    **dict.fromkeys(("GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"),
                    lambda n: global_pool(n, n.values[0])),
    "Pad": pad,
    **dict.fromkeys(MERGES, merge),
    "Concat": concat,
    **dict.fromkeys(("ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceProd",
                     "ReduceL1", "ReduceL2", "ReduceLogSumExp", "ArgMax", "ArgMin"), reduce),
    "Gemm": dense, "MatMul": dense, "Einsum": einsum_,
    "Softmax": softmax, "LogSoftmax": softmax,
    **dict.fromkeys((k for k in ELEMENTWISE if k not in ("Softmax", "LogSoftmax")),
                    elementwise),
    **dict.fromkeys(ALIASES, alias),
}
