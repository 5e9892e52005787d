"""NAS-Bench-101: every unique cell (423,624) with its official module hash.

Generation follows google-research/nasbench ``scripts/generate_graphs.py``: for 2..7
vertices, every upper-triangular adjacency bit string (edge (x, y), x < y, is bit
``x + y*(y-1)/2``) whose graph has no dangling vertex and at most 9 edges, with every
labelling of the inner vertices by 3 ops, in that order; graphs that hash alike are one
cell, represented by the first enumerated. The hash is ``graph_util.hash_module``:
per vertex md5 of (out-degree, in-degree, label), then as many rounds as vertices of
md5(sorted in-neighbour hashes | sorted out-neighbour hashes | own), then md5 of the
sorted list.

Isomorphic graphs hash alike, and the hash does not merge non-isomorphic cells here (the
count comes out at the published 423,624), so the grouping is computed exactly with an
isomorphism-invariant canonical code (minimum over the 5! orders of the inner
vertices), vectorised per adjacency matrix, and md5 runs only once per cell.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..cache import cache_dir, write_atomic
from ..errors import SpecError

OPS = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
MAX_VERTICES, MAX_EDGES = 7, 9
COUNT = 423_624
LOG = logging.getLogger("rfsearch")  # with no handler configured, warnings go to stderr


def hash_module(matrix: np.ndarray, labeling: list[int]) -> str:
    """nasbench ``graph_util.hash_module`` (labels: -1 input, -2 output, op index)."""
    rows = np.asarray(matrix).tolist()
    n = len(labeling)
    ins = [[w for w in range(n) if rows[w][v]] for v in range(n)]
    outs = [[w for w in range(n) if rows[v][w]] for v in range(n)]
    md5 = hashlib.md5
    hashes = [md5(str((len(outs[v]), len(ins[v]), labeling[v])).encode()).hexdigest()
              for v in range(n)]
    for _ in range(n):
        hashes = [md5(("".join(sorted(hashes[w] for w in ins[v])) + "|"
                       + "".join(sorted(hashes[w] for w in outs[v])) + "|"
                       + hashes[v]).encode()).hexdigest() for v in range(n)]
    return md5(str(sorted(hashes)).encode()).hexdigest()


def _valid_matrices(n: int) -> np.ndarray:
    """[K, n, n] adjacency matrices of n vertices in bit-string order: at most MAX_EDGES
    edges, and every vertex but the output has an out-edge, every one but the input an
    in-edge (``graph_util.is_full_dag``); vectorised over all 2^(n(n-1)/2) strings."""
    pairs = [(x, y) for y in range(1, n) for x in range(y)]  # bit x + y(y-1)/2
    bits = np.arange(2 ** len(pairs), dtype=np.int64)
    edges = ((bits[:, None] >> np.arange(len(pairs))) & 1).astype(np.int8)  # [B, E]
    keep = edges.sum(axis=1) <= MAX_EDGES
    edges = edges[keep]
    m = np.zeros((len(edges), n, n), np.int8)
    xs, ys = np.array(pairs, np.int64).reshape(-1, 2).T if pairs else (np.zeros(0, int),) * 2
    m[:, xs, ys] = edges
    full = m[:, :-1].any(axis=2).all(axis=1) & m[:, :, 1:].any(axis=1).all(axis=1)
    return m[full]


def _canonical(m: np.ndarray, labelings: np.ndarray) -> tuple[int, np.ndarray]:
    """Isomorphism-invariant code of m with each labelling [L, n-2]: (matrix code, [L]
    label codes), the smallest over the orders of the inner vertices."""
    n = len(m)
    inner = list(itertools.permutations(range(1, n - 1)))
    perms = np.array([[0, *p, n - 1] for p in inner], np.int64)  # [P, n]
    permuted = m[perms[:, :, None], perms[:, None, :]].reshape(len(perms), -1)  # [P, n*n]
    weights = 1 << np.arange(n * n, dtype=np.int64)
    codes = permuted.astype(np.int64) @ weights  # [P]
    best = perms[codes == codes.min()]  # the orders giving the smallest matrix code
    labels = labelings[:, best[:, 1:-1] - 1]  # [L, B, n-2] labels in each best order
    lab_code = (labels * 3 ** np.arange(n - 2)[::-1]).sum(axis=-1).min(axis=1)  # [L]
    return int(codes.min()), lab_code


def generate() -> dict[str, np.ndarray]:
    """All unique cells: ``matrix`` [C, 7, 7] int8 (zero-padded), ``ops`` [C, 7] int8
    (-1 input, -2 output, 0..2 op, -3 padding), ``vertices`` [C], ``hash`` [C] (hex)."""
    matrices, labels, vertices, seen = [], [], [], set()
    for n in range(2, MAX_VERTICES + 1):
        labelings = np.array(list(itertools.product(range(len(OPS)), repeat=n - 2)),
                             np.int64).reshape(3 ** (n - 2), n - 2)
        for m in _valid_matrices(n):
            code, label_codes = _canonical(m, labelings)
            for j, lab in enumerate(label_codes.tolist()):
                if (n, code, lab) not in seen:
                    seen.add((n, code, lab))
                    matrices.append(m)
                    labels.append(labelings[j])
                    vertices.append(n)
    count = len(matrices)
    matrix = np.zeros((count, MAX_VERTICES, MAX_VERTICES), np.int8)
    ops = np.full((count, MAX_VERTICES), -3, np.int8)
    for i, (m, lab, n) in enumerate(zip(matrices, labels, vertices, strict=True)):
        matrix[i, :n, :n] = m
        ops[i, :n] = [-1, *lab, -2]
    hashes = np.array([hash_module(matrix[i, :n, :n], ops[i, :n].tolist())
                       for i, n in enumerate(vertices)])
    return {"matrix": matrix, "ops": ops, "vertices": np.array(vertices, np.int8),
            "hash": hashes}


CELLS = "cells-digest.npz"  # the cells, each hash kept as its 16-byte md5 digest
TEXT_CELLS = "cells.npz"  # earlier versions' file, hashes as hex text: read, never written


def cache_file(name: str = CELLS) -> Path:
    """A file of the NAS-Bench-101 cache, in the user cache directory."""
    return cache_dir() / "nasbench101" / name


def _cache_path(cache: Path | bool) -> Path | None:
    return cache_file() if cache is True else None if cache is False else Path(cache)


def cells(cache: Path | bool = True) -> dict[str, np.ndarray]:
    """The cells, from the cache file when present (else generated, and cached).
    ``cache``: True for :func:`cache_file`, a path, or False for no cache. The default
    file keeps hashes as md5 digests; without it, an earlier version's file of hex text
    (which that version may still read, so it stays) is read and the default written."""
    path = _cache_path(cache)
    legacy = cache_file(TEXT_CELLS) if cache is True else None
    if path is not None and path.exists():
        out = _read(path)
    elif legacy is not None and legacy.exists():
        out = _read(legacy)
        _save(path, out)
    else:  # a minute or so once: say so, since nothing else is printed meanwhile
        where = f"; cached in {path.parent}" if path is not None else ""
        LOG.warning("rfsearch: generating the %s NAS-Bench-101 cells (about a minute, once)%s",
                    f"{COUNT:,}", where)
        out = generate()
        if path is not None:
            _save(path, out)
    if len(out["hash"]) != COUNT:
        raise SpecError(f"NAS-Bench-101: expected {COUNT} cells, got {len(out['hash'])}")
    return out


def _read(path: Path) -> dict[str, np.ndarray]:
    """A cells file, hashes as text whichever way it keeps them."""
    with np.load(path) as data:
        out = {k: data[k] for k in data.files}
    if "digest" in out:
        out["hash"] = hex_text(out.pop("digest"))
    return out


def _save(path: Path, cells: dict) -> None:
    """Write a cells file (digests for hashes), whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in cells.items() if k != "hash"}
    arrays["digest"] = np.frombuffer(bytes.fromhex("".join(cells["hash"].tolist())),
                                     np.uint8).reshape(-1, 16)
    _write_npz(path, arrays)


