"""SIEM payloads rendered from an EVE ``alert`` record: CEF, LEEF 2.0, ECS JSON, EVE JSON and
a one-line text form. Each renderer takes the record :func:`otids.alerts.eve.alert_record`
builds and returns the message text; the syslog sink puts it behind a syslog header.

Every renderer reads the record defensively (``.get``): a field missing from an unusual
record leaves its key out instead of raising, so one odd alert never silences a sink.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from otids import __version__
from otids.alerts.eve import EveRecord
from otids.alerts.sinks import dumps

VENDOR = "otids"
PRODUCT = "otids"
ECS_VERSION = "8.11.0"  # the ECS release whose field names the JSON payload uses
ATTACK_FRAMEWORK = "MITRE ATT&CK"
ATTACK_URL = "https://attack.mitre.org/techniques/{}/"

# Rule severity (alert.level) -> CEF/LEEF severity, 0-10 (CEF: 0-3 low, 4-6 medium,
# 7-8 high, 9-10 very high). LEEF's ``sev`` uses the same 1-10 scale.
CEF_SEVERITY: dict[str, int] = {"critical": 10, "high": 8, "medium": 5, "low": 3, "info": 1}
# Used when a record has no known level: the middle of the scale, as rules default to medium.
DEFAULT_CEF_SEVERITY = 5


def _alert(record: EveRecord) -> dict[str, Any]:
    alert = record.get("alert")
    return alert if isinstance(alert, dict) else {}


def cef_severity(record: EveRecord) -> int:
    """The record's severity on CEF's 0-10 scale."""
    return CEF_SEVERITY.get(str(_alert(record).get("level", "")), DEFAULT_CEF_SEVERITY)


def _epoch_ms(timestamp: Any) -> int | None:
    """EVE ``timestamp`` (``2026-11-24T18:00:00.123456+0000``) as epoch milliseconds."""
    try:
        return round(datetime.fromisoformat(str(timestamp)).timestamp() * 1000)
    except ValueError:
        return None


def rfc3339(timestamp: Any) -> str:
    """EVE ``timestamp`` in RFC 3339 form with ``Z`` (``2026-11-24T18:00:00.123456Z``), as
    RFC 5424 and ECS ``@timestamp`` want it; the EVE form ends in ``+0000``."""
    text = str(timestamp)
    return text[:-5] + "Z" if text.endswith("+0000") else text


def describe(record: EveRecord) -> str:
    """What happened, briefly: ``modbus unit 1 write_single_coil: <decoder detail>``."""
    parts: list[str] = []
    app_proto = record.get("app_proto")
    app = record.get(app_proto) if isinstance(app_proto, str) else None
    if isinstance(app, dict):
        parts.append(str(app_proto))
        if "unit_id" in app:
            parts.append(f"unit {app['unit_id']}")
        func = app.get("function")
        if func is None and isinstance(app.get("application"), dict):
            func = app["application"].get("function_code")  # DNP3 requests
        if func is not None:
            sub = app.get("subfunction_name")
            parts.append(f"{func}/{sub}" if sub else str(func))
    event = record.get("decoder_event")
    if isinstance(event, dict):
        parts.append(f"{event.get('name', '')}: {event.get('detail', '')}".rstrip(": "))
    return " ".join(str(p) for p in parts)


def _attack(record: EveRecord) -> list[str]:
    meta = _alert(record).get("metadata")
    ids = meta.get("mitre_attack") if isinstance(meta, dict) else None
    return [str(t) for t in ids] if isinstance(ids, list) else []


def _is_ipv6(address: Any) -> bool:
    return isinstance(address, str) and ":" in address


# --- CEF ----------------------------------------------------------------------------------
#
#   CEF:Version|Device Vendor|Device Product|Device Version|Signature ID|Name|Severity|Extension
#
# Header fields escape "\" and "|"; extension values escape "\" and "=" and write newlines
# as "\n" / "\r". The extension is space-separated key=value pairs.

_CEF_HEADER_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "})
_CEF_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", "=": "\\=", "\r": "\\r", "\n": "\\n"})

# CEF's src/dst keys hold IPv4 addresses; IPv6 endpoints go to the custom IPv6 slots that
# ArcSight reserves for source (c6a2) and destination (c6a3).
_CEF_ADDRESS_KEYS = {False: ("src", "dst"), True: ("c6a2", "c6a3")}


def cef_escape_header(value: Any) -> str:
    """A CEF header field: ``\\`` and ``|`` escaped, line breaks made spaces."""
    return str(value).translate(_CEF_HEADER_ESCAPES)


def cef_escape_value(value: Any) -> str:
    """A CEF extension value: ``\\`` and ``=`` escaped, line breaks as ``\\n``/``\\r``."""
    return str(value).translate(_CEF_VALUE_ESCAPES)


def render_cef(record: EveRecord) -> str:
    """The alert as one CEF:0 event; the rule's sid is the Signature ID."""
    alert = _alert(record)
    src_key, dst_key = _CEF_ADDRESS_KEYS[_is_ipv6(record.get("src_ip"))]
    ext: list[tuple[str, Any]] = [
        ("rt", _epoch_ms(record.get("timestamp"))),
        (src_key, record.get("src_ip")),
        ("spt", record.get("src_port")),
        (dst_key, record.get("dest_ip")),
        ("dpt", record.get("dest_port")),
        ("proto", record.get("proto")),
        ("app", record.get("app_proto")),
        ("act", alert.get("action")),
        ("cat", alert.get("category")),
        ("msg", describe(record) or None),
        ("cs1Label", "ruleId"),
        ("cs1", alert.get("rule_id")),
        ("cs2Label", "mitreAttack"),
        ("cs2", ",".join(_attack(record)) or None),
        ("cs3Label", "communityId"),
        ("cs3", record.get("community_id")),
        ("cn1Label", "flowId"),
        ("cn1", record.get("flow_id")),
        ("cn2Label", "count"),
        ("cn2", alert.get("count")),
    ]
    if src_key == "c6a2":
        ext += [("c6a2Label", "sourceIPv6"), ("c6a3Label", "destinationIPv6")]
    header = "|".join(
        cef_escape_header(v)
        for v in (
            VENDOR,
            PRODUCT,
            __version__,
            alert.get("signature_id", 0),
            alert.get("signature", ""),
        )
    )
    return f"CEF:0|{header}|{cef_severity(record)}|" + " ".join(
        f"{key}={cef_escape_value(value)}"
        for key, value in _drop_unlabelled(ext)
        if value is not None
    )


