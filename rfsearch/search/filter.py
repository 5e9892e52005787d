"""The ``where`` filter: a small expression language over result columns, parsed safely
(never Python ``eval``) and run on the device before rows leave it.

Grammar (lowest precedence first)::

    expr   := or
    or     := and ("or" and)*
    and    := not ("and" not)*
    not    := "not" not | cmp
    cmp    := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
    sum    := term (("+" | "-") term)*
    term   := unary (("*" | "/" | "//" | "%") unary)*
    unary  := "-" unary | atom
    atom   := NUMBER | "true" | "false" | COLUMN | FUNC "(" expr ("," expr)* ")" | "(" expr ")"
    COLUMN := a name of letters, digits, "_" and "." not starting with a digit, or any
              column name between backticks (`a b`, `true`, `7`), as pandas' query takes
    FUNC   := abs | min | max

Null values (padding without an input size, geometry of an invalid candidate) follow
SQL: a comparison with null is unknown, ``and`` / ``or`` / ``not`` use three-valued
logic, and a row is kept only when the whole expression is true.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from ..analysis import divisor
from ..errors import SpecError

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+\.\d*|\.\d+|\d+)|(?P<name>[A-Za-z_][A-Za-z0-9_.]*)"
                    r"|(?P<quoted>`[^`]+`)|(?P<op>//|<=|>=|==|!=|[-+*/%<>(),])|(?P<bad>\S))")
PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
KEYWORDS = {"and", "or", "not", "true", "false"}
LARGEST = 2**63 - 1  # integers are compared and computed in int64; a result beyond is unknown
FUNCTIONS = {"abs": 1, "min": 2, "max": 2}
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True)
class Node:
    """A parsed expression: ``kind`` (num, bool, col, neg, arith, cmp, and, or, not, call),
    its operator or value, its children, and its type ('number' or 'bool')."""

    kind: str
    value: object
    args: tuple
    type: str

    def columns(self) -> set[str]:
        """Every column the expression reads."""
        own = {self.value} if self.kind == "col" else set()
        return own.union(*(a.columns() for a in self.args))


class _Parser:
    def __init__(self, text: str, schema: dict[str, str]):
        self.text, self.schema = text, schema
        self.tokens = []  # (kind, text, position)
        for m in _TOKEN.finditer(text):
            kind = m.lastgroup
            if kind == "bad":
                char = m.group(kind)
                hint = " (use == to compare)" if char == "=" else (
                    " (a filter compares numbers and booleans, not text)"
                    if char in "\"'" else "")
                self.fail(f"unexpected character {char!r}{hint}", m.start(kind))
            self.tokens.append((kind, m.group(kind), m.start(kind)))
        self.i = 0

    def fail(self, message: str, pos: int):
        raise SpecError(f"where {self.text!r}: {message} at position {pos}")

    def peek(self):
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.text))

    def take(self, *texts):
        kind, text, pos = self.peek()
        if kind != "num" and text in texts:
            self.i += 1
            return text, pos
        return None, pos

    def need(self, node: Node, type_: str, what: str, pos: int) -> Node:
        if node.type != type_:
            want = "true/false" if type_ == "bool" else "numbers"
            self.fail(f"{what} needs {want}, got a {node.type}", pos)
        return node

    def parse(self) -> Node:
        node = self.expr()
        kind, text, pos = self.peek()
        if kind != "end":
            self.fail(f"unexpected {text!r}", pos)
        return self.need(node, "bool", "a filter", 0)

    def expr(self) -> Node:
        return self.binary_logic("or", self.and_)

    def and_(self) -> Node:
        return self.binary_logic("and", self.not_)

    def binary_logic(self, word: str, sub) -> Node:
        node = sub()
        while True:
            op, pos = self.take(word)
            if not op:
                return node
            right = sub()
            node = Node(word, word, (self.need(node, "bool", f"'{word}'", pos),
                                     self.need(right, "bool", f"'{word}'", pos)), "bool")

    def not_(self) -> Node:
        op, pos = self.take("not")
        if op:
            return Node("not", "not", (self.need(self.not_(), "bool", "'not'", pos),), "bool")
        return self.cmp()

    def cmp(self) -> Node:
        left = self.sum()
        op, pos = self.take(*COMPARISONS)
        if not op:
            return left
        right = self.sum()
        if op in ("==", "!=") and left.type == right.type:
            return Node("cmp", op, (left, right), "bool")
        return Node("cmp", op, (self.need(left, "number", f"'{op}'", pos),
                                self.need(right, "number", f"'{op}'", pos)), "bool")

    def arith(self, ops, sub) -> Node:
        node = sub()
        while True:
            op, pos = self.take(*ops)
            if not op:
                return node
            right = sub()
            node = Node("arith", op, (self.need(node, "number", f"'{op}'", pos),
                                      self.need(right, "number", f"'{op}'", pos)), "number")

    def sum(self) -> Node:
        return self.arith(("+", "-"), self.term)

    def term(self) -> Node:
        return self.arith(("*", "/", "//", "%"), self.unary)

    def unary(self) -> Node:
        op, pos = self.take("-")
        if op:
            return Node("neg", "-", (self.need(self.unary(), "number", "'-'", pos),), "number")
        return self.atom()

    def atom(self) -> Node:
        kind, text, pos = self.peek()
        self.i += 1
        if kind == "num":
            if "." not in text and int(text) > LARGEST:
                self.fail(f"the number {text} exceeds the 64-bit integers a filter computes in",
                          pos)
            return Node("num", float(text) if "." in text else int(text), (), "number")
        if kind == "name" and text in ("true", "false"):
            return Node("bool", text == "true", (), "bool")
        if kind == "name" and text in FUNCTIONS and self.peek()[1] == "(":
            self.i += 1
            args = [self.expr()]
            while self.take(",")[0]:
                args.append(self.expr())
            if not self.take(")")[0]:
                self.fail("expected ')'", self.peek()[2])
            if len(args) != FUNCTIONS[text]:
                self.fail(f"{text}() takes {FUNCTIONS[text]} argument(s)", pos)
            return Node("call", text, tuple(self.need(a, "number", f"{text}()", pos)
                                            for a in args), "number")
        if kind == "quoted" or (kind == "name" and text not in KEYWORDS):
            text = text[1:-1] if kind == "quoted" else text
            if text not in self.schema:
                close = difflib.get_close_matches(text, self.schema, n=1)
                hint = f" (did you mean {written(close[0])!r}?)" if close else ""
                self.fail(f"unknown column {text!r}{hint}", pos)
            if self.schema[text] == "text":
                self.fail(f"column {text!r} is text; a filter compares numbers and booleans",
                          pos)
            return Node("col", text, (), self.schema[text])
        if text == "(":
            node = self.expr()
            if not self.take(")")[0]:
                self.fail("expected ')'", self.peek()[2])
            return node
        self.i -= 1
        self.fail("expected a number, column or '('" + ("" if kind != "end" else ", got the end"),
                  pos)


def written(column: str) -> str:
    """``column`` as a filter writes it: bare, or between backticks."""
    return column if PLAIN.fullmatch(column) and column not in KEYWORDS | set(FUNCTIONS) \
        else f"`{column}`"


def canonical(text: str | None) -> str | None:
    """``text`` with its tokens one space apart: filters that differ only in spacing are
    the same filter (a search resumes with either)."""
    if not isinstance(text, str):
        return text
    return " ".join(m.group(m.lastgroup) for m in _TOKEN.finditer(text))


def parse_filter(text: str, schema: dict[str, str]) -> Node:
    """Parse and type-check ``text`` against ``schema`` (column -> 'number' | 'bool' |
    'text'; a text column is refused)."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"where must be a non-empty expression, got {text!r}")
    return _Parser(text, schema).parse()