def _write_npz(path: Path, arrays: dict) -> None:
    """``np.savez_compressed`` of ``arrays``, whole or not at all (:func:`write_atomic`)."""
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: savez would append .npz to the name
            np.savez_compressed(f, **arrays)

    write_atomic(path, write)


# Each byte's two hex digits as two UCS-4 code points, one 8-byte word per byte value.
HEX_PAIRS = np.array([[ord(a), ord(b)] for a in "0123456789abcdef" for b in "0123456789abcdef"],
                     np.uint32).view(np.uint64)[:, 0]


def hex_text(digests: np.ndarray) -> np.ndarray:
    """The lowercase hex text [C] (numpy U32) of md5 digests [C, 16] uint8: one table
    look-up per byte."""
    codes = np.take(HEX_PAIRS, digests)  # [C, 16] words: [C, 32] code points
    return codes.view(np.dtype(("U", 32)))[:, 0]


def _cell_block(matrix: np.ndarray, ops: list[str]) -> dict:
    """One NAS-Bench-101 cell as a block spec (see :func:`rfsearch.zoo.nasbench101`)."""
    from ..zoo.graph import Graph
    from ..zoo.nas import _nb101_cell

    g = Graph("cell")
    out = _nb101_cell(g, "c", matrix.tolist(), ops, Graph.INPUT)
    return g.spec(output=out)


