"""Craft one DNP3/TCP session of attack-like requests: pcaps/dnp3-attack.pcap.

Written with scapy (see ``crafted.py`` and ``dnp3_crafted.py``): a master (192.0.2.10,
link address 1) connects to an outstation (192.0.2.20:20000, link address 10), runs a normal
integrity poll, then the requests of ``EXCHANGES`` in order, each answered as a conforming
outstation would (a broadcast is answered by no one), then closes. Each exchange names the
shipped rule it must raise. Nothing in it is malformed: no decoder event is expected.
Packet numbers (1-based, as Wireshark counts) are printed with ``--list``.

Usage: python scripts/pcaps/dnp3_attack.py [--out pcaps/dnp3-attack.pcap] [--list]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from crafted import Side, TcpSession, run
from dnp3_crafted import (
    BROADCAST_ADDRESS,
    DNP3_PORT,
    MASTER_ADDRESS,
    MASTER_CONTROL,
    OUTSTATION_ADDRESS,
    OUTSTATION_CONTROL,
    Station,
    request,
    response,
)

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "dnp3-attack.pcap"
FILE_HANDLE = 0x2A17_0001  # the handle the outstation gives the opened file


@dataclass(frozen=True)
class Exchange:
    """One request and its response (None: nobody answers)."""

    title: str
    rule: str | None  # the shipped rule it must raise; None: normal traffic
    request: bytes  # the application fragment
    response: bytes | None
    broadcast: bool = False  # sent to the broadcast address


# Class 1, 2, 3 then class 0 data: every qualifier 0x06 ("all points"), no range.
CLASS_1230 = bytes([
    60, 2, 0x06,  # g60v2 class 1 data, all
    60, 3, 0x06,  # g60v3 class 2 data, all
    60, 4, 0x06,  # g60v4 class 3 data, all
    60, 1, 0x06,  # g60v1 class 0 data, all
])  # fmt: skip
CLASS_123 = CLASS_1230[:9]

STATIC_DATA = bytes([
    1, 2, 0x00, 0, 3,  # g1v2 binary input with flags, indexes 0-3 (1-octet start, stop)
    0x81, 0x01, 0x81, 0x01,  # online; state on, off, on, off
    30, 2, 0x00, 0, 1,  # g30v2 analog input 16-bit with flag, indexes 0-1
    0x01, 0xE8, 0x03,  # online, 1000
    0x01, 0xF4, 0x01,  # online, 500
])  # fmt: skip


def time_delay(milliseconds: int) -> bytes:
    """The answer to a restart: how long until the outstation is back."""
    return bytes([52, 2, 0x07, 1]) + struct.pack("<H", milliseconds)  # g52v2, count 1


def file_command(name: bytes, mode: int, request_id: int) -> bytes:
    """g70v3 file command (IEEE 1815-2012, 11.9.20.3), size-prefixed (qualifier 0x5B)."""
    body = (
        struct.pack("<HH", 26, len(name))  # file name offset (from the object's start), size
        + bytes(6)  # time of creation: none
        + struct.pack("<H", 0o644)  # permissions
        + struct.pack("<I", 0)  # authentication key: none
        + struct.pack("<I", 0)  # file size: unknown
        + struct.pack("<H", mode)  # operational mode: 0 none, 1 read, 2 write, 3 append
        + struct.pack("<H", 1024)  # maximum block size
        + struct.pack("<H", request_id)
        + name
    )
    return bytes([70, 3, 0x5B, 1]) + struct.pack("<H", len(body)) + body


def file_status(handle: int, request_id: int) -> bytes:
    """g70v4 file command status: handle, size, block size, request id, status 0 (success)."""
    body = struct.pack("<IIHHB", handle, 0, 1024, request_id, 0)
    return bytes([70, 4, 0x5B, 1]) + struct.pack("<H", len(body)) + body


def file_transport(handle: int, block: int, data: bytes) -> bytes:
    """g70v5 file transport: handle, block number (bit 31: the last block), data."""
    body = struct.pack("<II", handle, block) + data
    return bytes([70, 5, 0x5B, 1]) + struct.pack("<H", len(body)) + body


def file_transport_status(handle: int, block: int) -> bytes:
    """g70v6 file transport status: handle, block number, status 0 (success)."""
    body = struct.pack("<IIB", handle, block, 0)
    return bytes([70, 6, 0x5B, 1]) + struct.pack("<H", len(body)) + body


STOP_PLC_LOGIC = bytes([
    90, 1,  # g90v1 application identifier
    0x5B, 1,  # qualifier: 2-octet size prefix, 1-octet count; one object
    0x09, 0x00,  # 9 octets
    *b"PLC-LOGIC",
])  # fmt: skip

TRIP_BREAKER_0 = bytes([
    12, 1,  # g12v1 control relay output block
    0x17, 1, 0,  # qualifier: 1-octet index prefix, 1-octet count; 1 object, index 0
    0x81,  # control code: trip (0x80) | pulse on (1)
    1,  # count
    0xF4, 0x01, 0x00, 0x00,  # on time 500 ms
    0x00, 0x00, 0x00, 0x00,  # off time 0
    0,  # status
])  # fmt: skip

LAST_BLOCK = 0x8000_0000
SETTINGS = b"<settings><breaker id='1' trip='disabled'/></settings>"

EXCHANGES: list[Exchange] = [
    Exchange(
        "1 integrity poll (normal)",
        None,
        request(0, 0x01, CLASS_1230),  # read
        response(0, STATIC_DATA),
    ),
    Exchange(
        "2 cold restart",
        "otids-dnp3-cold-restart",
        request(1, 0x0D),  # cold restart: no objects
        response(1, time_delay(5000)),
    ),
    Exchange(
        "3 warm restart",
        "otids-dnp3-warm-restart",
        request(2, 0x0E),  # warm restart
        response(2, time_delay(1000)),
    ),
    Exchange(
        "4 stop application PLC-LOGIC",
        "otids-dnp3-stop-application",
        request(3, 0x12, STOP_PLC_LOGIC),
        response(3),
    ),
    Exchange(
        "5 disable unsolicited responses, classes 1-3",
        "otids-dnp3-disable-unsolicited",
        request(4, 0x15, CLASS_123),
        response(4),
    ),
    Exchange(
        "6 open /config/settings.xml for writing",
        "otids-dnp3-file-operations",
        request(5, 0x19, file_command(b"/config/settings.xml", 2, 1)),
        response(5, file_status(FILE_HANDLE, 1)),
    ),
    Exchange(
        "7 write the file (one block)",
        None,  # part of the transfer the open raised
        request(6, 0x02, file_transport(FILE_HANDLE, LAST_BLOCK, SETTINGS)),
        response(6, file_transport_status(FILE_HANDLE, LAST_BLOCK)),
    ),
    Exchange(
        "8 close the file",
        None,
        request(7, 0x1A, file_status(FILE_HANDLE, 2)),
        response(7, file_status(FILE_HANDLE, 2)),
    ),
    Exchange(
        "9 delete /logs/events.log",
        "otids-dnp3-delete-file",
        request(8, 0x1B, file_command(b"/logs/events.log", 0, 3)),
        response(8, file_status(0, 3)),
    ),
    Exchange(
        "10 broadcast direct operate, no ack: trip breaker 0 on every outstation",
        "otids-dnp3-broadcast",
        request(9, 0x06, TRIP_BREAKER_0),
        None,
        broadcast=True,
    ),
]


def build() -> TcpSession:
    """The session: handshake, the exchanges, orderly close."""
    session = TcpSession(server_port=DNP3_PORT)
    master = Station(MASTER_ADDRESS, OUTSTATION_ADDRESS, MASTER_CONTROL)
    outstation = Station(OUTSTATION_ADDRESS, MASTER_ADDRESS, OUTSTATION_CONTROL)
    session.open()
    for exchange in EXCHANGES:
        session.pause()
        session.mark(exchange.title)
        dst = BROADCAST_ADDRESS if exchange.broadcast else None
        session.send(Side.CLIENT, master.frames(exchange.request, dst))
        if exchange.response is None:
            session.ack(Side.SERVER)
        else:
            session.send(Side.SERVER, outstation.frames(exchange.response))
            session.ack(Side.CLIENT)
    session.pause()
    session.close()
    return session


def main() -> None:
    """Parse the options, write the capture."""
    run(__doc__, DEFAULT_OUT, build)


if __name__ == "__main__":
    main()
