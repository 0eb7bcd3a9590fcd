"""Craft non-Modbus traffic on the Modbus port: pcaps/modbus-non-modbus-502.pcap.

One TCP session (scapy, see ``crafted.py``) to port 502 in which the client sends an HTTP
request, as a web scanner or a misdirected browser would. Its first bytes read as an MBAP
header give transaction id 0x4745 ("GE"), protocol id 0x5420 ("T "), which is not 0: otids
raises ``modbus.non_modbus_traffic`` for the flow (packet 4). The server acknowledges the
request, then closes the connection as a Modbus server does with bytes it cannot frame.

Usage: python scripts/pcaps/modbus_non_modbus_502.py [--out pcaps/modbus-non-modbus-502.pcap]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crafted import SERVER_IP, Side, TcpSession, write

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "modbus-non-modbus-502.pcap"
HTTP_REQUEST = (
    f"GET / HTTP/1.1\r\nHost: {SERVER_IP}:502\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"
).encode("ascii")


def build() -> TcpSession:
    """The session: handshake, HTTP request, ACK, close by the server."""
    session = TcpSession()
    session.open()
    session.pause()
    session.send(Side.CLIENT, HTTP_REQUEST)
    session.ack(Side.SERVER)
    session.pause()
    session.close(first=Side.SERVER)
    return session


def main() -> None:
    """Parse the options, write the capture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="pcap file to write")
    args = parser.parse_args()
    session = build()
    write(args.out, session.packets)
    print(f"{args.out}: {len(session.packets)} packets")


if __name__ == "__main__":
    main()
