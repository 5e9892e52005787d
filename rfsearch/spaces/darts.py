"""DARTS (Liu, Simonyan, Yang 2019): the CIFAR evaluation network of a sampled genotype.

A genotype names, for a normal and a reduction cell, two (operation, input) pairs for
each of 4 intermediate nodes; a node's inputs are the two cell inputs (0, 1: the
previous two cells) or earlier nodes. Choices per node i: C(i+2, 2) input pairs x 7^2
operations ('none' excluded), 1.04e9 per cell, 1.08e18 genotypes in all. The network:
stem 3x3, 20 cells (reductions at 1/3 and 2/3 of the depth, stride 2 on the edges that
read the cell inputs), each cell input preprocessed by a 1x1 conv, or by
FactorizedReduce when the cell before the previous one had twice the resolution;
cell output = concat of the 4 nodes; input 32.

Geometry of the operations: sep_conv_kxk is two kxk depthwise convs (the first strided),
dil_conv_kxk one kxk conv with dilation 2, pools 3x3, skip_connect the identity or, when
strided, FactorizedReduce: two 1x1/2 convs, the second on the input shifted by one pixel,
concatenated. The shifted path reads pixel 2i+1 only; it is written as a 2x2/2 window,
which gives the same union, the same shortest path (through the unshifted 1x1) and the
same misalignment by half a pixel. Every cell reads the two before it, so the space is
not a chain of blocks: candidates are encoded as one DAG batch of a fixed skeleton
(:mod:`.darts_batch`), or built spec by spec where a search needs the analysis columns.
"""

from __future__ import annotations

import functools
import math

import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SpecError
from ..zoo.graph import Graph
from .darts_batch import darts_batch
from .darts_genes import CELLS, NODE_OPTIONS, OPS, STEPS
from .space import Space, Variable, mixed_radix, text_column


def _factorized_reduce(g: Graph, name: str, x: str) -> str:
    a = g.conv(f"{name}.conv_1", 1, 2, inputs=x)
    b = g.conv(f"{name}.conv_2", 2, 2, inputs=x)  # the 1-pixel-shifted 1x1/2 path
    return g.concat(name, [a, b])


