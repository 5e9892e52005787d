"""``Graph``: write a spec the way model code reads, one layer per call.

Every call appends a layer and returns its name, so branches are plain variables::

    g = Graph("block")
    a = g.conv("a", 1)
    b = g.conv("b", 3, padding="same", inputs=g.INPUT)
    g.concat("out", [a, b])
    spec = g.spec()

Only fields that differ from the spec defaults are written, so exported specs stay
short enough to read and edit by hand.
"""

from __future__ import annotations

from collections.abc import Sequence

Kernel = int | Sequence[int]


class Graph:
    """A spec under construction (a plain dict at the end, see :meth:`spec`)."""

    INPUT = "input"

    def __init__(self, name: str, description: str | None = None):
        self.name = name
        self.description = description
        self.layers: list[dict] = []
        self.last = self.INPUT

    def layer(self, name: str, op: str, inputs: str | Sequence[str] | None = None,
              **fields) -> str:
        """Append one layer reading ``inputs`` (default: the previous layer)."""
        layer = {"name": name, "op": op}
        if inputs is not None and (not isinstance(inputs, str) or inputs != self.last):
            layer["inputs"] = [inputs] if isinstance(inputs, str) else list(inputs)
        for key, value in fields.items():
            if value is not None and value != _DEFAULTS.get(key):
                layer[key] = list(value) if isinstance(value, tuple) else value
        self.layers.append(layer)
        self.last = name
        return name

    def conv(self, name: str, kernel: Kernel, stride: Kernel = 1, padding=0,
             dilation: Kernel = 1, inputs=None) -> str:
        return self.layer(name, "conv", inputs, kernel=kernel, stride=stride,
                          dilation=dilation, padding=padding)

    def maxpool(self, name: str, kernel: Kernel, stride: Kernel = 1, padding=0,
                inputs=None) -> str:
        return self.layer(name, "maxpool", inputs, kernel=kernel, stride=stride,
                          padding=padding)

    def avgpool(self, name: str, kernel: Kernel, stride: Kernel = 1, padding=0,
                inputs=None) -> str:
        return self.layer(name, "avgpool", inputs, kernel=kernel, stride=stride,
                          padding=padding)

    def act(self, name: str, op: str = "relu", inputs=None) -> str:
        """An element-wise layer (activation, normalisation, identity end point)."""
        return self.layer(name, op, inputs)

    def add(self, name: str, inputs: Sequence[str]) -> str:
        return self.layer(name, "add", list(inputs))

    def concat(self, name: str, inputs: Sequence[str]) -> str:
        return self.layer(name, "concat", list(inputs))

    def path(self, prefix: str, start: str, steps: Sequence[tuple], padding="same") -> str:
        """A branch of windowed layers from ``start``; each step is
        ``(name, op, kernel[, stride[, padding]])`` and is named ``prefix/name``."""
        prev = start
        for name, op, kernel, *rest in steps:
            stride = rest[0] if rest else 1
            pad = rest[1] if len(rest) > 1 else padding
            prev = self.layer(f"{prefix}/{name}", op, prev, kernel=kernel, stride=stride,
                              padding=pad)
        return prev

    def spec(self, output: str | None = None) -> dict:
        """The finished spec dict (``output`` defaults to the last layer)."""
        spec = {"name": self.name}
        if self.description:
            spec["description"] = self.description
        spec["layers"] = [dict(layer) for layer in self.layers]
        if output is not None and output != self.last:
            spec["output"] = output
        return spec


_DEFAULTS = {"stride": 1, "dilation": 1, "padding": 0}


def explicit_same(kernel: int, dilation: int = 1) -> list[int]:
    """TF-Slim ``conv2d_same`` / ``_fixed_padding``: pad k_eff - 1 in total, the odd pixel
    after, independent of the input size: ``[(k_eff-1)//2, k_eff-1 - (k_eff-1)//2]``."""
    total = dilation * (kernel - 1)
    return [[total // 2, total - total // 2]] * 2
