"""Transport function: FIR/FIN/sequence, reassembly per address pair, bounds."""

from __future__ import annotations

import pytest

from otids.decode.dnp3.events import Dnp3Event
from otids.decode.dnp3.link import LinkDecoder, LinkFrame
from otids.decode.dnp3.transport import (
    FIN_BIT,
    FIR_BIT,
    MAX_FRAGMENT,
    MAX_PARTIALS,
    MAX_SEGMENT_DATA,
    Events,
    Reassembler,
    encode_fragment,
)

KEY = (0, 1, 10)  # direction, source, destination


def segment(seq: int, data: bytes, fir: bool = False, fin: bool = False) -> bytes:
    return bytes([seq | (FIR_BIT if fir else 0) | (FIN_BIT if fin else 0)]) + data


def test_transport_header_bits() -> None:
    assert segment(5, b"", fir=True, fin=True) == bytes([0xC5])  # FIN bit 7, FIR bit 6
    assert segment(63, b"", fin=True) == bytes([0xBF])


def test_single_segment_fragment() -> None:
    events: Events = []
    assert Reassembler().push(KEY, segment(5, b"\xc4\x01", True, True), events) == b"\xc4\x01"
    assert events == []


def test_three_segments() -> None:
    r, events = Reassembler(), []
    assert r.push(KEY, segment(62, b"ab", fir=True), events) is None
    assert r.push(KEY, segment(63, b"cd"), events) is None
    assert r.push(KEY, segment(0, b"ef", fin=True), events) == b"abcdef"  # sequence wraps
    assert events == []


def test_first_segment_at_63_wraps_to_0() -> None:
    """The shape of ICSNPP ``dnp3.analyzer.basic`` frames 17-18 (FIR at 63, FIN at 0), which
    Wireshark 4.0 leaves unreassembled: IEEE 1815 counts the sequence modulo 64."""
    r, events = Reassembler(), []
    assert r.push(KEY, segment(63, b"ab", fir=True), events) is None
    assert r.push(KEY, segment(0, b"cd", fin=True), events) == b"abcd"
    assert events == []


def test_address_pairs_reassemble_apart() -> None:
    r, events = Reassembler(), []
    other = (0, 2, 10)
    r.push(KEY, segment(1, b"a", fir=True), events)
    r.push(other, segment(7, b"x", fir=True), events)
    assert r.push(KEY, segment(2, b"b", fin=True), events) == b"ab"
    assert r.push(other, segment(8, b"y", fin=True), events) == b"xy"
    assert events == []


@pytest.mark.parametrize(
    ("segments", "detail"),
    [
        ([segment(3, b"a")], "without a first one"),  # not FIR while idle
        ([segment(3, b"a", fir=True), segment(5, b"b", fin=True)], "where 4 was expected"),
        ([segment(3, b"a", fir=True), segment(9, b"b", fir=True, fin=True)], "were pending"),
    ],
)
def test_dropped_segment(segments: list[bytes], detail: str) -> None:
    r, events = Reassembler(), []
    for seg in segments:
        r.push(KEY, seg, events)
    assert [e for e, _ in events] == [Dnp3Event.DROPPED_SEGMENT]
    assert detail in events[0][1]


def test_out_of_sequence_discards_partial() -> None:
    r, events = Reassembler(), []
    r.push(KEY, segment(3, b"a", fir=True), events)
    r.push(KEY, segment(5, b"b"), events)
    # The partial fragment is gone: the next continuation has nothing to follow.
    r.push(KEY, segment(6, b"c", fin=True), events)
    assert [e for e, _ in events] == [Dnp3Event.DROPPED_SEGMENT] * 2


def test_too_long_reassembly() -> None:
    r, events = Reassembler(), []
    full = bytes(MAX_SEGMENT_DATA)
    r.push(KEY, segment(0, full, fir=True), events)
    for seq in range(1, 64):  # 64 full segments: exactly the bound, accepted
        r.push(KEY, segment(seq, full), events)
    assert events == []
    # The 65th goes over; the rest of the fragment is discarded quietly.
    assert r.push(KEY, segment(0, full), events) is None
    assert r.push(KEY, segment(1, full), events) is None
    assert r.push(KEY, segment(2, full, fin=True), events) is None
    assert [e for e, _ in events] == [Dnp3Event.TOO_LONG_REASSEMBLY]
    assert r.push(KEY, segment(3, b"ok", True, True), events) == b"ok"
    assert MAX_FRAGMENT == 64 * 249


def test_partials_are_bounded() -> None:
    r, events = Reassembler(), []
    for src in range(MAX_PARTIALS + 5):
        r.push((0, src, 10), segment(0, b"a", fir=True), events)
    assert len(r._partials) == MAX_PARTIALS
    assert [e for e, _ in events] == [Dnp3Event.DROPPED_SEGMENT] * 5


def test_drop_direction() -> None:
    r, events = Reassembler(), []
    r.push((0, 1, 10), segment(0, b"a", fir=True), events)
    r.push((1, 10, 1), segment(0, b"b", fir=True), events)
    r.drop(0)
    assert r.push((1, 10, 1), segment(1, b"c", fin=True), events) == b"bc"
    assert r.push((0, 1, 10), segment(1, b"d", fin=True), events) is None


@pytest.mark.parametrize("size", [0, 1, 249, 250, 2048, MAX_FRAGMENT])
def test_encode_fragment_round_trip(size: int) -> None:
    fragment = bytes(i & 0xFF for i in range(size))
    stream = encode_fragment(fragment, 0x44, 1, 10, seq=60)
    r, events = Reassembler(), []
    out = [
        r.push(KEY, item.user_data, events)
        for item in LinkDecoder(False).feed(stream)
        if isinstance(item, LinkFrame)
    ]
    assert out[-1] == fragment and events == []
    assert len(out) == max(1, -(-size // MAX_SEGMENT_DATA))
