"""The plan of a search: a space tabulated at one input size.

:func:`plan` turns a :class:`~rfsearch.spaces.Space` into a :class:`Plan`: per slot, the
block summaries of every option at every reachable input size (computed by the core
kernel, see :mod:`rfsearch.search.tables`), folded into a few groups of slots whose
variables do not cross group boundaries. Evaluating a candidate is then one table
lookup and one affine step per group, whatever the number of layers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import SpecError
from ..recurrence import ALIGNED, KNOWN
from ..spaces.space import Space, mixed_radix
from ..spec import parse_input_size
from .tables import Table, block_table, chain, outer

GROUP_OPTIONS = 4096  # merge neighbouring groups while their joint options stay this small
SUFFIX_ENTRIES = 1 << 21  # the exhaustive walk's precomposed suffix table: bounded memory
MAX_GROUP_ENTRIES = 1 << 24


@dataclass
class Group:
    """Consecutive slots folded into one table; ``radix`` options, digit = id // below % radix."""

    table: Table
    radix: int
    below: int


@dataclass
class Plan:
    """A space prepared at one input size: its groups and the compute width."""

    space: Space
    input_size: tuple[int, int] | None
    groups: list[Group]
    sizes_out: list
    dtype: str

    def suffix(self, limit: int = SUFFIX_ENTRIES) -> tuple[int, Table]:
        """(first group of the suffix, its precomposed table): the longest run of final
        groups whose joint table stays within ``limit`` entries per size class."""
        start, table = len(self.groups) - 1, self.groups[-1].table
        while start > 0:
            prev = self.groups[start - 1].table
            if prev.shape[0] * prev.shape[1] * table.shape[1] > limit:
                break
            table, start = outer(prev, table), start - 1
        return start, table


def _identity_table(sizes: list, options: int) -> Table:
    k = len(sizes)
    z = np.zeros((2, k, options), np.int64)
    return Table(A=z, B=z, M=z, S=np.ones_like(z), F=np.full(z.shape, KNOWN | ALIGNED,
                 np.int32), V=np.ones((k, options), bool),
                 nxt=np.broadcast_to(np.arange(k, dtype=np.int32)[:, None], (k, options)).copy(),
                 sizes_out=list(sizes))


def _slot_groups(space: Space) -> list[list[int]]:
    """Minimal runs of slots such that no variable is used in two runs."""
    last_use = {}
    for i, slot in enumerate(space.slots):
        for v in slot.variables:
            last_use[v] = i
    groups, current, reach = [], [], -1
    for i, slot in enumerate(space.slots):
        current.append(i)
        reach = max([reach, *(last_use[v] for v in slot.variables)])
        if reach <= i:
            groups.append(current)
            current = []
    return groups


def _group_table(space: Space, slots: list[int], tables: dict[int, Table], sizes_in: list
                 ) -> tuple[Table, int]:
    """Fold the slots' tables over every joint option of the group's variables."""
    variables = sorted({v for i in slots for v in space.slots[i].variables})
    radices = [space.variables[v].size for v in variables]
    options = math.prod(radices)
    if options * len(sizes_in) > MAX_GROUP_ENTRIES:
        names = ", ".join(space.slots[i].name for i in slots[:3])
        raise SpecError(f"space {space.name!r}: slots {names}... share choices with "
                        f"{options} joint options; too many to tabulate")
    digits = mixed_radix(np.arange(options), radices)  # [options, V]
    digit = {v: digits[:, j] for j, v in enumerate(variables)}
    table = _identity_table(sizes_in, options)
    for i in slots:
        slot = space.slots[i]
        index = np.zeros(options, np.int64)
        for v in slot.variables:
            index = index * space.variables[v].size + digit[v]
        table = chain(table, tables[i], np.arange(options), index)
    return table, options


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


def plan(space: Space, input_size=None) -> Plan:
    """Tabulate ``space`` at ``input_size`` (default: the space's own)."""
    size = parse_input_size(input_size) if input_size is not None else space.input_size
    if space.per_candidate:
        raise SpecError(f"space {space.name!r} is evaluated per candidate, not tabulated")
    sizes = [size]
    tables, memo = {}, {}
    for i, slot in enumerate(space.slots):
        key = (id(slot.blocks), tuple(sizes))  # repeated cells at one size: tabulate once
        if key not in memo:
            try:
                memo[key] = block_table(slot.blocks, sizes)
            except SpecError as err:  # name the slot: block-local names mean little
                raise SpecError(f"space {space.name!r}, slot {slot.name!r}: {err}") from None
        tables[i] = memo[key]
        sizes = tables[i].sizes_out
    groups: list[Group] = []
    sizes = [size]
    for run in _slot_groups(space):
        table, options = _group_table(space, run, tables, sizes)
        sizes = table.sizes_out
        if groups and groups[-1].radix * options <= GROUP_OPTIONS:
            prev = groups.pop()
            table, options = outer(prev.table, table), prev.radix * options
        groups.append(Group(table, options, 1))
    below = 1
    for g in reversed(groups):
        g.below = below
        below *= g.radix
    return Plan(space, size, groups, sizes, _bound_dtype(groups))
