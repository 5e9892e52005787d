"""Built-in search spaces: native keys (NAS-Bench-201 official index, NATS-Bench sss key,
OFA depth/kernel keys) and geometry equal to evaluate() of the same networks."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest
from frames import frame_rows

import rfsearch
from rfsearch import search
from rfsearch.cli import main
from rfsearch.errors import SpecError
from rfsearch.spaces import BUILTIN, builtin, candidates, resolve_space
from rfsearch.spaces.families import (
    EFFICIENTNET_DEPTH,
    REGNET_DEPTH,
    REGNET_W0,
    REGNET_WA,
    REGNET_WM,
)
from rfsearch.zoo.efficientnet import VARIANTS
from rfsearch.zoo.regnet import REGNETX, anynet, regnet_stages

GEOMETRY = ("rf_h", "rf_w", "rf_min_h", "rf_min_w", "stride_h", "stride_w", "padding_h",
            "padding_w", "aligned", "out_h", "out_w")

# NAS-Bench-201 official index -> arch_str (Dong and Yang, ICLR 2020: the cells in product
# order, shuffled with random.seed(88); the index its published tables are keyed by)
NB201_OFFICIAL = {
    0: "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
       "skip_connect~2|",
    9: "|avg_pool_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    123: "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|"
         "nor_conv_3x3~2|",
    9930: "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
          "nor_conv_3x3~2|",
}
NB201_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def geometry(row: dict) -> dict:
    return {c: row[c] for c in GEOMETRY}


def evaluated(specs, input_size) -> list[dict]:
    df = rfsearch.evaluate(specs, input_size=input_size)
    assert df["error"].isna().all(), df["error"].dropna().tolist()[:3]
    return [geometry(r) for r in frame_rows(df)]


def rows_of(df: pd.DataFrame, ids) -> list[dict]:
    """Geometry of the rows of ``ids``, in that order."""
    return frame_rows(df.set_index("candidate_id").loc[list(ids), list(GEOMETRY)])


# --- NAS-Bench-201 -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nb201():
    return search("nasbench201")


def test_nasbench201_official_indices(nb201):
    assert len(nb201) == 15_625
    assert nb201["candidate_id"].tolist() == list(range(15_625))
    assert (nb201["nb201_index"] == nb201["candidate_id"]).all()
    for index, arch in NB201_OFFICIAL.items():
        assert nb201.loc[index, "arch_str"] == arch
        assert nb201.loc[index, "nb201_index"] == index
    assert nb201["arch_str"].is_unique


def _has_path(arch: str) -> bool:
    """Whether node 3 is reachable from node 0 over edges that are not 'none'."""
    nodes = [[e.split("~") for e in part.split("|") if e] for part in arch.split("+")]
    live = {0}
    for j, edges in enumerate(nodes, start=1):
        if any(op != "none" and int(i) in live for op, i in edges):
            live.add(j)
    return 3 in live


def test_nasbench201_cells_without_a_path_are_invalid(nb201):
    by_arch = nb201.set_index("arch_str")
    assert not by_arch.loc[NB201_NONE, "valid"]
    assert by_arch.loc[NB201_NONE, list(GEOMETRY)].isna().all()
    expected = [_has_path(a) for a in nb201["arch_str"]]
    assert nb201["valid"].tolist() == expected
    assert 0 < (~nb201["valid"]).sum() < 15_625
    assert not nb201.loc[9, "valid"] or _has_path(NB201_OFFICIAL[9])


def test_nasbench201_every_valid_cell_is_misaligned_at_32(nb201):
    valid = nb201[nb201["valid"]]
    assert (valid["aligned"] == False).all()  # noqa: E712
    assert valid["aligned"].notna().all()
    assert (valid["stride_h"] == 4).all() and (valid["out_h"] == 8).all()
    assert valid["rf_h"].nunique() >= 3


def test_nasbench201_rows_equal_the_zoo_network(nb201):
    rng = np.random.default_rng(0)
    ids = [*NB201_OFFICIAL, *rng.choice(np.flatnonzero(nb201["valid"]), 6, replace=False)]
    ids = [int(i) for i in ids]
    archs = nb201.loc[ids, "arch_str"].tolist()
    specs = [rfsearch.zoo.build(f"nasbench201(arch={arch})") for arch in archs]
    assert [geometry(r) for r in rows_of(nb201, ids)] == evaluated(specs, 32)
    space = builtin("nasbench201")
    assert [geometry(r) for r in rows_of(nb201, ids)] == evaluated(
        [space.spec(i) for i in ids], 32)
    with pytest.raises(SpecError):
        rfsearch.zoo.build(f"nasbench201(arch={NB201_NONE})")


def _window_blind(block: dict | None):
    """A cell spec with the 3x3 average pool written as the 3x3 conv (same window)."""
    if block is None:
        return None
    return [{**layer, "op": "conv"} if layer.get("op") == "avgpool" else layer
            for layer in block["layers"]]


def test_nasbench201_geometry_classes_fix_the_cell_up_to_its_window_op():
    """Tabulation encodes one cell per class: every cell of a class must have the same
    layers, names, inputs and windows as the class's own (conv3x3 and avg_pool_3x3 share
    a 3x3 window), and no-path cells are the class -1 alone."""
    from rfsearch.spaces.nas import NB201Cells, nb201_arch_strings

    cells = NB201Cells(nb201_arch_strings())
    assert len(cells.first) < len(cells) // 4  # the point: far fewer cells to encode
    for i in range(len(cells)):
        rep = cells.first[cells.geometry[i]]
        assert _window_blind(cells[i]) == _window_blind(cells[int(rep)]), i
    assert cells[int(cells.first[0])] is None and all(
        cells[int(i)] is not None for i in cells.first[1:])
    batch, column, usable = cells.encoded
    assert len(batch.length) == len(cells.first)
    assert len(column) == len(usable) == len(cells) and usable.sum() == sum(
        cells[i] is not None for i in range(len(cells)))


# --- NATS-Bench size space -----------------------------------------------------------------

def test_natsbench_sss_keys_and_one_geometry():
    df = search("natsbench-sss")
    assert len(df) == 32_768 == builtin("natsbench-sss").size
    assert (df["sss_index"] == df["candidate_id"]).all()
    channels = "(8|16|24|32|40|48|56|64)"
    assert df["sss_key"].str.fullmatch(":".join([channels] * 5)).all()
    assert df["sss_key"].is_unique
    parts = df["sss_key"].str.split(":", expand=True).astype(int)
    for i in range(5):
        assert (parts[i] == df[f"C{i + 1}"]).all()
    assert df.loc[0, "sss_key"] == "8:8:8:8:8" and df.loc[32_767, "sss_key"] == "64:64:64:64:64"
    assert df.loc[1, "sss_key"] == "8:8:8:8:16"  # the last layer varies fastest
    assert df["valid"].all()
    for column in GEOMETRY:
        assert df[column].nunique(dropna=False) == 1, column
    space = builtin("natsbench-sss")
    assert [geometry(frame_rows(df.iloc[[i]])[0]) for i in (0, 12345)] == evaluated(
        [space.spec(0), space.spec(12345)], 32)


# --- Once-for-All MobileNetV3 ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ofa():
    return builtin("ofa-mbv3"), search("ofa-mbv3", sample=60, seed=5)


def test_ofa_size_and_labels(ofa):
    space, _ = ofa
    assert space.size == 117 ** 5
    labels = space.variables[0].labels
    assert len(labels) == 117 and labels[0] == "d=2 ks=3,3" and labels[-1] == "d=4 ks=7,7,7,7"
    first = space.spec(0)
    assert sum(layer["name"].endswith(".depthwise") for layer in first["layers"]) == 1 + 5 * 2


def test_ofa_sampled_rows_equal_evaluate(ofa):
    space, df = ofa
    assert 55 <= len(df) <= 60 and df["valid"].all()
    ids = df["candidate_id"].tolist()[:20]
    assert [geometry(r) for r in rows_of(df, ids)] == evaluated(
        [space.spec(i) for i in ids], 224)


def test_ofa_keys_follow_the_stage_labels(ofa):
    space, df = ofa
    for row in df.to_dict("records"):
        d, ks = [int(x) for x in row["d"]], [int(x) for x in row["ks"]]
        assert len(d) == 5 and len(ks) == 20
        layers = space.spec(row["candidate_id"])["layers"]
        for s in range(5):
            match = re.fullmatch(r"d=(\d) ks=([\d,]+)", row[f"stage{s + 1}"])
            depth, kernels = int(match[1]), [int(k) for k in match[2].split(",")]
            assert d[s] == depth == len(kernels)
            assert ks[4 * s: 4 * s + 4] == kernels + [0] * (4 - depth)
            spec_kernels = [layer["kernel"] for layer in layers if layer["name"].startswith(
                f"stage{s + 1}/") and layer["name"].endswith(".depthwise")]
            assert spec_kernels == kernels


def test_ofa_walk_of_an_id_range_agrees_with_sampling(ofa):
    space, _ = ofa
    lo = 117 ** 4 * 50 + 117 ** 3 * 7 + 1000
    walked = search(space, ids=(lo, lo + 3000), where="rf_h >= 700")
    sampled = search(space, ids=(lo, lo + 3000), sample=500, seed=1)
    expected = sampled[sampled["rf_h"] >= 700]
    assert set(expected["candidate_id"]) <= set(walked["candidate_id"])
    assert rows_of(walked, expected["candidate_id"]) == rows_of(expected,
                                                                 expected["candidate_id"])
    assert (walked["rf_h"] >= 700).all() and walked["candidate_id"].between(lo, lo + 2999).all()


# --- AnyNet, RegNet, EfficientNet --------------------------------------------------------------

def test_anynet_rows_equal_the_zoo_anynet():
    space = builtin("anynet")
    assert space.size == 16 ** 4
    ids = [0, 1, 4097, 30_000, 65_535]
    df = search(space, ids=(0, 16 ** 4), where="candidate_id == 0 or candidate_id == 1 or "
                "candidate_id == 4097 or candidate_id == 30000 or candidate_id == 65535")
    assert df["candidate_id"].tolist() == ids
    depths = df[["d1", "d2", "d3", "d4"]].to_numpy().tolist()
    assert depths[0] == [1, 1, 1, 1] and depths[-1] == [16, 16, 16, 16]
    assert depths[2] == [2, 1, 1, 2]  # 4097 = 1 * 16**3 + 1: first and last digit
    assert rows_of(df, ids) == evaluated([anynet(d) for d in depths], 224)


def _regnet_id(w0, wa, wm, depth) -> int:
    digits = (REGNET_W0.index(w0), REGNET_WA.index(wa), REGNET_WM.index(wm),
              REGNET_DEPTH.index(depth))
    radices = (len(REGNET_W0), len(REGNET_WA), len(REGNET_WM), len(REGNET_DEPTH))
    index = 0
    for digit, radix in zip(digits, radices, strict=True):
        index = index * radix + digit
    return index


def test_regnet_validity_is_four_stages_and_geometry_follows_the_depths():
    space = builtin("regnet")
    df = search(space, sample=400, seed=3)
    for row in frame_rows(df):
        depths = regnet_stages(row["w0"], row["wa"], row["wm"], row["depth"])[1]
        assert row["valid"] == (len(depths) == 4), row
    assert df["valid"].any() and not df["valid"].all()
    # a grid point with the stage depths of RegNetX-400MF has its geometry
    p = REGNETX["400mf"]
    target = regnet_stages(p.w0, p.wa, p.wm, p.depth, p.group_width)[1]
    point = next(q for q in itertools.product(REGNET_W0[:4], REGNET_WA, REGNET_WM, REGNET_DEPTH)
                 if regnet_stages(*q)[1] == target)
    i = _regnet_id(*point)
    row = search(space, ids=(i, i + 1))
    assert [row.loc[0, c] for c in ("w0", "wa", "wm", "depth")] == list(point)
    assert [geometry(r) for r in frame_rows(row)] == evaluated(
        [rfsearch.zoo.build("regnetx_400mf")], 224)


def test_efficientnet_depth_scaling():
    df = search("efficientnet")
    assert df["depth_coefficient"].tolist() == list(EFFICIENTNET_DEPTH)
    assert df.loc[0, "depth_coefficient"] == 1.0 and df.loc[0, "variant"] == "b0"
    assert [geometry(frame_rows(df.iloc[[0]])[0])] == evaluated(
        [rfsearch.zoo.build("efficientnet_b0")], 224)
    named = df[df["variant"].notna()]
    assert sorted(named["variant"]) == sorted(VARIANTS)
    for row in frame_rows(named):
        assert VARIANTS[row["variant"]][1] == row["depth_coefficient"]
    specs = [rfsearch.zoo.build(f"efficientnet_{v}") for v in named["variant"]]
    assert [geometry(r) for r in frame_rows(named)] == evaluated(specs, 224)
    assert df["rf_h"].is_monotonic_increasing  # deeper never sees less


# --- registry ---------------------------------------------------------------------------------

def test_builtin_names_and_suggestions():
    for name in ("nasbench201", "natsbench-sss", "ofa-mbv3", "anynet", "efficientnet"):
        space, where = resolve_space(name)
        assert space.name == name and where is None
    with pytest.raises(SpecError, match=r"unknown space 'ofa-mbv4' \(did you mean 'ofa-mbv3'"):
        builtin("ofa-mbv4")
    with pytest.raises(SpecError, match="unknown space"):
        search("no-such-space")


@pytest.fixture(scope="module")
def sizes() -> dict[str, int]:
    """Every built-in space built, and its size (nasbench101 reads or makes its cache)."""
    return {name: builtin(name).size for name in BUILTIN}


@pytest.mark.parametrize("name", list(BUILTIN))
def test_candidates_counts_a_space_without_building_it(sizes, name):
    assert candidates(name) == sizes[name] > 1


def test_cli_spaces_prints_every_count(sizes, capsys):
    assert main(["spaces"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["space", "candidates", "description"]
    counts = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert counts == {name: f"{size:,}" for name, size in sizes.items()}
