"""The shipped Modbus rules (Quickdraw's detections on decoded fields) fire where they must."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from otids.decode.base import DecoderEvent, Direction
from otids.decode.modbus import ModbusParser
from otids.rules.loader import default_rules_dir, load_rules
from otids.rules.threshold import AlertGate
from tests.conftest import PCAPS, ListSink
from tests.rules.test_threshold import flow

HERE = Path(__file__).resolve().parent
SITE_VARS = yaml.safe_load((HERE / "site-vars.yaml").read_text())
OTHER_CLIENT = yaml.safe_load((HERE / "vars-other-client.yaml").read_text())
QUICKDRAW = "public/digitalbond-quickdraw"

Analyse = Callable[..., ListSink]

# sid -> Quickdraw detection it stands for (Quickdraw sid)
NEW_RULES = {
    9101106: 1111006,  # read request from an unauthorized client
    9101107: 1111007,  # write request from an unauthorized client
    9101108: 1111010,  # slave device busy exception burst
    9101109: 1111011,  # acknowledge exception burst
    9101110: 1111013,  # points list scan
    9101111: 1111014,  # function code scan
}


def alerts_by_sid(sink: ListSink) -> Counter[int]:
    return Counter(r["alert"]["signature_id"] for r in sink.of("alert"))


def test_shipped_modbus_rules_carry_attack_ids() -> None:
    rules = load_rules([default_rules_dir() / "modbus"], SITE_VARS)
    for r in rules.rules:
        if r.sid > 9101100:
            assert r.attack, r.id
            assert all(re.fullmatch(r"T0\d{3}", t) for t in r.attack)
    assert set(NEW_RULES) <= {r.sid for r in rules.rules}
    assert "ATT&CK for ICS" in (default_rules_dir() / "README.md").read_text()


def test_unauthorized_rules_are_disabled_without_vars() -> None:
    rules = load_rules([default_rules_dir() / "modbus"])
    assert rules.missing_vars() == {
        "modbus_clients": ["otids-modbus-unauthorized-read", "otids-modbus-unauthorized-write"]
    }


def test_polling_gives_no_alert_when_its_client_is_declared(run_analysis: Analyse) -> None:
    sink = run_analysis([PCAPS / "modbus-polling.pcap"], variables=SITE_VARS)
    assert sink.of("alert") == []


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        # the declared client: only the command and scan rules
        (SITE_VARS, {9101110: 1, 9101111: 1}),
        # another declared client: 63 reads (10 lines, then one folding the other 53), 11 writes
        (OTHER_CLIENT, {9101106: 11, 9101107: 11, 9101110: 1, 9101111: 1}),
    ],
)
def test_attack_capture(run_analysis: Analyse, variables: Any, expected: dict[int, int]) -> None:
    sink = run_analysis([PCAPS / "modbus-attack.pcap"], variables=variables)
    got = alerts_by_sid(sink)
    assert {sid: got[sid] for sid in NEW_RULES if got[sid]} == expected
    scans = {
        r["alert"]["signature_id"]: r["alert"]
        for r in sink.of("alert")
        if r["alert"]["signature_id"] in (9101110, 9101111)
    }
    assert scans[9101110]["count"] == 5 and scans[9101110]["threshold"]["key"] == "127.0.0.1"
    assert scans[9101111]["count"] == 3
    if 9101106 in expected:
        [folded] = [
            r["alert"]
            for r in sink.of("alert")
            if r["alert"]["signature_id"] == 9101106 and "rate_limit" in r["alert"]
        ]
        assert folded["count"] == 53


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        # part 1: reads and writes from 10.0.0.57, an undeclared client
        ("modbus_test_data_part1.pcap", {9101106: 7, 9101107: 3}),
        # part 2: the function-code scan and points scan from 192.168.66.235 (the reads:
        # 10 lines, then one folding 3)
        # The whole function-code scan (from function 0) is decoded: reads and writes of
        # unusual functions from a client not in $modbus_clients, and two scan windows.
        ("modbus_test_data_part2.pcap", {9101106: 22, 9101107: 7, 9101110: 1, 9101111: 2}),
    ],
)
def test_quickdraw_captures(
    corpus: Path, run_analysis: Analyse, capture: str, expected: dict[int, int]
) -> None:
    sink = run_analysis([corpus / QUICKDRAW / capture], variables=SITE_VARS)
    got = alerts_by_sid(sink)
    assert {sid: got[sid] for sid in NEW_RULES if got[sid]} == expected


def _exchange(parser: ModbusParser, tid: int, exception: int, ts: float) -> list[Any]:
    """A read holding registers request and its exception response, as records."""
    request = bytes([
        0x00, tid,  # transaction id
        0x00, 0x00,  # protocol id
        0x00, 0x06,  # length: unit id + 5 PDU bytes
        0x01,  # unit id
        0x03,  # function: read holding registers
        0x00, 0x10,  # address 16
        0x00, 0x02,  # quantity 2
    ])  # fmt: skip
    response = bytes([
        0x00, tid,  # transaction id
        0x00, 0x00,  # protocol id
        0x00, 0x03,  # length: unit id + 2 PDU bytes
        0x01,  # unit id
        0x83,  # function 3 with the exception bit
        exception,  # exception code
    ])  # fmt: skip
    return [
        *parser.feed(Direction.TO_SERVER, request, ts),
        *parser.feed(Direction.TO_CLIENT, response, ts + 0.01),
    ]


@pytest.mark.parametrize(
    ("exception", "sid"),
    [
        (6, 9101108),  # server device busy
        (5, 9101109),  # acknowledge
        (2, 9101110),  # illegal data address: point scan (5 needed)
        (1, 9101111),  # illegal function: function-code scan
    ],
)
def test_exception_bursts(exception: int, sid: int) -> None:
    rules = load_rules([default_rules_dir() / "modbus"], SITE_VARS)
    rule = next(r for r in rules.rules if r.sid == sid)
    assert rule.threshold is not None
    parser, f, gate = ModbusParser(), flow("10.0.2.1", "10.0.2.9"), AlertGate()
    alerts = []
    for n in range(10):  # ten exceptions, one a second
        for rec in _exchange(parser, n, exception, float(n)):
            if isinstance(rec, DecoderEvent):
                continue
            for hit in rules.match(rec, f):
                alerts += gate.admit(hit, rec, f, n, "m")
    # the read itself is also an unauthorized read (10.0.2.1 is not declared): leave it out
    burst = [(a.rule.sid, a.extra["count"]) for a in alerts if a.rule.sid != 9101106]
    assert burst == [(sid, rule.threshold.count)]
