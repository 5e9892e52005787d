"""Default names kept as numbers (rfsearch.names) read like the strings they stand for,
and names of any kind given to chains() reach the table as text."""

from __future__ import annotations

import numpy as np
import pytest

import rfsearch
from rfsearch.names import NumberedNames, arrow_names, numbered


def test_numbered_names_read_like_their_strings():
    rng = np.random.default_rng(0)
    numbers = np.concatenate([[0, 9, 10, 99, 100, 2**40], rng.integers(0, 10**12, 500)])
    names = numbered("chain", numbers)
    want = [f"chain{i}" for i in numbers.tolist()]
    assert arrow_names(names).to_pylist() == want
    assert np.asarray(names).tolist() == want and len(names) == len(want)
    assert names[3] == "chain99" and isinstance(names[3], str)
    picked = names[np.array([5, 0])]
    assert isinstance(picked, NumberedNames) and np.asarray(picked).tolist() == [want[5], want[0]]
    assert numbered("", [7]).to_arrow().to_pylist() == ["7"]
    assert arrow_names(numbered("x", np.zeros(0, np.int64))).to_pylist() == []


def test_default_names_follow_rows_through_take_and_evaluate():
    batch = rfsearch.chains(np.full((5, 2), 3))
    assert rfsearch.evaluate(batch)["name"].tolist() == [f"chain{i}" for i in range(5)]
    assert rfsearch.evaluate(batch.take(np.array([4, 1])))["name"].tolist() == ["chain4",
                                                                                 "chain1"]


def test_names_of_any_kind_become_text_and_bad_ones_one_line():
    k = np.array([[3, 3], [5, 5]])
    assert rfsearch.evaluate(rfsearch.chains(k, names=[10, "b"]))["name"].tolist() == ["10",
                                                                                      "b"]
    assert rfsearch.evaluate(rfsearch.chains(k, names=np.arange(2)), per_layer=True)[
        "name"].tolist() == ["0", "0", "1", "1"]
    for bad, shown in (("ab", "'ab'"), (7, "7"), ([["a", "b"]], r"\[\['a', 'b'\]\]")):
        with pytest.raises(rfsearch.SpecError,
                           match=rf"^names must be a sequence of 2 names, got {shown}$"):
            rfsearch.chains(k, names=bad)
