"""Padding that repeats units (reflect, replicate / edge), checked where a spec reads it.

A spec has zero padding only: a padded unit is a virtual pixel beyond the border. Reflect
padding by ``p`` copies input units ``1 .. p`` into the border (replicate: unit 0), so a
unit that reads padded units depends on the units they copy. The boxes stay exact when the
window that reads the padded map reaches those units anyway: its first window spans
``[-q - p, -q - p + k_eff - 1]`` of the input (``q`` its own padding, ``k_eff = d (k - 1)
+ 1``), which holds the copies of reflect padding when ``k_eff - 1 >= 2 p + q`` and of
replicate padding when ``k_eff - 1 >= p + q`` (the same at the far end; a window further
in reads fewer padded units). Element-wise layers pass the map on, and a layer reading the
whole map reads every copied unit. Anything else after such padding (a merge, resampling,
the output itself) is refused, as is a window that does not reach.
"""

from __future__ import annotations

from .. import ops
from ..errors import SpecError
from ..spec import Layer, Network, parse_network

REFLECTING = ("reflect",)  # copies units 1 .. p; the other repeating modes copy unit 0


def check_repeating(spec: dict, repeats: dict[str, str], who: str) -> None:
    """Refuse, in one line, padding layers of ``repeats`` (layer name -> mode) whose
    copied units a reader's boxes would not hold."""
    if not repeats:
        return
    try:
        net = parse_network(spec)
    except SpecError:  # an invalid spec is reported when it is evaluated
        return
    names = [layer.name for layer in net.layers]
    for name, mode in repeats.items():
        if name in names:
            why = _unheld(net, names.index(name) + 1, mode)
            if why:
                raise SpecError(f"{who}: {mode} padding {name!r} repeats input units {why}; "
                                "only a window reaching past the units it copies keeps the "
                                "boxes exact (e.g. a pad of 3 before a 7-wide window)")


def _unheld(net: Network, node: int, mode: str) -> str | None:
    """Why the readers of padding node ``node`` miss its copies (None: they hold them)."""
    pad = net.layers[node - 1]
    todo, seen = [node], set()
    while todo:
        at = todo.pop()
        if at in seen:
            continue
        seen.add(at)
        if at == net.output:
            return "into the network's output"
        for reader in (la for la in net.layers if at in la.inputs):
            if reader.code == ops.ELEMENTWISE:
                todo.append(net.layers.index(reader) + 1)
            elif reader.op == "pad":  # a window of 1: it reaches nothing, whatever it pads
                return f"into another padding, {reader.name!r}, before a window reads them"
            elif reader.code in (ops.CONV, ops.MAXPOOL, ops.AVGPOOL):
                if not _reaches(pad, reader, mode):
                    return (f"beyond the window of {reader.name!r} (kernel "
                            f"{list(reader.kernel)}, dilation {list(reader.dilation)})")
            elif reader.code not in (ops.GLOBAL_POOL, ops.DENSE):
                return f"into {reader.op} {reader.name!r}"
    return None


def _reaches(pad: Layer, window: Layer, mode: str) -> bool:
    """Whether every window of ``window`` that reads a padded unit of ``pad`` also reads
    the input unit it copies, per axis and side."""
    times = 2 if mode in REFLECTING else 1
    for a, (k, d) in enumerate(zip(window.kernel, window.dilation, strict=True)):
        reach = d * (k - 1)
        own = ((reach + 1) // 2,) * 2 if window.same else (window.pad_before[a],
                                                            window.pad_after[a])
        for p, q in zip((pad.pad_before[a], pad.pad_after[a]), own, strict=True):
            if p > 0 and reach < times * p + max(q, 0):
                return False
    return True
