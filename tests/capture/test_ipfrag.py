"""Tests of otids.capture.ipfrag: fragment reassembly, overlaps, bounds, timeout."""

from __future__ import annotations

import itertools
import random

import pytest

from otids.capture.ipfrag import (
    MAX_DATAGRAM_BYTES,
    MAX_FRAGMENTS_PER_DATAGRAM,
    FragmentReassembler,
)

KEY = (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02", 7, 17)
PAYLOAD = bytes(range(256)) * 4  # 1024 bytes, every position distinguishable


def split(data: bytes, size: int) -> list[tuple[int, bytes, bool]]:
    """Cut ``data`` into (offset, piece, more) fragments of ``size`` bytes."""
    pieces = [(off, data[off : off + size]) for off in range(0, len(data), size)]
    return [(off, piece, off + size < len(data)) for off, piece in pieces]


def feed(reasm: FragmentReassembler, frags: list[tuple[int, bytes, bool]], ts: float = 1.0):
    """Add fragments in order; return every completed result."""
    results = []
    for off, piece, more in frags:
        done = reasm.add(ts, KEY, off, piece, more, len(piece) + 34)
        if done is not None:
            results.append(done)
    return results


@pytest.mark.parametrize(
    "order",
    [
        pytest.param(lambda f: f, id="in-order"),
        pytest.param(lambda f: f[::-1], id="reversed"),
        pytest.param(lambda f: f[1::2] + f[0::2], id="interleaved"),
        pytest.param(lambda f: random.Random(3).sample(f, len(f)), id="shuffled"),
    ],
)
def test_reassembles_in_any_order(order):
    reasm = FragmentReassembler()
    frags = order(split(PAYLOAD, 128))
    results = feed(reasm, frags)
    assert results == [(PAYLOAD, len(PAYLOAD) + 8 * 34)]
    assert reasm.reassembled == 1
    assert reasm.dropped == 0
    assert reasm.pending_datagrams == 0
    assert reasm.pending_bytes == 0


def test_each_permutation_of_three_fragments():
    for perm in itertools.permutations(split(PAYLOAD[:24], 8)):
        reasm = FragmentReassembler()
        assert feed(reasm, list(perm)) == [(PAYLOAD[:24], 24 + 3 * 34)]


def test_overlap_first_seen_wins():
    reasm = FragmentReassembler()
    assert reasm.add(1.0, KEY, 0, b"A" * 16, True, 50) is None
    # Overlaps bytes 8..15 with different data and adds 16..23: only the new tail counts.
    assert reasm.add(1.0, KEY, 8, b"B" * 16, True, 50) is None
    # Covers everything again with different data, and ends the datagram at 32.
    done = reasm.add(1.0, KEY, 0, b"C" * 32, False, 66)
    assert done == (b"A" * 16 + b"B" * 8 + b"C" * 8, 166)


def test_overlap_filling_several_holes():
    reasm = FragmentReassembler()
    reasm.add(1.0, KEY, 8, b"1" * 8, True, 50)
    reasm.add(1.0, KEY, 24, b"3" * 8, False, 50)
    # One fragment spanning both holes and both existing pieces.
    done = reasm.add(1.0, KEY, 0, b"x" * 32, True, 50)
    assert done is not None
    assert done[0] == b"x" * 8 + b"1" * 8 + b"x" * 8 + b"3" * 8


def test_duplicate_fragments_are_harmless():
    reasm = FragmentReassembler()
    frags = split(PAYLOAD[:64], 16)
    feed(reasm, frags[:2] + frags[:2])
    assert feed(reasm, frags[2:]) == [(PAYLOAD[:64], 6 * 50)]


def test_incomplete_datagram_times_out():
    reasm = FragmentReassembler(timeout=30.0)
    reasm.add(100.0, KEY, 0, b"a" * 8, True, 50)
    reasm.add(110.0, KEY, 16, b"c" * 8, False, 50)  # hole at 8..15
    assert reasm.pending_datagrams == 1
    # Another datagram's fragment 31 s after the first one expires it.
    reasm.add(131.0, (*KEY[:2], 8, 17), 0, b"z" * 8, True, 50)
    assert reasm.dropped == 2
    assert reasm.pending_datagrams == 1
    # The late missing fragment starts a new datagram that never completes.
    assert reasm.add(131.0, KEY, 8, b"b" * 8, True, 50) is None


def test_not_expired_within_timeout():
    reasm = FragmentReassembler(timeout=30.0)
    reasm.add(100.0, KEY, 0, b"a" * 8, True, 50)
    assert reasm.add(129.0, KEY, 8, b"b" * 8, False, 50) == (b"a" * 8 + b"b" * 8, 100)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param((8, 8, False), (16, 8, False), id="two-different-ends"),
        pytest.param((8, 8, False), (16, 8, True), id="data-after-end"),
        pytest.param((16, 8, True), (0, 8, False), id="end-before-data"),
    ],
)
def test_inconsistent_datagram_dropped(first, second):
    reasm = FragmentReassembler()
    for off, size, more in (first, second):
        assert reasm.add(1.0, KEY, off, b"d" * size, more, 50) is None
    assert reasm.pending_datagrams == 0
    assert reasm.pending_bytes == 0
    assert reasm.dropped == 2


