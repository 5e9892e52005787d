"""What each JAX primitive of a traced model is, as spec layers.

Rules are keyed by the primitive's name (``conv_general_dilated``, ``reduce_window_max``,
...). They see the equation's parameters, its operands (a :class:`Value` for what derives
from the model input, ``None`` for parameters and constants) and its output shape.
Layout ops (reshape, transpose, broadcast) are in :mod:`.jax_layout`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .builder import (
    INPUT,
    SPATIAL_CONCAT,
    SpecBuilder,
    Unsupported,
    Value,
    derived,
)
from .merges import merge_operands, same_layout
from .products import dot_general_places, placed_product
from .shapes import transposed_padding


@dataclass
class Eqn:
    """One equation being mapped, with what the walker decided about its layer: the base
    name, the element-wise op it would be, and the call it belongs to (``unit``)."""

    prim: str
    params: dict
    ins: list  # Value, or None for a parameter / constant
    shapes: list[tuple[int, ...]]  # of the operands
    out: tuple[int, ...]  # shape of the first result
    base: str
    kind: str  # the spec's element-wise op name for this equation
    unit: tuple | None  # (module call or named function) whose element-wise ops are one layer
    builder: SpecBuilder
    units: dict = field(default_factory=dict)  # node -> (unit, element-wise?)
    reused: dict = field(default_factory=dict)  # (unit, input node) -> element-wise layer
    consts: list = field(default_factory=list)  # concrete operand values, where known
    input_rank: int = 0  # the model input's rank: a tensor of it holding the map is a map
    module: str = ""  # the class of the module (a leaf of the model) it belongs to

    @property
    def values(self) -> list[Value]:
        return [v for v in self.ins if isinstance(v, Value)]

    def layer(self, op: str, inputs: list[Value], axes=None, **fields) -> Value:
        """A layer on ``inputs``; its output's spatial axes are ``axes`` (default: those
        of ``inputs[0]``) with the sizes of the output shape."""
        node = self.builder.add(self.base, op, inputs, **fields)
        self.units[node] = (self.unit, op == self.kind)
        axes = inputs[0].axes if axes is None else tuple(axes)
        return derived(node, inputs[0], axes, [self.out[a] for a in axes], len(self.out))

    def elementwise(self, x: Value) -> Value:
        """``x`` through an element-wise op: one layer per module call or named function
        (a bias add after a convolution, the steps of a norm or of gelu join its layer)."""
        made = self.units.get(x.node)
        if x.node != INPUT and made and self.unit is not None and made[0] == self.unit and (
                self.unit[0] != "path" or made[1] or not x.spatial):
            return Value(x.node, x.axes, x.sizes, len(self.out), x.pooled)
        key = (self.unit, x.node)
        if self.unit is not None and key in self.reused:  # x used again in one call
            node = self.reused[key]
            return Value(node, x.axes, tuple(self.out[a] for a in x.axes), len(self.out))
        fields = {} if self.kind != "identity" else {"comment": f"jax.lax.{self.prim}"}
        out = self.layer(self.kind, [x], **fields)
        self.reused[key] = out.node
        return out

    def within_call(self, maps: list[Value]) -> Value | None:
        """The element-wise layer of this call that a merge of ``maps`` amounts to: every
        map is that layer or the layer's input (one function computing f(x) and x)."""
        if self.unit is None or self.unit[0] == "path" or len(maps) < 2:
            return None
        mine = {v.node for v in maps if self.units.get(v.node, (None,))[0] == self.unit}
        if len(mine) != 1:
            return None
        node = next(iter(mine))
        reads = next(la["inputs"] for la in reversed(self.builder.layers)
                     if la["name"] == node)
        if all(v.node == node or [v.node] == reads for v in maps):
            return next(v for v in maps if v.node == node)
        return None

    def whole(self, x: Value, comment: str | None = None) -> Value:
        """A whole-map layer (dense, attention): its output has no map."""
        node = self.builder.add(self.base, "dense", [x], **({"comment": comment}
                                                           if comment else {}))
        self.units[node] = (self.unit, False)
        return Value(node, (), (), len(self.out), x.pooled or (x if x.spatial else None))


def spatial_only(e: Eqn, x: Value, values, name: str, neutral) -> list:
    """``values`` (one per tensor dimension) at the spatial axes; elsewhere they must be
    ``neutral`` (a window of 1 over batch and channels)."""
    if any(v != neutral for d, v in enumerate(values) if d not in x.axes):
        raise Unsupported(f"{name} {list(values)} runs over a non-spatial dimension")
    return [values[a] for a in x.axes]


# ---------------------------------------------------------------- windows

