"""The ``where`` filter (rfsearch.search.filter): parsing, type checks, SQL null logic,
safe rejection; in ``search``, the filter run on the device keeps exactly the rows the
same filter keeps over the exhaustive table, and filters on analysis columns (run on the
device too) keep the rows ``evaluate(..., analysis=True)`` says."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from search_cases import ANALYSIS_GRID, CASES, assert_same, evaluate_all, host_mask

import rfsearch
from rfsearch import search
from rfsearch.errors import SpecError
from rfsearch.search.filter import evaluate_filter, filter_mask, parse_filter
from rfsearch.spaces import grid_space

SCHEMA = {"a": "number", "b": "number", "c": "number", "x": "bool", "y": "bool",
          "rf_h": "number", "rf_w": "number", "padding_h": "number", "aligned": "bool",
          "valid": "bool"}


def col(values, known=None):
    values = np.asarray(values)
    known = np.ones(values.shape, bool) if known is None else np.asarray(known, bool)
    return values, known


def mask(text: str, columns: dict, schema=SCHEMA) -> list[bool]:
    """The rows ``text`` keeps, as a list (scalars broadcast to the column length)."""
    n = len(next(iter(columns.values()))[0])
    out = filter_mask(parse_filter(text, schema), columns, np)
    return np.broadcast_to(np.asarray(out, bool), (n,)).tolist()


def value(text: str, columns: dict):
    """(values, known) of a boolean expression, broadcast to the column length."""
    n = len(next(iter(columns.values()))[0])
    v, k = evaluate_filter(parse_filter(text, SCHEMA), columns, np)
    return (np.broadcast_to(np.asarray(v), (n,)).tolist(),
            np.broadcast_to(np.asarray(k, bool), (n,)).tolist())


ABC = {"a": col([1, 2, 3, -4]), "b": col([2, 3, 0, 5]), "c": col([3, 4, 5, 2])}


# --- arithmetic and precedence -----------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("a + b * c == 7", [True, False, False, False]),  # 1 + 6, 2 + 12, 3 + 0, -4 + 10
    ("a + b * c == 14", [False, True, False, False]),
    ("(a + b) * c == 9", [True, False, False, False]),
    ("a - b - c == -4", [True, False, False, False]),  # left associative: (1 - 2) - 3
    ("a - (b - c) == 2", [True, False, False, False]),
    ("-a == 0 - a", [True, True, True, True]),
    ("-a * b == -2", [True, False, False, False]),
    ("- -a == a", [True, True, True, True]),
    ("-a > 0", [False, False, False, True]),
    ("c // b == 1", [True, True, False, False]),  # 3//2, 4//3, (5//0 unknown), 2//5 = 0
    ("a // c == -2", [False, False, False, True]),  # floor division: -4 // 2 == -2
    ("c % b == 1", [True, True, False, False]),
    ("a % c == 0", [False, False, False, True]),
    ("-7 % 3 == 2", [True, True, True, True]),  # Python/SQL-floor semantics: sign of divisor
    ("-7 // 2 == -4", [True, True, True, True]),
    ("a / b == 0.5", [True, False, False, False]),  # true division
    ("c / b > 1.4", [True, False, False, False]),  # 1.5, 1.33, unknown, 0.4
    ("abs(a) == 4", [False, False, False, True]),
    ("min(a, b) == a", [True, True, False, True]),
    ("max(a, c) == 3", [True, False, False, False]),
    ("max(abs(a), min(b, c)) >= 4", [False, False, False, True]),
    ("a * 2 + 1 == 2 * a + 1", [True, True, True, True]),
    (".5 * 4 == 2", [True, True, True, True]),
    ("3. == 3", [True, True, True, True]),
])
def test_arithmetic_and_precedence(text, expected):
    assert mask(text, ABC) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("a < 2", [True, False, False, True]),
    ("a <= 2", [True, True, False, True]),
    ("a > 2", [False, False, True, False]),
    ("a >= 2", [False, True, True, False]),
    ("a == 2", [False, True, False, False]),
    ("a != 2", [True, False, True, True]),
    ("2 < a", [False, False, True, False]),
])
def test_comparisons(text, expected):
    assert mask(text, ABC) == expected


XY = {"x": col([True, True, False, False]), "y": col([True, False, True, False])}


@pytest.mark.parametrize(("text", "expected"), [
    ("x and y", [True, False, False, False]),
    ("x or y", [True, True, True, False]),
    ("not x", [False, False, True, True]),
    ("not x and y", [False, False, True, False]),  # (not x) and y
    ("not (x and y)", [False, True, True, True]),
    ("x or y and false", [True, True, False, False]),  # and binds tighter than or
    ("(x or y) and false", [False, False, False, False]),
    ("not not x", [True, True, False, False]),
    ("x == y", [True, False, False, True]),
    ("x != y", [False, True, True, False]),
    ("x == true", [True, True, False, False]),
    ("true", [True, True, True, True]),
    ("false", [False, False, False, False]),
    ("not false", [True, True, True, True]),
    ("true and not false or x", [True, True, True, True]),
    ("(1 < 2) == true", [True, True, True, True]),
])
def test_boolean_logic(text, expected):
    assert mask(text, XY) == expected


def test_division_by_zero_is_unknown_and_drops_the_row():
    cols = {"a": col([6, 6, 0]), "b": col([3, 0, 0])}
    for op in ("/", "//", "%"):
        assert mask(f"a {op} b >= 0", cols) == [True, False, False]
        assert mask(f"not (a {op} b >= 0)", cols) == [False, False, False]
        assert mask(f"a {op} b >= 0 or true", cols) == [True, True, True]
        assert mask(f"a {op} b >= 0 and false", cols) == [False, False, False]
        assert value(f"a {op} b >= 0", cols)[1] == [True, False, False]
    assert mask("a / 0 == a / 0", cols) == [False, False, False]
    assert mask("1 // 0 < 1 or a > 5", cols) == [True, True, False]


# --- SQL three-valued logic with null ------------------------------------------------------

PAD = {"padding_h": col([3, 0, 7], [True, True, False]), "rf_h": col([10, 20, 30]),
       "aligned": col([True, False, True], [True, True, False])}


@pytest.mark.parametrize(("text", "expected"), [
    ("padding_h > 0", [True, False, False]),
    ("not (padding_h > 0)", [False, True, False]),  # unknown stays unknown under not
    ("padding_h > 0 or true", [True, True, True]),  # unknown or true = true
    ("true or padding_h > 0", [True, True, True]),
    ("padding_h > 0 or false", [True, False, False]),  # unknown or false = unknown
    ("padding_h > 0 and false", [False, False, False]),
    ("padding_h > 0 and true", [True, False, False]),
    ("not (padding_h > 0 and false)", [True, True, True]),  # unknown and false = false
    ("not (padding_h > 0 or true)", [False, False, False]),
    ("not (padding_h > 0 or false)", [False, True, False]),
    ("padding_h == padding_h", [True, True, False]),  # null == null is unknown
    ("padding_h + 1 > 0 or rf_h > 25", [True, True, True]),
    ("padding_h + 1 > 0 and rf_h > 25", [False, False, False]),
    ("abs(padding_h) >= 0", [True, True, False]),
    ("min(padding_h, rf_h) >= 0", [True, True, False]),
    ("aligned", [True, False, False]),
    ("not aligned", [False, True, False]),
    ("aligned or rf_h > 25", [True, False, True]),
    ("aligned and rf_h > 25", [False, False, False]),
    ("not aligned or rf_h < 5", [False, True, False]),
    ("aligned == false", [False, True, False]),
    ("aligned != aligned", [False, False, False]),
])
def test_null_follows_sql(text, expected):
    assert mask(text, PAD) == expected


def test_known_flags_of_three_valued_logic():
    vals, known = value("padding_h > 0 or rf_h > 25", PAD)
    assert known == [True, True, True] and vals == [True, False, True]
    _, known = value("padding_h > 0 or rf_h > 35", PAD)
    assert known == [True, True, False]
    vals, known = value("padding_h > 0 and rf_h < 25", PAD)
    assert known == [True, True, True] and vals == [True, False, False]
    _, known = value("padding_h > 0 and rf_h > 5", PAD)
    assert known == [True, True, False]


def test_node_lists_the_columns_it_reads():
    node = parse_filter("rf_h > 3 and (abs(padding_h) < rf_w or not aligned)", SCHEMA)
    assert node.columns() == {"rf_h", "padding_h", "rf_w", "aligned"}
    assert node.type == "bool"


# --- rejection ----------------------------------------------------------------------------

def reject(text, schema=SCHEMA) -> str:
    with pytest.raises(SpecError) as info:
        parse_filter(text, schema)
    message = str(info.value)
    assert "\n" not in message and message.strip() == message
    return message


def test_unknown_column_suggests_a_close_name():
    message = reject("rf >= 3")
    assert "unknown column 'rf' (did you mean" in message
    assert "'rf_h'" in message or "'rf_w'" in message
    assert message.startswith("where 'rf >= 3': ")
    assert "unknown column 'frobnicate'" in reject("frobnicate > 1")
    assert "did you mean 'aligned'" in reject("aligend")


def test_text_columns_are_refused_by_name():
    """A layer name or a text choice is a column of the rows but not of a filter."""
    for where, column in (("border_layer == 1", "border_layer"),
                          ("n_critical == 0 and module_hash > 0", "module_hash")):
        with pytest.raises(SpecError) as info:
            search("nasbench101", where=where, sample=3)
        assert str(info.value) == (f"where {where!r}: column {column!r} is text; a filter "
                                   f"compares numbers and booleans at position "
                                   f"{where.index(column)}")


@pytest.mark.parametrize(("text", "expected"), [
    ("rf_h = 3", "where 'rf_h = 3': unexpected character '=' (use == to compare) at position 5"),
    ('rf_h == "x"', "unexpected character '\"' (a filter compares numbers and booleans, "
                    "not text) at position 8"),
    ("rf_h > 3 3", "where 'rf_h > 3 3': unexpected '3' at position 9"),
    ("(rf_h > 3", "where '(rf_h > 3': expected ')' at position 9"),
    ("rf_h > 3)", "where 'rf_h > 3)': unexpected ')' at position 8"),
    ("((rf_h > 3)", "expected ')'"),
    ("rf_h and aligned", "'and' needs true/false, got a number"),
    ("aligned or rf_h", "'or' needs true/false, got a number"),
    ("not rf_h", "'not' needs true/false, got a number"),
    ("rf_h + 1", "a filter needs true/false, got a number"),
    ("3", "a filter needs true/false, got a number"),
    ("abs(rf_h)", "a filter needs true/false, got a number"),
    ("aligned + 1 > 0", "'+' needs numbers, got a bool"),
    ("-aligned", "'-' needs numbers, got a bool"),
    ("aligned < 3", "'<' needs numbers, got a bool"),
    ("aligned == 1", "'==' needs numbers, got a bool"),
    ("rf_h == true", "'==' needs numbers, got a bool"),
    ("abs(aligned) > 0", "abs() needs numbers, got a bool"),
    ("min(rf_h) > 1", "min() takes 2 argument(s)"),
    ("abs(rf_h, 1) > 1", "abs() takes 1 argument(s)"),
    ("1 < rf_h < 3", "unexpected '<'"),
    ("rf_h >", "expected a number, column or '(', got the end"),
    ("rf_h > 3 and", "got the end"),
    ("and rf_h > 3", "expected a number, column or '('"),
    ("()", "expected a number, column or '('"),
    ("rf_h ! 3", "unexpected character '!'"),
    ("rf_h ** 2 > 3", "expected a number, column or '('"),
    ("rf_h > 1e3", "unexpected 'e3'"),
    ("rf_h >= 3 && aligned", "unexpected character '&'"),
    ("rf_h >= 3 || aligned", "unexpected character '|'"),
])
def test_rejects_with_one_line_messages(text, expected):
    assert expected in reject(text)


@pytest.mark.parametrize("text", [
    "__import__('os')",
    "__import__('os').system('touch rfsearch-pwned')",
    "__import__ > 0",
    "rf_h.__class__",
    "rf_h.__class__ > 0",
    "lambda: 1",
    "(lambda x: x)(1) > 0",
    "rf_h > 1; import os",
    "rf_h > 1\nimport os",
    "'rf_h' == 'rf_h'",
    '"a" == "a"',
    "rf_h[0] > 1",
    "[rf_h] == [rf_h]",
    "{1: 2}",
    "eval('1') > 0",
    "exec > 0",
    "open('x') > 0",
    "rf_h if aligned else 0",
    "rf_h @ rf_h > 0",
    "`rf_h`",
    "rf_h > 0 # comment",
    "os.system > 0",
])
def test_python_isms_are_rejected_without_running_anything(text, monkeypatch, tmp_path):
    def forbidden(*args, **kwargs):
        raise AssertionError("the filter must never reach eval / exec / compile / import")

    monkeypatch.chdir(tmp_path)  # where 'touch rfsearch-pwned' would leave its file
    for name in ("eval", "exec", "compile", "__import__"):
        monkeypatch.setattr(builtins, name, forbidden)
    with pytest.raises(SpecError) as info:
        parse_filter(text, SCHEMA)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "rfsearch-pwned").exists()


@pytest.mark.parametrize("text", ["", "   ", "\t\n", None, 3, True])
def test_empty_or_non_text_filters_are_rejected(text):
    with pytest.raises(SpecError, match="where must be a non-empty expression"):
        parse_filter(text, SCHEMA)


def test_keywords_and_functions_are_not_columns():
    assert "unknown column 'abs'" in reject("abs > 1")
    assert "unknown column 'true_ish'" in reject("true_ish > 1")
    assert "unknown column 'nan'" in reject("rf_h > nan")
    assert "expected a number, column or '('" in reject("rf_h > 1 or or")
    # a column named like a function is a column unless called
    schema = dict(SCHEMA, min="number")
    cols = {"min": col([1, 2]), "a": col([5, 0])}
    assert mask("min > 1", cols, schema) == [False, True]
    assert mask("min(min, a) == min", cols, schema) == [True, False]


def test_any_column_name_can_be_written_between_backticks():
    """Grid ties and slots may be named in ways the bare grammar cannot write (a space, a
    keyword, a leading digit): between backticks they are columns, as in pandas' query."""
    schema = dict(SCHEMA, **{"a b": "number", "true": "bool", "7": "number"})
    cols = {"a b": col([1, 5]), "true": col([True, False]), "7": col([3, 2]), "a": col([1, 1])}
    assert mask("`a b` >= 5", cols, schema) == [False, True]
    assert mask("`true` and true", cols, schema) == [True, False]
    assert mask("`7` * 2 == 6 or `a` == 2", cols, schema) == [True, False]
    assert parse_filter("`a b` > 1", schema).columns() == {"a b"}
    assert "unknown column 'a_b' (did you mean '`a b`'?)" in reject("a_b > 1", schema)
    assert "unknown column 'nope'" in reject("`nope` > 1", schema)
    assert "unexpected character '`'" in reject("`a b > 1", schema)
    from rfsearch.search.filter import canonical

    assert canonical("`a b`>=5") == canonical("`a b`  >=  5") != canonical("`a  b` >= 5")
    grid = {"input_size": 32, "layers": [
        {"op": "conv", "kernel": {"choices": [3, 5], "tie": "a b"}, "padding": "same"},
        {"op": "conv", "kernel": {"choices": [3, 7], "tie": "true"}, "padding": "same"}]}
    rows = search(grid, where="`a b` == 5 and `true` >= 7")
    assert rows[["a b", "true", "rf_h"]].values.tolist() == [[5, 7, 11]]


