"""Helpers for crafted captures: one TCP connection written packet by packet with scapy.

Used by ``modbus_malformed.py``, ``modbus_flood.py`` and ``modbus_non_modbus_502.py``.
Sequence and acknowledgement numbers follow the bytes actually sent, checksums are computed
by scapy, and timestamps come from a fixed start and fixed steps, so the output is the same
byte for byte on every run.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import EDecimal, wrpcap

# Documentation addresses (RFC 5737) and locally administered MACs: nothing real.
CLIENT_IP = "192.0.2.10"
SERVER_IP = "192.0.2.20"
CLIENT_MAC = "02:00:00:00:00:0a"
SERVER_MAC = "02:00:00:00:00:14"
MODBUS_PORT = 502
CLIENT_PORT = 49152  # first port of the dynamic range

# Times in microseconds, kept as integers so that steps add up exactly.
START = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z: fixed, so the files are reproducible
PACKET_STEP = 200  # between a packet and the next (answer, ACK)
EXCHANGE_STEP = 10_000  # between two exchanges (request after a response)
MICROSECONDS = EDecimal(1_000_000)
CLIENT_ISN = 0x1000_0000  # initial sequence numbers, fixed for reproducibility
SERVER_ISN = 0x2000_0000
WINDOW = 64240  # a usual Linux receive window
TTL = 64


class Side(enum.IntEnum):
    """Which end of the connection sends a packet."""

    CLIENT = 0
    SERVER = 1


class TcpSession:
    """One TCP connection between ``CLIENT_IP:client_port`` and ``SERVER_IP:server_port``.

    Each method appends packets to :attr:`packets`; the acknowledgement number of every packet
    covers all bytes the other side has sent so far. :meth:`mark` labels the next packet (by
    its 1-based number, as Wireshark counts) so that a script can say where each step starts.
    """

    def __init__(
        self,
        client_port: int = CLIENT_PORT,
        server_port: int = MODBUS_PORT,
        start: int = START,
    ) -> None:
        self.packets: list[Packet] = []
        self.marks: list[tuple[int, str]] = []
        self.time = start  # microseconds since the epoch
        self._ports = (client_port, server_port)
        self._addresses = ((CLIENT_IP, CLIENT_MAC), (SERVER_IP, SERVER_MAC))
        self._next_seq = [CLIENT_ISN, SERVER_ISN]  # next sequence number of each side
        self._ip_id = [0x1000, 0x4000]

    def open(self) -> None:
        """Three-way handshake (SYN, SYN/ACK, ACK)."""
        self._emit(Side.CLIENT, "S", ack=False)
        self._next_seq[Side.CLIENT] += 1  # a SYN takes one sequence number
        self._emit(Side.SERVER, "SA")
        self._next_seq[Side.SERVER] += 1
        self._emit(Side.CLIENT, "A")

    def send(self, side: Side, payload: bytes) -> None:
        """One data segment (PSH/ACK) from ``side``."""
        self._emit(side, "PA", payload)
        self._next_seq[side] += len(payload)

    def ack(self, side: Side) -> None:
        """A pure acknowledgement from ``side``."""
        self._emit(side, "A")

    def close(self, first: Side = Side.CLIENT) -> None:
        """Orderly release: FIN/ACK from ``first``, FIN/ACK from the other, final ACK."""
        other = Side(1 - first)
        for side in (first, other):
            self._emit(side, "FA")
            self._next_seq[side] += 1  # a FIN takes one sequence number
        self._emit(first, "A")

    def mark(self, label: str) -> None:
        """Label the next packet."""
        self.marks.append((len(self.packets) + 1, label))

    def pause(self, microseconds: int = EXCHANGE_STEP) -> None:
        """Let time pass before the next packet (think time between exchanges)."""
        self.time += microseconds

    def _emit(self, side: Side, flags: str, payload: bytes = b"", ack: bool = True) -> None:
        other = 1 - side
        (src, src_mac), (dst, dst_mac) = self._addresses[side], self._addresses[other]
        sport, dport = self._ports[side], self._ports[other]
        self._ip_id[side] += 1
        packet = (
            Ether(src=src_mac, dst=dst_mac)
            / IP(src=src, dst=dst, id=self._ip_id[side], ttl=TTL, flags="DF")
            / TCP(
                sport=sport,
                dport=dport,
                flags=flags,
                seq=self._next_seq[side],
                ack=self._next_seq[other] if ack else 0,
                window=WINDOW,
            )
        )
        if payload:
            packet = packet / payload
        packet.time = EDecimal(self.time) / MICROSECONDS  # exact: no float rounding
        self.time += PACKET_STEP
        self.packets.append(packet)


def mbap(transaction_id: int, length: int, unit: int = 1, protocol: int = 0) -> bytes:
    """The 7-byte MBAP header: transaction id, protocol id, length, unit id."""
    return bytes(
        [
            transaction_id >> 8,
            transaction_id & 0xFF,
            protocol >> 8,
            protocol & 0xFF,
            length >> 8,
            length & 0xFF,
            unit,
        ]
    )


def write(path: Path, packets: list[Packet]) -> None:
    """Write ``packets`` as a pcap (Ethernet link type), creating the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(path), packets)


def run(doc: str, default_out: Path, build: Callable[[], Any]) -> None:
    """The command line every crafted-capture script shares: ``--out FILE`` and ``--list``
    (print the first packet of each marked step), then write the session's packets."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out, help="pcap file to write")
    parser.add_argument("--list", action="store_true", help="print each step's first packet")
    args = parser.parse_args()
    session = build()
    write(args.out, session.packets)
    if args.list:
        for first, label in session.marks:
            print(f"packet {first:3}: {label}")
    print(f"{args.out}: {len(session.packets)} packets, {len(session.marks)} marked steps")
