"""``search``: exhaustive walk and sampling over grids agree with ``evaluate`` of each
candidate's spec; filters, top-K, id ranges, the Parquet output folder and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from frames import frame_rows, plain
from hypothesis import given, settings
from hypothesis import strategies as st

import rfsearch
from rfsearch import search
from rfsearch.cli import main
from rfsearch.errors import SpecError
from rfsearch.search.filter import filter_mask, parse_filter
from rfsearch.spaces import grid_space

GEOMETRY = ("rf_h", "rf_w", "rf_min_h", "rf_min_w", "stride_h", "stride_w", "padding_h",
            "padding_w", "aligned", "out_h", "out_w")
MANIFEST = "_manifest.json"

# 'same' padding with stride 2, dilation, a repeat, an add of a (possibly strided) branch
# and the identity, a tie shared by two layers, a padding choice and a non-square kernel.
SAME = {"name": "same", "layers": [
    {"op": "conv", "kernel": [1, 3, 5], "dilation": [1, 2], "stride": 2, "padding": "same"},
    {"repeat": [0, 1, 2], "layers": [{"op": "conv", "kernel": {"choices": [3, 5], "tie": "k"}}]},
    {"branches": [[{"op": "conv", "kernel": 3, "padding": [1, [[0, 2], [0, 2]]],
                     "stride": [1, 2]}], []], "merge": "add"},
    {"op": "maxpool", "kernel": {"choices": [3, 5], "tie": "k"}, "stride": 2,
     "padding": "same"},
    {"op": "conv", "kernel": [1, 3, [3, 1]], "padding": ["valid", "same"]},
]}

# 'valid' padding: output sizes (and validity) follow the choices.
VALID = {"name": "valid", "input_size": 64, "layers": [
    {"op": "conv", "kernel": [3, 5, 7], "stride": [1, 2]},
    {"repeat": [1, 2, 3], "layers": [{"op": "conv", "kernel": 3, "stride": 2}]},
    {"op": "maxpool", "kernel": [2, 3], "stride": 2},
    {"branches": [[{"op": "conv", "kernel": [1, 3]}], [{"op": "conv", "kernel": 1}]],
     "merge": "concat"},
    {"op": "conv", "kernel": [3, 5], "dilation": [1, 2]},
]}

# 4**11 candidates: the walk's suffix table holds 4**5 of them, so an id range spans many
# prefixes and a small chunk gives many chunks.
BIG = {"name": "big", "layers": [{"op": "conv", "kernel": [1, 3, 5, 7]} for _ in range(11)]}
BIG_WIDTH = 4 ** 5

CASES = {  # name -> (grid, input_size passed to search)
    "same@224": (SAME, 224),
    "same@none": (SAME, None),
    "same@9x13": (SAME, (9, 13)),
    "valid@64": (VALID, None),
    "valid@23x40": (VALID, "23x40"),
}


_SPACES: dict[str, object] = {}


def space_of(grid):
    """The grid's Space (built once per grid, so its block encodings are reused)."""
    key = json.dumps(grid, sort_keys=True)
    if key not in _SPACES:
        _SPACES[key] = grid_space(grid)[0]
    return _SPACES[key]


def size_of(grid, input_size):
    return input_size if input_size is not None else grid.get("input_size")


@pytest.fixture(scope="module")
def full():
    """Every case's exhaustive result and evaluate() of every candidate's spec."""
    out = {}
    for name, (grid, size) in CASES.items():
        space = space_of(grid)
        df = search(space, input_size=size)
        ev = rfsearch.evaluate([space.spec(i) for i in range(space.size)],
                               input_size=size_of(grid, size))
        out[name] = (space, df, ev)
    return out


def expected_row(ev_row: dict) -> dict:
    return {c: ev_row[c] for c in GEOMETRY} | {"valid": ev_row["error"] is None}


def search_row(row: dict) -> dict:
    return {c: row[c] for c in (*GEOMETRY, "valid")}