def test_whitespace_is_free_and_tokens_need_no_spaces():
    assert mask("a+b*c==7", ABC) == mask("  a +\tb\n* c == 7 ", ABC)
    assert mask("(a>=2)and(c<5)", ABC) == [False, True, False, False]
    assert mask("not(a>=2)", ABC) == [True, False, False, True]


# --- property: the filter agrees with a plain-Python evaluation of the same tree -----------

NUM_PREC = {"num": 8, "col": 8, "call": 8, "neg": 7, "*": 6, "/": 6, "//": 6, "%": 6, "+": 5,
            "-": 5}
BOOL_PREC = {"lit": 8, "cmp": 4, "not": 3, "and": 2, "or": 1}


def numbers(depth: int):
    leaf = st.one_of(st.integers(0, 5).map(lambda v: ("num", v)),
                     st.sampled_from(["p", "q"]).map(lambda n: ("col", n)))
    if depth == 0:
        return leaf
    sub = numbers(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(st.just("neg"), sub),
        st.tuples(st.sampled_from(["+", "-", "*", "/", "//", "%"]), sub, sub),
        st.tuples(st.just("call"), st.just("abs"), sub),
        st.tuples(st.just("call"), st.sampled_from(["min", "max"]), sub, sub),
    )


def booleans(depth: int):
    cmp = st.tuples(st.just("cmp"), st.sampled_from(["<", "<=", ">", ">=", "==", "!="]),
                    numbers(2), numbers(2))
    leaf = st.one_of(cmp, st.booleans().map(lambda v: ("lit", v)))
    if depth == 0:
        return leaf
    sub = booleans(depth - 1)
    return st.one_of(
        leaf,
        st.tuples(st.just("not"), sub),
        st.tuples(st.sampled_from(["and", "or"]), sub, sub),
        st.tuples(st.just("beq"), st.sampled_from(["==", "!="]), sub, sub),
    )