def _drop_unlabelled(ext: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """Leave out a ``csNLabel``/``cnNLabel`` whose value is absent."""
    present = {key for key, value in ext if value is not None}
    return [
        (key, value)
        for key, value in ext
        if not key.endswith("Label") or key[: -len("Label")] in present
    ]


# --- LEEF 2.0 -----------------------------------------------------------------------------
#
#   LEEF:2.0|Vendor|Product|Version|EventID|DelimiterCharacter|key=value<delim>key=value...
#
# LEEF has no escape for the delimiter inside a value. The delimiter is "^" (IBM's own
# LEEF 2.0 example) rather than LEEF 1.0's tab, because syslog relays commonly rewrite
# control characters (rsyslog turns a tab into "#011" unless told otherwise); a "^", tab or
# line break inside a value becomes a space. "|" in header fields is escaped with "\".

LEEF_DELIMITER = "^"
LEEF_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSZ"  # Java SimpleDateFormat, as QRadar reads it
_LEEF_VALUE_CLEAN = str.maketrans({"^": " ", "\t": " ", "\r": " ", "\n": " "})
_LEEF_HEADER_CLEAN = str.maketrans({"|": "\\|", "\t": " ", "\r": " ", "\n": " "})


def render_leef(record: EveRecord) -> str:
    """The alert as one LEEF 2.0 event; the rule's sid is the Event ID."""
    alert = _alert(record)
    timestamp = str(record.get("timestamp", ""))
    attrs: list[tuple[str, Any]] = [
        ("devTime", timestamp[:23] + timestamp[26:] if len(timestamp) == 31 else None),
        ("devTimeFormat", LEEF_TIME_FORMAT),
        ("cat", alert.get("category")),
        ("sev", cef_severity(record)),
        ("src", record.get("src_ip")),
        ("srcPort", record.get("src_port")),
        ("dst", record.get("dest_ip")),
        ("dstPort", record.get("dest_port")),
        ("proto", record.get("proto")),
        ("name", alert.get("signature")),
        ("ruleId", alert.get("rule_id")),
        ("level", alert.get("level")),
        ("action", alert.get("action")),
        ("appProto", record.get("app_proto")),
        ("mitreAttack", ",".join(_attack(record)) or None),
        ("communityId", record.get("community_id")),
        ("flowId", record.get("flow_id")),
        ("count", alert.get("count")),
        ("msg", describe(record) or None),
    ]
    header = "|".join(
        str(v).translate(_LEEF_HEADER_CLEAN)
        for v in (VENDOR, PRODUCT, __version__, alert.get("signature_id", 0))
    )
    return f"LEEF:2.0|{header}|{LEEF_DELIMITER}|" + LEEF_DELIMITER.join(
        f"{key}={str(value).translate(_LEEF_VALUE_CLEAN)}"
        for key, value in attrs
        if value is not None
    )


# --- ECS JSON -----------------------------------------------------------------------------


def ecs_document(record: EveRecord) -> dict[str, Any]:
    """The alert as an Elastic Common Schema document (nested objects, ECS field names);
    what ECS has no name for goes under ``otids``."""
    alert = _alert(record)
    attack = _attack(record)
    proto = record.get("proto")
    doc: dict[str, Any] = {
        "@timestamp": rfc3339(record.get("timestamp", "")),
        "ecs": {"version": ECS_VERSION},
        "message": alert.get("signature"),
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["allowed"] if alert.get("action", "allowed") == "allowed" else ["denied"],
            "severity": alert.get("severity"),
            "module": "otids",
            "dataset": "otids.alert",
        },
        "rule": {
            "id": str(alert.get("signature_id", "")),
            "name": alert.get("signature"),
            "category": alert.get("category"),
            "ruleset": "otids",
            "version": str(alert.get("rev", 1)),
        },
        "source": {"ip": record.get("src_ip"), "port": record.get("src_port")},
        "destination": {"ip": record.get("dest_ip"), "port": record.get("dest_port")},
        "network": {
            "transport": proto.lower() if isinstance(proto, str) else None,
            "protocol": record.get("app_proto"),
            "community_id": record.get("community_id"),
        },
        "observer": {"vendor": VENDOR, "product": PRODUCT, "type": "ids", "version": __version__},
    }
    if "count" in alert:
        doc["event"]["count"] = alert["count"]
    if attack:
        doc["threat"] = {
            "framework": ATTACK_FRAMEWORK,
            "technique": {"id": attack, "reference": [ATTACK_URL.format(t) for t in attack]},
        }
    extra: dict[str, Any] = {
        "rule_id": alert.get("rule_id"),
        "level": alert.get("level"),
        "flow_id": record.get("flow_id"),
    }
    for key in ("tx_id", "decoder_event"):
        if key in record:
            extra[key] = record[key]
    app_proto = record.get("app_proto")
    if isinstance(app_proto, str) and app_proto in record:
        extra[app_proto] = record[app_proto]
    doc["otids"] = extra
    return _without_none(doc)