def normal(df: pd.DataFrame) -> pd.DataFrame:
    """Text-like columns as plain objects: pandas infers a string dtype for a label
    column only when every matched label is a string, so that depends on the rows."""
    df = df.reset_index(drop=True).copy()
    for name in df.columns:
        if df[name].dtype == object or pd.api.types.is_string_dtype(df[name].dtype):
            df[name] = df[name].astype(object)
    return df


def assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(normal(a), normal(b))


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


def test_choice_columns_follow_the_spec(full):
    space, df, _ = full["same@224"]
    assert [v.name for v in space.variables] == ["layer0.kernel", "layer0.dilation",
                                                 "layer1.repeat", "k", "layer2.b0.0.stride",
                                                 "layer2.b0.0.padding", "layer4.kernel",
                                                 "layer4.padding"]
    assert space.size == 3 * 2 * 3 * 2 * 2 * 3 * 2 * 2
    for row in frame_rows(df.iloc[[0, 1, 77, 300, space.size - 1]]):
        layers = space.spec(row["candidate_id"])["layers"]
        by_name = {layer["name"]: layer for layer in layers}
        assert by_name["layer0/l0.0"]["kernel"] == row["layer0.kernel"]
        assert by_name["layer0/l0.0"]["dilation"] == row["layer0.dilation"]
        repeats = [n for n in by_name if n.startswith("layer1/l")]
        assert len(repeats) == row["layer1.repeat"]
        assert all(by_name[n]["kernel"] == row["k"] for n in repeats)
        assert by_name["layer2/b0.0"]["stride"] == row["layer2.b0.0.stride"]
        assert json.dumps(by_name["layer2/b0.0"]["padding"]) == str(row["layer2.b0.0.padding"])
        assert by_name["layer3/l0.0"]["kernel"] == row["k"]  # the tie
        assert by_name["layer4/l0.0"]["padding"] == row["layer4.padding"]
        assert json.dumps(by_name["layer4/l0.0"]["kernel"]) == str(row["layer4.kernel"])


def test_digits_are_mixed_radix_first_variable_most_significant():
    space = space_of(SAME)
    radices = space.radices.tolist()
    ids = np.array([0, 1, 5, 100, space.size - 1])
    digits = space.digits(ids)
    back = np.zeros(len(ids), np.int64)
    for j, r in enumerate(radices):
        back = back * r + digits[:, j]
    assert back.tolist() == ids.tolist()
    assert digits[-1].tolist() == [r - 1 for r in radices]
    with pytest.raises(SpecError, match="candidate_id must be in"):
        space.spec(space.size)


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


def test_grid_input_size_is_the_default_and_can_be_overridden(full):
    _, at224, _ = full["same@224"]
    grid = dict(SAME, input_size=224)
    pd.testing.assert_frame_equal(search(grid), at224)
    _, at_none, _ = full["same@none"]
    assert search(SAME).equals(at_none)
    _, valid64, _ = full["valid@64"]
    other = search(VALID, input_size=80)
    assert not other[list(GEOMETRY)].equals(valid64[list(GEOMETRY)])


# --- filters on the device equal the same filter over the full table ------------------------

def host_mask(text: str, df: pd.DataFrame, space) -> np.ndarray:
    """The filter run with numpy over the exhaustive table's columns."""
    schema = {c: "bool" if c in ("aligned", "valid") else "number" for c in (*GEOMETRY,
                                                                            "valid")}
    schema["candidate_id"] = "number"
    for var in space.variables:
        if all(isinstance(x, int | float) and not isinstance(x, bool) for x in var.labels):
            schema[var.name] = "number"
    node = parse_filter(text, schema)
    columns = {}
    for name in node.columns():
        series = df[name]
        known = series.notna().to_numpy()
        kind = bool if schema[name] == "bool" else np.float64
        columns[name] = (series.astype(object).where(series.notna(), 0).to_numpy(kind), known)
    return np.broadcast_to(np.asarray(filter_mask(node, columns, np), bool), (len(df),))


