#!/usr/bin/env python3
"""Rewrite a capture's TCP flows to try evading the IDS by segmentation (issues 4 and 8).

The rewritten capture carries the same application bytes as the original, so an IDS that
reassembles TCP and DNP3 transport correctly must raise the same alerts on both:

* ``bytes``: every TCP payload byte travels in its own segment. Sequence numbers stay in the
  original sequence space (segment *i* of a packet starting at ``seq`` starts at ``seq + i``),
  so every ACK, the handshake and the FIN stay valid unchanged.
* ``reverse-pairs``: as ``bytes``, then the one-byte segments cut from one packet are sent
  pairwise swapped (1 0 3 2 ...): out-of-order delivery. Swapping happens within a packet
  only, so no byte overtakes the other direction's traffic (which would change what the
  peer answered to, not just how it was delivered). One exception: the first data packet of
  a direction whose start the capture does not show (no SYN from it, no ACK from its peer
  before it) stays in order, since no receiver of a midstream capture can know that the
  first byte it sees is not the stream's start.
* ``dnp3-transport``: in TCP flows to or from port 20000, every application fragment that
  travels in one transport segment (FIR and FIN set) is re-framed over one link frame per
  octet of fragment (more octets per frame in long fragments, see :data:`MAX_SEGMENTS`), each
  with its own transport header and correct CRCs. The stream grows, so sequence numbers of
  later segments and the peer's ACKs are shifted to match. Packets whose payload is not a
  whole number of valid link frames are copied unchanged.
* ``duplicate``: every TCP data segment is sent twice in a row.
* ``overlap``: every data packet (of a direction whose start is known, as for
  ``reverse-pairs``) is sent as its tail, then a segment of junk covering exactly that tail
  (different bytes: ``stream.overlap_mismatch``, and the buffered first-seen bytes win),
  then the head overlapping the tail's first byte with the true byte, then junk covering
  the whole packet again (a retransmission of bytes already delivered: ignored). An IDS
  that let later data win would decode junk.
* ``dnp3-link-split``: in TCP flows to or from port 20000, payloads are cut into segments
  of :data:`LINK_SPLIT` octets, so link headers, data blocks and their CRCs straddle
  segments.
* ``ip-fragments``: every IPv4 packet is fragmented into :data:`FRAGMENT_SIZE`-octet
  fragments (the TCP or UDP header itself is split), sent last fragment first.
* ``vlan``: an IEEE 802.1Q tag (VLAN :data:`VLAN_ID`) is inserted in every Ethernet frame.

Usage::

    .venv/bin/python scripts/resegment.py IN.pcap OUT.pcap --mode bytes
"""

from __future__ import annotations

import argparse
import bisect
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from scapy.layers.inet import IP, TCP, fragment
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Packet, Raw
from scapy.utils import PcapReader, PcapWriter

from otids.decode.dnp3.link import (
    HEADER_SIZE,
    MIN_LENGTH,
    build_frame,
    header_ok,
    strip_crcs,
)
from otids.decode.dnp3.transport import FIN_BIT, FIR_BIT, SEQ_MASK

DNP3_PORT = 20000
SEQ_MOD = 1 << 32
FIN_FLAG = 0x01
SYN_FLAG = 0x02
ACK_FLAG = 0x10
# Transport segments per re-framed fragment, at most: the 6-bit transport sequence number tells
# apart 64 consecutive segments, and Wireshark (used to check the output) fails to reassemble
# longer runs. Short fragments go one octet per segment, so the application control octet and
# the function code travel in different link frames.
MAX_SEGMENTS = 64
# dnp3-link-split: octets per segment. 7 cuts the 10-octet link header and every 18-octet
# data block (16 data + CRC) at a different place in successive frames.
LINK_SPLIT = 7
# ip-fragments: octets of IP payload per fragment (a multiple of 8, as the fragment offset
# counts 8-octet units); 8 splits the 20-octet TCP header over three fragments.
FRAGMENT_SIZE = 8
VLAN_ID = 100
JUNK = 0xEE  # the byte overlapping junk is made of (never equal to the whole true data)

FlowKey = tuple[str, int, str, int]


