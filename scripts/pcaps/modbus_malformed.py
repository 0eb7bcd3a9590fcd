"""Craft one Modbus/TCP session that raises each decoder event in turn: pcaps/modbus-malformed.pcap.

Written with scapy (see ``crafted.py``): a handshake, then the exchanges of ``EXCHANGES`` in
order, then an orderly close. Each exchange says which decoder event it must raise (None for
normal traffic); its ADUs are spelled out field by field. In an exchange, the client sends
the request segments (each but the last acknowledged by the server), then the server either
sends its response segments (the client acknowledges them) or, when there is none, only
acknowledges the request. Packet numbers (1-based, as Wireshark counts) are printed with
``--list``.

After each framing error that breaks the MBAP length (exchanges 5 and 7) comes a normal
exchange: a dissector must find the next header again, and that one must decode cleanly.

The flood and the non-Modbus traffic on port 502 are in their own files
(``modbus_flood.py``, ``modbus_non_modbus_502.py``).

Usage: python scripts/pcaps/modbus_malformed.py [--out pcaps/modbus-malformed.pcap] [--list]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from crafted import Side, TcpSession, run

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "modbus-malformed.pcap"


@dataclass(frozen=True)
class Exchange:
    """One request/response exchange of the session."""

    title: str
    event: str | None  # the decoder event it must raise; None: normal, no event
    request: list[bytes] = field(default_factory=list)  # client segments, in order
    response: list[bytes] = field(default_factory=list)  # server segments, in order


# Exchange 2's request, split over three segments below.
WRITE_REGISTERS_REQUEST = bytes([
    0x00, 0x02,  # transaction id 2
    0x00, 0x00,  # protocol id 0
    0x00, 0x0D,  # length 13: unit + 12 PDU bytes
    0x01,  # unit id
    0x10,  # function 16, write multiple registers
    0x00, 0x10,  # starting address 16
    0x00, 0x03,  # quantity 3
    0x06,  # byte count 6
    0x00, 0x1E, 0x00, 0x2D, 0x00, 0x3C,  # values 30, 45, 60
])  # fmt: skip

EXCHANGES: list[Exchange] = [
    Exchange(
        "1 normal read holding registers",
        None,
        request=[bytes([
            0x00, 0x01,  # transaction id 1
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6
            0x01,  # unit id
            0x03,  # function 3, read holding registers
            0x00, 0x00,  # starting address 0
            0x00, 0x02,  # quantity 2
        ])],
        response=[bytes([
            0x00, 0x01,  # transaction id 1
            0x00, 0x00,  # protocol id 0
            0x00, 0x07,  # length 7
            0x01,  # unit id
            0x03,  # function 3
            0x04,  # byte count 4
            0x03, 0xE8, 0x03, 0xE9,  # registers 1000, 1001
        ])],
    ),
    Exchange(
        "2 one ADU split over three TCP segments (5 + 6 + 8 bytes)",
        None,
        request=[
            WRITE_REGISTERS_REQUEST[:5],  # transaction id, protocol id, length's high byte
            WRITE_REGISTERS_REQUEST[5:11],  # length's low byte .. quantity's high byte
            WRITE_REGISTERS_REQUEST[11:],  # quantity's low byte, byte count, values
        ],
        response=[bytes([
            0x00, 0x02,  # transaction id 2
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6
            0x01,  # unit id
            0x10,  # function 16
            0x00, 0x10,  # starting address 16
            0x00, 0x03,  # quantity 3
        ])],
    ),
    Exchange(
        "3 three ADUs in one segment, each way",
        None,
        request=[bytes([
            0x00, 0x03, 0x00, 0x00, 0x00, 0x06, 0x01,  # MBAP: id 3, length 6, unit 1
            0x01, 0x00, 0x00, 0x00, 0x08,  # read coils: address 0, quantity 8
            0x00, 0x04, 0x00, 0x00, 0x00, 0x06, 0x01,  # MBAP: id 4, length 6, unit 1
            0x02, 0x00, 0x00, 0x00, 0x08,  # read discrete inputs: address 0, quantity 8
            0x00, 0x05, 0x00, 0x00, 0x00, 0x06, 0x01,  # MBAP: id 5, length 6, unit 1
            0x04, 0x00, 0x00, 0x00, 0x01,  # read input registers: address 0, quantity 1
        ])],
        response=[bytes([
            0x00, 0x03, 0x00, 0x00, 0x00, 0x04, 0x01,  # MBAP: id 3, length 4, unit 1
            0x01, 0x01, 0x49,  # read coils: byte count 1, status 0x49
            0x00, 0x04, 0x00, 0x00, 0x00, 0x04, 0x01,  # MBAP: id 4, length 4, unit 1
            0x02, 0x01, 0xAA,  # read discrete inputs: byte count 1, status 0xAA
            0x00, 0x05, 0x00, 0x00, 0x00, 0x05, 0x01,  # MBAP: id 5, length 5, unit 1
            0x04, 0x02, 0x00, 0xC8,  # read input registers: byte count 2, 200
        ])],
    ),
    Exchange(
        "4 protocol id 1 instead of 0 (the server drops it)",
        "modbus.invalid_protocol_id",
        request=[bytes([
            0x00, 0x06,  # transaction id 6
            0x00, 0x01,  # protocol id 1: not Modbus
            0x00, 0x06,  # length 6 (still delimits the frame)
            0x01,  # unit id
            0x03,  # function 3
            0x00, 0x00,  # starting address 0
            0x00, 0x01,  # quantity 1
        ])],
    ),
    Exchange(
        "5 MBAP length 0 (below the minimum of 2: unit id + function code)",
        "modbus.invalid_length",
        request=[bytes([
            0x00, 0x07,  # transaction id 7
            0x00, 0x00,  # protocol id 0
            0x00, 0x00,  # length 0
            0x01,  # unit id
            0x03,  # function 3, and nothing else
        ])],
    ),
    Exchange(
        "6 normal read after the bad length: the dissector resynchronises",
        None,
        request=[bytes([
            0x00, 0x08,  # transaction id 8
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6
            0x01,  # unit id
            0x03,  # function 3
            0x00, 0x00,  # starting address 0
            0x00, 0x01,  # quantity 1
        ])],
        response=[bytes([
            0x00, 0x08, 0x00, 0x00, 0x00, 0x05, 0x01,  # MBAP: id 8, length 5, unit 1
            0x03, 0x02, 0x03, 0xE8,  # function 3, byte count 2, 1000
        ])],
    ),
    Exchange(
        "7 MBAP length 300 (above the maximum of 254)",
        "modbus.invalid_length",
        request=[bytes([
            0x00, 0x09,  # transaction id 9
            0x00, 0x00,  # protocol id 0
            0x01, 0x2C,  # length 300
            0x01,  # unit id
            0x03,  # function 3
            0x00, 0x00,  # starting address 0
            0x00, 0x01,  # quantity 1
        ])],
    ),
    Exchange(
        "8 normal read after the bad length: the dissector resynchronises",
        None,
        request=[bytes([
            0x00, 0x0A,  # transaction id 10
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6
            0x01,  # unit id
            0x03,  # function 3
            0x00, 0x01,  # starting address 1
            0x00, 0x01,  # quantity 1
        ])],
        response=[bytes([
            0x00, 0x0A, 0x00, 0x00, 0x00, 0x05, 0x01,  # MBAP: id 10, length 5, unit 1
            0x03, 0x02, 0x03, 0xE9,  # function 3, byte count 2, 1001
        ])],
    ),
    Exchange(
        "9 read holding registers with a 2-byte body (the format needs 4)",
        "modbus.invalid_length",
        request=[bytes([
            0x00, 0x0B,  # transaction id 11
            0x00, 0x00,  # protocol id 0
            0x00, 0x04,  # length 4: consistent with the bytes sent
            0x01,  # unit id
            0x03,  # function 3
            0x00, 0x00,  # starting address 0; the quantity is missing
        ])],
        response=[bytes([
            0x00, 0x0B, 0x00, 0x00, 0x00, 0x03, 0x01,  # MBAP: id 11, length 3, unit 1
            0x83, 0x03,  # exception to function 3: illegal data value
        ])],
    ),
    Exchange(
        "10 function code 0 in a request",
        "modbus.invalid_function_code",
        request=[bytes([
            0x00, 0x0C,  # transaction id 12
            0x00, 0x00,  # protocol id 0
            0x00, 0x02,  # length 2
            0x01,  # unit id
            0x00,  # function 0: never valid
        ])],
        response=[bytes([
            0x00, 0x0C, 0x00, 0x00, 0x00, 0x03, 0x01,  # MBAP: id 12, length 3, unit 1
            0x80, 0x01,  # exception to function 0: illegal function
        ])],
    ),
    Exchange(
        "11 function code 0x85 in a request (exception bit set; the server drops it)",
        "modbus.invalid_function_code",
        request=[bytes([
            0x00, 0x0D,  # transaction id 13
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6
            0x01,  # unit id
            0x85,  # function 0x85: 5 with the exception bit
            0x00, 0x01,  # output address 1
            0xFF, 0x00,  # ON
        ])],
    ),
    Exchange(
        "12 exception response with code 0x0C (the spec defines 1-6, 8, 0x0A, 0x0B)",
        "modbus.invalid_exception_code",
        request=[bytes([
            0x00, 0x0E,  # transaction id 14
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6
            0x01,  # unit id
            0x03,  # function 3
            0x00, 0x00,  # starting address 0
            0x00, 0x01,  # quantity 1
        ])],
        response=[bytes([
            0x00, 0x0E,  # transaction id 14
            0x00, 0x00,  # protocol id 0
            0x00, 0x03,  # length 3
            0x01,  # unit id
            0x83,  # exception to function 3
            0x0C,  # exception code 0x0C: undefined
        ])],
    ),
    Exchange(
        "13 write single coil with value 0x1234 (only 0xFF00 and 0x0000 are allowed)",
        "modbus.invalid_value",
        request=[bytes([
            0x00, 0x0F,  # transaction id 15
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6
            0x01,  # unit id
            0x05,  # function 5, write single coil
            0x00, 0x01,  # output address 1
            0x12, 0x34,  # output value 0x1234
        ])],
        response=[bytes([
            0x00, 0x0F, 0x00, 0x00, 0x00, 0x03, 0x01,  # MBAP: id 15, length 3, unit 1
            0x85, 0x03,  # exception to function 5: illegal data value
        ])],
    ),
    Exchange(
        "14 read coils of 16 answered with 3 status bytes (16 coils take 2)",
        "modbus.value_mismatch",
        request=[bytes([
            0x00, 0x10,  # transaction id 16
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6
            0x01,  # unit id
            0x01,  # function 1, read coils
            0x00, 0x00,  # starting address 0
            0x00, 0x10,  # quantity 16
        ])],
        response=[bytes([
            0x00, 0x10,  # transaction id 16
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6: consistent with the byte count
            0x01,  # unit id
            0x01,  # function 1
            0x03,  # byte count 3
            0x49, 0x92, 0x24,  # coil status
        ])],
    ),
    Exchange(
        "15 response with no request (transaction id 240 was never asked)",
        "modbus.unsolicited_response",
        response=[bytes([
            0x00, 0xF0,  # transaction id 240
            0x00, 0x00,  # protocol id 0
            0x00, 0x05,  # length 5
            0x01,  # unit id
            0x03,  # function 3
            0x02,  # byte count 2
            0x00, 0x00,  # register 0
        ])],
    ),
    Exchange(
        "16 normal read before closing",
        None,
        request=[bytes([
            0x00, 0x11,  # transaction id 17
            0x00, 0x00,  # protocol id 0
            0x00, 0x06,  # length 6
            0x01,  # unit id
            0x04,  # function 4, read input registers
            0x00, 0x00,  # starting address 0
            0x00, 0x02,  # quantity 2
        ])],
        response=[bytes([
            0x00, 0x11, 0x00, 0x00, 0x00, 0x07, 0x01,  # MBAP: id 17, length 7, unit 1
            0x04, 0x04, 0x00, 0xC8, 0x00, 0xCF,  # function 4, byte count 4, 200, 207
        ])],
    ),
]  # fmt: skip


def build() -> TcpSession:
    """The session; its marks give the first packet of each exchange."""
    session = TcpSession()
    session.open()
    for exchange in EXCHANGES:
        session.pause()
        session.mark(f"{exchange.title} -> {exchange.event or 'no event'}")
        for number, segment in enumerate(exchange.request, 1):
            session.send(Side.CLIENT, segment)
            if number < len(exchange.request) or not exchange.response:
                session.ack(Side.SERVER)
        for segment in exchange.response:
            session.send(Side.SERVER, segment)
        if exchange.response:
            session.ack(Side.CLIENT)
    session.pause()
    session.close()
    return session


def main() -> None:
    """Parse the options, write the capture."""
    run(__doc__, DEFAULT_OUT, build)


if __name__ == "__main__":
    main()