def prec(tree) -> int:
    kind = tree[0]
    if kind in ("num", "col", "call", "neg"):
        return NUM_PREC[kind]
    if kind in NUM_PREC:
        return NUM_PREC[kind]
    return BOOL_PREC["cmp" if kind == "beq" else kind]


def render(tree) -> str:
    """Text of a tree with only the parentheses the grammar needs (operators are left
    associative, comparisons do not chain)."""
    kind = tree[0]

    def wrap(child, need: int) -> str:
        text = render(child)
        return f"({text})" if prec(child) < need else text

    if kind == "num":
        return str(tree[1])
    if kind == "col":
        return tree[1]
    if kind == "lit":
        return "true" if tree[1] else "false"
    if kind == "neg":
        return "-" + wrap(tree[1], 7)
    if kind == "call":
        return f"{tree[1]}({', '.join(render(a) for a in tree[2:])})"
    if kind == "not":
        return "not " + wrap(tree[1], 3)
    if kind in ("cmp", "beq"):
        return f"{wrap(tree[2], 5)} {tree[1]} {wrap(tree[3], 5)}"
    p = prec(tree)
    return f"{wrap(tree[1], p)} {kind} {wrap(tree[2], p + 1)}"


def py_eval(tree, row: dict):
    """Plain Python, None for null (SQL three-valued logic)."""
    kind = tree[0]
    if kind in ("num", "lit"):
        return tree[1]
    if kind == "col":
        return row[tree[1]]
    if kind == "not":
        v = py_eval(tree[1], row)
        return None if v is None else not v
    if kind == "and":
        a, b = py_eval(tree[1], row), py_eval(tree[2], row)
        if a is False or b is False:
            return False
        return None if a is None or b is None else True
    if kind == "or":
        a, b = py_eval(tree[1], row), py_eval(tree[2], row)
        if a is True or b is True:
            return True
        return None if a is None or b is None else False
    if kind == "neg":
        v = py_eval(tree[1], row)
        return None if v is None else -v
    if kind == "call":
        args = [py_eval(a, row) for a in tree[2:]]
        if any(a is None for a in args):
            return None
        return {"abs": abs, "min": min, "max": max}[tree[1]](*args)
    op, a, b = tree[1] if kind in ("cmp", "beq") else kind, py_eval(tree[-2], row), \
        py_eval(tree[-1], row)
    if a is None or b is None:
        return None
    if op in ("/", "//", "%") and b == 0:
        return None
    return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
            "//": lambda: a // b, "%": lambda: a % b, "<": lambda: a < b,
            "<=": lambda: a <= b, ">": lambda: a > b, ">=": lambda: a >= b,
            "==": lambda: a == b, "!=": lambda: a != b}[op]()


