"""Block summaries: a chain of blocks composes like affine maps, so a search space is a
few small tables instead of millions of networks.

A block (one layer, a residual block, a NAS cell) maps the state of feature 0 of its
input, per axis, to that of its output. Relative to its own input it reads
``[A, B]`` (in units of its input's jump), its shortest path spans ``M + 1`` input
features, and it multiplies the jump by ``S``. Entering with state (u, v, m, J)::

    u' = u + A * J        v' = v + B * J        m' = m + M * J        J' = J * S

(the union of a block's paths is a min / max over affine maps with the same positive
J, so it stays affine). Composing two summaries is the same rule, so summaries of
many blocks fold into one. Flags compose bitwise (KNOWN and ALIGNED by AND,
UNBOUNDED by OR; a block's MISALIGNED counts only where the padding entering it is
known, as in the kernel), validity by AND.

The summaries depend on the block's input size only through 'same' padding and the
output size, so a :class:`Table` is indexed by (incoming size class, option) and
names the outgoing size class: sizes then follow each candidate exactly.

With ``analysis``, tables also carry the layer-wise analysis of their blocks
(:mod:`rfsearch.search.layerwise`): the composable fields (X, W, Rs), folded by the
same :func:`combine`, and, for a slot's own table, every layer's thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import recurrence as R
from ..driver import run_batch
from ..encode import encode_networks
from ..spec import parse_network
from .layerwise import AN_FIELDS, block_analysis, combine_analysis, identity_analysis

AND_FLAGS = R.KNOWN | R.ALIGNED
FIELDS = ("A", "B", "M", "S", "F")  # per axis: [2, ...]


@dataclass
class Table:
    """Summaries of one block per (size class, option).

    A, B, M, S, F: [2, K, C] (axis, incoming size class, option); V: [K, C] valid;
    nxt: [K, C] the outgoing size class; ``sizes_out[k]`` is its (h, w) or None.
    With analysis: X, W [2, K, C], Rs [STRIDES, K, C] (the composable
    fields of :mod:`~.layerwise`); a slot's own table also has ``lay``, its layers'
    thresholds (:func:`~.layerwise.block_analysis`); its columns are distinct blocks,
    and ``block`` names each option's column.
    """

    A: np.ndarray
    B: np.ndarray
    M: np.ndarray
    S: np.ndarray
    F: np.ndarray
    V: np.ndarray
    nxt: np.ndarray
    sizes_out: list
    X: np.ndarray | None = None
    W: np.ndarray | None = None
    Rs: np.ndarray | None = None
    lay: dict | None = None
    block: np.ndarray | None = None  # a slot's table: the column of each option [options]

    @property
    def analysis(self) -> bool:
        return self.X is not None

    def fields(self) -> tuple[str, ...]:
        """The per-entry fields it carries, besides nxt."""
        return (*FIELDS, "V", *(AN_FIELDS if self.analysis else ()))

    @property
    def shape(self) -> tuple[int, int]:
        return self.V.shape

    def entries(self) -> int:
        return self.V.size

    def taker(self, cls: np.ndarray, idx: np.ndarray):
        """A field [..., K, C] -> its entries at (size class ``cls``, column ``idx``)
        [...]: one flat index shared by every field it is given (a take per field,
        several times faster than indexing with two arrays)."""
        k, c = self.shape
        flat = cls.astype(np.int64) * c + idx
        return lambda values: np.take(values.reshape(*values.shape[:-2], k * c), flat,
                                      axis=-1)


def combine(xp, left: dict, right: dict) -> dict:
    """Left block then right block (the rule in the module docstring), broadcasting;
    the analysis fields too when both carry them."""
    J = left["S"]
    extra = combine_analysis(xp, left, right) if "X" in left and "X" in right else {}
    return extra | {
        "A": left["A"] + right["A"] * J,
        "B": left["B"] + right["B"] * J,
        "M": left["M"] + right["M"] * J,
        "S": J * right["S"],
        "F": (left["F"] & right["F"] & AND_FLAGS) | ((left["F"] | right["F"]) & R.UNBOUNDED)
        | (left["F"] & R.MISALIGNED) | xp.where((left["F"] & R.KNOWN) != 0,
                                                 right["F"] & R.MISALIGNED, 0),
        "V": left["V"] & right["V"],
    }


def identity_state(xp, n: int | tuple = (), dtype=np.int64, analysis: bool = False) -> dict:
    """The state at the network input: reads [0, 0], jump 1, known and aligned."""
    shape = (2, *((n,) if isinstance(n, int) else n))
    zeros = xp.zeros(shape, dtype)
    extra = identity_analysis(xp, shape[1:], dtype) if analysis else {}
    return extra | {"A": zeros, "B": zeros, "M": zeros, "S": xp.ones(shape, dtype),
                    "F": xp.full(shape, R.KNOWN | R.ALIGNED, np.int32),
                    "V": xp.ones(shape[1:], bool)}


def chain(left: Table, right: Table, left_index: np.ndarray, right_index: np.ndarray) -> Table:
    """Table whose option c is ``left`` option ``left_index[c]`` followed by ``right``
    option ``right_index[c]``, for every incoming size class of ``left``."""
    Kl = left.shape[0]
    li = np.broadcast_to(left_index[None, :], (Kl, left_index.size))  # [K, C]
    ks = np.broadcast_to(np.arange(Kl)[:, None], li.shape)
    names = left.fields() if right.analysis else (*FIELDS, "V")
    whole = left_index.size == left.shape[1] and (left_index == np.arange(left.shape[1])).all()
    lhs = {f: getattr(left, f) for f in names} if whole else _gather(left, names, ks, li)
    mid = left.nxt[ks, li]  # [K, C] size class entering the right block
    ri = np.broadcast_to(right_index[None, :], li.shape)
    rhs = _gather(right, names, mid, ri)
    out = combine(np, lhs, rhs)
    return Table(**out, nxt=right.nxt[mid, ri], sizes_out=right.sizes_out)


def _gather(table: Table, names, rows: np.ndarray, cols: np.ndarray) -> dict:
    """``table``'s fields ([..., K, C]) at entries (rows, cols) ([K', C'] each)."""
    at = table.taker(rows, cols)
    return {f: at(getattr(table, f)) for f in names}


