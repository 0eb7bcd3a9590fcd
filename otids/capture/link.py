"""Link, IP and transport decoding: one captured frame in, one :class:`Packet` (or None) out.

:class:`PacketDecoder` peels the link header (Ethernet with any stack of VLAN tags, Linux
cooked SLL/SLL2, raw IP, BSD loopback), the IPv4 or IPv6 header (options, extension headers,
fragments, which it reassembles) and the TCP or UDP header. Everything else (ARP, ICMP,
malformed or truncated headers, unknown link types) returns None and bumps a counter, so the
caller can say why packets were not analysed.

This is the hot path of the offline analyser: the link and transport layers are dispatched
through dicts of bound methods, an unfragmented IPv4 packet never touches the fragment code,
and the only bytes copied are the two addresses and the transport payload.
"""

from __future__ import annotations

import array
import contextlib
import enum
import importlib
import os
import struct
from collections.abc import Callable

from otids.capture.ipfrag import (
    FRAGMENT_TIMEOUT,
    MAX_PENDING_BYTES,
    MAX_PENDING_DATAGRAMS,
    FragmentReassembler,
)
from otids.capture.packet import PROTO_TCP, PROTO_UDP, Packet


class LinkType(enum.IntEnum):
    """The pcap/pcapng link-layer header types decoded (tcpdump.org LINKTYPE_ values)."""

    NULL = 0  # BSD loopback: 4-byte address family in the capturing host's byte order
    ETHERNET = 1
    RAW_DLT12 = 12  # DLT_RAW's value on most systems, found in some old files for raw IP
    RAW_DLT14 = 14  # DLT_RAW's value on OpenBSD, same story
    RAW = 101  # raw IPv4 or IPv6, version nibble decides
    LOOP = 108  # OpenBSD loopback: address family in network byte order
    LINUX_SLL = 113
    IPV4 = 228
    IPV6 = 229
    LINUX_SLL2 = 276


class EtherType(enum.IntEnum):
    """The EtherType values the decoder acts on."""

    IPV4 = 0x0800
    IPV6 = 0x86DD
    VLAN = 0x8100  # IEEE 802.1Q customer tag
    QINQ = 0x88A8  # IEEE 802.1ad service tag
    QINQ_LEGACY = 0x9100  # pre-standard service tag still sent by some switches


class IpProto(enum.IntEnum):
    """IP protocol / IPv6 next-header numbers the decoder acts on."""

    HOPOPTS = 0
    TCP = PROTO_TCP
    UDP = PROTO_UDP
    ROUTING = 43
    FRAGMENT = 44
    ESP = 50
    AH = 51
    NONE = 59
    DSTOPTS = 60


# BSD address families: AF_INET is 2 everywhere, AF_INET6 differs per system.
AF_INET = 2
AF_INET6_VALUES = (24, 28, 30)  # NetBSD/OpenBSD, FreeBSD, macOS

# VLAN tags peeled per frame: real networks stack two (QinQ), rarely three; a longer stack is
# a crafted frame, and the bound keeps the tag loop finite.
MAX_VLAN_TAGS = 8
# IPv6 extension headers followed per packet (RFC 8200 allows each at most once or twice);
# the bound keeps a crafted chain from looping long.
MAX_IPV6_EXT_HEADERS = 16

# IPv6 extension headers that only need skipping: next header -> (length unit, length bias),
# the header's length being (its length byte + bias) * unit. AH counts 4-byte words minus
# two (RFC 4302), the others 8-byte words not counting the first (RFC 8200). ESP (50) and
# No Next Header (59) end the chain: what follows is opaque.
_IPV6_EXT_LENGTH: dict[int, tuple[int, int]] = {
    IpProto.HOPOPTS: (8, 1),
    IpProto.ROUTING: (8, 1),
    IpProto.DSTOPTS: (8, 1),
    IpProto.AH: (4, 2),
}

# Ethernet II header:
#   0                   6                   12      14
#   | destination MAC   | source MAC        | type  |
# 802.1Q / 802.1ad tag, inserted before the type (the tag's TPID takes the type's place):
#   | TPID (2) | PCP:3 DEI:1 VID:12 (2) | inner type (2) |
_U16 = struct.Struct("!H")
_VLAN_TAG = struct.Struct("!HH")  # TCI, inner EtherType
ETHERNET_TYPE = 12
ETHERNET_HEADER = 14

