"""Property tests: arbitrary bytes never make the dissector raise, and how a stream is split
into feed calls never changes what it decodes."""

from __future__ import annotations

import json
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from otids.decode.base import DecoderEvent, Direction, Record, Transaction
from otids.decode.modbus import ModbusParser, ModbusTransaction
from otids.decode.modbus.framer import MAX_ADU

directions = st.sampled_from([Direction.TO_SERVER, Direction.TO_CLIENT])


def check_records(records: object) -> None:
    assert isinstance(records, list)
    for record in records:
        assert isinstance(record, Transaction | DecoderEvent)
        if isinstance(record, ModbusTransaction):
            json.dumps(record.eve())  # always serialisable as JSON


def feed_all(parser: ModbusParser, chunks: list[tuple[Direction, bytes]]) -> list[Record]:
    records: list[Record] = []
    for number, (direction, data) in enumerate(chunks):
        step = parser.feed(direction, data, float(number))
        check_records(step)
        records += step
        for framer in parser._framers:
            assert len(framer._buffer) <= MAX_ADU
    return records


@settings(max_examples=300)
@given(
    st.lists(st.tuples(directions, st.binary(max_size=600)), max_size=12),
    st.booleans(),
    st.booleans(),
)
def test_random_bytes_never_raise(
    chunks: list[tuple[Direction, bytes]], gap: bool, datagram: bool
) -> None:
    parser = ModbusParser(datagram)
    feed_all(parser, chunks)
    if gap:
        check_records(parser.gap(Direction.TO_SERVER, 1.0))
        feed_all(parser, chunks)
    closed = parser.close(2.0)
    check_records(closed)
    assert all(isinstance(tx, ModbusTransaction) and tx.done for tx in closed)


# A plausible ADU: MBAP header with protocol id 0 and a correct length, then any PDU.
adus = st.builds(
    lambda transaction_id, unit, function, data: (
        struct.pack(">HHHBB", transaction_id, 0, len(data) + 2, unit, function) + data
    ),
    st.integers(0, 3),
    st.integers(0, 255),
    st.one_of(st.sampled_from([1, 3, 5, 8, 15, 16, 20, 23, 43, 0x83]), st.integers(0, 255)),
    st.binary(max_size=252),
)


@settings(max_examples=200)
@given(directions, st.lists(adus, min_size=1, max_size=6), st.data())
def test_splitting_does_not_change_the_decode(
    direction: Direction, frames: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole = feed_all(ModbusParser(), [(direction, stream)])
    split = feed_all(ModbusParser(), [(direction, piece) for piece in pieces])

    def summary(records: list[Record]) -> list[object]:
        return [
            r.eve() if isinstance(r, ModbusTransaction) else (r.name, r.detail)
            for r in records
            if isinstance(r, ModbusTransaction | DecoderEvent)
        ]

    assert summary(split) == summary(whole)
    assert len([r for r in whole if isinstance(r, ModbusTransaction)]) >= 1


@settings(max_examples=300)
@given(st.lists(st.tuples(adus, adus), min_size=1, max_size=6))
def test_random_exchanges_never_raise(pairs: list[tuple[bytes, bytes]]) -> None:
    """Requests then responses with random PDUs: exercises the checks of a response against
    its request (ids 0..3 often pair up)."""
    chunks = [(Direction.TO_SERVER, request) for request, _ in pairs]
    chunks += [(Direction.TO_CLIENT, response) for _, response in pairs]
    parser = ModbusParser()
    feed_all(parser, chunks)
    check_records(parser.close(9.0))
