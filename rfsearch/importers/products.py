"""Matrix products of two maps (attention's scores and its weighted sum, a Gram matrix over
positions, a unit-by-unit einsum), one rule for every framework.

Each operand's tensor dimensions either reach the product's output (a batch or a free
dimension, at some output dimension) or are contracted. Per spatial axis of the input:

* where one operand keeps the axis, the output keeps it there; an operand that keeps it at
  the same output dimension is read unit by unit along it, and one that contracts it, or
  keeps it at another output dimension, is read whole along it;
* where both contract it, it is gone: once every axis is, the output is features read
  from both maps whole (a dense layer).

Attention ``softmax(Q K^T) V`` is exact under this rule: its scores keep Q's positions and
read K whole (a score row reads one key per column; the softmax and the product with V
read every column), and the weighted sum reads V whole. Only a score map kept as the
network's output is over-approximated (its unit reads one key, not all), which is noted.
"""

from __future__ import annotations

from .builder import SpecBuilder, Unsupported, Value
from .merges import merge_operands

# per tensor dimension of an operand (a tuple, or a mapping over its map's dimensions):
# the output dimension it becomes, None where it is contracted
Places = tuple[int | None, ...] | dict[int, int | None]


def matmul_places(lhs_rank: int, rhs_rank: int) -> tuple[Places, Places, int]:
    """NumPy's matmul (``torch.matmul``, ``@``, ONNX MatMul): both operands' places and
    the output's rank. Batch dimensions broadcast from the right; a 1-D operand is a
    vector whose only dimension is contracted."""
    batch = max(lhs_rank, rhs_rank, 2) - 2
    rows = lhs_rank >= 2
    rank = batch + rows + (rhs_rank >= 2)

    def batch_place(d: int, r: int) -> int:
        return batch - (r - 2) + d

    lhs = tuple(None if d == lhs_rank - 1 else rank - 1 - (rhs_rank >= 2)
                if d == lhs_rank - 2 else batch_place(d, lhs_rank) for d in range(lhs_rank))
    rhs = tuple(None if d == max(rhs_rank - 2, 0) else rank - 1 if d == rhs_rank - 1
                else batch_place(d, rhs_rank) for d in range(rhs_rank))
    return lhs, rhs, rank


def dot_general_places(ranks: tuple[int, int], contract, batch) -> tuple[Places, Places, int]:
    """``jax.lax.dot_general`` with ``((lc, rc), (lb, rb))``: the output holds the batch
    dimensions, then the left operand's free ones, then the right's."""
    (lc, rc), (lb, rb) = contract, batch
    lfree = [d for d in range(ranks[0]) if d not in lc and d not in lb]
    rfree = [d for d in range(ranks[1]) if d not in rc and d not in rb]

    def places(rank, own_batch, free, offset) -> Places:
        return tuple(list(own_batch).index(d) if d in own_batch else
                     offset + free.index(d) if d in free else None for d in range(rank))

    return (places(ranks[0], lb, lfree, len(lb)),
            places(ranks[1], rb, rfree, len(lb) + len(lfree)),
            len(lb) + len(lfree) + len(rfree))


def product_of_maps(builder: SpecBuilder, base: str, operands: list[tuple[Value, Places]],
                    rank: int, layer) -> Value:
    """The product of two (or more) operands that all carry a map, given each one's
    places. ``layer(op, inputs, fields)`` makes the importer's layer; its output keeps
    ``inputs[0]``'s axes."""
    kept = [_kept_at(operands, i) for i in range(builder.dims)]
    if all(p is None for p, _ in kept):
        return read_whole(builder, base, [v for v, _ in operands], rank,
                          "a product of two maps over every spatial axis")
    if any(p is None for p, _ in kept):
        raise Unsupported("a product of two maps over some of their spatial axes (it reads "
                          "those whole and keeps the others)")
    axes = tuple(p for p, _ in kept)
    sizes = tuple(size for _, size in kept)
    inputs = [_placed(builder, base, v, places, axes, sizes, rank) for v, places in operands]
    if any(places[v.axes[i]] not in (None, axes[i]) for v, places in operands
           for i in range(builder.dims)):
        builder.assume("a product of two maps that keeps both along one axis (attention's "
                       "scores): each unit read as reading the second map whole along it; a "
                       "mask on the scores (causal attention) is not seen, so masked units' "
                       "boxes are upper bounds")
    return layer("add", inputs, {"comment": "a product of two maps"})


def product_with_map(builder: SpecBuilder, base: str, value: Value, places: Places,
                     rank: int, layer, why: str) -> Value:
    """A product of one map (``value``, placed by ``places``) with weights or features:
    where the map's axes all reach the output, an element-wise layer that moves them
    there; where all are contracted, features read from the whole map."""
    axes = tuple(places[a] for a in value.axes)
    large = [a for a, n in zip(axes, value.sizes, strict=True) if n > 1]
    if all(a is None for a in large):  # (a map of one unit is its summary's features)
        return read_whole(builder, base, [value], rank, why)
    if None in axes:
        raise Unsupported("a product over some of the spatial axes of a map (it mixes those "
                          "only, and keeps the others)")
    return layer("identity", [Value(value.node, axes, value.sizes, rank)], {"comment": why})


def _kept_at(operands: list[tuple[Value, Places]], axis: int) -> tuple[int | None, int]:
    """Where the output keeps spatial ``axis`` (the first operand keeping it decides) and
    its size there; (None, 0) where every operand contracts it."""
    for value, places in operands:
        place = places[value.axes[axis]]
        if place is not None:
            return place, value.sizes[axis]
    return None, 0


