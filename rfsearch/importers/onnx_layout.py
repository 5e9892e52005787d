"""Layout ops of an ONNX graph: where the map's axes go through reshapes, transposes,
squeezes and broadcasts (a reshape that splits each spatial axis n into (n/r, r) is a
pixel unshuffle, as the exporter writes it)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .builder import Unsupported, Value, flattened
from .onnx_ops import MERGES, Node
from .shapes import carried, refuse_split, split


def flatten(n: Node) -> Value:
    return flattened(n.builder, n.ins[0], 2,
                     lambda x: Value(n.builder.add(n.base, "dense", [x]), (), (), 2))


def reshape(n: Node) -> Value:
    x = n.ins[0]
    target = n.const(1, "shape")
    old = n.shapes[0]
    if not x.spatial:
        return Value(x.node, (), (), len(target), x.pooled)
    if old is None or None in old:
        raise Unsupported("a reshape of a tensor of unknown shape")
    new = [int(d) if d != 0 else old[i] for i, d in enumerate(target)]
    if -1 in new:
        rest = int(np.prod([d for d in new if d != -1]))
        new[new.index(-1)] = int(np.prod(old)) // max(rest, 1)
    axes = carried(old, new, x.axes)
    if axes is not None:
        return Value(x.node, axes, x.sizes, len(new), x.pooled)
    regrouped = split(old, new, x.axes)
    if regrouped is not None:  # space to depth: how exporters write pixel_unshuffle
        axes, factors = regrouped
        return n.layer("pixel_unshuffle", [x], [s // r for s, r in zip(x.sizes, factors,
                                                                      strict=True)],
                       axes=axes, rank=len(new), factor=factors)
    refuse_split(old, new, x.axes)
    return flatten(n)  # a map merged into features: read as dense


def transpose(n: Node) -> Value:
    x = n.ins[0]
    perm = list(n.attr("perm") or reversed(range(x.rank)))
    axes = tuple(perm.index(a) for a in x.axes)  # possibly reordered (axial attention)
    return Value(x.node, axes, x.sizes, x.rank, x.pooled)


def squeeze(n: Node) -> Value:
    x = n.ins[0]
    axes = n.attr("axes")
    if axes is None and len(n.node.input) > 1:
        axes = n.const(1, "axes")
    shape = n.shapes[0]
    gone = {int(a) % x.rank for a in axes} if axes is not None else \
        {d for d, s in enumerate(shape or ()) if s == 1}
    kept = [d for d in range(x.rank) if d not in gone]
    axes_out = tuple(kept.index(a) for a in x.axes if a in kept)
    if gone & set(x.axes) and axes_out:
        raise Unsupported("a squeeze of some of the spatial axes")
    return Value(x.node, axes_out, tuple(x.sizes[x.axes.index(kept[a])] for a in axes_out)
                 if axes_out else (), len(kept), x.pooled)


def unsqueeze(n: Node) -> Value:
    x = n.ins[0]
    axes = n.attr("axes")
    if axes is None:
        axes = n.const(1, "axes")
    rank = x.rank + len(axes)
    new = sorted(int(a) % rank for a in axes)
    kept = [d for d in range(rank) if d not in new]
    return Value(x.node, tuple(kept[a] for a in x.axes), x.sizes, rank, x.pooled)


def expand(n: Node) -> Value:
    """A broadcast to a shape. Onto the map it has, the tensor itself. A one-unit summary
    spread over a larger map stays that summary where only element-wise ops read it (a
    gate), and is the summarised map read whole where anything else does."""
    x = n.ins[0]
    target = [int(d) for d in n.const(1, "shape")]
    rank = max(x.rank, len(target))
    shift = rank - x.rank
    target = [1] * (rank - len(target)) + target
    axes = tuple(a + shift for a in x.axes)
    x = Value(x.node, axes, x.sizes, rank, x.pooled)
    sizes = tuple(s if t == 1 else t for s, t in zip(x.sizes, (target[a] for a in axes),
                                                     strict=True))
    if sizes == x.sizes:
        return x
    if n.readers and all(op in MERGES for op in n.readers):
        return Value(x.node, axes, x.sizes, rank, x.pooled, broadcast=sizes)
    return n.builder.spread(n.base, x, sizes)


RULES: dict[str, Callable[[Node], Value]] = {
    "Flatten": flatten, "Reshape": reshape, "Transpose": transpose, "Squeeze": squeeze,
    "Unsqueeze": unsqueeze, "Expand": expand,
}
