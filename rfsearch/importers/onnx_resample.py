"""Resampling nodes of an ONNX graph: Resize / Upsample by integer factors (their
coordinate modes mapped to the spec's ``upsample`` where they read the same units) and
DepthToSpace / SpaceToDepth."""

from __future__ import annotations

import math
from collections.abc import Callable

from .builder import Unsupported, Value
from .onnx_ops import Node
from .shapes import subsampled

NEAREST_FLOOR = {("asymmetric", "floor"), ("half_pixel", "round_prefer_floor"),
                 ("half_pixel", "round_prefer_ceil"), ("pytorch_half_pixel",
                                                       "round_prefer_floor"),
                 ("pytorch_half_pixel", "round_prefer_ceil")}


def resize(n: Node) -> Value:
    """Resize / Upsample by integer factors on the spatial axes."""
    x = n.ins[0]
    if _upsample_form(n):
        scales = n.const(1, "scales") if len(n.node.input) > 1 else n.attr("scales")
        sizes = None
    else:
        scales, sizes = n.const(2, "scales"), n.const(3, "sizes")
    axes = n.attr("axes")  # opset 18: scales / sizes of these dimensions only
    dims = [int(a) % x.rank for a in axes] if axes else list(range(x.rank))
    given = sizes if sizes is not None and len(sizes) else scales
    if given is not None and len(given) and len(given) != len(dims):
        raise Unsupported(f"{len(given)} scales or sizes for {len(dims)} dimensions")
    if sizes is not None and len(sizes):
        policy = n.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":  # one scale for every axis, from the sizes: not mapped
            raise Unsupported(f"a resize with keep_aspect_ratio_policy {policy!r}")
        given = dict(zip(dims, (int(s) for s in sizes), strict=True))
        factors = [given.get(a, s) / s for a, s in zip(x.axes, x.sizes, strict=True)]
    elif scales is not None and len(scales):
        given = dict(zip(dims, (float(s) for s in scales), strict=True))
        factors = [given.get(a, 1.0) for a in x.axes]
    else:
        raise Unsupported("its scales and sizes are unknown")
    if all(s == 1 for s in x.sizes) and x.pooled is not None:  # a pooled summary spread
        target = tuple(round(f * s) for f, s in zip(factors, x.sizes, strict=True))
        return n.builder.spread(n.base, x, target)
    out = _resized(n, x, factors)
    if sizes is not None and len(sizes):  # to a size: it holds at the traced one
        n.builder.bound(out.node, f"a resize to {'x'.join(map(str, out.sizes))} units",
                        guarded=True)
    return out


def _resized(n: Node, x: Value, factors) -> Value:
    if any(f < 1 for f in factors) and all(f <= 1 for f in factors):
        return _downsample(n, x, factors)
    if any(f != int(f) or f < 1 for f in factors):
        raise Unsupported(f"a resize by {factors}, not an integer upsampling")
    factors = [int(f) for f in factors]
    mode, fields = _resize_mode(n)
    return n.layer("upsample", [x], [s * f for s, f in zip(x.sizes, factors, strict=True)],
                   factor=factors, mode=mode, **fields)


# source coordinate of output unit 0 when each axis shrinks by an integer factor r (the
# unit y reads around r*y + this); align_corners and tf_crop_and_resize have another slope
ORIGIN = {"half_pixel": lambda r: (r - 1) / 2, "half_pixel_symmetric": lambda r: (r - 1) / 2,
          "pytorch_half_pixel": lambda r: (r - 1) / 2, "asymmetric": lambda r: 0,
          "tf_half_pixel_for_nn": lambda r: r / 2}
ROUND = {"floor": math.floor, "ceil": math.ceil,
         "round_prefer_floor": lambda v: math.ceil(v - 0.5),
         "round_prefer_ceil": lambda v: math.floor(v + 0.5)}


def _downsample(n: Node, x: Value, factors: list[float]) -> Value:
    """A Resize onto 1/r of each axis, r an integer: nearest reads one unit, linear the
    one or two around the source coordinate ``r*y + origin``; a window of stride r."""
    ratios = [1 / f for f in factors]
    where = n.attr("coordinate_transformation_mode", "half_pixel")
    mode = n.attr("mode", "nearest")
    if _upsample_form(n) or any(r != round(r) or s % round(r) for r, s in zip(
            ratios, x.sizes, strict=True)) or where not in ORIGIN or n.attr("antialias", 0) \
            or mode not in ("nearest", "linear"):
        raise Unsupported(f"a resize by {factors} with {mode} mode and {where} coordinates "
                          "(only nearest or linear ones by 1/r, r an integer, without "
                          "antialiasing)")
    rs = [round(r) for r in ratios]
    start = [0 if r == 1 or (where == "pytorch_half_pixel" and s == r) else ORIGIN[where](r)
             for r, s in zip(rs, x.sizes, strict=True)]  # one unit out: pytorch's is 0
    if mode == "nearest":
        first = [ROUND[n.attr("nearest_mode", "round_prefer_floor")](c) for c in start]
        taps = [1] * len(rs)
    else:
        first = [math.floor(c) for c in start]
        taps = [1 if c == int(c) else 2 for c in start]
    return n.layer("pool", [x], [s // r for s, r in zip(x.sizes, rs, strict=True)],
                   **subsampled(rs, first, taps))


def _upsample_form(n: Node) -> bool:
    """Upsample, or Resize of opset 10 (Upsample renamed: X and scales, no coordinate
    modes); from opset 11 a Resize reads scales or sizes after a roi, its third input."""
    return n.op == "Upsample" or len(n.node.input) == 2


def _resize_mode(n: Node) -> tuple[str, dict]:
    mode = n.attr("mode", "nearest")
    if _upsample_form(n):
        if mode != "nearest":
            raise Unsupported(f"{n.op}'s linear mode of opset 10 and earlier reads asymmetric "
                              "coordinates")
        return "nearest", {}
    where = n.attr("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest":
        if (where, n.attr("nearest_mode", "round_prefer_floor")) not in NEAREST_FLOOR:
            raise Unsupported(f"nearest resize with {where} coordinates and nearest_mode "
                              f"{n.attr('nearest_mode', 'round_prefer_floor')} reads shifted "
                              "units")
        return "nearest", {}
    if mode not in ("linear", "cubic"):
        raise Unsupported(f"resize mode {mode!r}")
    if where in ("half_pixel", "pytorch_half_pixel", "half_pixel_symmetric"):
        return mode, {}
    if where == "align_corners":
        return mode, {"align_corners": True}
    raise Unsupported(f"{mode} resize with {where} coordinates")


def shuffle(op: str) -> Callable[[Node], Value]:
    def rule(n: Node) -> Value:
        x = n.x()
        r = int(n.attr("blocksize"))
        sizes = [s * r for s in x.sizes] if op == "pixel_shuffle" else \
            [s // r for s in x.sizes]
        return n.layer(op, [x], sizes, factor=r)
    return rule


RULES: dict[str, Callable[[Node], Value]] = {
    "Resize": resize, "Upsample": resize,
    "DepthToSpace": shuffle("pixel_shuffle"), "SpaceToDepth": shuffle("pixel_unshuffle"),
}
