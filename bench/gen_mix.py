"""Fast, deterministic generator of a mixed capture for the benchmark.

Writes a classic pcap (Ethernet) of exactly ``--packets`` packets: Modbus/TCP connections
(several clients and servers on port 502, with handshakes, request/response pairs of function
codes 1, 2, 3, 4, 5, 6, 15 and 16, the clients' pure ACKs, and the occasional close and
reconnect) interleaved with at least as many background packets: TLS-like and HTTP flows,
another TCP service, DNS over UDP and ARP. With ``--dnp3``, DNP3 masters polling outstations
on TCP port 20000 take a share of the industrial connections: integrity and event polls,
unsolicited responses and their confirms, select/operate and direct operate, in link frames
with correct CRCs. Sequence and acknowledgement numbers follow the bytes sent; IP and TCP
checksums are left at zero (no reader checks them).

Speed comes from packing each packet's headers with one precompiled ``struct.Struct`` whose
constant parts (MAC addresses, IP addresses, ports) are prebuilt per flow direction, from
payloads sliced from pregenerated pools, and, for DNP3, from link frames whose constant
parts are encoded once (see :class:`Dnp3Encoder`): about a million packets in a few seconds.

Usage: python bench/gen_mix.py --packets N --out FILE [--seed S] [--dnp3]
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from otids.decode.dnp3.crc import append_crc
from otids.decode.dnp3.link import build_frame
from otids.decode.dnp3.transport import FIN_BIT, FIR_BIT, MAX_SEGMENT_DATA, SEQ_MASK

# --- pcap framing (little-endian, microsecond timestamps, Ethernet) ---
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
RECORD = struct.Struct("<IIII")  # seconds, microseconds, captured length, wire length

# One struct per packet kind. The constant middles are prebuilt bytes per flow direction:
#   head (16) = destination MAC, source MAC, EtherType 0x0800, IPv4 version/IHL 0x45, DSCP 0
#   then      | total length (2) | identification (2) |
#   mid (18)  = flags DF + fragment 0, TTL, protocol, checksum 0, source IP, destination IP,
#               source port, destination port
#   TCP rest  | seq (4) | ack (4) | data offset 5 (1) | flags (1) |
#               tail (6) = window, checksum 0, urgent pointer 0
#   UDP rest  | length (2) | checksum 0 (2) |
TCP_HEADERS = struct.Struct(">16sHH18sIIBB6s")
TCP_MBAP_HEADERS = struct.Struct(">16sHH18sIIBB6sHHHB")  # ... + MBAP: id, protocol, length, unit
UDP_HEADERS = struct.Struct(">16sHH18sHH")
IPV4_HEADER, TCP_HEADER, UDP_HEADER = 20, 20, 8  # sizes without options
MBAP_SIZE = 7
TCP_DATA_OFFSET = 0x50  # 5 words: no options
TCP_TAIL = struct.pack(">HHH", 64240, 0, 0)  # window, checksum (left 0), urgent pointer
# An ARP frame: destination MAC, source MAC, EtherType 0x0806, hardware type 1, protocol
# type 0x0800, sizes 6 and 4, operation, sender MAC and IP, target MAC and IP; 42 bytes,
# padded with zeros to the 60-byte Ethernet minimum.
ARP = struct.Struct(">6s6sHHHBBH6s4s6s4s18x")
BROADCAST, ZERO_MAC = b"\xff" * 6, b"\0" * 6

SYN, PSH_ACK, ACK, SYN_ACK, FIN_ACK = 0x02, 0x18, 0x10, 0x12, 0x11
IP_DONT_FRAGMENT = 0x4000  # flags + fragment offset 0, as Linux sends TCP and UDP
TTL = 64
MODBUS_PORT = 502
MSS = 1448  # payload bytes per full segment (1500 MTU, TCP timestamps assumed)

# Share of scheduling turns given to industrial (Modbus, DNP3) connections; such a turn emits
# fewer packets than a background one, so this leaves background packets slightly in the
# majority.
ICS_TURN_SHARE = 0.65
MODBUS_CONNECTIONS = 8  # client/server pairs on 502 open at any time
BACKGROUND_FLOWS = 24  # background flows open at any time
TRANSACTIONS_PER_CONNECTION = (2_000, 20_000)  # before a client closes and reconnects
# Gaps between packets (microseconds), cycled: 625 us on average, about 1,600 packets/s, a
# busy OT network. At that rate the 200k-packet mix spans 125 s, longer than the flow idle
# timeouts of a typical IDS (otids: 120 s for UDP, 30 s after a close), so both benchmark
# mixes reach the steady state of the flow table and a memory comparison between them
# measures growth with the capture, not the warm-up.
TIME_STEPS_US = (30, 90, 170, 400, 650, 1200, 2500, 110, 300, 800)

POOL_SIZE = 1 << 16  # pregenerated random bytes; a payload slice is at most MSS bytes


class Full(Exception):
    """The requested number of packets has been written."""


class Writer:
    """Accumulates pcap records and writes them out in large chunks."""

    CHUNK = 8192  # records per write

    def __init__(self, out: BinaryIO, limit: int, start_us: int) -> None:
        self.out = out
        self.limit = limit
        self.count = 0
        self.modbus_adus = 0  # packets carrying Modbus ADUs
        self.modbus_packets = 0  # every packet of a Modbus connection (ACKs, handshakes too)
        self.dnp3_messages = 0  # packets carrying DNP3 link frames
        self.dnp3_packets = 0  # every packet of a DNP3 connection
        self._parts: list[bytes] = []
        self._time_us = start_us
        self._step = 0
        self._ip_id = 0

    def record(self, frame: bytes) -> None:
        """Append one frame with the next timestamp."""
        if self.count >= self.limit:
            raise Full
        self._step = (self._step + 1) % len(TIME_STEPS_US)
        self._time_us += TIME_STEPS_US[self._step]
        seconds, micros = divmod(self._time_us, 1_000_000)
        size = len(frame)
        self._parts.append(RECORD.pack(seconds, micros, size, size))
        self._parts.append(frame)
        self.count += 1
        if len(self._parts) >= 2 * self.CHUNK:
            self.flush()

    def tcp(self, way: Way, seq: int, ack: int, flags: int, payload: bytes = b"") -> None:
        """One TCP segment along ``way``."""
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        headers = TCP_HEADERS.pack(
            way.head,
            IPV4_HEADER + TCP_HEADER + len(payload),
            self._ip_id,
            way.mid,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            TCP_DATA_OFFSET,
            flags,
            TCP_TAIL,
        )
        self.record(headers + payload if payload else headers)

    def modbus(self, way: Way, seq: int, ack: int, tid: int, unit: int, pdu: bytes) -> None:
        """One TCP segment carrying one Modbus ADU (MBAP header + ``pdu``)."""
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        headers = TCP_MBAP_HEADERS.pack(
            way.head,
            IPV4_HEADER + TCP_HEADER + MBAP_SIZE + len(pdu),
            self._ip_id,
            way.mid,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            TCP_DATA_OFFSET,
            PSH_ACK,
            TCP_TAIL,
            tid,
            0,
            1 + len(pdu),
            unit,
        )
        self.record(headers + pdu)
        self.modbus_adus += 1

    def udp(self, way: Way, payload: bytes) -> None:
        """One UDP datagram along ``way``."""
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        size = UDP_HEADER + len(payload)
        headers = UDP_HEADERS.pack(way.head, IPV4_HEADER + size, self._ip_id, way.mid, size, 0)
        self.record(headers + payload)

    def flush(self) -> None:
        """Write what is buffered."""
        self.out.write(b"".join(self._parts))
        self._parts.clear()


@dataclass(frozen=True, slots=True)
class Way:
    """The constant header bytes of one direction of a flow (see the struct layouts above)."""

    head: bytes
    mid: bytes


def mac(host: bytes) -> bytes:
    """A locally administered MAC derived from an IPv4 address."""
    return b"\x02\x00" + host


def way(src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> Way:
    """Prebuild the constant bytes for packets from ``src:sport`` to ``dst:dport``."""
    head = mac(dst) + mac(src) + b"\x08\x00\x45\x00"
    mid = struct.pack(">HBBH4s4sHH", IP_DONT_FRAGMENT, TTL, proto, 0, src, dst, sport, dport)
    return Way(head, mid)


def ip(text: str) -> bytes:
    """Four address bytes from dotted-quad text."""
    return bytes(int(part) for part in text.split("."))


# Documentation address blocks (RFC 5737): Modbus clients (HMIs, SCADA) in 192.0.2.0/24,
# PLCs in 198.51.100.0/24, background servers in 203.0.113.0/24.
MODBUS_CLIENTS = [ip(f"192.0.2.{n}") for n in (10, 11, 12, 13)]
MODBUS_SERVERS = [ip(f"198.51.100.{n}") for n in (20, 21, 22)]
OFFICE_HOSTS = [ip(f"192.0.2.{n}") for n in range(100, 140)]
INTERNET_SERVERS = [ip(f"203.0.113.{n}") for n in range(1, 60)]
DNS_SERVER = ip("192.0.2.53")


class Pools:
    """Pregenerated bytes that payloads are sliced from."""

    def __init__(self, rng: random.Random) -> None:
        self.random = rng.randbytes(POOL_SIZE)  # ciphertext-like
        self.offset = 0

    def take(self, size: int) -> bytes:
        """``size`` pseudo-random bytes (a slice at a moving offset)."""
        start = self.offset
        self.offset = (start + 977) % (POOL_SIZE - MSS - 16)
        return self.random[start : start + size]


# --- Modbus connections ---


@dataclass(frozen=True, slots=True)
class Poll:
    """One request of an HMI's cycle; its response is ``reply`` + ``data`` fresh bytes."""

    request: bytes  # the request PDU
    reply: bytes  # the fixed start of the response PDU (the whole echo for a write)
    data: int  # bytes of values that follow (register or coil values of a read)


