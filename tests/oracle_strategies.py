"""Hypothesis strategies: random valid networks with the ops of issue #14, 1-D to 3-D.

``networks()`` draws ``(spec, input_size)``: a chain or a DAG over 1, 2 or 3 axes that
uses upsample (every mode, align_corners both ways), conv_transpose (dilation, padding,
output_padding), pixel_shuffle, pixel_unshuffle, crop, negative explicit padding and
ceil-mode pools next to today's ops. Input sizes are small (simulation stays fast) and
map sizes are capped. Drawing keeps every map non-empty and merges only maps of equal
sizes, by the size arithmetic of the public spec format (test_oracle checks the oracle
agrees); layers the output does not depend on are dropped. Per-axis values are spelled as
an int when equal on every axis (sometimes) or as one value per axis; ``dims`` is
written for 1-D and 3-D networks and sometimes for 2-D ones.
"""

from __future__ import annotations

from hypothesis import strategies as st

INPUT_SIZES = {1: (3, 24), 2: (2, 12), 3: (2, 6)}  # per axis, by dims
MAX_SIZE = {1: 64, 2: 32, 3: 12}  # largest map size per axis, by dims
NEW_OPS = ("upsample", "conv_transpose", "pixel_shuffle", "pixel_unshuffle", "crop",
           "ceil_pool", "negative_padding")
OPS = (*NEW_OPS, "window", "window", "relu")
MODES = ("nearest", "linear", "bilinear", "trilinear", "bicubic")


def spelled(draw, values: list) -> int | list:
    """One value per axis, or one int for every axis when they are all equal."""
    if len(set(map(str, values))) == 1 and isinstance(values[0], int) and draw(st.booleans()):
        return values[0]
    return list(values)


