"""The decoded packet handed from the link/IP decoder to the flow table."""

from __future__ import annotations

import ipaddress

PROTO_TCP = 6
PROTO_UDP = 17

# TCP flag bits (RFC 9293, section 3.1).
TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20


class Packet:
    """One IP packet carrying TCP or UDP, after link, IP and transport decoding.

    Addresses are kept as raw bytes (4 for IPv4, 16 for IPv6) because formatting them costs
    more than the rest of the fast path; use :func:`addr_str` when a string is needed.
    """

    __slots__ = (
        "ack",
        "dport",
        "dst",
        "ip_version",
        "length",
        "payload",
        "proto",
        "seq",
        "sport",
        "src",
        "tcp_flags",
        "ts",
        "vlan",
    )

    def __init__(
        self,
        ts: float,
        ip_version: int,
        src: bytes,
        dst: bytes,
        proto: int,
        sport: int,
        dport: int,
        payload: bytes,
        length: int,
        tcp_flags: int = 0,
        seq: int = 0,
        ack: int = 0,
        vlan: tuple[int, ...] = (),
    ) -> None:
        self.ts = ts
        self.ip_version = ip_version
        self.src = src
        self.dst = dst
        self.proto = proto
        self.sport = sport
        self.dport = dport
        self.payload = payload
        self.length = length  # bytes on the wire (captured frame length)
        self.tcp_flags = tcp_flags
        self.seq = seq
        self.ack = ack
        self.vlan = vlan

    def __repr__(self) -> str:
        return (
            f"Packet({addr_str(self.src)}:{self.sport} -> {addr_str(self.dst)}:{self.dport} "
            f"proto={self.proto} flags={self.tcp_flags:#x} seq={self.seq} len={len(self.payload)})"
        )


def addr_str(addr: bytes) -> str:
    """Format a raw 4- or 16-byte address the usual way (dotted quad or RFC 5952)."""
    return str(ipaddress.ip_address(addr))
