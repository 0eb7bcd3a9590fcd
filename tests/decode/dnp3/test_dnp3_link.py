"""Link layer: frame layout, control octet, CRC blocks, splitting, resynchronisation."""

from __future__ import annotations

import pytest

from otids.decode.dnp3 import link
from otids.decode.dnp3.crc import append_crc, crc16_dnp
from otids.decode.dnp3.events import Dnp3Event
from otids.decode.dnp3.link import (
    MAX_FRAME_SIZE,
    LinkDecoder,
    LinkFrame,
    PrimaryFunction,
    SecondaryFunction,
    build_frame,
    frame_size,
)

# A read request from the opendnp3 demo (suricata-verify dnp3-eve, packet 22).
READ_FRAME = bytes(
    [
        0x05, 0x64,  # start
        0x0B,  # length: control + addresses (5) + 6 octets of user data
        0xC4,  # control: DIR=1 PRM=1 FCB=0 FCV=0, function 4 (unconfirmed user data)
        0x0A, 0x00,  # destination 10
        0x01, 0x00,  # source 1
        0xAC, 0xD1,  # header CRC
        0xC5,  # transport: FIN FIR, sequence 5
        0xC4,  # application control: FIR FIN, sequence 4
        0x01,  # function: read
        0x3C, 0x02, 0x06,  # g60v2 (class 1), qualifier 0x06 (all)
        0xC5, 0x94,  # data block CRC
    ]
)  # fmt: skip

# Request link status (link-only, no user data) and its answer, link status.
REQUEST_LINK_STATUS = build_frame(0xC9, 10, 1)  # DIR PRM, function 9
LINK_STATUS = build_frame(0x0B, 1, 10)  # secondary, function 11


def frames(items: list) -> list[LinkFrame]:
    return [item for item in items if isinstance(item, LinkFrame)]


def events(items: list) -> list[str]:
    return [item[0] for item in items if not isinstance(item, LinkFrame)]


def test_read_frame_fields() -> None:
    (frame,) = LinkDecoder(False).feed(READ_FRAME)
    assert isinstance(frame, LinkFrame)
    assert (frame.length, frame.dst, frame.src) == (11, 10, 1)
    assert (frame.dir, frame.prm, frame.fcb, frame.fcv) == (True, True, False, False)
    assert frame.function == PrimaryFunction.UNCONFIRMED_USER_DATA
    assert frame.function_name == "unconfirmed_user_data"
    assert frame.is_user_data
    assert frame.user_data == bytes([0xC5, 0xC4, 0x01, 0x3C, 0x02, 0x06])


def test_build_frame_reproduces_capture() -> None:
    assert build_frame(0xC4, 10, 1, READ_FRAME[10:16]) == READ_FRAME


@pytest.mark.parametrize(
    ("control", "name", "user_data"),
    [
        (0xC0, "reset_link_states", False),
        (0xD2, "test_link_states", False),  # FCB FCV set
        (0xF3, "confirmed_user_data", True),
        (0xC4, "unconfirmed_user_data", True),
        (0xC9, "request_link_status", False),
        (0x00, "ack", False),
        (0x01, "nack", False),
        (0x0B, "link_status", False),
        (0x1F, "not_supported", False),  # DFC set
        (0x4E, "unknown_14", False),  # primary function 14 is undefined
        (0x03, "unknown_3", False),  # secondary "user data" carries none
    ],
)
def test_link_functions(control: int, name: str, user_data: bool) -> None:
    frame = LinkFrame(5, control, 1, 2, b"")
    assert frame.function_name == name
    assert frame.is_user_data is user_data


def test_function_enums() -> None:
    assert [f.value for f in PrimaryFunction] == [0, 2, 3, 4, 9]
    assert [f.value for f in SecondaryFunction] == [0, 1, 11, 15]


def test_link_only_frames() -> None:
    items = LinkDecoder(False).feed(REQUEST_LINK_STATUS + LINK_STATUS)
    assert [(f.function_name, f.user_data) for f in frames(items)] == [
        ("request_link_status", b""),
        ("link_status", b""),
    ]


@pytest.mark.parametrize(
    ("length", "size"),
    [(5, 10), (6, 13), (21, 28), (22, 31), (255, MAX_FRAME_SIZE)],
)
def test_frame_size(length: int, size: int) -> None:
    assert frame_size(length) == size


def test_user_data_blocks() -> None:
    data = bytes(range(250))
    frame = build_frame(0x44, 1, 10, data)
    assert len(frame) == MAX_FRAME_SIZE == 292
    (decoded,) = LinkDecoder(False).feed(frame)
    assert isinstance(decoded, LinkFrame)
    assert decoded.user_data == data