def window_size(n: int, k: int, s: int, d: int, p: int, q: int, ceil: bool) -> int:
    """Output size of a window (PyTorch's ceil-mode rule when ``ceil``)."""
    span = d * (k - 1) + 1
    if n + p + q < span:
        return 0
    if not ceil:
        return (n + p + q - span) // s + 1
    out = -(-(n + p + q - span) // s) + 1
    return out - 1 if (out - 1) * s >= n + p else out


def same(n: int, k: int, s: int, d: int, lower: bool) -> tuple[int, int]:
    """TensorFlow's 'same' padding (p, q)."""
    total = max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return (total - total // 2, total // 2) if lower else (total // 2, total - total // 2)


@st.composite
def window(draw, sizes: tuple, pool_ceil: bool = False, negative: bool = False):
    """A conv / pool layer and its output sizes (None when a map would be empty)."""
    dims = len(sizes)
    op = draw(st.sampled_from(("maxpool", "avgpool") if pool_ceil else
                              ("conv", "conv", "maxpool", "avgpool")))
    k = [draw(st.integers(1, 3)) for _ in sizes]
    s = [draw(st.sampled_from((1, 1, 2, 3))) for _ in sizes]
    d = [draw(st.integers(1, 2)) for _ in sizes]
    mode = draw(st.sampled_from(("pairs", "pairs", "int", "valid", "same", "same_lower")))
    low = -2 if negative else 0
    pads = [(draw(st.integers(low, 2)), draw(st.integers(low, 2))) for _ in sizes]
    if mode == "int":
        pads = [(pads[0][0],) * 2] * dims
    layer = {"op": op, "kernel": spelled(draw, k), "stride": spelled(draw, s),
             "dilation": spelled(draw, d)}
    if mode in ("same", "same_lower", "valid"):
        layer["padding"] = mode
        pads = [same(n, *a, lower=mode == "same_lower") if mode != "valid" else (0, 0)
                for n, *a in zip(sizes, k, s, d, strict=True)]
    else:
        layer["padding"] = pads[0][0] if mode == "int" else [list(p) for p in pads]
    if pool_ceil:
        layer["ceil_mode"] = True
    out = tuple(window_size(n, *a, ceil=pool_ceil)
                for n, *a in zip(sizes, k, s, d, [p for p, _ in pads], [q for _, q in pads],
                                 strict=True))
    return layer, out


@st.composite
def resampling(draw, op: str, sizes: tuple):
    """An upsample / conv_transpose / pixel (un)shuffle / crop layer and its sizes."""
    if op == "upsample":
        f = [draw(st.integers(1, 3)) for _ in sizes]
        mode = draw(st.sampled_from(MODES))
        layer = {"op": op, "factor": spelled(draw, f), "mode": mode}
        if mode != "nearest" and draw(st.booleans()):
            layer["align_corners"] = draw(st.booleans())
        return layer, tuple(n * r for n, r in zip(sizes, f, strict=True))
    if op == "pixel_shuffle":
        r = [draw(st.integers(1, 3)) for _ in sizes]
        return ({"op": op, "factor": spelled(draw, r)},
                tuple(n * f for n, f in zip(sizes, r, strict=True)))
    if op == "pixel_unshuffle":
        r = [draw(st.sampled_from([f for f in (1, 2, 3) if n % f == 0])) for n in sizes]
        return ({"op": op, "factor": spelled(draw, r)},
                tuple(n // f for n, f in zip(sizes, r, strict=True)))
    if op == "crop":
        cuts = [(draw(st.integers(0, (n - 1) // 2)), draw(st.integers(0, (n - 1) // 2)))
                for n in sizes]
        value = [list(c) for c in cuts]
        if all(a == b for a, b in cuts) and draw(st.booleans()):
            value = spelled(draw, [a for a, _ in cuts])  # symmetric: one int per axis
        return {"op": op, "crop": value}, tuple(n - a - b for n, (a, b) in zip(sizes, cuts,
                                                                              strict=True))
    return draw(transposed(sizes))


@st.composite
def transposed(draw, sizes: tuple):
    """A conv_transpose layer (PyTorch's limits: output_padding < max(s, d)) and sizes."""
    k = [draw(st.integers(1, 4)) for _ in sizes]
    s = [draw(st.integers(1, 3)) for _ in sizes]
    d = [draw(st.integers(1, 2)) for _ in sizes]
    p = [draw(st.integers(0, 2)) for _ in sizes]
    o = [draw(st.integers(0, max(si, di) - 1)) for si, di in zip(s, d, strict=True)]
    layer = {"op": "conv_transpose", "kernel": spelled(draw, k), "stride": spelled(draw, s),
             "dilation": spelled(draw, d), "padding": spelled(draw, p),
             "output_padding": spelled(draw, o)}
    out = tuple((n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
                for n, ki, si, di, pi, oi in zip(sizes, k, s, d, p, o, strict=True))
    return layer, out


@st.composite
def unary(draw, op: str, sizes: tuple):
    """A layer of kind ``op`` reading a map of ``sizes``: (layer, sizes) or None."""
    if op == "relu":
        return {"op": "relu"}, sizes
    if op in ("window", "ceil_pool", "negative_padding"):
        found = draw(window(sizes, pool_ceil=op == "ceil_pool",
                            negative=op == "negative_padding"))
    else:
        found = draw(resampling(op, sizes))
    fits = all(1 <= n <= MAX_SIZE[len(sizes)] for n in found[1])
    return found if fits else None


@st.composite
def networks(draw, dims: int | None = None, max_layers: int = 6, merges: bool = True,
             required: str | None = None, with_sizes: bool = False):
    """(spec, input_size): a random valid network; ``required``: one of NEW_OPS that
    must occur (it is drawn again until it fits, else the network has none of it);
    ``with_sizes``: (spec, input_size, the output's sizes by the spec's arithmetic)."""
    dims = draw(st.sampled_from((1, 2, 3))) if dims is None else dims
    low, high = INPUT_SIZES[dims]
    sizes = {"input": tuple(draw(st.integers(low, high)) for _ in range(dims))}
    layers: list[dict] = []
    count = draw(st.integers(1, max_layers))
    forced = draw(st.integers(0, count - 1)) if required else -1
    for index in range(count):
        name, previous = f"L{index}", list(sizes)[-1]
        twins = [n for n in list(sizes)[:-1] if sizes[n] == sizes[previous]]
        if merges and index != forced and twins and draw(st.integers(0, 2)) == 0:
            others = draw(st.lists(st.sampled_from(twins), min_size=1, max_size=2,
                                   unique=True))
            op = draw(st.sampled_from(("add", "concat")))
            layers.append({"name": name, "op": op, "inputs": [previous, *others]})
            sizes[name] = sizes[previous]
            continue
        source = draw(st.sampled_from(list(sizes))) if merges and draw(
            st.integers(0, 3)) == 0 else previous
        op = required if index == forced else draw(st.sampled_from(OPS))
        found = None
        for _ in range(4 if index == forced else 1):
            found = found or draw(unary(op, sizes[source]))
        layer, sizes[name] = found or ({"op": "relu"}, sizes[source])
        layers.append({"name": name, **layer, "inputs": [source]})
    drawn = finish(draw, layers, dims), spelled(draw, list(sizes["input"]))
    return (*drawn, sizes[layers[-1]["name"]]) if with_sizes else drawn


def finish(draw, layers: list[dict], dims: int) -> dict:
    """The spec: only the layers the last one depends on; ``dims`` written or inferred."""
    needed, todo = set(), [layers[-1]["name"]]
    by_name = {layer["name"]: layer for layer in layers}
    while todo:
        name = todo.pop()
        if name in by_name and name not in needed:
            needed.add(name)
            todo.extend(by_name[name]["inputs"])
    kept = [layer for layer in layers if layer["name"] in needed]
    spec = {"name": f"net{dims}d", "layers": kept}
    if dims != 2 or draw(st.booleans()):
        spec["dims"] = dims
    if draw(st.booleans()):
        spec["output"] = kept[-1]["name"]
    return spec