ENCODED = "cells_encoded.npz"  # the encoded cell geometries, beside the cells
BATCH_ARRAYS = ("op", "kernel", "stride", "dilation", "pad_before", "pad_after", "preds",
                "length", "output")


class CellBlocks(Sequence):
    """The 423,624 cells as block specs, built on demand (``space.spec``), with the
    encoding of their distinct geometries precomputed (conv3x3 and maxpool3x3 share a
    window), so tabulating the space parses no spec. Each cell's spec has its own ops
    (cells of one geometry differ in them); the last ``KEEP`` built are kept."""

    KEEP = 4096

    def __init__(self, data: dict, geometry: np.ndarray, encoded: tuple,
                 layer_names: tuple | None = None):
        self.data, self.geometry, self.encoded = data, geometry, encoded
        self.layer_names = layer_names  # (vocabulary, codes [geometries, layers])
        self._built: dict[int, dict] = {}

    def __len__(self) -> int:
        return len(self.geometry)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = range(len(self))[i]  # a negative index counts from the end; bounds checked
        if i not in self._built:
            n = int(self.data["vertices"][i])
            names = ["input", *OPS, "output"]
            ops = ["input", *(names[int(x) + 1] for x in self.data["ops"][i, 1:n - 1]),
                   "output"]
            while len(self._built) >= self.KEEP:
                self._built.pop(next(iter(self._built)))
            self._built[i] = _cell_block(self.data["matrix"][i, :n, :n], ops)
        return self._built[i]


def _geometry(data: dict) -> tuple[np.ndarray, np.ndarray]:
    """(geometry id per cell, one representative cell per geometry): cells with the same
    adjacency and the same 1x1 / 3x3 vertices have the same receptive fields. Ids follow
    the order of (vertices, adjacency bits, 1x1 bits), packed into one int64 key."""
    n = len(data["matrix"])
    adjacency = np.packbits(data["matrix"].reshape(n, -1) != 0, axis=1, bitorder="little")
    adjacency = np.pad(adjacency, ((0, 0), (0, 8 - adjacency.shape[1]))).view("<u8")[:, 0]
    one_by_one = np.packbits(data["ops"] == 1, axis=1, bitorder="little")[:, 0]
    key = ((data["vertices"].astype(np.int64) << 56) | (adjacency.astype(np.int64) << 7)
           | one_by_one.astype(np.int64))
    _, first, geometry = np.unique(key, return_index=True, return_inverse=True)
    return geometry.reshape(-1), first


def _layer_major_copy(a: np.ndarray) -> np.ndarray:
    """``a`` [N, L, ...] stored layer-major, as Batch arrays are (kernel chunks read in place)."""
    if a.ndim < 2:
        return a
    out = np.moveaxis(np.empty((*a.shape[1:], a.shape[0]), a.dtype), -1, 0)
    out[...] = a
    return out


