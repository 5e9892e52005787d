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
from dataclasses import dataclass, field, replace

from ..errors import SpecError
from .repeats import check_repeating

INPUT = "input"  # the spec's name of the network input
POLICIES = ("error", "identity")  # on_unsupported
GATES = ("local", "global")  # how a one-unit operand scaling a map (a channel gate) reads
# why a concatenation along a spatial axis is refused, whichever framework wrote it
SPATIAL_CONCAT = ("a concatenation along a spatial axis (as tiles, a roll or circular padding "
                  "are written): its parts' units come from different places, so no box "
                  "describes them")


@dataclass(frozen=True)
class Value:
    """A tensor as the spec sees it: ``node`` computes it; ``axes`` are the tensor
    dimensions holding its spatial axes (d, h, w order) and ``sizes`` their lengths
    (both empty once the map is gone: after a global pool or a dense layer)."""

    node: str
    axes: tuple[int, ...]
    sizes: tuple[int, ...]
    rank: int  # the tensor's number of dimensions
    pooled: Value | None = None  # the map a global pool summarised into this value
    # the sizes an ``expand`` broadcast this one-unit value to, for an element-wise op to
    # read it as a gate (see merge_operands)
    broadcast: tuple[int, ...] | None = None

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
    gates: str = "local"
    layers: list[dict] = field(default_factory=list)
    offenders: dict[str, Offender] = field(default_factory=dict)  # by layer name
    assumptions: list[str] = field(default_factory=list)
    repeats: dict[str, str] = field(default_factory=dict)  # padding layers that copy units
    resized: dict[str, str] = field(default_factory=dict)  # offenders that resize the map
    # global pools that are a softmax's statistics: whatever ``gates``, the map they are
    # merged with reads the whole map (see :meth:`gate`)
    softmax_summaries: set[str] = field(default_factory=set)
    # layers whose geometry was read off the traced map and holds at that input size only
    # (a whole-map window, an adaptive pool, a resize to a size): why, by layer name
    size_bound: dict[str, str] = field(default_factory=dict)
    guardable: set[str] = field(default_factory=set)  # of those, resizes a merge can check
    _calls: Counter = field(default_factory=Counter)
    _taken: set = field(default_factory=set)

    def unique(self, base: str) -> str:
        """``base`` the first time, then ``base:2``, ``base:3`` (a module called again);
        never the network input's name nor one already given."""
        self._calls[base] += 1
        name = base if self._calls[base] == 1 else f"{base}:{self._calls[base]}"
        while name in self._taken or name == INPUT:
            self._calls[base] += 1
            name = f"{base}:{self._calls[base]}"
        self._taken.add(name)
        return name

    def add(self, base: str, op: str, inputs: list[Value], **fields) -> str:
        """A layer reading ``inputs``; returns its name."""
        name = self.unique(base or op)
        self.layers.append({"name": name, "op": op, "inputs": [v.node for v in inputs],
                            **fields})
        return name

    def offend(self, base: str, inputs: list[Value], offender: Offender, out=None) -> str:
        """An unmapped op: an identity layer in its place, refused at :meth:`spec` unless
        the policy allows it (and then only if an output depends on it). ``out``, the op's
        output shape where the framework gives it, tells whether it resizes the map."""
        name = self.add(base, "identity", inputs[:1],
                        comment=f"unsupported {offender.op}, read as identity")
        self.offenders[name] = Offender(name, offender.path, offender.op, offender.shapes,
                                        offender.line, offender.reason)
        first = inputs[0] if inputs else None
        if first is None or not first.spatial or out is None:
            return name
        if len(out) != first.rank:
            self.resized[name] = f"{first.rank} dimensions to {len(out)}"
        elif None not in (theirs := tuple(out[a] for a in first.axes)) and \
                theirs != first.sizes:
            self.resized[name] = f"{_size(first.sizes)} to {_size(theirs)}"
        return name

    def recorded(self, value: Value, sizes: tuple[int, ...]) -> Value:
        """An unmapped op's stand-in at the map size the framework recorded for its output
        (what follows then sees the right map); a resize is noted (see :meth:`offend`)."""
        if sizes != value.sizes:
            self.resized[value.node] = f"{_size(value.sizes)} to {_size(sizes)}"
        return Value(value.node, value.axes, sizes, value.rank)

    def broadcast(self, base: str, source: Value, why: str, along=None, sizes=None) -> str:
        """A layer each unit of which reads the whole of ``source``'s map (or the whole of
        the tensor dimensions ``along``), of ``source``'s size or of ``sizes`` (a pooled
        summary spread back over the map, a softmax across an axis, the keys of attention):
        per axis from n units to m a window of n + m - 1 with m - 1 padding, n being the
        map's size at the traced input."""
        sizes = source.sizes if sizes is None else sizes
        whole = [along is None or a in along for a in source.axes]
        self.assume(f"{why}: every unit reads the whole map along those axes, written as a "
                    "window as wide as the map at the traced size")
        name = self.add(f"{base}.whole_map", "conv", [source],
                        kernel=[n + m - 1 if w else 1 for n, m, w in zip(
                            source.sizes, sizes, whole, strict=True)],
                        padding=[m - 1 if w else 0 for m, w in zip(sizes, whole, strict=True)],
                        comment=why)
        self.bound(name, f"{why}: the whole map read as a window as wide as the traced one")
        return name

    def unflattened(self, base: str, x: Value, shape) -> Value | None:
        """Features that summarise a map (``x.pooled``: tokens, a bottleneck) reshaped into
        a tensor of the map's rank that holds its sizes where it held them: the map read
        whole there (attention over the tokens, a dense layer, mixes them all); else None
        (a channel of the same length is not the map: a 1-D gate viewed as (N, C, 1))."""
        source, shape = x.pooled, [int(s) for s in shape]
        if x.spatial or source is None or not any(s > 1 for s in source.sizes) or \
                len(shape) != source.rank or \
                tuple(shape[a] for a in source.axes) != source.sizes:
            return None  # (only where the map was, in a tensor of its rank)
        node = self.broadcast(base, source, "features put back on the map (tokens after "
                                            "attention, a dense bottleneck)")
        return Value(node, source.axes, source.sizes, len(shape))

    def bound(self, node: str, why: str, guarded: bool = False) -> None:
        """Layer ``node``'s geometry holds at the traced input size only (see :meth:`spec`);
        ``guarded``: unless a merge with another map of its size checks it (:meth:`merged`)."""
        self.size_bound.setdefault(node, why)
        if guarded:
            self.guardable.add(node)

    def merged(self, maps: list[Value]) -> None:
        """``maps`` merged unit by unit: a resize to a size among them holds at any size,
        as the merge itself is checked there (``skip + interpolate(x, size=skip.shape)``:
        where the factor would change, the sizes differ and the row says so)."""
        if len(maps) >= 2 and len({v.sizes for v in maps}) == 1:
            for v in maps:
                if v.node in self.guardable:
                    self.size_bound.pop(v.node, None)

    def across(self, base: str, x: Value, dims) -> Value | None:
        """A softmax (or another normalisation) over the tensor dimensions ``dims``: where
        they hold spatial axes, every unit reads the whole map along them; else None (an
        element-wise op)."""
        along = {d % x.rank for d in dims} & set(x.axes)
        if not along:
            return None
        node = self.broadcast(base, x, "a softmax across the map", along)
        return Value(node, x.axes, x.sizes, x.rank)

    def spread(self, base: str, value: Value, sizes: tuple[int, ...]) -> Value:
        """``value`` as an operand over a map of ``sizes``: itself, or, when it is a
        global pool's one-unit summary of such a map, that map read whole."""
        if value.sizes == sizes:
            return value
        source = value.pooled
        if all(s == 1 for s in value.sizes) and source is not None and source.sizes == sizes:
            node = self.broadcast(base, source, "a global summary spread over the map")
            return Value(node, source.axes, sizes, source.rank)
        raise Unsupported(f"an operand of {list(value.sizes)} units spread over a map of "
                          f"{list(sizes)}")

    def gate(self, base: str, x: Value, gate: Value) -> Value | None:
        """``x`` scaled by a one-unit ``gate``: with gates='global' (or a softmax's
        statistics) and a gate pooled from a map of x's size, a merge of x with that map
        read whole; else None (the caller keeps an element-wise layer)."""
        softmax = gate.node in self.softmax_summaries
        if (self.gates == "global" or softmax) and gate.pooled is not None \
                and gate.pooled.sizes == x.sizes:
            spread = self.broadcast(base, gate.pooled, "a softmax across the map" if softmax
                                    else "a channel gate (gates='global')")
            node = self.add(base, "add", [x, Value(spread, x.axes, x.sizes, x.rank)],
                            comment="gated by a summary of the whole map")
            return Value(node, x.axes, x.sizes, x.rank)
        if gate.pooled is not None:
            self.assume("channel gates (a 1 x 1 operand, e.g. squeeze-and-excitation) read "
                        f"as element-wise scaling of the map (gates='{self.gates}')")
        return None

    def padded(self, node: str, mode: str, repeating: tuple[str, ...]) -> None:
        """Padding layer ``node`` has ``mode``: one of ``repeating`` (reflect, replicate)
        is checked against the layers reading it when the spec is made."""
        if mode in repeating:
            self.repeats[node] = mode

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
        if list(outputs[0].axes) != sorted(outputs[0].axes):
            self.assume(f"the output holds the map's axes in other tensor dimensions "
                        f"{list(outputs[0].axes)} (a transpose): each column describes the "
                        "input's own axis")
        offenders = [o for n, o in self.offenders.items() if n in needed]
        if offenders and on_unsupported == "error":
            raise SpecError(
                f"{self.framework} import: {len(offenders)} unsupported op"
                f"{'s' if len(offenders) > 1 else ''}: " + "; ".join(map(str, offenders))
                + ". Cut the model before them with outputs=[...], or pass "
                "on_unsupported='identity' to read them as identity (recorded in the spec)")
        resizing = [f"{o.node} ({o.op}) changes the map from {self.resized[o.node]}"
                    for o in offenders if o.node in self.resized]
        if resizing:
            raise SpecError(f"{self.framework} import: an unsupported op that resizes the map "
                            f"cannot be read as identity: {'; '.join(resizing)}. Cut the "
                            "model before it with outputs=[...]")
        layers = [la for la in self.layers if la["name"] in needed]
        source = {**source, "gates": self.gates, "assumptions": list(self.assumptions)}
        bound = [f"{node} ({why})" for node, why in self.size_bound.items() if node in needed]
        if bound:  # evaluated at another input size, the spec is refused (spec.size_misfit)
            source["size_bound"] = bound
        if offenders:
            source["identity"] = [str(o) for o in offenders]
            source["on_unsupported"] = on_unsupported
        spec = {"name": name, "dims": self.dims, "layers": layers, "output": outputs[0].node,
                "source": source}
        check_repeating(spec, self.repeats, f"{self.framework} import")
        return spec

    def ancestors(self, nodes: list[str]) -> set[str]:
        """``nodes`` and every layer they read, directly or not."""
        return self._needed(nodes) if self.offenders else set()

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