def make_polls(rng: random.Random, pools: Pools) -> list[Poll]:
    """The request cycle of one HMI: mostly reads, a few writes, realistic quantities."""
    polls: list[Poll] = []
    for _ in range(rng.randint(4, 7)):
        function = rng.choice((1, 2, 3, 3, 3, 4, 4))
        address = rng.randrange(0, 10_000, 10)
        if function in (1, 2):
            quantity = rng.choice((8, 16, 32, 64, 100, 256))
            size = (quantity + 7) // 8
        else:
            quantity = rng.choice((1, 2, 10, 20, 50, 100, 125))
            size = 2 * quantity
        request = struct.pack(">BHH", function, address, quantity)
        polls.append(Poll(request, bytes([function, size]), size))
    for _ in range(rng.randint(1, 3)):
        function = rng.choice((5, 6, 15, 16))
        address = rng.randrange(0, 1000)
        if function == 5:
            echo = struct.pack(">BHH", 5, address, rng.choice((0xFF00, 0x0000)))
            polls.append(Poll(echo, echo, 0))
        elif function == 6:
            echo = struct.pack(">BHH", 6, address, rng.randrange(0x10000))
            polls.append(Poll(echo, echo, 0))
        else:
            quantity = rng.randint(1, 16) if function == 16 else rng.randint(1, 64)
            size = 2 * quantity if function == 16 else (quantity + 7) // 8
            head = struct.pack(">BHHB", function, address, quantity, size)
            reply = struct.pack(">BHH", function, address, quantity)
            polls.append(Poll(head + pools.take(size), reply, 0))
    return polls


