"""Suricata app-layer rules (modbus, dnp3, app-layer-event) compiled to otids rules and run
on transactions and events decoded by otids' dissectors; header groups and variables;
warnings for skipped rules; the alert fields Suricata rules give."""

from __future__ import annotations

from typing import Any

import pytest

from otids.alerts.eve import alert_record
from otids.capture.flow import FlowTable
from otids.capture.packet import PROTO_TCP, Packet
from otids.decode.base import DecoderEvent, Direction
from otids.decode.dnp3 import Dnp3Parser
from otids.decode.dnp3.transport import encode_fragment
from otids.decode.modbus import ModbusParser
from otids.rules.engine import RuleSet
from otids.rules.suricata import parse_rules

CLIENT, SERVER = bytes([192, 0, 2, 10]), bytes([192, 0, 2, 20])
REQUEST, RESPONSE = 0xC4, 0x44  # DNP3 link control: master / outstation user data
MASTER, OUTSTATION = 1, 10

FORCE_LISTEN_ONLY = bytes(
    [
        0x00, 0x01,  # transaction id
        0x00, 0x00,  # protocol id
        0x00, 0x06,  # length
        0x0A,  # unit id 10
        0x08,  # function: diagnostics
        0x00, 0x04,  # sub-function: force listen only mode
        0x00, 0x00,  # data
    ]
)  # fmt: skip
READ_COILS = bytes(
    [
        0x00, 0x02, 0x00, 0x00, 0x00, 0x06,  # MBAP: tid 2, length 6
        0x0A,  # unit id 10
        0x01,  # function: read coils
        0x00, 0x01,  # starting address 1
        0x00, 0x08,  # quantity 8
    ]
)  # fmt: skip
READ_COILS_RESPONSE = bytes(
    [
        0x00, 0x02, 0x00, 0x00, 0x00, 0x04,  # MBAP: tid 2, length 4
        0x0A,  # unit id 10
        0x01,  # function: read coils
        0x01,  # byte count
        0xA5,  # coils 1-8
    ]
)  # fmt: skip
WRITE_REGISTER = bytes(
    [
        0x00, 0x03, 0x00, 0x00, 0x00, 0x06,  # MBAP: tid 3, length 6
        0x01,  # unit id 1
        0x06,  # function: write single register
        0x00, 0x20,  # address 32
        0x01, 0x2C,  # value 300
    ]
)  # fmt: skip
BAD_PROTOCOL = bytes(
    [
        0x00, 0x04,  # transaction id
        0x00, 0x07,  # protocol id 7: not Modbus
        0x00, 0x02, 0x01, 0x03,  # length 2, unit 1, function 3
    ]
)  # fmt: skip


def a_flow(port: int) -> Any:
    return FlowTable().lookup(Packet(0.0, 4, CLIENT, SERVER, PROTO_TCP, 49152, port, b"", 54))[0]


def sids(rules_text: str, records: list[Any], port: int, variables: Any = None) -> dict[int, int]:
    rules, warnings = parse_rules(rules_text, "test.rules", variables)
    assert warnings == []
    ruleset = RuleSet(rules)
    flow = a_flow(port)
    hits: dict[int, int] = {}
    for record in records:
        for rule in ruleset.match(record, flow):
            hits[rule.sid] = hits.get(rule.sid, 0) + 1
    return hits


def modbus_records() -> list[Any]:
    parser = ModbusParser()
    out: list[Any] = []
    for direction, data in [
        (Direction.TO_SERVER, FORCE_LISTEN_ONLY),
        (Direction.TO_SERVER, READ_COILS),
        (Direction.TO_CLIENT, READ_COILS_RESPONSE),
        (Direction.TO_SERVER, WRITE_REGISTER),
        (Direction.TO_SERVER, BAD_PROTOCOL),
    ]:
        out.extend(parser.feed(direction, data, 1.0))
    out.extend(parser.close(2.0))
    return out


