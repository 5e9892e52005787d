"""The spec side of the oracle (:mod:`oracle`): op kinds, per-axis values, graph walks, and
the sizing of the virtual margins.

Per-axis values are an int (every axis) or a list of one value per axis, axes in
PyTorch's order: (W), (H, W), (D, H, W). Paddings and crops may also give a
``[before, after]`` pair per axis. A network's dims come from ``dims``, else from the
length of its per-axis lists, else 2.
"""

from __future__ import annotations

from reference import INPUT

WINDOW_OPS = frozenset({"conv", "maxpool", "avgpool", "pool"})
WHOLE_MAP_OPS = frozenset({"global_pool", "dense"})
MERGE_OPS = frozenset({"add", "concat"})
ELEMENTWISE_OPS = frozenset({"identity", "relu", "batchnorm", "squeeze_excite", "gelu",
                             "silu", "sigmoid", "tanh", "dropout", "layernorm"})
MODES = {"nearest": "nearest", "linear": "linear", "bilinear": "linear",
         "trilinear": "linear", "bicubic": "cubic", "cubic": "cubic"}
PER_AXIS_KEYS = ("kernel", "stride", "dilation", "padding", "output_padding", "factor",
                 "crop")
RESAMPLING_FACTOR = {"upsample": "factor", "pixel_shuffle": "factor",
                     "conv_transpose": "stride"}


class Invalid(Exception):
    """The network is invalid: an empty map, a merge of different sizes, an indivisible
    pixel_unshuffle."""


class MarginTooSmall(Exception):
    """Some real unit, or a required virtual one, could not be computed exactly."""


# ------------------------------------------------------------------------------ spec


def network_dims(spec: dict) -> int:
    """``spec['dims']``, else the arity of its per-axis lists (all equal), else 2."""
    if "dims" in spec:
        return spec["dims"]
    found = {len(layer[key]) for layer in spec["layers"] for key in PER_AXIS_KEYS
             if isinstance(layer.get(key), list | tuple)}
    if len(found) > 1:
        raise ValueError(f"per-axis lists of different lengths {sorted(found)}")
    return found.pop() if found else 2


def axis_value(value, axis: int, dims: int):
    """An int (every axis) or a list of one value per axis -> this axis' value."""
    if isinstance(value, list | tuple):
        if len(value) != dims:
            raise ValueError(f"{value!r} is not one value per axis of {dims}")
        return value[axis]
    return value


