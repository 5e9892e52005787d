"""Grids, helpers and expectations shared by the tests of ``rfsearch.search``
(test_search, test_grid, test_sampling, test_search_filter, test_search_output, test_cli).

The exhaustive result of every case in ``CASES`` and ``evaluate`` of each of its
candidates' specs is computed once per session (the ``full`` fixture of conftest.py).
"""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd

import rfsearch
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

# 54 candidates, 'same' padding, strides 1..3.
SMALL = {"layers": [{"op": "conv", "kernel": [3, 5, 7], "stride": [1, 2], "padding": "same"},
                    {"op": "conv", "kernel": [1, 3, 5], "stride": [1, 2, 3]}]}

# Analysis columns at input 32: a repeat, a pool and dilations.
ANALYSIS_GRID = {"name": "g", "input_size": 32, "layers": [
    {"op": "conv", "kernel": [3, 7], "stride": 2, "padding": 1},
    {"repeat": [1, 2, 3], "layers": [{"op": "conv", "kernel": [1, 3, 5], "padding": "same"}]},
    {"op": "maxpool", "kernel": 2, "stride": 2},
    {"op": "conv", "kernel": [3, 5], "dilation": [1, 2], "padding": "same"}]}

_SPACES: dict[str, object] = {}


# A sampled grid written as partitioned parts, in small chunks (resume and share tests).
PARTITIONED = {"name": "p", "input_size": 64, "layers": [
    {"op": "conv", "kernel": [1, 3, 5, 7], "dilation": [1, 2], "stride": 2, "padding": "same"},
    {"op": "conv", "kernel": [3, 5], "dilation": [1, 2], "padding": "same"},
    {"op": "conv", "kernel": [1, 3, 5], "padding": "same"}]}
PARTITIONED_OPTIONS = {"where": "valid", "partition_by": ["layer0.kernel"], "chunk": 8,
                       "sample": 96}


def space_of(grid):
    """The grid's Space (built once per grid, so its block encodings are reused)."""
    key = json.dumps(grid, sort_keys=True)
    if key not in _SPACES:
        _SPACES[key] = grid_space(grid)[0]
    return _SPACES[key]


def size_of(grid, input_size):
    return input_size if input_size is not None else grid.get("input_size")


@functools.cache
def exhaustive() -> dict:
    """Every case's Space, its exhaustive search result and evaluate() of every
    candidate's spec: {case: (space, df, ev)}."""
    out = {}
    for name, (grid, size) in CASES.items():
        space = space_of(grid)
        df = rfsearch.search(space, input_size=size)
        ev = rfsearch.evaluate([space.spec(i) for i in range(space.size)],
                               input_size=size_of(grid, size))
        out[name] = (space, df, ev)
    return out


def evaluate_all(grid, size):
    """evaluate() of the spec of every candidate of a grid, in id order."""
    space, _ = grid_space(grid)
    return rfsearch.evaluate([space.spec(i) for i in range(space.size)], input_size=size)


def expected_row(ev_row: dict) -> dict:
    """The search row an evaluate() row stands for."""
    return {c: ev_row[c] for c in GEOMETRY} | {"valid": ev_row["error"] is None}


def search_row(row: dict) -> dict:
    """The geometry and validity of a search row."""
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


def sorted_top(df: pd.DataFrame, by: str, k: int, ascending: bool) -> pd.DataFrame:
    """The expected top K of ``df`` by ``by``: null keys never rank, ties go to the
    smaller candidate_id."""
    df = df[df[by].notna()]
    key = df[by].astype("float64")
    order = df.assign(_key=key if ascending else -key).sort_values(
        ["_key", "candidate_id"], kind="stable")
    return order.drop(columns="_key").head(k).reset_index(drop=True)


def read_folder(folder) -> pd.DataFrame:
    """A search output folder as one table, in candidate_id order."""
    return pd.read_parquet(folder).sort_values("candidate_id").reset_index(drop=True)


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
