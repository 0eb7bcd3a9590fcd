"""Object headers (every qualifier) and point decoding (every group/variation in the table)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from otids.decode.dnp3.events import Dnp3Event
from otids.decode.dnp3.objects import (
    MAX_OBJECTS,
    MAX_POINTS,
    SPECS,
    ParsedObjects,
    parse_objects,
)


def parse(data: bytes, header_only: bool = False) -> ParsedObjects:
    return parse_objects(data, 0, header_only)


def only_object(data: bytes, header_only: bool = False) -> Any:
    parsed = parse(data, header_only)
    assert parsed.events == [] and parsed.complete
    (obj,) = parsed.objects
    return obj


# -- qualifiers ---------------------------------------------------------------------------

# (qualifier, range field, points' octets, start, stop, count, indexes); g30v4 is a 16-bit
# analog input without flag (2 octets a point), so the data below is one value per point.
QUALIFIERS = [
    (0x00, bytes([3, 4]), bytes(4), 3, 4, 2, [3, 4]),  # 1-octet start/stop
    (0x01, struct.pack("<HH", 300, 301), bytes(4), 300, 301, 2, [300, 301]),  # 2-octet
    (0x02, struct.pack("<II", 70000, 70000), bytes(2), 70000, 70000, 1, [70000]),  # 4-octet
    (0x03, bytes([1, 1]), bytes(2), 1, 1, 1, [1]),  # 1-octet virtual addresses
    (0x04, struct.pack("<HH", 2, 3), bytes(4), 2, 3, 2, [2, 3]),  # 2-octet virtual
    (0x05, struct.pack("<II", 9, 9), bytes(2), 9, 9, 1, [9]),  # 4-octet virtual
    (0x06, b"", b"", 0, 0, 0, []),  # all points, no range field
    (0x07, bytes([2]), bytes(4), 0, 0, 2, [0, 1]),  # 1-octet count
    (0x08, struct.pack("<H", 1), bytes(2), 0, 0, 1, [0]),  # 2-octet count
    (0x09, struct.pack("<I", 1), bytes(2), 0, 0, 1, [0]),  # 4-octet count
    # 1-octet count, 1-octet index prefix: [index][value] per point.
    (0x17, bytes([2]), bytes([7, 0, 0, 9, 0, 0]), 0, 0, 2, [7, 9]),
    # 2-octet count, 2-octet index prefix.
    (0x28, struct.pack("<H", 1), struct.pack("<Hh", 513, -1), 0, 0, 1, [513]),
    # 4-octet count, 4-octet index prefix.
    (0x39, struct.pack("<I", 1), struct.pack("<Ih", 70000, 5), 0, 0, 1, [70000]),
    # 1-octet count, 2-octet index prefix, and 1-octet start/stop with an index prefix.
    (0x27, bytes([1]), struct.pack("<Hh", 4, 5), 0, 0, 1, [4]),
    (0x10, bytes([0, 0]), bytes([6, 0, 0]), 0, 0, 1, [6]),
    # Size prefixes (codes 4-6) with counts: [size][value].
    (0x47, bytes([1]), bytes([2, 1, 0]), 0, 0, 1, [0]),
    (0x58, struct.pack("<H", 1), struct.pack("<Hh", 2, 3), 0, 0, 1, [0]),
    (0x69, struct.pack("<I", 1), struct.pack("<Ih", 2, 3), 0, 0, 1, [0]),
    # Free format: 1-octet count of size-prefixed objects.
    (0x4B, bytes([1]), bytes([2, 1, 0]), 0, 0, 1, [0]),
    (0x5B, bytes([1]), struct.pack("<Hh", 2, 7), 0, 0, 1, [0]),
    (0x6B, bytes([1]), struct.pack("<Ih", 2, 7), 0, 0, 1, [0]),
]


@pytest.mark.parametrize(
    ("qualifier", "range_field", "points", "start", "stop", "count", "indexes"), QUALIFIERS
)
def test_qualifier(
    qualifier: int,
    range_field: bytes,
    points: bytes,
    start: int,
    stop: int,
    count: int,
    indexes: list[int],
) -> None:
    obj = only_object(bytes([30, 4, qualifier]) + range_field + points)
    assert (obj.prefix_code, obj.range_code) == (qualifier >> 4, qualifier & 0x0F)
    assert (obj.start, obj.stop, obj.count) == (start, stop, count)
    assert obj.indexes == indexes
    eve = obj.eve()
    assert eve["qualifier"] == qualifier and eve["count"] == count
    assert ("points" in eve) == bool(indexes)


def test_size_prefixed_points_report_size() -> None:
    obj = only_object(bytes([30, 4, 0x5B, 1]) + struct.pack("<Hh", 2, -7))
    assert obj.points == [{"prefix": 2, "index": 0, "size": 2, "value": -7}]


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (bytes([30, 4, 0x0A]), "reserved range code 0xa"),
        (bytes([30, 4, 0x0C]), "reserved range code 0xc"),
        (bytes([30, 4, 0x70, 0, 0]), "reserved qualifier 0x70"),  # prefix code 7
        (bytes([30, 4, 0x80, 0, 0]), "reserved qualifier 0x80"),  # bit 7 set
        (bytes([30, 4, 0x0B, 1, 2, 0, 0]), "free-format qualifier 0x0b without size"),
        (bytes([30, 4, 0x00, 5, 4]), "range stop 4 < 5"),
        (bytes([30, 4, 0x01, 0]), "range field of g30v4 truncated"),
        (bytes([30, 4, 0x00, 0, 9, 0, 0]), "10 points need 18 more octets"),
        (bytes([30, 4, 0x5B, 1, 9, 0]), "point overruns the fragment"),
        (bytes([30, 4, 0x5B, 1, 1, 0]), "point of 1 octets too short"),
        (bytes([30, 4, 0x5B, 2, 2, 0, 0, 0, 1]), "size prefix truncated"),
        (bytes([1, 1, 0x17, 1, 0, 0]), "packed g1v1 with an index prefix"),
        (bytes([60, 1, 0x06, 30]), "1 octets left for an object header"),
        (bytes([70, 5, 0x07, 1, 0, 0, 0, 0]), "g70v5 needs a size prefix"),
    ],
)
def test_malformed(data: bytes, detail: str) -> None:
    parsed = parse(data)
    assert [e for e, _ in parsed.events] == [Dnp3Event.MALFORMED]
    assert detail in parsed.events[0][1]
    assert not parsed.complete


def test_unknown_object_stops_parsing() -> None:
    data = bytes([99, 1, 0x00, 0, 0, 0xAA]) + bytes([30, 4, 0x06])
    parsed = parse(data)
    assert [e for e, _ in parsed.events] == [Dnp3Event.UNKNOWN_OBJECT]
    assert [obj.gv for obj in parsed.objects] == ["g99v1"]  # the rest cannot be found
    assert not parsed.complete


def test_unknown_size_prefixed_object_is_skipped() -> None:
    data = bytes([120, 1, 0x5B, 1, 3, 0, 0xA, 0xB, 0xC]) + bytes([30, 4, 0x07, 1, 5, 0])
    parsed = parse(data)
    assert [e for e, _ in parsed.events] == [Dnp3Event.UNKNOWN_OBJECT]
    unknown, known = parsed.objects
    assert unknown.points == [{"prefix": 3, "index": 0, "size": 3}]
    assert known.points == [{"prefix": 0, "index": 0, "value": 5}]


def test_read_requests_carry_no_values() -> None:
    # read g30v4 points 0-9, g1v2 points 3 and 5 (1-octet index prefixes), g60v1 all.
    data = bytes([30, 4, 0x00, 0, 9, 1, 2, 0x17, 2, 3, 5, 60, 1, 0x06])
    parsed = parse(data, header_only=True)
    assert parsed.complete and parsed.points == 12
    ranged, indexed, _ = parsed.objects
    assert ranged.count == 10 and ranged.points == []
    assert indexed.points == [{"prefix": 3, "index": 3}, {"prefix": 5, "index": 5}]


def test_read_of_unknown_objects_is_fine() -> None:
    parsed = parse(bytes([120, 3, 0x06, 99, 0, 0x07, 3]), header_only=True)
    assert parsed.complete and len(parsed.objects) == 2


def test_read_of_file_data_carries_values() -> None:
    # g70v5 (file transport) in a read: handle 0x12345678, block 0, no data.
    data = bytes([70, 5, 0x5B, 1, 8, 0]) + struct.pack("<II", 0x12345678, 0)
    obj = only_object(data, header_only=True)
    assert obj.points == [
        {"prefix": 8, "index": 0, "size": 8, "file_handle": 0x12345678, "block_number": 0,
         "file_data": ""}
    ]  # fmt: skip


def test_too_many_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("otids.decode.dnp3.objects.MAX_OBJECTS", 3)
    parsed = parse(bytes([60, 1, 0x06]) * 5)
    assert [e for e, _ in parsed.events] == [Dnp3Event.TOO_MANY_OBJECTS]
    assert len(parsed.objects) == 3 and not parsed.complete
    assert MAX_OBJECTS >= 1000


def test_too_many_points_keeps_headers() -> None:
    count = MAX_POINTS + 8  # packed binary inputs: MAX_POINTS + 8 bits
    first = bytes([1, 1, 0x01]) + struct.pack("<HH", 0, count - 1) + bytes(count // 8)
    second = bytes([30, 4, 0x07, 2, 1, 0, 2, 0])
    parsed = parse(first + second)
    assert [e for e, _ in parsed.events] == [Dnp3Event.TOO_MANY_POINTS]
    big, small = parsed.objects
    assert big.count == count and len(big.points) == MAX_POINTS
    assert small.count == 2 and small.points == []  # headers go on, points are not decoded
    assert parsed.points == count + 2 and not parsed.complete


def test_points_decoded_lazily() -> None:
    obj = only_object(bytes([30, 4, 0x00, 0, 0, 1, 0]))
    assert obj._points is None
    assert obj.points is obj.points  # decoded once


# -- points ---------------------------------------------------------------------------------

FLAGS_ONLINE = 0x01
POINTS = [
    # (group, variation, qualifier and range, point octets, first point)
    (1, 1, [0x00, 0, 9], [0b0000_0101, 0b10], {"index": 0, "state": 1}),
    (1, 2, [0x00, 5, 5], [0x81], {"index": 5, "online": 1, "state": 1, "restart": 0,
     "comm_lost": 0, "remote_forced": 0, "local_forced": 0, "chatter_filter": 0,
     "reserved": 0}),
    (2, 1, [0x17, 1], [9, 0x81], {"index": 9, "online": 1, "state": 1}),
    (2, 2, [0x17, 1], [1, 0x01, 0x10, 0x27, 0, 0, 0, 0], {"online": 1, "state": 0,
     "timestamp": 10000}),
    (2, 3, [0x17, 1], [1, 0x80, 0x34, 0x12], {"state": 1, "timestamp": 0x1234}),
    (3, 1, [0x00, 0, 3], [0b1110_0100], {"index": 0, "state": 0}),
    (3, 2, [0x00, 0, 0], [0x81], {"online": 1, "state": 2, "chatter_filter": 0}),
    (4, 1, [0x28, 1, 0], [2, 0, 0x41], {"index": 2, "online": 1, "state": 1}),
    (4, 2, [0x28, 1, 0], [2, 0, 0xC1, 1, 0, 0, 0, 0, 0], {"state": 3, "timestamp": 1}),
    (4, 3, [0x28, 1, 0], [2, 0, 0xC1, 5, 0], {"state": 3, "relative_time_ms": 5}),
    (10, 1, [0x00, 0, 7], [0x80], {"index": 0, "state": 0}),
    (10, 2, [0x00, 0, 0], [0x81], {"online": 1, "state": 1, "reserved0": 0, "reserved1": 0}),
    (11, 1, [0x17, 1], [4, 0x01], {"index": 4, "online": 1, "state": 0}),
    (11, 2, [0x17, 1], [4, 0x81, 2, 0, 0, 0, 0, 0], {"state": 1, "timestamp": 2}),
    # CROB: latch on (op_type 3), count 1, on 100 ms, off 200 ms, status 0.
    (12, 1, [0x28, 1, 0], [1, 0, 0x03, 1, 100, 0, 0, 0, 200, 0, 0, 0, 0],
     {"index": 1, "op_type": 3, "qu": 0, "cr": 0, "tcc": 0, "count": 1, "ontime": 100,
      "offtime": 200, "status_code": 0, "reserved": 0}),
    # Pattern control block: pulse on (1), trip (tcc 2), clear and queue set, status 4.
    (12, 2, [0x07, 1], [0xB1, 2, 10, 0, 0, 0, 20, 0, 0, 0, 4],
     {"op_type": 1, "qu": 1, "cr": 1, "tcc": 2, "count": 2, "status_code": 4}),
    (12, 3, [0x00, 0, 9], [0xFF, 0x01], {"index": 0, "point": 1}),
    (13, 1, [0x17, 1], [0, 0x84], {"status_code": 4, "commanded_state": 1}),
    (13, 2, [0x17, 1], [0, 0x00, 7, 0, 0, 0, 0, 0], {"status_code": 0, "timestamp": 7}),
    (20, 1, [0x00, 0, 0], [0x21, 0xFF, 0xFF, 0xFF, 0xFF], {"online": 1, "rollover": 1,
     "discontinuity": 0, "count": 0xFFFFFFFF}),
    (20, 2, [0x00, 0, 0], [0x41, 2, 1], {"discontinuity": 1, "count": 258}),
    (20, 3, [0x00, 0, 0], [0x01, 1, 0, 0, 0], {"count": 1}),
    (20, 4, [0x00, 0, 0], [0x01, 1, 0], {"count": 1}),
    (20, 5, [0x00, 0, 0], [1, 0, 0, 0], {"count": 1}),
    (20, 6, [0x00, 0, 0], [1, 0], {"count": 1}),
    (20, 7, [0x00, 0, 0], [1, 0, 0, 0], {"count": 1}),
    (20, 8, [0x00, 0, 0], [1, 0], {"count": 1}),
    (21, 1, [0x00, 0, 0], [0x01, 3, 0, 0, 0], {"online": 1, "count": 3}),
    (21, 2, [0x00, 0, 0], [0x01, 3, 0], {"count": 3}),
    (21, 3, [0x00, 0, 0], [0x01, 3, 0, 0, 0], {"count": 3}),
    (21, 4, [0x00, 0, 0], [0x01, 3, 0], {"count": 3}),
    (21, 5, [0x00, 0, 0], [0x01, 3, 0, 0, 0, 9, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 9}),
    (21, 6, [0x00, 0, 0], [0x01, 3, 0, 9, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 9}),
    (21, 7, [0x00, 0, 0], [0x01, 3, 0, 0, 0, 9, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 9}),
    (21, 8, [0x00, 0, 0], [0x01, 3, 0, 9, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 9}),
    (21, 9, [0x00, 0, 0], [3, 0, 0, 0], {"count": 3}),
    (21, 10, [0x00, 0, 0], [3, 0], {"count": 3}),
    (21, 11, [0x00, 0, 0], [3, 0, 0, 0], {"count": 3}),
    (21, 12, [0x00, 0, 0], [3, 0], {"count": 3}),
    (22, 1, [0x28, 1, 0], [0, 0, 0x01, 3, 0, 0, 0], {"index": 0, "online": 1, "count": 3}),
    (22, 2, [0x17, 1], [0, 0x01, 3, 0], {"count": 3}),
    (22, 3, [0x17, 1], [0, 0x01, 3, 0, 0, 0], {"count": 3}),
    (22, 4, [0x17, 1], [0, 0x01, 3, 0], {"count": 3}),
    (22, 5, [0x17, 1], [0, 0x01, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 1}),
    (22, 6, [0x17, 1], [0, 0x01, 3, 0, 1, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 1}),
    (22, 7, [0x17, 1], [0, 0x01, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 1}),
    (22, 8, [0x17, 1], [0, 0x01, 3, 0, 1, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 1}),
    (23, 1, [0x17, 1], [0, 0x01, 3, 0, 0, 0], {"count": 3}),
    (23, 2, [0x17, 1], [0, 0x01, 3, 0], {"count": 3}),
    (23, 3, [0x17, 1], [0, 0x01, 3, 0, 0, 0], {"count": 3}),
    (23, 4, [0x17, 1], [0, 0x01, 3, 0], {"count": 3}),
    (23, 5, [0x17, 1], [0, 0x01, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 1}),
    (23, 6, [0x17, 1], [0, 0x01, 3, 0, 1, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 1}),
    (23, 7, [0x17, 1], [0, 0x01, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 1}),
    (23, 8, [0x17, 1], [0, 0x01, 3, 0, 1, 0, 0, 0, 0, 0], {"count": 3, "timestamp": 1}),
    (30, 1, [0x00, 0, 0], [0x21, 0xFE, 0xFF, 0xFF, 0xFF], {"online": 1, "over_range": 1,
     "reference_err": 0, "reserved0": 0, "value": -2}),
    (30, 2, [0x00, 0, 0], [0x41, 0xFE, 0xFF], {"reference_err": 1, "value": -2}),
    (30, 3, [0x00, 0, 0], [0xFE, 0xFF, 0xFF, 0xFF], {"value": -2}),
    (30, 4, [0x00, 0, 0], [0xFE, 0xFF], {"value": -2}),
    (30, 5, [0x00, 0, 0], [0x01, *struct.pack("<f", 1.5)], {"online": 1, "value": 1.5}),
    (30, 6, [0x00, 0, 0], [0x01, *struct.pack("<d", -0.25)], {"value": -0.25}),
    (31, 1, [0x00, 0, 0], [0x01, 7, 0, 0, 0], {"value": 7}),
    (31, 2, [0x00, 0, 0], [0x01, 7, 0], {"value": 7}),
    (31, 3, [0x00, 0, 0], [0x01, 7, 0, 0, 0, 5, 0, 0, 0, 0, 0], {"value": 7, "timestamp": 5}),
    (31, 4, [0x00, 0, 0], [0x01, 7, 0, 5, 0, 0, 0, 0, 0], {"value": 7, "timestamp": 5}),
    (31, 5, [0x00, 0, 0], [7, 0, 0, 0], {"value": 7}),
    (31, 6, [0x00, 0, 0], [7, 0], {"value": 7}),
    (31, 7, [0x00, 0, 0], [0x01, *struct.pack("<f", 2.0)], {"value": 2.0}),
    (31, 8, [0x00, 0, 0], [0x01, *struct.pack("<d", 2.0)], {"value": 2.0}),
    (32, 1, [0x17, 1], [3, 0x01, 7, 0, 0, 0], {"index": 3, "value": 7}),
    (32, 2, [0x17, 1], [3, 0x01, 7, 0], {"value": 7}),
    (32, 3, [0x17, 1], [3, 0x01, 7, 0, 0, 0, 5, 0, 0, 0, 0, 0], {"value": 7, "timestamp": 5}),
    (32, 4, [0x17, 1], [3, 0x01, 7, 0, 5, 0, 0, 0, 0, 0], {"value": 7, "timestamp": 5}),
    (32, 5, [0x17, 1], [3, 0x01, *struct.pack("<f", 3.0)], {"value": 3.0}),
    (32, 6, [0x17, 1], [3, 0x01, *struct.pack("<d", 3.0)], {"value": 3.0}),
    (32, 7, [0x28, 1, 0], [0, 0, 0x01, *struct.pack("<f", 3.0), 0, 0, 0, 0, 0, 0],
     {"index": 0, "online": 1, "value": 3.0, "timestamp": 0}),
    (32, 8, [0x17, 1], [3, 0x01, *struct.pack("<d", 3.0), 1, 0, 0, 0, 0, 0],
     {"value": 3.0, "timestamp": 1}),
    (33, 1, [0x17, 1], [3, 0x01, 7, 0, 0, 0], {"value": 7}),
    (33, 2, [0x17, 1], [3, 0x01, 7, 0], {"value": 7}),
    (33, 3, [0x17, 1], [3, 0x01, 7, 0, 0, 0, 5, 0, 0, 0, 0, 0], {"value": 7, "timestamp": 5}),
    (33, 4, [0x17, 1], [3, 0x01, 7, 0, 5, 0, 0, 0, 0, 0], {"value": 7, "timestamp": 5}),
    (33, 5, [0x17, 1], [3, 0x01, *struct.pack("<f", 3.0)], {"value": 3.0}),
    (33, 6, [0x17, 1], [3, 0x01, *struct.pack("<d", 3.0)], {"value": 3.0}),
    (33, 7, [0x17, 1], [3, 0x01, *struct.pack("<f", 3.0), 1, 0, 0, 0, 0, 0], {"timestamp": 1}),
    (33, 8, [0x17, 1], [3, 0x01, *struct.pack("<d", 3.0), 1, 0, 0, 0, 0, 0], {"timestamp": 1}),
    (34, 1, [0x00, 0, 0], [10, 0], {"deadband_value": 10}),
    (34, 2, [0x00, 0, 0], [10, 0, 0, 0], {"deadband_value": 10}),
    (34, 3, [0x00, 0, 0], [*struct.pack("<f", 0.5)], {"deadband_value": 0.5}),
    (40, 1, [0x00, 0, 0], [0x01, 0xFF, 0xFF, 0xFF, 0xFF], {"online": 1, "value": -1}),
    (40, 2, [0x00, 0, 0], [0x01, 0xFF, 0xFF], {"value": -1}),
    (40, 3, [0x00, 0, 0], [0x01, *struct.pack("<f", 1.0)], {"value": 1.0}),
    (40, 4, [0x00, 0, 0], [0x01, *struct.pack("<d", 1.0)], {"value": 1.0}),
    # Analog output commands: value, then control status.
    (41, 1, [0x17, 1], [2, 100, 0, 0, 0, 0], {"index": 2, "value": 100, "control_status": 0}),
    (41, 2, [0x17, 1], [2, 100, 0, 4], {"value": 100, "control_status": 4}),
    (41, 3, [0x17, 1], [2, *struct.pack("<f", 1.25), 0], {"value": 1.25}),
    (41, 4, [0x17, 1], [2, *struct.pack("<d", 1.25), 0], {"value": 1.25}),
    (42, 1, [0x17, 1], [2, 0x01, 7, 0, 0, 0], {"value": 7}),
    (42, 2, [0x17, 1], [2, 0x01, 7, 0], {"value": 7}),
    (42, 3, [0x17, 1], [2, 0x01, 7, 0, 0, 0, 5, 0, 0, 0, 0, 0], {"timestamp": 5}),
    (42, 4, [0x17, 1], [2, 0x01, 7, 0, 5, 0, 0, 0, 0, 0], {"timestamp": 5}),
    (42, 5, [0x17, 1], [2, 0x01, *struct.pack("<f", 3.0)], {"value": 3.0}),
    (42, 6, [0x17, 1], [2, 0x01, *struct.pack("<d", 3.0)], {"value": 3.0}),
    (42, 7, [0x17, 1], [2, 0x01, *struct.pack("<f", 3.0), 5, 0, 0, 0, 0, 0], {"timestamp": 5}),
    (42, 8, [0x17, 1], [2, 0x01, *struct.pack("<d", 3.0), 5, 0, 0, 0, 0, 0], {"timestamp": 5}),
    (43, 1, [0x17, 1], [2, 0x81, 7, 0, 0, 0], {"status_code": 1, "reserved0": 1,
     "commanded_value": 7}),
    (43, 2, [0x17, 1], [2, 0x00, 7, 0], {"commanded_value": 7}),
    (43, 3, [0x17, 1], [2, 0x00, 7, 0, 0, 0, 5, 0, 0, 0, 0, 0], {"timestamp": 5}),
    (43, 4, [0x17, 1], [2, 0x00, 7, 0, 5, 0, 0, 0, 0, 0], {"timestamp": 5}),
    (43, 5, [0x17, 1], [2, 0x00, *struct.pack("<f", 3.0)], {"commanded_value": 3.0}),
    (43, 6, [0x17, 1], [2, 0x00, *struct.pack("<d", 3.0)], {"commanded_value": 3.0}),
    (43, 7, [0x17, 1], [2, 0x00, *struct.pack("<f", 3.0), 5, 0, 0, 0, 0, 0], {"timestamp": 5}),
    (43, 8, [0x17, 1], [2, 0x00, *struct.pack("<d", 3.0), 5, 0, 0, 0, 0, 0], {"timestamp": 5}),
    # Time: 2011-12-22 17:07:53.682 UTC = 1324573673682 ms (suricata-verify dnp3-write).
    (50, 1, [0x07, 1], [*(1324573673682).to_bytes(6, "little")],
     {"index": 0, "timestamp": 1324573673682}),
    (50, 2, [0x07, 1], [1, 0, 0, 0, 0, 0, 60, 0, 0, 0], {"timestamp": 1, "interval": 60}),
    (50, 3, [0x07, 1], [1, 0, 0, 0, 0, 0], {"timestamp": 1}),
    (50, 4, [0x17, 1], [0, 1, 0, 0, 0, 0, 0, 5, 0, 0, 0, 3],
     {"timestamp": 1, "interval_count": 5, "interval_units": 3}),
    (51, 1, [0x07, 1], [2, 0, 0, 0, 0, 0], {"timestamp": 2}),
    (51, 2, [0x07, 1], [2, 0, 0, 0, 0, 0], {"timestamp": 2}),
    (52, 1, [0x07, 1], [3, 0], {"delay_secs": 3}),
    (52, 2, [0x07, 1], [1, 0], {"delay_ms": 1}),  # suricata-verify dnp3-del-measure
    (80, 1, [0x00, 7, 7], [0x00], {"index": 7, "state": 0}),  # clear device_restart
    (110, 5, [0x00, 0, 0], [*b"hello"], {"value": "hello"}),
    (111, 2, [0x17, 1], [4, *b"ok"], {"index": 4, "value": "ok"}),
    (112, 3, [0x00, 0, 0], [*b"abc"], {"value": "abc"}),
    (113, 1, [0x17, 1], [0, 0xFF], {"value": "\\xff"}),  # not UTF-8: escaped, kept
    # Device attributes: data type, length, value.
    (0, 252, [0x00, 0, 0], [1, 4, *b"RTU1"], {"data_type": "vstr", "length": 4,
     "value": "RTU1"}),
    (0, 240, [0x00, 0, 0], [2, 2, 0x00, 0x08], {"data_type": "uint", "value": 2048}),
    (0, 211, [0x00, 0, 0], [3, 1, 0xFF], {"data_type": "int", "value": -1}),
    (0, 212, [0x00, 0, 0], [4, 4, *struct.pack("<f", 0.5)], {"data_type": "flt",
     "value": 0.5}),
    (0, 213, [0x00, 0, 0], [5, 2, 0xAB, 0xCD], {"data_type": "ostr", "value": "abcd"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("group", "variation", "header", "octets", "first"),
    POINTS,
    ids=[f"g{g}v{v}" for g, v, *_ in POINTS],
)
def test_point(
    group: int, variation: int, header: list[int], octets: list[int], first: dict[str, Any]
) -> None:
    obj = only_object(bytes([group, variation, *header, *octets]))
    point = obj.points[0]
    assert {key: point[key] for key in first} == first


def test_packed_points() -> None:
    # g3v1, double-bit, 2 bits a point: 0b11_10_01_00 -> 0, 1, 2, 3.
    obj = only_object(bytes([3, 1, 0x00, 4, 7, 0b1110_0100]))
    assert [(p["index"], p["state"]) for p in obj.points] == [(4, 0), (5, 1), (6, 2), (7, 3)]
    obj = only_object(bytes([1, 1, 0x00, 0, 9, 0b0000_0101, 0b10]))
    assert [p["state"] for p in obj.points] == [1, 0, 1, 0, 0, 0, 0, 0, 0, 1]


def test_class_data_has_no_points() -> None:
    for variation in (1, 2, 3, 4):
        obj = only_object(bytes([60, variation, 0x07, 10]))
        assert obj.count == 10 and obj.points == []


# g70 file transfer: the fixed fields, then names or data (IEEE 1815-2012, 11.9.20).
FILE_OBJECTS = [
    (
        2,  # authentication: offsets and sizes of user name and password, key
        struct.pack("<HHHHI", 12, 4, 16, 2, 0) + b"userpw",
        {"username": "user", "password": "pw", "authentication_key": 0},
    ),
    (
        3,  # file command (suricata-verify dnp3-file-read, pcap_cnt 5)
        struct.pack("<HH", 26, 10)
        + bytes(6)  # created
        + struct.pack("<HIIHHH", 0, 0, 0, 1, 1024, 4)
        + b"./test.xml",
        {"filename_offset": 26, "filename_size": 10, "created": 0, "permissions": 0,
         "authentication_key": 0, "file_size": 0, "operational_mode": 1,
         "maximum_block_size": 1024, "request_id": 4, "filename": "./test.xml"},
    ),
    (
        4,  # command status, with optional text
        struct.pack("<IIHHB", 0x12345678, 830, 1024, 4, 0) + b"ok",
        {"file_handle": 0x12345678, "file_size": 830, "maximum_block_size": 1024,
         "request_id": 4, "status_code": 0, "optional_text": "ok"},
    ),
    (
        5,  # transport: handle, block number (bit 31: last), data
        struct.pack("<II", 0x12345678, 0x80000001) + b"<xml/>",
        {"file_handle": 0x12345678, "block_number": 0x80000001, "file_data": "<xml/>"},
    ),
    (
        6,  # transport status
        struct.pack("<IIB", 0x12345678, 1, 0) + b"",
        {"file_handle": 0x12345678, "block_number": 1, "status_code": 0, "optional_text": ""},
    ),
    (
        7,  # descriptor
        struct.pack("<HHHI", 20, 3, 1, 99) + bytes(6) + struct.pack("<HH", 0x1FF, 7) + b"a.b",
        {"filename_offset": 20, "filename_size": 3, "file_type": 1, "file_size": 99,
         "created_timestamp": 0, "permissions": 0x1FF, "request_id": 7, "filename": "a.b"},
    ),
    (8, b"/var/log/*", {"file_specification": "/var/log/*"}),
]  # fmt: skip


@pytest.mark.parametrize(("variation", "body", "fields"), FILE_OBJECTS)
def test_file_objects(variation: int, body: bytes, fields: dict[str, Any]) -> None:
    data = bytes([70, variation, 0x5B, 1]) + struct.pack("<H", len(body)) + body
    (point,) = only_object(data).points
    assert point["size"] == point["prefix"] == len(body)
    assert {key: point[key] for key in fields} == fields


@pytest.mark.parametrize("variation", [2, 3, 7])
def test_file_objects_sized_from_content(variation: int) -> None:
    body = next(b for v, b, _ in FILE_OBJECTS if v == variation)
    (point,) = only_object(bytes([70, variation, 0x07, 1]) + body).points
    assert point["prefix"] == 0 and "size" not in point


def test_application_identifier() -> None:
    # The object of a stop application request (function 18).
    data = bytes([
        90, 1,  # g90v1 application identifier
        0x5B,  # qualifier: 2-octet size prefix, 1-octet count of free-format objects
        1,  # one object
        0x09, 0x00,  # its size: 9 octets
        *b"PLC-LOGIC",  # the application's name
    ])  # fmt: skip
    (point,) = only_object(data).points
    assert point == {"prefix": 9, "index": 0, "size": 9, "application_id": "PLC-LOGIC"}


def test_every_table_entry_decodes() -> None:
    """Each (group, variation) of the table sizes and decodes a point of zeros."""
    for (group, variation), spec in SPECS.items():
        if not spec.data:
            continue
        size = spec.size or max(spec.min_size, 2 if group == 0 else 0) or 1
        if spec.bits:
            data = bytes([group, variation, 0x00, 0, 3, 0])  # 4 points in one octet
        else:
            data = bytes([group, variation, 0x5B, 1]) + struct.pack("<H", size) + bytes(size)
        obj = only_object(data)
        assert len(obj.points) == (4 if spec.bits else 1), (group, variation)
