"""Tests of otids.capture.link: link types, VLANs, IPv4/IPv6, fragments, TCP/UDP, counters."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otids.capture.link import LinkType, PacketDecoder
from otids.capture.packet import PROTO_TCP, PROTO_UDP, TH_ACK, TH_PSH

from .conftest import (
    IPV4_DST,
    IPV4_SRC,
    IPV6_DST,
    IPV6_SRC,
    ether,
    ipv4,
    ipv6,
    ipv6_ah,
    ipv6_ext,
    ipv6_frag,
    loopback,
    sll,
    sll2,
    tcp,
    udp,
)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
MODBUS_READ = bytes.fromhex("000100000006010300000002")  # read 2 holding registers at 0

# Ethernet / IPv4 / TCP carrying one Modbus request, written out field by field.
MODBUS_FRAME = bytes(
    [
        0x0A, 0x00, 0x00, 0x00, 0x00, 0x02,  # destination MAC
        0x0A, 0x00, 0x00, 0x00, 0x00, 0x01,  # source MAC
        0x08, 0x00,  # EtherType IPv4
        0x45,  # version 4, IHL 5
        0x00,  # type of service
        0x00, 0x34,  # total length 52
        0x12, 0x34,  # identification
        0x40, 0x00,  # flags DF, offset 0
        0x40,  # TTL
        0x06,  # protocol TCP
        0x00, 0x00,  # header checksum (not checked)
        0xC0, 0xA8, 0x01, 0x0A,  # source 192.168.1.10
        0xC0, 0xA8, 0x01, 0x14,  # destination 192.168.1.20
        0x9C, 0x40,  # source port 40000
        0x01, 0xF6,  # destination port 502
        0x00, 0x00, 0x03, 0xE8,  # sequence number 1000
        0x00, 0x00, 0x07, 0xD0,  # acknowledgment number 2000
        0x50,  # data offset 5 words
        0x18,  # flags PSH ACK
        0x20, 0x00,  # window
        0x00, 0x00,  # checksum
        0x00, 0x00,  # urgent pointer
        0x00, 0x01,  # Modbus transaction id
        0x00, 0x00,  # protocol id
        0x00, 0x06,  # length
        0x01,  # unit id
        0x03,  # function code: read holding registers
        0x00, 0x00,  # starting address
        0x00, 0x02,  # quantity
    ]
)  # fmt: skip


def test_ethernet_ipv4_tcp_fields():
    dec = PacketDecoder()
    pkt = dec.decode(12.5, LinkType.ETHERNET, MODBUS_FRAME, 60)
    assert pkt is not None
    assert (pkt.ts, pkt.ip_version, pkt.proto) == (12.5, 4, PROTO_TCP)
    assert (pkt.src, pkt.dst) == (IPV4_SRC, IPV4_DST)
    assert (pkt.sport, pkt.dport) == (40000, 502)
    assert (pkt.seq, pkt.ack, pkt.tcp_flags) == (1000, 2000, TH_PSH | TH_ACK)
    assert pkt.payload == MODBUS_READ
    assert type(pkt.payload) is bytes
    assert pkt.length == 60
    assert pkt.vlan == ()
    assert (dec.packets, dec.ip, dec.malformed) == (1, 1, 0)


TCP_SEG = tcp(payload=MODBUS_READ)
IP4 = ipv4(PROTO_TCP, TCP_SEG)
IP6 = ipv6(PROTO_TCP, TCP_SEG)


@pytest.mark.parametrize(
    ("linktype", "frame", "version"),
    [
        pytest.param(LinkType.ETHERNET, ether(ETH_IPV4, IP4), 4, id="ethernet-v4"),
        pytest.param(LinkType.ETHERNET, ether(ETH_IPV6, IP6), 6, id="ethernet-v6"),
        pytest.param(LinkType.LINUX_SLL, sll(ETH_IPV4, IP4), 4, id="sll-v4"),
        pytest.param(LinkType.LINUX_SLL, sll(ETH_IPV6, IP6), 6, id="sll-v6"),
        pytest.param(LinkType.LINUX_SLL2, sll2(ETH_IPV4, IP4), 4, id="sll2-v4"),
        pytest.param(LinkType.LINUX_SLL2, sll2(ETH_IPV6, IP6), 6, id="sll2-v6"),
        pytest.param(LinkType.RAW, IP4, 4, id="raw-v4"),
        pytest.param(LinkType.RAW, IP6, 6, id="raw-v6"),
        pytest.param(LinkType.RAW_DLT12, IP4, 4, id="raw12-v4"),
        pytest.param(LinkType.RAW_DLT14, IP6, 6, id="raw14-v6"),
        pytest.param(LinkType.IPV4, IP4, 4, id="ipv4"),
        pytest.param(LinkType.IPV6, IP6, 6, id="ipv6"),
        pytest.param(LinkType.NULL, loopback(2, IP4, "<"), 4, id="null-le-inet"),
        pytest.param(LinkType.NULL, loopback(2, IP4, ">"), 4, id="null-be-inet"),
        pytest.param(LinkType.NULL, loopback(24, IP6, "<"), 6, id="null-inet6-24"),
        pytest.param(LinkType.NULL, loopback(28, IP6, "<"), 6, id="null-inet6-28"),
        pytest.param(LinkType.NULL, loopback(30, IP6, ">"), 6, id="null-inet6-30-be"),
        pytest.param(LinkType.LOOP, loopback(2, IP4, ">"), 4, id="loop-inet"),
        pytest.param(LinkType.LOOP, loopback(24, IP6, ">"), 6, id="loop-inet6"),
    ],
)
def test_link_types(linktype, frame, version):
    dec = PacketDecoder()
    pkt = dec.decode(1.0, linktype, frame, len(frame))
    assert pkt is not None
    assert pkt.ip_version == version
    assert (pkt.src, pkt.dst) == ((IPV4_SRC, IPV4_DST) if version == 4 else (IPV6_SRC, IPV6_DST))
    assert (pkt.sport, pkt.dport, pkt.payload) == (40000, 502, MODBUS_READ)
    assert pkt.length == len(frame)


@pytest.mark.parametrize(
    ("tags", "vlan"),
    [
        pytest.param(((0x8100, 10),), (10,), id="802.1Q"),
        pytest.param(((0x88A8, 100), (0x8100, 10)), (100, 10), id="802.1ad-QinQ"),
        pytest.param(((0x9100, 200), (0x8100, 20)), (200, 20), id="legacy-9100"),
        pytest.param(((0x88A8, 1), (0x8100, 2), (0x8100, 3)), (1, 2, 3), id="three-tags"),
        # Priority bits (PCP 5, DEI 1) are not part of the VLAN id.
        pytest.param(((0x8100, 0xB000 | 4094),), (4094,), id="pcp-dei-masked"),
    ],
)
def test_vlan_stacks(tags, vlan):
    dec = PacketDecoder()
    pkt = dec.decode(1.0, LinkType.ETHERNET, ether(ETH_IPV4, IP4, tags), 100)
    assert pkt is not None
    assert pkt.vlan == vlan
    assert pkt.payload == MODBUS_READ


def test_vlan_in_linux_cooked():
    frame = sll(0x8100, bytes([0x00, 0x07, 0x08, 0x00]) + IP4)  # TCI vid 7, inner IPv4
    pkt = PacketDecoder().decode(1.0, LinkType.LINUX_SLL, frame, len(frame))
    assert pkt is not None
    assert pkt.vlan == (7,)


def test_vlan_stack_too_deep_is_malformed():
    dec = PacketDecoder()
    frame = ether(ETH_IPV4, IP4, tuple((0x8100, i) for i in range(9)))
    assert dec.decode(1.0, LinkType.ETHERNET, frame, len(frame)) is None
    assert dec.malformed == 1


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(b"\x01\x01\x01\x00", id="4-bytes-nop-eol"),
        pytest.param(b"\x07\x07\x04" + bytes(4) + b"\x00", id="record-route"),
        pytest.param(b"\x01" * 40, id="max-40-bytes"),
    ],
)
def test_ipv4_options_honoured(options):
    frame = ether(ETH_IPV4, ipv4(PROTO_TCP, TCP_SEG, options=options))
    pkt = PacketDecoder().decode(1.0, LinkType.ETHERNET, frame, len(frame))
    assert pkt is not None
    assert (pkt.sport, pkt.dport, pkt.payload) == (40000, 502, MODBUS_READ)


def test_ethernet_padding_trimmed_by_ip_total_length():
    frame = ether(ETH_IPV4, ipv4(PROTO_UDP, udp(payload=b"\x05\x64")))
    frame += b"\x00" * (60 - len(frame)) + b"\xde\xad\xbe\xef"  # padding, then an FCS
    pkt = PacketDecoder().decode(1.0, LinkType.ETHERNET, frame, len(frame))
    assert pkt is not None
    assert (pkt.proto, pkt.sport, pkt.dport, pkt.payload) == (PROTO_UDP, 40000, 20000, b"\x05\x64")


def test_ipv6_padding_trimmed_by_payload_length():
    frame = ether(ETH_IPV6, ipv6(PROTO_UDP, udp(payload=b"ab"))) + b"\x00" * 8
    pkt = PacketDecoder().decode(1.0, LinkType.ETHERNET, frame, len(frame))
    assert pkt is not None
    assert pkt.payload == b"ab"


def test_udp_length_shorter_than_ip_payload():
    frame = ipv4(PROTO_UDP, udp(payload=b"abcdef", length=10))
    pkt = PacketDecoder().decode(1.0, LinkType.RAW, frame, len(frame))
    assert pkt is not None
    assert pkt.payload == b"ab"


def test_tcp_options_and_flags():
    seg = tcp(payload=b"xyz", options=b"\x02\x04\x05\xb4\x01\x03\x03\x07", flags=0xC2)
    pkt = PacketDecoder().decode(1.0, LinkType.RAW, ipv4(PROTO_TCP, seg), 100)
    assert pkt is not None
    assert pkt.payload == b"xyz"
    assert pkt.tcp_flags == 0xC2  # SYN with ECE and CWR


def test_segmentation_offload_zero_lengths():
    dec = PacketDecoder()
    frame4 = ipv4(PROTO_TCP, TCP_SEG, total=0)
    frame6 = ipv6(PROTO_TCP, TCP_SEG, plen=0)
    for frame in (frame4, frame6):
        pkt = dec.decode(1.0, LinkType.RAW, frame, len(frame))
        assert pkt is not None
        assert pkt.payload == MODBUS_READ


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([(0, "ext")], id="hop-by-hop"),
        pytest.param([(0, "ext"), (43, "ext"), (60, "ext")], id="hbh-routing-dstopts"),
        pytest.param([(51, "ah")], id="ah"),
        pytest.param([(60, "ext"), (51, "ah"), (60, "ext")], id="dstopts-ah-dstopts"),
        pytest.param([(44, "atomic")], id="atomic-fragment"),
    ],
)
def test_ipv6_extension_headers(headers):
    chain = TCP_SEG
    next_header = PROTO_TCP
    for kind, form in reversed(headers):
        if form == "ext":
            chain = ipv6_ext(next_header, b"\x01\x04" + bytes(4) + bytes(9)) + chain
        elif form == "ah":
            chain = ipv6_ah(next_header) + chain
        else:
            chain = ipv6_frag(next_header, 0, False, 99) + chain
        next_header = kind
    frame = ether(ETH_IPV6, ipv6(next_header, chain))
    dec = PacketDecoder()
    pkt = dec.decode(1.0, LinkType.ETHERNET, frame, len(frame))
    assert pkt is not None
    assert (pkt.ip_version, pkt.sport, pkt.dport, pkt.payload) == (6, 40000, 502, MODBUS_READ)
    assert dec.ip_fragments == 0


@pytest.mark.parametrize(
    ("linktype", "frame", "counter"),
    [
        pytest.param(1, ether(0x0806, bytes(28)), "non_ip", id="arp"),
        pytest.param(1, ether(0x88CC, bytes(30)), "non_ip", id="lldp"),
        pytest.param(1, ether(0x0026, bytes(46)), "non_ip", id="802.3-length"),
        pytest.param(113, sll(0x0004, bytes(30)), "non_ip", id="sll-llc"),
        pytest.param(0, loopback(7, bytes(30)), "non_ip", id="loopback-other-af"),
        pytest.param(101, b"\x50" + bytes(30), "non_ip", id="raw-version-5"),
        pytest.param(1, ether(ETH_IPV4, ipv4(1, bytes(8))), "not_tcp_udp", id="icmp"),
        pytest.param(1, ether(ETH_IPV4, ipv4(132, bytes(12))), "not_tcp_udp", id="sctp"),
        pytest.param(229, ipv6(58, bytes(8)), "not_tcp_udp", id="icmpv6"),
        pytest.param(229, ipv6(50, bytes(16)), "not_tcp_udp", id="esp"),
        pytest.param(229, ipv6(59, b""), "not_tcp_udp", id="no-next-header"),
        pytest.param(229, ipv6(60, ipv6_ext(59, b"")), "not_tcp_udp", id="dstopts-then-none"),
        pytest.param(147, IP4, "unsupported_linktype", id="user-dlt"),
        pytest.param(105, IP4, "unsupported_linktype", id="802.11"),
    ],
)
def test_not_decoded_counters(linktype, frame, counter):
    dec = PacketDecoder()
    assert dec.decode(1.0, linktype, frame, len(frame)) is None
    assert getattr(dec, counter) == 1
    others = {"non_ip", "not_tcp_udp", "unsupported_linktype", "malformed", "truncated"}
    assert all(getattr(dec, name) == 0 for name in others - {counter})


@pytest.mark.parametrize(
    ("linktype", "frame"),
    [
        pytest.param(1, bytes(13), id="short-ethernet"),
        pytest.param(1, ether(0x8100, b"\x00"), id="short-vlan-tag"),
        pytest.param(276, sll2(ETH_IPV4, b"")[:19], id="short-sll2"),
        pytest.param(0, b"\x02\x00", id="short-loopback"),
        pytest.param(101, b"", id="empty-raw"),
        pytest.param(228, ipv4(PROTO_TCP, TCP_SEG, ihl=4), id="ihl-below-5"),
        pytest.param(228, ipv4(PROTO_TCP, TCP_SEG, version=5), id="ipv4-wrong-version"),
        pytest.param(228, ipv4(PROTO_TCP, TCP_SEG, total=19), id="total-below-header"),
        pytest.param(228, ipv4(PROTO_TCP, TCP_SEG, ihl=15, total=40), id="total-below-ihl"),
        pytest.param(228, ipv4(PROTO_TCP, tcp(data_offset=4)), id="tcp-offset-below-5"),
        pytest.param(228, ipv4(PROTO_TCP, tcp(data_offset=15)), id="tcp-offset-past-end"),
        pytest.param(228, ipv4(PROTO_TCP, TCP_SEG[:19]), id="tcp-short"),
        pytest.param(228, ipv4(PROTO_UDP, udp(payload=b"abc", length=7)), id="udp-length-7"),
        pytest.param(228, ipv4(PROTO_UDP, udp(payload=b"abc", length=12)), id="udp-past-ip"),
        pytest.param(228, ipv4(PROTO_UDP, b"\x00" * 7), id="udp-short"),
        pytest.param(229, b"\x45" + IP6[1:], id="ipv6-wrong-version"),
        pytest.param(229, ipv6(0, b"\x06\x05" + bytes(6) + TCP_SEG), id="ext-overruns"),
        pytest.param(229, ipv6(0, b"\x06"), id="ext-header-cut"),
        pytest.param(229, ipv6(44, b"\x06\x00\x00"), id="frag-header-cut"),
        pytest.param(229, ipv6(60, ipv6_ext(60, b"") * 17 + TCP_SEG), id="ext-chain-too-long"),
    ],
)
def test_malformed(linktype, frame):
    dec = PacketDecoder()
    assert dec.decode(1.0, linktype, frame, len(frame)) is None
    assert dec.malformed == 1
    assert dec.truncated == 0


@pytest.mark.parametrize("cut", [14, 20, 33, 40, 60])
def test_snaplen_truncated_frames_counted(cut):
    frame = ether(ETH_IPV4, ipv4(PROTO_TCP, tcp(payload=bytes(100))))
    dec = PacketDecoder()
    assert dec.decode(1.0, LinkType.ETHERNET, frame[:cut], len(frame)) is None
    assert dec.truncated == 1
    assert dec.malformed == 0


def test_snaplen_truncated_ipv6():
    frame = ether(ETH_IPV6, ipv6(PROTO_TCP, tcp(payload=bytes(100))))
    dec = PacketDecoder()
    assert dec.decode(1.0, LinkType.ETHERNET, frame[:80], len(frame)) is None
    assert dec.truncated == 1


# -- fragments -----------------------------------------------------------------------------

UDP_BIG = udp(40000, 20000, bytes(range(256)) * 3)  # 776 bytes: 8 header + 768 payload
MF = 0x2000


def v4_fragments(datagram: bytes, size: int, proto: int = PROTO_UDP, ident: int = 77):
    """Ethernet frames carrying ``datagram`` (a transport segment) in IPv4 fragments."""
    frames = []
    for off in range(0, len(datagram), size):
        more = MF if off + size < len(datagram) else 0
        piece = datagram[off : off + size]
        frames.append(
            ether(ETH_IPV4, ipv4(proto, piece, ident=ident, flags_offset=more | off >> 3))
        )
    return frames


def v6_fragments(datagram: bytes, size: int, next_header: int = PROTO_UDP, ident: int = 77):
    """Ethernet frames carrying ``datagram`` in IPv6 fragments (behind a hop-by-hop header)."""
    frames = []
    for off in range(0, len(datagram), size):
        piece = datagram[off : off + size]
        more = off + size < len(datagram)
        chain = ipv6_ext(44, b"") + ipv6_frag(next_header, off, more, ident) + piece
        frames.append(ether(ETH_IPV6, ipv6(0, chain)))
    return frames


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize(
    "order",
    [
        pytest.param(lambda f: f, id="in-order"),
        pytest.param(lambda f: f[::-1], id="reversed"),
        pytest.param(lambda f: random.Random(5).sample(f, len(f)), id="shuffled"),
    ],
)
def test_fragments_reassembled(version, order):
    frames = (v4_fragments if version == 4 else v6_fragments)(UDP_BIG, 200)
    dec = PacketDecoder()
    results = [dec.decode(1.0, 1, frame, len(frame)) for frame in order(frames)]
    assert results[:-1] == [None] * (len(frames) - 1)
    pkt = results[-1]
    assert pkt is not None
    assert (pkt.ip_version, pkt.proto, pkt.sport, pkt.dport) == (version, PROTO_UDP, 40000, 20000)
    assert pkt.payload == UDP_BIG[8:]
    assert pkt.length == sum(len(frame) for frame in frames)
    assert (dec.ip_fragments, dec.ip_reassembled, dec.ip_frag_dropped) == (4, 1, 0)


def test_ipv6_fragment_chain_continues_after_reassembly():
    """The fragmentable part may start with a destination options header, then TCP."""
    datagram = ipv6_ext(PROTO_TCP, b"") + tcp(payload=b"q" * 300)
    frames = v6_fragments(datagram, 160, next_header=60)
    dec = PacketDecoder()
    pkts = [dec.decode(1.0, 1, frame, len(frame)) for frame in frames]
    assert pkts[-1] is not None
    assert pkts[-1].payload == b"q" * 300


def test_fragment_inside_reassembled_ipv6_is_malformed():
    datagram = ipv6_ext(44, b"") + ipv6_frag(PROTO_UDP, 8, False, 5) + udp(payload=b"x" * 200)
    dec = PacketDecoder()
    for frame in v6_fragments(datagram, 104, next_header=60):
        dec.decode(1.0, 1, frame, len(frame))
    assert dec.ip_reassembled == 1
    assert dec.malformed == 1


def test_overlapping_fragments_first_seen_wins():
    # First fragment: UDP header + 16 'A'; second overlaps its last 8 bytes with 'B' * 16.
    first = ether(ETH_IPV4, ipv4(PROTO_UDP, udp(payload=b"A" * 16, length=8 + 32), flags_offset=MF))
    second = ether(ETH_IPV4, ipv4(PROTO_UDP, b"B" * 16, flags_offset=MF | 2))
    last = ether(ETH_IPV4, ipv4(PROTO_UDP, b"C" * 16, flags_offset=3))
    dec = PacketDecoder()
    assert dec.decode(1.0, 1, first, len(first)) is None
    assert dec.decode(1.0, 1, second, len(second)) is None
    pkt = dec.decode(1.0, 1, last, len(last))
    assert pkt is not None
    assert pkt.payload == b"A" * 16 + b"B" * 8 + b"C" * 8


def test_incomplete_fragments_time_out():
    frames = v4_fragments(UDP_BIG, 200)
    dec = PacketDecoder(frag_timeout=30.0)
    for frame in frames[:-1]:
        assert dec.decode(100.0, 1, frame, len(frame)) is None
    # Another datagram's fragment, 31 s later, expires the incomplete one.
    other = v4_fragments(UDP_BIG, 200, ident=78)[0]
    assert dec.decode(131.0, 1, other, len(other)) is None
    assert dec.ip_frag_dropped == 3
    # The missing last fragment no longer completes anything.
    assert dec.decode(131.0, 1, frames[-1], len(frames[-1])) is None
    assert dec.ip_reassembled == 0


def test_fragments_of_other_protocols_not_kept():
    frames = v4_fragments(bytes(400), 200, proto=1) + v6_fragments(bytes(400), 200, 58)
    dec = PacketDecoder()
    for frame in frames:
        assert dec.decode(1.0, 1, frame, len(frame)) is None
    assert (dec.ip_fragments, dec.not_tcp_udp, dec.ip_reassembled) == (4, 4, 0)


def test_fragment_bounds_passed_through():
    dec = PacketDecoder(max_frag_datagrams=2)
    for ident in range(4):
        frame = v4_fragments(UDP_BIG, 200, ident=ident)[0]
        dec.decode(1.0, 1, frame, len(frame))
    assert dec.ip_frag_dropped == 2


def test_scapy_fragments_agree():
    """Fragments made by an independent implementation reassemble to the same bytes."""
    scapy = pytest.importorskip("scapy.all")
    payload = bytes(random.Random(1).randrange(256) for _ in range(3000))
    pkt = (
        scapy.Ether()
        / scapy.IP(src="10.0.0.1", dst="10.0.0.2")
        / scapy.UDP(sport=5, dport=20000)
        / payload
    )
    frames = [bytes(f) for f in scapy.fragment(pkt, fragsize=504)]
    random.Random(2).shuffle(frames)
    dec = PacketDecoder()
    out = [dec.decode(1.0, 1, frame, len(frame)) for frame in frames]
    assert out[-1] is not None
    assert out[-1].payload == payload


# -- robustness ----------------------------------------------------------------------------

VALID_FRAMES = [
    (1, ether(ETH_IPV4, IP4, ((0x8100, 3),))),
    (1, ether(ETH_IPV6, ipv6(0, ipv6_ext(51, b"") + ipv6_ah(PROTO_TCP) + TCP_SEG))),
    (1, v4_fragments(UDP_BIG, 200)[0]),
    (1, v6_fragments(UDP_BIG, 200)[1]),
    (113, sll(ETH_IPV4, ipv4(PROTO_UDP, udp(payload=b"x" * 20), options=b"\x01" * 8))),
    (276, sll2(ETH_IPV6, IP6)),
    (0, loopback(2, IP4)),
]


def test_every_truncation_and_byte_flip_is_safe():
    rng = random.Random(0)
    dec = PacketDecoder()
    for linktype, frame in VALID_FRAMES:
        for cut in range(len(frame) + 1):
            dec.decode(1.0, linktype, frame[:cut], len(frame))
        for _ in range(300):
            mutated = bytearray(frame)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            dec.decode(rng.random() * 100, linktype, bytes(mutated), len(mutated))
    assert dec.packets > 0


@settings(max_examples=400, deadline=None)
@given(
    linktype=st.sampled_from([int(lt) for lt in LinkType] + [147]),
    frame=st.binary(max_size=200),
)
def test_random_frames_never_raise(linktype, frame):
    PacketDecoder().decode(0.0, linktype, frame, len(frame))
