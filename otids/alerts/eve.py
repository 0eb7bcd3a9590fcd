"""EVE-shaped records (Suricata's JSON log field names), built from flows, records and rules.

Every record has ``timestamp`` (ISO 8601), ``flow_id``, ``event_type``, ``src_ip``,
``src_port``, ``dest_ip``, ``dest_port``, ``proto``, ``community_id`` (Community ID v1 of
the flow, as Suricata writes it) and ``app_proto``; alerts add ``alert``
and the protocol object (``modbus``/``dnp3``) of the transaction they concern, decoder-event
alerts add ``decoder_event``; transaction records carry the protocol object under the
protocol's name; the ``stats`` record carries counters.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from otids.alerts.community_id import community_id
from otids.capture.flow import Flow
from otids.capture.packet import PROTO_TCP
from otids.decode.base import DecoderEvent, Direction, Transaction
from otids.rules.engine import Rule

EveRecord = dict[str, Any]


_second_cache: dict[int, str] = {}
_SECOND_CACHE_MAX = 4096  # distinct seconds kept; a capture is read in time order


def iso_timestamp(ts: float) -> str:
    """``2026-11-24T18:00:00.123456+0000``, the form Suricata writes.

    The date and time up to the second are formatted once per second of capture time:
    strftime costs more than the rest of building a record.
    """
    sec = int(ts // 1)
    usec = round((ts - sec) * 1_000_000)
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    head = _second_cache.get(sec)
    if head is None:
        if len(_second_cache) >= _SECOND_CACHE_MAX:
            _second_cache.clear()
        head = _second_cache[sec] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{head}.{usec:06d}+0000"


def flow_community_id(flow: Flow) -> str:
    """The flow's Community ID v1 (seed 0). Hashed when a flow's record head is built,
    i.e. once per flow and record kind (see :func:`_header`), not once per record."""
    client, server, client_port, server_port, proto = flow.key
    return community_id(client, server, proto, client_port, server_port)


def _header(
    event_type: str, ts: float, flow: Flow, direction: Direction, app_proto: str
) -> EveRecord:
    # Everything but the timestamp is the same for every record of one kind in one flow:
    # built once per flow and kind, then copied (a record per transaction makes this hot).
    heads = flow.log_cache
    if heads is None:
        heads = flow.log_cache = {}
    key = (event_type, direction, app_proto)
    head = heads.get(key)
    if head is None:
        head = heads[key] = _flow_head(event_type, flow, direction, app_proto)
    rec = {"timestamp": iso_timestamp(ts)}
    rec.update(head)
    return rec


def _flow_head(event_type: str, flow: Flow, direction: Direction, app_proto: str) -> EveRecord:
    if direction == Direction.TO_CLIENT:
        src, sport, dst, dport = (
            flow.server_str,
            flow.server_port,
            flow.client_str,
            flow.client_port,
        )
    else:
        src, sport, dst, dport = (
            flow.client_str,
            flow.client_port,
            flow.server_str,
            flow.server_port,
        )
    return {
        "flow_id": flow.flow_id,
        "event_type": event_type,
        "src_ip": src,
        "src_port": sport,
        "dest_ip": dst,
        "dest_port": dport,
        "proto": "TCP" if flow.proto == PROTO_TCP else "UDP",
        "community_id": flow_community_id(flow),
        "app_proto": app_proto,
    }


def transaction_records(flow: Flow, tx: Transaction) -> list[EveRecord]:
    """The ``event_type: <protocol>`` records of one finished transaction, oriented client
    to server as Suricata writes them (a response's record too)."""
    protocol = tx.protocol
    heads = flow.log_cache
    if heads is None:
        heads = flow.log_cache = {}
    # The head of a flow's transaction records is cached under the protocol's name, those of
    # :func:`_header` under a tuple: the hottest lookup needs no key built.
    head = heads.get(protocol)
    if head is None:
        head = heads[protocol] = _flow_head(protocol, flow, Direction.TO_SERVER, protocol)
    tx_id = tx.tx_id
    return [
        {"timestamp": iso_timestamp(ts), **head, "tx_id": tx_id, protocol: obj}
        for ts, obj in tx.eve_records()
    ]


def alert_record(
    ts: float,
    flow: Flow,
    record: Transaction | DecoderEvent,
    rule: Rule,
    app_proto: str,
    extra: dict[str, Any] | None = None,
) -> EveRecord:
    """The ``event_type: alert`` record of ``rule`` firing on ``record``.

    ``extra``: fields added to ``alert`` when the line stands for several matches:
    ``count`` (how many), ``threshold`` or ``rate_limit`` (why); see
    :mod:`otids.rules.threshold`.
    """
    if isinstance(record, DecoderEvent):
        tx = record.tx
        # An event travels in its own direction; Suricata reports the packet's direction.
        rec = _header("alert", ts, flow, record.direction, app_proto)
    else:
        tx = record
        rec = _header("alert", ts, flow, Direction.TO_SERVER, app_proto)
    if tx is not None:
        rec["tx_id"] = tx.tx_id
    alert: dict[str, Any] = {
        "action": "allowed",
        "gid": rule.gid,
        "signature_id": rule.sid,
        "rev": rule.rev,
        "rule_id": rule.id,
        "signature": rule.title,
        "category": rule.category,
        "severity": rule.severity_num,
        "level": rule.severity,
    }
    metadata: dict[str, list[str]] = {}
    if rule.attack:
        metadata["mitre_attack"] = rule.attack
    if rule.tags:
        metadata["tags"] = rule.tags
    if metadata:
        alert["metadata"] = metadata
    if extra:
        alert.update(extra)
    rec["alert"] = alert
    if isinstance(record, DecoderEvent) and rule.kind != "packet":  # a packet match is no event
        rec["decoder_event"] = {"name": record.name, "detail": record.detail}
    if tx is not None:
        rec[tx.protocol] = tx.eve()
    return rec


def stats_record(ts: float, stats: dict[str, Any]) -> EveRecord:
    """The ``event_type: stats`` record."""
    return {"timestamp": iso_timestamp(ts), "event_type": "stats", "stats": stats}
