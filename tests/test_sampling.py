"""Sampling (``search(..., sample=N)``): draws without replacement from a seeded
permutation, deterministic per seed, rows equal to the walk's, filters keep the matching
draws (rfsearch.search.sampling)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from search_cases import CASES, SMALL, VALID, assert_same, host_mask, space_of

import rfsearch
from rfsearch import search
from rfsearch.search.sampling import sample_ids


def test_sampling_draws_without_replacement():
    ids = np.concatenate([sample_ids(5, 1005, s, 100, 3) for s in range(0, 1000, 100)])
    assert sorted(ids.tolist()) == list(range(5, 1005))
    got = rfsearch.search(SMALL, input_size=12, sample=100, chunk=10)
    assert got["candidate_id"].is_unique and len(got) == 54  # the whole space, once each
    top = rfsearch.search(SMALL, input_size=12, sample=40, chunk=10, top=5, by="rf_h")
    assert top["candidate_id"].is_unique


def test_sampling_agrees_with_the_walk_and_is_deterministic(full):
    space, df, _ = full["same@224"]
    a = search(space, input_size=224, sample=250, seed=3)
    b = search(space, input_size=224, sample=250, seed=3)
    c = search(space, input_size=224, sample=250, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["candidate_id"]) != set(c["candidate_id"])
    assert a["candidate_id"].is_unique  # in draw order, as sample_ids gives them
    assert a["candidate_id"].tolist() == sample_ids(0, space.size, 0, 250, 3).tolist()
    assert 150 < len(a) <= 250  # 250 draws with replacement from 864
    walked = df.set_index("candidate_id").loc[a["candidate_id"]].reset_index()
    pd.testing.assert_frame_equal(a, walked)


@pytest.mark.parametrize(("case", "where"), [
    ("same@224", "rf_h >= 20 and aligned or candidate_id % 5 == 1"),
    ("same@none", "not (padding_h > 0) or k == 3 and layer1.repeat == 1"),
])
def test_sampled_filter_keeps_the_matching_draws(full, case, where):
    space, df, _ = full[case]
    _, size = CASES[case]
    want = set(df["candidate_id"][host_mask(where, df, space)])
    sampled = search(space, where=where, input_size=size, sample=300, seed=11)
    drawn = search(space, input_size=size, sample=300, seed=11)
    assert set(sampled["candidate_id"]) == set(drawn["candidate_id"]) & want
    assert_same(sampled, drawn[drawn["candidate_id"].isin(want)])


def test_constant_filter_when_sampling():
    space = space_of(VALID)
    assert len(search(space, where="1 < 2", sample=20, seed=0)) == len(
        search(space, sample=20, seed=0))
