"""Rule files: validation with file:line reasons, and matching on real Modbus records."""

from __future__ import annotations

from pathlib import Path

import pytest

from otids.capture.flow import FlowTable
from otids.capture.packet import PROTO_TCP, TH_ACK, Packet
from otids.decode.base import DecoderEvent, Direction
from otids.decode.modbus import ModbusParser
from otids.rules.loader import RuleLoadError, default_rules_dir, load_rules, parse_rule

GOOD = """\
id: test-force-listen-only
sid: 1000001
title: force listen only
severity: high
tags: [attack.t0814]
detection:
  selection:
    modbus.function: 8
    modbus.subfunction: 4
  condition: selection
"""


def _flow() -> object:
    table = FlowTable()
    pkt = Packet(
        0.0, 4, b"\x0a\x00\x00\x05", b"\x0a\x00\x00\x09", PROTO_TCP, 40000, 502, b"", 60, TH_ACK
    )
    return table.lookup(pkt)[0]


def _modbus_tx(pdu: bytes, unit: int = 1) -> object:
    """Feed one request ADU (MBAP + ``pdu``) and return its transaction."""
    adu = (
        (7).to_bytes(2, "big")  # transaction id
        + b"\x00\x00"  # protocol id
        + (len(pdu) + 1).to_bytes(2, "big")  # length: unit id + PDU
        + bytes([unit])  # unit id
        + pdu
    )
    records = ModbusParser().feed(Direction.TO_SERVER, adu, 1.0)
    txs = [r for r in records if not isinstance(r, DecoderEvent)]
    assert len(txs) == 1, records
    return txs[0]


FORCE_LISTEN_ONLY = bytes([0x08, 0x00, 0x04, 0x00, 0x00])  # FC 8, sub-function 4, data 0
READ_HOLDING = bytes([0x03, 0x00, 0x10, 0x00, 0x02])  # FC 3, address 16, quantity 2
WRITE_REGISTER = bytes([0x06, 0x00, 0x20, 0x12, 0x34])  # FC 6, address 32, value 0x1234


def _rule(detection: str, extra: str = "") -> str:
    return (
        "id: t\nsid: 5\ntitle: t\nseverity: low\n"
        + extra
        + "detection:\n"
        + "".join(f"  {line}\n" for line in detection.splitlines())
    )


def test_good_rule_compiles_and_is_indexed() -> None:
    rule, problems = parse_rule(GOOD, "good.yaml")
    assert problems == [] and rule is not None
    assert rule.kind == "transaction" and rule.protocol == "modbus"
    assert rule.index_values == frozenset({8})
    assert rule.attack == ["T0814"]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (GOOD.replace("sid: 1000001", "sid: -3"), 2, "sid must be a positive integer"),
        (GOOD.replace("severity: high", "severity: urgent"), 4, "severity must be one of"),
        (
            GOOD.replace("modbus.subfunction", "modbus.subfuncton"),
            9,
            "did you mean 'modbus.subfunction'",
        ),
        (GOOD.replace("modbus.function: 8", "modbus.function|bigger: 8"), 8, "unknown modifier"),
        (
            GOOD.replace("condition: selection", "condition: selection and other"),
            10,
            "not a selection",
        ),
        (GOOD.replace("title:", "titel:"), 3, "unknown key 'titel'"),
        (GOOD.replace("title: force listen only\n", ""), 1, "missing required key 'title'"),
        (GOOD + "  bad: [unclosed\n", 12, "not valid YAML"),  # reported where YAML gives up
        ("- a list\n", 1, "one mapping"),
        (
            _rule("selection:\n  event: modbus.invalid_lenght"),
            7,
            "did you mean 'modbus.invalid_length'",
        ),
        (_rule("selection:\n  modbus.address|range: [10, 2]"), 7, "above high"),
        (_rule("selection:\n  modbus.unit: $clients\n  modbus.nit: 1"), 8, "unknown field"),
        (_rule("a:\n  modbus.unit: 1\nb:\n  dnp3.func: 1"), 5, "one protocol"),
    ],
)
def test_problems_name_the_line(text: str, line: int, reason: str) -> None:
    rule, problems = parse_rule(text, "r.yaml")
    assert rule is None
    assert any(p.line == line and reason in p.message for p in problems), problems


