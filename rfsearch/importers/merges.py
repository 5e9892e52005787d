"""Element-wise ops of several operands in an imported graph (add, mul, where, a
concatenation): which merge unit by unit, which are a gate on the map, and which are
refused. One rule for every framework."""

from __future__ import annotations

from .builder import SpecBuilder, Unsupported, Value

CASCADE = "an operand comes from an unsupported op"  # an op refused for its operand's sake


def merge_operands(builder: SpecBuilder, base: str, values: list[Value], op: str, layer,
                   elementwise, shapes=None) -> Value:
    """An element-wise op of several operands (add, mul, max, where, ...): maps of one
    size merge (a layer ``add``, the op in a comment); with one map, the other operands
    (a bias, a 1 x 1 channel gate) leave an element-wise op on it (``elementwise``), or
    with gates='global' read the whole map the gate pooled. ``layer(op, inputs, fields)``
    makes the importer's layer; ``shapes``, the operands' tensor shapes where the
    framework gives them, tell a gate from features as large as the map (refused)."""
    maps = [v for v in values if v.spatial and any(s > 1 for s in v.sizes)]
    if not maps and any(v.broadcast for v in values):  # no map beside expanded summaries:
        values = [builder.spread(base, v, v.broadcast) if v.broadcast else v  # the map they
                  for v in values]  # summarise, read whole
        maps = [v for v in values if v.spatial and any(s > 1 for s in v.sizes)]
    if len(maps) >= 2:
        same_layout(maps)
        if len({v.sizes for v in maps}) > 1:
            raise Unsupported(f"an element-wise op on maps of sizes "
                              f"{[list(v.sizes) for v in maps]} (broadcast along a map)")
        builder.merged(maps)
        return layer("add", maps, {} if op.lower() == "add" else {"comment": op})
    if len(values) >= 2 and not maps:  # maps of one unit, or features: still a merge
        return layer("add", values, {})
    keep = maps[0] if maps else values[0]
    unmapped = [builder.offenders[n] for n in builder.ancestors(
        [v.node for v in values if v is not keep]) if n in builder.offenders]
    if unmapped:
        root = next((o for o in unmapped if not o.reason.startswith(CASCADE)), unmapped[0])
        raise Unsupported(f"{CASCADE} ({root.node}: {root.reason})")
    if maps and shapes is not None:
        _no_full_features(keep, values, shapes)
    if len(values) >= 2:
        gated = builder.gate(base, keep, next(v for v in values if v is not keep))
        if gated is not None:
            return gated
    return elementwise(keep)


def _no_full_features(keep: Value, values: list[Value], shapes) -> None:
    """Refuse an operand without a map whose tensor is as large as ``keep``'s map along
    a spatial axis: features put back on the map by a reshape no rule follows (tokens
    after attention); read as a gate, what they read would be dropped."""
    for value, shape in zip(values, shapes, strict=True):
        if value.spatial or value.broadcast or shape is None or len(shape) > keep.rank:
            continue
        aligned = [1] * (keep.rank - len(shape)) + [s or 1 for s in shape]
        if any(aligned[a] > 1 for a in keep.axes):
            raise Unsupported("features as large as the map merged with it unit by unit "
                              "(tokens put back on the map by a reshape no rule follows): "
                              "what each unit reads is not known")


def same_layout(values: list[Value]) -> None:
    """Maps merged or concatenated unit by unit hold each spatial axis in the same tensor
    dimension (a map and its own transpose do not: a unit reads other places of each)."""
    if len({v.axes for v in values if v.spatial and any(s > 1 for s in v.sizes)}) > 1:
        raise Unsupported("maps whose spatial axes lie in different tensor dimensions (a map "
                          "and a transpose of it) merged unit by unit")