MODBUS_RULES = [
    # (options, alerts on modbus_records())
    ("modbus: function 8;", 1),
    ("modbus: function 8, subfunction 4;", 1),
    ("modbus: function 8, subfunction 1;", 0),
    ("modbus: function !8;", 2),
    ("modbus: function assigned;", 3),
    ("modbus: access read;", 1),
    ("modbus: access read coils, address 0<>2;", 1),
    ("modbus: access read holding;", 0),
    ("modbus: access write holding, address 32, value >299;", 1),
    ("modbus: access write, value <300;", 0),
    ("modbus: unit 10;", 2),
    ("modbus: unit >9, function 1;", 1),
    # Snort
    ("modbus_func:diagnostics;", 1),
    ("modbus_func:6; modbus_unit:1;", 1),
    ('modbus_data; content:"|00 04|"; depth:2;', 1),
    # content on the ADU: a direction picks the request or the response
    ('content:"|01 01 a5|";', 1),
    ('flow:to_server; content:"|01 01 a5|";', 0),
    ('flow:to_client; content:"|01 01 a5|";', 1),
    ('content:"|00 00 00 06 0a 08|"; offset:2; depth:6;', 1),
    ("dsize:12;", 3),
    # events
    ("app-layer-event:modbus.invalid_protocol_id;", 1),
    ("flow:to_client; app-layer-event:modbus.invalid_protocol_id;", 0),
]


@pytest.mark.parametrize(("options", "alerts"), MODBUS_RULES)
def test_modbus_rules(options: str, alerts: int) -> None:
    text = f'alert modbus any any -> any any (msg:"t"; {options} sid:1; rev:1;)'
    assert sids(text, modbus_records(), 502) == ({1: alerts} if alerts else {})


def dnp3_records() -> list[Any]:
    parser = Dnp3Parser()
    out: list[Any] = []
    for direction, fragment in [
        (Direction.TO_SERVER, bytes([0xC0, 0x15, 60, 2, 0x06])),  # disable unsolicited
        (Direction.TO_CLIENT, bytes([0xC0, 0x81, 0x80, 0x00])),  # response, device restart
        (Direction.TO_SERVER, bytes([0xC1, 0x01, 22, 1, 0x06])),  # read counter events g22v1
        (Direction.TO_CLIENT, bytes([0xF2, 0x82, 0x90, 0x00])),  # unsolicited, need time too
    ]:
        control, dst, src = (
            (REQUEST, OUTSTATION, MASTER)
            if direction == Direction.TO_SERVER
            else (RESPONSE, MASTER, OUTSTATION)
        )
        out.extend(parser.feed(direction, encode_fragment(fragment, control, dst, src), 1.0))
    out.extend(parser.close(2.0))
    return out


DNP3_RULES = [
    ("dnp3_func:21;", 1),
    ("dnp3.func:disable_unsolicited; flow:to_server;", 1),
    ("dnp3_func:21; flow:to_client;", 0),
    ("dnp3_func:unsolicited_response;", 1),
    ("dnp3_ind:device_restart;", 2),
    ("dnp3_ind:need_time;", 1),
    ("dnp3.ind:device_restart,!need_time;", 1),
    ("dnp3.ind:0x9000;", 1),
    ("dnp3.ind:!0;", 2),
    ("dnp3_obj:22,01;", 1),
    ("dnp3_obj:group 60, var 2;", 1),
    ("dnp3_obj:60,1;", 0),
    ('dnp3_data; content:"|3c 02 06|";', 1),
    ('dnp3_data; content:"|3c 02 06|"; flow:to_client;', 0),
    ('dnp3_data; content:"|82|"; offset:1; depth:1; dnp3_func:130;', 1),
]


@pytest.mark.parametrize(("options", "alerts"), DNP3_RULES)
def test_dnp3_rules(options: str, alerts: int) -> None:
    text = f'alert dnp3 any any -> any any (msg:"t"; {options} sid:1; rev:1;)'
    assert sids(text, dnp3_records(), 20000) == ({1: alerts} if alerts else {})


