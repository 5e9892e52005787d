"""Framework-neutral assembly of an imported spec.

An importer walks a traced graph in order and turns every tensor into a :class:`Value`:
the spec node that computes it and which of its tensor dimensions are spatial axes. Ops
become spec layers through :class:`SpecBuilder`, which names them after the model's own
module paths (``layer3.5.conv2``; a second call of one module is ``layer1.0.relu:2``),
keeps only the layers the chosen outputs depend on, and refuses, in one message listing
every offender, the ops no rule maps (unless ``on_unsupported="identity"`` is asked for,
which is then recorded in the spec's ``source``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..errors import SpecError

INPUT = "input"  # the spec's name of the network input
POLICIES = ("error", "identity")  # on_unsupported


@dataclass(frozen=True)
class Value:
    """A tensor as the spec sees it: ``node`` computes it; ``axes`` are the tensor
    dimensions holding its spatial axes (d, h, w order) and ``sizes`` their lengths
    (both empty once the map is gone: after a global pool or a dense layer)."""


    node: str
    axes: tuple[int, ...]
    sizes: tuple[int, ...]
    rank: int  # the tensor's number of dimensions

    @property
    def spatial(self) -> bool:
        return bool(self.axes)


class Unsupported(Exception):
    """Raised by an op rule: the op cannot be mapped (the message says why)."""


@dataclass(frozen=True)
class Offender:
    """An op no rule maps, located for the user."""

    node: str
    path: str
    op: str
    shapes: str
    line: str
    reason: str

    def __str__(self) -> str:
        where = f"module {self.path!r}" if self.path else "top level"
        line = f", {self.line}" if self.line else ""
        return f"{self.node} ({where}, {self.op}, {self.shapes}{line}): {self.reason}"


@dataclass
class SpecBuilder:
    """Layers of one imported network, in graph order."""

    framework: str
    dims: int
    layers: list[dict] = field(default_factory=list)
    offenders: dict[str, Offender] = field(default_factory=dict)  # by layer name
    assumptions: list[str] = field(default_factory=list)
    _calls: Counter = field(default_factory=Counter)

    def unique(self, base: str) -> str:
        """``base`` the first time, then ``base:2``, ``base:3`` (a module called again)."""
        self._calls[base] += 1
        count = self._calls[base]
        return base if count == 1 else f"{base}:{count}"

    def add(self, base: str, op: str, inputs: list[Value], **fields) -> str:
        """A layer reading ``inputs``; returns its name."""
        name = self.unique(base or op)
        self.layers.append({"name": name, "op": op, "inputs": [v.node for v in inputs],
                            **fields})
        return name

    def offend(self, base: str, inputs: list[Value], offender: Offender) -> str:
        """An unmapped op: an identity layer in its place, refused at :meth:`spec` unless
        the policy allows it (and then only if an output depends on it)."""
        name = self.add(base, "identity", inputs[:1],
                        comment=f"unsupported {offender.op}, read as identity")
        self.offenders[name] = Offender(name, offender.path, offender.op, offender.shapes,
                                        offender.line, offender.reason)
        return name

    def assume(self, text: str) -> None:
        if text not in self.assumptions:
            self.assumptions.append(text)

    def spec(self, name: str, outputs: list[Value], on_unsupported: str, source: dict) -> dict:
        """The spec: the layers the outputs depend on (the first output is the spec's
        output; the others stay as layers), with ``source`` recording the import."""
        if not outputs or any(v.node == INPUT for v in outputs):
            raise SpecError(f"{self.framework} import: the model's output is its input; "
                            "there is no layer to evaluate")
        needed = self._needed([v.node for v in outputs])
        offenders = [o for n, o in self.offenders.items() if n in needed]
        if offenders and on_unsupported == "error":
            raise SpecError(
                f"{self.framework} import: {len(offenders)} unsupported op"
                f"{'s' if len(offenders) > 1 else ''}: " + "; ".join(map(str, offenders))
                + ". Cut the model before them with outputs=[...], or pass "
                "on_unsupported='identity' to read them as identity (recorded in the spec)")
        layers = [la for la in self.layers if la["name"] in needed]
        source = {**source, "assumptions": list(self.assumptions)}
        if offenders:
            source["identity"] = [str(o) for o in offenders]
            source["on_unsupported"] = on_unsupported
        return {"name": name, "dims": self.dims, "layers": layers, "output": outputs[0].node,
                "source": source}

    def _needed(self, outputs: list[str]) -> set[str]:
        inputs = {la["name"]: la["inputs"] for la in self.layers}
        needed, todo = set(), list(outputs)
        while todo:
            node = todo.pop()
            if node in needed or node == INPUT:
                continue
            needed.add(node)
            todo.extend(inputs[node])
        return needed


def check_policy(on_unsupported: str) -> None:
    if on_unsupported not in POLICIES:
        raise SpecError(f"on_unsupported must be one of {', '.join(map(repr, POLICIES))}, "
                        f"got {on_unsupported!r}")
