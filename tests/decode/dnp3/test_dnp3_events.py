"""Every decoder event, raised through the parser (one test each)."""

from __future__ import annotations

import pytest

from otids.decode.base import DecoderEvent, Direction, Record
from otids.decode.dnp3 import Dnp3Parser, Dnp3Transaction
from otids.decode.dnp3.crc import append_crc
from otids.decode.dnp3.events import EVENTS, Dnp3Event
from otids.decode.dnp3.link import build_frame
from otids.decode.dnp3.parser import MAX_PENDING
from otids.decode.dnp3.transport import MAX_SEGMENT_DATA, encode_fragment

TS, TC = Direction.TO_SERVER, Direction.TO_CLIENT
READ = bytes([0xC1, 0x01, 60, 2, 0x06])  # FIR FIN seq 1, read, g60v2 all


def frames(fragment: bytes, dst: int = 10, src: int = 1, control: int = 0xC4) -> bytes:
    return encode_fragment(fragment, control, dst, src)


def events_of(records: list[Record]) -> list[str]:
    return [r.name for r in records if isinstance(r, DecoderEvent)]


def feed(*chunks: bytes, direction: Direction = TS, datagram: bool = False) -> list[Record]:
    parser = Dnp3Parser(datagram)
    records: list[Record] = []
    for chunk in chunks:
        records += parser.feed(direction, chunk, 1.0)
    return records


def test_flooded() -> None:
    chunks = [frames(bytes([0xC0 | (n & 0x0F), 0x01, 60, 1, 0x06]), src=n // 16 + 1)
              for n in range(MAX_PENDING + 10)]  # fmt: skip
    records = feed(*chunks)
    assert events_of(records) == [Dnp3Event.FLOODED]
    # A response ends the run; a new run floods again.
    parser = Dnp3Parser()
    for chunk in chunks[: MAX_PENDING + 1]:
        parser.feed(TS, chunk, 1.0)
    parser.feed(TC, frames(bytes([0xC0, 0x81, 0, 0]), dst=1, src=10, control=0x44), 1.0)
    again = [r for chunk in chunks[: MAX_PENDING + 1] for r in parser.feed(TS, chunk, 2.0)]
    assert events_of(again) == [Dnp3Event.FLOODED]


def test_len_too_small_link_length() -> None:
    header = append_crc(bytes([0x05, 0x64, 0x04, 0xC4, 10, 0, 1, 0]))
    assert events_of(feed(header + frames(READ))) == [Dnp3Event.LEN_TOO_SMALL]


def test_len_too_small_user_data_without_transport_header() -> None:
    assert events_of(feed(build_frame(0xC4, 10, 1))) == [Dnp3Event.LEN_TOO_SMALL]


def test_len_too_small_fragment() -> None:
    assert events_of(feed(frames(bytes([0xC0])))) == [Dnp3Event.LEN_TOO_SMALL]
    response_without_iin = frames(bytes([0xC0, 0x81, 0x00]), control=0x44)
    assert events_of(feed(response_without_iin, direction=TC)) == [Dnp3Event.LEN_TOO_SMALL]


def test_bad_link_crc() -> None:
    bad = bytearray(frames(READ))
    bad[8] ^= 0x55
    records = feed(bytes(bad) + frames(READ))
    assert events_of(records) == [Dnp3Event.BAD_LINK_CRC]
    assert sum(isinstance(r, Dnp3Transaction) for r in records) == 1  # resynchronised


def test_bad_transport_crc() -> None:
    bad = bytearray(frames(READ))
    bad[-2] ^= 0x55
    assert events_of(feed(bytes(bad))) == [Dnp3Event.BAD_TRANSPORT_CRC]


@pytest.mark.parametrize(("dst", "src"), [(0xFFF0, 1), (0xFFFB, 1), (10, 0xFFF5)])
def test_reserved_address(dst: int, src: int) -> None:
    assert events_of(feed(frames(READ, dst=dst, src=src))) == [Dnp3Event.RESERVED_ADDRESS]


def test_broadcast_address_is_not_reserved() -> None:
    assert events_of(feed(frames(READ, dst=0xFFFC))) == []


def test_dropped_segment() -> None:
    segment = build_frame(0xC4, 10, 1, bytes([0x05]) + READ)  # FIR clear, nothing pending
    records = feed(segment)
    assert events_of(records) == [Dnp3Event.DROPPED_SEGMENT]


def test_too_long_reassembly() -> None:
    fragment = bytes([0xC2, 0x02]) + bytes(MAX_SEGMENT_DATA * 65)
    records = feed(frames(fragment))
    assert events_of(records) == [Dnp3Event.TOO_LONG_REASSEMBLY]


def test_unknown_object() -> None:
    records = feed(frames(bytes([0xC1, 0x02, 99, 9, 0x00, 0, 0, 1])))
    assert events_of(records) == [Dnp3Event.UNKNOWN_OBJECT]
    (event,) = [r for r in records if isinstance(r, DecoderEvent)]
    assert event.tx is not None and event.tx.events == [Dnp3Event.UNKNOWN_OBJECT]


def test_too_many_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("otids.decode.dnp3.objects.MAX_OBJECTS", 2)
    records = feed(frames(bytes([0xC1, 0x01]) + bytes([60, 1, 0x06]) * 3))
    assert events_of(records) == [Dnp3Event.TOO_MANY_OBJECTS]


def test_too_many_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("otids.decode.dnp3.objects.MAX_POINTS", 4)
    write = bytes([0xC1, 0x02, 80, 1, 0x00, 0, 7, 0x00])  # 8 packed IIN bits
    assert events_of(feed(frames(write))) == [Dnp3Event.TOO_MANY_POINTS]


def test_malformed() -> None:
    write = bytes([0xC1, 0x02, 30, 1, 0x00, 5, 2])  # range stop below start
    assert events_of(feed(frames(write))) == [Dnp3Event.MALFORMED]


def test_reserved_function() -> None:
    records = feed(frames(bytes([0xC1, 0x70])))
    assert events_of(records) == [Dnp3Event.RESERVED_FUNCTION]
    (tx,) = [r for r in records if isinstance(r, Dnp3Transaction)]
    assert tx.func_name == "reserved_112" and tx.request is not None


def test_non_dnp3_traffic() -> None:
    assert events_of(feed(b"HELO example.com\r\n" + frames(READ))) == [Dnp3Event.NON_DNP3_TRAFFIC]


def test_gap() -> None:
    parser = Dnp3Parser()
    assert events_of(parser.gap(TC, 1.0)) == [Dnp3Event.GAP]


def test_every_event_is_tested() -> None:
    tested = [name.removeprefix("test_") for name in globals() if name.startswith("test_")]
    for event in Dnp3Event:
        short = event.value.removeprefix("dnp3.")
        assert any(t.startswith(short) for t in tested), short
    assert set(EVENTS) == {e.value for e in Dnp3Event}