HEADERS = [
    # (header addresses and ports, variables, alerts on the read coils transaction)
    ("any any -> any any", None, 1),
    ("192.0.2.10 any -> 192.0.2.20 502", None, 1),
    ("192.0.2.20 502 -> 192.0.2.10 any", None, 0),
    ("192.0.2.20 502 <> 192.0.2.10 any", None, 1),
    ("$MODBUS_CLIENT any -> $MODBUS_SERVER $MODBUS_PORTS", None, 1),
    ("$MODBUS_CLIENT any -> $MODBUS_SERVER any", {"MODBUS_CLIENT": ["192.0.2.0/24"]}, 1),
    ("!$MODBUS_CLIENT any -> any any", {"MODBUS_CLIENT": ["192.0.2.10"]}, 0),
    ("[10.0.0.0/8, 192.0.2.0/24] [1024:] -> ![192.0.2.21] !80", None, 1),
    ("$EXTERNAL_NET any -> $HOME_NET any", {"HOME_NET": ["192.0.2.0/24"]}, 0),
]


@pytest.mark.parametrize(("header", "variables", "alerts"), HEADERS)
def test_header_groups(header: str, variables: Any, alerts: int) -> None:
    text = f'alert modbus {header} (msg:"t"; modbus: function 1; sid:1;)'
    assert sids(text, modbus_records(), 502, variables) == ({1: alerts} if alerts else {})


def test_undefined_variable_disables_the_rule() -> None:
    rules, warnings = parse_rules(
        'alert modbus $PLC any -> any any (msg:"t"; modbus: function 1; sid:1;)', "t.rules"
    )
    assert warnings == []
    ruleset = RuleSet(rules)
    assert ruleset.rules == [] and ruleset.missing_vars() == {"PLC": ["suricata-1-1"]}


ANY = "any any -> any any"
SKIPPED = [
    # (rule, warning text after "t.rules:LINE: ")
    (f'alert modbus {ANY} (msg:"x"; lua:a.lua; sid:7;)', "sid 7 skipped: unsupported option 'lua'"),
    (f'alert http {ANY} (msg:"x"; sid:8;)', "sid 8 skipped: protocol 'http'"),
    (f'drop modbus {ANY} (msg:"x"; sid:9;)', "sid 9 skipped: action 'drop'"),
    (
        f"alert dnp3 {ANY} (app-layer-event:dnp3.nope; sid:10;)",
        "sid 10 skipped: app-layer-event:dnp3.nope",
    ),
    (
        f'alert tcp {ANY} (msg:"x"; modbus: function 1; content:"a"; sid:11;)',
        "sid 11 skipped: packet content mixed",
    ),
    (
        f'alert tcp {ANY} (msg:"x"; flowbits:set,a; sid:12;)',
        "sid 12 skipped: unsupported option 'flowbits'",
    ),
    (f'alert tcp {ANY} (msg:"x"; sid:13', "rule skipped: no option list"),
]


def test_skipped_rules_are_named_and_the_rest_loads() -> None:
    good = 'alert modbus any any -> any any (msg:"ok"; modbus: function 1; sid:1;)'
    text = "\n".join([good] + [rule for rule, _ in SKIPPED])
    rules, warnings = parse_rules(text, "t.rules")
    assert [r.sid for r in rules] == [1]
    assert len(warnings) == len(SKIPPED)
    for line, (warning, (_, expected)) in enumerate(zip(warnings, SKIPPED, strict=True), 2):
        assert warning.startswith(f"t.rules:{line}: {expected}")


def test_duplicate_sid_keeps_the_higher_rev() -> None:
    text = (
        'alert modbus any any -> any any (msg:"old"; modbus: function 1; sid:1; rev:1;)\n'
        'alert modbus any any -> any any (msg:"new"; modbus: function 2; sid:1; rev:2;)\n'
    )
    rules, warnings = parse_rules(text, "t.rules")
    assert [(r.sid, r.title) for r in rules] == [(1, "new")]
    assert warnings == ["t.rules:2: sid 1 duplicates line 1; keeping rev 2 (line 2)"]


