"""The plan of a search: a space tabulated at one input size.

:func:`plan` turns a :class:`~rfsearch.spaces.Space` into a :class:`Plan`: per slot, the
block summaries of every option at every reachable input size (computed by the core
kernel, see :mod:`rfsearch.search.tables`), folded into a few groups of slots whose
variables do not cross group boundaries. Evaluating a candidate is then one table
lookup and one affine step per group, whatever the number of layers. With ``analysis``,
each group also keeps its slots (``stages``) for the layer counts of
:mod:`rfsearch.search.layerwise`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import SpecError
from ..recurrence import ALIGNED, KNOWN
from ..spaces.space import Space, mixed_radix
from ..spec import parse_input_size
from .layerwise import identity_analysis, option_classes
from .tables import Table, block_table, chain, expand, outer

GROUP_OPTIONS = 4096  # merge neighbouring groups while their joint options stay this small
SUFFIX_ENTRIES = 1 << 21  # the exhaustive walk's precomposed suffix table: bounded memory
MAX_GROUP_ENTRIES = 1 << 24


@dataclass
class Group:
    """Consecutive slots folded into one table; ``radix`` options, digit = id // below % radix."""

    table: Table
    radix: int
    below: int
    stages: list = field(default_factory=list)  # (slot table, slot block per option)
    classes: tuple | None = None  # (one option per class, the class of each option)


@dataclass
class Plan:
    """A space prepared at one input size: its groups and the compute width."""

    space: Space
    input_size: tuple[int, int] | None
    groups: list[Group]
    sizes_out: list
    dtype: str
    analysis: bool = False

    def suffix(self, limit: int = SUFFIX_ENTRIES) -> tuple[int, Table]:
        """(first group of the suffix, its precomposed table): the longest run of final
        groups whose joint table stays within ``limit`` entries per size class."""
        start, table = len(self.groups) - 1, self.groups[-1].table
        while start > self.suffix_start(limit):
            table, start = outer(self.groups[start - 1].table, table), start - 1
        return start, table

    def suffix_start(self, limit: int = SUFFIX_ENTRIES) -> int:
        """The first group of :meth:`suffix`, without composing it."""
        start, width = len(self.groups) - 1, self.groups[-1].radix
        while start > 0:
            prev = self.groups[start - 1].table
            if prev.shape[0] * prev.shape[1] * width > limit:
                break
            width, start = width * prev.shape[1], start - 1
        return start


def _identity_table(sizes: list, options: int, analysis: bool = False) -> Table:
    k = len(sizes)
    z = np.zeros((2, k, options), np.int64)
    extra = identity_analysis(np, (k, options), np.int64) if analysis else {}
    return Table(A=z, B=z, M=z, S=np.ones_like(z), F=np.full(z.shape, KNOWN | ALIGNED,
                 np.int32), V=np.ones((k, options), bool),
                 nxt=np.broadcast_to(np.arange(k, dtype=np.int32)[:, None], (k, options)).copy(),
                 sizes_out=list(sizes), **extra)


def _slot_groups(space: Space) -> list[list[int]]:
    """Minimal runs of slots such that no variable is used in two runs; slots without a
    variable join the run they follow (or, before any variable, the first run)."""
    last_use = {}
    for i, slot in enumerate(space.slots):
        for v in slot.variables:
            last_use[v] = i
    groups, current, reach = [], [], -1
    for i, slot in enumerate(space.slots):
        if not slot.variables and groups and not current:
            groups[-1].append(i)
            continue
        current.append(i)
        reach = max([reach, *(last_use[v] for v in slot.variables)])
        if reach <= i and reach >= 0:
            groups.append(current)
            current, reach = [], -1
    if current:
        groups.append(current)
    return groups