def outer(left: Table, right: Table) -> Table:
    """Every option of ``left`` followed by every option of ``right`` (left-major)."""
    cl, cr = left.shape[1], right.shape[1]
    return chain(left, right, np.repeat(np.arange(cl), cr), np.tile(np.arange(cr), cl))


def expand(table: Table, index: np.ndarray) -> Table:
    """``table``'s column ``index[c]`` as column c, for every field."""
    if index.size == table.shape[1] and (index == np.arange(index.size)).all():
        return table
    names = [f for f in (*FIELDS, "V", *AN_FIELDS, "nxt") if getattr(table, f) is not None]
    return Table(**{f: np.take(getattr(table, f), index, axis=-1) for f in names},
                 sizes_out=table.sizes_out)


_IDENTITY = {"name": "invalid", "layers": [{"name": "id", "op": "identity"}]}
_ENCODED: dict = {}  # id(blocks tuple) -> (blocks, encoded): specs are parsed once per space


def encode_blocks(blocks) -> tuple:
    """(Batch of the distinct blocks, index of each block in it, usable mask).

    Blocks that are the same object are encoded once (spaces reuse one dict for equal
    geometry); ``None`` marks an option that is not a network (flagged invalid).
    """
    if getattr(blocks, "encoded", None) is not None:  # a space that ships its encoding
        return blocks.encoded
    key = id(blocks)
    if key in _ENCODED and _ENCODED[key][0] is blocks:
        return _ENCODED[key][1]
    first: dict[int, int] = {}
    distinct, index = [], np.empty(len(blocks), np.int64)
    for j, block in enumerate(blocks):
        block = _IDENTITY if block is None else block
        if id(block) not in first:
            first[id(block)] = len(distinct)
            distinct.append(parse_network(block, len(distinct)))
        index[j] = first[id(block)]
    usable = np.array([b is not None for b in blocks], bool)
    encoded = (encode_networks(distinct), index, usable)
    if isinstance(blocks, tuple):
        while len(_ENCODED) >= 16:  # a few recent slot kinds: bounded memory
            _ENCODED.pop(next(iter(_ENCODED)))
        _ENCODED[key] = (blocks, encoded)
    return encoded


def block_table(blocks, sizes_in: list, analysis: bool = False) -> Table:
    """Summaries of block specs at every incoming size, computed by the core kernel: a
    block is a small network whose input is the block's input (``analysis``: with the
    layer-wise analysis, from every layer's state). Its columns are the distinct blocks
    (``block`` [options]: the column of each option), so equal blocks are summarised once."""
    batch, index, usable = encode_blocks(blocks)
    results = [run_batch(batch, size, per_layer=analysis) for size in sizes_in]
    raws = [r.out for r in results]
    usable = _column_usable(index, usable, len(batch.length))
    extra = {}
    if analysis:
        an, lay = block_analysis(batch, [r.layers for r in results])
        extra = an | {"lay": lay}
    k, c = len(sizes_in), len(usable)
    fields = {f: np.stack([raw[src].astype(np.int64) for raw in raws], axis=1)  # [2, K, C]
              for f, src in (("A", "u"), ("B", "v"), ("M", "rmin"), ("S", "J"))}
    fields["F"] = np.stack([raw["flags"].astype(np.int32) for raw in raws], axis=1)
    valid = np.stack([(raw["fault"] == R.NO_FAULT).all(axis=0) & usable
                      & ((raw["flags"] & R.OVERFLOW) == 0).all(axis=0) for raw in raws])
    sizes = np.stack([raw["size"].astype(np.int64) for raw in raws], axis=1)  # [2, K, C]
    if sizes_in[0] is None:
        sizes_out, nxt = [None], np.zeros((k, c), np.int32)
    else:
        pairs = sizes[0] * (1 << 32) + sizes[1]  # [K, C] one key per (h, w)
        keys, inverse = np.unique(np.where(valid, pairs, pairs[valid].min(initial=0)),
                                  return_inverse=True)
        sizes_out = [(int(key >> 32), int(key & 0xFFFFFFFF)) for key in keys]
        nxt = inverse.reshape(k, c).astype(np.int32)
    return Table(**fields, V=valid, nxt=nxt, sizes_out=sizes_out, block=index, **extra)


def _column_usable(index: np.ndarray, usable: np.ndarray, columns: int) -> np.ndarray:
    """Whether each distinct block is usable: the options of one block agree (options
    that are not networks share one placeholder block of their own)."""
    out = np.ones(columns, bool)
    out[index[~usable]] = False
    return out
