"""The zoo: builders, references, and the geometry of its networks.

Published values are checked row by row in test_published_zoo.py; here every zoo
network is cross-checked against the plain-Python reference (tests/reference.py), and
the properties the literature states are pinned: alignment, the NAS-Bench-201
half-pixel misalignment, stride placement, the RegNet generator.
"""

import json

import pandas as pd
import pytest
from frames import frame_rows
from reference import reference_evaluate

import rfsearch
from rfsearch import SpecError, zoo
from rfsearch.spec import parse_network

ALL = zoo.names()
# The 2-D classifiers the integer kernel computes and tests/reference.py models (the
# decoders, 1-D and 3-D networks run the periodic program: tests/test_zoo_decoders.py).
CLASSIC = [n for n in ALL if not parse_network(zoo.build(n)).periodic]
NB201_ARCH_0 = ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|"
                "+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")


@pytest.fixture(scope="module")
def at_224() -> pd.DataFrame:
    """Every zoo network in one batch call."""
    return rfsearch.evaluate([zoo.build(name) for name in CLASSIC], input_size=224)


def test_every_network_evaluates_in_one_call(at_224):
    assert list(at_224["name"]) == CLASSIC
    assert at_224["error"].isna().all()
    assert (at_224["stride_h"] == 32).sum() >= len(CLASSIC) - 2  # the NAS skeletons stride 4
    assert len(CLASSIC) < len(ALL)  # the others: tests/test_zoo_decoders.py


@pytest.mark.parametrize("name", [n for n in CLASSIC if not n.startswith("nasbench")])
def test_imagenet_networks_are_aligned_at_224(at_224, name):
    row = at_224.set_index("name").loc[name]
    assert row["aligned"] == True  # noqa: E712 (pandas boolean, not NA)
    assert row["rf_h"] == row["rf_w"] and row["out_h"] == row["out_w"]


@pytest.mark.parametrize("name", CLASSIC)
@pytest.mark.parametrize("size", [None, 224, (193, 257)])
def test_agrees_with_the_python_reference(name, size):
    spec = zoo.build(name)
    got = rfsearch.evaluate(spec, input_size=size)
    want = reference_evaluate(spec, size)
    (row,) = frame_rows(got)
    assert (row["error"] is None) == (want["error"] is None)  # the wording is tested elsewhere
    assert {**row, "error": None} == {**want, "error": None}


def test_nasbench201_reduction_block_is_misaligned_not_an_error():
    row = rfsearch.evaluate(zoo.build("nasbench201"), input_size=32).iloc[0]
    assert pd.isna(row["error"]) and row["aligned"] == False  # noqa: E712
    assert (row["stride_h"], row["out_h"]) == (4, 8)
    # main path 3x3/2 then 3x3 reads [-3, 3] (centre 0); the avg-pool 2x2/2 shortcut reads
    # [0, 1] (centre 0.5): half a pixel off
    block = zoo.Graph("reduction")
    zoo.nas._nb201_reduction(block, "r", "input")
    alone = rfsearch.evaluate(block.spec(), input_size=32).iloc[0]
    assert alone["aligned"] == False and (alone["rf_h"], alone["padding_h"]) == (7, 3)  # noqa: E712


def test_nasbench201_cells():
    nodes = zoo.parse_arch_str(NB201_ARCH_0)
    assert nodes[2] == [("nor_conv_1x1", 0), ("skip_connect", 1), ("skip_connect", 2)]
    spec = zoo.build(f"nasbench201(arch={NB201_ARCH_0})")
    assert spec["name"] == f"nasbench201(arch={NB201_ARCH_0})"
    row = rfsearch.evaluate(spec, input_size=32).iloc[0]
    assert pd.isna(row["error"])
    # only the avg-pool 3x3 widens the field inside a cell: 1 + 2 per cell and stage
    everything_3x3 = rfsearch.evaluate(zoo.build("nasbench201"), input_size=32).iloc[0]
    assert row["rf_h"] < everything_3x3["rf_h"]


@pytest.mark.parametrize("arch, message", [
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "no path from its input"),
    ("|avg_pool_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "no path from its input"),
    ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "bad edge 'conv~0'"),
    ("|none~0|+|none~0|none~1|", "needs 3 nodes"),
])
def test_nasbench201_bad_cells(arch, message):
    with pytest.raises(SpecError, match=message):
        zoo.nasbench201(arch)