def _size(sizes) -> str:
    return "x".join(map(str, sizes))


def derived(node: str, first: Value, axes, sizes, rank: int) -> Value:
    """The value a layer on ``first`` computes: its map at ``axes`` of ``sizes``, still
    ``first``'s pooled summary while it is one unit."""
    sizes = tuple(int(s) for s in sizes)
    summary = all(s == 1 for s in sizes)
    return Value(node, tuple(axes), sizes, rank, first.pooled if summary else None)


def chosen(produced: dict, outputs, who: str, what: str) -> list[Value]:
    """The values named by ``outputs`` (a name or a list), or one error listing the
    names the model has (``what``: module paths, nodes, layers)."""
    names = [outputs] if isinstance(outputs, str) else list(outputs)
    if not names:
        raise SpecError(f"{who}: outputs is empty; name at least one {what}, or leave it out "
                        "for the model's own outputs")
    missing = [n for n in names if not isinstance(produced.get(n), Value)]
    if missing:
        known = ", ".join(sorted(p for p, v in produced.items() if p and
                                 isinstance(v, Value))[:12])
        raise SpecError(f"{who}: outputs {missing} name no {what} computed from the input "
                        f"(known: {known}, ...)")
    return [produced[n] for n in names]


def flattened(builder: SpecBuilder, x: Value, rank: int, dense) -> Value:
    """``x`` merged into features (a flatten, or a reshape that does not keep the map): a
    map of one unit simply becomes features; a larger one is read as a dense layer,
    recorded (``dense(x)`` makes the importer's layer)."""
    if not x.spatial or all(s == 1 for s in x.sizes):
        return Value(x.node, (), (), rank, x.pooled)
    builder.assume(f"flattening a {'x'.join(map(str, x.sizes))} map into features read "
                   "as a dense layer (every feature after it reads the whole map)")
    out = dense(x)
    return out if out.pooled is not None else replace(out, pooled=x)  # (see unflattened)