def test_datagram_larger_than_limit_dropped():
    reasm = FragmentReassembler()
    reasm.add(1.0, KEY, 0, b"a" * 8, True, 50)
    assert reasm.add(1.0, KEY, MAX_DATAGRAM_BYTES - 4, b"b" * 8, False, 50) is None
    assert reasm.dropped == 2
    assert reasm.pending_datagrams == 0


def test_max_datagrams_evicts_oldest():
    reasm = FragmentReassembler(max_datagrams=3)
    for ident in range(5):
        reasm.add(1.0, (*KEY[:2], ident, 17), 0, b"a" * 8, True, 50)
    assert reasm.pending_datagrams == 3
    assert reasm.dropped == 2
    # Datagram 0 is gone: its last fragment alone cannot complete it.
    assert reasm.add(1.0, (*KEY[:2], 0, 17), 8, b"b" * 8, False, 50) is None
    # Datagram 4 is still there.
    assert reasm.add(1.0, (*KEY[:2], 4, 17), 8, b"b" * 8, False, 50) == (b"a" * 8 + b"b" * 8, 100)


def test_max_bytes_evicts_oldest():
    reasm = FragmentReassembler(max_bytes=100)
    reasm.add(1.0, (*KEY[:2], 1, 17), 0, b"a" * 60, True, 94)
    reasm.add(1.0, (*KEY[:2], 2, 17), 0, b"b" * 60, True, 94)
    assert reasm.pending_datagrams == 1
    assert reasm.pending_bytes == 60
    assert reasm.dropped == 1


def test_fragment_bigger_than_all_memory_dropped():
    reasm = FragmentReassembler(max_bytes=100)
    assert reasm.add(1.0, KEY, 0, b"a" * 200, True, 234) is None
    assert reasm.pending_datagrams == 0
    assert reasm.dropped == 1


def test_growing_datagram_evicts_itself_when_alone():
    reasm = FragmentReassembler(max_bytes=100)
    reasm.add(1.0, KEY, 0, b"a" * 64, True, 98)
    assert reasm.add(1.0, KEY, 64, b"b" * 64, True, 98) is None
    assert reasm.pending_datagrams == 0
    assert reasm.pending_bytes == 0
    assert reasm.dropped == 2


def test_too_many_fragments_dropped():
    reasm = FragmentReassembler()
    for i in range(MAX_FRAGMENTS_PER_DATAGRAM):
        reasm.add(1.0, KEY, i * 8, b"t" * 8, True, 42)
    assert reasm.add(1.0, KEY, MAX_FRAGMENTS_PER_DATAGRAM * 8, b"t" * 8, False, 42) is None
    assert reasm.dropped == MAX_FRAGMENTS_PER_DATAGRAM + 1
    assert reasm.pending_datagrams == 0


def test_keys_are_independent():
    reasm = FragmentReassembler()
    other = (*KEY[:3], 6)
    reasm.add(1.0, KEY, 0, b"u" * 8, True, 42)
    reasm.add(1.0, other, 0, b"t" * 8, True, 42)
    assert reasm.add(1.0, other, 8, b"T" * 8, False, 42) == (b"t" * 8 + b"T" * 8, 84)
    assert reasm.add(1.0, KEY, 8, b"U" * 8, False, 42) == (b"u" * 8 + b"U" * 8, 84)


def test_random_fragment_streams_stay_bounded():
    """Random offsets, lengths and flags: never raises, bookkeeping stays consistent."""
    rng = random.Random(11)
    reasm = FragmentReassembler(max_datagrams=8, max_bytes=4096, timeout=5.0)
    for step in range(5000):
        key = (*KEY[:2], rng.randrange(12), 17)
        off = rng.randrange(0, 2048, 8)
        size = rng.randrange(0, 600)
        done = reasm.add(step / 100, key, off, bytes(size), rng.random() < 0.2, size + 34)
        if done is not None:
            assert len(done[0]) <= MAX_DATAGRAM_BYTES
        assert reasm.pending_datagrams <= 8
        assert 0 <= reasm.pending_bytes <= 4096