def _group_table(space: Space, slots: list[int], tables: dict[int, Table], sizes_in: list
                 ) -> tuple[Table, int, list, tuple]:
    """Fold the slots' tables over every joint option of the group's variables; also
    (slot table, slot block of each joint option) per slot, and the option classes
    (:func:`~.layerwise.option_classes`): options built of the same blocks are folded once."""
    variables = sorted({v for i in slots for v in space.slots[i].variables})
    radices = [space.variables[v].size for v in variables]
    options = math.prod(radices)
    if options * len(sizes_in) > MAX_GROUP_ENTRIES:
        names = ", ".join(space.slots[i].name for i in slots[:3])
        raise SpecError(f"space {space.name!r}: slots {names}... share choices with "
                        f"{options} joint options; too many to tabulate")
    digits = mixed_radix(np.arange(options), radices)  # [options, V]
    digit = {v: digits[:, j] for j, v in enumerate(variables)}
    stages = []
    for i in slots:
        index = np.zeros(options, np.int64)
        for v in space.slots[i].variables:
            index = index * space.variables[v].size + digit[v]
        stages.append((tables[i], tables[i].block[index]))
    classes = option_classes([column for _, column in stages])
    first = classes[0]
    table = _identity_table(sizes_in, first.size, tables[slots[0]].analysis)
    for slot_table, column in stages:
        table = chain(table, slot_table, np.arange(first.size), column[first])
    return expand(table, classes[1]), options, stages, classes
def _bound_dtype(groups: list[Group]) -> str:
    """int32 when no candidate's |u|, |v|, |m|, J or rf can reach 2**31, else int64."""
    big, jump = 0, 1
    for g in groups:
        t = g.table
        reach = max(int(np.abs(x[:, t.V]).max(initial=0)) for x in (t.A, t.B, t.M))
        big += reach * jump
        jump *= int(t.S[:, t.V].max(initial=1))
    top = max(big, jump)
    if top >= 1 << 62:
        raise SpecError("the geometry of this space can exceed int64; split it")
    return "int32" if 2 * top + 1 < 1 << 31 else "int64"  # rf = B - A + 1 fits too


def _merged_stages(left: Group, stages: list, options: int) -> list:
    """The stages of ``left`` then ``stages`` (of ``options`` options), on their joint
    options (left-major, as :func:`~.tables.outer`)."""
    return ([(t, index[np.arange(left.radix * options) // options]) for t, index in left.stages]
            + [(t, index[np.arange(left.radix * options) % options]) for t, index in stages])


def plan(space: Space, input_size=None, analysis: bool = False) -> Plan:
    """Tabulate ``space`` at ``input_size`` (default: the space's own); ``analysis``: with
    the layer-wise analysis (:mod:`~.layerwise`)."""
    size = parse_input_size(input_size) if input_size is not None else space.input_size
    if space.per_candidate:
        raise SpecError(f"space {space.name!r} is evaluated per candidate, not tabulated")
    sizes = [size]
    tables, memo = {}, {}
    for i, slot in enumerate(space.slots):
        key = (id(slot.blocks), tuple(sizes))  # repeated cells at one size: tabulate once
        if key not in memo:
            try:
                memo[key] = block_table(slot.blocks, sizes, analysis)
            except SpecError as err:  # name the slot: block-local names mean little
                raise SpecError(f"space {space.name!r}, slot {slot.name!r}: {err}") from None
        tables[i] = memo[key]
        sizes = tables[i].sizes_out
    groups: list[Group] = []
    sizes = [size]
    for run in _slot_groups(space):
        table, options, stages, classes = _group_table(space, run, tables, sizes)
        sizes = table.sizes_out
        if groups and groups[-1].radix * options <= GROUP_OPTIONS:
            prev = groups.pop()
            stages = _merged_stages(prev, stages, options)
            table, options, classes = outer(prev.table, table), prev.radix * options, None
        groups.append(Group(table, options, 1, stages if analysis else [], classes))
    below = 1
    for g in reversed(groups):
        g.below = below
        below *= g.radix
    return Plan(space, size, groups, sizes, _bound_dtype(groups), analysis)
