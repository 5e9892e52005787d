"""Published values for small networks, checked on rfsearch and on the plain-Python
reference (tests/reference.py).

Sources of every number here: the tests of the Google receptive-field library
(google-research/receptive_field, receptive_field/python/util/receptive_field_test.py)
and the Distill article (Araujo, Norris, Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019, doi:10.23915/distill.00021); the same
sources as the published values of datasets/reference/README.md. An explicit pad layer
"pad (before, after)" is written as that padding on the next layer, e.g.
[[1, 0], [1, 0]] for "pad (1,0)".
"""

from __future__ import annotations

import pytest
from frames import frame_rows
from reference import reference_evaluate

import rfsearch


def rfsearch_row(spec: dict, input_size=None) -> dict:
    """rfsearch's network row as plain values."""
    (row,) = frame_rows(rfsearch.evaluate([spec], input_size=input_size))
    return row


IMPLEMENTATIONS = pytest.mark.parametrize(
    "evaluate", [rfsearch_row, reference_evaluate], ids=["rfsearch", "reference"]
)


def layer(name: str, op: str, kernel, stride, padding="valid", inputs=None) -> dict:
    """A conv / maxpool layer dict."""
    spec = {"name": name, "op": op, "kernel": kernel, "stride": stride, "padding": padding}
    return spec if inputs is None else {**spec, "inputs": inputs}


def two_branch(op: str) -> dict:
    """Aligned two-branch network; branch B uses ``op`` (conv, or maxpool for the variant).

    Branch A: conv 1x1 s4 valid. Branch B: pad (1,0), 3x3 s2 valid, 1x1 s2 valid. Add.
    """
    return {"name": f"two_branch_{op}", "layers": [
        layer("A", "conv", 1, 4, inputs=["input"]),
        layer("B1", op, 3, 2, [[1, 0], [1, 0]], inputs=["input"]),
        layer("B2", op, 1, 2),
        {"name": "sum", "op": "add", "inputs": ["A", "B2"]},
    ]}


@IMPLEMENTATIONS
@pytest.mark.parametrize("op", ["conv", "maxpool"])
@pytest.mark.parametrize("input_size", [None, 224])
def test_aligned_two_branch(evaluate, op, input_size):
    """receptive_field_test.py: RF 3, S 4, P 1 (conv and max-pool variants), aligned."""
    row = evaluate(two_branch(op), input_size)
    assert row["error"] is None
    assert (row["rf_h"], row["rf_w"]) == (3, 3)
    assert (row["stride_h"], row["stride_w"]) == (4, 4)
    assert (row["padding_h"], row["padding_w"]) == (1, 1)
    assert row["aligned"] is True


@IMPLEMENTATIONS
@pytest.mark.parametrize("input_size", [None, 224])
def test_misaligned_two_branch_is_invalid(evaluate, input_size):
    """receptive_field_test.py: branches with strides 2 and 1 cannot be added: an error row."""
    spec = {"name": "misaligned", "layers": [
        layer("A", "conv", 5, 2, [[2, 1], [2, 1]], inputs=["input"]),
        layer("B1", "conv", 3, 1, inputs=["input"]),
        layer("B2", "conv", 3, 1),
        {"name": "sum", "op": "add", "inputs": ["A", "B2"]},
    ]}
    row = evaluate(spec, input_size)
    assert row["error"] is not None
    assert row["rf_h"] is None and row["stride_h"] is None and row["aligned"] is None


@IMPLEMENTATIONS
def test_non_square_kernels(evaluate):
    """receptive_field_test.py: conv [3,5] s2 valid, conv [3,1] s2 valid.

    x (width): RF 5, S 4, P 0; y (height): RF 7, S 4, P 0.
    """
    spec = {"name": "non_square", "layers": [
        layer("c1", "conv", [3, 5], 2),
        layer("c2", "conv", [3, 1], 2),
    ]}
    row = evaluate(spec)
    assert (row["rf_h"], row["stride_h"], row["padding_h"]) == (7, 4, 0)
    assert (row["rf_w"], row["stride_w"], row["padding_w"]) == (5, 4, 0)


@IMPLEMENTATIONS
def test_article_figure(evaluate):
    """The Distill article's figure: conv k3 p1 s3, conv k2 p0 s1: RF 6, S 3, P 1.

    Output feature 0 reads input [-1, 4]: [x*S - P, x*S - P + RF - 1] at x = 0.
    """
    spec = {"name": "article", "layers": [
        layer("c1", "conv", 3, 3, 1),
        layer("c2", "conv", 2, 1, 0),
    ]}
    row = evaluate(spec)
    assert (row["rf_h"], row["stride_h"], row["padding_h"]) == (6, 3, 1)
    assert (row["rf_w"], row["stride_w"], row["padding_w"]) == (6, 3, 1)
    assert (-row["padding_h"], -row["padding_h"] + row["rf_h"] - 1) == (-1, 4)


@IMPLEMENTATIONS
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_three_dilated_convs(evaluate, padding):
    """receptive_field_test.py and the Distill article: three 3x3 convs with dilation 2: RF 13."""
    spec = {"name": "dilated", "layers": [
        {**layer(f"c{i}", "conv", 3, 1, padding), "dilation": 2} for i in range(3)
    ]}
    row = evaluate(spec)
    assert (row["rf_h"], row["rf_w"]) == (13, 13)
    assert (row["rf_min_h"], row["rf_min_w"]) == (13, 13)
    assert (row["stride_h"], row["stride_w"]) == (1, 1)
