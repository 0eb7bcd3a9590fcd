"""The one pipeline behind ``otids read`` (and later ``otids live``).

It wires the layers in their one direction: packets from a source are decoded
(:mod:`otids.capture.link`), assigned to flows and reassembled (:mod:`otids.capture.flow`),
handed to the dissector that recognised the flow (:mod:`otids.decode`), their records
evaluated by the rules (:mod:`otids.rules`) and the results given to the sinks
(:mod:`otids.alerts`). It sits above the layers so that none of them imports another
downstream.

Flow classification: a flow is *unknown* until its first payload. A flow on a port a
protocol owns is probed for that protocol only: a failed probe raises the protocol's
port-mismatch event (``modbus.non_modbus_traffic``) and the flow is ignored. A flow on any
other port is probed for every protocol and ignored silently when none matches. Ignored
flows cost one flow lookup per packet.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from otids.alerts.eve import alert_record, stats_record, transaction_records
from otids.alerts.sinks import Sink
from otids.capture.flow import Flow, FlowTable
from otids.capture.link import (
    ETH_IPV4_TCP_FIELDS,
    ETH_IPV4_TCP_FIELDS_AT,
    ETH_IPV4_TCP_MIN_FRAME,
    ETHERTYPE_IPV4,
    IPV4_FRAGMENT_BITS,
    IPV4_PLAIN,
    IPV4_TCP_MIN_TOTAL,
    RAW_FLOW_KEY,
    TCP_MIN_DATA_OFFSET,
    LinkType,
    PacketDecoder,
)
from otids.capture.packet import PROTO_TCP, PROTO_UDP, TH_ACK, TH_FIN, TH_RST, TH_SYN
from otids.capture.tcp import SEQ_MASK, Gap, StreamAnomaly, StreamItem
from otids.decode.base import (
    AppParser,
    DecoderEvent,
    Direction,
    ProbeResult,
    ProtocolSpec,
    Record,
    Transaction,
)
from otids.decode.registry import PROTOCOLS
from otids.rules.engine import Rule, RuleSet
from otids.rules.threshold import AlertGate, Pending

if TYPE_CHECKING:
    from otids.rules.suricata.payload import PayloadRules

# Flow.app_state values.
UNKNOWN, ACTIVE, IGNORED = 0, 1, 2

# Bytes of a flow's first payload kept while a probe asks for more; a protocol that cannot
# decide within this many bytes is not the flow's protocol.
PROBE_LIMIT = 512

_DIRS = (Direction.TO_SERVER, Direction.TO_CLIENT)

_ETHERNET = int(LinkType.ETHERNET)  # plain ints compare faster on the per-packet path
_TCP_CONTROL = TH_SYN | TH_FIN | TH_RST  # flags that keep a packet off run()'s fast path


class _Probing:
    """A flow's payload held back while the probes decide."""

    __slots__ = ("candidates", "chunks", "size")

    def __init__(self, candidates: list[ProtocolSpec]) -> None:
        self.candidates = candidates
        self.chunks: list[tuple[Direction, bytes, float]] = []
        self.size = 0


class _AppStats:
    __slots__ = ("flows", "functions", "transactions")

    def __init__(self) -> None:
        self.flows = 0
        self.transactions = 0
        self.functions: dict[str, list[int]] = {}  # label -> [count, errors]


