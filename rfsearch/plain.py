"""Plain chain specs read column-wise: the fast path of spec files.

Most specs in a JSON Lines or YAML file of candidates are plain chains: every layer a
windowed, element-wise or whole-map op with scalar integer fields, no ``inputs``, no
``output``. Validating each into :class:`~rfsearch.spec.Layer` objects costs more than
evaluating it, so :func:`split_plain` recognises such specs with one cheap check per
layer and packs them straight into a :class:`~rfsearch.encode.Batch`.

The fast path only ever *accepts*: a spec it is not sure of (any other op or field, a
list value, a value out of range, a layer name that :func:`~rfsearch.spec.parse_network`
would have to rename or refuse) goes to ``parse_network``, which computes it or words
its error. Either way the spec gets the same Batch row, names and message.
"""

from __future__ import annotations

import numpy as np

from . import ops
from .axes import MAX_PARAM
from .encode import PARAM_FIELDS, Batch, pack
from .spec import COMMON_KEYS, NETWORK_KEYS, NON_GEOMETRIC_KEYS, WINDOW_KEYS

SPEC_KEYS = frozenset(NETWORK_KEYS) - {"output"}
_BARE = frozenset(COMMON_KEYS + NON_GEOMETRIC_KEYS) - {"inputs"}
# op (lower case) -> (code, the fields a plain layer of it may hold); "pad" needs no
# kernel and may crop, so it takes the full path.
PLAIN_OPS = {
    **{op: (code, _BARE | set(WINDOW_KEYS)) for op, code in ops.WINDOWED.items()
       if op != "pad"},
    **{op: (code, _BARE) for op, code in {**ops.WHOLE_MAP, **ops.ELEMENTWISE_OPS}.items()},
}
PAD_WORDS = {"valid": (0, 0), **{word: (code, 0) for word, code in ops.PAD_MODES.items()}}
UNIT = (1, 1, 1, 0, 0)  # kernel, stride, dilation, pad_before, pad_after of a 1x1 node


def _size(value) -> bool:
    """A kernel, stride or dilation a plain layer may hold."""
    return type(value) is int and 1 <= value <= MAX_PARAM


def _padding(value) -> tuple[int, int] | None:
    """(before, after) of a plain padding (a 'same' mode's code before), else None."""
    if type(value) is int:
        return (value, value) if 0 <= value <= MAX_PARAM else None
    return PAD_WORDS.get(value.lower()) if type(value) is str else None


def plain_layer(layer) -> tuple[int, int, int, int, int, int] | None:
    """(code, kernel, stride, dilation, pad_before, pad_after) of a plain layer, else
    None."""
    if type(layer) is not dict:
        return None
    op = layer.get("op")
    found = PLAIN_OPS.get(op.lower()) if type(op) is str else None
    if found is None or not layer.keys() <= found[1]:
        return None
    name = layer.get("name")
    if name is not None and type(name) is not str:
        return None
    code, keys = found
    if "kernel" not in layer:  # an element-wise or whole-map op (a window needs one)
        return None if "kernel" in keys else (code, *UNIT)
    k, s, d = layer["kernel"], layer.get("stride", 1), layer.get("dilation", 1)
    pad = _padding(layer.get("padding", 0))
    if pad is None or not (_size(k) and _size(s) and _size(d)) or d * (k - 1) >= MAX_PARAM:
        return None
    return code, k, s, d, *pad


def _spec_layers(spec) -> list | None:
    """The layer list of a spec whose own fields are plain, else None."""
    if type(spec) is not dict or not spec.keys() <= SPEC_KEYS:
        return None
    layers, dims, name = spec.get("layers"), spec.get("dims", 2), spec.get("name", "")
    if type(layers) is not list or not layers or type(name) is not str:
        return None
    return layers if type(dims) is int and dims == 2 else None


def _layer_names(spec_layers: list, names: list) -> tuple[str, ...] | None:
    """A plain spec's layer names: its own, else ``{op}{i}``; None when parse_network
    would rename or refuse one (a repeat, or 'input')."""
    got = tuple(own if own is not None else f"{lay['op']}{i}"
                for i, (lay, own) in enumerate(zip(spec_layers, names, strict=True)))
    return got if "input" not in got and len(set(got)) == len(got) else None


def split_plain(objects: list, positions) -> tuple[Batch | None, list[int], list[int]]:
    """(Batch of the plain specs or None, their rows in ``objects``, the other rows).
    ``positions[i]``: spec ``i``'s index in its source (default network names)."""
    layer_lists = [_spec_layers(spec) for spec in objects]
    picked = [i for i, lays in enumerate(layer_lists) if lays is not None]
    flat = [lay for i in picked for lay in layer_lists[i]]
    records = [plain_layer(lay) for lay in flat]
    own = [lay.get("name") if type(lay) is dict else None for lay in flat]
    rows, names, kept, start = [], [], [], 0
    for i in picked:
        end = start + len(layer_lists[i])
        if None not in records[start:end]:
            layer_names = _layer_names(layer_lists[i], own[start:end])
            if layer_names is not None:
                rows.append(i)
                names.append(layer_names)
                kept += records[start:end]
        start = end
    taken = set(rows)
    rest = [i for i in range(len(objects)) if i not in taken]
    if not rows:
        return None, rows, rest
    nodes = np.fromiter((len(layer_lists[i]) + 1 for i in rows), np.int32, len(rows))
    table = np.array(kept, dtype=np.int64).reshape(-1, 6)
    flat_fields = {name: np.repeat(table[:, 1 + j, None], 2, axis=1)
                   for j, name in enumerate(PARAM_FIELDS)}
    batch = pack(
        nodes, table[:, 0].astype(np.int8), flat_fields, None, output=nodes - 1,
        names=np.array([objects[i].get("name", f"net{positions[i]}") for i in rows],
                       dtype=object),
        layer_names=tuple(names),
        layer_ops=tuple(tuple(lay["op"].lower() for lay in layer_lists[i]) for i in rows),
        is_chain=True,
    )
    return batch, rows, rest
