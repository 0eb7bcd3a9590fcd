"""Flows: the two directions of a TCP connection or UDP conversation, found by 5-tuple.

The :class:`FlowTable` maps each packet to its :class:`Flow` and a direction, ``TO_SERVER``
(0) or ``TO_CLIENT`` (1): the same values as ``otids.decode.base.Direction``, which this
layer may not import. A TCP flow owns one :class:`~otids.capture.tcp.TcpReassembler` per
direction and turns each packet into stream items (:meth:`Flow.tcp_packet`).

Lookup cost is what matters: every packet pays it. The table therefore stores each flow
under both orientations of its 5-tuple, ``(src, dst, sport, dport, proto)``, with the
direction already attached, so a lookup is one tuple and one dict get, and returns a stored
tuple. No LRU bookkeeping is done per packet: when the table is full, the least recently
seen flows (by ``last_ts``) are evicted in a batch. VLAN tags are not part of the key: the
same packet seen on two VLANs of a trunk then counts as a retransmission, not a new flow.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from otids.capture.packet import PROTO_TCP, TH_ACK, TH_FIN, TH_RST, TH_SYN, Packet, addr_str
from otids.capture.tcp import SEQ_HALF, SEQ_MASK, StreamItem, TcpReassembler

TO_SERVER = 0  # client (master) -> server (outstation, PLC)
TO_CLIENT = 1  # server -> client

# Modbus/TCP and DNP3 sessions stay open for days and can be quiet for minutes between
# polls or unsolicited reports: a short timeout would cut them and lose the dissector state.
IDLE_TIMEOUT = 600.0
# UDP has no session: a conversation idle for two minutes is as good as over.
UDP_IDLE_TIMEOUT = 120.0
# After FIN both ways or RST only stray retransmissions and final ACKs can follow.
CLOSED_TIMEOUT = 30.0
# Flow memory bound: an OT network has a few hundred conversations; 65536 leaves room for
# scans and floods while bounding memory (each flow is a few hundred bytes plus buffers).
MAX_FLOWS = 65536
# Expiry scans the whole table, so it runs at most this often (seconds of capture time);
# timeouts are minutes long, so a flow outlives its timeout by at most this much.
EXPIRE_INTERVAL = 10.0
# When full, evict max_flows // EVICT_DIVISOR flows at once (the least recently seen), so
# the cost of finding them (a sort of the table) is paid once per many new flows.
EVICT_DIVISOR = 16
# Idle timeout of a bypassed flow (one whose payload nobody wants): its packets no longer
# refresh it, so this is how often a long-lived non-ICS flow is looked at again. Short,
# because bypassed flows are most of the table on a busy SPAN port.
BYPASS_TIMEOUT = 60.0
# flow_id is masked to 51 bits: a positive integer a JSON reader holds exactly as a double.
FLOW_ID_MASK = (1 << 51) - 1

_SPECIAL = TH_SYN | TH_FIN | TH_RST  # flags that take the slow path of tcp_packet
_SYN_ACK = TH_SYN | TH_ACK
# The handshake tells roles apart: SYN alone comes from the client, SYN+ACK from the server.
_SENDER_IS_CLIENT_BY_HANDSHAKE = {TH_SYN: True, TH_SYN | TH_ACK: False}
_PORTS = struct.Struct("!HHBd")
_PORT_PAIR = struct.Struct("!HH")
_last_ts = attrgetter("last_ts")

FlowKey = tuple[bytes, bytes, int, int, int]  # (src, dst, sport, dport, proto)


class Flow:
    """One TCP connection or UDP conversation, with its client and server sides.

    ``pkts`` and ``bytes`` (wire bytes) are indexed by direction; ``streams`` holds the
    reassembler of each direction (None for UDP). ``app`` and ``app_state`` are opaque slots
    for the pipeline (the dissector and its probing state), ``log_cache`` one for the output
    layer (what its records of this flow share).
    """

    __slots__ = (
        "_client_str",
        "_fins",
        "_flow_id",
        "_server_str",
        "app",
        "app_state",
        "bypassed",
        "bytes",
        "client",
        "client_port",
        "closed",
        "first_ts",
        "ip_version",
        "key",
        "last_ts",
        "log_cache",
        "pkts",
        "proto",
        "server",
        "server_port",
        "streams",
        "syn_seen",
    )

    def __init__(
        self,
        proto: int,
        client: bytes,
        client_port: int,
        server: bytes,
        server_port: int,
        ip_version: int,
        ts: float,
    ) -> None:
        self.key: FlowKey = (client, server, client_port, server_port, proto)
        self.proto = proto
        self.client = client
        self.client_port = client_port
        self.server = server
        self.server_port = server_port
        self.ip_version = ip_version
        self._flow_id = 0  # computed when first asked for: most flows of a scan never are
        self.first_ts = ts
        self.last_ts = ts
        self.pkts = [0, 0]
        self.bytes = [0, 0]
        self.streams: tuple[TcpReassembler, TcpReassembler] | None = (
            (TcpReassembler(), TcpReassembler()) if proto == PROTO_TCP else None
        )
        self.syn_seen = False
        self.closed = False
        self._fins = 0  # bit per direction that sent FIN
        self.app: Any = None  # opaque to this layer: the consumer decides
        self.log_cache: Any = None  # opaque to this layer too
        self.app_state = 0
        self.bypassed = False  # its payload is of no interest: see FlowTable.bypass
        self._client_str: str | None = None
        self._server_str: str | None = None

    @property
    def flow_id(self) -> int:
        """A positive 51-bit id, the same in every run for the same 5-tuple and first packet
        time (a hash, not a counter, so that separate runs over one capture agree)."""
        if not self._flow_id:
            client, server, client_port, server_port, proto = self.key
            digest = hashlib.blake2b(
                client + server + _PORTS.pack(client_port, server_port, proto, self.first_ts),
                digest_size=8,
            ).digest()
            self._flow_id = int.from_bytes(digest, "big") & FLOW_ID_MASK or 1
        return self._flow_id

    @property
    def client_str(self) -> str:
        """The client address, formatted (computed once)."""
        if self._client_str is None:
            self._client_str = addr_str(self.client)
        return self._client_str

    @property
    def server_str(self) -> str:
        """The server address, formatted (computed once)."""
        if self._server_str is None:
            self._server_str = addr_str(self.server)
        return self._server_str

    def tcp_packet(self, direction: int, pkt: Packet) -> list[tuple[int, StreamItem]]:
        """Feed one TCP packet travelling in ``direction``; return the stream items it frees.

        Each item comes with the direction it belongs to: the packet's own data, but also,
        through the ACK field or an RST, items of the opposite direction (data the other
        side sent that the capture missed shows up as a Gap there). Items are in the order
        they must be handed to the dissector. Returns [] for a UDP flow.
        """
        return self.tcp_segment(direction, pkt.tcp_flags, pkt.seq, pkt.ack, pkt.payload)

    def tcp_segment(
        self, direction: int, flags: int, seq: int, ack: int, payload: bytes
    ) -> list[tuple[int, StreamItem]]:
        """:meth:`tcp_packet` from the TCP header fields and payload, for a caller that
        decoded them without making a :class:`Packet` (the pipeline's fast path)."""
        streams = self.streams
        if streams is None:
            return []
        if flags & _SPECIAL:
            return self._tcp_control(direction, flags, seq, ack, payload, streams)
        out: list[tuple[int, StreamItem]] = []
        if flags & TH_ACK:
            # Only an ACK past the data seen from the other side (or the first one) matters;
            # telling that apart here saves a call on nearly every packet.
            peer = streams[direction ^ 1]
            nxt = peer.next_seq
            if ack != nxt and (((ack - nxt) & SEQ_MASK) < SEQ_HALF or nxt < 0):
                other = direction ^ 1
                out = [(other, item) for item in peer.peer_ack(ack)]
        if payload:
            own = streams[direction]
            if seq == own.next_seq and not own.ooo:
                # TcpReassembler.segment's fast path, inlined: it runs for every data packet
                # and the call plus its one-item list would double the cost.
                n = len(payload)
                own.next_seq = (seq + n) & SEQ_MASK
                own.segments += 1
                own.bytes += n
                out.append((direction, payload))
            else:
                out += [(direction, item) for item in own.segment(seq, payload)]
        return out

    def _tcp_control(
        self,
        direction: int,
        flags: int,
        seq: int,
        ack: int,
        payload: bytes,
        streams: tuple[TcpReassembler, TcpReassembler],
    ) -> list[tuple[int, StreamItem]]:
        """SYN, FIN and RST: the rare packets that start or end a direction."""
        other = direction ^ 1
        own = streams[direction]
        peer = streams[other]
        out: list[tuple[int, StreamItem]] = []
        if flags & TH_RST:
            # The connection is gone both ways: hand over whatever is still buffered.
            out.extend((direction, item) for item in own.flush())
            out.extend((other, item) for item in peer.flush())
            self.closed = True
            return out
        if flags & TH_SYN:
            self.syn_seen = True
            own.set_isn(seq)
            seq = (seq + 1) & SEQ_MASK  # the SYN occupies one sequence number
        if flags & TH_ACK and ack != peer.next_seq:
            out.extend((other, item) for item in peer.peer_ack(ack))
        if payload:
            out.extend((direction, item) for item in own.segment(seq, payload))
        if flags & TH_FIN:
            out.extend((direction, item) for item in own.fin((seq + len(payload)) & SEQ_MASK))
            self._fins |= 1 << direction
            if self._fins == 3:
                self.closed = True
        return out

    def __repr__(self) -> str:
        return (
            f"Flow({self.flow_id}: {self.client_str}:{self.client_port} -> "
            f"{self.server_str}:{self.server_port} proto={self.proto})"
        )


class FlowTable:
    """All live flows, found by 5-tuple in either direction.

    ``server_port_hint(proto, port)`` says whether ``port`` is a well-known server port of
    a protocol we care about; it decides roles when the handshake was not seen. Counters:
    ``created``, ``expired``, ``evicted_count`` (table full) and ``reused`` (a closed TCP flow
    replaced by a new connection on the same 5-tuple).
    """

    def __init__(
        self,
        idle_timeout: float = IDLE_TIMEOUT,
        closed_timeout: float = CLOSED_TIMEOUT,
        max_flows: int = MAX_FLOWS,
        server_port_hint: Callable[[int, int], bool] | None = None,
        udp_timeout: float = UDP_IDLE_TIMEOUT,
    ) -> None:
        self.idle_timeout = idle_timeout
        self.closed_timeout = closed_timeout
        self.udp_timeout = udp_timeout
        self.max_flows = max(1, max_flows)
        self.server_port_hint = server_port_hint
        # Both orientations of each flow's 5-tuple -> (flow, direction of that orientation).
        self._table: dict[FlowKey, tuple[Flow, int]] = {}
        # The same entries of the IPv4 TCP flows under their raw keys (source, destination,
        # ports as on the wire, see _raw_keys): a consumer's fast path doing lookup()'s work
        # inline reads them from the frame in one slice. Read it only.
        self.tcp4: dict[bytes, tuple[Flow, int]] = {}
        self._count = 0
        self._next_scan = float("-inf")
        self._evicted: list[Flow] = []
        # Called when a flow is evicted or replaced: the consumer should collect it soon
        # (evicted() then returns it), lest a flood of new flows pile up waiting.
        self.on_evict: Callable[[], None] | None = None
        # Raw IPv4 keys (src, dst, sport, dport as on the wire) of bypassed flows.
        self.bypass_tcp: set[bytes] = set()
        self.bypass_udp: set[bytes] = set()
        self.created = 0
        self.expired = 0
        self.evicted_count = 0
        self.reused = 0

    def __len__(self) -> int:
        return self._count

    def lookup(self, pkt: Packet) -> tuple[Flow, int]:
        """Return the packet's flow and direction (TO_SERVER/TO_CLIENT), creating the flow.

        Also updates the flow's ``last_ts`` and per-direction counters. The returned tuple is
        the table's own (no allocation per packet).
        """
        entry = self._table.get((pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.proto))
        if entry is None or (
            pkt.tcp_flags & _SYN_ACK == TH_SYN and (entry[0].closed or entry[0].bypassed)
        ):
            entry = self._create(pkt)
        flow, direction = entry
        if not flow.bypassed:
            # A bypassed flow ages from its bypass, whatever its packets: it is looked at
            # again after BYPASS_TIMEOUT whether they reach the table (tagged, fragmented)
            # or not (the decoder's raw-key bypass).
            flow.last_ts = pkt.ts
        flow.pkts[direction] += 1
        flow.bytes[direction] += pkt.length
        return entry

    def expire(self, now: float) -> list[Flow]:
        """Remove and return the flows idle past their timeout at capture time ``now``.

        Cheap to call on every packet: the table is scanned at most every
        :data:`EXPIRE_INTERVAL` seconds.
        """
        if now < self._next_scan:
            return []
        self._next_scan = now + EXPIRE_INTERVAL
        done = [flow for flow in self._flows() if now - flow.last_ts > self._timeout(flow)]
        for flow in done:
            self._remove(flow)
        self.expired += len(done)
        return done

    def evicted(self) -> list[Flow]:
        """Flows removed since the last call because the table was full (least recently
        seen first) or because a new connection reused a closed flow's 5-tuple."""
        out = self._evicted
        if out:
            self._evicted = []
        return out

    def drain(self) -> list[Flow]:
        """Remove and return every flow, oldest first (end of input)."""
        flows = self._flows()
        self._table.clear()
        self.tcp4.clear()
        self._count = 0
        self.bypass_tcp.clear()
        self.bypass_udp.clear()
        return flows

    def bypass(self, flow: Flow) -> None:
        """Stop tracking ``flow``'s payload: the consumer decided it is of no interest.

        Its reassembly state is freed, it expires after :data:`BYPASS_TIMEOUT`, and, for
        IPv4, its raw address/port bytes go into :attr:`bypass_tcp`/:attr:`bypass_udp`, which
        :class:`~otids.capture.link.PacketDecoder` checks before decoding anything: packets
        of bypassed flows then cost a slice and a set lookup. The keys leave the sets with the
        flow, so a long-lived bypassed flow is looked at again once per timeout.
        """
        if flow.bypassed:
            return
        flow.bypassed = True
        flow.streams = None
        keys = _raw_keys(flow)
        if keys:
            target = self.bypass_tcp if flow.proto == PROTO_TCP else self.bypass_udp
            target.update(keys)

    def _timeout(self, flow: Flow) -> float:
        if flow.bypassed:
            return BYPASS_TIMEOUT
        if flow.closed:
            return self.closed_timeout
        return self.idle_timeout if flow.proto == PROTO_TCP else self.udp_timeout

    def _flows(self) -> list[Flow]:
        """Each live flow once, in creation order (its TO_SERVER entry is inserted first)."""
        return [flow for flow, direction in self._table.values() if direction == TO_SERVER]

    def _create(self, pkt: Packet) -> tuple[Flow, int]:
        key = (pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.proto)
        old = self._table.get(key)
        if old is not None:  # a closed or bypassed TCP flow whose 5-tuple a new SYN reuses
            self._remove(old[0])
            self._evicted.append(old[0])
            self.reused += 1
            if self.on_evict is not None:
                self.on_evict()
        if self._count >= self.max_flows:
            self._evict()
        if self._sender_is_client(pkt):
            flow = Flow(pkt.proto, pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.ip_version, pkt.ts)
        else:
            flow = Flow(pkt.proto, pkt.dst, pkt.dport, pkt.src, pkt.sport, pkt.ip_version, pkt.ts)
        client, server, client_port, server_port, proto = flow.key
        # A packet to itself (same address and port both ends) has one key: TO_SERVER wins.
        self._table[(server, client, server_port, client_port, proto)] = (flow, TO_CLIENT)
        self._table[flow.key] = (flow, TO_SERVER)
        if proto == PROTO_TCP:
            keys = _raw_keys(flow)
            if keys:
                self.tcp4[keys[1]] = (flow, TO_CLIENT)
                self.tcp4[keys[0]] = (flow, TO_SERVER)
        self._count += 1
        self.created += 1
        return self._table[key]

    def _sender_is_client(self, pkt: Packet) -> bool:
        """Roles: the handshake if seen, else the hinted server port, else the lower port."""
        if pkt.proto == PROTO_TCP:
            by_handshake = _SENDER_IS_CLIENT_BY_HANDSHAKE.get(pkt.tcp_flags & _SYN_ACK)
            if by_handshake is not None:
                return by_handshake
        hint = self.server_port_hint
        if hint is not None:
            dst_is_server = hint(pkt.proto, pkt.dport)
            if dst_is_server != hint(pkt.proto, pkt.sport):
                return dst_is_server
        # Servers listen on low, fixed ports; on a tie the first packet goes to the server.
        return pkt.dport <= pkt.sport

    def _evict(self) -> None:
        """Make room: remove the least recently seen flows, a batch at a time."""
        batch = max(1, self.max_flows // EVICT_DIVISOR)
        victims = sorted(self._flows(), key=_last_ts)[:batch]  # stable: ties go oldest first
        for flow in victims:
            self._remove(flow)
        self._evicted.extend(victims)
        self.evicted_count += len(victims)
        if self.on_evict is not None:
            self.on_evict()

    def _remove(self, flow: Flow) -> None:
        client, server, client_port, server_port, proto = flow.key
        self._table.pop(flow.key, None)
        self._table.pop((server, client, server_port, client_port, proto), None)
        self._count -= 1
        keys = _raw_keys(flow) if proto == PROTO_TCP or flow.bypassed else None
        if keys:
            if proto == PROTO_TCP:
                self.tcp4.pop(keys[0], None)
                self.tcp4.pop(keys[1], None)
            if flow.bypassed:
                target = self.bypass_tcp if proto == PROTO_TCP else self.bypass_udp
                target.difference_update(keys)


def _raw_keys(flow: Flow) -> tuple[bytes, bytes] | None:
    """Both orientations (client's first) of an IPv4 flow as raw header bytes: src, dst,
    sport, dport."""
    if flow.ip_version != 4:
        return None
    c = flow.client + flow.server + _PORT_PAIR.pack(flow.client_port, flow.server_port)
    s = flow.server + flow.client + _PORT_PAIR.pack(flow.server_port, flow.client_port)
    return c, s