def test_several_frames_one_feed() -> None:
    stream = READ_FRAME + REQUEST_LINK_STATUS + READ_FRAME
    assert len(frames(LinkDecoder(False).feed(stream))) == 3


@pytest.mark.parametrize("cut", [1, 2, 5, 9, 10, 11, 15, 17])
def test_frame_split_across_feeds(cut: int) -> None:
    decoder = LinkDecoder(False)
    assert decoder.feed(READ_FRAME[:cut]) == []
    (frame,) = decoder.feed(READ_FRAME[cut:])
    assert isinstance(frame, LinkFrame)
    assert frame.user_data[2] == 0x01


def test_byte_by_byte() -> None:
    decoder = LinkDecoder(False)
    stream = READ_FRAME + build_frame(0x44, 1, 10, bytes(100)) + READ_FRAME
    items = [item for octet in stream for item in decoder.feed(bytes([octet]))]
    assert len(frames(items)) == 3 and not events(items)


def test_datagram_with_several_frames() -> None:
    decoder = LinkDecoder(True)
    assert len(frames(decoder.feed(READ_FRAME + READ_FRAME + LINK_STATUS))) == 3


def test_datagram_keeps_nothing() -> None:
    decoder = LinkDecoder(True)
    assert events(decoder.feed(READ_FRAME[:12])) == [Dnp3Event.MALFORMED]
    # The rest of the frame in the next datagram is not a frame start.
    assert events(decoder.feed(READ_FRAME[12:])) == [Dnp3Event.NON_DNP3_TRAFFIC]
    assert len(frames(decoder.feed(READ_FRAME))) == 1


def test_bad_header_crc_resyncs() -> None:
    bad = bytearray(READ_FRAME)
    bad[9] ^= 0xFF  # header CRC
    items = LinkDecoder(False).feed(bytes(bad) + READ_FRAME)
    assert events(items) == [Dnp3Event.BAD_LINK_CRC]
    assert len(frames(items)) == 1


def test_resync_skips_false_start_inside_data() -> None:
    # 05 64 inside the damaged frame's data does not pass for a header: its CRC fails.
    damaged = bytearray(build_frame(0x44, 1, 10, b"\x05\x64\x05\x64" + bytes(20)))
    damaged[8] ^= 1
    items = LinkDecoder(False).feed(bytes(damaged) + READ_FRAME)
    assert events(items) == [Dnp3Event.BAD_LINK_CRC]
    assert len(frames(items)) == 1


def test_bad_data_crc_drops_frame() -> None:
    bad = bytearray(READ_FRAME)
    bad[-1] ^= 0x01
    items = LinkDecoder(False).feed(bytes(bad) + READ_FRAME)
    assert events(items) == [Dnp3Event.BAD_TRANSPORT_CRC]
    assert len(frames(items)) == 1


def test_length_too_small() -> None:
    frame = build_frame(0xC9, 10, 1)
    header = bytearray(frame[:8])
    header[2] = 4  # length below the 5 octets of control and addresses
    items = LinkDecoder(False).feed(append_crc(bytes(header)) + READ_FRAME)
    assert events(items) == [Dnp3Event.LEN_TOO_SMALL]
    assert len(frames(items)) == 1


def test_junk_between_frames() -> None:
    items = LinkDecoder(False).feed(b"hello world" + READ_FRAME + b"\x00" * 3 + READ_FRAME)
    assert events(items) == [Dnp3Event.NON_DNP3_TRAFFIC, Dnp3Event.NON_DNP3_TRAFFIC]
    assert len(frames(items)) == 2


def test_buffer_is_bounded() -> None:
    decoder = LinkDecoder(False)
    for _ in range(1000):
        decoder.feed(bytes(range(256)))
        assert len(decoder._buf) <= MAX_FRAME_SIZE
    # An announced 292-octet frame is held, never more.
    decoder.feed(build_frame(0x44, 1, 10, bytes(250))[:-1])
    assert len(decoder._buf) == MAX_FRAME_SIZE - 1


def test_reset_forgets_partial_frame() -> None:
    decoder = LinkDecoder(False)
    decoder.feed(READ_FRAME[:12])
    decoder.reset()
    assert len(frames(decoder.feed(READ_FRAME))) == 1


def test_build_frame_rejects_oversized_data() -> None:
    with pytest.raises(ValueError):
        build_frame(0x44, 1, 10, bytes(251))


def test_crc_memory_is_bounded() -> None:
    # Every block is new: the remembered CRCs never exceed the bound, and stay right.
    for n in range(link._CRC_CACHE_SIZE + 10):
        block = n.to_bytes(4, "little")
        assert link._crc(block) == crc16_dnp(block)
        assert len(link._crcs) <= link._CRC_CACHE_SIZE
