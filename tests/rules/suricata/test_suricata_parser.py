"""Suricata/Snort signature syntax: rule lines, headers, options, content strings."""

from __future__ import annotations

import pytest

from otids.rules.suricata.parser import (
    RuleSyntaxError,
    content_bytes,
    parse_rule,
    rule_lines,
    split_options,
    split_quoted,
)


def test_rule_lines_join_continuations_and_skip_comments() -> None:
    text = "\n".join(
        [
            "# a comment",
            "",
            'alert modbus any any -> any any (msg:"a"; \\',
            "      sid:1;)",
            '# alert modbus any any -> any any (msg:"disabled"; sid:2;)',
            'alert dnp3 any any -> any any (msg:"b"; sid:3;)',
        ]
    )
    assert rule_lines(text) == [
        (3, 'alert modbus any any -> any any (msg:"a";  sid:1;)'),
        (6, 'alert dnp3 any any -> any any (msg:"b"; sid:3;)'),
    ]


HEADERS = [
    # (rule, (protocol, src, src_ports, direction, dst, dst_ports))
    (
        "alert tcp $MODBUS_CLIENT any -> $MODBUS_SERVER 502 (sid:1;)",
        ("tcp", "$MODBUS_CLIENT", "any", "->", "$MODBUS_SERVER", "502"),
    ),
    (
        "alert tcp [10.0.0.1, 10.0.0.2] [1:1024, !80] <> !$HOME_NET any (sid:1;)",
        ("tcp", "[10.0.0.1,10.0.0.2]", "[1:1024,!80]", "<>", "!$HOME_NET", "any"),
    ),
    # Snort 3: no addresses
    ("alert tcp ( sid:1; )", ("tcp", "any", "any", "->", "any", "any")),
    ("ALERT DNP3 any any -> any any (sid:1;)", ("dnp3", "any", "any", "->", "any", "any")),
]


@pytest.mark.parametrize(("text", "header"), HEADERS)
def test_headers(text: str, header: tuple[str, ...]) -> None:
    rule = parse_rule(text, "f.rules", 7)
    assert (rule.protocol, rule.src, rule.src_ports, rule.direction, rule.dst, rule.dst_ports) == (
        header
    )
    assert rule.sid == 1
    assert (rule.source, rule.line) == ("f.rules", 7)


def test_options_keep_quoted_and_escaped_semicolons() -> None:
    assert split_options('msg:"a;b"; content:"x\\;y"; nocase; sid:5;') == [
        ("msg", '"a;b"'),
        ("content", '"x\\;y"'),
        ("nocase", None),
        ("sid", "5"),
    ]


BAD = [
    ("alert tcp any any -> any any", "no option list"),
    ("alert tcp any any => any any (sid:1;)", "direction"),
    ("frobnicate tcp any any -> any any (sid:1;)", "unknown action"),
    ("alert tcp any any -> any (sid:1;)", "the header needs"),
    ('alert tcp any any -> any any (msg:"open; sid:1;)', "unterminated"),
    ("alert tcp any any -> any any (sid:one;)", "sid must be a number"),
]


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_syntax_errors(text: str, reason: str) -> None:
    with pytest.raises(RuleSyntaxError, match=reason):
        parse_rule(text)


CONTENTS = [
    ("|00 00|", bytes([0x00, 0x00])),
    ("abc|0D0a|def", b"abc\r\ndef"),
    ("|05 64|x", bytes([0x05, 0x64]) + b"x"),
]


@pytest.mark.parametrize(("text", "expected"), CONTENTS)
def test_content_bytes(text: str, expected: bytes) -> None:
    assert content_bytes(text) == expected


@pytest.mark.parametrize("text", ["|0|", "|zz|", "a|00"])
def test_bad_content_bytes(text: str) -> None:
    with pytest.raises(RuleSyntaxError):
        content_bytes(text)


def test_split_quoted_snort3_modifiers() -> None:
    assert split_quoted('"x", distance 0') == (False, "x", "distance 0")
    assert split_quoted('!"a\\"b"') == (True, 'a"b', "")
