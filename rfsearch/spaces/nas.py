"""NAS benchmark spaces with their native keys: NAS-Bench-201 and NATS-Bench (size).

``nasbench201``: ``candidate_id`` is the official architecture index (``nb201_index``):
the 15,625 cells in product order (node-major; within a node the edge from node 0
varies slowest; ops none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3), then
``random.seed(88); random.shuffle``. The cell is tied across all 15 cell positions of
the skeleton (:func:`rfsearch.zoo.nasbench201`); cells with no input-to-output path
are flagged ``valid == False``.

``natsbench-sss``: NATS-Bench's size space, 8 channel counts for each of 5 layers
(``C1:C2:C3:C4:C5``, index in product order) around its fixed cell, in xautodl's
``InferTinyCellNet`` skeleton with one cell per stage. Channels do not change the
geometry, so every candidate has the same receptive field; the space is there so that
RF columns join NATS-Bench tables on their native key.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import cache, cached_property

import numpy as np

from ..errors import SpecError
from ..zoo.graph import Graph
from ..zoo.nas import NB201_OPS, _nb201_cell, _nb201_reduction, parse_arch_str
from .space import Slot, Space, Variable, mixed_radix

NB201_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
SSS_CHANNELS = (8, 16, 24, 32, 40, 48, 56, 64)
SSS_CELL = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
            "+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")


@cache
def nb201_edge_ops() -> np.ndarray:
    """[15,625, 6] op index (into NB201_OPS) of each edge (NB201_EDGES order), in official
    index order: the product of the ops over the edges, shuffled as the benchmark did."""
    order = list(range(nasbench201_size()))
    random.Random(88).shuffle(order)
    return mixed_radix(np.array(order), [len(NB201_OPS)] * len(NB201_EDGES))


def nb201_arch_strings() -> tuple[str, ...]:
    """The 15,625 NAS-Bench-201 arch strings in official index order."""
    archs = []
    for ops in nb201_edge_ops().tolist():
        edges = {edge: NB201_OPS[k] for edge, k in zip(NB201_EDGES, ops, strict=True)}
        nodes = ["|" + "|".join(f"{edges[(j, i)]}~{i}" for i in range(j)) + "|"
                 for j in (1, 2, 3)]
        archs.append("+".join(nodes))
    return tuple(archs)


WINDOW_CLASS = (0, 1, 2, 3, 3)  # per op: none, skip, 1x1, and the 3x3 window conv and pool share


def nb201_geometry(ops: np.ndarray) -> np.ndarray:
    """[N] geometry class of cells with edge ops [N, 6] (-1: no input-to-output path).
    A class fixes each edge's op up to the shared 3x3 window and drops the edges that
    ``_nb201_cell`` drops (``none``, or from a node that is zero), so cells of one class
    have the same layers, names, inputs and windows."""
    kind = np.asarray(WINDOW_CLASS)[ops]  # [N, 6]
    live = {0: np.ones(len(ops), bool)}
    kept = np.zeros_like(kind)
    for e, (j, i) in enumerate(NB201_EDGES):
        kept[:, e] = np.where(live[i], kind[:, e], 0)
        live[j] = live.get(j, np.zeros(len(ops), bool)) | (kept[:, e] > 0)
    code = kept @ (4 ** np.arange(len(NB201_EDGES)))
    return np.where(live[3], code, -1)


class NB201Cells(Sequence):
    """The cells of :func:`nb201_arch_strings` as block specs (None: no path), built on
    demand (``space.spec``); tabulation encodes one cell per geometry class
    (:func:`nb201_geometry`), and rows name layers by that cell (the names agree)."""

    def __init__(self, archs: tuple[str, ...]):
        self.archs = archs
        _, self.first, self.geometry = np.unique(nb201_geometry(nb201_edge_ops()),
                                                 return_index=True, return_inverse=True)

    def __len__(self) -> int:
        return len(self.archs)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return _cell(self.archs[range(len(self))[i]])

    @cached_property
    def encoded(self) -> tuple:
        """(Batch of one cell per class, the column of each cell, usable per cell)."""
        from ..search.tables import encode_blocks

        batch, column, usable = encode_blocks(tuple(self[int(i)] for i in self.first))
        return batch, column[self.geometry], usable[self.geometry]

    @cached_property
    def layer_names(self) -> tuple:
        return self.encoded[0].layer_name_codes()


def _stem() -> dict:
    g = Graph("stem")
    g.conv("stem", 3, 1, 1)
    return g.spec()


def _cell(arch: str) -> dict | None:
    """One cell as a block spec, or None when it has no input-to-output path."""
    g = Graph("cell")
    try:
        _nb201_cell(g, "c", parse_arch_str(arch), Graph.INPUT)
    except SpecError:
        return None
    return g.spec()


def _reduction() -> dict:
    g = Graph("reduction")
    _nb201_reduction(g, "r", Graph.INPUT)
    return g.spec()


def _positions(cells_per_stage: int) -> list[tuple[str, bool]]:
    """(slot name, is a reduction) after the stem: 3 stages joined by 2 reductions."""
    kinds = [False] * cells_per_stage + [True] + [False] * cells_per_stage + [True] + [
        False] * cells_per_stage
    return [(f"cells.{i}", red) for i, red in enumerate(kinds)]


def nasbench201_size() -> int:
    """Candidates of NAS-Bench-201: one op of five on each of six edges."""
    return len(NB201_OPS) ** len(NB201_EDGES)


def natsbench_sss_size() -> int:
    """Candidates of the NATS-Bench size space: a channel count for each of five layers."""
    return len(SSS_CHANNELS) ** 5


@cache
def _nb201_cells() -> NB201Cells:
    return NB201Cells(nb201_arch_strings())  # one per process: its encoding is kept


def nasbench201() -> Space:
    archs = nb201_arch_strings()
    blocks = _nb201_cells()
    slots = [Slot("stem", (), (_stem(),))] + [
        Slot(name, (), (_reduction(),)) if red else Slot(name, (0,), blocks)
        for name, red in _positions(5)]
    return Space("nasbench201", [Variable("arch_str", archs)], slots, input_size=(32, 32),
                 definition={"space": "nasbench201", "skeleton": "5 cells x 3 stages"},
                 description="NAS-Bench-201 cells in their skeleton",
                 keys=lambda ids: {"nb201_index": np.asarray(ids, np.int64)},
                 id_aliases=("nb201_index",))


def natsbench_sss() -> Space:
    cell, reduction, n = _cell(SSS_CELL), _reduction(), len(SSS_CHANNELS)
    variables = [Variable(f"C{i + 1}", SSS_CHANNELS) for i in range(5)]
    slots = [Slot("stem", (), (_stem(),))] + [  # channel C_k belongs to layer k
        Slot(name, (k,), ((reduction if red else cell),) * n)
        for k, (name, red) in enumerate(_positions(1))]

    def keys(ids):
        digits = mixed_radix(ids, [n] * 5)
        channels = np.asarray(SSS_CHANNELS)[digits].astype(str)
        return {"sss_index": np.asarray(ids, np.int64),
                "sss_key": np.array([":".join(row) for row in channels], dtype=object)}
    return Space("natsbench-sss", variables, slots, input_size=(32, 32),
                 definition={"space": "natsbench-sss", "cell": SSS_CELL},
                 description="NATS-Bench size search space", keys=keys,
                 id_aliases=("sss_index",))
