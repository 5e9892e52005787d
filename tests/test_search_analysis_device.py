"""The layer-wise analysis columns computed in the device walk (rfsearch.search.layerwise):
on grids and on sampled candidates of built-in spaces, every column equals
``evaluate(spec, analysis=True)``; the walk (prefix rows, suffix keys) and the per-id path
agree; filters and rankings on these columns run over large spaces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from search_cases import SAME, VALID, space_of

import rfsearch
from rfsearch.search import layerwise
from rfsearch.search.plan import plan
from rfsearch.spaces.registry import builtin
from rfsearch.table import SEARCH_ANALYSIS

EVERY = "feasible_max > 0 or n_critical >= 0 or true"  # reads the analysis, keeps every row

# A whole-map layer (unbounded without an input size), non-square windows, strides 1..4.
POOLED = {"name": "pooled", "layers": [
    {"op": "conv", "kernel": [3, [5, 3], 7], "stride": [1, 2], "padding": "same"},
    {"op": "maxpool", "kernel": [2, 3], "stride": [2, 4], "padding": "same"},
    {"repeat": [0, 1, 2], "layers": [{"op": "conv", "kernel": [1, 3], "dilation": [1, 2],
                                      "padding": "same"}]},
    {"op": "global_pool"},
    {"op": "conv", "kernel": 1}]}

# 4**14 candidates: three groups of slots, whose size classes follow the strides.
DEEP = {"name": "deep", "layers": [{"op": "conv", "kernel": [1, 3], "stride": [1, 2],
                                   "padding": "same"} for _ in range(14)]}

# 4**11 candidates of 'same' convolutions: a 1024-wide suffix under many prefix rows.
WIDE = {"name": "wide", "layers": [{"op": "conv", "kernel": [1, 3, 5, 7], "padding": "same"}
                                   for _ in range(11)]}


def _spec(space, i: int) -> dict:
    try:
        return space.spec(i)
    except rfsearch.SpecError:  # not a network (an invalid choice): an error row
        return {"name": "invalid", "layers": []}


def expected(space, ids, size) -> pd.DataFrame:
    specs = [_spec(space, int(i)) for i in ids]
    return rfsearch.evaluate(specs, input_size=size, analysis=True)


def assert_analysis_equal(got: pd.DataFrame, ev: pd.DataFrame) -> None:
    """Every analysis column of a search (values, nulls and dtypes; the border layer's
    name too) and validity agree."""
    assert got["valid"].tolist() == ev["error"].isna().tolist()
    for name in SEARCH_ANALYSIS:
        assert got[name].dtype == ev[name].dtype, name
        want = ev[name].reset_index(drop=True)
        pd.testing.assert_series_equal(got[name].reset_index(drop=True), want, check_names=False,
                                       obj=name)


@pytest.mark.parametrize(("grid", "size"), [
    (SAME, 9), (SAME, (9, 13)), (VALID, "23x40"), (POOLED, None), (POOLED, "7x20"),
])
def test_grid_analysis_columns_equal_evaluate(grid, size):
    space = space_of(grid)
    got = rfsearch.search(space, where=EVERY, input_size=size)
    assert got["candidate_id"].tolist() == list(range(space.size))
    size = size if size is not None else grid.get("input_size")
    ev = expected(space, range(space.size), size)
    assert_analysis_equal(got, ev)
    if size in (9, 12):  # small inputs make layers unproductive and critical
        assert (ev["n_unproductive"] > 0).any() and (ev["n_critical"] > 0).any()


@pytest.mark.parametrize(("name", "size", "n"), [
    ("nasbench101", 16, 150), ("ofa-mbv3", 96, 100),
    ("nasbench201", 16, 150), ("efficientnet", 64, 40),
])
def test_sampled_builtin_candidates_equal_evaluate(name, size, n):
    space = builtin(name)
    got = rfsearch.search(space, where=EVERY, input_size=size, sample=min(n, space.size),
                          seed=3)
    ev = expected(space, got["candidate_id"], size)
    assert_analysis_equal(got, ev)
    assert (ev["n_critical"] > 0).any() and (ev["n_unproductive"] > 0).any()
    assert ev["border_layer"].notna().any()


def test_walk_and_per_id_paths_agree_across_rows_and_keys():
    """WIDE at input 20: a 1024-wide suffix under many prefix rows with many distinct
    suffix keys, in small chunks; the walk's matches equal the per-id path's."""
    where = "n_unproductive >= 3 and n_critical <= 5 and feasible_min < 40"
    lo, hi = 3_000, 70_000
    walked = rfsearch.search(WIDE, where=where, input_size=20, ids=(lo, hi), chunk=8192)
    every = rfsearch.search(WIDE, where=where, input_size=20, ids=(lo, hi), sample=hi - lo,
                            chunk=1 << 16)  # sampled chunks: ids in permutation order
    every = every.sort_values("candidate_id", ignore_index=True)
    pd.testing.assert_frame_equal(walked, every)
    assert 0 < len(walked) < hi - lo
    space = space_of(WIDE)
    rng = np.random.default_rng(0)
    picked = rng.choice(walked["candidate_id"], 150, replace=False)
    ev = expected(space, picked, 20)
    assert_analysis_equal(walked.set_index("candidate_id").loc[picked].reset_index(), ev)
    others = np.setdiff1d(rng.integers(lo, hi, 400), walked["candidate_id"])
    ev = expected(space, others, 20)
    keep = (ev["n_unproductive"] >= 3) & (ev["n_critical"] <= 5) & (ev["feasible_min"] < 40)
    assert not keep.any()


@pytest.mark.parametrize("size", [(23, 40), (61, 200)])
def test_border_layer_across_groups_size_classes_and_axes(size):
    """DEEP at non-square inputs: the border is found in any of several groups (rows
    sharing a key and option are folded once), where both axes exceed; candidates whose
    layers never exceed the input have none (null)."""
    space = space_of(DEEP)
    got = rfsearch.search(space, where=EVERY, input_size=size, sample=400, seed=5)
    ev = expected(space, got["candidate_id"], size)
    assert_analysis_equal(got, ev)
    slots = ev["border_layer"].dropna().str.split("/").str[0]
    assert slots.nunique() >= 3 and ev["border_layer"].isna().any()


def test_suffix_tables_equal_counting_every_layer_per_id():
    """The counts of prefix rows plus suffix tables by key (LayerCounts) equal a fold of
    every slot per id, on a space whose suffix spans several groups and size classes."""
    tabulated = plan(space_of(DEEP), (23, 40), analysis=True)
    ids = np.random.default_rng(2).integers(0, tabulated.space.size, 3000)
    groups = tabulated.groups
    c, u, _ = layerwise.id_counts(layerwise.input_key((23, 40), ids.shape), groups,
                                  [(g.radix, g.below) for g in groups], ids, 2)
    assert len(groups) >= 3 and max(g.table.shape[0] for g in groups) > 1  # size classes
    for start in range(1, len(groups)):  # suffixes of 16 and 65,536 entries
        counts = layerwise.LayerCounts(tabulated, start)
        assert (counts.of_ids(ids) == np.stack([c, u])).all(), start


def test_analysis_filter_and_ranking_over_millions_of_candidates_run_on_the_device():
    """No geometry condition and 3 million candidates: once refused, now walked."""
    space = builtin("ofa-mbv3")
    got = rfsearch.search(space, where="n_unproductive == 0", input_size=224,
                          ids=(0, 3_000_000))
    assert 0 < len(got) < 3_000_000 and (got["n_unproductive"] == 0).all()
    rng = np.random.default_rng(1)
    picked = rng.choice(got["candidate_id"], 30, replace=False)
    assert_analysis_equal(got.set_index("candidate_id").loc[picked].reset_index(),
                          expected(space, picked, 224))
    others = np.setdiff1d(rng.integers(0, 3_000_000, 40), got["candidate_id"])
    assert (expected(space, others, 224)["n_unproductive"] > 0).all()
    top = rfsearch.search(space, where="n_critical <= 4", input_size=224, ids=(0, 3_000_000),
                          top=5, by="feasible_min", ascending=True)
    assert_analysis_equal(top, expected(space, top["candidate_id"], 224))
    assert (top["n_critical"] <= 4).all() and top["feasible_min"].is_monotonic_increasing
    rivals = got[got["n_critical"] <= 4]["feasible_min"]
    assert top["feasible_min"].max() <= rivals.nsmallest(5).max()


# A slot whose last layer strides one axis only, with no node after it inside the slot (8
# layers: a whole depth bucket): the layers after it count on both axes (review of #17).
ONE_AXIS = {"name": "one-axis", "layers": [
    {"repeat": [1], "layers": [{"op": "conv", "kernel": 3, "padding": "same"}] * 7
     + [{"op": "conv", "kernel": 1, "stride": [[2, 1], [1, 1]]}]},
    {"op": "conv", "kernel": [3, 5], "padding": "same"}]}


@pytest.mark.parametrize("size", [18, 20, 30])
def test_a_stride_on_one_axis_ending_a_slot_counts_both_axes(size):
    space = space_of(ONE_AXIS)
    got = rfsearch.search(space, where=EVERY, input_size=size)
    assert_analysis_equal(got, expected(space, got["candidate_id"], size))
    critical = rfsearch.search(space, where="n_critical == 0", input_size=size)
    ev = expected(space, range(space.size), size)
    assert critical["candidate_id"].tolist() == np.flatnonzero(ev["n_critical"] == 0).tolist()


@pytest.mark.parametrize("top", [5, 2**40, 2**61], ids=["dense key", "sparse key", "rows"])
def test_option_classes_group_exactly_the_equal_rows(top):
    """The option classes that the group tables and the counts fold over: one int64 key
    per row while the mixed radix fits (repeated columns counted once; numbered without a
    sort while the keys are dense), else the rows themselves; either way two options
    share a class iff their blocks are equal, each class's representative is one of its
    options, and classes follow the order of their rows."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 500), rng.integers(0, 5, 500)
    b[::3] = top - 1
    columns = [a, b, a.copy(), rng.integers(0, 3, 500)]
    keys, _ = layerwise.row_keys(columns)
    assert keys.shape[1] == (3 if top == 2**61 else 1)
    rep, cls = layerwise.option_classes(columns)
    rows = np.stack(columns, axis=1)
    same_class = cls[:, None] == cls[None, :]
    same_row = (rows[:, None, :] == rows[None, :, :]).all(axis=-1)
    assert (same_class == same_row).all()
    assert (cls[rep] == np.arange(len(rep))).all()
    firsts = rows[np.unique(cls, return_index=True)[1]]
    assert [tuple(r) for r in firsts] == sorted(tuple(r) for r in firsts)