# Linux cooked capture v1 (LINKTYPE_LINUX_SLL), 16 bytes:
#   | packet type (2) | ARPHRD type (2) | address length (2) | address (8) | protocol (2) |
SLL_PROTOCOL = 14  # the payload follows it
# Linux cooked capture v2 (LINKTYPE_LINUX_SLL2), 20 bytes:
#   | protocol (2) | reserved (2) | interface index (4) | ARPHRD type (2) | packet type (1) |
#   | address length (1) | address (8) |
SLL2_HEADER = 20

# BSD loopback header: | address family (4) |
_LOOP_AF = struct.Struct("<I")
LOOP_HEADER = 4

#  0                   1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |Version|  IHL  |Type of Service|          Total Length         |
# |         Identification        |Flags|      Fragment Offset    |
# |  Time to Live |    Protocol   |         Header Checksum       |
# |                       Source Address                          |
# |                    Destination Address                        |
# |                    Options                    |    Padding    |
# (RFC 791, 3.1)
# version/IHL, total length, id, flags/offset, protocol, source, destination
_IPV4 = struct.Struct("!BxHHHxBxx4s4s")
IPV4_MIN_HEADER = 20
IPV4_PLAIN = 0x45  # version 4, no options: the common case, checked first
IPV4_MF = 0x2000  # more fragments
IPV4_OFFSET_MASK = 0x1FFF  # fragment offset, in 8-byte units
IPV4_FRAGMENT_BITS = IPV4_MF | IPV4_OFFSET_MASK  # either set: the packet is a fragment

# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |Version| Traffic Class |           Flow Label                  |
# |         Payload Length        |  Next Header  |   Hop Limit   |
# |                 Source Address (16)                           |
# |              Destination Address (16)                         |
# (RFC 8200, 3)
# version/class, payload length, next header, source, destination
_IPV6 = struct.Struct("!BxxxHBx16s16s")
IPV6_HEADER = 40

# IPv6 fragment header (RFC 8200, 4.5):
# |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
# |                         Identification                        |
_IPV6_FRAG = struct.Struct("!BxHI")
IPV6_FRAG_HEADER = 8

# |          Source Port          |       Destination Port        |
# |                        Sequence Number                        |
# |                    Acknowledgment Number                      |
# |  Data |       |C|E|U|A|P|R|S|F|                               |
# | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
# |           Checksum            |         Urgent Pointer        |
# |                    Options                    |    Padding    |
# (RFC 9293, 3.1)
_TCP = struct.Struct("!HHIIBB")  # ports, seq, ack, data offset byte, flags
TCP_MIN_HEADER = 20

# |          Source Port          |       Destination Port        |
# |            Length             |           Checksum            |
# (RFC 768)
_UDP = struct.Struct("!HHH")
UDP_HEADER = 8

# Handler signatures: link (ts, frame, wirelen); network (ts, frame, offset, wirelen, vlan);
# transport (ts, ip_version, src, dst, buf, offset, end, wirelen, vlan).
_LinkHandler = Callable[[float, bytes, int], "Packet | None"]
_NetHandler = Callable[[float, bytes, int, int, tuple[int, ...]], "Packet | None"]
_L4Handler = Callable[
    [float, int, bytes, bytes, bytes, int, int, int, tuple[int, ...]], "Packet | None"
]


_ETHERNET = 1  # LinkType.ETHERNET, as a plain int for the fast path
_ETH_IPV4_PLAIN = b"\x08\x00\x45"  # EtherType IPv4, version 4 with a 20-byte header
# From offset 14 of such a frame: IPv4 total length, source, destination, then TCP ports,
# sequence, acknowledgement, data offset and flags.
_ETH_IPV4_TCP = struct.Struct("!2xH8x4s4sHHIIBB")
_SHARD_KEY = struct.Struct("!IIHH")  # at offset 26: source, destination, ports as integers

