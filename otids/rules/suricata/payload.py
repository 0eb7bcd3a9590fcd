"""Packet rules: Suricata/Snort ``alert tcp|udp|ip`` signatures on each packet's payload.

Like Snort's packet inspection, each TCP segment or UDP datagram is checked on its own,
before (and whatever) the dissectors make of the stream: a rule with ``offset``/``depth``
sees a Modbus header only when it starts its segment. The pipeline creates one
:class:`PayloadRules` when the rule set holds packet rules (never otherwise: the default
rules have none, so the packet loop stays as it is) and lets it wrap the flow lookup.

Rules are indexed on the ports their header lists, so a packet is only checked against
the rules naming one of its ports and those naming none.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from otids.capture.flow import Flow
from otids.capture.packet import PROTO_TCP, TH_SYN, Packet
from otids.decode.base import DecoderEvent, Direction
from otids.rules.engine import Rule
from otids.rules.suricata.compiler import PacketMatch
from otids.rules.threshold import AlertGate, Pending

PACKET_EVENT = "packet"  # the record name a packet alert is admitted under
_DIRS = (Direction.TO_SERVER, Direction.TO_CLIENT)

Lookup = Callable[[Packet], tuple[Flow, int]]
# A rule as the packet loop checks it: (rule, direction or None, established, source
# address, source port, destination address, destination port tests (None: any), both
# ways, dsize test, program).
_Plan = tuple[Rule, Any, bool, Any, Any, Any, Any, bool, Any, Any]


def _plan(rule: Rule, pm: PacketMatch) -> _Plan:
    return (
        rule,
        pm.direction,
        pm.established,
        pm.src.predicate(),
        pm.src_ports.predicate(),
        pm.dst.predicate(),
        pm.dst_ports.predicate(),
        pm.both_ways,
        pm.dsize,
        pm.program,
    )


def _ends_match(plan: _Plan, src: bytes, sport: int, dst: bytes, dport: int) -> bool:
    _, _, _, src_ok, sport_ok, dst_ok, dport_ok, _, _, _ = plan
    return (
        (sport_ok is None or sport_ok(sport))
        and (dport_ok is None or dport_ok(dport))
        and (src_ok is None or src_ok(src))
        and (dst_ok is None or dst_ok(dst))
    )


class PayloadRules:
    """The packet rules of a rule set, indexed by IP protocol and port."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        # proto -> (port -> rules listing it, rules listing no port)
        self._index: dict[int, tuple[dict[int, list[_Plan]], list[_Plan]]] = {}
        for rule in rules:
            pm: PacketMatch = rule.raw["packet"]
            plan = _plan(rule, pm)
            ports = needed_ports(pm)
            for proto in pm.protos:
                by_port, rest = self._index.setdefault(proto, ({}, []))
                if ports is None:
                    rest.append(plan)
                else:
                    for port in ports:
                        by_port.setdefault(port, []).append(plan)

    def wants(self, flow: Flow) -> bool:
        """Must ``flow`` stay visible (not bypassed) for these rules?"""
        entry = self._index.get(flow.proto)
        if entry is None:
            return False
        by_port, rest = entry
        return bool(rest) or flow.server_port in by_port or flow.client_port in by_port

    def match(self, flow: Flow, direction: int, pkt: Packet) -> list[Rule]:
        """The rules matching one packet of ``flow`` travelling in ``direction``."""
        entry = self._index.get(pkt.proto)
        payload = pkt.payload
        if entry is None or not payload:
            return []
        by_port, rest = entry
        sport, dport = pkt.sport, pkt.dport
        first, second = by_port.get(sport), by_port.get(dport)
        cands: list[_Plan] = rest
        if first is not None or second is not None:
            cands = [*(first or ()), *(() if second is first else second or ()), *rest]
        hits: list[Rule] = []
        syn = pkt.proto == PROTO_TCP and pkt.tcp_flags & TH_SYN
        src, dst = pkt.src, pkt.dst
        for plan in cands:
            rule, want_dir, established, _, _, _, _, both, dsize, program = plan
            if (want_dir is not None and want_dir != direction) or (established and syn):
                continue
            if not _ends_match(plan, src, sport, dst, dport) and not (
                both and _ends_match(plan, dst, dport, src, sport)
            ):
                continue
            if dsize is not None and not dsize(len(payload)):
                continue
            if program is not None and not program(payload):
                continue
            if rule not in hits:  # a rule listing both of the packet's ports
                hits.append(rule)
        return hits

    def wrap(
        self, lookup: Lookup, gate: AlertGate, emit: Callable[[list[Pending]], None]
    ) -> Lookup:
        """``lookup`` that also runs the packet rules on each packet and emits their alerts
        through ``gate`` (thresholds and rate limits apply as to any rule)."""
        match = self.match

        def lookup_and_match(pkt: Packet) -> tuple[Flow, int]:
            flow, direction = lookup(pkt)
            hits = match(flow, direction, pkt)
            if hits:
                record = DecoderEvent(PACKET_EVENT, _DIRS[direction], pkt.ts)
                app = getattr(flow.app, "protocol", None) or "unknown"
                for rule in hits:
                    emit(gate.admit(rule, record, flow, pkt.ts, app))
            return flow, direction

        return lookup_and_match


def needed_ports(pm: PacketMatch) -> frozenset[int] | None:
    """Ports one of which a flow needs for the rule to match, None when any flow may.

    A flow must match both ends of the header, so the ports of either end that lists them
    (``502``, ``$DNP3_PORTS``) are enough; ``any``, ranges and negations list none.
    """
    named = [p for p in (pm.src_ports.ports(), pm.dst_ports.ports()) if p is not None]
    return frozenset().union(*named) if named else None
