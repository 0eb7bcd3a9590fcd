"""CRC-16/DNP against published vectors and real frames."""

from __future__ import annotations

import pytest

from otids.decode.dnp3.crc import append_crc, crc16_dnp

VECTORS = [
    (b"123456789", 0xEA82),  # the catalogue's check value for CRC-16/DNP
    (b"", 0xFFFF),  # nothing in, final XOR out
    # Link headers from captures (start, length, control, destination, source).
    (bytes([0x05, 0x64, 0x0B, 0xC4, 0x0A, 0x00, 0x01, 0x00]), 0xD1AC),  # dnp3-eve, read
    (bytes([0x05, 0x64, 0x0A, 0x44, 0x01, 0x00, 0x0A, 0x00]), 0x256E),  # dnp3-eve, response
]


@pytest.mark.parametrize(("data", "crc"), VECTORS)
def test_crc16_dnp(data: bytes, crc: int) -> None:
    assert crc16_dnp(data) == crc


def test_append_and_check() -> None:
    block = append_crc(b"123456789")
    assert block[-2:] == bytes([0x82, 0xEA])  # low octet first
    # A block followed by its CRC leaves the same register whatever the block.
    assert crc16_dnp(block) == crc16_dnp(append_crc(b"\x00" * 16)) == 0x993A