def modbus_connection(w: Writer, rng: random.Random, pools: Pools, port: int) -> Iterator[None]:
    """An HMI polling a PLC on one TCP connection; yields between bursts of packets."""
    client, server = rng.choice(MODBUS_CLIENTS), rng.choice(MODBUS_SERVERS)
    up = way(client, server, 6, port, MODBUS_PORT)
    down = way(server, client, 6, MODBUS_PORT, port)
    polls = make_polls(rng, pools)
    unit = rng.choice((1, 1, 1, 2, 17, 255))
    cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
    count = w.count
    w.tcp(up, cseq, 0, SYN)
    w.tcp(down, sseq, cseq + 1, SYN_ACK)
    cseq, sseq = cseq + 1, sseq + 1
    w.tcp(up, cseq, sseq, ACK)
    w.modbus_packets += w.count - count
    yield
    tid = rng.randrange(0x10000)
    for n in range(rng.randint(*TRANSACTIONS_PER_CONNECTION)):
        poll = polls[n % len(polls)]
        w.modbus(up, cseq, sseq, tid, unit, poll.request)
        cseq += MBAP_SIZE + len(poll.request)
        w.modbus_packets += 1
        yield
        reply = poll.reply + pools.take(poll.data) if poll.data else poll.reply
        w.modbus(down, sseq, cseq, tid, unit, reply)
        sseq += MBAP_SIZE + len(reply)
        w.modbus_packets += 1
        if n & 1:  # the client's delayed ACK, when no request follows soon enough
            w.tcp(up, cseq, sseq, ACK)
            w.modbus_packets += 1
        yield
        tid = (tid + 1) & 0xFFFF
    count = w.count
    w.tcp(up, cseq, sseq, FIN_ACK)
    w.tcp(down, sseq, cseq + 1, FIN_ACK)
    w.tcp(up, cseq + 1, sseq + 1, ACK)
    w.modbus_packets += w.count - count


