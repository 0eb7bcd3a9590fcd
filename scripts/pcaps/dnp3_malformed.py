"""Craft a DNP3/TCP session that raises each DNP3 decoder event: pcaps/dnp3-malformed.pcap.

Written with scapy (see ``crafted.py`` and ``dnp3_crafted.py``): a master (192.0.2.10, link
address 1) and an outstation (192.0.2.20:20000, link address 10); a handshake, then the
exchanges of ``EXCHANGES`` in order, then an orderly close. Each exchange names the decoder
event it must raise (None for normal traffic). The outstation answers what a conforming one
would (a function it does not know with IIN2 no_func_code_support, an object it does not
know with IIN2 object_unknown) and only acknowledges what it would discard. Packet numbers
(1-based, as Wireshark counts) are printed with ``--list``.

Requests longer than a TCP segment's 1448 octets are split, frames across segments. The
``gap`` exchange sends a request the capture then "loses": the outstation's ACK covers
bytes the capture never saw. The flood comes last: 33 read requests that the outstation only
acknowledges.

Usage: python scripts/pcaps/dnp3_malformed.py [--out pcaps/dnp3-malformed.pcap] [--list]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crafted import Side, TcpSession, run
from dnp3_crafted import (
    DNP3_PORT,
    MASTER_ADDRESS,
    MASTER_CONTROL,
    OUTSTATION_ADDRESS,
    OUTSTATION_CONTROL,
    Station,
    request,
    response,
)

from otids.decode.dnp3.crc import append_crc
from otids.decode.dnp3.link import build_frame
from otids.decode.dnp3.transport import FIN_BIT, FIR_BIT, MAX_SEGMENT_DATA, SEQ_MASK

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "dnp3-malformed.pcap"
FLOOD_REQUESTS = 33  # one more than the dissector's bound of requests without response
NO_FUNC_CODE_SUPPORT = 0x0001  # IIN2 bit 0
OBJECT_UNKNOWN = 0x0002  # IIN2 bit 1
RESERVED_ADDRESS = 0xFFF0

READ_CLASS_0 = bytes([60, 1, 0x06])  # g60v1 class 0 data, all points
BINARY_INPUTS = bytes([
    1, 2, 0x00, 0, 1,  # g1v2 binary input with flags, indexes 0-1
    0x81, 0x01,  # online, state on; online, state off
])  # fmt: skip

UNKNOWN_OBJECT = bytes([
    99, 1,  # g99v1: not a DNP3 object
    0x00, 0, 0,  # qualifier: 1-octet start and stop; index 0 to 0
    0x00, 0x00,  # two octets of whatever it is
])  # fmt: skip
ALL_INTERNAL_INDICATIONS = bytes([
    80, 1,  # g80v1 internal indications, packed
    0x01, 0x00, 0x00, 0xFF, 0xFF,  # qualifier: 2-octet start and stop; 0 to 65535
]) + bytes(65536 // 8)  # fmt: skip
MSS = 1448  # the master's TCP segments carry at most this much (a 1500-octet MTU)


@dataclass(frozen=True)
class Exchange:
    """What the master sends (raw bytes: frames, or not) and the outstation's answer."""

    title: str
    event: str | None  # the decoder event it must raise; None: normal, no event
    request: bytes  # bytes on the wire, link frames included
    response: bytes | None  # the outstation's frames; None: it only acknowledges
    lost: bool = False  # the capture misses the request's packet


def corrupt(frame: bytes, position: int) -> bytes:
    """``frame`` with the octet at ``position`` (a CRC's) inverted."""
    return frame[:position] + bytes((frame[position] ^ 0xFF,)) + frame[position + 1 :]


def segments(fragment: bytes, tseq: int, first: int, last: int) -> bytes:
    """The master's frames carrying transport segments ``first`` to ``last`` (inclusive,
    from 0) of ``fragment``, numbered from ``tseq``: a way to leave segments out."""
    step = MAX_SEGMENT_DATA
    chunks = [fragment[i : i + step] for i in range(0, len(fragment), step)]
    out = []
    for n in range(first, last + 1):
        th = ((tseq + n) & SEQ_MASK) | (FIR_BIT if n == 0 else 0)
        th |= FIN_BIT if n == len(chunks) - 1 else 0
        segment = bytes((th,)) + chunks[n]
        out.append(build_frame(MASTER_CONTROL, OUTSTATION_ADDRESS, MASTER_ADDRESS, segment))
    return b"".join(out)