WHERES = {  # case -> filters (one device run each)
    "same@224": ["rf_h >= 20 and aligned or rf_h > rf_w",
                 "aligned == false and not (padding_h > 3)",
                 "stride_h // 4 == 2 and rf_min_h % 2 == 1 or candidate_id % 7 == 3",
                 "k == 5 and layer0.kernel != 3 and layer2.b0.0.stride == 1",
                 "abs(out_h - out_w) >= 2 or max(rf_h, rf_w) / min(stride_h, stride_w) > 5",
                 "rf_h / (padding_h - 2) > 3", "true"],
    "same@none": ["padding_h > 0 or true", "not (padding_h > 0)",
                  "padding_h >= 0 or not valid or rf_h > 30 and not (out_h > 0)"],
    "same@9x13": ["rf_h > rf_w or out_h < out_w", "valid and padding_w - padding_h != 0"],
    "valid@64": ["rf_h > 20 and out_h >= 3 or out_h % 2 == 1"],
}


@pytest.mark.parametrize(("case", "where"), [(c, w) for c, ws in WHERES.items() for w in ws])
def test_device_filter_equals_host_filter(full, case, where):
    space, df, _ = full[case]
    _, size = CASES[case]
    keep = host_mask(where, df, space)
    if where in ("true", "padding_h > 0 or true"):
        assert keep.all()  # unknown or true is true
    elif where == "not (padding_h > 0)":
        assert not keep.any()  # padding is unknown without an input size
    else:
        assert 0 < keep.sum() < len(df)
    got = search(space, where=where, input_size=size)
    assert_same(got, df[keep])


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


def test_where_of_the_grid_is_the_default_and_where_overrides_it(full, tmp_path):
    _, df, _ = full["valid@64"]
    grid = dict(VALID, where="rf_h > 20 and valid")
    default = search(grid)
    assert len(default) and (default["rf_h"] > 20).all()
    assert default["candidate_id"].tolist() == df.loc[
        df["valid"] & (df["rf_h"] > 20).fillna(False), "candidate_id"].tolist()
    over = search(grid, where="not valid")
    assert over["candidate_id"].tolist() == df.loc[~df["valid"], "candidate_id"].tolist()
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    assert search(str(path))["candidate_id"].tolist() == default["candidate_id"].tolist()
    with pytest.raises(SpecError, match="unknown column 'rf'"):
        search(dict(VALID, where="rf > 3"))


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


# --- sampling, id ranges ------------------------------------------------------------------

