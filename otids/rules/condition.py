"""Parsing of a rule's ``condition`` expression.

Grammar (Sigma-shaped, case-insensitive keywords)::

    expr    := term ("or" term)*
    term    := factor ("and" factor)*
    factor  := "not" factor | "(" expr ")" | quant | NAME
    quant   := ("1" | "any" | "all") "of" (PATTERN | "them")

``NAME`` is a selection name; ``PATTERN`` a selection name ending in ``*``. The parser yields
a small tree of tuples that :mod:`otids.rules.engine` compiles into closures.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Union

# ("sel", name) | ("not", node) | ("and", [nodes]) | ("or", [nodes])
Node = Union[tuple[str, str], tuple[str, "Node"], tuple[str, list["Node"]]]  # noqa: UP007

_TOKEN = re.compile(r"\s*(\(|\)|[A-Za-z0-9_.*-]+)")


class ConditionError(ValueError):
    """The condition does not parse, or names a selection the rule lacks."""


def parse_condition(text: str, selections: list[str]) -> Node:
    """Parse ``text`` into a tree over the rule's ``selections``."""
    tokens = _tokenize(text)
    parser = _Parser(tokens, selections)
    node = parser.expr()
    if parser.pos != len(tokens):
        raise ConditionError(f"unexpected {tokens[parser.pos]!r} in condition {text!r}")
    return node


def _tokenize(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ConditionError(f"cannot read condition {text!r} at {text[pos:]!r}")
        tokens.append(m.group(1))
        pos = m.end()
    if not tokens:
        raise ConditionError("empty condition")
    return tokens


class _Parser:
    def __init__(self, tokens: list[str], selections: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.selections = selections

    def peek(self) -> str | None:
        return self.tokens[self.pos].lower() if self.pos < len(self.tokens) else None

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise ConditionError("condition ends too early")
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expr(self) -> Node:
        nodes = [self.term()]
        while self.peek() == "or":
            self.take()
            nodes.append(self.term())
        return nodes[0] if len(nodes) == 1 else ("or", nodes)

    def term(self) -> Node:
        nodes = [self.factor()]
        while self.peek() == "and":
            self.take()
            nodes.append(self.factor())
        return nodes[0] if len(nodes) == 1 else ("and", nodes)

    def factor(self) -> Node:
        tok = self.take()
        low = tok.lower()
        if low == "not":
            return ("not", self.factor())
        if tok == "(":
            node = self.expr()
            if self.take() != ")":
                raise ConditionError("missing ')' in condition")
            return node
        if low in ("1", "any", "all") and self.peek() == "of":
            self.take()
            return self.quantifier(low, self.take())
        if tok not in self.selections:
            raise ConditionError(f"condition names {tok!r}, which is not a selection of the rule")
        return ("sel", tok)

    def quantifier(self, how: str, pattern: str) -> Node:
        names = (
            list(self.selections)
            if pattern.lower() == "them"
            else [s for s in self.selections if fnmatch.fnmatchcase(s, pattern)]
        )
        if not names:
            raise ConditionError(f"{pattern!r} matches no selection of the rule")
        nodes: list[Node] = [("sel", n) for n in names]
        return ("and", nodes) if how == "all" else ("or", nodes)