# For a consumer that decodes decode()'s TCP fast-path frames inline (Pipeline.run): the
# frame's raw flow key (source, destination and ports as on the wire, the key of the bypass
# sets), and its other fields read from offset ETH_IPV4_TCP_FIELDS_AT in one unpack:
# EtherType, version/IHL, IPv4 total length, flags/fragment offset, protocol, then TCP
# sequence, acknowledgement, data offset and flags. The frame takes decode()'s TCP fast path
# when it has at least ETH_IPV4_TCP_MIN_FRAME bytes, EtherType ETHERTYPE_IPV4, version/IHL
# IPV4_PLAIN, no IPV4_FRAGMENT_BITS and protocol TCP; that path makes a Packet of it when the
# total length is at least IPV4_TCP_MIN_TOTAL, the data offset byte at least
# TCP_MIN_DATA_OFFSET and the payload (34 + data offset words .. 14 + total length) inside
# the frame.
RAW_FLOW_KEY = slice(26, 38)
ETH_IPV4_TCP_FIELDS = struct.Struct("!HBxHxxHxB14xIIBB")
ETH_IPV4_TCP_FIELDS_AT = ETHERNET_TYPE
ETH_IPV4_TCP_MIN_FRAME = 54
ETHERTYPE_IPV4 = 0x0800  # EtherType.IPV4 as a plain int (compares faster)
IPV4_TCP_MIN_TOTAL = IPV4_MIN_HEADER + TCP_MIN_HEADER
TCP_MIN_DATA_OFFSET = 0x50  # 5 words


def _mix(addrs: int, ports: int, count: int) -> int:
    """Spread a flow over ``count`` shards from the XOR of its addresses and of its ports
    (XOR makes it the same in both directions); the multiplications mix every bit in, so
    that flows between a few similar hosts still spread evenly."""
    h = ((addrs * 0x9E3779B1) ^ (ports * 0x85EBCA6B)) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) * 0x7FEB352D & 0xFFFFFFFF) % count


# Flows hash into this many buckets; a table (bytes, one worker index per bucket) says which
# worker owns each bucket, so that a planner can even out heavy flows (see otids.balance).
SHARD_BUCKETS = 256


def round_robin_buckets(count: int) -> bytes:
    """The bucket table dealing buckets to ``count`` workers in turn (for a count that
    divides :data:`SHARD_BUCKETS`, the same shards as ``_mix(..., count)``)."""
    return bytes(bucket % count for bucket in range(SHARD_BUCKETS))


def frame_bucket(frame: bytes) -> int:
    """The flow bucket (shard_of over SHARD_BUCKETS) of an Ethernet frame carrying plain
    IPv4: addresses and ports at offsets 26 to 38."""
    src_ip, dst_ip, sport, dport = _SHARD_KEY.unpack_from(frame, 26)
    return _mix(src_ip ^ dst_ip, sport ^ dport, SHARD_BUCKETS)


# The same in the optional C accelerator, a tenth of the cost: every packet a worker keeps
# pays for it. OTIDS_PURE_PYTHON=1 keeps the Python one (as for the reader's C loop).
_frame_bucket = frame_bucket
if not os.environ.get("OTIDS_PURE_PYTHON"):
    with contextlib.suppress(ImportError):
        _frame_bucket = importlib.import_module("otids.capture._fastpcap").frame_bucket


def shard_of(pkt: Packet, count: int) -> int:
    """The shard (0..count-1) of a packet's flow; for IPv4 the same value the decoder's fast
    path computes from the raw header (the last 4 bytes of an IPv6 address stand in)."""
    addrs = int.from_bytes(pkt.src[-4:], "big") ^ int.from_bytes(pkt.dst[-4:], "big")
    return _mix(addrs, pkt.sport ^ pkt.dport, count)


