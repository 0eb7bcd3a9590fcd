"""Property tests: arbitrary bytes, arbitrary splits, never an exception."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from otids.decode.base import DecoderEvent, Direction, Record
from otids.decode.dnp3 import Dnp3Parser, Dnp3Transaction
from otids.decode.dnp3.fields import FIELDS
from otids.decode.dnp3.link import build_frame
from otids.decode.dnp3.transport import encode_fragment


def exercise(records: list[Record]) -> None:
    """Everything a consumer may do with the records works and is JSON-friendly."""
    for record in records:
        if isinstance(record, Dnp3Transaction):
            json.dumps(record.eve())
            json.dumps(record.eve_records())
            for spec in FIELDS.values():
                spec.get(record)
        else:
            assert isinstance(record, DecoderEvent) and record.name.startswith("dnp3.")


def run(datagram: bool, chunks: list[tuple[bool, bytes]]) -> None:
    parser = Dnp3Parser(datagram)
    records: list[Record] = []
    for to_client, chunk in chunks:
        direction = Direction.TO_CLIENT if to_client else Direction.TO_SERVER
        records += parser.feed(direction, chunk, 1.0)
    records += parser.gap(Direction.TO_SERVER, 2.0)
    records += parser.close(3.0)
    exercise(records)


chunks = st.lists(st.tuples(st.booleans(), st.binary(max_size=400)), max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.booleans(), chunks)
def test_random_bytes(datagram: bool, data: list[tuple[bool, bytes]]) -> None:
    run(datagram, data)


# Fragments of random content behind valid link and transport framing, so that the
# application layer sees them; a header prefix makes many of them look like real messages.
fragments = st.tuples(
    st.sampled_from([b"", b"\xc0\x01", b"\xc0\x02", b"\xc0\x81\x00\x00", b"\xf0\x82\x80\x00"]),
    st.binary(max_size=600),
).map(lambda parts: parts[0] + parts[1])


@settings(max_examples=300, deadline=None)
@given(st.booleans(), st.lists(st.tuples(st.booleans(), fragments), max_size=6), st.data())
def test_random_fragments(
    datagram: bool, items: list[tuple[bool, bytes]], data: st.DataObject
) -> None:
    stream = []
    for to_client, fragment in items:
        control, dst, src = (0x44, 1, 10) if to_client else (0xC4, 10, 1)
        encoded = encode_fragment(fragment, control, dst, src)
        if datagram:
            stream.append((to_client, encoded))
            continue
        cuts = sorted(data.draw(st.lists(st.integers(0, len(encoded)), max_size=4)))
        for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True):
            stream.append((to_client, encoded[a:b]))
    run(datagram, stream)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=250), max_size=8), st.booleans())
def test_random_segments(segments: list[bytes], to_client: bool) -> None:
    """Raw transport segments (random FIR/FIN/sequence) over valid link frames."""
    control, dst, src = (0x44, 1, 10) if to_client else (0xC4, 10, 1)
    stream = b"".join(build_frame(control, dst, src, seg) for seg in segments)
    run(False, [(to_client, stream)])