def tcp_payload(pkt: Packet) -> bytes:
    """The TCP payload of ``pkt`` without any link-layer padding."""
    tcp = pkt[TCP]
    raw = bytes(tcp)
    header = tcp.dataofs * 4 if tcp.dataofs else len(tcp) - len(tcp.payload)
    if pkt.haslayer(IP):
        ip = pkt[IP]
        end = ip.len - ip.ihl * 4
    else:
        end = pkt[IPv6].plen
    return raw[header:end]


def with_payload(pkt: Packet, seq: int, ack: int, payload: bytes) -> Packet:
    """A copy of ``pkt`` carrying ``payload`` at ``seq``, lengths and checksums recomputed."""
    new = pkt.copy()
    tcp = new[TCP]
    tcp.remove_payload()
    if payload:
        tcp.add_payload(Raw(payload))
    tcp.seq = seq % SEQ_MOD
    tcp.ack = ack % SEQ_MOD
    del tcp.chksum
    if new.haslayer(IP):
        del new[IP].len
        del new[IP].chksum
    else:
        del new[IPv6].plen
    new.time = pkt.time
    new.wirelen = None  # the copy would keep the original length on the wire
    return new


def split_bytes(pkt: Packet, reverse_pairs: bool) -> Iterator[Packet]:
    """``pkt`` with one segment per payload byte (pairwise swapped if ``reverse_pairs``)."""
    tcp = pkt[TCP]
    payload = tcp_payload(pkt)
    if len(payload) <= 1:
        yield pkt
        return
    pieces = [
        with_payload(pkt, tcp.seq + i, tcp.ack, payload[i : i + 1]) for i in range(len(payload))
    ]
    # Only the last byte keeps a FIN: the FIN's sequence number follows all the data.
    for piece in pieces[:-1]:
        piece[TCP].flags = int(tcp.flags) & ~FIN_FLAG
    if reverse_pairs:
        for i in range(0, len(pieces) - 1, 2):
            pieces[i], pieces[i + 1] = pieces[i + 1], pieces[i]
    yield from pieces


def split_chunks(pkt: Packet, size: int) -> Iterator[Packet]:
    """``pkt`` as segments of ``size`` payload octets (the FIN on the last one only)."""
    tcp = pkt[TCP]
    payload = tcp_payload(pkt)
    if len(payload) <= size:
        yield pkt
        return
    starts = range(0, len(payload), size)
    pieces = [with_payload(pkt, tcp.seq + i, tcp.ack, payload[i : i + size]) for i in starts]
    for piece in pieces[:-1]:
        piece[TCP].flags = int(tcp.flags) & ~FIN_FLAG
    yield from pieces


def junk_like(data: bytes) -> bytes:
    """Bytes of ``data``'s length that differ from it at least in the first octet."""
    first = JUNK if data[0] != JUNK else JUNK ^ 0xFF
    return bytes((first,)) + bytes([JUNK]) * (len(data) - 1)


def overlapping(pkt: Packet) -> Iterator[Packet]:
    """``pkt`` as tail, conflicting junk over the tail, head overlapping the tail by one
    true octet, then junk over everything (see the module doc, ``overlap``)."""
    tcp = pkt[TCP]
    payload = tcp_payload(pkt)
    if len(payload) < 2:
        yield pkt
        return
    half = len(payload) // 2
    flags = int(tcp.flags) & ~FIN_FLAG
    tail = with_payload(pkt, tcp.seq + half, tcp.ack, payload[half:])
    junk_tail = with_payload(pkt, tcp.seq + half, tcp.ack, junk_like(payload[half:]))
    head = with_payload(pkt, tcp.seq, tcp.ack, payload[: half + 1])
    junk_all = with_payload(pkt, tcp.seq, tcp.ack, junk_like(payload))
    for piece in (tail, junk_tail, head, junk_all):
        piece[TCP].flags = flags
    tail[TCP].flags = int(tcp.flags)  # the FIN (if any) follows the data: keep it once
    yield from (tail, junk_tail, head, junk_all)


