"""Layout ops of an ONNX graph: where the map's axes go through reshapes, transposes,
squeezes, broadcasts, slices and splits (a reshape that splits each spatial axis n into
(n/r, r) is a pixel unshuffle, as the exporter writes it)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .builder import Unsupported, Value, flattened
from .onnx_ops import MERGES, Node
from .shapes import carried, merged_into, refuse_split, repeat_factors, split


def flatten(n: Node) -> Value:
    return flattened(n.builder, n.ins[0], 2,
                     lambda x: Value(n.builder.add(n.base, "dense", [x]), (), (), 2))


def reshape(n: Node) -> Value:
    x = n.ins[0]
    target = n.const(1, "shape")
    old = n.shapes[0]
    known = old is not None and None not in old
    new = _resolved(old, target) if known else None
    if not x.spatial:
        if new is not None and not n.inferred:  # (what follows sees its shape)
            n.inferred = tuple(new)
        shape = n.inferred if n.inferred and None not in n.inferred else None
        return (shape and n.builder.unflattened(n.base, x, shape)) or \
            Value(x.node, (), (), len(target), x.pooled)
    if not known:
        raise Unsupported("a reshape of a tensor of unknown shape")
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
    if not n.inferred:
        n.inferred = tuple(new)
    factors = repeat_factors(old, new, x.axes) if len(new) == n.dims + 2 else None
    if factors is not None:  # depth to space written as reshapes: a nearest upsampling
        where = merged_into(old, new)
        return n.layer("upsample", [x], [s * f for s, f in zip(x.sizes, factors, strict=True)],
                       axes=tuple(where[a] for a in x.axes), rank=len(new), factor=factors,
                       mode="nearest", comment="a reshape repeating units (a pixel shuffle)")
    return flattened(n.builder, x, len(new),  # a map merged into features: read as dense
                     lambda v: Value(n.builder.add(n.base, "dense", [v]), (), (), len(new)))


def _resolved(old, target) -> list[int]:
    """A Reshape's target shape with its 0s (copy) and -1 (the rest) filled in."""
    new = [int(d) if d != 0 else old[i] for i, d in enumerate(target)]
    if -1 in new:
        rest = int(np.prod([d for d in new if d != -1]))
        new[new.index(-1)] = int(np.prod(old)) // max(rest, 1)
    return new


def transpose(n: Node) -> Value:
    x = n.ins[0]
    perm = list(n.attr("perm") or reversed(range(x.rank)))
    axes = tuple(perm.index(a) for a in x.axes)  # possibly reordered (axial attention)
    if not n.inferred and n.shapes[0] is not None:  # (what follows sees its shape)
        n.inferred = tuple(n.shapes[0][p] for p in perm)
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


def slice_(n: Node) -> Value:
    x = n.ins[0]
    starts, ends = n.const(1, "starts"), n.const(2, "ends")
    axes, steps = n.const(3, "axes"), n.const(4, "steps")
    axes = [int(a) % x.rank for a in axes] if axes is not None else list(range(len(starts)))
    steps = [int(s) for s in steps] if steps is not None else [1] * len(axes)
    crop, stride, sizes = [[0, 0] for _ in x.axes], [1] * len(x.axes), list(x.sizes)
    absolute = False  # an end counted from the start (x[..., :100]), a start from the end
    for a, start, end, step in zip(axes, starts, ends, steps, strict=True):
        if a not in x.axes:
            continue
        i = x.axes.index(a)
        if step < 1:
            raise Unsupported("a slice with a negative step (a flip)")
        lo, hi, _ = slice(int(start), int(end), step).indices(x.sizes[i])
        crop[i], stride[i] = [lo, x.sizes[i] - max(hi, lo)], step
        sizes[i] = len(range(lo, hi, step))
        absolute |= 0 <= int(end) < x.sizes[i] or int(start) < 0
    if all(c == [0, 0] for c in crop) and all(s == 1 for s in stride):
        return x
    out = n.layer("crop", [x], sizes, crop=crop) if all(s == 1 for s in stride) else \
        n.layer("pool", [x], sizes, kernel=1, stride=stride,
                padding=[[-a, -b] for a, b in crop])
    if absolute:
        n.builder.bound(out.node, "a slice at a fixed unit index")
    return out


def gather(n: Node) -> Value:
    """Entries of a dimension that holds no spatial axis (query, key and value out of one
    projection, a batch element): the map stays; along a spatial axis, refused."""
    x, indices = n.ins[0], n.const(1, "indices")
    if not isinstance(x, Value):
        raise Unsupported("a lookup indexed by the input (an embedding)")
    d = int(n.attr("axis", 0)) % x.rank
    if d in x.axes:
        raise Unsupported("positions of the map picked by index (a gather along a spatial "
                          "axis)")
    shift = np.ndim(indices) - 1
    return Value(x.node, tuple(a + shift * (a > d) for a in x.axes), x.sizes,
                 x.rank + shift, x.pooled)


def split_outputs(n: Node) -> list[Value]:
    """Split along a non-spatial dimension (query, key and value out of one projection):
    every part holds the whole map. Along a spatial axis the parts are tiles: refused."""
    x = n.ins[0]
    if int(n.attr("axis", 0)) % x.rank in x.axes:
        raise Unsupported("a split along a spatial axis (tiles): its parts' units come from "
                          "different places, so no box describes them")
    return [x] * len(n.node.output)


RULES: dict[str, Callable[[Node], Value | list[Value]]] = {
    "Flatten": flatten, "Reshape": reshape, "Transpose": transpose, "Squeeze": squeeze,
    "Unsqueeze": unsqueeze, "Expand": expand, "Slice": slice_, "Split": split_outputs,
    "Gather": gather,
}