def test_sampling_agrees_with_the_walk_and_is_deterministic(full):
    space, df, _ = full["same@224"]
    a = search(space, input_size=224, sample=250, seed=3)
    b = search(space, input_size=224, sample=250, seed=3)
    c = search(space, input_size=224, sample=250, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert set(a["candidate_id"]) != set(c["candidate_id"])
    assert a["candidate_id"].is_unique and a["candidate_id"].is_monotonic_increasing
    assert 150 < len(a) <= 250  # 250 draws with replacement from 864
    walked = df.set_index("candidate_id").loc[a["candidate_id"]].reset_index()
    pd.testing.assert_frame_equal(a, walked)


@pytest.mark.parametrize(("lo", "hi"), [(5, 6), (100, 397)])
def test_id_ranges_restrict_walk_and_sample(full, lo, hi):
    space, df, _ = full["same@224"]
    walked = search(space, input_size=224, ids=(lo, hi))
    assert_same(walked, df.iloc[lo:hi])
    sampled = search(space, input_size=224, ids=(lo, hi), sample=100, seed=1)
    assert sampled["candidate_id"].between(lo, hi - 1).all()
    assert_same(sampled, df.iloc[sampled["candidate_id"]])


def big_rows(space, lo, hi):
    """Expected rows of BIG ids [lo, hi): rf is 1 + sum(k - 1)."""
    digits = space.digits(np.arange(lo, hi))
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

def sorted_top(df: pd.DataFrame, by: str, k: int, ascending: bool) -> pd.DataFrame:
    df = df[df[by].notna()]
    key = df[by].astype("float64")
    order = df.assign(_key=key if ascending else -key).sort_values(
        ["_key", "candidate_id"], kind="stable")
    return order.drop(columns="_key").head(k).reset_index(drop=True)


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


# --- output folder --------------------------------------------------------------------------

def read_folder(folder) -> pd.DataFrame:
    return pd.read_parquet(folder).sort_values("candidate_id").reset_index(drop=True)


def folder_state(folder) -> dict:
    return {p: (os.stat(os.path.join(folder, p)).st_mtime_ns, open(
        os.path.join(folder, p), "rb").read()) for p in sorted(os.listdir(folder))}


def test_output_folder_holds_the_same_rows(full, tmp_path):
    space, df, _ = full["valid@64"]
    out = tmp_path / "run"
    summary = search(space, output=out, where="valid")
    assert isinstance(summary, rfsearch.SearchSummary)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] is True
    assert done_chunks(out) == list(range(summary.chunks))
    assert any(p.name.startswith("part-") for p in out.iterdir())
    want = df[df["valid"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(read_folder(out), want)
    assert (summary.candidates, summary.matches) == (space.size, len(want))
    assert summary.output == str(out) and summary.space == "valid"


def test_rerun_changes_nothing_and_a_different_run_is_refused(tmp_path, monkeypatch):
    from rfsearch.search import output

    monkeypatch.setattr(output, "FLUSH_CHUNKS", 2)  # several part files
    space = space_of(BIG)
    out = tmp_path / "run"
    kwargs = {"ids": (0, BIG_WIDTH * 6), "chunk": BIG_WIDTH, "where": "rf_h >= 29"}
    first = search(space, output=out, **kwargs)
    assert first.chunks == 6 and len(list(out.glob("part-*.parquet"))) >= 2
    state = folder_state(out)
    time.sleep(0.01)
    again = search(space, output=out, **kwargs)
    assert again.matches == first.matches
    after = folder_state(out)
    assert {k: v[1] for k, v in after.items()} == {k: v[1] for k, v in state.items()}
    parts = [k for k in state if k.startswith("part-")]
    assert all(after[p][0] == state[p][0] for p in parts)  # not rewritten
    for other in ({"where": "rf_h >= 30"}, {"chunk": 2 * BIG_WIDTH},
                  {"ids": (0, BIG_WIDTH * 5)}, {"top": 3, "by": "rf_h"}, {"sample": 100}):
        with pytest.raises(SpecError, match="holds a different search"):
            search(space, output=out, **(kwargs | other))
    with pytest.raises(SpecError, match="holds a different search"):
        search(space_of(VALID), output=out)
    assert folder_state(out) == after


def test_a_folder_with_stray_parts_is_refused(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "part-000000.parquet").write_bytes(b"x")
    with pytest.raises(SpecError, match=r"no _manifest\.json"):
        search(VALID, output=out)


def test_top_into_a_folder(full, tmp_path):
    space, df, _ = full["valid@64"]
    summary = search(space, output=tmp_path / "top", top=5, by="rf_h")
    assert [p.name for p in (tmp_path / "top").glob("part-*")] == ["part-top.parquet"]
    got = pd.read_parquet(tmp_path / "top")
    pd.testing.assert_frame_equal(got, sorted_top(df, "rf_h", 5, False))
    assert summary.matches == 5
    again = search(space, output=tmp_path / "top", top=5, by="rf_h")
    assert again.matches == 5
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "top"), got)


def test_top_resume_after_crash_while_merging(tmp_path, monkeypatch):
    from rfsearch.search import output

    monkeypatch.setattr(output, "FLUSH_CHUNKS", 1)  # a part per chunk: several to delete
    space = space_of(BIG)
    out = tmp_path / "top"
    kwargs = {"ids": (0, BIG_WIDTH * 4), "chunk": BIG_WIDTH, "top": 3, "by": "rf_h"}
    real_unlink = type(out).unlink
    calls = []

    def crash_after_first(self, *args, **kw):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(self)
        return real_unlink(self, *args, **kw)

    monkeypatch.setattr(type(out), "unlink", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        search(space, output=out, **kwargs)
    monkeypatch.undo()
    search(space, output=out, **kwargs)
    got = pd.read_parquet(out)
    want = search(space, **kwargs)
    assert got["candidate_id"].is_unique
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want)


