"""Resampling ATen ops of a traced PyTorch model: interpolations by integer factors (up:
the spec's ``upsample``; down: a window of stride r) and pixel (un)shuffles."""

from __future__ import annotations

from collections.abc import Callable

from .builder import Unsupported, Value
from .shapes import standard_layout, subsampled
from .torch_ops import Call


def upsample(mode: str) -> Callable[[Call], Value]:
    def rule(c: Call) -> Value:
        x = c.value("input") if "input" in c.args else c.value("self")
        standard_layout(x, c.dims)
        out = c.shape[2:]
        if all(n == 1 for n in x.sizes) and x.pooled is not None:  # DeepLab image pooling
            return c.builder.spread(c.base, x, tuple(out))
        scales = c.args.get("scale_factors") or [c.args.get(k) for k in (
            "scales_d", "scales_h", "scales_w", "scales") if c.args.get(k) is not None]
        if not scales:  # to a size (F.interpolate(size=...)): it holds at the traced one
            return sized(c, upsample_to(c, x, out, mode, scales), out)
        return upsample_to(c, x, out, mode, scales)
    return rule


def sized(c: Call, out: Value, sizes) -> Value:
    """A resize to a size given in units: bound to the traced size."""
    c.builder.bound(out.node, f"a resize to {'x'.join(map(str, sizes))} units", guarded=True)
    return out


def upsample_to(c: Call, x: Value, out, mode: str, scales) -> Value:
    """An interpolation of ``x`` onto ``out`` units per axis, by integer factors."""
    if any(m < n for n, m in zip(x.sizes, out, strict=True)):
        return downsample(c, x, tuple(out), mode, scales)
    factors = []
    for n, m in zip(x.sizes, out, strict=True):
        if m % n:
            raise Unsupported(f"a resize from {list(x.sizes)} to {list(out)} is not an "
                              "integer factor")
        factors.append(m // n)
    if scales and [float(v) for v in scales][-len(factors):] != [float(f) for f in factors]:
        raise Unsupported(f"a scale factor {list(scales)} that is not the sizes' ratio "
                          f"{factors}: PyTorch maps coordinates by 1/scale")
    fields = {"factor": factors, "mode": mode}
    if mode != "nearest" and c.args.get("align_corners"):
        fields["align_corners"] = True
    return c.layer("upsample", [x], **fields)


def downsample(c: Call, x: Value, out: tuple, mode: str, scales) -> Value:
    """An interpolation onto 1/r of each axis, r an integer: nearest reads unit r*y
    (nearest-exact: r*y + r//2), bilinear the units around r*y + (r-1)/2 (one or two);
    a window of stride r. Other modes, corner alignment and antialiasing are refused."""
    op = c.args["__op"]
    if any(m > n or n % m for n, m in zip(x.sizes, out, strict=True)) or op.endswith("_aa") \
            or mode not in ("nearest", "linear") or c.args.get("align_corners"):
        raise Unsupported(f"a resize from {list(x.sizes)} to {list(out)} (only a nearest or "
                          "an unaligned bilinear one, without antialiasing, by an integer "
                          "factor)")
    factors = [n // m for n, m in zip(x.sizes, out, strict=True)]
    if scales and [1 / float(v) for v in scales][-len(factors):] != [float(f) for f in factors]:
        raise Unsupported(f"a scale factor {list(scales)} that is not the sizes' ratio "
                          f"1/{factors}: PyTorch maps coordinates by 1/scale")
    if mode == "nearest":
        first = [r // 2 if "exact" in op else 0 for r in factors]
        taps = [1] * len(factors)
    else:  # source coordinate r*y + (r - 1)/2: one unit for odd r, two for even
        first = [(r - 1) // 2 for r in factors]
        taps = [2 - r % 2 for r in factors]
    return c.layer("pool", [x], **subsampled(factors, first, taps))


def shuffle(op: str, key: str) -> Callable[[Call], Value]:
    def rule(c: Call) -> Value:
        x = c.value("self")
        standard_layout(x, c.dims)
        return c.layer(op, [x], factor=int(c.args[key]))
    return rule


RULES: dict[str, Callable[[Call], Value]] = {
    **dict.fromkeys(("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
                     "_upsample_nearest_exact1d", "_upsample_nearest_exact2d",
                     "_upsample_nearest_exact3d"), upsample("nearest")),
    **dict.fromkeys(("upsample_linear1d", "upsample_bilinear2d", "upsample_trilinear3d",
                     "_upsample_bilinear2d_aa"), upsample("linear")),
    "upsample_bicubic2d": upsample("bicubic"),
    "pixel_shuffle": shuffle("pixel_shuffle", "upscale_factor"),
    "pixel_unshuffle": shuffle("pixel_unshuffle", "downscale_factor"),
}