THRESHOLDS = [
    ("threshold: type both, track by_src, count 3, seconds 60;", ("by_src", 3, 60.0, "once")),
    ("threshold: type limit, track by_dst, count 1, seconds 10;", ("by_dst", 1, 10.0, "limit")),
    ("threshold: type threshold, track by_both, count 5, seconds 9;", ("by_pair", 5, 9.0, "nth")),
    ("detection_filter: track by_rule, count 2, seconds 5;", ("by_rule", 2, 5.0, "every")),
]  # fmt: skip


@pytest.mark.parametrize(("option", "expected"), THRESHOLDS)
def test_thresholds(option: str, expected: tuple[Any, ...]) -> None:
    (rule,), _ = parse_rules(f"alert modbus any any -> any any ({option} sid:1;)", "t.rules")
    th = rule.threshold
    assert th is not None and (th.track, th.count, th.seconds, th.mode) == expected


def test_alert_fields_like_suricata() -> None:
    text = (
        'alert modbus any any -> any any (msg:"Modbus invalid protocol"; '
        "app-layer-event:modbus.invalid_protocol_id; classtype:protocol-command-decode; "
        "gid:3; sid:2250001; rev:2;)\n"
        'alert modbus any any -> any any (msg:"fc 8"; modbus: function 8; '
        "classtype:attempted-dos; priority:1; sid:5;)\n"
    )
    rules, _ = parse_rules(text, "t.rules")
    ruleset = RuleSet(rules)
    flow = a_flow(502)
    got = {}
    for record in modbus_records():
        for rule in ruleset.match(record, flow):
            got[rule.sid] = alert_record(1.0, flow, record, rule, "modbus")["alert"]
    event, tx = got[2250001], got[5]
    assert (event["gid"], event["signature_id"], event["rev"]) == (3, 2250001, 2)
    assert event["signature"] == "Modbus invalid protocol"
    assert event["category"] == "Generic Protocol Command Decode"
    assert event["severity"] == 3  # the classtype's priority
    assert (tx["category"], tx["severity"], tx["gid"], tx["rev"]) == (
        "Attempted Denial of Service",
        1,  # the rule's own priority
        1,
        1,
    )


def test_event_rules_are_indexed_on_their_event() -> None:
    (rule,), _ = parse_rules(
        "alert dnp3 any any -> any any (app-layer-event:dnp3.flooded; sid:3;)", "t.rules"
    )
    assert (rule.kind, rule.index_values) == ("event", frozenset({"dnp3.flooded"}))
    event = DecoderEvent("dnp3.flooded", Direction.TO_SERVER, 1.0)
    assert RuleSet([rule]).match(event, a_flow(20000)) == [rule]


SNORT = [
    # Snort 2 preprocessor keywords on a tcp rule: an app-layer rule of that protocol
    ("alert tcp any any -> any 502 (msg:\"t\"; modbus_func:read_coils; sid:1;)", "modbus", 1),
    ("alert tcp any any -> any 502 (msg:\"t\"; modbus_func:1; modbus_unit:9; sid:1;)", "modbus", 0),
    # Snort 3: no header, comma-separated content modifiers, on the Modbus data
    (
        'alert modbus ( msg:"t"; modbus_data; content:"|00|", depth 1; '
        'content:"|08|", distance 2; sid:1; )',
        "modbus",
        1,
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "protocol", "alerts"), SNORT)
def test_snort_forms(text: str, protocol: str, alerts: int) -> None:
    (rule,), _ = parse_rules(text, "t.rules")
    assert (rule.kind, rule.protocol) == ("transaction", protocol)
    assert sids(text, modbus_records(), 502) == ({1: alerts} if alerts else {})


def test_function_rules_are_indexed() -> None:
    (rule,), _ = parse_rules("alert modbus any any -> any any (modbus: function 8; sid:1;)", "t")
    assert (rule.index_field, rule.index_values) == ("modbus.function", frozenset({8}))
