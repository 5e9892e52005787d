"""A plain-Python reference for rfsearch's receptive-field semantics.

Written straight from the published mathematics (Araujo, Norris, Sim, "Computing
Receptive Fields of Convolutional Neural Networks", Distill 2019, doi:10.23915/distill.00021,
and its library google-research/receptive_field), with no numpy and no jax, so that the
vectorised kernel can be cross-checked against it.

Pipeline: normalise the spec (default names and inputs) -> order the layers
topologically -> propagate one :class:`AxisState` per axis through every node ->
turn the output node's states into a row with rfsearch's columns.

Per axis, for output feature 0 of a node: ``u``, ``v`` (first and last input pixel it
reads), the jump ``J`` (input pixels between neighbouring features), ``rf_min`` (the
smallest span over input-to-node paths) and the feature-map size ``n``. A windowed
layer with kernel k, stride s, dilation d and padding (p before, q after) maps::

    k_eff = d * (k - 1) + 1
    n_out = floor((n_in + p + q - k_eff) / s) + 1          (must be >= 1)
    u_out = u_in - p * J_in
    v_out = v_in + (k_eff - 1 - p) * J_in
    J_out = J_in * s

A merge (add, concat) takes the union u = min, v = max; its inputs must share J (and
their map size, when known). rf = v - u + 1, stride S = J, padding P = -u.

Conventions where the semantics file is silent (they match rfsearch's documented
behaviour):

* An invalid node makes every node that reads it invalid too; the network row is the
  output node's row.
* 'same' padding with stride > 1 and no input size: computed as if n_in % s == 0
  (canonical), but that axis' padding is reported unknown (None).
* ``aligned`` is computed per axis and is unknown (None) on an axis whose padding is
  unknown; the row's ``aligned`` is the three-valued AND of the two axes.
* A whole-map op (global_pool, dense) without an input size reads an unbounded region:
  rf, rf_min and padding are None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

INPUT = "input"
WINDOW_OPS = frozenset({"conv", "maxpool", "avgpool"})
WHOLE_MAP_OPS = frozenset({"global_pool", "dense"})
MERGE_OPS = frozenset({"add", "concat"})
ELEMENTWISE_OPS = frozenset({"identity", "relu", "batchnorm", "squeeze_excite"})

GEOMETRY_COLUMNS = (
    "rf_h", "rf_w", "rf_min_h", "rf_min_w", "stride_h", "stride_w", "stride_den_h",
    "stride_den_w", "period_h", "period_w", "padding_h", "padding_w", "aligned", "out_h",
    "out_w",
)
COLUMNS = ("name", *GEOMETRY_COLUMNS, "error")
LAYER_COLUMNS = ("layer", "layer_name", "op")
AXES = ("h", "w")


class InvalidNetwork(Exception):
    """A node whose geometry is undefined (jump or size mismatch, empty output)."""


@dataclass(frozen=True)
class AxisState:
    """Geometry of one node along one axis (for output feature 0)."""

    size: int | None  # n: feature-map length; None without an input size
    u: int  # first input pixel read (canonical when the padding is unknown)
    v: float  # last input pixel read; math.inf when unbounded
    jump: int  # J: input pixels between neighbouring features
    rf_min: float  # smallest receptive field over input-to-node paths; math.inf if unbounded
    padding_known: bool  # False once a 'same', stride > 1 layer met an unknown size
    aligned: bool  # every merge so far saw equal jumps and equal centres u + v
    # some merge upstream was misaligned while every input's padding was known: the
    # network is certainly misaligned, whatever later layers leave unknown
    misaligned_known: bool = False


Node = tuple[AxisState, AxisState]  # (h, w)


# ---------------------------------------------------------------------------- parsing


def axis_value(value, axis: int):
    """An int (both axes) or an [h, w] pair -> the value for ``axis`` (0 = h, 1 = w)."""
    return value if isinstance(value, int) else value[axis]


def input_sizes(input_size) -> tuple[int | None, int | None]:
    """None, an int or (H, W) -> (H, W), with None for an unknown size."""
    if input_size is None or isinstance(input_size, int):
        return input_size, input_size
    height, width = input_size
    return height, width


def normalized_layers(spec: Mapping) -> list[dict]:
    """The spec's layers with ``name`` and ``inputs`` filled in with their defaults."""
    layers = []
    for index, layer in enumerate(spec["layers"]):
        previous = layers[-1]["name"] if layers else INPUT
        layers.append({
            **layer,
            "name": layer.get("name", f"{layer['op']}{index}"),
            "inputs": list(layer.get("inputs", [previous])),
        })
    return layers


