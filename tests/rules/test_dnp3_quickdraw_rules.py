"""The shipped DNP3 rules for Quickdraw's detections (sids 9102109-9102115) fire where they must.

* each rule fires on the request or response burst it is about, crafted with the DNP3
  encoders, and the rules on ``$dnp3_masters`` only for an undeclared master;
* on the project's captures: the attack capture raises the unauthorized-master rules when its
  master is not declared, the normal captures raise nothing when their masters are;
* on Quickdraw's test captures (and Zeek's ``dnp3.events`` trace, which is both of them):
  pinned counts per sid.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from otids.decode.base import DecoderEvent, Direction
from otids.decode.dnp3 import Dnp3Parser
from otids.decode.dnp3.transport import encode_fragment
from otids.rules.loader import default_rules_dir, load_rules
from otids.rules.threshold import AlertGate
from tests.conftest import PCAPS, ListSink
from tests.rules.test_dnp3_rules import a_flow

HERE = Path(__file__).resolve().parent
SITE_VARS = yaml.safe_load((HERE / "site-vars.yaml").read_text())  # declares 192.0.2.10
OTHER_MASTER = yaml.safe_load((HERE / "vars-other-client.yaml").read_text())
QUICKDRAW = "public/digitalbond-quickdraw"
RULES = default_rules_dir() / "dnp3"

REQUEST = 0xC4  # link control: from the master, primary, unconfirmed user data
RESPONSE = 0x44  # link control: from the outstation, primary, unconfirmed user data
MASTER, OUTSTATION = 1, 10  # link addresses

Analyse = Callable[..., ListSink]

# sid -> (rule id without "otids-dnp3-", ATT&CK ids, Quickdraw sid it stands for)
NEW_RULES: dict[int, tuple[str, list[str], int]] = {
    9102109: ("unauthorized-cold-restart", ["T0816", "T0855"], 1111205),
    9102110: ("unauthorized-read", ["T0801", "T0861"], 1111206),
    9102111: ("unauthorized-write", ["T0855", "T0836"], 1111207),
    9102112: ("unauthorized-other", ["T0855"], 1111208),
    9102113: ("point-scan", ["T0861", "T0846"], 1111213),
    9102114: ("function-code-scan", ["T0888", "T0846"], 1111214),
    9102115: ("time-change", ["T0836", "T0872"], 11112151),
}
NEEDS_MASTERS = {9102109, 9102110, 9102111, 9102112}


def alerts_by_sid(sink: ListSink) -> Counter[int]:
    return Counter(r["alert"]["signature_id"] for r in sink.of("alert"))


def new_alerts(sink: ListSink) -> dict[int, int]:
    got = alerts_by_sid(sink)
    return {sid: got[sid] for sid in NEW_RULES if got[sid]}


def test_rule_metadata() -> None:
    rules = {r.sid: r for r in load_rules([RULES], SITE_VARS).rules}
    for sid, (name, attack, _) in NEW_RULES.items():
        rule = rules[sid]
        assert rule.id == f"otids-dnp3-{name}"
        assert rule.attack == attack
        assert all(re.fullmatch(r"T08\d\d", t) for t in rule.attack)
        assert rule.description.strip()
    # a cold restart from an undeclared master outranks the plain cold restart
    order = ["info", "low", "medium", "high", "critical"]
    assert order.index(rules[9102109].severity) > order.index(rules[9102101].severity)


def test_master_rules_are_disabled_without_vars() -> None:
    rules = load_rules([RULES])
    assert rules.missing_vars() == {
        "dnp3_masters": [f"otids-dnp3-{NEW_RULES[sid][0]}" for sid in sorted(NEEDS_MASTERS)]
    }


# -- crafted requests ------------------------------------------------------------------------

# (title, application fragment of the request, sids it raises from an undeclared master)
REQUESTS: list[tuple[str, bytes, set[int]]] = [
    ("read class 0", bytes([0xC0, 0x01, 60, 1, 0x06]), {9102110}),
    ("cold restart", bytes([0xC1, 0x0D]), {9102109}),
    ("warm restart", bytes([0xC2, 0x0E]), {9102112}),
    ("select", bytes([0xC3, 0x03, 12, 1, 0x17, 0x01, 0x00]), {9102112}),
    ("enable unsolicited", bytes([0xC4, 0x14, 60, 2, 0x06]), {9102112}),
    ("delete file", bytes([0xC5, 0x1B]), {9102112}),
    ("stop application", bytes([0xC6, 0x12, 90, 1, 0x06]), {9102112}),
    ("immediate freeze", bytes([0xC7, 0x07, 20, 0, 0x06]), {9102112}),
    ("freeze and clear", bytes([0xC8, 0x09, 20, 0, 0x06]), {9102111}),
    ("direct operate no ack", bytes([0xC9, 0x06, 12, 1, 0x17, 0x00]), {9102111}),
    ("initialize data", bytes([0xCA, 0x0F]), {9102111}),
    (
        "write clear restart",
        bytes([
            0xCB,  # application control: FIR, FIN, sequence 11
            0x02,  # function: write
            80, 1,  # group 80 variation 1: internal indications
            0x00, 0x07, 0x07,  # qualifier start-stop, 1-octet: index 7 to 7
            0x00,  # IIN1 bit 7 (device restart) cleared
        ]),
        {9102111},
    ),
    (
        "write time and date",
        bytes([
            0xCC,  # application control: FIR, FIN, sequence 12
            0x02,  # function: write
            50, 1,  # group 50 variation 1: absolute time
            0x07, 0x01,  # qualifier: 1-octet count, 1 object
            0x00, 0x10, 0x5E, 0xD0, 0x8E, 0x01,  # 48-bit milliseconds since 1970
        ]),
        {9102111, 9102115},
    ),
]  # fmt: skip


def _request(fragment: bytes) -> Any:
    """The transaction of one request, as decoded."""
    records = Dnp3Parser().feed(
        Direction.TO_SERVER, encode_fragment(fragment, REQUEST, OUTSTATION, MASTER), 1.0
    )
    (tx,) = {id(r): r for r in records if not isinstance(r, DecoderEvent)}.values()
    return tx


@pytest.mark.parametrize(("title", "fragment", "expected"), REQUESTS)
@pytest.mark.parametrize("declared", [False, True])
def test_request_rules(title: str, fragment: bytes, expected: set[int], declared: bool) -> None:
    rules = load_rules([RULES], SITE_VARS if declared else OTHER_MASTER)
    fired = {r.sid for r in rules.match(_request(fragment), a_flow()) if r.sid in NEW_RULES}
    if declared:  # the flow's master, 192.0.2.10, is declared: only the time change remains
        expected = expected - NEEDS_MASTERS
    assert fired == expected, title


# -- crafted response bursts -----------------------------------------------------------------


def _exchanges(fragment: bytes, iin: int, n: int) -> list[tuple[Direction, bytes]]:
    """``n`` copies of a request, each answered with ``iin``."""
    out = []
    for seq in range(n):
        request = bytes([0xC0 | seq, *fragment[1:]])
        response = bytes([0xC0 | seq, 0x81, iin >> 8, iin & 0xFF])  # response, IIN1, IIN2
        out.append((Direction.TO_SERVER, encode_fragment(request, REQUEST, OUTSTATION, MASTER)))
        out.append((Direction.TO_CLIENT, encode_fragment(response, RESPONSE, MASTER, OUTSTATION)))
    return out


def _bursts() -> list[tuple[str, int, list[tuple[Direction, bytes]]]]:
    read_g30v9 = bytes([0xC0, 0x01, 30, 9, 0x06])  # read group 30 variation 9, all points
    cold_restart_op = bytes([0xC0, 0x0D])  # function 13, to be refused
    return [
        ("object unknown", 9102113, _exchanges(read_g30v9, 0x0002, 12)),
        ("parameter error", 9102113, _exchanges(read_g30v9, 0x0004, 12)),
        ("function not supported", 9102114, _exchanges(cold_restart_op, 0x0001, 12)),
    ]


@pytest.mark.parametrize(("title", "sid", "messages"), _bursts())
def test_bursts(title: str, sid: int, messages: list[tuple[Direction, bytes]]) -> None:
    """Twelve matching messages, one every half second: one alert, at the threshold count."""
    rules = load_rules([RULES], SITE_VARS)
    rule = next(r for r in rules.rules if r.sid == sid)
    assert rule.threshold is not None
    parser, flow, gate = Dnp3Parser(), a_flow(), AlertGate()
    alerts = []
    for n, (direction, data) in enumerate(messages):
        ts = n * 0.5
        for record in parser.feed(direction, data, ts):
            if isinstance(record, DecoderEvent):
                continue
            for hit in rules.match(record, flow):
                alerts += gate.admit(hit, record, flow, ts, "m")
    burst = [(a.rule.sid, a.extra["count"]) for a in alerts if a.rule.sid == sid]
    assert burst == [(sid, rule.threshold.count)], title
    # below the threshold count, nothing
    gate, quiet = AlertGate(), []
    for record in Dnp3Parser().feed(messages[0][0], messages[0][1], 0.0):
        if not isinstance(record, DecoderEvent):
            for hit in rules.match(record, flow):
                quiet += gate.admit(hit, record, flow, 0.0, "m")
    assert [a for a in quiet if a.rule.sid == sid] == []


# -- captures --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dnp3-opendnp3.pcap", "dnp3-udp.pcap"])
def test_normal_capture_gives_no_alert_when_its_master_is_declared(
    name: str, run_analysis: Analyse
) -> None:
    sink = run_analysis([PCAPS / name], variables=SITE_VARS)
    assert sink.of("alert") == []


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        # its master declared: none of the new rules (its write is of group 80, not 50)
        (SITE_VARS, {}),
        # an undeclared master: 1 read, the cold restart, 2 writes (write, direct operate no
        # ack), 6 other requests (warm restart, stop application, disable unsolicited, open,
        # close and delete file)
        (OTHER_MASTER, {9102109: 1, 9102110: 1, 9102111: 2, 9102112: 6}),
    ],
)
def test_attack_capture(run_analysis: Analyse, variables: Any, expected: dict[int, int]) -> None:
    sink = run_analysis([PCAPS / "dnp3-attack.pcap"], variables=variables)
    assert new_alerts(sink) == expected


# Quickdraw's masters (10.0.0.8, 10.0.0.9, 192.168.66.33) are not declared in site-vars.yaml.
PART1 = {  # 4 writes of g50 among them
    9102109: 2,
    9102110: 3,
    9102111: 6,
    9102112: 16,
    9102115: 4,
}
PART2 = {  # 6 reads, 5 selects; 5 parameter_error answers, then 5 object_unknown answers
    9102110: 6,
    9102112: 5,
    9102113: 2,
}


@pytest.mark.parametrize(
    ("capture", "expected"),
    [
        (f"{QUICKDRAW}/dnp3_test_data_part1.pcap", PART1),
        (f"{QUICKDRAW}/dnp3_test_data_part2.pcap", PART2),
        # part 1 then part 2 in one trace: the sums
        ("zeek/dnp3.events/trace.pcap", {**PART1, **PART2, 9102110: 9, 9102112: 21}),
    ],
)
def test_corpus_captures(
    corpus: Path, run_analysis: Analyse, capture: str, expected: dict[int, int]
) -> None:
    sink = run_analysis([corpus / capture], variables=SITE_VARS)
    assert new_alerts(sink) == expected
