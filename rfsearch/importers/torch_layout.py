"""Layout ops of a traced PyTorch model: where the map's axes go through views, permutes
and slices (a slice along a spatial axis is a crop)."""

from __future__ import annotations

from collections.abc import Callable

from .builder import Unsupported, Value, flattened
from .shapes import carried, refuse_split
from .torch_ops import Call


def slice_(c: Call) -> Value:
    """x[..., a:b:s] on a spatial axis: a crop (and a stride s window); else no layer."""
    x, dim = c.value("self"), c.args.get("dim", 0)
    rank = len(c.shape)
    dim = dim + rank if dim < 0 else dim
    if dim not in x.axes:
        return x
    n = x.sizes[x.axes.index(dim)]
    start, end, step = c.args.get("start") or 0, c.args.get("end"), c.args.get("step", 1)
    # an end counted from the start (x[..., :100]) or a start from the end (x[..., -5:])
    absolute = (end is not None and 0 <= end < n) or start < 0
    start = max(0, start + n if start < 0 else start)
    end = n if end is None else min(n, end + n if end < 0 else end)
    if (start, end, step) == (0, n, 1):
        return x
    crop = [[0, 0] for _ in x.axes]
    crop[x.axes.index(dim)] = [start, n - end]
    stride = [1] * len(x.axes)
    stride[x.axes.index(dim)] = step
    out = c.layer("crop", [x], crop=crop) if step == 1 else \
        c.layer("pool", [x], kernel=1, stride=stride, padding=[[-a, -b] for a, b in crop])
    if absolute:
        c.builder.bound(out.node, "a slice at a fixed unit index")
    return out


def narrow(c: Call) -> Value:
    c.args = {"self": c.args["self"], "dim": c.args["dim"], "start": c.args["start"],
              "end": c.args["start"] + c.args["length"], "step": 1}
    return slice_(c)


def reshape(c: Call) -> Value:
    """view / reshape / flatten: spatial axes each kept whole stay (wherever they land:
    heads split off the channels); a map of one unit becomes features; flattening a
    larger map into features is read as a dense layer."""
    x = c.value("self")
    if not x.spatial:
        return c.builder.unflattened(c.base, x, c.shape) or \
            Value(x.node, (), (), len(c.shape), x.pooled)
    rank = len(c.shape)
    trailing = tuple(range(rank - len(x.axes), rank))
    axes = carried(c.in_shape, c.shape, x.axes) if c.in_shape is not None else \
        trailing if (x.axes == tuple(range(x.rank - len(x.axes), x.rank)) and rank >= len(x.axes)
                     and tuple(c.shape[a] for a in trailing) == x.sizes) else None
    if axes is not None:
        return Value(x.node, axes, x.sizes, rank, x.pooled)
    if c.in_shape is not None:
        refuse_split(c.in_shape, c.shape, x.axes)
    return flattened(c.builder, x, rank,
                     lambda v: Value(c.builder.add(c.base, "dense", [v]), (), (), rank))


def permute(c: Call) -> Value:
    x = c.value("self")
    order = [d % len(c.shape) for d in c.args["dims"]]
    return Value(x.node, tuple(order.index(a) for a in x.axes), x.sizes, len(c.shape), x.pooled)


def transpose(c: Call) -> Value:
    x = c.value("self")
    rank = len(c.shape)
    a, b = c.args["dim0"] % rank, c.args["dim1"] % rank
    swap = {a: b, b: a}
    return Value(x.node, tuple(swap.get(d, d) for d in x.axes), x.sizes, len(c.shape), x.pooled)


def select(c: Call) -> Value:
    """One index of a dimension that holds no spatial axis (query, key or value out of one
    projection, a batch element): the map stays; along a spatial axis, one position."""
    x = c.value("self")
    d = c.args["dim"] % x.rank
    if d in x.axes:
        raise Unsupported("one position of the map (an index along a spatial axis)")
    return Value(x.node, tuple(a - (a > d) for a in x.axes), x.sizes, len(c.shape), x.pooled)


def t(c: Call) -> Value:
    """x.t(): a transpose of a tensor of at most two dimensions."""
    x = c.value("self")
    swap = {0: 1, 1: 0} if x.rank == 2 else {}
    return Value(x.node, tuple(swap.get(d, d) for d in x.axes), x.sizes, x.rank, x.pooled)


def unsqueeze(c: Call) -> Value:
    x = c.value("self")
    d = c.args["dim"] % len(c.shape)
    return Value(x.node, tuple(a + (a >= d) for a in x.axes), x.sizes, len(c.shape), x.pooled)


RULES: dict[str, Callable[[Call], Value]] = {
    "slice": slice_, "narrow": narrow,
    **dict.fromkeys(("view", "reshape", "_unsafe_view", "flatten", "squeeze", "unflatten"),
                    reshape),
    "select": select, "t": t,
    "permute": permute, "transpose": transpose, "unsqueeze": unsqueeze,
}
