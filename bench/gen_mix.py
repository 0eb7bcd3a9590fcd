"""Fast, deterministic generator of a mixed capture for the benchmark.

Writes a classic pcap (Ethernet) of exactly ``--packets`` packets: Modbus/TCP connections
(several clients and servers on port 502, with handshakes, request/response pairs of function
codes 1, 2, 3, 4, 5, 6, 15 and 16, the clients' pure ACKs, and the occasional close and
reconnect) interleaved with at least as many background packets: TLS-like and HTTP flows,
another TCP service, DNS over UDP and ARP. Sequence and acknowledgement numbers follow the
bytes sent; IP and TCP checksums are left at zero (no reader checks them).

Speed comes from packing each packet's headers with one precompiled ``struct.Struct`` whose
constant parts (MAC addresses, IP addresses, ports) are prebuilt per flow direction, and from
payloads sliced from pregenerated pools: about a million packets in a few seconds.

Usage: python bench/gen_mix.py --packets N --out FILE [--seed S]
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

# Share of scheduling turns given to Modbus connections; a Modbus turn emits fewer packets
# than a background one, so this leaves background packets slightly in the majority.
MODBUS_TURN_SHARE = 0.65
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


def generate(packets: int, out: Path, seed: int = 1) -> Stats:
    """Write a mixed capture of exactly ``packets`` packets to ``out``."""
    rng = random.Random(seed)
    pools = Pools(rng)
    started = time.perf_counter()
    ports = iter(range(10_000_000))  # ephemeral ports, cycled through 32768..60999

    def next_port() -> int:
        return 32768 + next(ports) % 28232

    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as handle:
        handle.write(PCAP_HEADER)
        w = Writer(handle, packets, start_us=1_767_225_600_000_000)
        modbus = [modbus_connection(w, rng, pools, next_port()) for _ in range(MODBUS_CONNECTIONS)]
        background = [
            rng.choice(BACKGROUND_KINDS)(w, rng, pools, next_port())
            for _ in range(BACKGROUND_FLOWS)
        ]
        try:
            while True:  # ends with Full once ``packets`` are written
                if rng.random() < MODBUS_TURN_SHARE:
                    flows, index = modbus, rng.randrange(MODBUS_CONNECTIONS)
                else:
                    flows, index = background, rng.randrange(BACKGROUND_FLOWS)
                try:
                    next(flows[index])
                except StopIteration:  # replaced by a new flow of the same family
                    make = modbus_connection if flows is modbus else rng.choice(BACKGROUND_KINDS)
                    flows[index] = make(w, rng, pools, next_port())
        except Full:
            pass
        w.flush()
    return Stats(w.count, w.modbus_adus, w.modbus_packets, time.perf_counter() - started)


def main() -> None:
    """Parse the options and generate."""
    parser = argparse.ArgumentParser(description="Generate the benchmark's mixed capture.")
    parser.add_argument("--packets", type=int, required=True, help="number of packets")
    parser.add_argument("--out", type=Path, required=True, help="pcap file to write")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    parser.add_argument(
        "--dnp3", action="store_true", help="also generate DNP3 traffic (reserved: not yet)"
    )
    args = parser.parse_args()
    if args.dnp3:
        sys.exit("gen_mix: --dnp3 is reserved for the DNP3 dissector and not implemented yet")
    if args.packets <= 0:
        sys.exit("gen_mix: --packets must be positive")
    stats = generate(args.packets, args.out, args.seed)
    print(
        f"{args.out}: {stats.packets} packets ({stats.modbus_adus} Modbus ADUs, "
        f"{stats.modbus_packets} packets of Modbus connections, "
        f"{stats.packets - stats.modbus_packets} background) in {stats.seconds:.2f} s "
        f"({stats.packets / stats.seconds:,.0f} packets/s)"
    )


if __name__ == "__main__":
    main()
