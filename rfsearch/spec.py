"""Architecture specs: parse and validate JSON-like dicts into :class:`Network` objects.

A spec is data only (a dict as read from JSON / YAML); nothing is ever evaluated.
Validation happens here, on the host, before anything is traced: every problem
becomes a one-line :class:`~rfsearch.errors.SpecError` naming the layer and field.

Node numbering used from here on: node 0 is the network input, layer ``i`` of the
spec is node ``i + 1``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import ops
from .errors import Location, SpecError

MAX_PARAM = 2**30  # largest kernel / stride / dilation / padding / input size accepted

NETWORK_KEYS = ("name", "layers", "output", "description")
COMMON_KEYS = ("name", "op", "inputs")
WINDOW_KEYS = ("kernel", "stride", "dilation", "padding")
# Keys that describe a layer but do not change its geometry; accepted and ignored.
NON_GEOMETRIC_KEYS = ("channels", "groups", "comment")

Pair = tuple[int, int]


@dataclass(frozen=True)
class Layer:
    """One validated layer. Pairs are (h, w); ``pad_before`` may hold a 'same' code."""

    name: str
    op: str
    code: int
    inputs: tuple[int, ...]  # node indices (0 = network input)
    kernel: Pair = (1, 1)
    stride: Pair = (1, 1)
    dilation: Pair = (1, 1)
    pad_before: Pair = (0, 0)
    pad_after: Pair = (0, 0)


@dataclass(frozen=True)
class Network:
    """A validated network: layers in topological order and the output node."""

    name: str
    layers: tuple[Layer, ...]
    output: int  # node index of the output (1-based over layers)

    @property
    def is_chain(self) -> bool:
        """True when every layer reads the one before it and the output is the last."""
        return self.output == len(self.layers) and all(
            layer.inputs == (i,) for i, layer in enumerate(self.layers)
        )


def _positive_int(value, field: str, minimum: int = 1) -> int:
    """An integer >= minimum (booleans and floats rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise SpecError(f"{field} must be {kind}, got {value!r}")
    if value < minimum:
        kind = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise SpecError(f"{field} must be {kind}, got {value}")
    if value > MAX_PARAM:
        raise SpecError(f"{field} must be at most {MAX_PARAM}, got {value}")
    return value


def _pair(value, field: str, minimum: int = 1) -> Pair:
    """An int (both axes) or [h, w]."""
    if type(value) is int and minimum <= value <= MAX_PARAM:  # the common case, fast
        return (value, value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise SpecError(f"{field} must be an int or [h, w], got {list(value)!r}")
        return (_positive_int(value[0], field, minimum), _positive_int(value[1], field, minimum))
    v = _positive_int(value, field, minimum)
    return (v, v)


def parse_padding(value) -> tuple[Pair, Pair]:
    """Padding (before, after) per axis from any accepted spelling.

    int -> symmetric on both axes; [ph, pw] -> symmetric per axis;
    [[top, bottom], [left, right]] -> explicit; 'valid' -> 0; 'same' / 'same_lower'
    -> a code in ``before`` resolved by the kernel (it may depend on the input size).
    """
    if isinstance(value, str):
        mode = value.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode in ops.PAD_MODES:
            code = ops.PAD_MODES[mode]
            return (code, code), (0, 0)
        raise SpecError(
            f"padding must be an int, [h, w], [[top, bottom], [left, right]], 'valid', "
            f"'same' or 'same_lower', got {value!r}"
        )
    if (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(isinstance(v, Sequence) and not isinstance(v, str) for v in value)
    ):
        (top, bottom), (left, right) = (_pair(v, "padding", 0) for v in value)
        return (top, left), (bottom, right)
    ph, pw = _pair(value, "padding", 0)
    return (ph, pw), (ph, pw)


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse_op(raw) -> tuple[str, int]:
    if not isinstance(raw, str):
        raise SpecError(f"op must be a string, got {raw!r}")
    op = raw.lower()
    if op not in ops.OP_CODES:
        raise SpecError(
            f"unknown op {raw!r}{_suggest(op, ops.ALLOWED_OPS)}; "
            f"allowed: {', '.join(ops.ALLOWED_OPS)}"
        )
    return op, ops.OP_CODES[op]


_PLAIN_KEYS = frozenset(COMMON_KEYS + NON_GEOMETRIC_KEYS)
_WINDOW_LAYER_KEYS = _PLAIN_KEYS | frozenset(WINDOW_KEYS)


def _check_keys(layer: Mapping, op: str, code: int) -> None:
    allowed = _WINDOW_LAYER_KEYS if op in ops.WINDOWED else _PLAIN_KEYS
    if allowed.issuperset(layer):
        return
    for key in layer:
        if key in allowed:
            continue
        if key in WINDOW_KEYS:
            raise SpecError(f"field {key!r} does not apply to op {op!r}")
        everything = list(COMMON_KEYS + WINDOW_KEYS + NON_GEOMETRIC_KEYS)
        raise SpecError(f"unknown field {key!r}{_suggest(str(key), everything)}")


def _resolve_inputs(raw, index, names: dict[str, int], all_names: set, own_name: str, op, code):
    if raw is None:
        inputs = (index,)  # the previous node (node `index` is layer index-1, or the input)
    else:
        refs = [raw] if isinstance(raw, str) else raw
        if (type(refs) not in (list, tuple) and not isinstance(refs, Sequence)) or not all(
                isinstance(r, str) for r in refs):
            raise SpecError(f"inputs must be a layer name or a list of names, got {raw!r}")
        resolved = []
        for ref in refs:
            if ref in names:
                resolved.append(names[ref])
            elif ref == own_name:
                raise SpecError(f"input {ref!r} is the layer itself (a cycle)")
            elif ref in all_names:
                raise SpecError(
                    f"input {ref!r} is defined after this layer "
                    "(layers must be in topological order; cycles are not allowed)"
                )
            else:
                raise SpecError(f"unknown input {ref!r}{_suggest(ref, list(names))}")
        inputs = tuple(resolved)
    if code in (ops.ADD, ops.CONCAT):
        if len(inputs) < 2:
            raise SpecError(f"{op} needs at least 2 inputs, got {len(inputs)}")
    elif len(inputs) != 1:
        raise SpecError(f"{op} takes exactly 1 input, got {len(inputs)}")
    return inputs


def _parse_layer(raw, index: int, names: dict, all_names: set, name: str) -> Layer:
    if not isinstance(raw, Mapping):
        raise SpecError(f"a layer must be an object, got {type(raw).__name__}")
    if "op" not in raw:
        raise SpecError("missing field 'op'")
    op, code = _parse_op(raw["op"])
    _check_keys(raw, op, code)
    inputs = _resolve_inputs(raw.get("inputs"), index, names, all_names, name, op, code)
    if op not in ops.WINDOWED:
        return Layer(name=name, op=op, code=code, inputs=inputs)
    if "kernel" not in raw:
        raise SpecError("missing field 'kernel'")
    kernel = _pair(raw["kernel"], "kernel")
    stride = _pair(raw.get("stride", 1), "stride")
    dilation = _pair(raw.get("dilation", 1), "dilation")
    for axis in range(2):
        if dilation[axis] * (kernel[axis] - 1) + 1 > MAX_PARAM:
            raise SpecError(f"dilation*(kernel-1)+1 must be at most {MAX_PARAM}")
    before, after = parse_padding(raw.get("padding", 0))
    return Layer(name, op, code, inputs, kernel, stride, dilation, before, after)


def _auto_name(base: str, taken: set) -> str:
    """A default layer name that no layer of the spec uses: base, base_1, base_2, ..."""
    name, k = base, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    return name


def parse_network(raw, index: int = 0, file: str | None = None) -> Network:
    """Validate one spec dict; raise a located :class:`SpecError` on the first problem."""
    where = Location(file=file, spec_index=index)
    if not isinstance(raw, Mapping):
        raise SpecError(f"a spec must be an object, got {type(raw).__name__}", where)
    name = raw.get("name", f"net{index}")
    if not isinstance(name, str):
        raise SpecError(f"name must be a string, got {name!r}", where)
    where = Location(file=file, spec_index=index, spec_name=name)
    for key in raw:
        if key not in NETWORK_KEYS:
            raise SpecError(f"unknown field {key!r}{_suggest(str(key), NETWORK_KEYS)}", where)
    layers_raw = raw.get("layers")
    if not isinstance(layers_raw, Sequence) or isinstance(layers_raw, str) or not layers_raw:
        raise SpecError("layers must be a non-empty list", where)
    names: dict[str, int] = {"input": 0}
    all_names = {r.get("name") for r in layers_raw
                 if isinstance(r, Mapping) and isinstance(r.get("name"), str)}
    layers = []
    for i, layer_raw in enumerate(layers_raw):
        lname = layer_raw.get("name") if isinstance(layer_raw, Mapping) else None
        try:
            if lname is not None and not isinstance(lname, str):
                raise SpecError(f"name must be a string, got {lname!r}")
            if lname is None:
                op = layer_raw.get("op") if isinstance(layer_raw, Mapping) else None
                lname = _auto_name(f"{op}{i}" if isinstance(op, str) else f"layer{i}",
                                   all_names | set(names))
            if lname in names:
                what = "is reserved for the network input" if lname == "input" else (
                    f"is already used by layer #{names[lname] - 1}")
                raise SpecError(f"duplicate layer name {lname!r}: the name {what}")
            layer = _parse_layer(layer_raw, i, names, all_names, lname)
        except SpecError as err:
            shown = lname if isinstance(lname, str) else None
            raise err.at(replace(where, layer_index=i, layer_name=shown)) from None
        names[lname] = i + 1
        layers.append(layer)
    output = raw.get("output", layers[-1].name)
    if not isinstance(output, str) or output not in names or output == "input":
        raise SpecError(f"output {output!r} is not a layer name", where)
    return Network(name=name, layers=tuple(layers), output=names[output])


def parse_input_size(input_size) -> tuple[int, int] | None:
    """None, an int, (H, W) or 'HxW' -> (H, W) positive ints."""
    if input_size is None:
        return None
    if isinstance(input_size, str):
        parts = input_size.lower().split("x")
        if len(parts) not in (1, 2) or not all(p.isascii() and p.isdigit() for p in parts):
            raise SpecError(f"input size must be N or HxW, got {input_size!r}")
        values = [int(p) for p in parts]
        input_size = values if len(values) == 2 else values[0]
    if isinstance(input_size, int | np.integer):
        pair = (input_size, input_size)
    elif isinstance(input_size, list | tuple | np.ndarray):
        pair = tuple(input_size)
    else:
        raise SpecError(f"input size must be a positive integer or (H, W), got {input_size!r}")
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int | np.integer)
                             or not 1 <= v <= MAX_PARAM for v in pair):
        raise SpecError(f"input size must be a positive integer or (H, W), got {input_size!r}")
    return int(pair[0]), int(pair[1])
