"""DARTS as one DAG Batch (rfsearch.spaces.darts_batch): every network row, and every
search row, equals the per-spec path's (Space.spec, then evaluate)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

import rfsearch
from rfsearch.encode import encode
from rfsearch.search.ahead import Ahead
from rfsearch.search.runner import prepare
from rfsearch.search.sampling import sample_ids
from rfsearch.spaces import builtin
from rfsearch.spaces.darts import NODE_OPTIONS, OPS, STEPS, genotype_id
from rfsearch.spaces.darts_batch import darts_batch, skeleton

SIZES = [None, 32, 224, 33, (32, 48)]  # odd maps: FactorizedReduce fails
SAMPLED = 1000


def _uniform(op: str) -> int:
    """The genotype with every edge ``op``, inputs 0 and 1 (0 and 2 for the later
    nodes' second edge), in both cells."""
    genes = [(op, 0), (op, 1)] * 2 + [(op, 0), (op, 2)] * 2
    return genotype_id(genes, genes)


@pytest.fixture(scope="module")
def space():
    return builtin("darts")


@pytest.fixture(scope="module")
def ids(space):
    extremes = [0, space.size - 1, *map(_uniform, OPS)]
    return np.unique(np.concatenate([sample_ids(0, space.size, 0, SAMPLED, 11), extremes]))


@pytest.fixture(scope="module")
def reference(space, ids):
    """The per-spec encoding of every candidate (specs built and validated one by one)."""
    return encode([space.spec(int(i)) for i in ids])


def test_skeleton_is_fixed_and_small():
    sk = skeleton()
    assert sk.depth == 340 and sk.output == sk.depth - 1
    assert sk.preds.shape == (340, 2) and (sk.preds < np.arange(340)[:, None]).all()
    assert [b.var for b in sk.blocks[:8]] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert {t.shape[2] for t in sk.params} == {len(o) for o in NODE_OPTIONS}


def test_batch_card(space, ids):
    b = darts_batch(ids, space.radices)
    assert len(b) == len(ids) and b.depth == 340 and b.fan_in == 2 and b.square
    assert not (b.is_chain or b.has_same or b.has_whole)
    assert b.names[0] == f"darts#{ids[0]}" and b.preds.dtype == np.int32
    assert (b.preds[:, 1:] < np.arange(1, 340)[None, :, None]).all()  # topological
    assert len(darts_batch(np.zeros(0, np.int64), space.radices)) == 0


@pytest.mark.parametrize("size", SIZES, ids=str)
def test_network_rows_equal_the_specs(space, ids, reference, size):
    if size == 33:  # every row invalid: worded messages are slow, a few hundred suffice
        ids, reference = ids[:300], reference.take(np.arange(300))
    want = rfsearch.evaluate(reference, input_size=size)
    got = rfsearch.evaluate(darts_batch(ids, space.radices), input_size=size)
    assert got["name"].tolist() == [f"darts#{i}" for i in ids]
    assert (got["error"].isna() == want["error"].isna()).all()
    pd.testing.assert_frame_equal(got.drop(columns="error"), want.drop(columns="error"))


def _per_spec(space):
    return dataclasses.replace(space, batcher=None)


@pytest.mark.parametrize(("size", "where"), [
    (None, None), (224, "valid and rf_h > 400 and rf_min_h < 40"),
    ("33x48", "rf_ratio > 20 or not valid")], ids=str)
def test_search_rows_equal_the_per_spec_path(space, size, where):
    run = prepare(space, sample=100, seed=4, input_size=size, where=where)
    assert run.batched and run.chunk_candidates > 4096
    got = rfsearch.search(space, sample=100, seed=4, input_size=size, where=where)
    want = rfsearch.search(_per_spec(space), sample=100, seed=4, input_size=size,
                           where=where)
    assert len(got) == len(want) > 0
    pd.testing.assert_frame_equal(got, want)


def test_top_k_and_id_ranges_equal_the_per_spec_path(space):
    for options in ({"sample": 100, "top": 5, "by": "rf_h"},
                    {"ids": (10 ** 15, 10 ** 15 + 60), "where": "rf_h >= 600"}):
        got = rfsearch.search(space, **options)
        want = rfsearch.search(_per_spec(space), **options)
        pd.testing.assert_frame_equal(got, want)


def test_analysis_filters_take_the_per_spec_path(space):
    where = "n_critical >= 1 and rf_h > 300"
    assert not prepare(space, sample=40, where=where).batched
    got = rfsearch.search(space, sample=40, seed=2, where=where)
    assert len(got) and {"n_critical", "feasible_max"} <= set(got.columns)
    every = rfsearch.search(space, sample=40, seed=2)  # batched: the same geometry
    mine = every.set_index("candidate_id").loc[got["candidate_id"]].reset_index()
    pd.testing.assert_frame_equal(got[list(every.columns)], mine[list(every.columns)])


def test_sampled_and_exhaustive_output_folders(space, tmp_path):
    summary = rfsearch.search(space, sample=1000, seed=1, output=tmp_path / "s")
    assert summary.matches == 1000
    rows = pd.read_parquet(tmp_path / "s")
    assert rows["valid"].all() and rows["candidate_id"].is_unique
    walked = rfsearch.search(space, ids=(7, 7 + 2000), where="rf_h > 0")
    assert walked["candidate_id"].tolist() == list(range(7, 2007))


def _genotype(space, i: int) -> str:
    """DARTS' Genotype repr, written out one candidate at a time."""
    digits = space.digits(np.array([i]))[0]
    picked = [NODE_OPTIONS[j % STEPS][int(d)] for j, d in enumerate(digits)]
    flat = [[f"('{op}', {src})" for pair in cell for op, src in pair]
            for cell in (picked[:STEPS], picked[STEPS:])]
    return (f"Genotype(normal=[{', '.join(flat[0])}], normal_concat=range(2, 6), "
            f"reduce=[{', '.join(flat[1])}], reduce_concat=range(2, 6))")


def test_genotype_keys_are_darts_reprs(space, ids):
    keys = space.keys(ids[:50])["genotype"]
    assert list(keys) == [_genotype(space, int(i)) for i in ids[:50]]
    assert str(pd.Series(keys).dtype) == str(pd.Series(["x"]).dtype)


def test_ahead_computes_the_next_chunk_once_and_in_any_order():
    calls = []

    def compute(c):
        calls.append(c)
        if c == 4:
            raise ValueError("chunk 4")
        return c * 10

    ahead = Ahead(compute, 5)
    assert [ahead.get(0), ahead.get(1), ahead.get(3)] == [0, 10, 30]  # 2 skipped
    with pytest.raises(ValueError, match="chunk 4"):
        ahead.get(4)
    assert {0, 1, 3, 4} <= set(calls) <= {0, 1, 2, 3, 4}  # 2: started, or cancelled
    assert all(calls.count(c) == 1 for c in calls)
    assert ahead.pool is None and ahead.pending is None  # closed after the last chunk


def test_ahead_computes_only_the_chunks_expected_next():
    """A resumed run's finished chunks and the chunks after a process's share are never
    computed ahead, and the thread stops with the run."""
    calls = []
    ahead = Ahead(lambda c: calls.append(c) or c, 10)
    ahead.expect([2, 5, 6])  # 3, 4 finished already; 7.. another process's
    assert [ahead.get(2), ahead.get(5), ahead.get(6)] == [2, 5, 6]
    assert calls == [2, 5, 6] and ahead.pool is None and ahead.pending is None
