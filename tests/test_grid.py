"""Design grids as search spaces: choice columns and ties follow the spec, ids are
mixed-radix numbers of the choices, the grid's input size and filter are defaults, and
bad grids are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from frames import frame_rows
from search_cases import GEOMETRY, SAME, VALID, space_of

import rfsearch
from rfsearch import search
from rfsearch.errors import SpecError


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


def test_grid_input_size_is_the_default_and_can_be_overridden(full):
    _, at224, _ = full["same@224"]
    grid = dict(SAME, input_size=224)
    pd.testing.assert_frame_equal(search(grid), at224)
    _, at_none, _ = full["same@none"]
    assert search(SAME).equals(at_none)
    _, valid64, _ = full["valid@64"]
    other = search(VALID, input_size=80)
    assert not other[list(GEOMETRY)].equals(valid64[list(GEOMETRY)])


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


def test_spaces_past_64_bit_ids_and_bad_slots_are_one_line_errors():
    huge = {"layers": [{"op": "conv", "kernel": [1, 3], "stride": [1, 2],
                        "padding": ["same", "valid"]}] * 22}
    with pytest.raises(SpecError, match="more than 64-bit ids can number"):
        rfsearch.search(huge, sample=10)
    with pytest.raises(SpecError, match=r"slot 'layer0': .*unknown op 'max_pool'"):
        rfsearch.search({"layers": [{"op": "max_pool", "kernel": 3}]})
    # a grid searched candidate by candidate refuses a bad choice the same way (its rows
    # were valid=False without a message)
    resampling = {"name": "up", "layers": [{"op": "upsample", "factor": 2,
                                           "mode": ["nearest", "area"]}]}
    with pytest.raises(SpecError, match=r"^space 'up', slot 'layer0': .*mode must be one of "
                       r"nearest, .*got 'area'$"):
        rfsearch.search(resampling)


DECODER_GRID = {"name": "dec", "input_size": 64, "layers": [
    {"name": "down", "op": "conv", "kernel": [3, 5], "stride": [2, 4], "padding": "same"},
    {"name": "up", "op": "upsample", "factor": [2, 4], "mode": ["nearest", "bilinear"]},
    {"name": "head", "op": "conv", "kernel": 3, "padding": 1}]}


def test_grids_with_resampling_are_searched_candidate_by_candidate():
    found = rfsearch.search(DECODER_GRID)
    assert len(found) == 16 and found["valid"].all()
    specs = [json.loads(json.dumps(s)) for s in found["candidate_id"].map(
        lambda i: space_spec(DECODER_GRID, int(i)))]
    want = rfsearch.evaluate(specs, input_size=64)
    for column in ("rf_h", "rf_min_w", "stride_h", "stride_den_h", "padding_w", "out_h",
                   "aligned"):
        assert list(found[column]) == list(want[column]), column
    # by hand: conv k3 s2 'same' at 64 reads [2y, 2y + 2]; nearest x2 repeats each unit
    # twice; the 3x3 conv then joins two of them: rf 3 + 2, stride 1, unit 0 from -2
    row = found[(found["down.kernel"] == 3) & (found["down.stride"] == 2)
                & (found["up.factor"] == 2) & (found["up.mode"] == "nearest")].iloc[0]
    assert (row["rf_h"], row["stride_h"], row["stride_den_h"], row["padding_h"],
            row["out_h"]) == (5, 1, 1, 2, 64)
    picked = rfsearch.search(DECODER_GRID, where="stride_den_h == 1 and rf_h > 10")
    assert list(picked["candidate_id"]) == list(
        found[(found["stride_den_h"] == 1) & (found["rf_h"] > 10)]["candidate_id"])


def space_spec(grid: dict, candidate: int) -> dict:
    from rfsearch.spaces.grid import grid_space

    space, _ = grid_space(grid)
    assert space.per_candidate
    return space.spec(candidate)


def test_a_grid_of_1d_blocks_takes_a_sequence_length():
    grid = {"name": "seq", "input_size": 1000, "layers": [
        {"name": "c", "op": "conv", "kernel": [[3], [5]], "dilation": [1, 2]},
        {"name": "d", "op": "conv", "kernel": [[3]], "stride": [2, 4]}]}
    found = rfsearch.search(grid)
    assert found["valid"].all() and found["rf_h"].isna().all()
    # rf = d (k - 1) + 1 of the first conv, plus (3 - 1) of the second at jump 1
    want = [(k - 1) * d + 1 + 2 for k in (3, 5) for d in (1, 2) for _ in (2, 4)]
    assert list(found["rf_w"]) == want
    assert list(found["rf_ratio"]) == pytest.approx([r / 1000 for r in want])
    again = rfsearch.search(grid, input_size="500")
    assert list(again["out_w"])[:2] == [(500 - 2 - 3) // 2 + 1, (500 - 2 - 3) // 4 + 1]


def test_a_grid_of_3d_blocks_has_depth_columns(tmp_path):
    grid = {"name": "vid", "input_size": "8x64x64", "layers": [
        {"op": "conv", "kernel": [[3, 7, 7]], "stride": [[1, 2, 2]], "padding": [[1, 3, 3]]},
        {"op": "maxpool", "kernel": [[1, 3, 3], [3, 3, 3]], "stride": [[1, 2, 2]],
         "padding": [[0, 1, 1]], "ceil_mode": True}]}
    found = rfsearch.search(grid, where="rf_d > 3")
    # conv: d 3, h 7; the 3x3x3 pool at jump (1, 2, 2) adds (2, 4, 4); ceil mode at 32 + 2:
    # ceil(31 / 2) + 1 = 17 (its last window starts inside the map)
    assert len(found) == 1 and found.iloc[0]["layer1.kernel"] == "[3, 3, 3]"
    row = found.iloc[0]
    assert (row["rf_d"], row["rf_h"], row["out_d"], row["out_h"]) == (5, 11, 6, 17)
    assert row["rf_ratio"] == pytest.approx(11 / 64)
    rfsearch.search(grid, output=tmp_path / "out")
    written = pd.read_parquet(tmp_path / "out")
    assert {"rf_d", "stride_den_d", "out_d"} <= set(written.columns) and len(written) == 2


def test_per_candidate_grids_take_constant_filters_and_chunks_of_one_kind():
    """From the grid-search audit: a filter that reads no column ('true') raised
    KeyError(np.True_) on a per-candidate grid (darts too); a chunk of a 1-D/3-D grid
    holding no 3-D candidate raised KeyError('rf_d')."""
    resampled = {"layers": [{"op": "conv", "kernel": [3, 5], "stride": [1, 2], "padding": 1},
                            {"op": "upsample", "factor": [1, 2]}]}
    assert len(search(resampled, where="true")) == 8
    assert len(search(resampled, where="1 < 2 and not false", top=2, by="rf_h")) == 2
    assert search(resampled, where="false").empty
    assert len(search("darts", where="true", sample=3)) == 3
    mixed = {"input_size": 8, "layers": [{"op": "conv", "kernel": [[3], [3, 3, 3]]}]}
    whole = search(mixed)
    assert whole["rf_d"].isna().tolist() == [True, False]
    for kwargs in ({"ids": (0, 1)}, {"chunk": 1}):
        part = search(mixed, **kwargs)
        pd.testing.assert_frame_equal(part, whole.iloc[:len(part)])


def test_a_block_of_scalar_fields_takes_the_axes_of_the_others():
    """A 1-D slot beside a slot of plain ints made the grid 2-D: 100x100 was accepted and
    every row was an error row ('has 2 axes; this network has 1')."""
    grid = {"input_size": 100, "layers": [
        {"op": "conv", "kernel": [[3], [5]], "stride": [[2]]},
        {"op": "conv", "kernel": [3, 5], "stride": 2}]}
    space = rfsearch.spaces.grid_space(grid)[0]
    assert space.dims == 1
    rows = search(grid)
    assert rows["valid"].all() and rows["rf_w"].tolist() == [7, 11, 9, 13]
    with pytest.raises(SpecError, match="input size 100x100 has 2 axes; this network has 1"):
        search(grid, input_size="100x100")