def as_map(e: Eqn, x: Value, dims) -> Value:
    """``x`` with its spatial axes at tensor dimensions ``dims``: a pooled summary kept as
    one unit per axis (``mean(..., keepdims=True)``) becomes a map of one unit again."""
    if not x.spatial and len(dims) == e.builder.dims and all(
            e.shapes[0][d] == 1 for d in dims):
        return Value(x.node, tuple(dims), (1,) * len(dims), x.rank, x.pooled)
    return x


def conv(e: Eqn) -> Value:
    x = e.ins[0]
    if not isinstance(x, Value) or isinstance(e.ins[1], Value):
        raise Unsupported("a convolution whose kernel derives from the input")
    lhs, rhs, out = e.params["dimension_numbers"]
    x = as_map(e, x, lhs[2:])
    if tuple(lhs[2:]) != x.axes:
        raise Unsupported(f"the convolution's spatial dimensions {list(lhs[2:])} are not the "
                          f"map's {list(x.axes)}")
    if e.params.get("batch_group_count", 1) != 1:
        raise Unsupported("batch_group_count > 1 (a weight-gradient convolution)")
    kernel = [e.shapes[1][d] for d in rhs[2:]]
    stride = list(e.params["window_strides"])
    dilation = list(e.params["rhs_dilation"])
    pads = [[int(a), int(b)] for a, b in e.params["padding"]]
    lhs_dilation = list(e.params["lhs_dilation"])
    axes = tuple(out[2:])
    if any(s > 1 for s in lhs_dilation):
        return transposed(e, x, kernel, stride, dilation, pads, lhs_dilation, axes)
    groups = e.params.get("feature_group_count", 1)
    padding, why = traced_same(e, x, kernel, stride, dilation, pads)
    return bound(e, why, e.layer("conv", [x], axes, kernel=kernel, stride=stride,
                                 dilation=dilation, padding=padding,
                                 **({"groups": groups} if groups != 1 else {})))


def bound(e: Eqn, why: str | None, out: Value) -> Value:
    """``out``, its layer listed as bound to the traced size where ``why`` says so."""
    if why:
        e.builder.bound(out.node, why)
    return out


def traced_same(e: Eqn, x: Value, kernel, stride, dilation, pads):
    """The padding of a window, and why it holds at the traced size only (or None). JAX
    traces 'SAME' as the explicit pads of the traced size, which with a stride fit that
    size only. Strided pads that are 'SAME''s with its odd unit after (pads no one writes
    by hand but to copy 'SAME') are the spec's 'same' (TensorFlow's rule, as JAX's), which
    holds at every size; symmetric nonzero ones are also what PyTorch-style code writes
    (k3 s2 p1): they stay, bound to the traced size. Zero pads stay ('VALID')."""
    same = [_same_pads(n, k, s, d) for n, k, s, d in zip(x.sizes, kernel, stride, dilation,
                                                         strict=True)]
    strided = [i for i, s in enumerate(stride) if s > 1]
    if not strided or pads != same or not any(any(same[i]) for i in strided):
        return pads, None
    if any(same[i][0] != same[i][1] for i in strided):
        e.builder.assume("strided windows padded as 'SAME' at the traced size (the odd unit "
                         "after) read as 'SAME', which holds at every size")
        return "same", None
    return pads, "strided pads that are also 'SAME''s at the traced size"


