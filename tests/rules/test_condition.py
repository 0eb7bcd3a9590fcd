"""The condition grammar: and / or / not, parentheses, quantifiers."""

from __future__ import annotations

import pytest

from otids.rules.condition import ConditionError, parse_condition

SELECTIONS = ["sel", "filter", "scan_a", "scan_b"]


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("sel", ("sel", "sel")),
        ("sel and not filter", ("and", [("sel", "sel"), ("not", ("sel", "filter"))])),
        (
            "sel or filter and scan_a",
            ("or", [("sel", "sel"), ("and", [("sel", "filter"), ("sel", "scan_a")])]),
        ),
        (
            "(sel or filter) and scan_a",
            ("and", [("or", [("sel", "sel"), ("sel", "filter")]), ("sel", "scan_a")]),
        ),
        ("1 of scan_*", ("or", [("sel", "scan_a"), ("sel", "scan_b")])),
        ("all of scan_*", ("and", [("sel", "scan_a"), ("sel", "scan_b")])),
        ("any of them", ("or", [("sel", s) for s in SELECTIONS])),
        ("SEL AND NOT filter", None),  # keywords are case-insensitive, names are not
    ],
)
def test_parse(text: str, tree: object) -> None:
    if tree is None:
        with pytest.raises(ConditionError):
            parse_condition(text, SELECTIONS)
        assert parse_condition("sel AND NOT filter", SELECTIONS) == (
            "and",
            [("sel", "sel"), ("not", ("sel", "filter"))],
        )
    else:
        assert parse_condition(text, SELECTIONS) == tree


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("sel and", "too early"),
        ("sel filter", "unexpected"),
        ("(sel", "too early"),
        ("unknown", "not a selection"),
        ("1 of nothing_*", "matches no selection"),
        ("sel & filter", "cannot read"),
    ],
)
def test_errors(text: str, reason: str) -> None:
    with pytest.raises(ConditionError, match=reason):
        parse_condition(text, SELECTIONS)