def _encoded(data: dict, cache: Path | None):
    """(geometry per cell, the Batch of the distinct cell geometries, their layer names as
    (vocabulary, codes)): cached next to the cells, with the geometry ids (a cache that
    lacks them gains them; one that lacks the names is rebuilt)."""
    path = None if cache is None else cache.with_name(ENCODED)
    stored = None
    if path is not None and path.exists():
        with np.load(path) as z:
            stored = {k: z[k] for k in z.files} if "name_codes" in z.files else None
    if stored is None:
        geometry, first = _geometry(data)
        stored = _encode(data, geometry, first)
    elif "geometry" not in stored:
        stored["geometry"] = _geometry(data)[0].astype(np.int32)
    else:
        path = None  # complete: nothing to write
    if path is not None:
        _write_npz(path, stored)
    batch = _batch(stored)
    geometry = stored["geometry"].astype(np.int64)
    names = (stored["name_vocab"].tolist(), stored["name_codes"])
    return geometry, (batch, geometry, np.ones(len(geometry), bool)), names


def _encode(data: dict, geometry: np.ndarray, first: np.ndarray) -> dict:
    """The arrays of the encoded cache: one cell spec per geometry, parsed and encoded."""
    from ..encode import encode_networks
    from ..spec import parse_network

    blocks = CellBlocks(data, geometry, None)
    batch = encode_networks([parse_network(blocks[int(i)], g) for g, i in enumerate(first)])
    vocab, codes = batch.layer_name_codes()
    return {**{k: getattr(batch, k) for k in BATCH_ARRAYS},
            "flags": np.array([batch.is_chain, batch.has_same, batch.has_whole]),
            "name_vocab": np.array(vocab), "name_codes": codes,
            "geometry": geometry.astype(np.int32)}


def _batch(stored: dict):
    """The Batch of the encoded cache's arrays, stored layer-major as the kernel reads."""
    from ..encode import PARAM_FIELDS, Batch, squared

    arrays = {k: _layer_major_copy(stored[k]) for k in BATCH_ARRAYS}
    arrays.update(squared({k: arrays[k] for k in PARAM_FIELDS}))
    flags = stored["flags"].tolist()
    count = len(arrays["length"])
    return Batch(**arrays, names=np.array([f"cell{g}" for g in range(count)], object),
                 is_chain=bool(flags[0]), has_same=bool(flags[1]), has_whole=bool(flags[2]))


def nasbench101_size() -> int:
    """Unique cells (module_hash) of NAS-Bench-101."""
    return COUNT


def nasbench101(cache: Path | bool = True):
    """The space of all 423,624 cells (``candidate_id``: generation order, key
    ``module_hash``) in the NAS-Bench-101 skeleton: stem 3x3, 3 stacks of 3 cells
    joined by 2x2/2 max pools ('same'), input 32. conv3x3 and maxpool3x3 share one
    window (3x3, stride 1, 'same'), so cells are tabulated once per geometry."""
    from ..zoo.graph import Graph
    from .space import Slot, Space, Variable

    data = cells(cache)
    geometry, encoded, names = _encoded(data, _cache_path(cache))
    blocks = CellBlocks(data, geometry, encoded, names)
    stem, pool = Graph("stem"), Graph("pool")
    stem.conv("stem", 3, 1, "same")
    pool.maxpool("downsample", 2, 2, "same")
    slots = [Slot("stem", (), (stem.spec(),))]
    for stack in range(3):
        if stack:
            slots.append(Slot(f"downsample{stack}", (), (pool.spec(),)))
        slots += [Slot(f"stack{stack}.cell{c}", (0,), blocks) for c in range(3)]
    return Space("nasbench101", [Variable("module_hash", tuple(data["hash"].tolist()))], slots,
                 input_size=(32, 32), definition={"space": "nasbench101", "cells": COUNT},
                 description="NAS-Bench-101 cells in their skeleton")