ROWS = st.lists(st.tuples(st.integers(-6, 6), st.booleans(), st.integers(-6, 6), st.booleans()),
                min_size=1, max_size=8)


@settings(max_examples=100)
@given(tree=booleans(2), rows=ROWS)
def test_filter_agrees_with_plain_python(tree, rows):
    text = render(tree)
    node = parse_filter(text, {"p": "number", "q": "number"})
    p, pk, q, qk = (np.array(v) for v in zip(*rows, strict=True))
    columns = {"p": (p.astype(np.int64), pk), "q": (q.astype(np.int64), qk)}
    with np.errstate(all="ignore"):
        got = np.broadcast_to(np.asarray(filter_mask(node, columns, np), bool), (len(rows),))
    expected = [py_eval(tree, {"p": int(pv) if pkk else None, "q": int(qv) if qkk else None})
                is True for pv, pkk, qv, qkk in rows]
    assert got.tolist() == expected, text


# --- in search: on the device and on the host --------------------------------------------

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


def test_filter_on_an_analysis_column_or_aligned():
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


def test_search_filters_on_analysis_columns_like_evaluate():
    space, _ = grid_space(ANALYSIS_GRID)
    where = "valid and rf_h > 20 and n_unproductive <= 1 and feasible_min < 40"
    got = rfsearch.search(ANALYSIS_GRID, where=where)
    specs = [space.spec(i) for i in range(space.size)]
    ev = rfsearch.evaluate(specs, input_size=32, analysis=True)
    keep = ev["error"].isna() & (ev["rf_h"] > 20) & (ev["n_unproductive"] <= 1) & (
        ev["feasible_min"] < 40)
    assert got["candidate_id"].tolist() == np.flatnonzero(keep.to_numpy()).tolist()
    assert got["n_unproductive"].tolist() == ev.loc[keep, "n_unproductive"].tolist()
    top = rfsearch.search(ANALYSIS_GRID, where="n_critical == 0 and valid", top=2, by="rf_h")
    want = ev[ev["n_critical"] == 0].sort_values(["rf_h"], ascending=False, kind="stable")
    assert top["rf_h"].tolist() == want["rf_h"].head(2).tolist()