def evaluate_filter(node: Node, columns: dict, xp):
    """(value, known) arrays of ``node`` over ``columns`` (name -> (value, known))."""
    kind, args = node.kind, [evaluate_filter(a, columns, xp) for a in node.args]
    if kind == "num" or kind == "bool":
        return node.value, True
    if kind == "col":
        value, known = columns[node.value]
        if hasattr(value, "dtype") and xp.issubdtype(value.dtype, xp.integer):  # no wrapping:
            value = value.astype(xp.int64)
        return value, known
    if kind == "neg":
        return -args[0][0], args[0][1]
    if kind == "not":
        return ~xp.asarray(args[0][0]), args[0][1]
    (a, ak), (b, bk) = args[0], args[1] if len(args) > 1 else (None, True)
    if kind == "and":
        return a & b, (ak & bk) | (ak & ~xp.asarray(a)) | (bk & ~xp.asarray(b))
    if kind == "or":
        return a | b, (ak & bk) | (ak & a) | (bk & b)
    if kind == "cmp":
        ops = {"<": xp.less, "<=": xp.less_equal, ">": xp.greater, ">=": xp.greater_equal,
               "==": xp.equal, "!=": xp.not_equal}
        return ops[node.value](a, b), ak & bk
    if kind == "call":
        fn = {"abs": lambda: xp.abs(a), "min": lambda: xp.minimum(a, b),
              "max": lambda: xp.maximum(a, b)}[node.value]
        return fn(), ak & bk
    op = node.value  # arithmetic
    if op in ("/", "//", "%"):
        nonzero = b != 0
        safe = xp.where(nonzero, b, 1)
        if op == "/":  # correctly rounded on the device too (a row's value is numpy's)
            safe = divisor(safe, xp.broadcast_shapes(xp.shape(a), xp.shape(safe)), xp)
        value = {"/": lambda: a / safe, "//": lambda: a // safe, "%": lambda: a % safe}[op]()
        return value, ak & bk & nonzero
    value = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b}[op]()
    return value, ak & bk & ~_wrapped(op, a, b, value, xp)


def _wrapped(op: str, a, b, value, xp):
    """Where an integer ``value = a op b`` wrapped around (floats never do)."""
    value = xp.asarray(value)
    if not xp.issubdtype(value.dtype, xp.integer):  # a device computes int32 columns
        return False
    if op == "*":
        nonzero = a != 0
        return nonzero & (value // xp.where(nonzero, a, 1) != b)
    sign_b = b >= 0 if op == "+" else b < 0  # a - b adds -b
    return ((a >= 0) == sign_b) & ((value >= 0) != (a >= 0))


def filter_mask(node: Node, columns: dict, xp):
    """Rows where ``node`` is true (unknown counts as false)."""
    value, known = evaluate_filter(node, columns, xp)
    return xp.asarray(value) & known