def _without_none(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop ``None`` values (one level into objects): ECS consumers expect absent keys."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and key != "otids":
            value = {k: v for k, v in value.items() if v is not None}
        if value is not None:
            out[key] = value
    return out


def render_ecs(record: EveRecord) -> str:
    """The ECS document as compact JSON."""
    return orjson.dumps(ecs_document(record), default=str).decode("utf-8")


# --- EVE and text -------------------------------------------------------------------------


def render_eve(record: EveRecord) -> str:
    """The EVE record itself as compact JSON (what Suricata's EVE syslog output sends)."""
    return dumps(record).decode("utf-8")


def render_text(record: EveRecord) -> str:
    """One readable line: ``[sid] title (level) src:port -> dst:port detail attack=...``."""
    alert = _alert(record)
    line = (
        f"[{alert.get('signature_id', 0)}] {alert.get('signature', '')}"
        f" ({alert.get('level', '')})"
        f" {record.get('src_ip')}:{record.get('src_port')}"
        f" -> {record.get('dest_ip')}:{record.get('dest_port')}"
    )
    detail = describe(record)
    if detail:
        line += f" {detail}"
    attack = _attack(record)
    if attack:
        line += f" attack={','.join(attack)}"
    if "count" in alert:
        line += f" count={alert['count']}"
    return line.replace("\r", " ").replace("\n", " ")


RENDERERS: dict[str, Callable[[EveRecord], str]] = {
    "cef": render_cef,
    "leef": render_leef,
    "json": render_ecs,
    "eve": render_eve,
    "text": render_text,
}
"""Payload format name (``--syslog-format``) -> renderer."""
