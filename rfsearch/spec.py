"""Architecture specs: parse and validate JSON-like dicts into :class:`Network` objects.

A spec is data only (a dict as read from JSON / YAML); nothing is ever evaluated.
Validation happens here, on the host, before anything is traced: every problem
becomes a one-line :class:`~rfsearch.errors.SpecError` naming the layer and field.

Node numbering used from here on: node 0 is the network input, layer ``i`` of the
spec is node ``i + 1``.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import ops
from .axes import MAX_PARAM, network_dims, parse_input_sizes, parse_padding, per_axis, size_for
from .errors import Location, SpecError

# "source": where an importer took the spec from (framework, tracer, traced input size,
# assumptions); kept in the spec for people. Evaluation reads one thing from it: layers
# whose geometry holds at the traced input size only ("size_bound", with "input_size").
NETWORK_KEYS = ("name", "layers", "output", "description", "dims", "source")
COMMON_KEYS = ("name", "op", "inputs")
WINDOW_KEYS = ("kernel", "stride", "dilation", "padding")
# The geometric fields of each kind of op (beyond COMMON_KEYS).
OP_KEYS = {
    **dict.fromkeys(ops.WINDOWED, WINDOW_KEYS),
    **dict.fromkeys(ops.POOLS, (*WINDOW_KEYS, "ceil_mode")),
    "conv_transpose": (*WINDOW_KEYS, "output_padding"),
    "upsample": ("factor", "mode", "align_corners"),
    "pixel_shuffle": ("factor",),
    "pixel_unshuffle": ("factor",),
    "crop": ("crop",),
    "pad": ("padding",),
}
GEOMETRIC_KEYS = tuple(dict.fromkeys(k for keys in OP_KEYS.values() for k in keys))
# Keys that describe a layer but do not change its geometry; accepted and ignored.
NON_GEOMETRIC_KEYS = ("channels", "groups", "comment")

Axes = tuple[int, ...]  # one value per axis: (w,), (h, w) or (d, h, w)


@dataclass(frozen=True)
class Layer:
    """One validated layer, per axis values (``dims`` of them). ``pad_before`` holds the
    'same' code when ``same`` is set (``ops.PAD_SAME`` / ``ops.PAD_SAME_LOWER``); explicit
    padding may be negative (a crop: ``crop`` layers are stored as kernel 1 with negative
    padding)."""

    name: str
    op: str
    code: int
    inputs: tuple[int, ...]  # node indices (0 = network input)
    kernel: Axes = (1, 1)
    stride: Axes = (1, 1)
    dilation: Axes = (1, 1)
    pad_before: Axes = (0, 0)
    pad_after: Axes = (0, 0)
    same: int = 0  # 0: explicit padding, else the 'same' mode code
    ceil_mode: bool = False  # pools: the output size rounds up (PyTorch's rule)
    factor: Axes = ()  # upsample, pixel_shuffle, pixel_unshuffle
    mode: str = ""  # upsample: "nearest", "linear" or "cubic"
    align_corners: bool = False  # upsample (PyTorch semantics)
    output_padding: Axes = ()  # conv_transpose

    @property
    def periodic(self) -> bool:
        """Whether only the periodic program computes this layer."""
        return (self.code in ops.RESAMPLING.values() or self.ceil_mode
                or (not self.same and min(self.pad_before + self.pad_after) < 0))


@dataclass(frozen=True)
class Network:
    """A validated network: layers in topological order and the output node."""

    name: str
    layers: tuple[Layer, ...]
    output: int  # node index of the output (1-based over layers)
    dims: int = 2  # 1, 2 or 3 axes
    # an imported spec with layers whose geometry holds at the traced input size only:
    # that size (per axis), and those layers (why)
    traced_at: tuple[int, ...] | None = None
    size_bound: tuple[str, ...] = ()

    @property
    def is_chain(self) -> bool:
        """True when every layer reads the one before it and the output is the last."""
        return self.output == len(self.layers) and all(
            layer.inputs == (i,) for i, layer in enumerate(self.layers)
        )

    @property
    def periodic(self) -> bool:
        """Whether it needs the periodic program (:mod:`rfsearch.periodic`): 1-D or 3-D,
        or a layer the integer kernel does not compute."""
        return self.dims != 2 or any(layer.periodic for layer in self.layers)


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


def _check_keys(layer: Mapping, op: str) -> None:
    own = OP_KEYS.get(op, ())
    for key in layer:
        if key in _PLAIN_KEYS or key in own:
            continue
        if key in GEOMETRIC_KEYS:
            raise SpecError(f"field {key!r} does not apply to op {op!r}")
        everything = list(COMMON_KEYS + GEOMETRIC_KEYS + NON_GEOMETRIC_KEYS)
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


def _flag(raw: Mapping, key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{key} must be true or false, got {value!r}")
    return value


def _window(raw: Mapping, dims: int) -> dict:
    """kernel, stride, dilation and padding of a windowed layer (or a transposed conv)."""
    if "kernel" not in raw and raw["op"] != "pad":
        raise SpecError("missing field 'kernel'")
    kernel = per_axis(raw.get("kernel", 1), "kernel", dims)
    dilation = per_axis(raw.get("dilation", 1), "dilation", dims)
    for k, d in zip(kernel, dilation, strict=True):
        if d * (k - 1) + 1 > MAX_PARAM:
            raise SpecError(f"dilation*(kernel-1)+1 must be at most {MAX_PARAM}")
    before, after, same = parse_padding(raw.get("padding", 0), dims)
    return {"kernel": kernel, "stride": per_axis(raw.get("stride", 1), "stride", dims),
            "dilation": dilation, "pad_before": before, "pad_after": after, "same": same}


def _transpose(raw: Mapping, dims: int) -> dict:
    """A transposed convolution: its window, output_padding < stride (or < dilation, as
    PyTorch allows), and every output unit reached by some tap."""
    geometry = _window(raw, dims)
    if geometry["same"]:
        raise SpecError("conv_transpose takes explicit padding, not 'same'")
    pad = per_axis(raw.get("output_padding", 0), "output_padding", dims, 0)
    for k, s, d, p in zip(geometry["kernel"], geometry["stride"], geometry["dilation"], pad,
                          strict=True):
        if p >= max(s, d):
            raise SpecError(f"output_padding must be smaller than the stride or the "
                            f"dilation, got {p} (stride {s}, dilation {d})")
        if k < s or math.gcd(s, d) != 1:
            raise SpecError(f"kernel {k}, stride {s}, dilation {d}: some output units read "
                            "no input (every output needs kernel >= stride and stride "
                            "coprime with dilation)")
    return {**geometry, "output_padding": pad}


def _resampling(raw: Mapping, op: str, dims: int) -> dict:
    """upsample, pixel_shuffle and pixel_unshuffle: a factor per axis (and a mode)."""
    if "factor" not in raw:
        raise SpecError("missing field 'factor'")
    factor = per_axis(raw["factor"], "factor", dims)
    if op == "pixel_unshuffle":  # space_to_depth: a window k = s = factor
        return {"kernel": factor, "stride": factor, "factor": factor}
    if op == "pixel_shuffle":
        return {"factor": factor, "mode": "nearest"}
    mode = raw.get("mode", "nearest")
    if not isinstance(mode, str) or mode.lower() not in ops.UPSAMPLE_MODES:
        raise SpecError(f"mode must be one of {', '.join(ops.UPSAMPLE_MODES)}, got "
                        f"{mode!r}")
    mode = ops.UPSAMPLE_MODES[mode.lower()]
    align = _flag(raw, "align_corners")
    if align and mode == "nearest":
        raise SpecError("align_corners applies to linear and cubic modes, not 'nearest'")
    return {"factor": factor, "mode": mode, "align_corners": align}


def _crop(raw: Mapping, dims: int) -> dict:
    """A crop is a 1-wide window with negative padding."""
    before, after, same = parse_padding(raw.get("crop", 0), dims, 0, "crop")
    if same:
        raise SpecError("crop must be an int, one per axis or [before, after] per axis")
    return {"pad_before": tuple(-b for b in before), "pad_after": tuple(-a for a in after)}


def _parse_layer(raw, index: int, names: dict, all_names: set, name: str, dims: int) -> Layer:
    if not isinstance(raw, Mapping):
        raise SpecError(f"a layer must be an object, got {type(raw).__name__}")
    if "op" not in raw:
        raise SpecError("missing field 'op'")
    op, code = _parse_op(raw["op"])
    _check_keys(raw, op)
    inputs = _resolve_inputs(raw.get("inputs"), index, names, all_names, name, op, code)
    ones = (1,) * dims
    geometry = {"kernel": ones, "stride": ones, "dilation": ones,
                "pad_before": (0,) * dims, "pad_after": (0,) * dims}
    if op in ops.WINDOWED:
        geometry |= _window(raw, dims)
        if op in ops.POOLS:
            geometry["ceil_mode"] = _flag(raw, "ceil_mode")
    elif op == "conv_transpose":
        geometry |= _transpose(raw, dims)
    elif op in ("upsample", "pixel_shuffle", "pixel_unshuffle"):
        geometry |= _resampling(raw, op, dims)
    elif op == "crop":
        geometry |= _crop(raw, dims)
    return Layer(name=name, op=op, code=code, inputs=inputs, **geometry)


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
    try:
        dims = network_dims(layers_raw, raw.get("dims"))
    except SpecError as err:
        raise err.at(where) from None
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
            layer = _parse_layer(layer_raw, i, names, all_names, lname, dims)
        except SpecError as err:
            shown = lname if isinstance(lname, str) else None
            raise err.at(replace(where, layer_index=i, layer_name=shown)) from None
        names[lname] = i + 1
        layers.append(layer)
    output = raw.get("output", layers[-1].name)
    if not isinstance(output, str) or output not in names or output == "input":
        raise SpecError(f"output {output!r} is not a layer name", where)
    try:
        traced_at, bound = _size_bound(raw.get("source"), dims)
    except SpecError as err:
        raise err.at(where) from None
    return Network(name=name, layers=tuple(layers), output=names[output], dims=dims,
                   traced_at=traced_at, size_bound=bound)


def _size_bound(source, dims: int) -> tuple[tuple[int, ...] | None, tuple[str, ...]]:
    """The traced input size of an imported spec whose source lists ``size_bound``
    layers, and those layers; (None, ()) for any other spec."""
    bound = source.get("size_bound") if isinstance(source, Mapping) else None
    if not bound:
        return None, ()
    if not isinstance(bound, list) or not all(isinstance(b, str) for b in bound):
        raise SpecError(f"source.size_bound must be a list of strings, got {bound!r}")
    try:
        size = size_for(parse_input_sizes(source.get("input_size")), dims)
    except SpecError as err:
        raise SpecError(f"source.input_size: {err}") from None
    if size is None:
        raise SpecError("source.size_bound needs source.input_size, the size the layers were "
                        "traced at")
    return size, tuple(bound)


def size_misfit(net: Network, sizes) -> str | None:
    """Why ``net`` is not evaluated at input ``sizes``: it was imported with layers whose
    geometry holds at the traced size only, and ``sizes`` is another; else None."""
    if net.traced_at is None or sizes is None:
        return None
    try:
        got = size_for(sizes, net.dims)
    except SpecError:  # a size that does not fit the network at all: said elsewhere
        return None
    if got == net.traced_at:
        return None
    want, more = "x".join(map(str, net.traced_at)), len(net.size_bound) - 1
    return (f"imported at {want}, and layer {net.size_bound[0]}"
            f"{f' and {more} more hold' if more else ' holds'} at that size only: evaluate "
            f"at {want}, or import the model again at {'x'.join(map(str, got))}")


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
        raise SpecError(f"input size must be a positive integer or (H, W), each at most "
                        f"{MAX_PARAM}, got {input_size!r}")
    return int(pair[0]), int(pair[1])