def zero_padding(builder: SpecBuilder, x: Value, pairs: dict, mode: str,
                 repeating: tuple[str, ...]) -> list[list[int]]:
    """The spec's per-axis padding of a pad given as ``{tensor dim: (before, after)}``;
    padding of other dimensions is ignored and padding that repeats units (``repeating``
    modes: reflect, replicate) is read as zero padding, both recorded."""
    if any(p != (0, 0) for d, p in pairs.items() if d not in x.axes):
        builder.assume("padding of non-spatial dimensions ignored")
    if mode in repeating:
        builder.assume(f"{mode} padding read as zero padding (the same boxes: the window "
                       "after it reaches the units it repeats; checked)")
    return [list(pairs.get(a, (0, 0))) for a in x.axes]


def input_sizes(input_size, count: int, who: str) -> list[int]:
    """``input_size`` (N, HxW, ...) as one size per spatial axis of a ``count``-axis input."""
    from ..axes import parse_input_sizes

    sizes = list(parse_input_sizes(input_size))
    sizes = sizes * count if len(sizes) == 1 else sizes
    if len(sizes) != count:
        raise SpecError(f"{who}: input_size {input_size!r} has {len(sizes)} axes, the "
                        f"model's input {count}")
    return sizes


def check_policy(on_unsupported: str, gates: str = "local") -> None:
    if on_unsupported not in POLICIES:
        raise SpecError(f"on_unsupported must be one of {', '.join(map(repr, POLICIES))}, "
                        f"got {on_unsupported!r}")
    if gates not in GATES:
        raise SpecError(f"gates must be one of {', '.join(map(repr, GATES))}, got {gates!r}")
