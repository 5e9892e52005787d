"""What each ATen op of a traced PyTorch model is, as spec layers.

Rules are keyed by the ATen op name (``conv2d``, ``upsample_bilinear2d``, ...); they see
the op's arguments bound to its schema's names, tensors as :class:`Value`, and the shape
of what it returned. Both ``torch.export``'s graph (``conv2d``, ``max_pool2d``, ``pad``,
``linear``) and the lower-level graph of the fallback tracer (``convolution``,
``max_pool2d_with_indices``, ``constant_pad_nd``, ``addmm``) are covered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .builder import (
    SPATIAL_CONCAT,
    SpecBuilder,
    Unsupported,
    Value,
    derived,
    zero_padding,
)
from .merges import merge_operands, same_layout
from .products import attend, einsum, matmul_places, placed_product
from .shapes import standard_layout


@dataclass
class Call:
    """One op being mapped: its bound arguments, output shape and the layer base name
    (``in_shape``: its first argument's shape, where it is a traced tensor)."""

    args: dict
    shape: tuple[int, ...]
    base: str
    builder: SpecBuilder
    in_shape: tuple[int, ...] | None = None
    readers: tuple[str, ...] = ()  # the ops that read the result (through aliases)
    shapes: dict = field(default_factory=dict)  # the tensor arguments' shapes, by name

    @property
    def dims(self) -> int:
        return self.builder.dims

    def value(self, name: str = "input") -> Value:
        v = self.args.get(name)
        if not isinstance(v, Value):
            raise Unsupported(f"argument {name!r} is not a traced tensor")
        return v

    def layer(self, op: str, inputs: list[Value], **fields) -> Value:
        """A layer whose output keeps the spatial layout of ``inputs[0]`` with the sizes
        of the returned shape."""
        node = self.builder.add(self.base, op, inputs, **fields)
        first = inputs[0]
        return derived(node, first, first.axes, [self.shape[a] for a in first.axes],
                       len(self.shape))


def per_axis(value, dims: int, name: str) -> list[int]:
    """An int or list argument as one int per axis (an empty list: None)."""
    if isinstance(value, int):
        return [value] * dims
    value = list(value)
    if len(value) == 1:
        return value * dims
    if len(value) != dims:
        raise Unsupported(f"{name} has {len(value)} values for {dims} axes")
    return [int(v) for v in value]


# ---------------------------------------------------------------- windows

def conv(c: Call) -> Value:
    x, weight = c.value("input"), c.args.get("weight")
    standard_layout(x, c.dims)
    kernel = list(weight.shape[2:]) if hasattr(weight, "shape") else None
    if kernel is None:
        raise Unsupported("the convolution's weight shape is unknown")
    transposed = bool(c.args.get("transposed", False))
    if c.args.get("__op") in ("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"):
        transposed = True
    stride = per_axis(c.args.get("stride", 1), c.dims, "stride")
    dilation = per_axis(c.args.get("dilation", 1), c.dims, "dilation")
    padding = c.args.get("padding", 0)
    if isinstance(padding, str):  # conv2d.padding: 'same' (PyTorch: the odd unit after)
        totals = [0 if padding == "valid" else d * (k - 1) for k, d in
                  zip(kernel, dilation, strict=True)]
        pads = [[t // 2, t - t // 2] for t in totals]
    else:
        pads = [[p, p] for p in per_axis(padding, c.dims, "padding")]
    fields = {"kernel": kernel, "stride": stride, "dilation": dilation, "padding": pads}
    if transposed:
        fields["output_padding"] = per_axis(c.args.get("output_padding", 0), c.dims,
                                            "output_padding")
        return c.layer("conv_transpose", [x], **fields)
    groups = c.args.get("groups", 1)
    return c.layer("conv", [x], **fields, **({"groups": groups} if groups != 1 else {}))


def pool(op: str) -> Callable[[Call], Value]:
    def rule(c: Call) -> Value:
        x = c.value("self")
        standard_layout(x, c.dims)
        kernel = per_axis(c.args["kernel_size"], c.dims, "kernel_size")
        stride = c.args.get("stride") or kernel
        fields = {"kernel": kernel, "stride": per_axis(stride, c.dims, "stride"),
                  "padding": per_axis(c.args.get("padding", 0), c.dims, "padding")}
        if op == "maxpool":
            fields["dilation"] = per_axis(c.args.get("dilation", 1), c.dims, "dilation")
        if c.args.get("ceil_mode"):
            fields["ceil_mode"] = True
        return c.layer(op, [x], **fields)
    return rule


def adaptive_pool(op: str) -> Callable[[Call], Value]:
    def rule(c: Call) -> Value:
        x = c.value("self")
        standard_layout(x, c.dims)
        out = per_axis(c.args["output_size"], c.dims, "output_size")
        if all(o == 1 for o in out):
            return global_pool(c, x)
        out = [n if o is None else o for n, o in zip(x.sizes, out, strict=True)]
        if all(o % n == 0 for n, o in zip(x.sizes, out, strict=True)) and out != list(x.sizes):
            pooled = c.layer("upsample", [x], factor=[o // n for n, o in zip(  # mode="area"
                x.sizes, out, strict=True)], mode="nearest")  # x r: each unit r times
        else:
            windows = [adaptive_window(n, o) for n, o in zip(x.sizes, out, strict=True)]
            if None in windows:
                raise Unsupported(f"an adaptive pool from {list(x.sizes)} to {out} is not "
                                  "one window (its windows overlap unevenly)")
            pooled = c.layer(op, [x], kernel=[k for k, _ in windows],
                             stride=[s for _, s in windows])
        c.builder.bound(pooled.node, f"an adaptive pool from {'x'.join(map(str, x.sizes))} "
                        f"to {'x'.join(map(str, out))} units")
        return pooled
    return rule


def adaptive_window(n: int, o: int) -> tuple[int, int] | None:
    """(kernel, stride) of an adaptive pool from ``n`` units to ``o``, whose window ``i``
    is [floor(i n / o), ceil((i + 1) n / o)), where the windows are one length and evenly
    spaced (13 to 3: kernel 5, stride 4); else None."""
    starts = [i * n // o for i in range(o)]
    ends = [-(-(i + 1) * n // o) for i in range(o)]
    kernel, stride = ends[0] - starts[0], (starts[1] if o > 1 else n)
    if all(e - b == kernel for b, e in zip(starts, ends, strict=True)) and all(
            b == i * stride for i, b in enumerate(starts)):
        return kernel, stride
    return None


def global_pool(c: Call, x: Value) -> Value:
    node = c.builder.add(c.base, "global_pool", [x])
    kept = len(c.shape) == x.rank  # keepdim: spatial axes of size 1 remain
    return Value(node, x.axes if kept else (), (1,) * len(x.axes) if kept else (),
                 len(c.shape), x)


# ---------------------------------------------------------------- padding

def pad(c: Call) -> Value:
    """F.pad / constant_pad_nd: pairs from the last dimension backwards."""
    x = c.value("self")
    mode = c.args.get("mode", "constant")
    if mode == "circular":
        raise Unsupported("circular padding reads the far side of the map")
    flat = list(c.args["pad"])
    pairs = {len(c.shape) - 1 - i: (flat[2 * i], flat[2 * i + 1]) for i in range(len(flat) // 2)}
    repeating = ("reflect", "replicate")
    padded = c.layer("pad", [x], padding=zero_padding(c.builder, x, pairs, mode, repeating))
    c.builder.padded(padded.node, mode, repeating)
    return padded


def reflection_pad(c: Call) -> Value:
    mode = "replicate" if c.args["__op"].startswith("replication") else "reflect"
    c.args = {"self": c.args["self"], "pad": c.args["padding"], "mode": mode}
    return pad(c)


# ---------------------------------------------------------------- merges and reductions

def tensors(c: Call, *names: str) -> list[Value]:
    return [c.args[n] for n in names if isinstance(c.args.get(n), Value)]


def binary(c: Call) -> Value:
    """add/sub/mul/div/...: two maps of one size merge; a broadcast operand (a bias, a
    scale, a channel gate of 1 x 1) leaves an element-wise layer on the map."""
    names = [n for n in ("self", "other", "input") if isinstance(c.args.get(n), Value)]
    return merge_operands(c.builder, c.base, [c.args[n] for n in names],
                          c.args["__op"].rstrip("_"), lambda op, ins, f: c.layer(op, ins, **f),
                          lambda x: elementwise(c, x), [c.shapes.get(n) for n in names])


def cat(c: Call) -> Value:
    values = [v for v in c.args["tensors"] if isinstance(v, Value)]
    rank = len(c.shape)
    dim = c.args.get("dim", 0)
    dim = dim + rank if dim < 0 else dim
    if any(dim in v.axes for v in values):
        raise Unsupported(SPATIAL_CONCAT)
    same_layout(values)
    c.builder.merged([v for v in values if v.spatial])
    if len(values) == 1:
        return values[0]
    return c.layer("concat", values)


def reduce(c: Call) -> Value:
    """mean / sum / amax / ... over dimensions: all spatial axes make a global pool."""
    x = c.value("self")
    dims = c.args.get("dim")
    if dims is None or dims == []:
        dims = list(range(x.rank))
    dims = [dims] if isinstance(dims, int) else list(dims)
    dims = {d % x.rank for d in dims}
    spatial = dims & set(x.axes)
    if not spatial:
        return elementwise(c, x)
    if spatial != set(x.axes):  # kept as one unit: a window over the whole of those axes
        if len(c.shape) != x.rank:
            raise Unsupported("a reduction over some of the spatial axes")
        kernel = [n if a in spatial else 1 for a, n in zip(x.axes, x.sizes, strict=True)]
        op = "avgpool" if c.args["__op"] in ("mean", "sum") else "maxpool"
        return c.layer(op, [x], kernel=kernel, stride=kernel)
    return global_pool(c, x)


# the operands of each matrix product, left and right (linear's weight is transposed)
PRODUCT_OPERANDS = {"linear": ("input", "weight"), "addmm": ("mat1", "mat2"),
                    "matmul": ("self", "other")}


def dense(c: Call) -> Value:
    """linear / addmm / mm / bmm / matmul: the operands placed as matmul places them
    (:func:`products.placed_product`): over features a dense layer, over the channels of a
    channel-last map an element-wise layer, two maps by :func:`product_of_maps`."""
    op = c.args["__op"]
    left, right = (c.args.get(k) for k in PRODUCT_OPERANDS.get(op, ("self", "mat2")))
    ranks = [v.rank if isinstance(v, Value) else len(getattr(v, "shape", ()))
             for v in (left, right)]
    lhs, rhs, rank = matmul_places(*ranks)
    if op == "linear" and isinstance(right, Value):  # x @ weight.T
        rhs = rhs[::-1]
    out = placed_product(c.builder, c.base, [(left, lhs), (right, rhs)], rank,
                         lambda op, ins, f: c.layer(op, ins, **f), f"aten.{op}")
    bias = c.args.get("bias" if op == "linear" else "self" if op == "addmm" else "")
    if not isinstance(bias, Value):
        return out
    return merge_operands(c.builder, c.base, [out, bias], op,  # a bias computed from the input
                          lambda op, ins, f: c.layer(op, ins, **f), lambda v: v)


def einsum_(c: Call) -> Value:
    """torch.einsum (:func:`products.einsum`)."""
    operands = [v for v in c.args.get("tensors", ()) if hasattr(v, "shape") or
                isinstance(v, Value)]
    return einsum(c.builder, c.base, c.args["equation"], operands,
                  lambda op, ins, f: c.layer(op, ins, **f))


def attention(c: Call) -> Value:
    """scaled_dot_product_attention: every query reads every key. Along a spatial axis
    (the sequence of a map transposed to (N, T, C) or split into heads), unmasked, by
    :func:`attend`; over flattened tokens, a dense layer (the map is gone)."""
    x = c.value("query")
    if not x.spatial or x.rank - 2 not in x.axes:
        node = c.builder.add(c.base, "dense", [x], comment="attention: every query reads "
                             "the whole map")
        return Value(node, (), (), len(c.shape))
    if c.args.get("attn_mask") is not None or c.args.get("is_causal"):
        raise Unsupported("masked attention along the map (a unit reads a part of it that "
                          "depends on the unit)")
    others = {v.node: v for v in tensors(c, "key", "value")}  # read whole, even if the query
    return attend(c.builder, c.base, x, list(others.values()),
                  {x.rank - 2}, lambda op, ins, f: c.layer(op, ins, **f))


# ---------------------------------------------------------------- element-wise

ELEMENTWISE = {  # ATen op -> the spec's element-wise op name
    "relu": "relu", "relu_": "relu", "hardtanh": "relu6", "hardtanh_": "relu6",
    "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu", "prelu": "prelu",
    "_prelu_kernel": "prelu", "elu": "elu", "selu": "selu", "gelu": "gelu", "silu": "silu",
    "silu_": "silu", "hardswish": "hard_swish", "hardswish_": "hard_swish", "mish": "mish",
    "sigmoid": "sigmoid", "hardsigmoid": "hard_sigmoid", "tanh": "tanh",
    "softmax": "softmax", "_softmax": "softmax", "log_softmax": "softmax",
    "batch_norm": "batchnorm", "native_batch_norm": "batchnorm",
    "_native_batch_norm_legit_no_training": "batchnorm", "layer_norm": "layernorm",
    "native_layer_norm": "layernorm", "group_norm": "groupnorm",
    "native_group_norm": "groupnorm", "instance_norm": "instancenorm",
    "dropout": "dropout", "native_dropout": "dropout", "feature_dropout": "dropout",
    "clamp": "identity", "clamp_min": "identity", "abs": "identity", "neg": "identity",
    "exp": "identity", "log": "identity", "sqrt": "identity", "rsqrt": "identity",
    "sign": "identity",
    "pow": "identity", "reciprocal": "identity", "softplus": "identity",
    "channel_shuffle": "identity", "native_channel_shuffle": "identity",
}
SOFTMAX = ("softmax", "_softmax", "log_softmax", "_log_softmax")
NORMS_OVER_MAPS = ("group_norm", "native_group_norm", "instance_norm", "layer_norm",
                   "native_layer_norm")


def elementwise(c: Call, x: Value | None = None) -> Value:
    x = x or next(iter(tensors(c, "self", "input", "other")), None)
    if x is None:
        raise Unsupported("no traced input")
    op = c.args["__op"]
    if op in SOFTMAX and isinstance(c.args.get("dim"), int):
        across = c.builder.across(c.base, x, [c.args["dim"]])
        if across is not None:
            return across
    name = ELEMENTWISE.get(op, "identity")
    if op in NORMS_OVER_MAPS:
        c.builder.assume(f"{op}: statistics over the map ignored (element-wise, by "
                         "convention)")
    fields = {} if name != "identity" else {"comment": f"aten.{op}"}
    return c.layer(name, [x], **fields)


def alias(c: Call) -> Value:
    return next(iter(tensors(c, "self", "input", "x")))


def expand(c: Call) -> Value:
    """expand / expand_as: a broadcast to the traced shape. Onto the map it has, the
    tensor itself. A one-unit summary spread over a larger map stays that summary where
    only element-wise ops read it (a gate, see ``merge_operands``), and is the summarised
    map read whole where anything else does (a window, a concat, an output)."""
    x = c.value("self")
    shift = len(c.shape) - x.rank  # leading dimensions added
    axes = tuple(a + shift for a in x.axes)
    x = Value(x.node, axes, x.sizes, len(c.shape), x.pooled) if shift else x
    sizes = tuple(c.shape[a] for a in axes)
    if sizes == x.sizes:
        return x
    if c.readers and all(op in BINARY for op in c.readers):
        return replace(x, broadcast=sizes)
    return c.builder.spread(c.base, x, sizes)


SPLITS = ("split", "split_with_sizes", "chunk", "unsafe_split", "unsafe_chunk",
          "unsafe_split_with_sizes", "tensor_split")  # every part is the same map


def along_channels(c: Call) -> Value:
    """split / chunk (every part) and glu: parts of a non-spatial dimension, each unit
    where it was; along a spatial axis they would move units, and are refused."""
    x = c.value("self")
    dim = c.args.get("dim", -1 if c.args["__op"] == "glu" else 0)
    if not isinstance(dim, int) or dim % x.rank in x.axes:
        raise Unsupported(f"a {c.args['__op']} along a spatial axis")
    return x if c.args["__op"] in SPLITS else elementwise(c, x)


ALIASES = ("alias", "clone", "contiguous", "detach", "_to_copy", "to", "type_as",
           "lift_fresh_copy", "dropout_", "_assert_tensor_metadata")
BINARY = ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum",
          "where")  # element-wise ops of several operands: a one-unit operand is a gate


RULES: dict[str, Callable[[Call], Value]] = {
    **dict.fromkeys(("conv1d", "conv2d", "conv3d", "convolution", "_convolution",
                     "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"), conv),
    **dict.fromkeys(("max_pool1d", "max_pool2d", "max_pool3d", "max_pool2d_with_indices",
                     "max_pool3d_with_indices", "max_pool1d_with_indices"), pool("maxpool")),
    **dict.fromkeys(("avg_pool1d", "avg_pool2d", "avg_pool3d"), pool("avgpool")),
    **dict.fromkeys(("adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
                     "_adaptive_avg_pool2d", "_adaptive_avg_pool3d"), adaptive_pool("avgpool")),
    **dict.fromkeys(("adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"),
                    adaptive_pool("maxpool")),
    **dict.fromkeys(("pad", "constant_pad_nd"), pad),
    **dict.fromkeys(("reflection_pad1d", "reflection_pad2d", "reflection_pad3d",
                     "replication_pad1d", "replication_pad2d", "replication_pad3d"),
                    reflection_pad),
    **dict.fromkeys(BINARY, binary),
    "cat": cat, "concat": cat,
    **dict.fromkeys(("mean", "sum", "amax", "amin", "max", "min"), reduce),
    **dict.fromkeys(("linear", "addmm", "mm", "matmul", "bmm"), dense),
    "einsum": einsum_,
    "scaled_dot_product_attention": attention,
    **dict.fromkeys(ELEMENTWISE, elementwise),
    **dict.fromkeys(ALIASES, alias),
    "expand": expand, "expand_as": expand,
    **dict.fromkeys((*SPLITS, "glu"), along_channels),
}