def test_output_with_labels_of_mixed_types(tmp_path):
    grid = {"name": "mixed", "input_size": 32, "layers": [
        {"op": "conv", "kernel": 3, "padding": [1, "same"]},
        {"op": "conv", "kernel": [3, [3, 1]]}]}
    df = search(grid)
    search(grid, output=tmp_path / "out")
    back = read_folder(tmp_path / "out")
    assert back["candidate_id"].tolist() == df["candidate_id"].tolist()
    assert [str(v) for v in back["layer0.padding"]] == [str(v) for v in df["layer0.padding"]]
    assert_same(back[list(GEOMETRY)], df[list(GEOMETRY)])


def test_tie_names_do_not_shadow_result_columns():
    grid = {"name": "shadow", "layers": [
        {"op": "conv", "kernel": {"choices": [3, 5], "tie": "candidate_id"}},
        {"op": "conv", "kernel": {"choices": [1, 7], "tie": "rf_h"}}]}
    try:
        df = search(grid)
    except SpecError:
        return  # refusing the name is fine
    assert df["candidate_id"].tolist() == [0, 1, 2, 3]
    assert df["rf_h"].tolist() == [3, 9, 5, 11]
    assert search(grid, where="candidate_id == 3")["candidate_id"].tolist() == [3]


# --- resume after SIGKILL -------------------------------------------------------------------

RESUME_ARGS = {"ids": [BIG_WIDTH, BIG_WIDTH * 41], "chunk": BIG_WIDTH,
               "where": "rf_h >= 27 and candidate_id % 5 != 0"}

SLOW_CHILD = textwrap.dedent("""
    import json, sys, time
    import pyarrow.parquet as pq
    from rfsearch import search
    from rfsearch.search import output
    from rfsearch.spaces import grid_space
    output.FLUSH_CHUNKS = 1  # a part file and a manifest update per chunk
    write_table = pq.write_table
    def slow(*args, **kwargs):  # every chunk writes a part: 50 ms each
        time.sleep(0.05)
        return write_table(*args, **kwargs)
    pq.write_table = slow
    grid, kwargs, out = json.loads(sys.argv[1])
    kwargs["ids"] = tuple(kwargs["ids"])
    search(grid_space(grid)[0], output=out, **kwargs)
""")


