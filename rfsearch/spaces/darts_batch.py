"""DARTS genotypes as one :class:`~rfsearch.encode.Batch`, without a loop per candidate.

Every DARTS network (:func:`rfsearch.spaces.darts.network`) is the same skeleton: a
stem, 20 cells, in each the preprocessing of its two inputs, 4 nodes that each add two
edges, and the concat of the nodes. A genotype only picks, per node, the two edges'
operations and inputs. So the skeleton is numbered once (:func:`skeleton`): every node
of the encoding has a fixed position and the fixed nodes fixed values; the nodes a
choice sets have a table over the choice's options. A batch of ids is then the
skeleton broadcast over the batch, one gather per choice variable for the fields (the
same in every cell of a type) and one per (cell, node) block for the input slots, indexed
by the ids' mixed-radix digits (:func:`darts_batch`).

The encoding is not the spec's layer list, but every network-level result is the
same (geometry, alignment, validity); only what names a layer differs (error texts,
per-layer rows, the analysis columns, which count layers):

* a 1x1 stride-1 convolution (the cells' preprocessing) changes nothing: left out, its
  readers read its input;
* a separable convolution (two k x k depthwise convs, the first of stride s, both padded
  k // 2) is one window of kernel ``k + (k - 1) s`` and padding ``(k // 2)(1 + s)``:
  the same region, shortest path, jump and map size;
* every edge has a fixed number of nodes: 3 in reduction cells (FactorizedReduce: two
  strided convs and their concat), else 1; a one-layer operation there is the layer, an
  identity of it and the concat of the two (the layer again), so the third node is
  always the concat of the first two and only those two are chosen;
* a cell's concat of 4 nodes is a tree of 2-input concats (same union, alignment and
  size checks), so every node has at most 2 input slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from .. import ops
from ..encode import Batch, square_view
from ..names import numbered
from .darts_genes import CELLS, NODE_OPTIONS, STEPS
from .space import mixed_radix

# A node: (op code, kernel, stride, dilation, padding) and its two input slots; a slot
# is an absolute node index, -1 for none, "x" for the edge's input or ("slot", t) for
# node t of the same edge (resolved where the block is placed).
FIELDS = ("op", "kernel", "stride", "dilation", "pad")
IDENTITY = (ops.ELEMENTWISE, 1, 1, 1, 0)
MERGE = (ops.CONCAT, 1, 1, 1, 0)
EDGE_INPUT = "x"


def _edge(op: str, strided: bool) -> list[tuple]:
    """The nodes of one edge operation, each ``(params, (slot, slot))``."""
    s = 2 if strided else 1
    x = EDGE_INPUT
    if op == "skip_connect":
        if not strided:
            return [(IDENTITY, (x, -1))]
        return [((ops.CONV, 1, 2, 1, 0), (x, -1)), ((ops.CONV, 2, 2, 1, 0), (x, -1)),
                (MERGE, (("slot", 0), ("slot", 1)))]
    if op.endswith("pool_3x3"):
        code = ops.MAXPOOL if op.startswith("max") else ops.AVGPOOL
        return [((code, 3, s, 1, 1), (x, -1))]
    k = int(op[-1])
    if op.startswith("sep_conv"):  # two depthwise k x k convs, the first strided
        return [((ops.CONV, k + (k - 1) * s, s, 1, (k // 2) * (1 + s)), (x, -1))]
    return [((ops.CONV, k, s, 2, k - 1), (x, -1))]  # dil_conv


def _slots(op: str, strided: bool, count: int) -> list[tuple]:
    """:func:`_edge` padded to ``count`` (1 or 3) nodes: an identity of the layer, then
    the concat of the layer and that identity (the layer again). The third node is then
    always the concat of the first two."""
    nodes = _edge(op, strided)
    if len(nodes) < count:
        nodes += [(IDENTITY, (("slot", 0), -1)), (MERGE, (("slot", 0), ("slot", 1)))]
    return nodes


@dataclass(frozen=True)
class Block:
    """The nodes of one (cell, node) block that its variable ``var`` chooses: nodes
    ``start .. start + W``, whose fields are ``Skeleton.params[var]`` and whose first
    input slots are ``preds``, per option."""

    start: int
    var: int
    preds: np.ndarray  # [W, R] int32


@dataclass(frozen=True)
class Skeleton:
    """The fixed numbering: every node's values where no choice changes them, and the
    blocks that choices fill."""

    values: np.ndarray  # [F, L] int8
    preds: np.ndarray  # [L, 2] int32
    params: tuple[np.ndarray, ...]  # per variable [F, W, R] int8
    blocks: tuple[Block, ...]
    output: int

    @property
    def depth(self) -> int:
        return int(self.values.shape[1])


class _Builder:
    """Appends nodes to the skeleton."""

    def __init__(self, variables: int):
        self.values: list[tuple] = [(ops.INPUT, 1, 1, 1, 0)]
        self.preds: list[tuple] = [(-1, -1)]
        self.blocks: list[Block] = []
        self.params: list[np.ndarray | None] = [None] * variables

    def add(self, params: tuple, preds: tuple) -> int:
        self.values.append(params)
        self.preds.append(preds)
        return len(self.values) - 1

    def factorized_reduce(self, x: int) -> int:
        a = self.add((ops.CONV, 1, 2, 1, 0), (x, -1))
        b = self.add((ops.CONV, 2, 2, 1, 0), (x, -1))
        return self.add(MERGE, (a, b))


def _block_tables(i: int, states: list[int], start: int, reduction: bool):
    """Node i's options as tables: the W chosen nodes' fields [F, W, R] and first input
    slots [W, R], for a block at ``start`` (edge a's first nodes, edge b's, then each
    edge's concat in a reduction cell)."""
    options = NODE_OPTIONS[i]
    count = 3 if reduction else 1
    chosen = 2 * min(count, 2)
    where = (lambda j, t: start + 2 * j + t) if reduction else (lambda j, t: start + j)
    params = np.zeros((len(FIELDS), chosen, len(options)), np.int8)  # [F, W, R]
    preds = np.zeros((chosen, len(options)), np.int32)  # [W, R]
    for r, pair in enumerate(options):
        for j, (op, src) in enumerate(pair):
            for t, (values, (first, _)) in enumerate(_slots(op, reduction and src < 2,
                                                           count)[:chosen // 2]):
                params[:, where(j, t) - start, r] = values
                preds[where(j, t) - start, r] = (states[src] if first == EDGE_INPUT
                                                 else where(j, first[1]))
    return params, preds


def _block(g: _Builder, var: int, i: int, states: list[int], reduction: bool) -> int:
    """Place node i of a cell (its options' tables), return its add node."""
    start = len(g.values)
    params, preds = _block_tables(i, states, start, reduction)
    g.params[var] = params
    for t in range(preds.shape[0]):  # option 0 stands in: each batch writes its own
        g.add(tuple(int(v) for v in params[:, t, 0]), (int(preds[t, 0]), -1))
    if reduction:  # each edge's third node: the concat of its first two
        ends = [g.add(MERGE, (start + 2 * j, start + 2 * j + 1)) for j in range(2)]
    else:
        ends = [start, start + 1]
    g.blocks.append(Block(start, var, preds))
    return g.add((ops.ADD, 1, 1, 1, 0), tuple(ends))


def _cell(g: _Builder, s0: int, s1: int, reduction: bool, prev_reduction: bool) -> int:
    """Place a cell reading nodes s0 and s1; return its output node."""
    states = [g.factorized_reduce(s0) if prev_reduction else s0, s1]  # 1x1 convs left out
    offset = STEPS if reduction else 0
    for i in range(STEPS):
        states.append(_block(g, offset + i, i, states, reduction))
    left = g.add(MERGE, (states[2], states[3]))
    right = g.add(MERGE, (states[4], states[5]))
    return g.add(MERGE, (left, right))


@cache
def skeleton(cells: int = CELLS) -> Skeleton:
    """The numbered skeleton of the DARTS network (see the module docstring)."""
    g = _Builder(2 * STEPS)
    stem = g.add((ops.CONV, 3, 1, 1, 1), (0, -1))
    s0 = s1 = stem
    reductions = {cells // 3, 2 * cells // 3}
    prev_reduction = False
    for k in range(cells):
        reduction = k in reductions
        out = _cell(g, s0, s1, reduction, prev_reduction)
        s0, s1, prev_reduction = s1, out, reduction
    values = np.array(g.values, np.int8).T  # [F, L]
    return Skeleton(values, np.array(g.preds, np.int32), tuple(g.params), tuple(g.blocks), s1)


def _fill(sk: Skeleton, digits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Layer-major fields [F, L, N] and input slots [L, 2, N] for digits [N, V]: the
    skeleton's values, then each block's chosen nodes (a gather per variable for the
    fields, shared by the cells it chooses; a gather per block for the input slots)."""
    n = digits.shape[0]
    values = np.empty((len(FIELDS), sk.depth, n), np.int8)  # [F, L, N]
    np.copyto(values, sk.values[:, :, None])
    preds = np.empty((sk.depth, 2, n), np.int32)  # [L, 2, N]
    np.copyto(preds, sk.preds[:, :, None])
    picks = np.ascontiguousarray(digits.T)  # [V, N]
    chosen = [np.take(table, picks[v], axis=2, mode="clip")  # [F, W, N]
              for v, table in enumerate(sk.params)]
    for block in sk.blocks:
        rows = slice(block.start, block.start + block.preds.shape[0])
        values[:, rows] = chosen[block.var]
        preds[rows, 0] = np.take(block.preds, picks[block.var], axis=1, mode="clip")
    return values, preds


def darts_batch(ids: np.ndarray, radices: np.ndarray, name: str = "darts") -> Batch:
    """The networks of DARTS candidates ``ids`` [N] as one Batch (square, explicit
    padding, 2 input slots): geometry and validity equal those of their specs."""
    ids = np.asarray(ids, np.int64)
    sk = skeleton()
    values, preds = _fill(sk, mixed_radix(ids, radices))
    op, kernel, stride, dilation, pad = values
    n = len(ids)
    pad_view = square_view(pad[:, None, :])
    return Batch(
        op=op.T, kernel=square_view(kernel[:, None, :]), stride=square_view(stride[:, None, :]),
        dilation=square_view(dilation[:, None, :]), pad_before=pad_view, pad_after=pad_view,
        preds=np.moveaxis(preds, -1, 0), length=np.full(n, sk.depth, np.int32),
        output=np.full(n, sk.output, np.int32), names=numbered(f"{name}#", ids),
        is_chain=False, has_same=False, has_whole=False,
    )
