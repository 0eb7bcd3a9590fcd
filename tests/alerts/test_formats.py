"""SIEM payloads: CEF, LEEF 2.0, ECS JSON, EVE JSON and text, from EVE alert records."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from otids import __version__
from otids.alerts.formats import (
    RENDERERS,
    cef_escape_header,
    cef_escape_value,
    cef_severity,
    describe,
    ecs_document,
    render_cef,
    render_leef,
    render_text,
    rfc3339,
)


def alert(**changes: Any) -> dict[str, Any]:
    """An alert record as otids.alerts.eve.alert_record writes it."""
    record: dict[str, Any] = {
        "timestamp": "2026-11-24T18:38:57.356632+0000",
        "flow_id": 656203667190242,
        "event_type": "alert",
        "src_ip": "10.0.0.5",
        "src_port": 34544,
        "dest_ip": "10.0.0.9",
        "dest_port": 502,
        "proto": "TCP",
        "community_id": "1:sObZPfuTbzPHP0XQzJQcNvS6wQY=",
        "app_proto": "modbus",
        "tx_id": 12,
        "alert": {
            "action": "allowed",
            "gid": 1,
            "signature_id": 9101111,
            "rev": 1,
            "rule_id": "otids-modbus-function-code-scan",
            "signature": "Modbus: function code scan",
            "category": "ICS Policy Violation",
            "severity": 2,
            "level": "medium",
            "metadata": {"mitre_attack": ["T0888", "T0846"], "tags": ["attack.t0888"]},
            "count": 3,
        },
        "modbus": {"unit_id": 1, "function_code": 13, "function": "reserved_13"},
    }
    record.update(changes)
    return record


def cef_split(line: str) -> tuple[list[str], dict[str, str]]:
    """Parse a CEF line back: the 7 header fields (unescaped) and the extension map."""
    fields: list[str] = []
    current = ""
    i = 0
    while len(fields) < 7:
        ch = line[i]
        if ch == "\\":
            current += line[i + 1]
            i += 2
            continue
        if ch == "|":
            fields.append(current)
            current = ""
        else:
            current += ch
        i += 1
    ext: dict[str, str] = {}
    # A key starts after a space and runs to an unescaped "=".
    for match in re.finditer(r"(?:^| )(\w+)=((?:[^=\\]|\\.)*?)(?= \w+=|$)", line[i:]):
        value = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), match[2])
        ext[match[1]] = value
    return fields, ext


@pytest.mark.parametrize(
    ("raw", "header", "value"),
    [
        ("plain", "plain", "plain"),
        ("a|b", "a\\|b", "a|b"),  # "|" only matters in the header
        ("a\\b", "a\\\\b", "a\\\\b"),
        ("a=b", "a=b", "a\\=b"),  # "=" only matters in the extension
        ("a\nb\rc", "a b c", "a\\nb\\rc"),
    ],
)
def test_cef_escaping(raw: str, header: str, value: str) -> None:
    assert cef_escape_header(raw) == header
    assert cef_escape_value(raw) == value


def test_cef_line() -> None:
    line = render_cef(alert())
    fields, ext = cef_split(line)
    assert fields == [
        "CEF:0",
        "otids",
        "otids",
        __version__,
        "9101111",  # the rule's sid is the Signature ID
        "Modbus: function code scan",
        "5",  # medium
    ]
    assert ext == {
        "rt": "1795545537357",
        "src": "10.0.0.5",
        "spt": "34544",
        "dst": "10.0.0.9",
        "dpt": "502",
        "proto": "TCP",
        "app": "modbus",
        "act": "allowed",
        "cat": "ICS Policy Violation",
        "msg": "modbus unit 1 reserved_13",
        "cs1Label": "ruleId",
        "cs1": "otids-modbus-function-code-scan",
        "cs2Label": "mitreAttack",
        "cs2": "T0888,T0846",
        "cs3Label": "communityId",
        "cs3": "1:sObZPfuTbzPHP0XQzJQcNvS6wQY=",
        "cn1Label": "flowId",
        "cn1": "656203667190242",
        "cn2Label": "count",
        "cn2": "3",
    }


def test_cef_hostile_text_round_trips() -> None:
    record = alert()
    record["alert"] = {
        **record["alert"],
        "signature": "pipe | back\\slash = eq\nnewline",
        "category": "cat=a|b\\c\nd",
    }
    fields, ext = cef_split(render_cef(record))
    assert fields[5] == "pipe | back\\slash = eq newline"
    assert ext["cat"] == "cat=a|b\\c\nd"
    assert "\n" not in render_cef(record)


def test_cef_ipv6_endpoints_use_the_ipv6_keys() -> None:
    _, ext = cef_split(render_cef(alert(src_ip="2001:db8::1", dest_ip="2001:db8::2")))
    assert "src" not in ext and "dst" not in ext
    assert (ext["c6a2"], ext["c6a3"]) == ("2001:db8::1", "2001:db8::2")
    assert (ext["c6a2Label"], ext["c6a3Label"]) == ("sourceIPv6", "destinationIPv6")


@pytest.mark.parametrize(
    ("level", "cef"), [("critical", 10), ("high", 8), ("medium", 5), ("low", 3), ("info", 1)]
)
def test_severity_scale(level: str, cef: int) -> None:
    record = alert()
    record["alert"] = {**record["alert"], "level": level}
    assert cef_severity(record) == cef


def test_leef_2() -> None:
    line = render_leef(alert())
    header, _, body = line.partition("|^|")
    assert header.split("|") == ["LEEF:2.0", "otids", "otids", __version__, "9101111"]
    attrs = dict(pair.split("=", 1) for pair in body.split("^"))
    assert attrs == {
        "devTime": "2026-11-24T18:38:57.356+0000",
        "devTimeFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSZ",
        "cat": "ICS Policy Violation",
        "sev": "5",
        "src": "10.0.0.5",
        "srcPort": "34544",
        "dst": "10.0.0.9",
        "dstPort": "502",
        "proto": "TCP",
        "name": "Modbus: function code scan",
        "ruleId": "otids-modbus-function-code-scan",
        "level": "medium",
        "action": "allowed",
        "appProto": "modbus",
        "mitreAttack": "T0888,T0846",
        "communityId": "1:sObZPfuTbzPHP0XQzJQcNvS6wQY=",
        "flowId": "656203667190242",
        "count": "3",
        "msg": "modbus unit 1 reserved_13",
    }


def test_leef_values_cannot_break_the_delimiting() -> None:
    record = alert()
    record["alert"] = {**record["alert"], "signature": "a^b\tc\nd", "signature_id": 7}
    line = render_leef(record)
    assert "name=a b c d^" in line
    assert "\n" not in line and "\t" not in line


def test_ecs_document() -> None:
    doc = ecs_document(alert())
    assert doc["@timestamp"] == "2026-11-24T18:38:57.356632Z"
    assert doc["event"] == {
        "kind": "alert",
        "category": ["network", "intrusion_detection"],
        "type": ["allowed"],
        "severity": 2,
        "module": "otids",
        "dataset": "otids.alert",
        "count": 3,
    }
    assert doc["rule"] == {
        "id": "9101111",
        "name": "Modbus: function code scan",
        "category": "ICS Policy Violation",
        "ruleset": "otids",
        "version": "1",
    }
    assert doc["source"] == {"ip": "10.0.0.5", "port": 34544}
    assert doc["destination"] == {"ip": "10.0.0.9", "port": 502}
    assert doc["network"] == {
        "transport": "tcp",
        "protocol": "modbus",
        "community_id": "1:sObZPfuTbzPHP0XQzJQcNvS6wQY=",
    }
    assert doc["threat"] == {
        "framework": "MITRE ATT&CK",
        "technique": {
            "id": ["T0888", "T0846"],
            "reference": [
                "https://attack.mitre.org/techniques/T0888/",
                "https://attack.mitre.org/techniques/T0846/",
            ],
        },
    }
    assert doc["otids"]["rule_id"] == "otids-modbus-function-code-scan"
    assert doc["otids"]["modbus"]["function"] == "reserved_13"


def test_ecs_without_attack_has_no_threat() -> None:
    record = alert()
    record["alert"] = {k: v for k, v in record["alert"].items() if k != "metadata"}
    assert "threat" not in ecs_document(record)


def test_text_line() -> None:
    assert render_text(alert()) == (
        "[9101111] Modbus: function code scan (medium) 10.0.0.5:34544 -> 10.0.0.9:502"
        " modbus unit 1 reserved_13 attack=T0888,T0846 count=3"
    )


def test_describe_decoder_event() -> None:
    record = alert(decoder_event={"name": "modbus.invalid_length", "detail": "length 300"})
    assert describe(record) == "modbus unit 1 reserved_13 modbus.invalid_length: length 300"


def test_rfc3339() -> None:
    assert rfc3339("2026-11-24T18:38:57.356632+0000") == "2026-11-24T18:38:57.356632Z"


@pytest.mark.parametrize("name", sorted(RENDERERS))
@pytest.mark.parametrize(
    "record",
    [
        {"event_type": "alert"},
        {"event_type": "alert", "alert": "not a dict", "timestamp": "garbage"},
        {"event_type": "alert", "alert": {"metadata": {"mitre_attack": "T0800"}}, "app_proto": 5},
    ],
    ids=["bare", "garbage", "odd-types"],
)
def test_odd_records_never_raise(name: str, record: dict[str, Any]) -> None:
    text = RENDERERS[name](record)
    assert isinstance(text, str) and "\n" not in text
    if name in ("json", "eve"):
        json.loads(text)
