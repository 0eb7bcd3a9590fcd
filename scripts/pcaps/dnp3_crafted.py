"""Helpers for the crafted DNP3 captures: stations that wrap application fragments in link
frames (CRCs included), and a UDP conversation written packet by packet with scapy.

Used by ``dnp3_attack.py`` (over TCP, with ``crafted.TcpSession``) and ``dnp3_udp.py``. The
frames come from otids' own encoder (:func:`otids.decode.dnp3.transport.encode_fragment`),
which the dissector's unit tests check against published CRC vectors. Timestamps come from a
fixed start and fixed steps, so the output is the same byte for byte on every run.
"""

from __future__ import annotations

from crafted import (
    CLIENT_IP,
    CLIENT_MAC,
    EXCHANGE_STEP,
    MICROSECONDS,
    PACKET_STEP,
    SERVER_IP,
    SERVER_MAC,
    START,
    TTL,
    Side,
)
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet
from scapy.utils import EDecimal

from otids.decode.dnp3.transport import MAX_SEGMENT_DATA, encode_fragment

DNP3_PORT = 20000
MASTER_ADDRESS = 1  # link addresses
OUTSTATION_ADDRESS = 10
BROADCAST_ADDRESS = 0xFFFF  # every outstation, none answers

# Link control octets of unconfirmed user data (function 4) frames, PRM set: a master's
# have DIR set (0xC4), an outstation's not (0x44).
MASTER_CONTROL = 0xC4
OUTSTATION_CONTROL = 0x44

# Application control bits (IEEE 1815-2012, 4.2.2.4).
FIR, FIN, CON, UNS = 0x80, 0x40, 0x20, 0x10

RESPONSE = 0x81
UNSOLICITED_RESPONSE = 0x82


class Station:
    """One end of a DNP3 association: numbers its transport segments, frames its fragments."""

    def __init__(self, address: int, peer: int, control: int) -> None:
        self.address = address
        self.peer = peer
        self.control = control
        self.transport_seq = 0  # 6-bit, one more per segment sent

    def frames(self, fragment: bytes, dst: int | None = None) -> bytes:
        """The link frames carrying ``fragment`` (to the peer, or to ``dst``)."""
        out = encode_fragment(
            fragment, self.control, self.peer if dst is None else dst, self.address,
            self.transport_seq,
        )  # fmt: skip
        segments = max(1, -(-len(fragment) // MAX_SEGMENT_DATA))
        self.transport_seq = (self.transport_seq + segments) & 0x3F
        return out


def request(seq: int, function: int, *objects: bytes, uns: bool = False) -> bytes:
    """A single-fragment request: application control (FIR, FIN, sequence), function."""
    return bytes([FIR | FIN | (UNS if uns else 0) | seq, function]) + b"".join(objects)


def response(
    seq: int,
    *objects: bytes,
    function: int = RESPONSE,
    iin: int = 0,
    first: bool = True,
    final: bool = True,
    confirm: bool = False,
) -> bytes:
    """A response fragment: application control, function, IIN1, IIN2, objects."""
    control = (FIR if first else 0) | (FIN if final else 0) | (CON if confirm else 0) | seq
    if function == UNSOLICITED_RESPONSE:
        control |= UNS
    return bytes([control, function, iin >> 8, iin & 0xFF]) + b"".join(objects)


class UdpSession:
    """DNP3 over UDP between ``CLIENT_IP:DNP3_PORT`` (master) and ``SERVER_IP:DNP3_PORT``.

    Both ends use the DNP3 port, as DNP3 devices on UDP usually do.
    """

    def __init__(self, start: int = START) -> None:
        self.packets: list[Packet] = []
        self.marks: list[tuple[int, str]] = []
        self.time = start  # microseconds since the epoch
        self._addresses = ((CLIENT_IP, CLIENT_MAC), (SERVER_IP, SERVER_MAC))
        self._ip_id = [0x1000, 0x4000]

    def send(self, side: Side, payload: bytes) -> None:
        """One datagram from ``side``."""
        other = 1 - side
        (src, src_mac), (dst, dst_mac) = self._addresses[side], self._addresses[other]
        self._ip_id[side] += 1
        packet = (
            Ether(src=src_mac, dst=dst_mac)
            / IP(src=src, dst=dst, id=self._ip_id[side], ttl=TTL, flags="DF")
            / UDP(sport=DNP3_PORT, dport=DNP3_PORT)
            / payload
        )
        packet.time = EDecimal(self.time) / MICROSECONDS  # exact: no float rounding
        self.time += PACKET_STEP
        self.packets.append(packet)

    def mark(self, label: str) -> None:
        """Label the next packet."""
        self.marks.append((len(self.packets) + 1, label))

    def pause(self, microseconds: int = EXCHANGE_STEP) -> None:
        """Let time pass before the next packet."""
        self.time += microseconds