def test_broken_file_loads_nothing(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text(
        GOOD.replace("sid: 1000001", "sid: 1000002").replace("high", "huge")
    )
    with pytest.raises(RuleLoadError) as err:
        load_rules([tmp_path])
    assert [str(p).split(":")[0] for p in err.value.problems] == [str(tmp_path / "bad.yaml")]


def test_duplicate_sid_and_override(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD.replace("test-force-listen-only", "other"))
    with pytest.raises(RuleLoadError, match="sid 1000001 is also used"):
        load_rules([tmp_path])
    # Same id in a later directory replaces the earlier rule: that is how sites override.
    over = tmp_path / "over"
    over.mkdir()
    (over / "a.yaml").write_text(GOOD.replace("severity: high", "severity: low"))
    (tmp_path / "b.yaml").unlink()
    rules = load_rules([tmp_path / "a.yaml", over])
    assert [r.severity for r in rules.rules] == ["low"]


def test_default_rules_load() -> None:
    rules = load_rules([default_rules_dir()])
    assert len(rules) >= 15
    assert len({r.sid for r in rules.rules}) == len(rules)


@pytest.mark.parametrize(
    ("detection", "pdu", "fires"),
    [
        ("selection:\n  modbus.function: 8\n  modbus.subfunction: 4", FORCE_LISTEN_ONLY, True),
        ("selection:\n  modbus.function: 8\n  modbus.subfunction: 4", READ_HOLDING, False),
        ("selection:\n  modbus.function: [3, 4]", READ_HOLDING, True),
        ("selection:\n  modbus.address|range: [10, 20]", READ_HOLDING, True),
        ("selection:\n  modbus.address|gt: 16", READ_HOLDING, False),
        ("selection:\n  modbus.address|gte: 16", READ_HOLDING, True),
        ("selection:\n  modbus.write_values: 0x1234", WRITE_REGISTER, True),
        ("selection:\n  modbus.write_values|not: 0x1234", WRITE_REGISTER, False),
        ("selection:\n  modbus.subfunction|exists: false", READ_HOLDING, True),
        ("selection:\n  src_ip: 10.0.0.0/24", READ_HOLDING, True),
        ("selection:\n  src_ip: 10.0.1.0/24", READ_HOLDING, False),
        ("selection:\n  dest_port: 502\n  modbus.access: write", WRITE_REGISTER, True),
        (
            "sel:\n  modbus.function: 6\nok:\n  src_ip: $clients\ncondition: sel and not ok",
            WRITE_REGISTER,
            False,
        ),
        (
            "sel:\n  modbus.function: 6\nok:\n  src_ip: $clients\ncondition: sel and ok",
            WRITE_REGISTER,
            True,
        ),
        (
            "a:\n  modbus.function: 1\nb:\n  modbus.function: 6\ncondition: 1 of them",
            WRITE_REGISTER,
            True,
        ),
    ],
)
def test_matching_on_modbus_transactions(detection: str, pdu: bytes, fires: bool) -> None:
    variables = {"clients": ["10.0.0.5", "192.168.0.0/16"]}
    rule, problems = parse_rule(_rule(detection), "t.yaml", variables)
    assert rule is not None, problems
    from otids.rules.engine import RuleSet

    ruleset = RuleSet([rule])
    tx = _modbus_tx(pdu)
    assert bool(ruleset.match(tx, _flow())) is fires  # type: ignore[arg-type]
    # A transaction rule fires once per transaction, however often it is updated.
    assert ruleset.match(tx, _flow()) == []  # type: ignore[arg-type]


def test_event_rule_matches_event_with_sender_direction() -> None:
    rule, _ = parse_rule(
        _rule("selection:\n  event: modbus.invalid_length\n  src_port: 502"), "e.yaml"
    )
    from otids.rules.engine import RuleSet

    ruleset = RuleSet([rule])  # type: ignore[list-item]
    flow = _flow()
    to_client = DecoderEvent("modbus.invalid_length", Direction.TO_CLIENT, 1.0)
    to_server = DecoderEvent("modbus.invalid_length", Direction.TO_SERVER, 1.0)
    assert ruleset.match(to_client, flow)  # type: ignore[arg-type]
    assert not ruleset.match(to_server, flow)  # type: ignore[arg-type]