def run_child(script: str, *args) -> subprocess.Popen:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.Popen([sys.executable, "-c", script, *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def done_chunks(folder) -> list[int] | None:
    """Finished chunks named by the manifest (stored as [start, stop) ranges)."""
    try:
        ranges = json.loads((folder / MANIFEST).read_text())["done"]
    except (OSError, ValueError, KeyError):
        return None
    return [c for lo, hi in ranges for c in range(lo, hi)]


def test_resume_after_sigkill_gives_the_uninterrupted_result(tmp_path):
    space = space_of(BIG)
    out = tmp_path / "killed"
    child = run_child(SLOW_CHILD, json.dumps([BIG, RESUME_ARGS, str(out)]))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = done_chunks(out)
            if done is not None and len(done) >= 4:
                break
            assert child.poll() is None, child.stderr.read().decode()
            time.sleep(0.005)
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    done = done_chunks(out)
    assert done is not None and 4 <= len(done) < 40
    assert json.loads((out / MANIFEST).read_text())["complete"] is False
    kwargs = dict(RESUME_ARGS, ids=tuple(RESUME_ARGS["ids"]))
    resumed = search(space, output=out, **kwargs)
    clean = search(space, output=tmp_path / "clean", **kwargs)
    assert resumed.matches == clean.matches > 0
    a, b = read_folder(out), read_folder(tmp_path / "clean")
    assert a["candidate_id"].is_unique
    pd.testing.assert_frame_equal(a, b)
    memory = search(space, **kwargs)
    pd.testing.assert_frame_equal(a, memory)
    assert json.loads((out / MANIFEST).read_text())["complete"] is True


KILL_BETWEEN_PART_AND_MANIFEST = textwrap.dedent("""
    import json, os, signal, sys
    from rfsearch import search
    from rfsearch.search import output
    output.FLUSH_CHUNKS = 1  # a part file and a manifest update per chunk
    replace = os.replace
    manifests = []
    def replace_or_die(src, dst):
        if os.path.basename(dst) == "_manifest.json":
            manifests.append(dst)
            if len(manifests) == 3:  # chunk 2's part is in place, its manifest entry is not
                os.kill(os.getpid(), signal.SIGKILL)
        return replace(src, dst)
    os.replace = replace_or_die
    space, kwargs, out = json.loads(sys.argv[1])
    search(space, output=out, **kwargs)
""")


def test_resume_rewrites_a_part_whose_chunk_was_not_recorded(tmp_path):
    out = tmp_path / "killed"
    kwargs = {"sample": 3000, "chunk": 500, "seed": 9, "where": "rf_h > 800"}
    child = run_child(KILL_BETWEEN_PART_AND_MANIFEST, json.dumps(["ofa-mbv3", kwargs,
                                                                  str(out)]))
    _, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err.decode()
    assert done_chunks(out) == [0, 1]
    assert (out / "part-000002.parquet").exists()
    resumed = search("ofa-mbv3", output=out, **kwargs)
    clean = search("ofa-mbv3", output=tmp_path / "clean", **kwargs)
    assert resumed.matches == clean.matches > 0
    a, b = read_folder(out), read_folder(tmp_path / "clean")
    pd.testing.assert_frame_equal(a, b)
    assert a["candidate_id"].is_unique  # 3,000 draws from 117**5: no repeats expected
    assert done_chunks(out) == list(range(6))


# --- command line ---------------------------------------------------------------------------

@pytest.fixture
def grid_file(tmp_path):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(VALID))
    return path


def test_cli_search_prints_the_top_rows(grid_file, capsys, full):
    _, df, _ = full["valid@64"]
    assert main(["search", str(grid_file), "--top", "2", "--by", "rf_h"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[0] == "candidate_id" and "rf_h" in header and "valid" in header
    want = sorted_top(df, "rf_h", 2, False)
    assert len(lines) == 3
    for line, row in zip(lines[1:], frame_rows(want), strict=True):
        cells = dict(zip(header, line.split(), strict=True))
        assert int(cells["candidate_id"]) == row["candidate_id"]
        assert int(cells["rf_h"]) == row["rf_h"]


def test_cli_search_where_ids_and_output(grid_file, tmp_path, capsys, full):
    _, df, _ = full["valid@64"]
    assert main(["search", str(grid_file), "--where", "candidate_id < 3", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [int(line.split()[0]) for line in lines[1:]] == [0, 1, 2]
    out = tmp_path / "out"
    assert main(["search", str(grid_file), "--ids", "10:50", "-o", str(out), "-q"]) == 0
    pd.testing.assert_frame_equal(read_folder(out), df.iloc[10:50].reset_index(drop=True))
    assert main(["search", str(grid_file), "--where", "valid", "--sample", "40", "--seed",
                 "1", "-q"]) == 0
    assert main(["search", str(grid_file), "--where", "not valid and valid", "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(no rows)"


def test_cli_search_bad_where_is_one_line_exit_1(grid_file, capsys):
    assert main(["search", str(grid_file), "--where", "rf >= 3"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rfsearch: where 'rf >= 3': unknown "
                                                   "column 'rf' (did you mean")
    assert main(["search", str(grid_file), "--where", "rf_h = 3"]) == 1
    assert "(use == to compare)" in capsys.readouterr().err
    assert main(["search", str(grid_file), "--top", "3"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_search_usage_errors_exit_2(grid_file):
    for args in (["--top", "0"], ["--sample", "-1"], ["--ids", "3"], ["--chunk", "x"]):
        with pytest.raises(SystemExit) as info:
            main(["search", str(grid_file), *args])
        assert info.value.code == 2


def test_cli_spaces_lists_the_builtin_spaces(capsys):
    assert main(["spaces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines[1:]]
    assert {"nasbench201", "ofa-mbv3", "natsbench-sss", "anynet", "regnet",
            "efficientnet"} <= set(names)
    row = next(line for line in lines if line.startswith("nasbench201 "))
    assert "15,625" in row
    assert "21,924,480,357" in next(line for line in lines if line.startswith("ofa-mbv3 "))

