"""Edge cases of the search found in review: overflow, tiny and huge spaces, sampling
without replacement, and columns that only some paths produce."""

import numpy as np
import pandas as pd
import pytest

import rfsearch
from rfsearch import SpecError
from rfsearch.search.sampling import sample_ids
from rfsearch.spaces import grid_space

SMALL = {"layers": [{"op": "conv", "kernel": [3, 5, 7], "stride": [1, 2], "padding": "same"},
                    {"op": "conv", "kernel": [1, 3, 5], "stride": [1, 2, 3]}]}


def evaluate_all(grid, size):
    space, _ = grid_space(grid)
    return rfsearch.evaluate([space.spec(i) for i in range(space.size)], input_size=size)


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


def test_a_space_of_one_candidate():
    got = rfsearch.search({"layers": [{"op": "conv", "kernel": 3, "stride": 2,
                                       "padding": "same"}]}, input_size=10)
    assert got[["candidate_id", "rf_h", "out_h"]].values.tolist() == [[0, 3, 5]]


def test_sampling_draws_without_replacement():
    ids = np.concatenate([sample_ids(5, 1005, s, 100, 3) for s in range(0, 1000, 100)])
    assert sorted(ids.tolist()) == list(range(5, 1005))
    got = rfsearch.search(SMALL, input_size=12, sample=100, chunk=10)
    assert got["candidate_id"].is_unique and len(got) == 54  # the whole space, once each
    top = rfsearch.search(SMALL, input_size=12, sample=40, chunk=10, top=5, by="rf_h")
    assert top["candidate_id"].is_unique


def test_top_by_rf_ratio_and_host_filters_on_aligned():
    every = rfsearch.search(SMALL, input_size=12)
    top = rfsearch.search(SMALL, input_size=12, top=3, by="rf_ratio")
    assert top["rf_ratio"].tolist() == sorted(every["rf_ratio"].dropna(), reverse=True)[:3]
    assert every["rf_ratio"].tolist() == (every["rf_h"] / 12).tolist()
    grid = {"layers": [{"op": "conv", "kernel": [3, 5], "stride": [1, 2], "padding": "same"},
                       {"branches": [[{"op": "conv", "kernel": 3, "stride": [1, 2],
                                       "padding": "same"}],
                                     [{"op": "avgpool", "kernel": 2, "stride": [1, 2]}]]}]}
    got = rfsearch.search(grid, input_size=12, where="n_unproductive == 0 or aligned")
    ev = evaluate_all(grid, 12)
    full = rfsearch.evaluate([grid_space(grid)[0].spec(i) for i in range(len(ev))],
                             input_size=12, analysis=True)
    keep = (full["n_unproductive"] == 0).fillna(False) | full["aligned"].fillna(False)
    assert got["candidate_id"].tolist() == np.flatnonzero(keep.to_numpy()).tolist()


def test_an_empty_result_folder_keeps_its_columns(tmp_path):
    rfsearch.search(SMALL, output=tmp_path / "none", where="rf_h > 100000")
    df = pd.read_parquet(tmp_path / "none")
    assert len(df) == 0 and {"candidate_id", "rf_h", "valid"} <= set(df.columns)


def test_spaces_past_64_bit_ids_and_bad_slots_are_one_line_errors():
    huge = {"layers": [{"op": "conv", "kernel": [1, 3], "stride": [1, 2],
                        "padding": ["same", "valid"]}] * 22}
    with pytest.raises(SpecError, match="more than 64-bit ids can number"):
        rfsearch.search(huge, sample=10)
    with pytest.raises(SpecError, match=r"slot 'layer0': .*unknown op 'max_pool'"):
        rfsearch.search({"layers": [{"op": "max_pool", "kernel": 3}]})


def test_hive_partitioned_output_reads_back_the_same_rows(tmp_path):
    grid = {"name": "p", "input_size": 64, "layers": [
        {"op": "conv", "kernel": [1, 3, 5, 7], "dilation": [1, 2], "stride": 2,
         "padding": "same"},
        {"op": "conv", "kernel": [3, 5], "padding": "same"}]}
    out = tmp_path / "hive"
    rfsearch.search(grid, output=out, where="valid", partition_by=["layer0.kernel"], chunk=4)
    dirs = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert dirs == [f"layer0.kernel={k}" for k in (1, 3, 5, 7)]
    back = pd.read_parquet(out).sort_values("candidate_id").reset_index(drop=True)
    want = rfsearch.search(grid, where="valid")
    assert back["candidate_id"].tolist() == want["candidate_id"].tolist()
    assert back["layer0.kernel"].astype(int).tolist() == want["layer0.kernel"].tolist()
    assert back["rf_h"].tolist() == want["rf_h"].tolist()
    with pytest.raises(SpecError, match="not a choice column"):
        rfsearch.search(grid, output=tmp_path / "x", partition_by=["rf_h"])
    with pytest.raises(SpecError, match="holds a different search"):
        rfsearch.search(grid, output=out, where="valid", chunk=4)  # unpartitioned


def test_partitioned_output_resumes_after_a_crash(tmp_path, monkeypatch):
    from rfsearch.search import output

    grid = {"name": "p", "input_size": 64, "layers": [
        {"op": "conv", "kernel": [1, 3, 5, 7], "dilation": [1, 2], "stride": 2,
         "padding": "same"},
        {"op": "conv", "kernel": [3, 5], "dilation": [1, 2], "padding": "same"},
        {"op": "conv", "kernel": [1, 3, 5], "padding": "same"}]}
    kwargs = {"where": "valid", "partition_by": ["layer0.kernel"], "chunk": 8, "sample": 96}
    monkeypatch.setattr(output, "FLUSH_CHUNKS", 2)
    real, calls = output.write_atomic, []

    def crash_later(path, write):
        calls.append(path)
        if len(calls) == 9:  # part files of a group half written, not yet recorded
            raise KeyboardInterrupt("killed")
        return real(path, write)

    monkeypatch.setattr(output, "write_atomic", crash_later)
    with pytest.raises(KeyboardInterrupt):
        rfsearch.search(grid, output=tmp_path / "run", **kwargs)
    monkeypatch.setattr(output, "write_atomic", real)
    rfsearch.search(grid, output=tmp_path / "run", **kwargs)
    rfsearch.search(grid, output=tmp_path / "clean", **kwargs)
    a = pd.read_parquet(tmp_path / "run").sort_values("candidate_id").reset_index(drop=True)
    b = pd.read_parquet(tmp_path / "clean").sort_values("candidate_id").reset_index(drop=True)
    assert a["candidate_id"].is_unique
    pd.testing.assert_frame_equal(a, b)