def test_rf_ratio_filters_on_the_device():
    got = rfsearch.search(ANALYSIS_GRID, where="rf_ratio >= 1.5")
    assert (got["rf_h"] / 32 >= 1.5).all() and len(got) > 0
    every = rfsearch.search(ANALYSIS_GRID, where="valid")
    assert len(got) == int((every["rf_h"] / 32 >= 1.5).sum())


def test_analysis_only_filters_run_on_large_spaces():
    """Once refused above 10**6 candidates without a geometry condition; now walked on
    the device (tests/test_search_analysis_device.py checks the rows)."""
    got = rfsearch.search("ofa-mbv3", where="n_critical == 0 and n_unproductive >= 0",
                          ids=(0, 2_000_000))
    assert len(got) == 0 or (got["n_critical"] == 0).all()


# --- integers beyond 32 bits ----------------------------------------------------------------

WIDE_GRID = {"input_size": 64, "layers": [
    {"op": "conv", "kernel": [3, 5, 7], "stride": 2, "padding": "same"},
    {"op": "maxpool", "kernel": 2, "stride": 2}]}


@pytest.mark.parametrize(("where", "kept"), [
    ("rf_h >= 2147483648", 0),  # 2**31: as a device's int32 it wrapped to -2**31 (all kept)
    ("rf_h < 4294967306", 3),  # 2**32 + 10: it wrapped to 10
    ("rf_h * 1000000000 > 0", 3),  # wrapped to negative products for some rows
    ("rf_h * 9223372036854775807 > 0", 0),  # beyond int64: unknown, never kept
    ("rf_h + 9223372036854775807 < 0", 0),
    ("0 - rf_h - 9223372036854775807 > 0", 0),
])
def test_integers_are_compared_without_wrapping(where, kept):
    """On the device and on the host alike: exact comparisons in int64, and arithmetic
    that leaves int64 is unknown (the row is not kept), never wrapped."""
    assert len(search(WIDE_GRID, where=where)) == kept


