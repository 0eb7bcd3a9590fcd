"""Payload keywords (content and its modifiers, pcre, byte_test, byte_jump, isdataat,
dsize) on one buffer, through packet rules compiled by the Suricata compiler."""

from __future__ import annotations

import pytest

from otids.rules.suricata.compiler import Compiler, PacketMatch
from otids.rules.suricata.parser import parse_rule

# A Modbus/TCP read holding registers request: the buffer most Quickdraw rules look at.
READ_REQUEST = bytes(
    [
        0x00, 0x01,  # transaction id
        0x00, 0x00,  # protocol id
        0x00, 0x06,  # length: unit id and PDU
        0x01,  # unit id
        0x03,  # function: read holding registers
        0x00, 0x10,  # starting address
        0x00, 0x02,  # quantity
    ]
)  # fmt: skip
# Two ADUs in one segment: a force listen only mode (8/4) then a report server id (17).
TWO_ADUS = bytes(
    [
        0x00, 0x07, 0x00, 0x00, 0x00, 0x06, 0x01,  # MBAP: tid 7, length 6, unit 1
        0x08, 0x00, 0x04, 0x00, 0x00,  # diagnostics, force listen only mode, data 0
        0x00, 0x08, 0x00, 0x00, 0x00, 0x02, 0x01,  # MBAP: tid 8, length 2, unit 1
        0x11,  # report server id
    ]
)  # fmt: skip


def packet_match(options: str) -> PacketMatch:
    rule = Compiler({}).compile(parse_rule(f"alert tcp any any -> any any ({options} sid:1;)"))
    pm: PacketMatch = rule.raw["packet"]
    return pm


CASES = [
    # (options, buffer, matches)
    ('content:"|00 00|"; offset:2; depth:2;', READ_REQUEST, True),
    ('content:"|00 00|"; offset:4; depth:2;', READ_REQUEST, False),
    ('content:"|03|"; offset:7; depth:1;', READ_REQUEST, True),
    ('content:"|03|"; offset:6; depth:1;', READ_REQUEST, False),
    ('content:!"|2b|";', READ_REQUEST, True),
    ('content:!"|03|";', READ_REQUEST, False),
    ('content:"ABC"; nocase;', b"xxabcxx", True),
    ('content:"ABC";', b"xxabcxx", False),
    # relative: within counts from the previous match end plus distance
    ('content:"|01|"; content:"|03|"; distance:0; within:1;', READ_REQUEST, True),
    ('content:"|01|"; content:"|02|"; distance:0; within:2;', READ_REQUEST, False),
    ('content:"|01|"; content:"|02|"; distance:4;', READ_REQUEST, True),
    # Snort 3 comma-separated modifiers
    ('content:"|01|", offset 6; content:"|03|", distance 0, within 1;', READ_REQUEST, True),
    # backtracking: the first "|00|" followed by "|06|" is at offset 4
    ('content:"|00|"; content:"|06|"; distance:0; within:1;', READ_REQUEST, True),
    # pcre: anchored at the cursor (R, A), with a negative lookahead (Quickdraw's style)
    (
        'content:"|00 00|"; offset:2; depth:2; pcre:"/[\\S\\s]{3}(\\x03|\\x04)/iAR";',
        READ_REQUEST,
        True,
    ),
    (
        'content:"|00 00|"; offset:2; depth:2; pcre:"/[\\S\\s]{3}(\\x05|\\x06)/iAR";',
        READ_REQUEST,
        False,
    ),
    ('pcre:"/[\\S\\s]{2}(?!\\x00\\x00)/iAR";', READ_REQUEST, False),
    ('pcre:"/[\\S\\s]{2}(?!\\x00\\x00)/iAR";', b"GET / HTTP/1.0", True),
    ('pcre:!"/^GET/";', READ_REQUEST, True),
    # byte_test: the function code has the exception bit (Quickdraw exception rules)
    ("byte_test:1,>=,0x80,7;", READ_REQUEST, False),
    ("byte_test:1,>=,0x80,7;", READ_REQUEST[:7] + bytes([0x83, 0x02]), True),
    ("byte_test:2,=,6,4;", READ_REQUEST, True),
    ("byte_test:2,!=,6,4;", READ_REQUEST, False),
    ("byte_test:1,&,0x02,11;", READ_REQUEST, True),
    ('content:"|01|"; byte_test:1,=,3,0,relative;', READ_REQUEST, True),
    ("byte_test:1,=,3,20;", READ_REQUEST, False),  # past the end: no match, no error
    ("byte_test:2,=,12,0,string,dec;", b"12abc", True),
    # byte_jump over the MBAP length, then isdataat: more bytes than the ADU declares
    ("byte_jump:2,4; isdataat:0,relative;", READ_REQUEST, False),
    ("byte_jump:2,4; isdataat:0,relative;", TWO_ADUS, True),
    ("byte_jump:2,4; isdataat:!0,relative;", READ_REQUEST, True),
    ('byte_jump:2,4; content:"|11|"; distance:7; within:1;', TWO_ADUS, True),
    ("isdataat:11;", READ_REQUEST, True),
    ("isdataat:12;", READ_REQUEST, False),
]


@pytest.mark.parametrize(("options", "buffer", "expected"), CASES)
def test_payload_keywords(options: str, buffer: bytes, expected: bool) -> None:
    program = packet_match(options).program
    assert program is not None
    assert program(buffer) is expected


@pytest.mark.parametrize(
    ("dsize", "size", "expected"),
    [(">300", 301, True), (">300", 300, False), ("<5", 4, True), ("10<>20", 15, True),
     ("10<>20", 10, False), ("12", 12, True), ("!12", 12, False)],
)  # fmt: skip
def test_dsize(dsize: str, size: int, expected: bool) -> None:
    test = packet_match(f"dsize:{dsize};").dsize
    assert test is not None
    assert test(size) is expected


def test_backtracking_is_bounded() -> None:
    """A buffer of many candidate positions for the first content, none followed by the
    second: the evaluation gives up after MAX_BACKTRACK tries instead of scanning all."""
    program = packet_match('content:"a"; content:"b"; distance:0; within:1;').program
    assert program is not None
    assert program(b"a" * 100_000) is False
    assert program(b"a" * 10 + b"b") is True