class PacketDecoder:
    """Decode captured frames into :class:`Packet` objects, counting what it cannot use.

    ``max_frag_bytes``, ``max_frag_datagrams`` and ``frag_timeout`` (seconds of capture time)
    bound IP fragment reassembly (see :mod:`otids.capture.ipfrag`).

    Counters (plain ints): ``packets`` frames given; ``ip`` frames carrying IPv4/IPv6
    (including those then found malformed or truncated);
    ``non_ip`` frames carrying something else (ARP, LLDP...); ``not_tcp_udp`` IP packets of
    another protocol (ICMP, ESP...); ``malformed`` frames whose headers are inconsistent;
    ``truncated`` frames cut short by the capture's snap length; ``unsupported_linktype``;
    ``ip_fragments`` fragments seen; ``ip_reassembled`` datagrams completed from them;
    ``ip_frag_dropped`` fragments discarded (timeout, bounds, inconsistency).
    """

    def __init__(
        self,
        max_frag_bytes: int = MAX_PENDING_BYTES,
        max_frag_datagrams: int = MAX_PENDING_DATAGRAMS,
        frag_timeout: float = FRAGMENT_TIMEOUT,
        bypass_tcp: set[bytes] | None = None,
        bypass_udp: set[bytes] | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        # (index, count): keep only the packets of flows whose bucket (shard_of() over
        # SHARD_BUCKETS) shard_buckets gives to index, so that several processes reading one
        # capture each see whole flows (like PACKET_FANOUT). The owner may replace the table
        # (a balanced plan) before reading.
        self.shard_index, self.shard_count = shard
        self.shard_buckets = round_robin_buckets(self.shard_count)
        self.other_shard = 0
        # Raw keys of bypassed flows, owned by the flow table (FlowTable.bypass_tcp/_udp).
        self.bypass_tcp: set[bytes] = bypass_tcp if bypass_tcp is not None else set()
        self.bypass_udp: set[bytes] = bypass_udp if bypass_udp is not None else set()
        self.bypassed = 0
        self.packets = 0
        # Frames a capture reader dropped before decoding (see count_prefiltered), and the
        # capture time from which it must not (the pipeline's next housekeeping).
        self.housekeeping_due = array.array("d", [0.0])
        self.prefiltered = 0
        self.prefiltered_bytes = 0
        self.prefiltered_ts = 0.0
        self.ip = 0
        self.non_ip = 0
        self.not_tcp_udp = 0
        self.malformed = 0
        self.truncated = 0
        self.unsupported_linktype = 0
        self.ip_fragments = 0
        self.ip_reassembled = 0
        self.ip_frag_dropped = 0
        self._frag = FragmentReassembler(
            max_datagrams=max_frag_datagrams, max_bytes=max_frag_bytes, timeout=frag_timeout
        )
        self._by_linktype: dict[int, _LinkHandler] = {
            LinkType.NULL: self._loopback,
            LinkType.ETHERNET: self._ethernet,
            LinkType.RAW_DLT12: self._raw_ip,
            LinkType.RAW_DLT14: self._raw_ip,
            LinkType.RAW: self._raw_ip,
            LinkType.LOOP: self._loopback,
            LinkType.LINUX_SLL: self._sll,
            LinkType.IPV4: self._ipv4_link,
            LinkType.IPV6: self._ipv6_link,
            LinkType.LINUX_SLL2: self._sll2,
        }
        self._by_ethertype: dict[int, _NetHandler] = {
            EtherType.IPV4: self._ipv4,
            EtherType.IPV6: self._ipv6,
            EtherType.VLAN: self._vlan,
            EtherType.QINQ: self._vlan,
            EtherType.QINQ_LEGACY: self._vlan,
        }
        self._by_ip_version: dict[int, _NetHandler] = {4: self._ipv4, 6: self._ipv6}
        self._by_family: dict[int, _NetHandler] = {AF_INET: self._ipv4}
        self._by_family.update((af, self._ipv6) for af in AF_INET6_VALUES)
        self._by_proto: dict[int, _L4Handler] = {IpProto.TCP: self._tcp, IpProto.UDP: self._udp}

    def decode(self, ts: float, linktype: int, frame: bytes, wirelen: int) -> Packet | None:
        """Decode one captured frame; None when it is not a usable TCP/UDP packet, or when
        it belongs to a bypassed flow (counted in ``bypassed``)."""
        self.packets += 1
        # Fast path for the commonest frame: Ethernet, IPv4 without options, not a fragment.
        # The 12 bytes at 26..38 are then source, destination and the two ports: a bypassed
        # flow's packet costs a slice and a set lookup. A TCP SYN is never bypassed: it may
        # open a new connection on a bypassed flow's 5-tuple. A TCP packet is decoded here in
        # one unpack; anything unusual falls through to the general path below.
        if (
            linktype == _ETHERNET
            and frame[12:15] == _ETH_IPV4_PLAIN
            and len(frame) >= ETH_IPV4_TCP_MIN_FRAME
            and not (frame[20] & 0x3F or frame[21])
        ):
            if (
                self.shard_count > 1
                and self.shard_buckets[_frame_bucket(frame)] != self.shard_index
            ):
                self.other_shard += 1
                return None
            proto = frame[23]
            if proto == 6:
                if not frame[47] & 0x02 and frame[RAW_FLOW_KEY] in self.bypass_tcp:
                    self.bypassed += 1
                    return None
                total, src, dst, sport, dport, seq, ack, data_offset, flags = (
                    _ETH_IPV4_TCP.unpack_from(frame, 14)
                )
                start = 34 + ((data_offset >> 4) << 2)
                end = 14 + total
                if (
                    total >= IPV4_TCP_MIN_TOTAL
                    and start <= end <= len(frame)
                    and data_offset >= TCP_MIN_DATA_OFFSET
                ):
                    self.ip += 1
                    return Packet(
                        ts,
                        4,
                        src,
                        dst,
                        PROTO_TCP,
                        sport,
                        dport,
                        frame[start:end],
                        wirelen,
                        flags,
                        seq,
                        ack,
                        (),
                    )
            elif proto == 17 and frame[RAW_FLOW_KEY] in self.bypass_udp:
                self.bypassed += 1
                return None
        handler = self._by_linktype.get(linktype)
        if handler is None:
            self.unsupported_linktype += 1
            return None
        pkt = handler(ts, frame, wirelen)
        if (
            pkt is not None
            and self.shard_count > 1
            and self.shard_buckets[shard_of(pkt, SHARD_BUCKETS)] != self.shard_index
        ):
            self.other_shard += 1
            self.ip -= 1  # counted by the shard that owns it
            return None
        return pkt

    def count_prefiltered(
        self, bypassed: int, other_shard: int, wire_bytes: int, last_ts: float
    ) -> None:
        """Count frames a capture reader dropped unseen, having taken for them the decisions
        :meth:`decode`'s fast path takes (bypassed flow, other shard): see
        :class:`otids.capture.readers.Prefilter`."""
        frames = bypassed + other_shard
        if frames:
            self.packets += frames
            self.bypassed += bypassed
            self.other_shard += other_shard
            self.prefiltered += frames
            self.prefiltered_bytes += wire_bytes
            self.prefiltered_ts = max(self.prefiltered_ts, last_ts)

    # -- link layers ---------------------------------------------------------------------

    def _ethernet(self, ts: float, frame: bytes, wirelen: int) -> Packet | None:
        # Same as _ethertype(ts, frame, 12, ...), one call less on the hottest path.
        try:
            etype = _U16.unpack_from(frame, ETHERNET_TYPE)[0]
        except struct.error:
            self.malformed += 1
            return None
        handler = self._by_ethertype.get(etype)
        if handler is None:
            self.non_ip += 1
            return None
        return handler(ts, frame, ETHERNET_HEADER, wirelen, ())

    def _sll(self, ts: float, frame: bytes, wirelen: int) -> Packet | None:
        return self._ethertype(ts, frame, SLL_PROTOCOL, wirelen, ())

    def _sll2(self, ts: float, frame: bytes, wirelen: int) -> Packet | None:
        if len(frame) < SLL2_HEADER:
            self.malformed += 1
            return None
        handler = self._by_ethertype.get(_U16.unpack_from(frame, 0)[0])
        if handler is None:
            self.non_ip += 1
            return None
        return handler(ts, frame, SLL2_HEADER, wirelen, ())

    def _ethertype(
        self, ts: float, frame: bytes, off: int, wirelen: int, vlan: tuple[int, ...]
    ) -> Packet | None:
        """Dispatch on the 2-byte EtherType at ``off``; the payload follows it."""
        try:
            etype = _U16.unpack_from(frame, off)[0]
        except struct.error:
            self.malformed += 1
            return None
        handler = self._by_ethertype.get(etype)
        if handler is None:
            self.non_ip += 1
            return None
        return handler(ts, frame, off + 2, wirelen, vlan)

    def _vlan(
        self, ts: float, frame: bytes, off: int, wirelen: int, vlan: tuple[int, ...]
    ) -> Packet | None:
        """One 802.1Q/802.1ad tag at ``off`` (after its TPID): record the VLAN id, go on."""
        if len(vlan) >= MAX_VLAN_TAGS:
            self.malformed += 1
            return None
        try:
            tci = _U16.unpack_from(frame, off)[0]
        except struct.error:
            self.malformed += 1
            return None
        return self._ethertype(ts, frame, off + 2, wirelen, (*vlan, tci & 0x0FFF))

    def _raw_ip(self, ts: float, frame: bytes, wirelen: int) -> Packet | None:
        if not frame:
            self.malformed += 1
            return None
        handler = self._by_ip_version.get(frame[0] >> 4)
        if handler is None:
            self.non_ip += 1
            return None
        return handler(ts, frame, 0, wirelen, ())

    def _ipv4_link(self, ts: float, frame: bytes, wirelen: int) -> Packet | None:
        return self._ipv4(ts, frame, 0, wirelen, ())

    def _ipv6_link(self, ts: float, frame: bytes, wirelen: int) -> Packet | None:
        return self._ipv6(ts, frame, 0, wirelen, ())

    def _loopback(self, ts: float, frame: bytes, wirelen: int) -> Packet | None:
        """BSD (host byte order) and OpenBSD (network byte order) loopback.

        Address families are small numbers, so a value with bits in its upper half was
        written in the other byte order (as libpcap also reasons).
        """
        try:
            family = _LOOP_AF.unpack_from(frame, 0)[0]
        except struct.error:
            self.malformed += 1
            return None
        if family > 0xFFFF:
            family = int.from_bytes(family.to_bytes(4, "little"), "big")
        handler = self._by_family.get(family)
        if handler is None:
            self.non_ip += 1
            return None
        return handler(ts, frame, LOOP_HEADER, wirelen, ())

    # -- network layer -------------------------------------------------------------------

    def _short_ip(self, frame: bytes, wirelen: int) -> None:
        """Count an IP packet that claims more bytes than the frame holds."""
        if wirelen > len(frame):
            self.truncated += 1  # the capture's snap length cut it
        else:
            self.malformed += 1

    def _ipv4(
        self, ts: float, frame: bytes, off: int, wirelen: int, vlan: tuple[int, ...]
    ) -> Packet | None:
        self.ip += 1
        try:
            vihl, total, ident, frag, proto, src, dst = _IPV4.unpack_from(frame, off)
        except struct.error:
            self._short_ip(frame, wirelen)
            return None
        if vihl == IPV4_PLAIN:
            hlen = IPV4_MIN_HEADER
        else:
            hlen = (vihl & 0x0F) << 2
            if vihl >> 4 != 4 or hlen < IPV4_MIN_HEADER:
                self.malformed += 1
                return None
        if total == 0:
            total = len(frame) - off  # TCP segmentation offload: the sender's capture shows 0
        if total < hlen:
            self.malformed += 1
            return None
        # The end is the IP total length: anything after it is Ethernet padding or FCS.
        end = off + total
        if end > len(frame):
            self._short_ip(frame, wirelen)
            return None
        if frag & IPV4_FRAGMENT_BITS:
            return self._ipv4_fragment(
                ts, frame, off + hlen, end, wirelen, vlan, src, dst, ident, frag, proto
            )
        handler = self._by_proto.get(proto)
        if handler is None:
            self.not_tcp_udp += 1
            return None
        return handler(ts, 4, src, dst, frame, off + hlen, end, wirelen, vlan)

    def _ipv4_fragment(
        self,
        ts: float,
        frame: bytes,
        start: int,
        end: int,
        wirelen: int,
        vlan: tuple[int, ...],
        src: bytes,
        dst: bytes,
        ident: int,
        frag: int,
        proto: int,
    ) -> Packet | None:
        self.ip_fragments += 1
        handler = self._by_proto.get(proto)
        if handler is None:
            self.not_tcp_udp += 1  # not worth the memory: nothing above would use it
            return None
        done = self._frag.add(
            ts,
            (src, dst, ident, proto),
            (frag & IPV4_OFFSET_MASK) << 3,
            frame[start:end],
            bool(frag & IPV4_MF),
            wirelen,
        )
        self.ip_frag_dropped = self._frag.dropped
        if done is None:
            return None
        self.ip_reassembled += 1
        payload, total_wirelen = done
        return handler(ts, 4, src, dst, payload, 0, len(payload), total_wirelen, vlan)

    def _ipv6(
        self, ts: float, frame: bytes, off: int, wirelen: int, vlan: tuple[int, ...]
    ) -> Packet | None:
        self.ip += 1
        try:
            vtc, plen, next_header, src, dst = _IPV6.unpack_from(frame, off)
        except struct.error:
            self._short_ip(frame, wirelen)
            return None
        if vtc >> 4 != 6:
            self.malformed += 1
            return None
        start = off + IPV6_HEADER
        if plen == 0:
            end = len(frame)  # segmentation offload (or a jumbogram, RFC 2675): use what is there
        else:
            # The end is the payload length: anything after it is Ethernet padding or FCS.
            end = start + plen
            if end > len(frame):
                self._short_ip(frame, wirelen)
                return None
        return self._ipv6_chain(ts, src, dst, next_header, frame, start, end, wirelen, vlan, True)

    def _ipv6_chain(
        self,
        ts: float,
        src: bytes,
        dst: bytes,
        next_header: int,
        buf: bytes,
        off: int,
        end: int,
        wirelen: int,
        vlan: tuple[int, ...],
        may_fragment: bool,
    ) -> Packet | None:
        """Follow the extension-header chain in ``buf[off:end]`` to TCP or UDP.

        ``may_fragment`` is False inside a reassembled payload: a fragment header there
        would be a fragment of a fragment, which RFC 8200 does not allow.
        """
        for _ in range(MAX_IPV6_EXT_HEADERS):
            handler = self._by_proto.get(next_header)
            if handler is not None:
                return handler(ts, 6, src, dst, buf, off, end, wirelen, vlan)
            if next_header == IpProto.FRAGMENT:
                if not may_fragment or off + IPV6_FRAG_HEADER > end:
                    self.malformed += 1
                    return None
                next_header, offset_m, ident = _IPV6_FRAG.unpack_from(buf, off)
                off += IPV6_FRAG_HEADER
                if offset_m & 0xFFF9 == 0:
                    continue  # atomic fragment (offset 0, no more): RFC 6946, just go on
                return self._ipv6_fragment(
                    ts, src, dst, next_header, buf[off:end], offset_m, ident, wirelen, vlan
                )
            ext = _IPV6_EXT_LENGTH.get(next_header)
            if ext is None:
                self.not_tcp_udp += 1  # ICMPv6, ESP, No Next Header, ...
                return None
            if off + 2 > end:
                self.malformed += 1
                return None
            unit, bias = ext
            next_header = buf[off]
            off += (buf[off + 1] + bias) * unit
            if off > end:
                self.malformed += 1
                return None
        self.malformed += 1  # longer chain than any legitimate packet carries
        return None

    def _ipv6_fragment(
        self,
        ts: float,
        src: bytes,
        dst: bytes,
        next_header: int,
        data: bytes,
        offset_m: int,
        ident: int,
        wirelen: int,
        vlan: tuple[int, ...],
    ) -> Packet | None:
        self.ip_fragments += 1
        if next_header not in self._by_proto and next_header not in _IPV6_EXT_LENGTH:
            self.not_tcp_udp += 1  # not worth the memory: nothing above would use it
            return None
        done = self._frag.add(
            ts, (src, dst, ident, next_header), offset_m & 0xFFF8, data, bool(offset_m & 1), wirelen
        )
        self.ip_frag_dropped = self._frag.dropped
        if done is None:
            return None
        self.ip_reassembled += 1
        payload, total_wirelen = done
        return self._ipv6_chain(
            ts, src, dst, next_header, payload, 0, len(payload), total_wirelen, vlan, False
        )

    # -- transport layer -----------------------------------------------------------------

    def _tcp(
        self,
        ts: float,
        version: int,
        src: bytes,
        dst: bytes,
        buf: bytes,
        off: int,
        end: int,
        wirelen: int,
        vlan: tuple[int, ...],
    ) -> Packet | None:
        try:
            sport, dport, seq, ack, data_offset, flags = _TCP.unpack_from(buf, off)
        except struct.error:
            self.malformed += 1
            return None
        hlen = (data_offset >> 4) << 2
        if hlen < TCP_MIN_HEADER or off + hlen > end:
            self.malformed += 1
            return None
        return Packet(
            ts,
            version,
            src,
            dst,
            PROTO_TCP,
            sport,
            dport,
            buf[off + hlen : end],
            wirelen,
            flags,
            seq,
            ack,
            vlan,
        )

    def _udp(
        self,
        ts: float,
        version: int,
        src: bytes,
        dst: bytes,
        buf: bytes,
        off: int,
        end: int,
        wirelen: int,
        vlan: tuple[int, ...],
    ) -> Packet | None:
        try:
            sport, dport, length = _UDP.unpack_from(buf, off)
        except struct.error:
            self.malformed += 1
            return None
        if length < UDP_HEADER or off + length > end:
            self.malformed += 1
            return None
        return Packet(
            ts,
            version,
            src,
            dst,
            PROTO_UDP,
            sport,
            dport,
            buf[off + UDP_HEADER : off + length],
            wirelen,
        )
