"""Craft exception bursts and a lost segment: pcaps/modbus-bursts.pcap.

One TCP session (scapy, see ``crafted.py``) between a client (192.0.2.10) and a server
(192.0.2.20:502), a second between requests (``--list`` prints packet numbers):

* ``BURST`` reads answered with exception 6, server device busy:
  ``otids-modbus-server-busy-burst`` (9101108) once;
* ``BURST`` program-download style requests (FC 21, write file record) answered with
  exception 5, acknowledge: ``otids-modbus-acknowledge-burst`` (9101109) once;
* a read request the capture missed (the server's acknowledgement covers its bytes, the
  server does not answer it), then a normal read: ``modbus.gap`` once, so
  ``otids-modbus-event-gap`` (9101010) once;
* orderly close.

Usage: python scripts/pcaps/modbus_bursts.py [--out pcaps/modbus-bursts.pcap] [--list]
"""

from __future__ import annotations

import struct
from pathlib import Path

from crafted import Side, TcpSession, mbap, run

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "modbus-bursts.pcap"
SECOND = 1_000_000  # microseconds
BURST = 3  # exceptions in a row: the rules' threshold
READ = struct.pack(">BHH", 3, 0, 2)  # FC 3: registers 0-1
READ_ANSWER = struct.pack(">BBHH", 3, 4, 10, 20)
BUSY = bytes([0x83, 0x06])  # FC 3 exception 6: server device busy
WRITE_FILE_RECORD = bytes([
    21,  # FC 21 write file record
    9,  # request data length
    6,  # reference type
    0x00, 0x04,  # file number 4
    0x00, 0x07,  # record number 7
    0x00, 0x01,  # record length: 1 register
    0x12, 0x34,  # the register
])  # fmt: skip
ACKNOWLEDGE = bytes([0x95, 0x05])  # FC 21 exception 5: acknowledge (working on it)


def build() -> TcpSession:
    """The session, step by step."""
    session = TcpSession()
    transaction_id = 0

    def exchange(request: bytes, answer: bytes | None) -> None:
        nonlocal transaction_id
        transaction_id += 1
        session.pause(SECOND)
        session.send(Side.CLIENT, mbap(transaction_id, 1 + len(request)) + request)
        if answer is None:
            session.ack(Side.SERVER)
            return
        session.send(Side.SERVER, mbap(transaction_id, 1 + len(answer)) + answer)
        session.ack(Side.CLIENT)

    session.open()
    session.mark("read, answered")
    exchange(READ, READ_ANSWER)
    session.mark(f"{BURST} reads answered server device busy (burst alert)")
    for _ in range(BURST):
        exchange(READ, BUSY)
    session.mark(f"{BURST} write file record answered acknowledge (burst alert)")
    for _ in range(BURST):
        exchange(WRITE_FILE_RECORD, ACKNOWLEDGE)
    session.mark("a read the capture missed, acknowledged by the server (gap)")
    exchange(READ, None)
    del session.packets[-2]  # the request itself: lost; the server's ACK covers it
    session.mark("read, answered")
    exchange(READ, READ_ANSWER)
    session.pause()
    session.close()
    return session


def main() -> None:
    """Parse the options, write the capture."""
    run(__doc__, DEFAULT_OUT, build)


if __name__ == "__main__":
    main()
