"""Every row of datasets/reference/published_values.csv comes out of the zoo, exactly.

Sources (see datasets/reference/README.md): google-research/receptive_field
RECEPTIVE_FIELD_TABLE.md (TF-Slim networks, input sizes None / 224 / 321) and the
torchvision ResNet stage values. 'None' in the padding column means the value is
undefined without an input size and must come out null; an empty cell is unpublished.
"""

from pathlib import Path

import pandas as pd
import pytest

import rfsearch
from rfsearch import zoo

CSV = Path(__file__).parent.parent / "datasets" / "reference" / "published_values.csv"
REFERENCE = pd.read_csv(CSV, dtype=str, keep_default_na=False)
SIZES = {"": None, "224": 224, "321": 321}


@pytest.fixture(scope="module")
def computed() -> dict:
    """Per-layer tables of every referenced network at each input size, one batch call
    per size (all networks together)."""
    specs = [zoo.build(name) for name in REFERENCE["network"].unique()]
    tables = {}
    for key, size in SIZES.items():
        df = rfsearch.evaluate(specs, input_size=size, per_layer=True)
        tables[key] = df.set_index(["name", "layer_name"])
    return tables


def test_reference_is_complete():
    assert len(REFERENCE) >= 440
    assert set(REFERENCE["input_size"]) == set(SIZES)
    assert not REFERENCE.duplicated(["network", "end_point", "input_size"]).any()
    assert set(REFERENCE["source"]) == {
        "google-research/receptive_field RECEPTIVE_FIELD_TABLE.md",
        "torchvision ResNet stage values"}


def test_every_network_in_the_reference_names_a_zoo_network():
    for name in REFERENCE["network"].unique():
        assert zoo.build(name)["name"] == name


@pytest.mark.parametrize("row", REFERENCE.to_dict("records"),
                         ids=lambda r: f"{r['network']}:{r['end_point']}@{r['input_size']}")
def test_published_row(computed, row):
    got = computed[row["input_size"]].loc[(row["network"], row["end_point"])]
    assert pd.isna(got["error"])
    for column in ("rf", "stride", "padding"):
        want = row[column]
        if want == "":
            continue
        for axis in "hw":
            value = got[f"{column}_{axis}"]
            if want == "None":
                assert pd.isna(value), f"{column}_{axis} should be null, got {value}"
            else:
                assert value == int(want), f"{column}_{axis}: {value} != {want}"
    if row["input_size"] == "224":
        assert got["aligned"] is True or bool(got["aligned"])