def test_nasbench101_cell_semantics():
    # input -> conv3x3 -> output and input -> output: concat of one vertex plus projection
    spec = zoo.nasbench101([[0, 1, 1], [0, 0, 1], [0, 0, 0]],
                           ["input", "conv3x3-bn-relu", "output"])
    row = rfsearch.evaluate(spec, input_size=32).iloc[0]
    # stem 3x3 (3), 3 cells at J=1 (+6), pool 2x2/2 (+1), 3 cells at J=2 (+12), pool (+2),
    # 3 cells at J=4 (+24); the shortest path skips every cell through the projections
    assert (row["rf_h"], row["rf_min_h"], row["stride_h"]) == (48, 3 + 1 + 2, 4)
    with pytest.raises(SpecError, match="no path"):
        zoo.nasbench101([[0, 1, 0], [0, 0, 0], [0, 0, 0]],
                        ["input", "conv1x1-bn-relu", "output"])
    with pytest.raises(SpecError, match="upper triangular"):
        zoo.nasbench101([[0, 1], [1, 0]], ["input", "output"])


def test_resnet_stride_placement():
    first = rfsearch.evaluate(zoo.build("resnet50"), input_size=224).iloc[0]
    last = rfsearch.evaluate(zoo.build("resnet50(stride_in=last)"), input_size=224).iloc[0]
    slim = rfsearch.evaluate(zoo.build("resnet_v1_50"), input_size=224).iloc[0]
    assert (first["rf_h"], last["rf_h"], slim["rf_h"]) == (427, 483, 483)
    assert last["stride_h"] == first["stride_h"] == 32


def test_regnet_generator_matches_torchvision_stages():
    expected = {"200mf": [1, 1, 4, 7], "400mf": [1, 2, 7, 12], "600mf": [1, 3, 5, 7],
                "800mf": [1, 3, 7, 5], "1.6gf": [2, 4, 10, 2]}
    for key, depths in expected.items():
        p = zoo.regnet.REGNETX[key]
        _, got = zoo.regnet_stages(p.w0, p.wa, p.wm, p.depth, p.group_width)
        assert got == depths
    assert zoo.regnet_stages(24, 24.48, 2.54, 22, 16)[0] == [32, 64, 160, 384]


def test_efficientnet_depth_scaling_only_adds_blocks():
    rf = [rfsearch.evaluate(zoo.build(f"efficientnet_b{i}")).iloc[0]["rf_h"] for i in range(8)]
    assert rf == sorted(rf) and rf[0] == 851  # B0: 1 + sum (k-1) * J over its 16 blocks


def test_depth_multipliers_do_not_change_geometry():
    a = rfsearch.evaluate(zoo.build("mobilenet_v1"), input_size=321)
    b = rfsearch.evaluate(zoo.build("mobilenet_v1(depth_multiplier=0.75)"), input_size=321)
    assert b["name"][0] == "mobilenet_v1(depth_multiplier=0.75)"
    pd.testing.assert_frame_equal(a.drop(columns="name"), b.drop(columns="name"))


def test_explicit_padding_variant_of_mobilenet_v1():
    row = rfsearch.evaluate(zoo.build("mobilenet_v1(use_explicit_padding=true)")).iloc[0]
    assert (row["rf_h"], row["padding_h"]) == (315, 157)  # known without an input size


@pytest.mark.parametrize("reference, message", [
    ("resnet5", "unknown zoo network 'resnet5' (did you mean 'resnet50'?)"),
    ("resnet50(depth=18)", "unknown argument 'depth=18' (arguments of resnet50: stride_in)"),
    ("resnet50(stride_in=middle)", "stride_in must be 'first' or 'last', got 'middle'"),
    ("vgg_16(", "expected NAME or NAME(key=value, ...)"),
    ("mobilenet_v1(depth_multiplier=-1)", "depth_multiplier must be > 0"),
    ("resnet50(stride_in=first, stride_in=last)", "argument 'stride_in' is given twice"),
])
def test_bad_references_are_one_line_errors(reference, message):
    with pytest.raises(SpecError) as info:
        zoo.build(reference)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_export_round_trips_through_json(tmp_path):
    spec = zoo.build("inception_v3")
    path = tmp_path / "v3.json"
    path.write_text(json.dumps(spec))
    a = rfsearch.evaluate(spec, input_size=299, per_layer=True)
    b = rfsearch.evaluate(str(path), input_size=299, per_layer=True)
    pd.testing.assert_frame_equal(a, b)
    assert len(set(layer["name"] for layer in spec["layers"])) == len(spec["layers"])


def test_zoo_references_are_accepted_as_spec_paths():
    df = rfsearch.evaluate(["zoo:resnet18", "zoo:vgg_16"], input_size=224)
    assert list(df["rf_h"]) == [435, 212]


def test_zoo_tables_are_generated_and_current():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "datasets/zoo_table.py", "--check"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