def _placed(builder: SpecBuilder, base: str, value: Value, places: Places, axes, sizes,
            rank: int, why: str = "a product of two maps") -> Value:
    """``value`` as the output's map at ``axes``: unit by unit along the axes it keeps
    there, read whole along the others."""
    along = {d for d, out in zip(value.axes, axes, strict=True) if places[d] != out}
    same = [s for d, s, t in zip(value.axes, value.sizes, sizes, strict=True)
            if d not in along and s != t]
    if same:
        raise Unsupported(f"maps of sizes {list(value.sizes)} and {list(sizes)} read unit by "
                          "unit along the same axes")
    node = value.node if not along else builder.broadcast(
        base, value, why, along=along, sizes=sizes)
    return Value(node, axes, sizes, rank)


def attend(builder: SpecBuilder, base: str, query: Value, others: list[Value], along,
           layer) -> Value:
    """Attention of ``query`` over keys and values (``others``) along the tensor
    dimensions ``along``: its output has the query's map; each unit reads the query at
    its own place and the others whole along ``along`` (their lengths may differ from
    the query's: cross-attention), unit by unit elsewhere. Without a map, a dense layer."""
    if not query.spatial:
        return read_whole(builder, base, [query, *others], query.rank, "attention over features")
    if not others:  # constant keys and values (a learned memory): the query unit by unit
        return query
    inputs = [query]
    for value in others:
        if (value.axes, value.rank) != (query.axes, query.rank):
            raise Unsupported("attention between maps of different layouts")
        inputs.append(_placed(builder, base, value, {d: None if d in along else d
                                                     for d in value.axes},
                              query.axes, query.sizes, query.rank, "attention's keys"))
    return layer("add", inputs, {"comment": "attention: queries, keys and values"})


def read_whole(builder: SpecBuilder, base: str, values: list[Value], rank: int,
               why: str) -> Value:
    """Features that read every operand whole: a dense layer on each, merged."""
    dense = [builder.add(base, "dense", [v], comment=why) for v in values]
    node = dense[0] if len(dense) == 1 else builder.add(
        base, "add", [Value(d, (), (), rank) for d in dense], comment=why)
    first = values[0]  # the map the features summarise (a one-unit map's own summary)
    one_unit = first.spatial and all(s == 1 for s in first.sizes) and first.pooled is not None
    return Value(node, (), (), rank, first if first.spatial and not one_unit else first.pooled)


def einsum_places(equation: str, ranks: list[int]) -> tuple[list[Places], int]:
    """An einsum's operands placed (a letter kept in the output goes where the output has
    it; one missing there is contracted) and the output's rank. ``...`` stands for the
    leading dimensions an operand has beyond its letters; a letter repeated within an
    operand (a diagonal) is refused."""
    spec = equation.replace(" ", "")
    inputs, _, output = spec.partition("->")
    terms = inputs.split(",")
    if len(terms) != len(ranks):
        raise Unsupported(f"an einsum of {len(terms)} terms on {len(ranks)} operands")
    width = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks, strict=True)
                 if "..." in t), default=0)
    letters = [_expanded(t, r, width) for t, r in zip(terms, ranks, strict=True)]
    if not _:  # implicit output: the ellipsis, then the letters used once, sorted
        counts = [c for term in letters for c in term]
        out = sorted({c for c in counts if c.isdigit()}, key=int) + sorted(
            c for c in set(counts) if not c.isdigit() and counts.count(c) == 1)
    else:
        out = _expanded(output, width + len(output.replace("...", "")), width)
    if any(len(set(term)) != len(term) for term in letters):
        raise Unsupported("an einsum that takes a diagonal (a letter twice in one operand)")
    return [tuple(out.index(c) if c in out else None for c in term) for term in letters], \
        len(out)


def _expanded(term: str, rank: int, width: int) -> list[str]:
    """An einsum term's letters, its ``...`` as digits for the last ``width`` broadcast
    dimensions it holds."""
    if "..." not in term:
        return list(term)
    before, after = term.split("...")
    held = rank - len(before) - len(after)
    return [*before, *(str(width - held + i) for i in range(held)), *after]


def einsum(builder: SpecBuilder, base: str, equation: str, operands: list, layer) -> Value:
    """An einsum of traced values and weights (``operands``, in order; a weight needs only
    a ``shape``), by :func:`placed_product`."""
    ranks = [v.rank if isinstance(v, Value) else len(v.shape) for v in operands]
    places, rank = einsum_places(equation, ranks)
    return placed_product(builder, base, list(zip(operands, places, strict=True)), rank,
                          layer, f"einsum {equation}")


def placed_product(builder: SpecBuilder, base: str, placed: list, rank: int, layer,
                   why: str) -> Value:
    """A product of operands placed in its output (traced values and weights): of maps by
    :func:`product_of_maps`, of one map by :func:`product_with_map` (traced features
    joining as element-wise ops' operands do), of features read whole."""
    traced = [(v, p) for v, p in placed if isinstance(v, Value)]
    if not traced:
        raise Unsupported("no traced input")
    maps = [(v, p) for v, p in traced if v.spatial]
    others = [v for v, _ in traced if not v.spatial]
    if not maps or (others and not _keeps_a_map(maps)):
        return read_whole(builder, base, [v for v, _ in traced], rank, why)
    out = product_of_maps(builder, base, maps, rank, layer) if len(maps) >= 2 else \
        product_with_map(builder, base, *maps[0], rank, layer, why)
    if not others or not out.spatial:
        return out
    return merge_operands(builder, base, [out, *others], why, layer, lambda v: v)


def _keeps_a_map(maps: list) -> bool:
    """Whether a product of these placed maps keeps a spatial axis of size > 1 (else it
    reads them whole, and every traced operand with them)."""
    return any(places[a] is not None for v, places in maps
               for a, n in zip(v.axes, v.sizes, strict=True) if n > 1)