def test_a_block_whose_dead_branch_fails_counts_like_evaluate():
    """A block whose output is not its last layer, with a branch that fails at small
    sizes: the candidate stays valid and its analysis counts the layers that have maps,
    as evaluate of its spec does (the spec of a candidate ending in such a block named
    no output, so the failing branch was the output and the row an error)."""
    from rfsearch.spaces.space import Slot, Space, Variable

    forked = {"name": "forked", "layers": [
        {"name": "a", "op": "conv", "kernel": 3, "padding": 1},
        {"name": "b", "op": "conv", "kernel": 3, "padding": 1},
        {"name": "side", "op": "conv", "kernel": 5, "inputs": ["a"]}], "output": "b"}
    plain = {"name": "plain", "layers": [{"name": "a", "op": "conv", "kernel": 3, "padding": 1}]}
    stem = {"name": "stem", "layers": [{"name": "s", "op": "conv", "kernel": 3, "stride": 2,
                                        "padding": 1}]}
    space = Space("forked", [Variable("x", ("f", "p")), Variable("y", ("f", "p"))],
                  [Slot("stem", (), (stem,)), Slot("one", (0,), (forked, plain)),
                   Slot("two", (1,), (forked, plain))], input_size=(8, 8))
    assert space.spec(0)["output"] == "two/b" and "output" not in space.spec(3)
    for size in (3, 8, 16):
        got = rfsearch.search(space, where=EVERY, input_size=size)
        ev = expected(space, range(space.size), size)
        assert_analysis_equal(got, ev)
        assert got["valid"].all()
    assert got["n_unproductive"].notna().all()