def pair(value, axis: int, dims: int) -> tuple[int, int]:
    """Padding / crop: int, per-axis int or per-axis [before, after] -> (before, after)."""
    v = axis_value(value, axis, dims)
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def same_padding(mode: str, span: int, stride: int, n: int) -> tuple[int, int]:
    """TensorFlow's 'same' (extra pixel after; 'same_lower' before): ceil(n / s) outputs."""
    total = max((-(-n // stride) - 1) * stride + span - n, 0)
    small, large = total // 2, total - total // 2
    return (large, small) if mode == "same_lower" else (small, large)


def window_params(layer: dict, axis: int, dims: int, n: int) -> tuple:
    """(kind, k, s, d, before, after, ceil) of a windowed or whole-map layer."""
    op = layer["op"]
    if op in WHOLE_MAP_OPS:
        return op, n, 1, 1, 0, 0, False
    k = axis_value(layer["kernel"], axis, dims)
    s = axis_value(layer.get("stride", 1), axis, dims)
    d = axis_value(layer.get("dilation", 1), axis, dims)
    padding = layer.get("padding", 0)
    if padding == "valid":
        padding = 0
    if isinstance(padding, str):
        before, after = same_padding(padding, d * (k - 1) + 1, s, n)
    else:
        before, after = pair(padding, axis, dims)
    return op, k, s, d, before, after, bool(layer.get("ceil_mode", False))


# ----------------------------------------------------------------------------- graph


def ancestors(layers: list[dict], out: str) -> set[str]:
    """The layers the output depends on (itself included)."""
    by_name = {layer["name"]: layer for layer in layers}
    seen, todo = set(), [out]
    while todo:
        name = todo.pop()
        if name not in seen and name != INPUT:
            seen.add(name)
            todo.extend(by_name[name]["inputs"])
    return seen


def all_paths(layers: list[dict], name: str, limit: int) -> list[list[str]] | None:
    """Every input-to-``name`` path (layer names), or None when there are more than limit."""
    by_name = {layer["name"]: layer for layer in layers}
    found: dict[str, list[list[str]]] = {INPUT: [[]]}

    def walk(node: str) -> list[list[str]]:
        if node not in found:
            found[node] = [[*p, node] for i in by_name[node]["inputs"] for p in walk(i)]
            if len(found[node]) > limit:
                raise OverflowError
        return found[node]

    try:
        return walk(name)
    except OverflowError:
        return None


def path_spec(layers: list[dict], path: list[str], dims: int) -> dict:
    """One path as a chain of its own (merges become identities)."""
    by_name = {layer["name"]: layer for layer in layers}
    chain = []
    for name in path:
        layer = by_name[name]
        if layer["op"] in MERGE_OPS:
            layer = {"name": name, "op": "identity"}
        chain.append({**layer, "inputs": [chain[-1]["name"] if chain else INPUT]})
    return {"name": "path", "dims": dims, "layers": chain}


# --------------------------------------------------------------------------- margins


def reach(layer: dict, axis: int, dims: int, need: tuple[int, int]) -> tuple[int, int]:
    """Virtual units (before, after) a layer's input needs so that its output can keep
    ``need``: a generous bound that only sizes the grids (simulate checks it)."""
    op, (b, a) = layer["op"], need

    def value(key, default=1):
        return axis_value(layer.get(key, default), axis, dims)

    k, s, d = value("kernel"), value("stride"), value("dilation")
    if op in WINDOW_OPS:
        padding = layer.get("padding", 0)
        p, q = (d * (k - 1),) * 2 if isinstance(padding, str) else pair(padding, axis, dims)
        return s * b + max(p, 0) + s, s * a + max(q, 0) + 2 * s
    if op == "upsample":
        return b // value("factor") + 3, a // value("factor") + 3
    if op == "conv_transpose":
        p, q = pair(layer.get("padding", 0), axis, dims)
        extra = value("output_padding", 0)
        return (b - p + d * (k - 1)) // s + 2, (a - q + d * (k - 1) + extra) // s + 2
    if op == "pixel_shuffle":
        return b // value("factor") + 1, a // value("factor") + 1
    if op == "pixel_unshuffle":
        return value("factor") * (b + 1), value("factor") * (a + 1)
    return b, a  # crop, element-wise, merge, whole-map (a window as large as the map)


def min_margin(layers: list[dict], axis: int, dims: int) -> int:
    """Virtual units kept a side where jumps are measured: 2 T + 2, T = the product of
    the axis' resampling factors (which the period divides, except after align_corners
    upsampling), capped at 64."""
    product = 1
    for layer in layers:
        key = RESAMPLING_FACTOR.get(layer["op"])
        product *= axis_value(layer.get(key, 1), axis, dims) if key else 1
        if layer.get("align_corners"):  # period (n f - 1) / gcd(n - 1, n f - 1)
            product *= 64
    return 2 * min(product, 64) + 2


def plan(layers: list[dict], order: list[str], out: str, dims: int) -> tuple[dict, list]:
    """(virtual units each node must keep, per axis; the input's margins, per axis)."""
    by_name = {layer["name"]: layer for layer in layers}
    keep = {name: [(0, 0)] * dims for name in [INPUT, *order]}
    marked = {out} | {i for layer in layers if layer["op"] in MERGE_OPS for i in layer["inputs"]}
    for axis in range(dims):
        m = min_margin(layers, axis, dims)
        for name in marked:
            keep[name][axis] = (m, m)
    need = {name: list(keep[name]) for name in keep}
    for name in reversed(order):
        layer = by_name[name]
        for axis in range(dims):
            b, a = reach(layer, axis, dims, need[name][axis])
            for source in layer["inputs"]:
                old = need[source][axis]
                need[source][axis] = (max(old[0], b, 0), max(old[1], a, 0))
    return keep, need[INPUT]
