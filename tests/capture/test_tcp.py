"""Tests of one-direction TCP reassembly (otids.capture.tcp)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otids.capture.tcp import (
    MAX_WINDOW,
    SEQ_MASK,
    STREAM_EVENTS,
    Gap,
    StreamAnomaly,
    StreamItem,
    TcpReassembler,
)

ISN = 1000  # data starts at 1001
WRAP_ISN = 2**32 - 3  # data starts at 2**32 - 2: the third byte is at sequence number 0


def norm(items: list[StreamItem]) -> list[Any]:
    """Bytes and Gaps as they are, anomalies by name: what the cases below spell out."""
    return [item.name if isinstance(item, StreamAnomaly) else item for item in items]


def run(ops: list[tuple[Any, ...]], **bounds: int) -> tuple[TcpReassembler, list[Any]]:
    """Apply ``ops`` to a new reassembler; return it and everything it emitted, in order."""
    r = TcpReassembler(**bounds)
    out: list[StreamItem] = []
    for op, *args in ops:
        if op == "isn":
            r.set_isn(args[0])
        elif op == "seg":
            out += r.segment(args[0] & SEQ_MASK, args[1])
        elif op == "ack":
            out += r.peer_ack(args[0] & SEQ_MASK)
        elif op == "fin":
            out += r.fin(args[0] & SEQ_MASK)
        elif op == "flush":
            out += r.flush()
    return r, norm(out)


# (name, operations, bounds, expected output, expected counters)
CASES: list[tuple[str, list[tuple[Any, ...]], dict[str, int], list[Any], dict[str, int]]] = [
    (
        "in_order",
        [("isn", ISN), ("seg", 1001, b"abc"), ("seg", 1004, b"def")],
        {},
        [b"abc", b"def"],
        {"segments": 2, "bytes": 6, "retransmissions": 0, "ooo_buffered": 0},
    ),
    (
        "retransmission_dropped",
        [("isn", ISN), ("seg", 1001, b"abc"), ("seg", 1001, b"abc"), ("seg", 1002, b"b")],
        {},
        [b"abc"],
        {"segments": 3, "bytes": 3, "retransmissions": 2},
    ),
    (
        "retransmission_with_other_bytes_only_counted",
        [("isn", ISN), ("seg", 1001, b"abc"), ("seg", 1001, b"XYZ")],
        {},
        [b"abc"],
        {"retransmissions": 1, "overlap_conflicts": 0},
    ),
    (
        "partial_overlap_delivers_new_tail",
        [("isn", ISN), ("seg", 1001, b"abcd"), ("seg", 1003, b"cdEF")],
        {},
        [b"abcd", b"EF"],
        {"overlaps": 1, "bytes": 6},
    ),
    (
        "partial_overlap_first_seen_wins",
        [("isn", ISN), ("seg", 1001, b"abcd"), ("seg", 1003, b"XXEF")],
        {},
        [b"abcd", b"EF"],
        {"overlaps": 1},
    ),
    (
        "out_of_order_filled",
        [("isn", ISN), ("seg", 1004, b"def"), ("seg", 1001, b"abc")],
        {},
        [b"abc", b"def"],
        {"ooo_buffered": 1, "bytes": 6, "gaps": 0},
    ),
    (
        "out_of_order_reversed",
        [("isn", ISN), ("seg", 1007, b"ghi"), ("seg", 1004, b"def"), ("seg", 1001, b"abc")],
        {},
        [b"abc", b"def", b"ghi"],
        {"ooo_buffered": 2, "bytes": 9},
    ),
    (
        "in_order_fill_overlapping_buffered_data",
        [("isn", ISN), ("seg", 1004, b"def"), ("seg", 1001, b"abcdefg")],
        {},
        [b"abc", b"def", b"g"],
        {"overlaps": 1, "overlap_conflicts": 0, "bytes": 7},
    ),
    (
        "overlap_among_buffered_agrees",
        [("isn", ISN), ("seg", 1004, b"defg"), ("seg", 1006, b"fghi"), ("seg", 1001, b"abc")],
        {},
        [b"abc", b"defg", b"hi"],
        {"overlaps": 1, "overlap_conflicts": 0},
    ),
    (
        "overlap_among_buffered_conflicts",
        [("isn", ISN), ("seg", 1004, b"defg"), ("seg", 1005, b"XYZh"), ("seg", 1001, b"abc")],
        {},
        ["stream.overlap_mismatch", b"abc", b"defg", b"h"],
        {"overlaps": 1, "overlap_conflicts": 1},
    ),
    (
        "new_segment_covering_two_buffered_fills_between",
        [
            ("isn", ISN),
            ("seg", 1003, b"c"),
            ("seg", 1006, b"f"),
            ("seg", 1002, b"bcdefgh"),
            ("seg", 1001, b"a"),
        ],
        {},
        [b"a", b"b", b"c", b"de", b"f", b"gh"],
        {"overlaps": 1, "overlap_conflicts": 0, "bytes": 8},
    ),
    (
        "ooo_overflow_segments",
        [("isn", ISN), ("seg", 1011, b"k"), ("seg", 1013, b"m"), ("seg", 1015, b"o")],
        {"max_ooo_segments": 2},
        ["stream.ooo_overflow", Gap(10), b"k"],
        {"gaps": 1, "gap_bytes": 10, "ooo_buffered": 3},
    ),
    (
        "ooo_overflow_then_flush",
        [
            ("isn", ISN),
            ("seg", 1011, b"k"),
            ("seg", 1013, b"m"),
            ("seg", 1015, b"o"),
            ("flush",),
        ],
        {"max_ooo_segments": 2},
        ["stream.ooo_overflow", Gap(10), b"k", Gap(1), b"m", Gap(1), b"o"],
        {"gaps": 3, "gap_bytes": 12},
    ),
    (
        "ooo_overflow_bytes",
        [("isn", ISN), ("seg", 1005, b"efgh"), ("seg", 1009, b"i")],
        {"max_ooo_bytes": 4},
        ["stream.ooo_overflow", Gap(4), b"efgh", b"i"],
        {"gaps": 1, "gap_bytes": 4, "bytes": 5},
    ),
    (
        "peer_ack_reveals_lost_data",
        [("isn", ISN), ("seg", 1001, b"abc"), ("ack", 1010), ("seg", 1010, b"j")],
        {},
        [b"abc", Gap(6), b"j"],
        {"gaps": 1, "gap_bytes": 6},
    ),
    (
        "peer_ack_releases_buffered_data",
        [("isn", ISN), ("seg", 1001, b"abc"), ("seg", 1007, b"ghi"), ("ack", 1010)],
        {},
        [b"abc", Gap(3), b"ghi"],
        {"gaps": 1, "gap_bytes": 3, "bytes": 6},
    ),
    (
        "peer_ack_inside_hole",
        [("isn", ISN), ("seg", 1007, b"ghi"), ("ack", 1005), ("seg", 1005, b"ef")],
        {},
        [Gap(4), b"ef", b"ghi"],
        {"gaps": 1, "gap_bytes": 4},
    ),
    (
        "peer_ack_over_several_holes",
        [("isn", ISN), ("seg", 1003, b"c"), ("seg", 1006, b"f"), ("ack", 1009)],
        {},
        [Gap(2), b"c", Gap(2), b"f", Gap(2)],
        {"gaps": 3, "gap_bytes": 6},
    ),
    (
        "peer_ack_of_seen_data_is_silent",
        [("isn", ISN), ("seg", 1001, b"abc"), ("ack", 1002), ("ack", 1004), ("ack", 1001)],
        {},
        [b"abc"],
        {"gaps": 0},
    ),
    (
        "peer_ack_beyond_any_window",
        [("isn", ISN), ("ack", 1001 + MAX_WINDOW)],
        {},
        ["stream.bad_ack"],
        {"gaps": 0},
    ),
    (
        "midstream_pick_up",
        [("seg", 5000, b"abc"), ("seg", 5003, b"def"), ("seg", 4990, b"x")],
        {},
        [b"abc", b"def"],
        {"retransmissions": 1},
    ),
    (
        "midstream_pick_up_from_peer_ack",
        [("ack", 7000), ("seg", 6990, b"old"), ("seg", 7000, b"a")],
        {},
        [b"a"],
        {"retransmissions": 1},
    ),
    (
        "seq_wraps_in_order",
        [("isn", WRAP_ISN), ("seg", 2**32 - 2, b"ab"), ("seg", 0, b"cd"), ("seg", 2, b"e")],
        {},
        [b"ab", b"cd", b"e"],
        {"bytes": 5},
    ),
    (
        "seq_wraps_out_of_order",
        [("isn", WRAP_ISN), ("seg", 1, b"d"), ("seg", 2**32 - 2, b"abc")],
        {},
        [b"abc", b"d"],
        {"ooo_buffered": 1},
    ),
    (
        "seq_wraps_retransmission_and_overlap",
        [
            ("isn", WRAP_ISN),
            ("seg", 2**32 - 2, b"abcd"),
            ("seg", 2**32 - 2, b"ab"),
            ("seg", 2**32 - 1, b"bcdef"),
        ],
        {},
        [b"abcd", b"ef"],
        {"retransmissions": 1, "overlaps": 1},
    ),
    (
        "seq_wraps_peer_ack",
        [("isn", WRAP_ISN), ("seg", 2**32 - 2, b"a"), ("ack", 3)],
        {},
        [b"a", Gap(4)],
        {"gap_bytes": 4},
    ),
    (
        "fin_after_data",
        [("isn", ISN), ("seg", 1001, b"abc"), ("fin", 1004), ("seg", 1004, b"x")],
        {},
        [b"abc"],
        {"retransmissions": 1},
    ),
    (
        "fin_reveals_lost_tail",
        [("isn", ISN), ("seg", 1001, b"abc"), ("fin", 1010)],
        {},
        [b"abc", Gap(6)],
        {"gap_bytes": 6},
    ),
    (
        "fin_flushes_buffered",
        [("isn", ISN), ("seg", 1007, b"ghi"), ("fin", 1010), ("fin", 1010)],
        {},
        [Gap(6), b"ghi"],
        {"gaps": 1},
    ),
    (
        "flush_delivers_with_gaps",
        [("isn", ISN), ("seg", 1004, b"def"), ("flush",), ("flush",)],
        {},
        [Gap(3), b"def"],
        {"gaps": 1, "gap_bytes": 3},
    ),
    (
        "bad_window_dropped",
        [("isn", ISN), ("seg", 1001 + MAX_WINDOW, b"far"), ("seg", 1001, b"a")],
        {},
        ["stream.bad_window", b"a"],
        {"ooo_buffered": 0},
    ),
    (
        "empty_payload_ignored",
        [("isn", ISN), ("seg", 1001, b""), ("seg", 1500, b"")],
        {},
        [],
        {"segments": 0},
    ),
    (
        "late_syn_ignored",
        [("seg", 5000, b"abc"), ("isn", 9999), ("seg", 5003, b"d")],
        {},
        [b"abc", b"d"],
        {},
    ),
]


@pytest.mark.parametrize(
    ("ops", "bounds", "expected", "counters"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_reassembly(
    ops: list[tuple[Any, ...]],
    bounds: dict[str, int],
    expected: list[Any],
    counters: dict[str, int],
) -> None:
    r, out = run(ops, **bounds)
    assert out == expected
    assert {name: getattr(r, name) for name in counters} == counters


def test_fast_path_hands_back_the_payload_object() -> None:
    r = TcpReassembler()
    r.set_isn(ISN)
    payload = b"modbus adu"
    out = r.segment(1001, payload)
    assert out == [payload] and out[0] is payload
    assert r.next_seq == 1001 + len(payload)


def test_emitted_anomalies_are_documented() -> None:
    emitted = {item for case in CASES for item in case[3] if isinstance(item, str)}
    assert emitted == set(STREAM_EVENTS)
    assert all(name.startswith("stream.") for name in STREAM_EVENTS)


def test_buffer_stays_within_bounds_under_a_flood_of_holes() -> None:
    r = TcpReassembler(max_ooo_bytes=100, max_ooo_segments=8)
    r.set_isn(ISN)
    for i in range(1000):
        r.segment(1001 + 2 * i + 1, b"x")  # every other byte missing
        assert len(r.ooo) <= 8 and r.ooo_size <= 100


# -- properties ------------------------------------------------------------------------------


@st.composite
def segmented(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[int, bytes]]]:
    """A byte string, an ISN and segments covering it: a partition plus random extra slices
    (duplicates and overlaps), in any order."""
    data = draw(st.binary(min_size=1, max_size=400))
    isn = draw(st.one_of(st.integers(0, SEQ_MASK), st.integers(SEQ_MASK - 500, SEQ_MASK)))
    cuts = draw(st.sets(st.integers(1, max(1, len(data) - 1)), max_size=20)) - {len(data)}
    bounds = [0, *sorted(cuts), len(data)]
    segments = [(a, data[a:b]) for a, b in pairwise(bounds)]
    extra = draw(
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 64)), max_size=10)
    )
    segments += [(a, data[a : a + n]) for a, n in extra]
    return data, isn, draw(st.permutations(segments))


@given(segmented())
@settings(max_examples=300, deadline=None)
def test_any_order_and_duplication_yields_the_stream(
    case: tuple[bytes, int, list[tuple[int, bytes]]],
) -> None:
    data, isn, segments = case
    r = TcpReassembler(max_ooo_bytes=1 << 20, max_ooo_segments=1 << 10)
    r.set_isn(isn)
    out: list[StreamItem] = []
    for offset, chunk in segments:
        out += r.segment((isn + 1 + offset) & SEQ_MASK, chunk)
    out += r.flush()
    assert all(isinstance(item, bytes) for item in out), out
    assert b"".join(item for item in out if isinstance(item, bytes)) == data
    assert r.gaps == 0 and r.ooo == []


@given(segmented(), st.data())
@settings(max_examples=300, deadline=None)
def test_lost_segments_become_gaps_of_the_right_size(
    case: tuple[bytes, int, list[tuple[int, bytes]]], draw: st.DataObject
) -> None:
    data, isn, segments = case
    kept = [seg for seg in segments if draw.draw(st.booleans())]
    r = TcpReassembler(max_ooo_bytes=1 << 20, max_ooo_segments=1 << 10)
    r.set_isn(isn)
    out: list[StreamItem] = []
    for offset, chunk in kept:
        out += r.segment((isn + 1 + offset) & SEQ_MASK, chunk)
    out += r.fin((isn + 1 + len(data)) & SEQ_MASK)
    # Rebuild the stream with a placeholder for lost bytes: every delivered byte is in place.
    pos = 0
    for item in out:
        assert not isinstance(item, StreamAnomaly)
        if isinstance(item, Gap):
            assert item.size > 0
            pos += item.size
        else:
            assert item == data[pos : pos + len(item)]
            pos += len(item)
    assert pos == len(data)
    assert r.next_seq == (isn + 2 + len(data)) & SEQ_MASK
