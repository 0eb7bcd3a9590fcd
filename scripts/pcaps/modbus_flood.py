"""Craft a request flood: pcaps/modbus-flood.pcap.

One TCP session (scapy, see ``crafted.py``) in which the client sends ``REQUESTS`` read
holding registers requests, each in its own segment and with its own transaction id, and the
server never answers: it only acknowledges (one ACK for every two segments, as delayed ACKs
do). otids' dissector gives up the oldest requests beyond 500 pending (``REQUEST_FLOOD``)
and raises ``modbus.flooded`` once, on the 501st request (packet 3 + 501 + 250 = 754 here).

Each request::

    00 01..02 58   transaction id 1..600
    00 00          protocol id 0
    00 06          length 6
    01             unit id
    03             function 3, read holding registers
    00 00          starting address 0
    00 01          quantity 1

Usage: python scripts/pcaps/modbus_flood.py [--out pcaps/modbus-flood.pcap]
"""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

from crafted import Side, TcpSession, mbap, write

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "modbus-flood.pcap"
REQUESTS = 600  # comfortably above the 500 unanswered requests that make a flood
ACK_EVERY = 2  # segments per server ACK
REQUEST_INTERVAL = 1_000  # microseconds between two requests: a tight loop
READ_REQUEST = struct.pack(">BHH", 3, 0, 1)  # function 3, address 0, quantity 1


def build() -> TcpSession:
    """The flooding session."""
    session = TcpSession()
    session.open()
    for transaction_id in range(1, REQUESTS + 1):
        session.pause(REQUEST_INTERVAL)
        session.send(Side.CLIENT, mbap(transaction_id, 1 + len(READ_REQUEST)) + READ_REQUEST)
        if transaction_id % ACK_EVERY == 0:
            session.ack(Side.SERVER)
    session.pause()
    session.close()
    return session


def main() -> None:
    """Parse the options, write the capture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="pcap file to write")
    args = parser.parse_args()
    session = build()
    write(args.out, session.packets)
    print(f"{args.out}: {len(session.packets)} packets, {REQUESTS} unanswered requests")


if __name__ == "__main__":
    main()
