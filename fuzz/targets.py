"""Fuzz targets: one function per attack surface, taking arbitrary bytes.

A target must return normally whatever its input: bad bytes become decoder events, stream
anomalies, decoder counters or a capture warning, never an exception. Each target also
checks the bounds its component promises (buffers never beyond their named limits), so a
fuzzer finds memory blow-ups as well as crashes.

Inputs are structured by a tiny framing so that mutation reaches the interesting states
(several feeds, both directions, gaps) and seeds can be built from real captures:

    +--------+------------------+--------+------------------+-----
    | header | chunk (len bytes)| header | chunk            | ...
    +--------+------------------+--------+------------------+-----
    header: bit 0 direction (0 to server, 1 to client), bits 1-7 length;
            length 127 means "the rest of the input"

The first byte of a dissector input is a control byte (bit 0: datagram flow; bit 1: a gap
after the first chunk).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

from otids.capture.link import LinkType, PacketDecoder
from otids.capture.tcp import Gap, StreamAnomaly, TcpReassembler
from otids.decode.base import AppParser, DecoderEvent, Direction, Transaction
from otids.decode.dnp3 import Dnp3Parser
from otids.decode.modbus import ModbusParser
from otids.decode.modbus.framer import MAX_ADU

REST = 127  # chunk length meaning "to the end of the input"
_DIRS = (Direction.TO_SERVER, Direction.TO_CLIENT)
# Link types a link-decoder input can select with its first byte (modulo the count).
LINKTYPES = tuple(LinkType)


def chunks(data: bytes, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """Split ``data[start:]`` into ``(direction bit, chunk)`` pairs (see the module doc)."""
    pos, end = start, len(data)
    while pos < end:  # every turn consumes at least the header byte
        head = data[pos]
        length = head >> 1
        pos += 1
        stop = end if length == REST else min(pos + length, end)
        yield head & 1, data[pos:stop]
        pos = stop


def encode(pieces: list[tuple[int, bytes]]) -> bytes:
    """The inverse of :func:`chunks`: frame ``(direction bit, chunk)`` pairs (seed builder)."""
    out = bytearray()
    for direction, data in pieces:
        for i in range(0, len(data), REST - 1):
            part = data[i : i + REST - 1]
            out.append(len(part) << 1 | direction)
            out += part
    return bytes(out)


def _check_records(records: object) -> None:
    assert isinstance(records, list)
    for record in records:
        assert isinstance(record, Transaction | DecoderEvent), record
        if isinstance(record, Transaction):
            record.eve()
            record.summary()


def _dissector(factory: Callable[[bool], AppParser], data: bytes) -> AppParser | None:
    if not data:
        return None
    control = data[0]
    parser = factory(bool(control & 1))
    first = True
    for direction, chunk in chunks(data, 1):
        _check_records(parser.feed(_DIRS[direction], chunk, 1.0))
        if first and control & 2:
            _check_records(parser.gap(_DIRS[direction], 1.5))
        first = False
    closed = parser.close(2.0)
    _check_records(closed)
    assert all(isinstance(tx, Transaction) and tx.done for tx in closed)
    return parser


def modbus(data: bytes) -> None:
    """The Modbus/TCP dissector, fed chunks in both directions."""
    parser = _dissector(ModbusParser, data)
    if isinstance(parser, ModbusParser):
        for framer in parser._framers:
            assert len(framer._buffer) <= MAX_ADU


def dnp3(data: bytes) -> None:
    """The DNP3 dissector (link, transport, application), over TCP or UDP."""
    _dissector(Dnp3Parser, data)


# TCP reassembler input: a list of operations, each
#   | op (1) | seq offset (2, big endian) | length (1) | payload (length bytes) |
# op modulo 4: 0 segment, 1 peer ACK, 2 FIN, 3 set_isn. Offsets are relative to a base
# near 2**32 so that wrap-around is exercised.
TCP_BASE_SEQ = (1 << 32) - 300
TCP_OP_HEADER = 4


def tcp(data: bytes) -> None:
    """The TCP reassembler: random segments, ACKs, FINs; checks its bounds and invariants."""
    r = TcpReassembler(max_ooo_bytes=2048, max_ooo_segments=8)
    pos, end = 0, len(data)
    delivered = 0
    while pos + TCP_OP_HEADER <= end:  # every turn consumes at least the op header
        op, hi, lo, length = data[pos : pos + TCP_OP_HEADER]
        pos += TCP_OP_HEADER
        seq = (TCP_BASE_SEQ + (hi << 8 | lo)) & 0xFFFFFFFF
        payload = data[pos : pos + length]
        pos += length
        kind = op & 3
        if kind == 0:
            items = r.segment(seq, payload)
        elif kind == 1:
            items = r.peer_ack(seq)
        elif kind == 2:
            items = r.fin(seq)
        else:
            r.set_isn(seq)
            items = []
        for item in items:
            assert type(item) is bytes or isinstance(item, Gap | StreamAnomaly), item
            if type(item) is bytes:
                delivered += len(item)
        assert len(r.ooo) <= r.max_ooo_segments
        assert r.ooo_size <= r.max_ooo_bytes
        assert r.ooo_size == sum(len(c) for _, c in r.ooo)
        last = 0
        for start, chunk in r.ooo:  # sorted, positive, never overlapping
            assert start > 0 and start >= last and chunk, r.ooo
            last = start + len(chunk)
    r.flush()
    assert not r.ooo and r.ooo_size == 0


def link(data: bytes) -> None:
    """The link/IP/TCP/UDP decoder and IP fragment reassembly, over several frames."""
    if not data:
        return
    linktype = LINKTYPES[data[0] % len(LINKTYPES)]
    decoder = PacketDecoder(max_frag_bytes=4096, max_frag_datagrams=4)
    for n, (_, frame) in enumerate(chunks(data, 1)):
        pkt = decoder.decode(float(n), linktype, frame, len(frame))
        if pkt is not None:
            assert pkt.proto in (6, 17) and len(pkt.src) == len(pkt.dst) in (4, 16)
            assert 0 <= pkt.sport < 65536 and 0 <= pkt.dport < 65536


_CAPTURE_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None
_capture_file = tempfile.NamedTemporaryFile(  # noqa: SIM115 (one file for the process)
    prefix="otids-fuzz-", suffix=".pcap", dir=_CAPTURE_DIR
)


def readers(data: bytes) -> None:
    """The pcap/pcapng readers on an arbitrary file (through a reused temporary file)."""
    from otids.capture.readers import CaptureError, open_capture

    f = _capture_file
    f.seek(0)
    f.truncate()
    f.write(data)
    f.flush()
    try:
        reader = open_capture(f.name)
    except CaptureError as exc:
        assert "\n" not in str(exc)
        return
    with reader:
        for record in reader:  # bounded: the file is finite and every record consumes bytes
            ts, _, frame, _ = record
            assert isinstance(frame, bytes) and isinstance(ts, float)
    assert reader.warning is None or "\n" not in reader.warning


TARGETS: dict[str, Callable[[bytes], None]] = {
    "modbus": modbus,
    "dnp3": dnp3,
    "tcp": tcp,
    "link": link,
    "readers": readers,
}
