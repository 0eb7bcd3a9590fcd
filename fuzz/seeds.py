"""Seed inputs for the fuzz targets, cut from the sample captures in ``pcaps/``.

Dissector seeds are real conversations (each flow's payloads, in capture order, in the
chunk framing of :mod:`fuzz.targets`); link seeds are runs of real frames; reader seeds the
heads of real files plus a small hand-built pcapng. Mutating real traffic reaches deep
states far sooner than random bytes do.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from pathlib import Path

from fuzz.targets import LINKTYPES, encode

REPO = Path(__file__).resolve().parents[1]
PCAPS = REPO / "pcaps"
PORTS = {"modbus": 502, "dnp3": 20000}
# Long conversations are cut into seeds of about this size (at most SEEDS_PER_FLOW of them):
# the cost of every mutant grows with its size, and a few messages reach every state.
SEED_FLOW_BYTES = 768
SEEDS_PER_FLOW = 8
READER_SEED_BYTES = 2048  # file heads: a header and a few records
LINK_SEED_FRAMES = 6


def _packets(path: Path) -> list[tuple[int, bytes]]:
    from otids.capture.readers import open_capture

    with open_capture(path) as reader:
        return [(linktype, frame) for _, linktype, frame, _ in reader]


def dissector_seeds(protocol: str) -> list[bytes]:
    """One seed per flow of ``protocol`` in pcaps/: control byte, then its payloads."""
    from otids.capture.link import PacketDecoder

    port = PORTS[protocol]
    seeds: list[bytes] = []
    for path in sorted(PCAPS.glob("*.pcap")):
        decoder = PacketDecoder()
        flows: dict[tuple[bytes, bytes, int, int, int], list[tuple[int, bytes]]]
        flows = defaultdict(list)
        for n, (linktype, frame) in enumerate(_packets(path)):
            pkt = decoder.decode(float(n), linktype, frame, len(frame))
            if pkt is None or not pkt.payload or port not in (pkt.sport, pkt.dport):
                continue
            to_client = pkt.sport == port
            key = (
                (pkt.dst, pkt.src, pkt.dport, pkt.sport, pkt.proto)
                if to_client
                else (pkt.src, pkt.dst, pkt.sport, pkt.dport, pkt.proto)
            )
            flows[key].append((int(to_client), pkt.payload))
        for key, pieces in flows.items():
            control = bytes([1 if key[4] == 17 else 0])
            cut: list[tuple[int, bytes]] = []
            size = 0
            count = 0
            for piece in pieces:
                cut.append(piece)
                size += len(piece[1])
                if size >= SEED_FLOW_BYTES:
                    seeds.append(control + encode(cut))
                    cut, size, count = [], 0, count + 1
                    if count == SEEDS_PER_FLOW:
                        break
            if cut and count < SEEDS_PER_FLOW:
                seeds.append(control + encode(cut))
    return seeds


def link_seeds() -> list[bytes]:
    """Runs of consecutive frames of each sample capture, with their link type index."""
    seeds: list[bytes] = []
    for path in sorted(PCAPS.glob("*.pcap")):
        packets = _packets(path)
        for start in range(0, min(len(packets), 60), LINK_SEED_FRAMES * 3):
            run = packets[start : start + LINK_SEED_FRAMES]
            if run:
                head = bytes([LINKTYPES.index(run[0][0])])
                seeds.append(head + encode([(0, frame) for _, frame in run]))
    return seeds


def _pcapng() -> bytes:
    """A little-endian pcapng: section header, Ethernet interface, one enhanced packet."""

    def block(kind: int, body: bytes) -> bytes:
        body += b"\0" * (-len(body) % 4)
        size = len(body) + 12
        return struct.pack("<II", kind, size) + body + struct.pack("<I", size)

    frame = bytes(14) + b"\x45" + bytes(19)
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb = block(1, struct.pack("<HHI", 1, 0, 65535) + struct.pack("<HHB3x", 9, 1, 6) + bytes(4))
    epb = block(6, struct.pack("<IIIII", 0, 0, 1, len(frame), len(frame)) + frame)
    spb = block(3, struct.pack("<I", len(frame)) + frame)
    return shb + idb + epb + spb + block(0x0BAD, b"unknown block")


def reader_seeds() -> list[bytes]:
    """Heads of the sample captures and a hand-built pcapng."""
    seeds = [path.read_bytes()[:READER_SEED_BYTES] for path in sorted(PCAPS.glob("*.pcap"))]
    seeds.append(_pcapng())
    return seeds


def tcp_seeds() -> list[bytes]:
    """Segments in order, reordered, overlapping and acknowledged (see ``fuzz.targets.tcp``)."""

    def op(kind: int, offset: int, payload: bytes = b"") -> bytes:
        return struct.pack(">BHB", kind, offset, len(payload)) + payload

    return [
        op(3, 0) + op(0, 1, b"abcd") + op(0, 5, b"efgh") + op(2, 9),
        op(0, 10, b"klmn") + op(0, 0, b"0123456789") + op(1, 20),
        op(0, 0, b"abc") + op(0, 8, b"xyz") + op(0, 6, b"QQQQ") + op(0, 2, b"cdefgh"),
        op(0, 300, b"w" * 20) + op(0, 340, b"v" * 20) + op(1, 400) + op(0, 250, b"u" * 100),
    ]


def seeds(target: str) -> list[bytes]:
    """The seed inputs of ``target`` (a key of :data:`fuzz.targets.TARGETS`)."""
    if target in PORTS:
        return dissector_seeds(target)
    return {"link": link_seeds, "readers": reader_seeds, "tcp": tcp_seeds}[target]()
