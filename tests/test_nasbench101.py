"""NAS-Bench-101: the exact cell enumeration, the official module hash, the space.

Golden values: 423,624 unique cells (google-research/nasbench generate_graphs.py and
the NAS-Bench-101 paper); the README example cell hashes to
28cfc7874f6d200472e1a9dcd8650aa0 (the hash google-research's NAS-Bench-101 tools use for
that cell). In a clean checkout the first test generates the cache (about 40 s).
"""

import numpy as np
import pytest

import rfsearch
from rfsearch import search
from rfsearch.cache import ENV_CACHE
from rfsearch.spaces import nasbench101 as nb101

README_MATRIX = np.array([[0, 1, 1, 1, 0, 1, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                          [0, 0, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1],
                          [0, 0, 0, 0, 0, 0, 0]])
README_LABELS = [-1, 1, 0, 0, 0, 2, -2]  # conv1x1, conv3x3 x3, maxpool3x3


@pytest.fixture(scope="module")
def cells():
    return nb101.cells()


def test_hash_module_matches_the_official_hash():
    assert nb101.hash_module(README_MATRIX, README_LABELS) == "28cfc7874f6d200472e1a9dcd8650aa0"


def test_hash_is_invariant_under_reordering_the_inner_vertices():
    perm = [0, 5, 3, 2, 4, 1, 6]
    m = README_MATRIX[np.ix_(perm, perm)]
    labels = [README_LABELS[p] for p in perm]
    assert nb101.hash_module(m, labels) == nb101.hash_module(README_MATRIX, README_LABELS)


def test_the_enumeration_finds_exactly_423624_cells(cells):
    assert len(cells["hash"]) == nb101.COUNT == 423_624
    assert len(set(cells["hash"].tolist())) == 423_624
    assert "28cfc7874f6d200472e1a9dcd8650aa0" in set(cells["hash"].tolist())
    assert (np.bincount(cells["vertices"])[2:] > 0).all()  # 2 .. 7 vertices
    edges = cells["matrix"].reshape(len(cells["hash"]), -1).sum(axis=1)
    assert edges.max() == 9 and np.triu(cells["matrix"], 1).sum() == cells["matrix"].sum()


def test_stored_hashes_are_recomputable(cells):
    rng = np.random.default_rng(0)
    for i in rng.choice(len(cells["hash"]), 50, replace=False):
        n = int(cells["vertices"][i])
        m, labels = cells["matrix"][i, :n, :n], cells["ops"][i, :n].tolist()
        assert nb101.hash_module(m, labels) == cells["hash"][i]


def test_space_rows_agree_with_evaluate(cells):
    space = nb101.nasbench101()
    assert space.size == 423_624
    df = search(space, sample=64, seed=3)
    specs = [space.spec(int(i)) for i in df["candidate_id"]]
    want = rfsearch.evaluate(specs, input_size=32)
    for column in ("rf_h", "rf_min_h", "stride_h", "padding_h", "out_h", "aligned"):
        assert df[column].tolist() == want[column].tolist(), column
    assert df["module_hash"].tolist() == [cells["hash"][i] for i in df["candidate_id"]]


def test_each_cells_spec_has_its_own_ops(cells):
    """Cells of one geometry (a 3x3 conv where another has a 3x3 max pool) share their
    tabulated summary but not their spec: each spec carries the cell's own ops."""
    space = nb101.nasbench101()
    geometry = space.slots[1].blocks.geometry
    kind = {0: "conv", 1: "conv", 2: "maxpool"}
    first = np.unique(geometry, return_index=True)[1][geometry]  # each geometry's first
    twins = np.flatnonzero((cells["ops"] != cells["ops"][first]).any(axis=1))
    assert twins.size
    for i in (first[twins[0]], twins[0], twins[-1], first[twins[-1]]):
        n = int(cells["vertices"][i])
        want = [kind[int(x)] for x in cells["ops"][i, 1:n - 1]]
        layers = [layer for layer in space.spec(i)["layers"]
                  if layer["name"].startswith("stack0.cell0/c/vertex")
                  and not layer["name"].endswith(".sum")]
        assert [layer["op"] for layer in layers] == want, i


def test_an_earlier_versions_cache_is_read_and_left_for_it(cells, tmp_path, monkeypatch):
    """The cells file keeps md5 digests (16 bytes, not 32 UCS-4 characters) under its own
    name; an earlier version's file (hashes as text) is read when it is the only one, and
    stays for that version. An encoded cache without the geometry ids gains them."""
    monkeypatch.setenv(ENV_CACHE, str(tmp_path))
    legacy = nb101.cache_file(nb101.TEXT_CELLS)
    legacy.parent.mkdir()
    np.savez_compressed(legacy, **cells)  # the earlier format: 'hash' as text
    before = legacy.stat().st_mtime_ns
    assert nb101.cells()["hash"].tolist() == cells["hash"].tolist()
    assert legacy.stat().st_mtime_ns == before
    with np.load(nb101.cache_file()) as written:
        assert sorted(written.files) == ["digest", "matrix", "ops", "vertices"]
        digest = written["digest"]
    assert digest.shape == (nb101.COUNT, 16) and digest.dtype == np.uint8
    assert bytes(digest[7]).hex() == cells["hash"][7]
    assert nb101.cells(legacy)["hash"].tolist() == cells["hash"].tolist()  # a path: as it is
    legacy.unlink()
    again = nb101.cells()
    assert again["hash"].dtype == cells["hash"].dtype
    assert all((again[k] == cells[k]).all() for k in cells)
    monkeypatch.undo()
    with np.load(nb101.cache_file(nb101.ENCODED)) as z:
        encoded = {k: z[k] for k in z.files if k != "geometry"}
    np.savez_compressed(tmp_path / nb101.ENCODED, **encoded)  # without the geometry ids
    geometry, (batch, _, _), names = nb101._encoded(cells, tmp_path / nb101.CELLS)
    with np.load(tmp_path / nb101.ENCODED) as z:
        assert (z["geometry"] == geometry).all() and len(batch) == geometry.max() + 1
    assert names[1].shape[0] == len(batch)


def test_generating_the_cells_says_so_once(cells, tmp_path, monkeypatch, caplog):
    """Generation takes about a minute with nothing else printed: one warning says why
    (on standard error where logging is not configured)."""
    monkeypatch.setattr(nb101, "generate", lambda: dict(cells))
    path = tmp_path / "cells.npz"
    with caplog.at_level("WARNING", logger="rfsearch"):
        nb101.cells(path)
        nb101.cells(path)
    assert [r.getMessage() for r in caplog.records] == [
        "rfsearch: generating the 423,624 NAS-Bench-101 cells (about a minute, once); "
        f"cached in {tmp_path}"]