# --- background flows ---


def handshake(w: Writer, up: Way, down: Way, rng: random.Random) -> tuple[int, int]:
    """SYN, SYN/ACK, ACK; the next sequence numbers of client and server."""
    cseq, sseq = rng.getrandbits(32), rng.getrandbits(32)
    w.tcp(up, cseq, 0, SYN)
    w.tcp(down, sseq, cseq + 1, SYN_ACK)
    w.tcp(up, cseq + 1, sseq + 1, ACK)
    return cseq + 1, sseq + 1


def send_bulk(w: Writer, out: Way, back: Way, seq: int, ack: int, data: bytes) -> int:
    """``data`` in full segments, the receiver ACKing every second one; the next seq."""
    for n, start in enumerate(range(0, len(data), MSS)):
        segment = data[start : start + MSS]
        w.tcp(out, seq, ack, PSH_ACK if start + MSS >= len(data) else ACK, segment)
        seq += len(segment)
        if n & 1:
            w.tcp(back, ack, seq, ACK)
    return seq


def close(w: Writer, up: Way, down: Way, cseq: int, sseq: int) -> None:
    """FIN/ACK both ways, final ACK."""
    w.tcp(up, cseq, sseq, FIN_ACK)
    w.tcp(down, sseq, cseq + 1, FIN_ACK)
    w.tcp(up, cseq + 1, sseq + 1, ACK)


def tls_records(pools: Pools, size: int) -> bytes:
    """TLS 1.2/1.3 application-data records totalling about ``size`` bytes."""
    records = []
    while size > 0:
        body = min(size, MSS - 5)
        records.append(struct.pack(">BHH", 0x17, 0x0303, body) + pools.take(body))
        size -= body + 5
    return b"".join(records)


def tls_flow(w: Writer, rng: random.Random, pools: Pools, port: int) -> Iterator[None]:
    """An HTTPS-like session: a few encrypted requests, each answered with some kilobytes."""
    client, server = rng.choice(OFFICE_HOSTS), rng.choice(INTERNET_SERVERS)
    up, down = way(client, server, 6, port, 443), way(server, client, 6, 443, port)
    cseq, sseq = handshake(w, up, down, rng)
    yield
    for _ in range(rng.randint(1, 6)):
        request = tls_records(pools, rng.randint(80, 700))
        w.tcp(up, cseq, sseq, PSH_ACK, request)
        cseq += len(request)
        yield
        sseq = send_bulk(w, down, up, sseq, cseq, tls_records(pools, rng.randint(100, 12_000)))
        yield
    close(w, up, down, cseq, sseq)


HTTP_PATHS = ("/", "/index.html", "/api/v1/status", "/static/app.js", "/img/logo.png")