def _op(g: Graph, name: str, op: str, x: str, stride: int) -> str:
    if op == "skip_connect":
        return g.act(name, "identity", x) if stride == 1 else _factorized_reduce(g, name, x)
    if op.endswith("pool_3x3"):
        kind = g.maxpool if op.startswith("max") else g.avgpool
        return kind(name, 3, stride, 1, inputs=x)
    k = int(op[-1])
    if op.startswith("sep_conv"):
        g.conv(f"{name}.dw1", k, stride, k // 2, inputs=x)
        return g.conv(f"{name}.dw2", k, 1, k // 2)
    return g.conv(name, k, stride, k - 1, dilation=2, inputs=x)  # dil_conv


def _cell(g: Graph, name: str, s0: str, s1: str, genes, reduction: bool) -> str:
    states = [s0, s1]
    for i, pair in enumerate(genes):
        terms = [_op(g, f"{name}.n{i}.{j}", op, states[src], 2 if reduction and src < 2 else 1)
                 for j, (op, src) in enumerate(pair)]
        states.append(g.add(f"{name}.n{i}", terms))
    return g.concat(name, states[2:])


def _nodes(genes) -> list:
    """Per node its two (op, input) pairs, from DARTS' flat list of 8 or already paired."""
    genes = list(genes)
    if len(genes) == 2 * STEPS and isinstance(genes[0][0], str):
        return [(tuple(genes[2 * i]), tuple(genes[2 * i + 1])) for i in range(STEPS)]
    return genes


def network(normal, reduce, cells: int = CELLS) -> dict:
    """The evaluation network of a genotype: per cell type DARTS' flat list of 8
    (op, input) pairs, or 4 pairs of them."""
    normal, reduce = _nodes(normal), _nodes(reduce)
    g = Graph("darts")
    stem = g.conv("stem", 3, 1, 1)
    s0 = s1 = stem
    reductions = {cells // 3, 2 * cells // 3}
    prev_reduction = False
    for k in range(cells):
        reduction = k in reductions
        p0 = (_factorized_reduce(g, f"cells.{k}.pre0", s0) if prev_reduction
              else g.conv(f"cells.{k}.pre0", 1, inputs=s0))
        p1 = g.conv(f"cells.{k}.pre1", 1, inputs=s1)
        out = _cell(g, f"cells.{k}", p0, p1, reduce if reduction else normal, reduction)
        s0, s1, prev_reduction = s1, out, reduction
    return g.spec(output=s1)


def genotype_id(normal, reduce) -> int:
    """The candidate_id of a genotype given as DARTS lists of 8 (op, input) pairs."""
    digits = []
    for genes in (normal, reduce):
        if len(genes) != 2 * STEPS:
            raise SpecError(f"a DARTS cell has {2 * STEPS} (op, input) pairs, got {len(genes)}")
        for i in range(STEPS):
            pair = tuple(sorted((tuple(genes[2 * i]), tuple(genes[2 * i + 1])),
                                key=lambda g: g[1]))
            try:
                digits.append(NODE_OPTIONS[i].index(pair))
            except ValueError:
                raise SpecError(f"node {i}: {pair} is not a DARTS choice (distinct inputs "
                                f"below {i + 2}, ops {', '.join(OPS)})") from None
    out = 0
    for i, d in enumerate(digits):
        out = out * len(NODE_OPTIONS[i % STEPS]) + d
    return out


def darts_size() -> int:
    """Genotypes: one option per intermediate node, in the normal and the reduction cell."""
    return math.prod(len(options) for options in NODE_OPTIONS) ** 2


def _label(pair) -> str:
    return ",".join(f"{op}~{src}" for op, src in pair)


@functools.cache
def _fragments() -> list[pa.Array]:
    """Per node, per option: its two (op, input) pairs as DARTS' Genotype prints them."""
    return [pa.array([", ".join(f"('{op}', {src})" for op, src in pair) for pair in options])
            for options in NODE_OPTIONS]


def genotype_keys(ids, radices) -> dict:
    """The ``genotype`` key column of ``ids`` [N]: DARTS' Genotype repr, joined in Arrow
    (no loop per candidate)."""
    digits = mixed_radix(ids, radices)  # [N, 2 * STEPS]
    frags = _fragments()
    parts: list = []
    heads = ("Genotype(normal=[", "], normal_concat=range(2, 6), reduce=[")
    for c, head in enumerate(heads):
        parts.append(pa.scalar(head))
        for i in range(STEPS):
            parts += [pa.scalar(", ")] if i else []
            parts.append(frags[i].take(digits[:, c * STEPS + i]))
    parts.append(pa.scalar("], reduce_concat=range(2, 6))"))
    joined = pc.binary_join_element_wise(*parts, "")
    return {"genotype": text_column(joined)}


def darts() -> Space:
    variables = [Variable(f"{cell}.node{i}", tuple(_label(p) for p in NODE_OPTIONS[i]))
                 for cell in ("normal", "reduce") for i in range(STEPS)]

    def genes(digits):
        picked = [NODE_OPTIONS[i % STEPS][int(d)] for i, d in enumerate(digits)]
        return picked[:STEPS], picked[STEPS:]

    def build(digits) -> dict:
        normal, reduce = genes(digits)
        return network(normal, reduce)

    radices = [v.size for v in variables]

    def keys(ids):
        return genotype_keys(ids, radices)

    def batch(ids):
        return darts_batch(ids, radices)

    size = darts_size()
    return Space("darts", variables, [], input_size=(32, 32),
                 definition={"space": "darts", "ops": OPS, "cells": CELLS, "size": size},
                 description="DARTS genotypes in the 20-cell CIFAR network (sampling)",
                 keys=keys, builder=build, batcher=batch)
