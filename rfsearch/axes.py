"""Per-axis values of a spec: an int for every axis, or one value per axis.

A network is 1-D, 2-D or 3-D. Axes follow PyTorch's layout: 1-D is (W,), the sequence
axis; 2-D is (H, W); 3-D is (D, H, W). A network's dimensionality is its ``dims`` field
or the length of its per-axis lists (:func:`network_dims`); 2 when neither says.
Paddings are an int, one int per axis (symmetric), or one ``[before, after]`` pair per
axis (``[[top, bottom], [left, right]]`` in 2-D).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from . import ops
from .errors import SpecError

MAX_PARAM = 2**30  # largest kernel / stride / dilation / padding / input size accepted
AXES = {1: ("w",), 2: ("h", "w"), 3: ("d", "h", "w")}
# Layer fields that take one value per axis.
PER_AXIS_FIELDS = ("kernel", "stride", "dilation", "padding", "output_padding", "factor",
                   "crop")
_NAMES = {1: "[w]", 2: "[h, w]", 3: "[d, h, w]"}
_PAIRS = {1: "[[before, after]]", 2: "[[top, bottom], [left, right]]",
          3: "[[front, back], [top, bottom], [left, right]]"}


def positive_int(value, field: str, minimum: int = 1) -> int:
    """An integer in [minimum, MAX_PARAM] (booleans and floats rejected)."""
    kind = ("a positive integer" if minimum == 1 else "a non-negative integer" if minimum == 0
            else "an integer")
    if isinstance(value, np.integer | np.ndarray) and np.ndim(value) == 0 \
            and np.asarray(value).dtype.kind in "iu":
        value = int(value)  # a numpy integer, as specs built with numpy hold
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{field} must be {kind}, got {value!r}")
    if value < minimum:
        raise SpecError(f"{field} must be {kind}, got {value}" if minimum >= 0 else
                        f"{field} must be at least {minimum}, got {value}")
    if value > MAX_PARAM:
        raise SpecError(f"{field} must be at most {MAX_PARAM}, got {value}")
    return value


def _is_list(value) -> bool:
    kind = type(value)
    if kind is list or kind is tuple:  # the common cases first: ABC checks are slow
        return True
    if value is None or kind is int or kind is str:
        return False
    return (isinstance(value, Sequence) and not isinstance(value, str)) or (
        isinstance(value, np.ndarray) and value.ndim == 1)


def per_axis(value, field: str, dims: int = 2, minimum: int = 1) -> tuple[int, ...]:
    """An int (every axis) or a list of ``dims`` ints."""
    if type(value) is int and minimum <= value <= MAX_PARAM:  # the common case, fast
        return (value,) * dims
    if _is_list(value):
        if len(value) != dims:
            raise SpecError(f"{field} must be an int or {_NAMES[dims]}, got {list(value)!r}")
        return tuple(positive_int(v, field, minimum) for v in value)
    return (positive_int(value, field, minimum),) * dims


def parse_padding(value, dims: int = 2, minimum: int = -MAX_PARAM, field: str = "padding"
                  ) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(before, after, mode) per axis from any accepted spelling. ``mode`` is 0 for
    explicit padding, else ``ops.PAD_SAME`` / ``ops.PAD_SAME_LOWER`` ('same' is resolved
    by the kernel: it may depend on the input size; ``before`` then holds the code too).
    Explicit padding may be negative (down to ``minimum``): a crop."""
    if isinstance(value, str):
        mode = value.lower()
        if mode == "valid":
            return (0,) * dims, (0,) * dims, 0
        if mode in ops.PAD_MODES:
            code = ops.PAD_MODES[mode]
            return (code,) * dims, (0,) * dims, code
        raise SpecError(f"{field} must be an int, {_NAMES[dims]}, {_PAIRS[dims]}, 'valid', "
                        f"'same' or 'same_lower', got {value!r}")
    if _is_list(value) and len(value) == dims and all(_is_list(v) for v in value):
        pairs = [per_axis(v, field, 2, minimum) for v in value]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs), 0
    both = per_axis(value, field, dims, minimum)
    return both, both, 0


def arity(value) -> int | None:
    """The number of axes a per-axis value names (None for a plain int or a mode)."""
    return len(value) if _is_list(value) else None


def network_dims(raw_layers, declared=None) -> int:
    """The network's dimensionality: ``declared`` (its ``dims`` field) or the length of
    its per-axis lists, which must all agree (one line naming the first disagreement)."""
    if declared is not None and (isinstance(declared, bool) or not isinstance(
            declared, int | np.integer) or declared not in AXES):
        raise SpecError(f"dims must be 1, 2 or 3, got {declared!r}")
    declared = None if declared is None else int(declared)
    found: dict[int, str] = {}
    for i, layer in enumerate(raw_layers):
        if type(layer) is not dict and not isinstance(layer, Mapping):
            continue
        for key in PER_AXIS_FIELDS:
            n = arity(layer.get(key))
            if n is not None and n not in found:
                found[n] = f"layer #{i} {key}"
    if declared is not None:
        found.pop(declared, None)
        if found:
            n, where = next(iter(found.items()))
            raise SpecError(f"dims is {declared} but {where} has {n} axes")
        return declared
    if len(found) > 1:
        (n1, w1), (n2, w2) = list(found.items())[:2]
        raise SpecError(f"mixed arities: {w1} has {n1} axes, {w2} has {n2}")
    if found and next(iter(found)) not in AXES:
        n, where = next(iter(found.items()))
        raise SpecError(f"{where} has {n} axes; a network has 1, 2 or 3")
    return next(iter(found), 2)


def parse_input_sizes(input_size) -> tuple[int, ...] | None:
    """None, an int, 'N', 'HxW', 'DxHxW' or a tuple of 1 to 3 ints -> a tuple of positive
    ints (one int stands for every axis of any network)."""
    if input_size is None:
        return None
    text = input_size
    if isinstance(input_size, str):
        parts = input_size.lower().split("x")
        if len(parts) > 3 or not all(p.isascii() and p.isdigit() for p in parts):
            raise SpecError(f"input size must be N, HxW or DxHxW, got {input_size!r}")
        input_size = [int(p) for p in parts]
    if np.ndim(input_size) == 0 and isinstance(input_size, np.ndarray):
        input_size = input_size.item()  # a 0-d array: its one value
    values = [input_size] if not _is_list(input_size) and not hasattr(
        input_size, "__len__") else list(input_size)
    if not 1 <= len(values) <= 3 or any(
            isinstance(v, bool) or (not isinstance(v, int) and getattr(  # a numpy integer
                getattr(v, "dtype", None), "kind", None) not in ("i", "u"))
            or not 1 <= v <= MAX_PARAM
            for v in values):
        shown = f"a {type(text).__name__} of shape {tuple(text.shape)}" if hasattr(
            text, "shape") and np.ndim(text) > 1 else repr(text)  # (one line, not its values)
        raise SpecError(f"input size must be a positive integer, (H, W) or (D, H, W), each "
                        f"at most {MAX_PARAM}, got {shown}")
    return tuple(int(v) for v in values)


def size_for(sizes: tuple[int, ...] | None, dims: int) -> tuple[int, ...] | None:
    """The input size of a ``dims``-axis network: one value for every axis, or one per
    axis."""
    if sizes is None or len(sizes) == dims:
        return sizes
    if len(sizes) == 1:
        return sizes * dims
    shown = "x".join(map(str, sizes))
    raise SpecError(f"input size {shown} has {len(sizes)} axes; this network has {dims}")