def http_flow(w: Writer, rng: random.Random, pools: Pools, port: int) -> Iterator[None]:
    """A plain HTTP/1.1 keep-alive session with bodies of exact Content-Length."""
    client, server = rng.choice(OFFICE_HOSTS), rng.choice(INTERNET_SERVERS)
    dport = rng.choice((80, 80, 8080))
    up, down = way(client, server, 6, port, dport), way(server, client, 6, dport, port)
    cseq, sseq = handshake(w, up, down, rng)
    yield
    for _ in range(rng.randint(1, 4)):
        path = rng.choice(HTTP_PATHS)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0\r\n"
            "Accept: */*\r\nConnection: keep-alive\r\n\r\n"
        ).encode()
        w.tcp(up, cseq, sseq, PSH_ACK, request)
        cseq += len(request)
        yield
        body = pools.take(rng.randint(200, MSS)) * rng.randint(1, 4)
        head = (
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sseq = send_bulk(w, down, up, sseq, cseq, head + body)
        yield
    close(w, up, down, cseq, sseq)


APP_MESSAGE = struct.Struct(">4sH")  # magic, length of what follows


def app_message(pools: Pools, size: int) -> bytes:
    """One message of the made-up protocol of :func:`chatty_flow`."""
    return APP_MESSAGE.pack(b"APP1", size) + pools.take(size)


def chatty_flow(w: Writer, rng: random.Random, pools: Pools, port: int) -> Iterator[None]:
    """An interactive TCP service on a port with no dissector: small packets both ways.

    Each message is framed as ``APP1`` + length + ciphertext-like bytes: the fixed start
    keeps Wireshark's heuristic dissectors (Thrift, ...) from claiming random payloads.
    """
    client, server = rng.choice(OFFICE_HOSTS), rng.choice(INTERNET_SERVERS)
    dport = rng.choice((40404, 45678, 47001))
    up, down = way(client, server, 6, port, dport), way(server, client, 6, dport, port)
    cseq, sseq = handshake(w, up, down, rng)
    yield
    for n in range(rng.randint(5, 60)):
        data = app_message(pools, rng.randint(20, 300))
        w.tcp(up, cseq, sseq, PSH_ACK, data)
        cseq += len(data)
        reply = app_message(pools, rng.randint(20, 600))
        w.tcp(down, sseq, cseq, PSH_ACK, reply)
        sseq += len(reply)
        if n & 1:
            w.tcp(up, cseq, sseq, ACK)
        yield
    close(w, up, down, cseq, sseq)


DNS_NAMES = ("www.example.com", "update.example.net", "time.example.org", "mail.example.com")


def dns_name(name: str) -> bytes:
    """A name in DNS wire format (length-prefixed labels)."""
    return b"".join(bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0"


def dns_flow(w: Writer, rng: random.Random, pools: Pools, port: int) -> Iterator[None]:
    """A few A queries from one host to the resolver, each answered with one address."""
    client = rng.choice(OFFICE_HOSTS)
    up, down = way(client, DNS_SERVER, 17, port, 53), way(DNS_SERVER, client, 17, 53, port)
    for _ in range(rng.randint(1, 4)):
        ident = rng.randrange(0x10000)
        question = dns_name(rng.choice(DNS_NAMES)) + struct.pack(">HH", 1, 1)  # A, IN
        w.udp(up, struct.pack(">HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question)
        answer = struct.pack(">HHHIH4s", 0xC00C, 1, 1, 300, 4, rng.choice(INTERNET_SERVERS))
        w.udp(down, struct.pack(">HHHHHH", ident, 0x8180, 1, 1, 0, 0) + question + answer)
        yield


def arp_frame(operation: int, sender: bytes, target: bytes, to: bytes, target_mac: bytes) -> bytes:
    """An ARP frame from ``sender`` (MAC derived from the address) to the MAC ``to``."""
    hw = mac(sender)
    return ARP.pack(to, hw, 0x0806, 1, 0x0800, 6, 4, operation, hw, sender, target_mac, target)


def arp_flow(w: Writer, rng: random.Random, pools: Pools, port: int) -> Iterator[None]:
    """An ARP request (broadcast) and its reply."""
    asker, target = rng.choice(OFFICE_HOSTS), rng.choice(MODBUS_CLIENTS + OFFICE_HOSTS)
    w.record(arp_frame(1, asker, target, BROADCAST, ZERO_MAC))
    yield
    w.record(arp_frame(2, target, asker, mac(asker), mac(asker)))


# --- DNP3 connections ---

DNP3_PORT = 20000
# Share of the industrial connections that are DNP3 when --dnp3 is given (the rest Modbus).
DNP3_CONNECTIONS = 4
DNP3_MASTERS = [ip(f"192.0.2.{n}") for n in (30, 31)]  # SCADA front ends
DNP3_OUTSTATIONS = [ip(f"198.51.100.{n}") for n in (40, 41, 42, 43, 44)]  # RTUs
INTEGRITY_EVERY = 60  # event polls between two integrity polls
UNSOLICITED_CHANCE = 0.05  # per poll: the outstation reports events unsolicited first
CONTROL_CHANCE = 0.02  # per poll: the operator operates a point
EVENT_CHANCE = 0.4  # per event poll: the response carries events (else it is empty)
MASTER_CONTROL, OUTSTATION_CONTROL = 0xC4, 0x44  # link: DIR, PRM, unconfirmed user data
BLOCK = 16  # user data octets per link CRC block

_EVENT_CLASSES = bytes([60, 2, 0x06, 60, 3, 0x06, 60, 4, 0x06])  # g60v2-4, all points
_ALL_CLASSES = _EVENT_CLASSES + bytes([60, 1, 0x06])  # and g60v1, class 0


class Dnp3Encoder:
    """Link frames for application fragments, most of their bytes encoded once.

    A fragment's bytes are a short application header (control with the sequence number,
    function, and IIN for a response) then an object ``body`` from a fixed set. In each
    frame only the first 16-octet block holds octets that change between sendings (the
    transport header, and the application header in the first frame): the link header and
    the other blocks, with their CRCs, are cached per (addresses, body, header length) and
    only that first block's CRC is computed per message.
    """

    def __init__(self) -> None:
        # (control, destination, source, body, header length) -> per frame: the link header
        # (with CRC), the start of the first block after the transport header (None for
        # the first frame, whose start is the application header and the body's first
        # octets), and the rest of the frame with its CRCs.
        self._frames: dict[tuple[int, int, int, bytes, int], list[tuple[bytes, bytes, bytes]]]
        self._frames = {}

    def encode(
        self, control: int, dst: int, src: int, head: bytes, body: bytes, tseq: int
    ) -> tuple[bytes, int]:
        """The frames of fragment ``head + body`` from transport sequence ``tseq``; the
        next transport sequence number."""
        key = (control, dst, src, body, len(head))
        plan = self._frames.get(key)
        if plan is None:
            plan = self._frames[key] = self._plan(key)
        parts = []
        first = head + body[: BLOCK - 1 - len(head)]
        last = len(plan) - 1
        for n, (link, start, rest) in enumerate(plan):
            th = (
                ((tseq + n) & SEQ_MASK) | (FIR_BIT if n == 0 else 0) | (FIN_BIT if n == last else 0)
            )
            parts.append(link)
            parts.append(append_crc(bytes((th,)) + (first if n == 0 else start)))
            parts.append(rest)
        return b"".join(parts), (tseq + len(plan)) & SEQ_MASK

    @staticmethod
    def _plan(key: tuple[int, int, int, bytes, int]) -> list[tuple[bytes, bytes, bytes]]:
        control, dst, src, body, head_size = key
        fragment = bytes(head_size) + body  # the header's octets only matter in block one
        plan = []
        for offset in range(0, len(fragment), MAX_SEGMENT_DATA):
            segment = bytes(1) + fragment[offset : offset + MAX_SEGMENT_DATA]
            frame = build_frame(control, dst, src, segment)
            first_block_end = 10 + min(BLOCK, len(segment)) + 2
            plan.append((frame[:10], segment[1:BLOCK], frame[first_block_end:]))
        return plan


def _points(fmt: str, values: list[tuple[int, ...]]) -> bytes:
    return b"".join(struct.pack(fmt, *v) for v in values)


def dnp3_bodies(rng: random.Random) -> tuple[bytes, list[bytes], list[bytes]]:
    """One outstation's responses: integrity data, event bodies, control echo bodies."""
    binaries = rng.choice((8, 16, 32, 64))
    analogs = rng.choice((8, 16, 40, 60))  # 60 analogs: a response of two frames and more
    counters = rng.choice((4, 8))
    static = (
        bytes([1, 2, 0x00, 0, binaries - 1])  # g1v2 binary inputs with flags, 0..n-1
        + bytes(0x81 if rng.random() < 0.5 else 0x01 for _ in range(binaries))
        + bytes([30, 1, 0x01])  # g30v1 32-bit analog inputs, 2-octet start and stop
        + struct.pack("<HH", 0, analogs - 1)
        + _points("<Bi", [(0x01, rng.randrange(-5000, 50000)) for _ in range(analogs)])
        + bytes([20, 1, 0x00, 0, counters - 1])  # g20v1 32-bit counters
        + _points("<BI", [(0x01, rng.randrange(1 << 20)) for _ in range(counters)])
    )
    now = 1_767_225_600_000  # ms: the events' times
    events = [
        # g2v2 binary input events with time, 2-octet index prefix and count
        bytes([2, 2, 0x28])
        + struct.pack("<H", 2)
        + _points("<HBIH", [(i, 0x81, now & 0xFFFFFFFF, now >> 32) for i in (1, 5)]),
        # g32v1 analog input events without time
        bytes([32, 1, 0x28])
        + struct.pack("<H", 3)
        + _points("<HBi", [(i, 0x01, rng.randrange(50000)) for i in (0, 2, 7)]),
        # g22v1 counter events without time
        bytes([22, 1, 0x28]) + struct.pack("<H", 1) + _points("<HBI", [(0, 0x01, 4242)]),
    ]
    controls = [
        # g12v1 control relay output block: index 0, latch on, count 1, 100 ms, 100 ms
        bytes([12, 1, 0x28, 1, 0]) + struct.pack("<HBBIIB", 0, 0x03, 1, 100, 100, 0),
        # g41v2 analog output 16-bit: index 1, value 1250
        bytes([41, 2, 0x28, 1, 0]) + struct.pack("<HhB", 1, 1250, 0),
    ]
    return static, events, controls


def dnp3_connection(
    w: Writer, rng: random.Random, port: int, encoder: Dnp3Encoder
) -> Iterator[None]:
    """A DNP3 master polling an outstation on one TCP connection; yields between bursts."""
    master, outstation = rng.choice(DNP3_MASTERS), rng.choice(DNP3_OUTSTATIONS)
    master_addr, outstation_addr = 1 + DNP3_MASTERS.index(master), outstation[3]
    up = way(master, outstation, 6, port, DNP3_PORT)
    down = way(outstation, master, 6, DNP3_PORT, port)
    static, events, controls = dnp3_bodies(rng)
    count = w.count
    cseq, sseq = handshake(w, up, down, rng)
    w.dnp3_packets += w.count - count
    yield
    app, unsolicited = rng.randrange(16), 0  # application sequence numbers
    # Transport sequence numbers, master's and outstation's. Random starts: Wireshark keys
    # its DNP3 reassembly by link addresses and sequence number whatever the connection, and
    # mixes up a reconnection's first fragments with the previous connection's if both
    # started at 0.
    tseq = [rng.randrange(64), rng.randrange(64)]

    def send(toward_outstation: bool, head: bytes, body: bytes) -> None:
        nonlocal cseq, sseq
        if toward_outstation:
            data, tseq[0] = encoder.encode(
                MASTER_CONTROL, outstation_addr, master_addr, head, body, tseq[0]
            )
            w.tcp(up, cseq, sseq, PSH_ACK, data)
            cseq += len(data)
        else:
            data, tseq[1] = encoder.encode(
                OUTSTATION_CONTROL, master_addr, outstation_addr, head, body, tseq[1]
            )
            w.tcp(down, sseq, cseq, PSH_ACK, data)
            sseq += len(data)
        w.dnp3_messages += 1
        w.dnp3_packets += 1

    def exchange(function: int, request: bytes, response: bytes) -> Iterator[None]:
        nonlocal app
        send(True, bytes((0xC0 | app, function)), request)
        yield
        send(False, bytes((0xC0 | app, 0x81, 0, 0)), response)
        if rng.random() < 0.5:  # the master's delayed ACK, when no request follows soon
            w.tcp(up, cseq, sseq, ACK)
            w.dnp3_packets += 1
        app = (app + 1) & 0x0F
        yield

    for n in range(rng.randint(*TRANSACTIONS_PER_CONNECTION)):
        if rng.random() < UNSOLICITED_CHANCE:  # events reported unsolicited, confirmed
            send(False, bytes((0xF0 | unsolicited, 0x82, 0, 0)), rng.choice(events))
            send(True, bytes((0xD0 | unsolicited, 0x00)), b"")
            unsolicited = (unsolicited + 1) & 0x0F
            yield
        if rng.random() < CONTROL_CHANCE:  # select then operate, or direct operate
            command = rng.choice(controls)
            functions = (3, 4) if rng.random() < 0.5 else (5,)
            for function in functions:
                yield from exchange(function, command, command)
        if n % INTEGRITY_EVERY == 0:
            yield from exchange(1, _ALL_CLASSES, static)
        else:
            body = rng.choice(events) if rng.random() < EVENT_CHANCE else b""
            yield from exchange(1, _EVENT_CLASSES, body)
    count = w.count
    close(w, up, down, cseq, sseq)
    w.dnp3_packets += w.count - count


Flow = Callable[[Writer, random.Random, Pools, int], Iterator[None]]
BACKGROUND_KINDS: tuple[Flow, ...] = (
    tls_flow,
    tls_flow,
    tls_flow,
    http_flow,
    http_flow,
    chatty_flow,
    dns_flow,
    dns_flow,
    arp_flow,
)


@dataclass
class Stats:
    """What a generation produced."""

    packets: int
    modbus_adus: int
    modbus_packets: int
    seconds: float
    dnp3_messages: int = 0  # packets carrying DNP3 link frames
    dnp3_packets: int = 0  # packets of DNP3 connections


def generate(packets: int, out: Path, seed: int = 1, dnp3: bool = False) -> Stats:
    """Write a mixed capture of exactly ``packets`` packets to ``out`` (with DNP3
    connections among the industrial ones when ``dnp3``)."""
    rng = random.Random(seed)
    pools = Pools(rng)
    encoder = Dnp3Encoder()
    started = time.perf_counter()
    ports = iter(range(10_000_000))  # ephemeral ports, cycled through 32768..60999

    def next_port() -> int:
        return 32768 + next(ports) % 28232

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        handle.write(PCAP_HEADER)
        w = Writer(handle, packets, start_us=1_767_225_600_000_000)

        def industrial(kind: int) -> Iterator[None]:
            if kind < MODBUS_CONNECTIONS:
                return modbus_connection(w, rng, pools, next_port())
            return dnp3_connection(w, rng, next_port(), encoder)

        # Industrial connections by slot: the Modbus ones, then the DNP3 ones.
        slots = MODBUS_CONNECTIONS + (DNP3_CONNECTIONS if dnp3 else 0)
        ics = [industrial(kind) for kind in range(slots)]
        background = [
            rng.choice(BACKGROUND_KINDS)(w, rng, pools, next_port())
            for _ in range(BACKGROUND_FLOWS)
        ]
        try:
            while True:  # ends with Full once ``packets`` are written
                if rng.random() < ICS_TURN_SHARE:
                    index = rng.randrange(slots)
                    try:
                        next(ics[index])
                    except StopIteration:  # replaced by a new connection of the same kind
                        ics[index] = industrial(index)
                else:
                    index = rng.randrange(BACKGROUND_FLOWS)
                    try:
                        next(background[index])
                    except StopIteration:  # replaced by a new background flow
                        background[index] = rng.choice(BACKGROUND_KINDS)(w, rng, pools, next_port())
        except Full:
            pass
        w.flush()
    seconds = time.perf_counter() - started
    return Stats(w.count, w.modbus_adus, w.modbus_packets, seconds, w.dnp3_messages, w.dnp3_packets)


def main() -> None:
    """Parse the options and generate."""
    parser = argparse.ArgumentParser(description="Generate the benchmark's mixed capture.")
    parser.add_argument("--packets", type=int, required=True, help="number of packets")
    parser.add_argument("--out", type=Path, required=True, help="pcap file to write")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--dnp3", action="store_true", help="make DNP3 connections part of the industrial ones"
    )
    args = parser.parse_args()
    if args.packets <= 0:
        sys.exit("gen_mix: --packets must be positive")
    stats = generate(args.packets, args.out, args.seed, args.dnp3)
    industrial = stats.modbus_packets + stats.dnp3_packets
    dnp3 = (
        f"{stats.dnp3_messages} carrying DNP3, {stats.dnp3_packets} packets of DNP3 connections, "
        if args.dnp3
        else ""
    )
    print(
        f"{args.out}: {stats.packets} packets ({stats.modbus_adus} Modbus ADUs, "
        f"{stats.modbus_packets} packets of Modbus connections, {dnp3}"
        f"{stats.packets - industrial} background) in {stats.seconds:.2f} s "
        f"({stats.packets / stats.seconds:,.0f} packets/s)"
    )


if __name__ == "__main__":
    main()