def test_a_number_beyond_64_bits_is_one_clear_error():
    with pytest.raises(SpecError, match="the number 99999999999999999999999 exceeds the 64-bit"):
        search(WIDE_GRID, where="rf_h >= 99999999999999999999999")


def test_host_arithmetic_is_checked_for_wrapping_too():
    big = col(np.array([2**62, -(2**62) - 1, 3, -(2**62)], np.int64))
    assert mask("a * 4 > 0", {"a": big}) == [False, False, True, False]
    # -2**63 is an int64; one less is not
    assert value("a + a < 0", {"a": big})[1] == [False, False, True, True]


@pytest.mark.parametrize(("where", "kept"), [
    ("rf_ratio <= 0.35", [34, 35]), ("rf_ratio == 0.35", [35]), ("rf_h / 100 <= 0.35", [34, 35]),
    ("rf_h / 100 == 0.36", [36])])
def test_device_division_is_numpys_so_filters_agree_with_the_rows(where, kept):
    """XLA divides by a broadcast value through its reciprocal: 35 / 100 came out an ulp
    above 0.35, so the row printed as 0.35 failed 'rf_ratio <= 0.35' (audit)."""
    grid = {"input_size": 100, "layers": [{"op": "conv", "kernel": [34, 35, 36]}]}
    got = search(grid, where=where)
    assert got["rf_h"].tolist() == kept
    assert (got["rf_ratio"] == got["rf_h"] / 100).all()


@pytest.mark.parametrize(("where", "kept"), [
    ("candidate_id == 1076746950455072391", [1]), ("candidate_id % 2 == 1", [1, 3, 5, 7])])
def test_host_filters_compare_ids_beyond_2_to_the_53_exactly(where, kept):
    """DARTS ids reach 1.08e18; the host path read them as float64 (audit): every id of
    the range matched '== ...391', none matched '% 2 == 1'."""
    base = 1076746950455072390
    got = search("darts", ids=(base, base + 9), where=where)
    assert (got["candidate_id"] - base).tolist() == kept