def output_name(spec: Mapping, layers: Sequence[Mapping]) -> str:
    """The output layer: ``spec['output']``, else the last layer."""
    return spec.get("output", layers[-1]["name"])


def topological_order(layers: Sequence[Mapping]) -> list[str]:
    """Layer names such that every layer comes after its inputs (Kahn, spec order first)."""
    waiting = {layer["name"]: set(layer["inputs"]) - {INPUT} for layer in layers}
    order: list[str] = []
    done = {INPUT}
    while waiting:
        ready = [name for name, needs in waiting.items() if needs <= done]
        if not ready:
            raise ValueError(f"cycle or unknown input among layers {sorted(waiting)}")
        for name in ready:
            del waiting[name]
        order.extend(ready)
        done.update(ready)
    return order


# ------------------------------------------------------------------------- recurrences


def effective_kernel(kernel: int, dilation: int) -> int:
    """k_eff = d * (k - 1) + 1."""
    return dilation * (kernel - 1) + 1


def same_padding(k_eff: int, stride: int, size: int | None, lower: bool) -> tuple[int, int, bool]:
    """TF / ONNX 'same' padding -> (p, q, known).

    total = max(k_eff - s, 0) if n % s == 0 else max(k_eff - n % s, 0);
    p = total // 2 (SAME_UPPER) or total - total // 2 (SAME_LOWER); q = total - p.
    Without a size the n % s == 0 case is used, which is exact only when s == 1 or
    k_eff == 1 (no padding at any size).
    """
    remainder = 0 if size is None else size % stride
    total = max(k_eff - (stride if remainder == 0 else remainder), 0)
    before = total - total // 2 if lower else total // 2
    return before, total - before, size is not None or stride == 1 or k_eff == 1


def explicit_padding(padding, axis: int) -> tuple[int, int]:
    """int | [ph, pw] | [[top, bottom], [left, right]] -> (p, q) for ``axis``."""
    if isinstance(padding, int):
        return padding, padding
    per_axis = padding[axis]
    if isinstance(per_axis, int):
        return per_axis, per_axis
    before, after = per_axis
    return before, after


def resolve_padding(padding, axis: int, k_eff: int, stride: int, size: int | None):
    """Any padding spelling -> (p, q, known) for one axis."""
    if padding == "valid":
        return 0, 0, True
    if padding in ("same", "same_lower"):
        return same_padding(k_eff, stride, size, lower=padding == "same_lower")
    before, after = explicit_padding(padding, axis)
    return before, after, True


def output_size(size: int | None, p: int, q: int, k_eff: int, stride: int) -> int | None:
    """n_out = floor((n_in + p + q - k_eff) / s) + 1; an error when it is below 1."""
    if size is None:
        return None
    n_out = (size + p + q - k_eff) // stride + 1
    if n_out < 1:
        raise InvalidNetwork(f"output size {n_out} < 1 (input {size}, k_eff {k_eff}, s {stride})")
    return n_out


def window_step(x: AxisState, k_eff: int, stride: int, p: int, q: int, known: bool) -> AxisState:
    """u' = u - p J;  v' = v + (k_eff - 1 - p) J;  J' = J s;  rf_min' = rf_min + (k_eff - 1) J."""
    return AxisState(
        size=output_size(x.size, p, q, k_eff, stride),
        u=x.u - p * x.jump,
        v=x.v + (k_eff - 1 - p) * x.jump,
        jump=x.jump * stride,
        rf_min=x.rf_min + (k_eff - 1) * x.jump,
        padding_known=x.padding_known and known,
        aligned=x.aligned,
        misaligned_known=x.misaligned_known,
    )


def windowed_layer(x: AxisState, layer: Mapping, axis: int) -> AxisState:
    """A conv / pool layer along one axis."""
    k_eff = effective_kernel(
        axis_value(layer.get("kernel", 1), axis), axis_value(layer.get("dilation", 1), axis)
    )
    stride = axis_value(layer.get("stride", 1), axis)
    p, q, known = resolve_padding(layer.get("padding", 0), axis, k_eff, stride, x.size)
    return window_step(x, k_eff, stride, p, q, known)


def whole_map_layer(x: AxisState) -> AxisState:
    """Global pool / dense: a window as large as the map (k_eff = n, s = 1, p = 0).

    Without a size the region is unbounded (v = rf_min = inf) and the output size unknown.
    """
    if x.size is None:
        return AxisState(None, x.u, math.inf, x.jump, math.inf, x.padding_known, x.aligned,
                         x.misaligned_known)
    return window_step(x, k_eff=x.size, stride=1, p=0, q=0, known=True)