def ip_fragments(pkt: Packet) -> list[Packet]:
    """``pkt``'s IPv4 packet as fragments of :data:`FRAGMENT_SIZE` octets, last first, when it
    is carried in a plain Ethernet frame; other packets unchanged."""
    if not isinstance(pkt, Ether) or not isinstance(pkt.payload, IP):
        return [pkt]
    # Rebuilt from its own length: Ethernet padding of short frames is not IP payload.
    ip = IP(bytes(pkt[IP])[: pkt[IP].len])
    if len(ip.payload) <= FRAGMENT_SIZE:
        return [pkt]
    del ip.chksum
    out = []
    for piece in reversed(fragment(ip, fragsize=FRAGMENT_SIZE)):
        frame = Ether(src=pkt.src, dst=pkt.dst, type=pkt.type) / piece
        frame.time = pkt.time
        out.append(frame)
    return out


def vlan_tagged(pkt: Packet) -> Packet:
    """``pkt`` with an 802.1Q tag after its Ethernet header (other link types unchanged)."""
    if not isinstance(pkt, Ether):
        return pkt
    tagged = Ether(src=pkt.src, dst=pkt.dst, type=0x8100) / Dot1Q(vlan=VLAN_ID, type=pkt.type)
    tagged = tagged / pkt.payload.copy()
    tagged.time = pkt.time
    return tagged


