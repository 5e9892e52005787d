"""Search spaces: choice variables, slots of blocks, and the tables a search runs on.

A :class:`Space` is a chain of slots; each slot is a block (a few layers, a residual
block, a NAS cell) chosen by one or more choice variables. A candidate is identified
by ``candidate_id``, the mixed-radix number of its variables' option indices (the
first variable, nearest the network input, most significant).

:func:`plan` turns a space into a :class:`Plan`: per slot, the block summaries of
every option at every reachable input size (computed by the core kernel, see
:mod:`rfsearch.spaces.tables`), folded into a few groups of slots whose variables
do not cross group boundaries. Evaluating a candidate is then one table lookup and
one affine step per group, whatever the number of layers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .. import kernel as K
from ..driver import parse_input_size
from ..errors import SpecError
from .tables import Table, block_table, chain, outer

RESERVED = frozenset({"candidate_id", "valid", "aligned", *(
    f"{c}_{a}" for c in ("rf", "rf_min", "stride", "padding", "out") for a in "hw")})
GROUP_OPTIONS = 4096  # merge neighbouring groups while their joint options stay this small
SUFFIX_ENTRIES = 1 << 21  # the exhaustive walk's precomposed suffix table: bounded memory
MAX_GROUP_ENTRIES = 1 << 24


def place_values(radices) -> np.ndarray:
    """Mixed-radix place values, the first digit most significant: id = sum(d_i * place_i)."""
    radices = np.asarray(radices, dtype=np.int64)
    return np.append(np.cumprod(radices[::-1])[::-1][1:], 1)[:len(radices)]


def mixed_radix(ids, radices) -> np.ndarray:
    """Digits [N, V] of ids [N] (vectorised; the first digit most significant)."""
    radices = np.asarray(radices, dtype=np.int64)
    return (np.asarray(ids, dtype=np.int64)[:, None] // place_values(radices)) % radices


@dataclass(frozen=True)
class Variable:
    """One choice: its column name and the value written for each option."""

    name: str
    labels: tuple

    @property
    def size(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Slot:
    """A position of the chain: ``blocks[j]`` is the block spec for joint option j of
    ``variables`` (mixed radix, first variable most significant); no variable: fixed."""

    name: str
    variables: tuple[int, ...]
    blocks: tuple[dict, ...]


@dataclass
class Space:
    """A search space: variables, slots, its standard input size and native keys."""

    name: str
    variables: list[Variable]
    slots: list[Slot]
    input_size: tuple[int, int] | None = None
    definition: dict = field(default_factory=dict)
    description: str = ""
    keys: Callable[[np.ndarray], dict] | None = None  # ids -> native key columns
    id_aliases: tuple[str, ...] = ()  # key columns that equal candidate_id (filterable)
    # A space whose macro structure is not a chain of blocks (DARTS: each cell reads the
    # two before it) builds each candidate's spec from its digits instead of slots; it is
    # evaluated candidate by candidate on the host (sampling).
    builder: Callable[[np.ndarray], dict] | None = None

    def __post_init__(self):
        for var in self.variables:
            if var.name in RESERVED or var.name in self.id_aliases:
                raise SpecError(f"space {self.name!r}: choice name {var.name!r} is a result "
                                "column; name it differently")
        if self.builder is not None:
            if self.slots:
                raise SpecError(f"space {self.name!r}: a builder space has no slots")
            return
        seen: list[int] = []
        for slot in self.slots:
            joint = math.prod(self.variables[v].size for v in slot.variables)
            if len(slot.blocks) != joint:
                raise SpecError(f"space {self.name!r}, slot {slot.name!r}: {len(slot.blocks)} "
                                f"blocks for {joint} joint options")
            seen += [v for v in slot.variables if v not in seen]
        if seen != list(range(len(self.variables))):
            raise SpecError(f"space {self.name!r}: variables must be numbered in order of "
                            "first use along the chain, and every variable used")

    @property
    def size(self) -> int:
        """Number of candidates (a Python int: spaces may exceed 2**63 in principle)."""
        return math.prod(v.size for v in self.variables)

    @property
    def radices(self) -> np.ndarray:
        """Option count per variable."""
        return np.array([v.size for v in self.variables], dtype=np.int64)

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON definition (recorded in result metadata)."""
        text = json.dumps({"name": self.name, "definition": self.definition}, sort_keys=True,
                          default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def digits(self, ids: np.ndarray) -> np.ndarray:
        """Option index per variable: [N, V] for ids [N] (vectorised mixed radix)."""
        return mixed_radix(ids, self.radices)

    def spec(self, candidate_id: int) -> dict:
        """The full network spec of one candidate (its slots' blocks, chained)."""
        if not 0 <= int(candidate_id) < self.size:
            raise SpecError(f"candidate_id must be in [0, {self.size}), got {candidate_id!r}")
        digits = self.digits(np.array([int(candidate_id)]))[0]
        if self.builder is not None:
            return dict(self.builder(digits), name=f"{self.name}#{int(candidate_id)}")
        layers, prev = [], "input"
        for slot in self.slots:
            index = 0
            for v in slot.variables:
                index = index * self.variables[v].size + int(digits[v])
            block = slot.blocks[index]
            if block is None:
                raise SpecError(f"candidate {int(candidate_id)} of {self.name!r} is not a "
                                f"network: slot {slot.name!r} has no valid block for its choice")
            rename, last = {"input": prev}, prev
            for layer in block["layers"]:
                name = f"{slot.name}/{layer['name']}"
                inputs = layer.get("inputs")
                inputs = [last] if inputs is None else [
                    rename[x] for x in ([inputs] if isinstance(inputs, str) else inputs)]
                layers.append(dict(layer, name=name, inputs=inputs))
                rename[layer["name"]] = last = name
            prev = rename[block.get("output", block["layers"][-1]["name"])]
        return {"name": f"{self.name}#{int(candidate_id)}", "layers": layers}

    def choice_columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """One column per variable: the chosen option's label."""
        digits = self.digits(ids)
        cols = {}
        for j, var in enumerate(self.variables):
            labels = np.asarray(var.labels, dtype=object)
            kinds = {type(x) for x in var.labels}
            if kinds <= {int, np.int64} or kinds <= {float, int}:
                labels = labels.astype(np.int64 if kinds <= {int, np.int64} else np.float64)
            else:  # mixed or text labels: one string column
                labels = np.array([str(x) for x in var.labels], dtype=object)
            cols[var.name] = labels[digits[:, j]]
        return cols


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
    return Table(A=z, B=z, M=z, S=np.ones_like(z), F=np.full(z.shape, K.KNOWN | K.ALIGNED,
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
    if space.builder is not None:
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
