"""``search`` over grids: every candidate's row equals ``evaluate`` of its spec (whole
spaces, single ids, id ranges over many prefixes and chunks, the exact-range limits),
argument checks, and top-K against sorting the exhaustive result."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from frames import frame_rows, plain
from hypothesis import given, settings
from hypothesis import strategies as st
from search_cases import (
    ANALYSIS_GRID,
    BIG,
    BIG_WIDTH,
    CASES,
    GEOMETRY,
    SMALL,
    VALID,
    assert_same,
    evaluate_all,
    expected_row,
    search_row,
    size_of,
    sorted_top,
    space_of,
)

import rfsearch
from rfsearch import search
from rfsearch.errors import SpecError
from rfsearch.spaces import grid_space

# --- every candidate agrees with evaluate() of its spec ------------------------------------

@pytest.mark.parametrize("case", list(CASES))
def test_exhaustive_rows_equal_evaluate_of_each_spec(full, case):
    space, df, ev = full[case]
    assert df["candidate_id"].tolist() == list(range(space.size))
    got = [search_row(r) for r in frame_rows(df)]
    want = [expected_row(r) for r in frame_rows(ev)]
    assert got == want
    valid = df["valid"]
    assert 0 < valid.sum() < len(df)  # valid and invalid candidates both occur
    assert df.loc[~valid, list(GEOMETRY)].isna().all().all()


def test_aligned_with_unknown_padding_agrees_with_evaluate(full):
    _, df, ev = full["same@none"]
    assert df["aligned"].isna().tolist() == ev["aligned"].isna().tolist()
    assert [plain(v) for v in df["aligned"]] == [plain(v) for v in ev["aligned"]]


def test_cases_cover_what_they_claim(full):
    _, df, _ = full["valid@64"]
    sizes = df.loc[df["valid"], "out_h"]
    assert sizes.nunique() > 3  # sizes vary with the choices
    _, df, _ = full["same@none"]
    assert df["out_h"].isna().all() and df["padding_h"].isna().any()
    _, df, _ = full["same@224"]
    assert df.loc[df["valid"], "padding_h"].notna().all()
    assert (df["aligned"] == False).any() and (df["aligned"] == True).any()  # noqa: E712
    _, df, _ = full["same@9x13"]
    assert (df["out_h"] != df["out_w"]).any()


@settings(max_examples=15)
@given(data=st.data())
def test_single_id_searches_equal_evaluate(data):
    case = data.draw(st.sampled_from(["same@224", "same@9x13", "valid@64"]))
    grid, size = CASES[case]
    space = space_of(grid)
    i = data.draw(st.integers(0, space.size - 1))
    df = search(space, ids=(i, i + 1), input_size=size)
    assert df["candidate_id"].tolist() == [i]
    ev = rfsearch.evaluate(space.spec(i), input_size=size_of(grid, size))
    assert search_row(frame_rows(df)[0]) == expected_row(frame_rows(ev)[0])


def test_a_space_of_one_candidate():
    got = rfsearch.search({"layers": [{"op": "conv", "kernel": 3, "stride": 2,
                                       "padding": "same"}]}, input_size=10)
    assert got[["candidate_id", "rf_h", "out_h"]].values.tolist() == [[0, 3, 5]]


def test_candidates_past_the_exact_range_are_invalid_like_evaluate():
    deep = {"layers": [{"name": f"c{i}", "op": "conv", "kernel": 3, "stride": [1, 2],
                        "padding": "same"} for i in range(31)]}
    row = rfsearch.search(deep, input_size=224, ids=(2**31 - 1, 2**31)).iloc[0]
    assert not row["valid"] and pd.isna(row["stride_h"]) and pd.isna(row["rf_h"])
    space, _ = grid_space(deep)
    assert "exceeds the exact integer range" in rfsearch.evaluate(
        space.spec(2**31 - 1), input_size=224)["error"].iloc[0]


def test_receptive_fields_beyond_int32_are_exact():
    k = 2**30
    grid = {"layers": [{"branches": [[{"op": "conv", "kernel": k, "padding": k}],
                                     [{"op": "conv", "kernel": k, "padding": [0, 2]}]],
                        "merge": "add"}, {"op": "conv", "kernel": [1, 3]}]}
    got = rfsearch.search(grid)
    want = evaluate_all(grid, None)
    assert got["rf_h"].tolist() == want["rf_h"].tolist()
    assert (got["rf_h"] > 2**31 - 1).sum() == 3


def test_bad_arguments_are_spec_errors():
    space = space_of(VALID)
    with pytest.raises(SpecError, match="unknown column"):
        search(space, where="rf >= 3")
    for kwargs in ({"chunk": 0}, {"sample": 0}, {"top": 0, "by": "rf_h"}, {"sample": True},
                   {"top": 2}, {"by": "rf_h"}, {"top": 2, "by": "aligned"},
                   {"top": 2, "by": "nope"}, {"ids": (5, 5)}, {"ids": (0, space.size + 1)},
                   {"ids": (-1, 3)}):
        with pytest.raises(SpecError):
            search(space, **kwargs)
    with pytest.raises(SpecError):
        search(12)
    with pytest.raises(SpecError, match="unknown space"):
        search("nasbench2O1")
    with pytest.raises(SpecError, match="ascending orders top"):
        search(space, ascending=True)


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"ids": "0:5"}, "ids must be"), ({"ids": (0, 3, 5)}, "ids must be"),
    ({"ids": (0.5, 3)}, "ids must be"), ({"sample": 3, "seed": -1}, "seed must be"),
    ({"sample": 3, "seed": 1.5}, "seed must be")])
def test_ids_and_seed_of_the_python_api_are_checked_in_one_line(kwargs, words):
    """Before: numpy's or Python's own exceptions (the CLI checked them; audit)."""
    with pytest.raises(SpecError, match=words):
        search(space_of(VALID), **kwargs)


@pytest.mark.parametrize(("grid", "size", "words"), [
    ({"layers": []}, None, "layers is empty"),
    ({"layers": [{"op": "conv", "kernel": [3, 5]},
                 {"op": "conv", "kernel": {"choices": [1, 7], "tie": "layer0.kernel"}}]}, None,
     "two choices are named 'layer0.kernel'"),
    ({"layers": [{"op": "conv", "kernel": [[3, 3, 3], [1, 3, 3]]},
                 {"op": "upsample", "factor": [[1, 2, 2]]}]}, "32x32",
     "input size 32x32 has 2 axes; this network has 3"),
    ({"input_size": 32, "layers": [{"op": "conv", "kernel": [[3], [5]]},
                                   {"op": "upsample", "factor": [[2]]}]}, "8x32x32",
     "input size 8x32x32 has 3 axes; this network has 1")])
def test_grids_the_search_cannot_answer_are_refused_in_one_line(grid, size, words):
    """Before (audit): an IndexError; one column for two choices, the filter reading the
    other; a KeyError, or every row invalid with no reason given."""
    with pytest.raises(SpecError, match=words):
        search(grid, input_size=size)


def test_a_resumed_search_may_spell_its_filter_with_other_spacing(tmp_path):
    first = search("nasbench201", where="rf_h >= 20 and valid", output=tmp_path / "o")
    again = search("nasbench201", where="rf_h>=20   and valid", output=tmp_path / "o")
    assert first.matches == again.matches
    with pytest.raises(SpecError, match="where differ"):
        search("nasbench201", where="rf_h >= 21 and valid", output=tmp_path / "o")


def test_a_blank_where_is_no_filter_as_an_empty_one_is():
    space = space_of(VALID)
    rows = [search(space, where=text) for text in ("", "  \t")]
    assert len(rows[0]) == len(rows[1]) == space.size


# --- id ranges ----------------------------------------------------------------------------

@pytest.mark.parametrize(("lo", "hi"), [(5, 6), (100, 397)])
def test_id_ranges_restrict_walk_and_sample(full, lo, hi):
    space, df, _ = full["same@224"]
    walked = search(space, input_size=224, ids=(lo, hi))
    assert_same(walked, df.iloc[lo:hi])
    sampled = search(space, input_size=224, ids=(lo, hi), sample=100, seed=1)
    assert sampled["candidate_id"].between(lo, hi - 1).all()
    assert_same(sampled, df.iloc[sampled["candidate_id"]])


def test_a_sample_is_the_same_rows_in_the_same_order_whatever_the_chunk(tmp_path):
    space = space_of(BIG)
    args = {"sample": 5000, "seed": 7, "where": "rf_h >= 25"}
    frames = [search(space, chunk=chunk, **args) for chunk in (BIG_WIDTH, 1 << 22)]
    pd.testing.assert_frame_equal(frames[0], frames[1])
    ids = frames[0]["candidate_id"].to_numpy()
    assert not (np.diff(ids) > 0).all()  # draw order, not sorted per chunk
    assert frames[0]["rf_h"].tolist() == big_rows_of(space, ids).tolist()
    for chunk in (BIG_WIDTH, 3 * BIG_WIDTH):
        search(space, chunk=chunk, output=tmp_path / str(chunk), **args)
        written = pd.read_parquet(tmp_path / str(chunk))
        assert written["candidate_id"].tolist() == ids.tolist()


def big_rows(space, lo, hi):
    """Expected rows of BIG ids [lo, hi): rf is 1 + sum(k - 1)."""
    return big_rows_of(space, np.arange(lo, hi))


def big_rows_of(space, ids):
    """Expected rf of BIG ``ids``."""
    digits = space.digits(ids)
    kernels = np.array([1, 3, 5, 7])[digits]
    return 1 + (kernels - 1).sum(axis=1)


@pytest.mark.parametrize(("lo", "hi", "chunk"), [
    (1000, 1100, 1 << 22),  # crosses a prefix boundary (1024)
    (BIG_WIDTH * 3 - 7, BIG_WIDTH * 9 + 5, 3 * BIG_WIDTH),  # several chunks, ragged ends
    (4 ** 11 - 3000, 4 ** 11, BIG_WIDTH),  # the last ids
])
def test_id_ranges_over_many_prefixes_and_chunks(lo, hi, chunk):
    space = space_of(BIG)
    df = search(space, ids=(lo, hi), chunk=chunk)
    assert df["candidate_id"].tolist() == list(range(lo, hi))
    assert df["rf_h"].tolist() == big_rows(space, lo, hi).tolist()
    filtered = search(space, ids=(lo, hi), chunk=chunk, where="rf_h >= 31 and candidate_id % 3 "
                      "!= 1")
    keep = (big_rows(space, lo, hi) >= 31) & (np.arange(lo, hi) % 3 != 1)
    assert filtered["candidate_id"].tolist() == np.arange(lo, hi)[keep].tolist()
    spot = np.linspace(lo, hi - 1, 5).astype(int)
    ev = rfsearch.evaluate([space.spec(int(i)) for i in spot])
    rows = df.set_index("candidate_id").loc[spot].reset_index()
    assert [search_row(r) for r in frame_rows(rows)] == [expected_row(r) for r in
                                                          frame_rows(ev)]


# --- top / by ------------------------------------------------------------------------------

@pytest.mark.parametrize(("case", "by", "k", "ascending"), [
    ("same@224", "rf_h", 5, False),
    ("same@224", "padding_w", 7, True),
    ("same@224", "candidate_id", 4, False),
    ("same@none", "padding_w", 7, False),  # nulls never rank
    ("same@none", "k", 6, True),
    ("valid@64", "rf_min_w", 2000, False),  # more than there are: every non-null row
])
def test_top_equals_sorting_the_exhaustive_result(full, case, by, k, ascending):
    space, df, _ = full[case]
    _, size = CASES[case]
    got = search(space, input_size=size, top=k, by=by, ascending=ascending)
    assert_same(got, sorted_top(df, by, k, ascending))


@pytest.mark.parametrize(("case", "by", "ascending"), [("same@224", "rf_w", False),
                                                      ("valid@64", "out_w", True)])
def test_top_of_a_sample_equals_sorting_the_sample(case, by, ascending):
    grid, size = CASES[case]
    space = space_of(grid)
    sampled = search(space, input_size=size, sample=200, seed=2, top=6, by=by,
                     ascending=ascending)
    drawn = search(space, input_size=size, sample=200, seed=2)
    assert_same(sampled, sorted_top(drawn, by, 6, ascending))


def test_top_with_a_filter_and_many_chunks():
    space = space_of(BIG)
    lo, hi = BIG_WIDTH * 2 + 11, BIG_WIDTH * 12 - 5
    df = search(space, ids=(lo, hi))
    even = df[df["candidate_id"] % 2 == 0]
    for ascending, chunk in ((False, BIG_WIDTH), (True, 4 * BIG_WIDTH), (False, 1 << 22)):
        got = search(space, ids=(lo, hi), chunk=chunk, top=9, by="rf_h", ascending=ascending,
                     where="candidate_id % 2 == 0")
        pd.testing.assert_frame_equal(got, sorted_top(even, "rf_h", 9, ascending))
    ties = sorted_top(even, "rf_h", 9, False)
    assert ties["rf_h"].nunique() < 9  # ties were broken by candidate_id


def test_top_by_rf_ratio():
    every = rfsearch.search(SMALL, input_size=12)
    top = rfsearch.search(SMALL, input_size=12, top=3, by="rf_ratio")
    assert top["rf_ratio"].tolist() == sorted(every["rf_ratio"].dropna(), reverse=True)[:3]
    assert every["rf_ratio"].tolist() == (every["rf_h"] / 12).tolist()


def test_top_by_an_analysis_column():
    space, _ = grid_space(ANALYSIS_GRID)
    got = rfsearch.search(ANALYSIS_GRID, where="valid", top=4, by="feasible_min", ascending=True)
    ev = rfsearch.evaluate([space.spec(i) for i in range(space.size)], input_size=32,
                           analysis=True)
    ev["candidate_id"] = range(space.size)
    want = ev[ev["error"].isna()].sort_values(["feasible_min", "candidate_id"]).head(4)
    assert got["candidate_id"].tolist() == want["candidate_id"].tolist()
    assert got["feasible_min"].tolist() == want["feasible_min"].tolist()