def merge(xs: Sequence[AxisState]) -> AxisState:
    """Union of the inputs' regions: u = min, v = max, rf_min = min.

    All inputs need the same jump and (when known) the same map size. The merge is
    aligned when, in addition, every input has the same centre offset u + v.
    """
    jumps = {x.jump for x in xs}
    if len(jumps) > 1:
        raise InvalidNetwork(f"merge inputs have different jumps {sorted(jumps)}")
    sizes = {x.size for x in xs}
    if len(sizes) > 1:
        raise InvalidNetwork(f"merge inputs have different sizes {sorted(sizes)}")
    centred = len({x.u + x.v for x in xs}) == 1
    return AxisState(
        size=xs[0].size,
        u=min(x.u for x in xs),
        v=max(x.v for x in xs),
        jump=xs[0].jump,
        rf_min=min(x.rf_min for x in xs),
        padding_known=all(x.padding_known for x in xs),
        aligned=all(x.aligned for x in xs) and centred,
        misaligned_known=any(x.misaligned_known for x in xs)
        or (not centred and all(x.padding_known for x in xs)),
    )


def layer_axis(layer: Mapping, inputs: Sequence[AxisState], axis: int) -> AxisState:
    """One layer along one axis, given its inputs' states."""
    op = layer["op"]
    if op in MERGE_OPS:
        return merge(inputs)
    (x,) = inputs
    if op in WINDOW_OPS:
        return windowed_layer(x, layer, axis)
    if op in WHOLE_MAP_OPS:
        return whole_map_layer(x)
    if op in ELEMENTWISE_OPS:
        return x
    raise ValueError(f"unknown op {op!r}")


# ---------------------------------------------------------------------------- network


def input_node(input_size) -> Node:
    """The network input: u = v = 0, J = 1, rf_min = 1, n = the input size."""
    height, width = input_sizes(input_size)
    return tuple(AxisState(n, 0, 0, 1, 1, True, True) for n in (height, width))


def evaluate_nodes(layers: Sequence[Mapping], input_size) -> dict[str, Node | str]:
    """Every node's (h, w) states, or the error message of an invalid node."""
    by_name = {layer["name"]: layer for layer in layers}
    states: dict[str, Node | str] = {INPUT: input_node(input_size)}
    for name in topological_order(layers):
        layer = by_name[name]
        inputs = [states[i] for i in layer["inputs"]]
        failed = [x for x in inputs if isinstance(x, str)]
        if failed:
            states[name] = failed[0]
            continue
        try:
            states[name] = tuple(
                layer_axis(layer, [x[axis] for x in inputs], axis) for axis in (0, 1)
            )
        except InvalidNetwork as err:
            states[name] = f"layer {name!r}: {err}"
    return states


def finite(value: float) -> int | None:
    """An exact integer, or None for an unbounded value."""
    return None if math.isinf(value) else int(value)


def three_valued_and(values: Sequence[bool | None]) -> bool | None:
    """Kleene AND: False if any is False, else None if any is unknown, else True."""
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def node_row(name: str, node: Node | str) -> dict:
    """rfsearch's columns for one node; all geometry None for an invalid node."""
    if isinstance(node, str):
        return {"name": name, **dict.fromkeys(GEOMETRY_COLUMNS), "error": node}
    row: dict = {"name": name}
    for suffix, x in zip(AXES, node, strict=True):
        bounded = not math.isinf(x.v)
        row[f"rf_{suffix}"] = finite(x.v - x.u + 1)
        row[f"rf_min_{suffix}"] = finite(x.rf_min)
        row[f"stride_{suffix}"] = x.jump
        row[f"stride_den_{suffix}"] = 1  # integer ops only: the jump is a whole number
        row[f"period_{suffix}"] = 1  # and every unit reads the window of the formula
        row[f"padding_{suffix}"] = -x.u if x.padding_known and bounded else None
        row[f"out_{suffix}"] = x.size
    row["aligned"] = three_valued_and(
        [False if x.misaligned_known else x.aligned if x.padding_known else None for x in node])
    row["error"] = None
    return {column: row[column] for column in COLUMNS}


def reference_evaluate(spec: Mapping, input_size=None) -> dict:
    """One rfsearch network row (None for null) for a spec dict."""
    layers = normalized_layers(spec)
    states = evaluate_nodes(layers, input_size)
    return node_row(spec["name"], states[output_name(spec, layers)])


def reference_evaluate_layers(spec: Mapping, input_size=None) -> list[dict]:
    """One rfsearch per-layer row per layer of the spec, in spec order."""
    layers = normalized_layers(spec)
    states = evaluate_nodes(layers, input_size)
    return [
        {
            **node_row(spec["name"], states[layer["name"]]),
            "layer": index,
            "layer_name": layer["name"],
            "op": layer["op"],
        }
        for index, layer in enumerate(layers)
    ]
