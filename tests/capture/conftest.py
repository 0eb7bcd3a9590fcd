"""Builders for capture files (pcap, pcapng) and frames (link, IP, TCP/UDP) used in tests.

Everything is written with ``struct`` so each test states exactly the bytes it feeds the
readers and the decoder; checksums are left at zero because nothing in otids verifies them.
"""

from __future__ import annotations

import struct

# -- pcap ----------------------------------------------------------------------------------

PCAP_US_MAGIC = 0xA1B2C3D4
PCAP_NS_MAGIC = 0xA1B23C4D


def pcap_header(
    linktype: int = 1, order: str = "<", nanosecond: bool = False, snaplen: int = 65535
) -> bytes:
    """The 24-byte pcap global header."""
    magic = PCAP_NS_MAGIC if nanosecond else PCAP_US_MAGIC
    return struct.pack(
        order + "IHHiIII",
        magic,
        2,  # version major
        4,  # version minor
        0,  # thiszone
        0,  # sigfigs
        snaplen,
        linktype,
    )


def pcap_record(
    sec: int, frac: int, frame: bytes, order: str = "<", wirelen: int | None = None
) -> bytes:
    """One pcap record: header (seconds, fraction, captured, wire length) and frame."""
    wire = len(frame) if wirelen is None else wirelen
    return struct.pack(order + "IIII", sec, frac, len(frame), wire) + frame


def pcap_file(
    records: list[tuple[int, int, bytes]],
    linktype: int = 1,
    order: str = "<",
    nanosecond: bool = False,
    snaplen: int = 65535,
) -> bytes:
    """A whole pcap file from ``(seconds, fraction, frame)`` records."""
    return pcap_header(linktype, order, nanosecond, snaplen) + b"".join(
        pcap_record(sec, frac, frame, order) for sec, frac, frame in records
    )


# -- pcapng --------------------------------------------------------------------------------

BYTE_ORDER_MAGIC = 0x1A2B3C4D


def pad4(data: bytes) -> bytes:
    """``data`` zero-padded to a multiple of 4 bytes."""
    return data + b"\x00" * (-len(data) % 4)


def ng_block(btype: int, body: bytes, order: str = "<") -> bytes:
    """A pcapng block: type, total length, padded body, total length."""
    body = pad4(body)
    total = 12 + len(body)
    return struct.pack(order + "II", btype, total) + body + struct.pack(order + "I", total)


def ng_option(code: int, value: bytes, order: str = "<") -> bytes:
    """One option: code, length, padded value."""
    return struct.pack(order + "HH", code, len(value)) + pad4(value)


def ng_end_of_options(order: str = "<") -> bytes:
    return struct.pack(order + "HH", 0, 0)


def ng_shb(order: str = "<", major: int = 1) -> bytes:
    """Section Header Block with an unknown section length (-1)."""
    body = struct.pack(order + "IHHq", BYTE_ORDER_MAGIC, major, 0, -1)
    return ng_block(0x0A0D0D0A, body, order)


def ng_idb(
    linktype: int,
    order: str = "<",
    snaplen: int = 0,
    tsresol: int | None = None,
    tsoffset: int | None = None,
) -> bytes:
    """Interface Description Block, with if_tsresol (9) / if_tsoffset (14) when given."""
    body = struct.pack(order + "HHI", linktype, 0, snaplen)
    options = b""
    if tsresol is not None:
        options += ng_option(9, bytes([tsresol]), order)
    if tsoffset is not None:
        options += ng_option(14, struct.pack(order + "q", tsoffset), order)
    if options:
        options += ng_end_of_options(order)
    return ng_block(1, body + options, order)


def ng_epb(
    iface: int, ticks: int, frame: bytes, order: str = "<", wirelen: int | None = None
) -> bytes:
    """Enhanced Packet Block; ``ticks`` is the 64-bit timestamp in interface units."""
    wire = len(frame) if wirelen is None else wirelen
    head = struct.pack(order + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), wire)
    return ng_block(6, head + pad4(frame), order)


def ng_opb(iface: int, ticks: int, frame: bytes, order: str = "<") -> bytes:
    """Obsolete Packet Block (type 2): 2-byte interface id and drop count."""
    head = struct.pack(
        order + "HHIIII", iface, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)
    )
    return ng_block(2, head + pad4(frame), order)


def ng_spb(frame: bytes, order: str = "<", wirelen: int | None = None) -> bytes:
    """Simple Packet Block: original length then data."""
    wire = len(frame) if wirelen is None else wirelen
    return ng_block(3, struct.pack(order + "I", wire) + pad4(frame), order)