def build_exchanges() -> list[Exchange]:
    """The exchanges, their frames numbered in order (transport sequence numbers)."""
    master = Station(MASTER_ADDRESS, OUTSTATION_ADDRESS, MASTER_CONTROL)
    outstation = Station(OUTSTATION_ADDRESS, MASTER_ADDRESS, OUTSTATION_CONTROL)
    out: list[Exchange] = []
    seq = 0  # the master's application sequence number

    def add(
        title: str, event: str | None, wire: bytes, answer: bytes | None, lost: bool = False
    ) -> None:
        nonlocal seq
        frames = None if answer is None else outstation.frames(answer)
        out.append(Exchange(title, event, wire, frames, lost))
        seq = (seq + 1) & 0x0F

    add(
        "1 read class 0 (normal)",
        None,
        master.frames(request(seq, 0x01, READ_CLASS_0)),
        response(seq, BINARY_INPUTS),
    )
    add(
        "2 link LENGTH 4 under a valid CRC",
        "dnp3.len_too_small",
        append_crc(
            bytes([0x05, 0x64, 0x04, MASTER_CONTROL, OUTSTATION_ADDRESS, 0, MASTER_ADDRESS, 0])
        ),
        None,
    )
    frame = master.frames(request(seq, 0x01, READ_CLASS_0))
    add("3 read whose link header CRC is wrong", "dnp3.bad_link_crc", corrupt(frame, 8), None)
    frame = master.frames(request(seq, 0x01, READ_CLASS_0))
    add(
        "4 read whose data block CRC is wrong",
        "dnp3.bad_transport_crc",
        corrupt(frame, len(frame) - 1),
        None,
    )
    add(
        "5 write of an object no table has (g99v1)",
        "dnp3.unknown_object",
        master.frames(request(seq, 0x02, UNKNOWN_OBJECT)),
        response(seq, iin=OBJECT_UNKNOWN),
    )
    add(
        "6 write of 65536 packed internal indications",
        "dnp3.too_many_points",
        master.frames(request(seq, 0x02, ALL_INTERNAL_INDICATIONS)),
        response(seq, iin=OBJECT_UNKNOWN),
    )
    add(
        "7 read naming class 0 2049 times",
        "dnp3.too_many_objects",
        master.frames(request(seq, 0x01, READ_CLASS_0 * 2049)),
        response(seq, BINARY_INPUTS),
    )
    fragment = request(seq, 0x02) + bytes(65 * MAX_SEGMENT_DATA - 2)
    add(
        "8 write of 65 full transport segments",
        "dnp3.too_long_reassembly",
        segments(fragment, master.transport_seq, 0, 64),
        None,
    )
    master.transport_seq = (master.transport_seq + 65) & SEQ_MASK
    add(
        "9 read with a reserved qualifier (range code 0xA)",
        "dnp3.malformed",
        master.frames(request(seq, 0x01, bytes([60, 1, 0x0A]))),
        response(seq, iin=OBJECT_UNKNOWN),
    )
    add(
        "10 request with reserved function code 0x70",
        "dnp3.reserved_function",
        master.frames(request(seq, 0x70)),
        response(seq, iin=NO_FUNC_CODE_SUPPORT),
    )
    add(
        "11 read sent to reserved link address 0xFFF0",
        "dnp3.reserved_address",
        master.frames(request(seq, 0x01, READ_CLASS_0), RESERVED_ADDRESS),
        None,
    )
    fragment = request(seq, 0x02) + bytes(2 * MAX_SEGMENT_DATA)
    add(
        "12 the last of a write's three transport segments, alone",
        "dnp3.dropped_segment",
        segments(fragment, master.transport_seq, 2, 2),
        None,
    )
    master.transport_seq = (master.transport_seq + 3) & SEQ_MASK
    add(
        "13 junk, then a read",
        "dnp3.non_dnp3_traffic",
        b"HELLO\r\n" + master.frames(request(seq, 0x01, READ_CLASS_0)),
        response(seq, BINARY_INPUTS),
    )
    add(
        "14 read the capture misses, acknowledged",
        "dnp3.gap",
        master.frames(request(seq, 0x01, READ_CLASS_0)),
        None,
        lost=True,
    )
    add(
        "15 read class 0 (normal)",
        None,
        master.frames(request(seq, 0x01, READ_CLASS_0)),
        response(seq, BINARY_INPUTS),
    )
    for n in range(FLOOD_REQUESTS):
        add(
            f"16 flood: read {n + 1} of {FLOOD_REQUESTS}, only acknowledged",
            "dnp3.flooded" if n == FLOOD_REQUESTS - 1 else None,
            master.frames(request(seq, 0x01, READ_CLASS_0)),
            None,
        )
    return out


EXCHANGES = build_exchanges()


def build() -> TcpSession:
    """The session: handshake, the exchanges, orderly close."""
    session = TcpSession(server_port=DNP3_PORT)
    session.open()
    for exchange in EXCHANGES:
        session.pause()
        session.mark(exchange.title)
        for start in range(0, len(exchange.request), MSS):  # long requests: several segments
            session.send(Side.CLIENT, exchange.request[start : start + MSS])
        if exchange.lost:
            session.packets.pop()  # sent, but not captured
        if exchange.response is None:
            session.ack(Side.SERVER)
        else:
            session.send(Side.SERVER, exchange.response)
            session.ack(Side.CLIENT)
    session.pause()
    session.close()
    return session


def main() -> None:
    """Parse the options, write the capture."""
    run(__doc__, DEFAULT_OUT, build)


if __name__ == "__main__":
    main()
