"""DARTS: genotype ids, the evaluation network, per-candidate (host) search.

DARTS_V2 is the genotype published with DARTS (Liu et al. 2019, genotypes.py).
"""

import pandas as pd
import pytest

import rfsearch
from rfsearch import SpecError
from rfsearch.spaces import builtin
from rfsearch.spaces.darts import genotype_id, network

DARTS_V2_NORMAL = [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0),
                   ("sep_conv_3x3", 1), ("sep_conv_3x3", 1), ("skip_connect", 0),
                   ("skip_connect", 0), ("dil_conv_3x3", 2)]
DARTS_V2_REDUCE = [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2),
                   ("max_pool_3x3", 1), ("max_pool_3x3", 0), ("skip_connect", 2),
                   ("skip_connect", 2), ("max_pool_3x3", 1)]


@pytest.fixture(scope="module")
def space():
    return builtin("darts")


def test_size_is_the_published_order_of_magnitude(space):
    assert space.size == (1 * 3 * 6 * 10 * 49 ** 4) ** 2  # about 1.08e18


def test_genotype_round_trip(space):
    i = genotype_id(DARTS_V2_NORMAL, DARTS_V2_REDUCE)
    key = space.keys([i])["genotype"][0]
    assert "('dil_conv_3x3', 2)" in key and key.startswith("Genotype(normal=[")
    assert genotype_id(DARTS_V2_REDUCE, DARTS_V2_NORMAL) != i
    with pytest.raises(SpecError, match="not a DARTS choice"):
        genotype_id([("sep_conv_3x3", 5)] * 8, DARTS_V2_REDUCE)


def test_search_row_equals_evaluate_of_the_network(space):
    i = genotype_id(DARTS_V2_NORMAL, DARTS_V2_REDUCE)
    got = rfsearch.search("darts", ids=(i, i + 1))
    want = rfsearch.evaluate(network(DARTS_V2_NORMAL, DARTS_V2_REDUCE), input_size=32)
    for column in ("rf_h", "rf_min_h", "stride_h", "padding_h", "out_h", "aligned"):
        assert got[column].tolist() == want[column].tolist(), column
    # FactorizedReduce (the strided skip and the cell after a reduction) is misaligned
    assert got["aligned"].tolist() == [False] and got["stride_h"].tolist() == [4]


def test_sampling_is_deterministic_and_filters(space):
    a = rfsearch.search("darts", sample=40, seed=3, where="valid and rf_h > 400")
    b = rfsearch.search("darts", sample=40, seed=3)
    assert a["candidate_id"].tolist() == b.loc[b["rf_h"] > 400, "candidate_id"].tolist()
    top = rfsearch.search("darts", sample=40, seed=3, top=2, by="rf_min_h")
    want = b.sort_values(["rf_min_h", "candidate_id"], ascending=[False, True]).head(2)
    pd.testing.assert_series_equal(top["candidate_id"].reset_index(drop=True),
                                   want["candidate_id"].reset_index(drop=True))


def test_walking_all_of_darts_is_refused():
    with pytest.raises(SpecError, match=r"at most 1,073,741,824 in one search \(the space "
                                        r"has [\d,]+\): use --sample N, or --ids A:B"):
        rfsearch.search("darts")
    with pytest.raises(SpecError, match=r"\(--ids covers 1,073,741,825\)"):
        rfsearch.search("darts", ids=(0, 2**30 + 1))