# -- frames --------------------------------------------------------------------------------

MAC_DST = bytes.fromhex("0a0000000002")
MAC_SRC = bytes.fromhex("0a0000000001")
IPV4_SRC = bytes([192, 168, 1, 10])
IPV4_DST = bytes([192, 168, 1, 20])
IPV6_SRC = bytes.fromhex("fd000000000000000000000000000001")
IPV6_DST = bytes.fromhex("fd000000000000000000000000000002")


def tcp(
    sport: int = 40000,
    dport: int = 502,
    payload: bytes = b"",
    seq: int = 1000,
    ack: int = 2000,
    flags: int = 0x18,
    options: bytes = b"",
    data_offset: int | None = None,
) -> bytes:
    """TCP header (options padded to 4) and payload."""
    options = pad4(options)
    words = (20 + len(options)) // 4 if data_offset is None else data_offset
    header = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, words << 4, flags, 8192, 0, 0)
    return header + options + payload


def udp(
    sport: int = 40000, dport: int = 20000, payload: bytes = b"", length: int | None = None
) -> bytes:
    """UDP header and payload; ``length`` overrides the length field."""
    size = 8 + len(payload) if length is None else length
    return struct.pack("!HHHH", sport, dport, size, 0) + payload


def ipv4(
    proto: int,
    payload: bytes,
    src: bytes = IPV4_SRC,
    dst: bytes = IPV4_DST,
    ident: int = 1,
    flags_offset: int = 0,
    options: bytes = b"",
    total: int | None = None,
    ihl: int | None = None,
    version: int = 4,
) -> bytes:
    """IPv4 header (options padded to 4) and payload; overrides make malformed headers."""
    options = pad4(options)
    words = (20 + len(options)) // 4 if ihl is None else ihl
    length = 20 + len(options) + len(payload) if total is None else total
    header = struct.pack(
        "!BBHHHBBH4s4s",
        version << 4 | words,
        0,  # type of service
        length,
        ident,
        flags_offset,
        64,  # TTL
        proto,
        0,  # checksum
        src,
        dst,
    )
    return header + options + payload


def ipv6(
    next_header: int,
    payload: bytes,
    src: bytes = IPV6_SRC,
    dst: bytes = IPV6_DST,
    plen: int | None = None,
) -> bytes:
    """IPv6 header and payload (which starts with any extension headers)."""
    length = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 6 << 28, length, next_header, 64, src, dst) + payload


def ipv6_ext(next_header: int, body: bytes) -> bytes:
    """Hop-by-hop / routing / destination options header; ``body`` padded to 8n+6 bytes."""
    body = body + b"\x00" * (-(len(body) + 2) % 8)
    return bytes([next_header, (len(body) + 2) // 8 - 1]) + body


def ipv6_ah(next_header: int, icv: bytes = b"\x00" * 12) -> bytes:
    """Authentication header (RFC 4302): length in 4-byte words minus 2."""
    body = struct.pack("!HII", 0, 0x1000, 1) + icv  # reserved, SPI, sequence, ICV
    return bytes([next_header, (len(body) + 2) // 4 - 2]) + body


def ipv6_frag(next_header: int, offset: int, more: bool, ident: int) -> bytes:
    """Fragment header; ``offset`` in bytes (a multiple of 8)."""
    return struct.pack("!BBHI", next_header, 0, offset | int(more), ident)


def ether(ethertype: int, payload: bytes, vlans: tuple[tuple[int, int], ...] = ()) -> bytes:
    """Ethernet II frame; ``vlans`` are (TPID, VLAN id) tags, outermost first."""
    tags = b"".join(struct.pack("!HH", tpid, vid) for tpid, vid in vlans)
    return MAC_DST + MAC_SRC + tags + struct.pack("!H", ethertype) + payload


def sll(protocol: int, payload: bytes) -> bytes:
    """Linux cooked capture v1 header (packet type 0, ARPHRD_ETHER) and payload."""
    return struct.pack("!HHH8sH", 0, 1, 6, MAC_SRC + b"\x00\x00", protocol) + payload


def sll2(protocol: int, payload: bytes) -> bytes:
    """Linux cooked capture v2 header and payload."""
    return struct.pack("!HHIHBB8s", protocol, 0, 2, 1, 0, 6, MAC_SRC + b"\x00\x00") + payload


def loopback(family: int, payload: bytes, order: str = "<") -> bytes:
    """BSD loopback header (address family in ``order``) and payload."""
    return struct.pack(order + "I", family) + payload