class Pipeline:
    """Packets in, EVE records out to ``sink``."""

    def __init__(
        self,
        rules: RuleSet,
        sink: Sink,
        log_transactions: bool = False,
        protocols: Iterable[ProtocolSpec] = PROTOCOLS,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.rules = rules
        self.sink = sink
        self.log_transactions = log_transactions
        self.protocols = tuple(protocols)
        self._tcp_owner = {p: s for s in self.protocols for p in s.tcp_ports}
        self._udp_owner = {p: s for s in self.protocols for p in s.udp_ports}
        tcp_ports, udp_ports = frozenset(self._tcp_owner), frozenset(self._udp_owner)
        self.flows = FlowTable(
            server_port_hint=lambda proto, port: (
                port in (tcp_ports if proto == PROTO_TCP else udp_ports)
            )
        )
        self.decoder = PacketDecoder(
            bypass_tcp=self.flows.bypass_tcp, bypass_udp=self.flows.bypass_udp, shard=shard
        )
        self.flows.on_evict = self._evictions
        self.packets = 0
        self.bytes = 0
        self.files = 0
        self.capture_warnings: list[str] = []
        self.events: Counter[str] = Counter()
        self.alerts: Counter[int] = Counter()
        self.rules_by_sid: dict[int, Rule] = {}
        # Thresholds, suppression and rate limits: which matches are written, and when.
        self.gate = AlertGate()
        # Suricata/Snort rules on raw packet payloads, if any were loaded (default: none).
        self.payload_rules: PayloadRules | None = None
        if rules.packet_rules:
            from otids.rules.suricata.payload import PayloadRules  # loaded when needed

            self.payload_rules = PayloadRules(rules.packet_rules)
        self.app_stats: dict[str, _AppStats] = {p.name: _AppStats() for p in self.protocols}
        self.started = time.monotonic()
        self.last_ts = 0.0

    # --- packets ---------------------------------------------------------------------------

    def run(self, packets: Iterable[tuple[float, int, bytes, int]]) -> None:
        """Process ``(timestamp, linktype, frame, wire length)`` tuples from a source."""
        decoder = self.decoder
        decode = decoder.decode
        # Suricata packet rules, when loaded, see each packet at its flow lookup.
        payload_rules = self.payload_rules
        lookup = (
            self.flows.lookup
            if payload_rules is None
            else payload_rules.wrap(self.flows.lookup, self.gate, self._emit)
        )
        # The fast path below: a plain Ethernet/IPv4 TCP frame (no SYN, FIN or RST) of a
        # flow already in the table and not bypassed is decoded and looked up inline, with
        # no Packet made: decode() and lookup() would do the same, at twice the cost. Its
        # flow being in the table proves it of this shard, and not bypassed, its raw key is
        # not in the decoder's bypass set. Anything else takes the general path.
        tcp4 = self.flows.tcp4 if payload_rules is None else {}
        unpack_fields = ETH_IPV4_TCP_FIELDS.unpack_from
        # Capture time of the next housekeeping (every second of capture time, or at once
        # when the flow table evicted flows). The reader's C loop drops no record due then.
        due = decoder.housekeeping_due
        due[0] = 0.0
        npackets = nbytes = nfast = 0
        ts = self.last_ts
        try:
            for ts, linktype, frame, wirelen in packets:
                npackets += 1
                nbytes += wirelen
                if ts >= due[0]:
                    self._housekeeping(ts)
                    due[0] = ts + 1.0
                flow = None
                if linktype == _ETHERNET and len(frame) >= ETH_IPV4_TCP_MIN_FRAME:
                    entry = tcp4.get(frame[RAW_FLOW_KEY])
                    if entry is not None and not entry[0].bypassed:
                        etype, vihl, total, frag, proto, seq, ack, off, flags = unpack_fields(
                            frame, ETH_IPV4_TCP_FIELDS_AT
                        )
                        start = 34 + ((off >> 4) << 2)
                        end = 14 + total
                        if (
                            etype == ETHERTYPE_IPV4
                            and vihl == IPV4_PLAIN
                            and proto == PROTO_TCP
                            and not (frag & IPV4_FRAGMENT_BITS or flags & _TCP_CONTROL)
                            and total >= IPV4_TCP_MIN_TOTAL
                            and off >= TCP_MIN_DATA_OFFSET
                            and start <= end <= len(frame)
                        ):
                            flow, d = entry
                            nfast += 1
                            flow.last_ts = ts
                            flow.pkts[d] += 1
                            flow.bytes[d] += wirelen
                            payload = frame[start:end]
                if flow is None:
                    pkt = decode(ts, linktype, frame, wirelen)
                    if pkt is None:
                        continue
                    flow, d = lookup(pkt)
                    if flow.app_state == IGNORED:
                        continue
                    if pkt.proto != PROTO_TCP:
                        if pkt.payload:
                            self._data(flow, _DIRS[d], pkt.payload, ts)
                        continue
                    flags, seq, ack, payload = pkt.tcp_flags, pkt.seq, pkt.ack, pkt.payload
                elif flow.app_state == IGNORED:
                    continue
                else:
                    # The commonest packet, in order and acknowledging nothing new: all
                    # Flow.tcp_segment would do is its inline in-order case, done here.
                    streams = flow.streams
                    if (
                        streams is not None
                        and (not flags & TH_ACK or ack == streams[d ^ 1].next_seq)
                        and (not payload or (seq == streams[d].next_seq and not streams[d].ooo))
                    ):
                        if payload:
                            own = streams[d]
                            n = len(payload)
                            own.next_seq = (seq + n) & SEQ_MASK
                            own.segments += 1
                            own.bytes += n
                            if flow.app_state == ACTIVE:
                                records = flow.app.feed(_DIRS[d], payload, ts)
                                if records:
                                    self._records(flow, records, ts)
                            else:
                                self._data(flow, _DIRS[d], payload, ts)
                        continue
                items = flow.tcp_segment(d, flags, seq, ack, payload)
                if not items:
                    continue
                # The common case, one in-order chunk for a recognised flow, inline.
                if len(items) == 1 and flow.app_state == ACTIVE:
                    d, item = items[0]
                    if type(item) is bytes:
                        records = flow.app.feed(_DIRS[d], item, ts)
                        if records:
                            self._records(flow, records, ts)
                        continue
                self._stream(flow, items, ts)
        finally:
            self.packets += npackets
            self.bytes += nbytes
            self.last_ts = max(self.last_ts, ts)
            decoder.packets += nfast
            decoder.ip += nfast

    def tick(self, now: float) -> None:
        """Time passed without packets (a quiet live link) up to capture time ``now``: emit
        the alerts now due (no response in time) and close the flows idle too long."""
        if now > self.last_ts:
            self._housekeeping(now)

    def _evictions(self) -> None:
        """The flow table evicted flows: housekeeping at the next packet closes them."""
        self.decoder.housekeeping_due[0] = -math.inf

    def _housekeeping(self, now: float) -> None:
        self._emit(self.gate.due(now))
        for flow in self.flows.expire(now):
            self._close_flow(flow, now)
        for flow in self.flows.evicted():
            self._close_flow(flow, now)

    def _stream(self, flow: Flow, items: list[tuple[int, StreamItem]], ts: float) -> None:
        for d, item in items:
            direction = _DIRS[d]
            if type(item) is bytes:
                if item:
                    self._data(flow, direction, item, ts)
            elif isinstance(item, Gap):
                self._gap(flow, direction, item, ts)
            elif isinstance(item, StreamAnomaly):
                self._event(flow, DecoderEvent(item.name, direction, ts, item.detail))

    def _data(self, flow: Flow, direction: Direction, data: bytes, ts: float) -> None:
        if flow.app_state == ACTIVE:
            records = flow.app.feed(direction, data, ts)
            if records:
                self._records(flow, records, ts)
        elif flow.app_state == UNKNOWN:
            self._classify(flow, direction, data, ts)

    def _gap(self, flow: Flow, direction: Direction, gap: Gap, ts: float) -> None:
        # The dissector reports the gap as its own event (``modbus.gap``) when it resyncs;
        # before classification the probe simply sees the later bytes.
        if flow.app_state == ACTIVE:
            self._records(flow, flow.app.gap(direction, ts), ts)

    # --- classification --------------------------------------------------------------------

    def _classify(self, flow: Flow, direction: Direction, data: bytes, ts: float) -> None:
        probing = flow.app
        if not isinstance(probing, _Probing):
            owner = self._owner(flow)
            probing = _Probing([owner[0]] if owner is not None else list(self.protocols))
            flow.app = probing
        probing.chunks.append((direction, data, ts))
        probing.size += len(data)
        self._probe(flow, probing, direction, ts, final=probing.size >= PROBE_LIMIT)

    def _owner(self, flow: Flow) -> tuple[ProtocolSpec, int] | None:
        """The protocol owning one of the flow's ports (the server's first), and that port."""
        owners = self._tcp_owner if flow.proto == PROTO_TCP else self._udp_owner
        for port in (flow.server_port, flow.client_port):
            spec = owners.get(port)
            if spec is not None:
                return spec, port
        return None

    def _probe(
        self, flow: Flow, probing: _Probing, direction: Direction, ts: float, final: bool
    ) -> None:
        """Run the candidates' probes on the bytes seen so far in ``direction``.

        ``final``: no more bytes will be waited for, so "need more" counts as "no".
        """
        joined = b"".join(c for d, c, _ in probing.chunks if d == direction)
        undecided: list[ProtocolSpec] = []
        for spec in probing.candidates:
            verdict = spec.probe(joined, direction)
            if verdict is ProbeResult.MATCH:
                self._activate(flow, spec, probing)
                return
            if verdict is ProbeResult.NEED_MORE and not final:
                undecided.append(spec)
        probing.candidates = undecided
        if undecided:
            return
        flow.app = None
        flow.app_state = IGNORED
        if self.payload_rules is None or not self.payload_rules.wants(flow):
            self.flows.bypass(flow)
        owner = self._owner(flow)
        if owner is not None:
            spec, port = owner
            head = joined[:16].hex(" ")
            detail = f"traffic on port {port} is not {spec.name} (starts {head})"
            self._event(flow, DecoderEvent(spec.port_mismatch_event, direction, ts, detail))

    def _activate(self, flow: Flow, spec: ProtocolSpec, probing: _Probing) -> None:
        parser: AppParser = spec.parser_factory(flow.proto == PROTO_UDP)
        flow.app = parser
        flow.app_state = ACTIVE
        self.app_stats[spec.name].flows += 1
        midstream = flow.proto == PROTO_TCP and not flow.syn_seen
        started: set[Direction] = set()
        for direction, data, ts in probing.chunks:
            if midstream and direction not in started:
                started.add(direction)
                # Picked up midstream, this direction may start inside a message: if its
                # first bytes are not a message start, resynchronise as after a gap, without
                # the gap's event (nothing was lost that this capture could have held).
                joined = b"".join(c for d, c, _ in probing.chunks if d == direction)
                if spec.probe(joined, direction) is not ProbeResult.MATCH:
                    parser.gap(direction, ts)
            self._records(flow, parser.feed(direction, data, ts), ts)

    # --- records ---------------------------------------------------------------------------

    def _event(self, flow: Flow, event: DecoderEvent) -> None:
        self._records(flow, (event,), event.ts)

    def _records(self, flow: Flow, records: Iterable[Record], ts: float) -> None:
        rules = self.rules
        for rec in records:
            hits = rules.match(rec, flow)
            if type(rec) is DecoderEvent:
                self.events[rec.name] += 1
            if hits:
                app = flow.app.protocol if flow.app_state == ACTIVE else "failed"
                for rule in hits:
                    alerts = self.gate.admit(rule, rec, flow, ts, app)
                    if alerts:  # most matches of state rules start or update state only
                        self._emit(alerts)
            if isinstance(rec, Transaction) and rec.done:
                self._transaction_done(flow, rec)

    def _emit(self, alerts: list[Pending]) -> None:
        for a in alerts:
            sid = a.rule.sid
            self.alerts[sid] += 1
            self.rules_by_sid[sid] = a.rule
            self.sink.handle(alert_record(a.ts, a.flow, a.record, a.rule, a.app_proto, a.extra))

    def _transaction_done(self, flow: Flow, tx: Transaction) -> None:
        st = self.app_stats.get(tx.protocol)
        if st is not None:
            st.transactions += 1
            label, error = tx.summary()
            row = st.functions.get(label)
            if row is None:
                row = st.functions[label] = [0, 0]
            row[0] += 1
            if error is not None:
                row[1] += 1
        if self.log_transactions:
            for record in transaction_records(flow, tx):
                self.sink.handle(record)

    # --- end -------------------------------------------------------------------------------

    def _close_flow(self, flow: Flow, ts: float) -> None:
        if flow.app_state != IGNORED and flow.streams is not None:
            # What the reassemblers still hold (out-of-order data, a midstream start not yet
            # settled) is handed over first: it may be all an unclassified flow carried.
            for d in _DIRS:
                items = flow.streams[d].flush()
                if items:
                    self._stream(flow, [(d, item) for item in items], ts)
        if flow.app_state == ACTIVE:
            self._records(flow, flow.app.close(ts), ts)
        elif flow.app_state == UNKNOWN and isinstance(flow.app, _Probing):
            # The flow ended before the probes could decide: judge what was seen.
            probing = flow.app
            self._probe(flow, probing, probing.chunks[-1][0], ts, final=True)
            if flow.app_state == ACTIVE:
                self._close_flow(flow, ts)
                return
        flow.app = None
        flow.app_state = IGNORED

    def finish(self, emit_stats: bool = True) -> dict[str, Any]:
        """Close every flow, emit the final ``stats`` record (unless a parent process merges
        the statistics of several workers) and return the statistics."""
        # The capture's end: its last packet, which the reader may have dropped unseen.
        self.last_ts = max(self.last_ts, self.decoder.prefiltered_ts)
        for flow in self.flows.drain():
            self._close_flow(flow, self.last_ts)
        self._emit(self.gate.drain(self.last_ts))
        stats = self.stats(final=True)
        if emit_stats:
            self.sink.handle(stats_record(self.last_ts or time.time(), stats))
        return stats

    def stats(self, final: bool = False) -> dict[str, Any]:
        """Counters so far, as written in the ``stats`` record."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        dec = self.decoder
        packets = self.packets + dec.prefiltered  # the reader dropped some unseen
        return {
            "final": final,
            "elapsed_s": round(elapsed, 3),
            "last_ts": max(self.last_ts, dec.prefiltered_ts),
            "packets_per_s": round(packets / elapsed, 1),
            "capture": {
                "files": self.files,
                "packets": packets,
                "bytes": self.bytes + dec.prefiltered_bytes,
                "warnings": list(self.capture_warnings),
            },
            "decoder": {
                name: getattr(dec, name)
                for name in (
                    "ip",
                    "non_ip",
                    "not_tcp_udp",
                    "malformed",
                    "truncated",
                    "unsupported_linktype",
                    "ip_fragments",
                    "ip_reassembled",
                    "ip_frag_dropped",
                    "bypassed",
                    "other_shard",
                )
            },
            "flows": {
                "total": self.flows.created,
                "active": len(self.flows),
                "expired": self.flows.expired,
                "evicted": self.flows.evicted_count,
            },
            "app_layer": {
                name: {
                    "flows": st.flows,
                    "transactions": st.transactions,
                    "functions": {
                        label: {"count": c, "errors": e} for label, (c, e) in st.functions.items()
                    },
                }
                for name, st in self.app_stats.items()
            },
            "decoder_events": dict(sorted(self.events.items())),
            "alerts": {
                "total": sum(self.alerts.values()),
                "by_rule": [
                    {
                        "sid": sid,
                        "rule_id": self.rules_by_sid[sid].id,
                        "title": self.rules_by_sid[sid].title,
                        "level": self.rules_by_sid[sid].severity,
                        "count": n,
                    }
                    for sid, n in sorted(self.alerts.items())
                ],
            },
        }
