"""What a search space is: choice variables and slots of blocks.

A :class:`Space` is a chain of slots; each slot is a block (a few layers, a residual
block, a NAS cell) chosen by one or more choice variables. A candidate is identified
by ``candidate_id``, the mixed-radix number of its variables' option indices (the
first variable, nearest the network input, most significant). How a space is
tabulated and searched is :mod:`rfsearch.search`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from ..axes import parse_input_sizes, size_for
from ..encode import Batch
from ..errors import SpecError
from ..table import search_result

# Result columns a choice may not be named after.
RESERVED = frozenset(search_result(depth=True))


def fitted_size(name: str, dims: int, input_size) -> tuple[int, ...]:
    """A per-candidate space's input size (N, HxW or DxHxW), refused in one line when its
    axes are not its blocks' ``dims`` (else every row would be an error row)."""
    sizes = parse_input_sizes(input_size)
    try:
        size_for(sizes, dims)
    except SpecError as err:
        raise SpecError(f"space {name!r}: {err}") from None
    return sizes


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

    @cached_property
    def dtype(self) -> np.dtype:
        """Its column's type: int64 for integer labels, float64 for numbers, else text
        (object)."""
        kinds = self._kinds
        if all(issubclass(k, int | np.integer) and k is not bool for k in kinds):
            return np.dtype(np.int64)
        if all(issubclass(k, int | float | np.number) and k is not bool for k in kinds):
            return np.dtype(np.float64)
        return np.dtype(object)

    @property
    def numeric(self) -> bool:
        """Whether a filter may compare it as a number."""
        return self.dtype != object

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.string() if self.dtype == object else pa.from_numpy_dtype(self.dtype)

    @cached_property
    def column_labels(self) -> np.ndarray | pa.Array:
        """The labels as its column's values: a numpy array of its dtype, or Arrow text."""
        if self.numeric:
            return np.asarray(self.labels, dtype=object).astype(self.dtype)
        text = self.labels if self._kinds <= {str} else [str(x) for x in self.labels]
        return pa.array(list(text), pa.string())

    @cached_property
    def _kinds(self) -> set[type]:
        """The types of its labels."""
        return set(map(type, self.labels))


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
    # A space of blocks that need the periodic program (resampling, crops, ceil-mode pools,
    # 1-D / 3-D): its candidates are evaluated by the core evaluate() on the host too.
    host: bool = False
    dims: int = 2  # the blocks' axes (3: the results gain the _d columns)
    # Optional, for a per-candidate space: ids [N] -> one encoded Batch of their networks
    # (no loop per candidate) whose network rows equal those of their specs (geometry and
    # validity; layer names and analysis may differ). Searches without analysis columns
    # evaluate it instead of the specs (DARTS: spaces.darts_batch).
    batcher: Callable[[np.ndarray], Batch] | None = None

    @property
    def per_candidate(self) -> bool:
        """Whether candidates are evaluated one spec at a time (no block tables)."""
        return self.builder is not None or self.host

    @cached_property
    def key_types(self) -> dict[str, pa.DataType]:
        """The Arrow type of each native key column, read off candidate 0's keys: a part
        with no rows must not guess them (an empty list column reads as double)."""
        if self.keys is None:
            return {}
        probe = pa.Table.from_pandas(pd.DataFrame(self.keys(np.zeros(1, np.int64))),
                                     preserve_index=False)
        return {f.name: f.type for f in probe.schema}

    def __post_init__(self):
        seen_names: set[str] = set()
        for var in self.variables:
            if var.name in RESERVED or var.name in self.id_aliases:
                raise SpecError(f"space {self.name!r}: choice name {var.name!r} is a result "
                                "column; name it differently")
            if var.name in seen_names:  # one column would show one of them
                raise SpecError(f"space {self.name!r}: two choices are named {var.name!r} "
                                "(a tie named like a field's column?); name one differently")
            seen_names.add(var.name)
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
        spec = {"name": f"{self.name}#{int(candidate_id)}", "layers": layers}
        if layers and prev != layers[-1]["name"]:  # the last block's output is not its last layer
            spec["output"] = prev
        return spec

    def choice_columns(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """One column per variable: the chosen option's label (text columns gathered in
        Arrow, typed as pandas types text)."""
        digits = self.digits(ids)
        cols = {}
        for j, var in enumerate(self.variables):
            if var.numeric:
                cols[var.name] = var.column_labels[digits[:, j]]
            else:  # mixed or text labels: one string column
                cols[var.name] = text_column(var.column_labels.take(digits[:, j]))
        return cols


def text_column(values: pa.Array):
    """An Arrow string array as the column pandas makes of text: its string dtype where
    pandas infers one (pandas 3), else an object array of str."""
    dtype = pd.Series(np.array(["x"], dtype=object)).dtype
    if isinstance(dtype, np.dtype) and dtype.kind == "O":
        return values.to_numpy(zero_copy_only=False)
    return pd.array(values, dtype=dtype)
