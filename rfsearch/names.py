"""Network names: numbered default names ('chain17') kept as numbers until a table needs
them, and the one conversion of a name array to an Arrow string column.

A million chains built from arrays are named 'chain0' ... 'chain1048575'. Made into
Python strings, those names cost more than the kernel that computes the chains; kept as
a prefix and an integer array, they are a view that indexing and ``take`` carry along,
written as text once, by Arrow, as the ``name`` column.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

CHAIN_LAYER = "layer"  # a chain's layers have no names: 'layer0', 'layer1', ...


def chain_layer(k: int) -> str:
    """The name of layer ``k`` (0-based) of a chain built from arrays or a table."""
    return f"{CHAIN_LAYER}{k}"


@dataclass(frozen=True)
class NumberedNames:
    """The names ``f"{prefix}{i}"`` for each ``i`` in ``numbers`` ([N] non-negative int64),
    read like an [N] object array of str: ``len``, ``names[i]`` (a str), ``names[rows]``
    (NumberedNames) and ``np.asarray(names)`` (the object array)."""

    prefix: str
    numbers: np.ndarray  # [N] int64, >= 0

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, rows):
        picked = self.numbers[rows]
        if np.ndim(picked) == 0:
            return f"{self.prefix}{int(picked)}"
        return NumberedNames(self.prefix, picked)

    def __array__(self, dtype=None, copy=None):
        text = np.fromiter(map(f"{self.prefix}{{}}".format, self.numbers.tolist()),
                           dtype=object, count=len(self.numbers))
        return text if dtype is None else text.astype(dtype)

    def to_arrow(self) -> pa.LargeStringArray:
        """The names as an Arrow large_string array, written by Arrow's compute kernels:
        the numbers cast to decimal text, the prefix put in front."""
        text = pc.cast(pa.array(self.numbers, pa.int64()), pa.large_string())
        return pc.utf8_replace_slice(text, 0, 0, self.prefix) if self.prefix else text


def numbered(prefix: str, numbers) -> NumberedNames:
    """Default names ``prefix{i}`` for the integers ``numbers`` (non-negative)."""
    return NumberedNames(prefix, np.asarray(numbers, dtype=np.int64))


def arrow_names(names) -> pa.Array:
    """A name array (NumberedNames, or objects: str, None = missing, anything else is
    written as its str) as an Arrow string array."""
    if isinstance(names, NumberedNames):
        return names.to_arrow()
    values = np.asarray(names, dtype=object)
    try:
        return pa.array(values, type=pa.large_string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all str (numbers, say)
        text = [None if v is None else str(v) for v in values]
        return pa.array(text, type=pa.large_string())
