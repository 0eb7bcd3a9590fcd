"""CRC-16/DNP, the check DNP3 puts after the link header and after every 16-octet data block.

Parameters (IEEE 1815-2012, 9.2.4.2; the catalogue's "CRC-16/DNP"): polynomial 0x3D65,
initial register 0x0000, input and output reflected, final XOR 0xFFFF; check value 0xEA82 for
``b"123456789"``. The CRC is transmitted low octet first.

``crcmod`` (from the crcmod-plus package, C-accelerated) takes ``initCrc`` as the initial
register *already XORed with the final XOR*, hence 0xFFFF below for a register of 0x0000.
"""

from __future__ import annotations

from collections.abc import Callable

import crcmod

crc16_dnp: Callable[[bytes], int] = crcmod.mkCrcFun(
    0x13D65, initCrc=0xFFFF, rev=True, xorOut=0xFFFF
)
"""CRC-16/DNP of a bytes-like object."""


def append_crc(block: bytes) -> bytes:
    """``block`` followed by its CRC: what a sender puts on the wire (used to build frames)."""
    crc = crc16_dnp(block)
    return block + bytes((crc & 0xFF, crc >> 8))