def _same_pads(n: int, k: int, s: int, d: int) -> list[int]:
    """TensorFlow's 'SAME' pads (before, after) of a window on n units."""
    total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
    return [total // 2, total - total // 2]


def transposed(e, x, kernel, stride, dilation, pads, lhs_dilation, axes) -> Value:
    """An input-dilated convolution is a transposed one (stride = the input dilation);
    where its padding does not fit the spec's, the full output and then a ``pad``."""
    if any(s != 1 for s in stride):
        raise Unsupported("a convolution with both input dilation and a window stride")
    fields = {"kernel": kernel, "stride": lhs_dilation, "dilation": dilation}
    fitted = transposed_padding(kernel, lhs_dilation, dilation, pads)
    if fitted is not None:
        return e.layer("conv_transpose", [x], axes, **fields, **fitted)
    full = e.layer("conv_transpose", [x], axes, **fields, padding=0)
    return e.layer("pad", [full], axes, padding=[[lo - d * (k - 1), hi - d * (k - 1)]
                                                  for k, d, (lo, hi) in
                                                  zip(kernel, dilation, pads, strict=True)])


POOL_OPS = {"reduce_window_max": "maxpool", "reduce_window_min": "maxpool",
            "reduce_window_sum": "avgpool", "reduce_window": "pool"}


def reduce_window(e: Eqn) -> Value:
    x = e.ins[0]
    if not isinstance(x, Value):
        raise Unsupported("a pool over a parameter")
    window = spatial_only(e, x, e.params["window_dimensions"], "window", 1)
    stride = spatial_only(e, x, e.params["window_strides"], "stride", 1)
    pads = spatial_only(e, x, [(int(a), int(b)) for a, b in e.params["padding"]], "padding",
                        (0, 0))
    dilation = spatial_only(e, x, e.params["window_dilation"], "window dilation", 1)
    if any(b != 1 for b in e.params["base_dilation"]):
        raise Unsupported("a pool with base (input) dilation")
    padding, why = traced_same(e, x, window, stride, dilation, [list(p) for p in pads])
    fields = {"kernel": window, "stride": stride, "padding": padding}
    if any(d != 1 for d in dilation):
        fields["dilation"] = dilation
    return bound(e, why, e.layer(POOL_OPS[e.prim], [x], **fields))


def pad(e: Eqn) -> Value:
    x = e.ins[0]
    config = [tuple(int(v) for v in c) for c in e.params["padding_config"]]
    if not isinstance(x, Value):
        raise Unsupported("padding of a parameter")
    if any(c[2] for c in config):
        raise Unsupported("interior padding (zeros between units)")
    pads = spatial_only(e, x, [c[:2] for c in config], "padding", (0, 0))
    if all(p == (0, 0) for p in pads):
        return Value(x.node, x.axes, x.sizes, len(e.out), x.pooled)
    return e.layer("pad", [x], padding=[list(p) for p in pads])


def slice_(e: Eqn) -> Value:
    """x[a:b:s] on spatial axes: a crop, or a window of 1 with stride s."""
    x = e.ins[0]
    starts = [int(v) for v in e.params["start_indices"]]
    limits = [int(v) for v in e.params["limit_indices"]]
    strides = [int(v) for v in e.params.get("strides") or [1] * len(starts)]
    crop = [[starts[a], x.sizes[i] - limits[a]] for i, a in enumerate(x.axes)]
    step = [strides[a] for a in x.axes]
    if all(c == [0, 0] for c in crop) and all(s == 1 for s in step):
        return Value(x.node, x.axes, x.sizes, len(e.out), x.pooled)
    out = e.layer("crop", [x], crop=crop) if all(s == 1 for s in step) else \
        e.layer("pool", [x], kernel=1, stride=step, padding=[[-a, -b] for a, b in crop])
    # a jaxpr's limits are units counted from the start, whatever the code wrote
    return bound(e, "a slice at a fixed unit index" if any(b for _, b in crop) else None,
                 out)


# ---------------------------------------------------------------- merges and reductions

def merge(e: Eqn) -> Value:
    """add/sub/mul/max/select...: maps of one size merge; a broadcast operand (a bias, a
    1 x 1 gate) leaves an element-wise op on the map."""
    values = e.values
    maps = [v for v in values if v.spatial and any(s > 1 for s in v.sizes)]
    inside = e.within_call(maps)
    if inside is not None:  # x * sigmoid(x) inside one call: still element-wise of x
        return e.elementwise(inside)
    return merge_operands(e.builder, e.base, values, e.prim,
                          lambda op, ins, f: e.layer(op, ins, **f), e.elementwise,
                          [s for v, s in zip(e.ins, e.shapes, strict=False)
                           if isinstance(v, Value)])


def concatenate(e: Eqn) -> Value:
    values = e.values
    dim = e.params["dimension"]
    if any(dim in v.axes for v in values):
        raise Unsupported(SPATIAL_CONCAT)
    same_layout(values)
    if len(values) == 1:
        return values[0]
    maps = [v for v in values if v.spatial]
    if maps:  # a pooled branch broadcast over the map (DeepLab's image pooling)
        sizes = max((v.sizes for v in maps), key=lambda s: max(s))
        values = [e.builder.spread(e.base, v, sizes) if v.spatial or v.pooled is not None
                  else v for v in values]
        e.builder.merged([v for v in values if v.spatial])
    return e.layer("concat", values)


NORMS = ("groupnorm", "layernorm", "instancenorm")


def reduce(e: Eqn) -> Value:
    """reduce_sum / reduce_max / argmax ... over all spatial axes: a global pool."""
    x = e.ins[0]
    axes = set(e.params["axes"])
    spatial = axes & set(x.axes)
    kept = [d for d in range(x.rank) if d not in axes]
    if not spatial:
        return elementwise(e, x, tuple(kept.index(a) for a in x.axes))
    if e.kind in NORMS:  # a norm's statistics: element-wise by convention
        e.builder.assume(f"{e.kind}: statistics over the map ignored (element-wise, by "
                         "convention)")
        return Value(x.node, (), (), len(e.out))
    if spatial != set(x.axes):
        raise Unsupported(f"a {'softmax' if e.kind == 'softmax' else 'reduction'} over some "
                          "of the spatial axes")
    node = e.builder.add(e.base, "global_pool", [x])
    e.units[node] = (e.unit, False)
    if e.kind == "softmax" and e.units.get(x.node, (None,))[0] != e.unit:
        e.builder.softmax_summaries.add(node)  # jax.nn.softmax over the map: every unit
        # reads all of it; its second statistic (the sum of what already reads the whole
        # map) adds nothing
    return Value(node, (), (), len(e.out), x)


def dot_general(e: Eqn) -> Value:
    """A matrix product: over features, a dense layer; over the channels of a map, a 1 x 1
    (element-wise) layer; over a spatial axis or between two maps, whole-map."""
    (lc, rc), (lb, rb) = e.params["dimension_numbers"]
    lhs, rhs = e.ins[:2]
    if isinstance(lhs, Value) and isinstance(rhs, Value):
        return _product_of_maps(e, lhs, rhs)
    x, contract, batch, first = (lhs, lc, lb, True) if isinstance(lhs, Value) else \
        (rhs, rc, rb, False)
    if not x.spatial:
        return e.whole(x)
    if set(contract) & set(x.axes):
        raise Unsupported("a matrix product over a spatial axis (only jax.image.resize is "
                          "read as resampling)")
    free = [d for d in range(x.rank) if d not in contract and d not in batch]
    other_rank = len(e.shapes[1 if first else 0])
    other_free = other_rank - len(contract) - len(batch)
    order = list(batch) + ([] if first else [None] * other_free) + free
    axes = tuple(order.index(a) for a in x.axes)
    return elementwise(e, x, axes)


def _product_of_maps(e: Eqn, lhs: Value, rhs: Value) -> Value:
    """Two traced operands placed by :func:`products.placed_product`: two maps by
    :func:`product_of_maps` (a unit-by-unit ``einsum('bhwc,bhwc->bhw')`` merges them,
    attention reads the keys whole), a map with features (a global token) keeps the map,
    two feature vectors are read whole."""
    (lc, rc), batch = e.params["dimension_numbers"]
    lhs_places, rhs_places, rank = dot_general_places((lhs.rank, rhs.rank), (lc, rc), batch)
    return placed_product(e.builder, e.base, [(lhs, lhs_places), (rhs, rhs_places)], rank,
                          lambda op, ins, f: e.layer(op, ins, **f), f"jax.lax.{e.prim}")


def elementwise(e: Eqn, x: Value, axes=None) -> Value:
    """An element-wise op whose output holds the map at ``axes`` (default: x's)."""
    if axes is not None and tuple(axes) != x.axes:  # (a reduction or product moved them)
        x = Value(x.node, tuple(axes), x.sizes, len(e.out), x.pooled)
    return e.elementwise(x)


def unary(e: Eqn) -> Value:
    return e.elementwise(e.values[0])


def alias(e: Eqn) -> Value:
    x = e.values[0]
    return Value(x.node, x.axes, x.sizes, len(e.out), x.pooled)


# ---------------------------------------------------------------- the table

UNARY = ("neg", "exp", "exp2", "log", "log1p", "expm1", "tanh", "logistic", "sin", "cos",
         "sqrt", "rsqrt", "cbrt", "abs", "sign", "floor", "ceil", "round", "integer_pow",
         "square", "erf", "erfc", "erf_inv", "is_finite", "not", "pow", "tan", "atan",
         "asinh", "acosh", "atanh", "sinh", "cosh", "lgamma", "digamma", "logaddexp",
         "reduce_precision", "clamp", "imag", "real", "conj")
MERGES = ("add", "sub", "mul", "div", "max", "min", "rem", "atan2", "and", "or", "xor",
          "eq", "ne", "lt", "le", "gt", "ge", "select_n", "nextafter", "add_any",
          "pow", "clamp", "logaddexp")
ALIASES = ("convert_element_type", "copy", "copy_p", "stop_gradient",
           "optimization_barrier", "device_put")
REDUCTIONS = ("reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and",
              "reduce_or", "argmax", "argmin")

RULES: dict[str, Callable[[Eqn], Value]] = {
    "conv_general_dilated": conv,
    **dict.fromkeys(POOL_OPS, reduce_window),
    "pad": pad, "slice": slice_,
    **dict.fromkeys(UNARY, unary),
    **dict.fromkeys(MERGES, merge),
    "concatenate": concatenate,
    **dict.fromkeys(REDUCTIONS, reduce),
    "dot_general": dot_general,
    **dict.fromkeys(ALIASES, alias),
}
