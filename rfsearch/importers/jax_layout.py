"""Layout in a jaxpr: which tensor dimensions hold the map. The input's spatial axes
are those its first convolution or pool reads as spatial; from there the rules follow them
through reshapes, transposes, broadcasts and squeezes."""

from __future__ import annotations

from collections.abc import Callable

from .builder import Unsupported, Value, flattened
from .jax_models import LOOP, body_of
from .jax_ops import Eqn, alias
from .shapes import carried, merged_into, refuse_split, repeat_factors, split

WINDOW_PRIMITIVES = ("reduce_window_max", "reduce_window_min", "reduce_window_sum",
                     "reduce_window")


def reshape(e: Eqn) -> Value:
    x = e.ins[0]
    if not x.spatial:
        return e.builder.unflattened(e.base, x, e.out) or alias(e)
    if e.params.get("dimensions") is not None:
        raise Unsupported("a reshape with a dimension order")
    axes = carried(e.shapes[0], e.out, x.axes)
    if axes is not None:
        return Value(x.node, axes, x.sizes, len(e.out), x.pooled)
    regrouped = split(e.shapes[0], e.out, x.axes)
    if regrouped is not None:  # windows of r units along the map (Equinox's adaptive pool)
        axes, factors = regrouped
        out = e.layer("pixel_unshuffle", [x], axes, factor=factors)
        if "adaptive" in e.module.lower():  # its windows follow the traced size
            e.builder.bound(out.node, f"{e.module} over {'x'.join(map(str, x.sizes))} units")
        return out
    refuse_split(e.shapes[0], e.out, x.axes)
    factors = repeat_factors(e.shapes[0], e.out, x.axes) if len(e.out) == e.input_rank \
        else None  # (a map again: N, H, W*C feeding a dense is a flatten)
    if factors is not None:
        where = merged_into(e.shapes[0], e.out)
        return e.layer("upsample", [x], axes=[where[a] for a in x.axes], factor=factors,
                       mode="nearest", comment="a reshape repeating units (jnp.repeat, a "
                                               "pixel shuffle)")
    return flattened(e.builder, x, len(e.out), e.whole)


def transpose(e: Eqn) -> Value:
    x = e.ins[0]
    perm = list(e.params["permutation"])
    axes = tuple(perm.index(a) for a in x.axes)  # possibly reordered (axial attention)
    return Value(x.node, axes, x.sizes, len(e.out), x.pooled)


def broadcast_in_dim(e: Eqn) -> Value:
    """New dimensions around the map; a map of one unit broadcast over a larger one stays
    a one-unit operand (a gate), not a map."""
    x = e.ins[0]
    dims = e.params["broadcast_dimensions"]
    return Value(x.node, tuple(dims[a] for a in x.axes), x.sizes, len(e.out), x.pooled)


def squeeze(e: Eqn) -> Value:
    x = e.ins[0]
    gone = {d % x.rank for d in e.params["dimensions"]}
    kept = [d for d in range(x.rank) if d not in gone]
    axes = tuple(kept.index(a) for a in x.axes if a in kept)
    if gone & set(x.axes) and axes:
        raise Unsupported("a squeeze of some of the spatial axes")
    return Value(x.node, axes, tuple(e.out[a] for a in axes), len(e.out), x.pooled)


def rev(e: Eqn) -> Value:
    x = e.ins[0]
    if set(e.params["dimensions"]) & set(x.axes):
        raise Unsupported("a flip along a spatial axis")
    return alias(e)


def input_axes(jaxpr, index: int, batched: bool = True) -> tuple[int, ...] | None:
    """The dimensions of input ``index`` that its first convolution reads as spatial, else
    those its first pool does, followed through transposes, reshapes, broadcasts and
    element-wise ops (None if no window reads it). A pool's window of 1 along an axis does
    not show that axis, so a pool's dims are widened to ``rank - 2`` of them (``batched``:
    N, spatial..., C; else C, spatial...) where the input has more."""
    var = jaxpr.invars[index]
    origin = {var: tuple(range(len(var.aval.shape)))}  # var -> input dim per tensor dim
    found: dict[str, tuple[int, ...]] = {}
    _search(jaxpr, origin, found)
    if "conv" in found or "pool" not in found:
        return found.get("conv")
    return _widened(found["pool"], len(var.aval.shape), batched)


def _widened(dims: tuple[int, ...], rank: int, batched: bool) -> tuple[int, ...]:
    """A pool's spatial dims, completed to the layout's block of spatial dims."""
    block = tuple(range(1, rank - 1)) if batched else tuple(range(1, rank))
    return block if dims and set(dims) <= set(block) else dims


def _search(jaxpr, origin: dict, found: dict) -> None:
    """Fill ``found['conv']`` (and ``found['pool']``, the first pool's window dims) from
    the equations reading the tracked input; stops at the first convolution."""
    for eqn in jaxpr.eqns:
        if "conv" in found:
            return
        ins = [origin.get(v) if not hasattr(v, "val") else None for v in eqn.invars]
        tracked = next((o for o in ins if o is not None), None)
        if tracked is None:
            continue
        prim, params = eqn.primitive.name, eqn.params
        sub = body_of(eqn)
        if sub is not None:
            inner = getattr(sub, "jaxpr", sub)
            kept = len(ins) if prim != LOOP else params["num_consts"] + params["num_carry"]
            _search(inner, {v: o for v, o in zip(inner.invars[:kept], ins[:kept],
                                                 strict=True) if o is not None}, found)
            for out in eqn.outvars:  # a call keeping the rank (a resize) keeps the dims
                if len(out.aval.shape) == len(tracked):
                    origin[out] = tracked
            continue
        if prim == "conv_general_dilated" and ins[0] is not None:
            found["conv"] = tuple(sorted(ins[0][d] for d in params["dimension_numbers"][0][2:]
                                         if ins[0][d] is not None))
            return
        if prim in WINDOW_PRIMITIVES and "pool" not in found:
            window = [d for d, (w, s) in enumerate(zip(params["window_dimensions"],
                                                       params["window_strides"], strict=True))
                      if w > 1 or s > 1]
            found["pool"] = tuple(sorted(tracked[d] for d in window if tracked[d] is not None))
        for out in eqn.outvars:
            mapped = _follow(prim, params, eqn.invars[0].aval.shape, out.aval.shape, tracked)
            if mapped is not None:
                origin[out] = mapped


def _follow(prim, params, old, new, tracked):
    """The input dims held by each dimension of an op's result (None: not followed)."""
    if prim == "transpose":
        return tuple(tracked[p] for p in params["permutation"])
    if prim == "broadcast_in_dim":
        result = [None] * len(new)
        for d, b in enumerate(params["broadcast_dimensions"]):
            result[b] = tracked[d]
        return tuple(result)
    if prim in ("reshape", "squeeze"):
        kept = [d for d in range(len(old)) if old[d] > 1]
        where = carried(old, new, kept)
        if where is None:
            return None
        result = [None] * len(new)
        for d, w in zip(kept, where, strict=True):
            result[w] = tracked[d]
        return tuple(result)
    if tuple(old) == tuple(new) or (  # element-wise, or a window keeping the layout
            prim in (*WINDOW_PRIMITIVES, "pad", "slice") and len(old) == len(new)):
        return tracked
    return None


RULES: dict[str, Callable[[Eqn], Value]] = {
    "reshape": reshape, "transpose": transpose, "broadcast_in_dim": broadcast_in_dim,
    "squeeze": squeeze, "rev": rev,
}