def link_frames(payload: bytes) -> list[tuple[int, int, int, bytes | None, bytes]] | None:
    """Split ``payload`` into (control, dst, src, user data, raw frame); None unless exact."""
    frames = []
    pos = 0
    while pos < len(payload):  # every pass advances pos or returns
        if payload[pos : pos + 2] != b"\x05\x64" or len(payload) - pos < HEADER_SIZE:
            return None
        if not header_ok(payload, pos):
            return None
        length = payload[pos + 2]
        if length < MIN_LENGTH:
            return None
        data_len = length - MIN_LENGTH
        end = pos + HEADER_SIZE + data_len + 2 * -(-data_len // 16)
        if end > len(payload):
            return None
        user = strip_crcs(payload, pos + HEADER_SIZE, end) if data_len else b""
        control = payload[pos + 3]
        dst = int.from_bytes(payload[pos + 4 : pos + 6], "little")
        src = int.from_bytes(payload[pos + 6 : pos + 8], "little")
        frames.append((control, dst, src, user, payload[pos:end]))
        pos = end
    return frames


def reframe_dnp3(payload: bytes) -> bytes:
    """``payload`` with every one-segment fragment spread over up to :data:`MAX_SEGMENTS` frames."""
    frames = link_frames(payload)
    if not frames:
        return payload
    out = []
    for control, dst, src, user, raw in frames:
        if not user or (user[0] & (FIR_BIT | FIN_BIT)) != FIR_BIT | FIN_BIT or len(user) < 3:
            out.append(raw)  # link-only, damaged, or already a multi-segment fragment
            continue
        fragment = user[1:]
        seq = user[0] & SEQ_MASK
        size = max(1, -(-(len(fragment) - 1) // (MAX_SEGMENTS - 1)))
        chunks = [fragment[:1]] + [fragment[i : i + size] for i in range(1, len(fragment), size)]
        for n, chunk in enumerate(chunks):
            th = ((seq + n) & SEQ_MASK) | (FIR_BIT if n == 0 else 0)
            th |= FIN_BIT if n == len(chunks) - 1 else 0
            out.append(build_frame(control, dst, src, bytes((th,)) + chunk))
    return b"".join(out)


class _Shift:
    """How far one direction's rewritten stream is ahead of the original, by sequence number."""

    def __init__(self) -> None:
        self.isn: int | None = None
        self.ends: list[int] = []  # relative end of each rewritten packet, increasing
        self.deltas: list[int] = []  # total growth after that packet
        self.at_start: dict[int, int] = {}  # relative start -> growth before (retransmissions)

    def rel(self, seq: int) -> int:
        if self.isn is None:
            self.isn = seq
        return (seq - self.isn) % SEQ_MOD

    def before(self, seq: int) -> int:
        """Growth of the stream before sequence number ``seq`` (an ACK or a segment start)."""
        if self.isn is None:
            return 0
        i = bisect.bisect_right(self.ends, self.rel(seq))
        return self.deltas[i - 1] if i else 0


def flow_keys(pkt: Packet) -> tuple[FlowKey, FlowKey]:
    """The direction ``pkt`` travels in, and the opposite one."""
    ip = pkt[IP] if pkt.haslayer(IP) else pkt[IPv6]
    tcp = pkt[TCP]
    return (ip.src, tcp.sport, ip.dst, tcp.dport), (ip.dst, tcp.dport, ip.src, tcp.sport)


def reframe_packets(packets: Iterator[Packet]) -> Iterator[Packet]:
    """dnp3-transport mode: re-frame DNP3 payloads, shift sequence numbers and ACKs."""
    shifts: dict[FlowKey, _Shift] = {}
    for pkt in packets:
        if not pkt.haslayer(TCP) or DNP3_PORT not in (pkt[TCP].sport, pkt[TCP].dport):
            yield pkt
            continue
        tcp = pkt[TCP]
        key, peer_key = flow_keys(pkt)
        mine = shifts.setdefault(key, _Shift())
        peer = shifts.setdefault(peer_key, _Shift())
        if int(tcp.flags) & SYN_FLAG:  # SYN: data starts one past it
            mine.isn = (tcp.seq + 1) % SEQ_MOD
        payload = tcp_payload(pkt)
        ack = tcp.ack + peer.before(tcp.ack) if int(tcp.flags) & ACK_FLAG else tcp.ack
        start = mine.rel(tcp.seq) if payload else None
        if start is not None and start in mine.at_start:  # a retransmission: same rewrite
            grown = mine.at_start[start]
            new_payload = reframe_dnp3(payload)
        else:
            grown = mine.before(tcp.seq)
            new_payload = reframe_dnp3(payload) if payload else payload
            if start is not None:
                mine.at_start[start] = grown
                mine.ends.append(start + len(payload))
                mine.deltas.append(grown + len(new_payload) - len(payload))
        yield with_payload(pkt, tcp.seq + grown, ack, new_payload)


def resegment(src: Path, dst: Path, mode: str) -> None:
    """Write ``src`` rewritten by ``mode`` (see the module docstring) to ``dst``."""
    with PcapReader(str(src)) as reader:
        linktype = reader.linktype
        packets = list(reader)
    out: list[Packet] = []
    if mode == "dnp3-transport":
        out.extend(reframe_packets(iter(packets)))
    elif mode in PACKET_MODES:
        for pkt in packets:
            out.extend(PACKET_MODES[mode](pkt))
    else:
        known: set[FlowKey] = set()  # directions whose next sequence number is known
        for pkt in packets:
            if not pkt.haslayer(TCP):
                out.append(pkt)
                continue
            key, peer = flow_keys(pkt)
            flags = int(pkt[TCP].flags)
            if mode == "overlap":
                out.extend(overlapping(pkt) if key in known else [pkt])
            else:
                reverse = mode == "reverse-pairs" and key in known
                out.extend(split_bytes(pkt, reverse))
            known.add(key)  # after a SYN or data, the next sequence number is known
            if flags & ACK_FLAG:
                known.add(peer)
    writer = PcapWriter(str(dst), linktype=linktype, sync=False)
    try:
        for pkt in out:
            writer.write(pkt)
    finally:
        writer.close()


def _duplicated(pkt: Packet) -> list[Packet]:
    return [pkt, pkt] if pkt.haslayer(TCP) and tcp_payload(pkt) else [pkt]


def _dnp3_split(pkt: Packet) -> Iterator[Packet]:
    if pkt.haslayer(TCP) and DNP3_PORT in (pkt[TCP].sport, pkt[TCP].dport):
        return split_chunks(pkt, LINK_SPLIT)
    return iter([pkt])


# Modes that rewrite each packet on its own: mode -> packet -> packets.
PACKET_MODES: dict[str, Callable[[Packet], Iterable[Packet]]] = {
    "duplicate": _duplicated,
    "dnp3-link-split": _dnp3_split,
    "ip-fragments": ip_fragments,
    "vlan": lambda pkt: [vlan_tagged(pkt)],
}
MODES = ("bytes", "reverse-pairs", "dnp3-transport", "overlap", *PACKET_MODES)


def main() -> None:
    """Command line: IN OUT --mode MODE."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, metavar="IN")
    parser.add_argument("dst", type=Path, metavar="OUT")
    parser.add_argument("--mode", choices=MODES, required=True)
    args = parser.parse_args()
    resegment(args.src, args.dst, args.mode)


if __name__ == "__main__":
    main()
