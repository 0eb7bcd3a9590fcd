"""Craft the Modbus state-rule session: pcaps/modbus-state.pcap.

One TCP session (scapy, see ``crafted.py``) between a client (192.0.2.10) and a server
(192.0.2.20:502) exercising the rules with a ``state`` block, step by step as ``STEPS``
lists them (``--list`` prints packet numbers):

* two requests the server never answers (it only acknowledges), to units 1 and 2, each
  followed by more than five seconds of answered polling: ``otids-modbus-no-response``
  (9101112) twice, one per unit;
* writes answered normally and read back: a holding register read back equal, then changed
  by someone else; a coil read back changed; a block of registers read back equal; a mask
  write read back as its masks say; a write refused with an exception and an input
  register at the written address (another table): ``otids-modbus-write-readback-changed``
  (9101113) twice.

Usage: python scripts/pcaps/modbus_state.py [--out pcaps/modbus-state.pcap] [--list]
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from crafted import Side, TcpSession, mbap, run

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "modbus-state.pcap"
SECOND = 1_000_000  # microseconds
POLL_INTERVAL = SECOND  # between two polls while a request goes unanswered
SILENCE = 6  # polls after an unanswered request: more than the rule's five seconds
COIL_ON = 0xFF00


@dataclass(frozen=True)
class Step:
    """One request and its response PDU (None: the server never answers)."""

    title: str
    unit: int
    request: bytes  # PDU: function code and data
    response: bytes | None


def read_holding(address: int, values: list[int]) -> tuple[bytes, bytes]:
    """FC 3 request for ``len(values)`` registers at ``address``, and its response."""
    request = struct.pack(">BHH", 3, address, len(values))
    response = struct.pack(f">BB{len(values)}H", 3, 2 * len(values), *values)
    return request, response


def read_coils(address: int, bits: list[int]) -> tuple[bytes, bytes]:
    """FC 1 request for ``len(bits)`` coils at ``address``, and its response."""
    packed = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        packed[i // 8] |= bit << (i % 8)
    request = struct.pack(">BHH", 1, address, len(bits))
    return request, struct.pack(">BB", 1, len(packed)) + bytes(packed)


def step(title: str, pair: tuple[bytes, bytes], unit: int = 1) -> Step:
    """A request/response pair as a step."""
    return Step(title, unit, *pair)


POLL = read_holding(0, [10, 20])  # the HMI's routine poll (registers 0-1, unchanged)
WRITE_100 = struct.pack(">BHH", 6, 100, 1500)  # FC 6: register 100 = 1500 (echoed)
WRITE_COIL_7 = struct.pack(">BHH", 5, 7, COIL_ON)  # FC 5: coil 7 on (echoed)
WRITE_200 = struct.pack(">BHHB4H", 16, 200, 4, 8, 1, 2, 3, 4)  # FC 16: 200-203 = 1, 2, 3, 4
WRITE_200_ANSWER = struct.pack(">BHH", 16, 200, 4)
MASK_300 = struct.pack(">BHHH", 22, 300, 0x00F2, 0x0025)  # FC 22: AND 0x00F2, OR 0x0025
WRITE_400 = struct.pack(">BHH", 6, 400, 7)  # FC 6: register 400 = 7 ...
REFUSED_400 = bytes([0x86, 0x04])  # ... refused: exception 4, server device failure


def polls(count: int) -> list[Step]:
    """``count`` routine polls, answered."""
    return [step(f"poll {i + 1}", POLL) for i in range(count)]


STEPS: list[Step] = [
    *polls(2),
    Step("unanswered read, unit 1 (no-response alert)", 1, POLL[0], None),
    *polls(SILENCE),
    Step("unanswered read, unit 2 (no-response alert)", 2, POLL[0], None),
    *polls(SILENCE),
    Step("write register 100 = 1500", 1, WRITE_100, WRITE_100),
    step("read back register 100: 1500, as written", read_holding(100, [1500, 0])),
    step("read back register 100: 1400 (readback alert)", read_holding(100, [1400, 0])),
    Step("write coil 7 on", 1, WRITE_COIL_7, WRITE_COIL_7),
    step("read back coils 0-15: coil 7 off (readback alert)", read_coils(0, [0] * 16)),
    Step("write registers 200-203 = 1, 2, 3, 4", 1, WRITE_200, WRITE_200_ANSWER),
    step("read back registers 198-205: as written", read_holding(198, [9, 9, 1, 2, 3, 4, 9, 9])),
    Step("mask write register 300", 1, MASK_300, MASK_300),
    step("read back register 300: 0x0017, as the masks say", read_holding(300, [0x0017])),
    Step("write register 400 = 7, refused with exception 4", 1, WRITE_400, REFUSED_400),
    step("read register 400: 3 (the write did not happen)", read_holding(400, [3])),
    Step(
        "read input register 100: 99 (another table)",
        1,
        struct.pack(">BHH", 4, 100, 1),
        struct.pack(">BBH", 4, 2, 99),
    ),
]


def build() -> TcpSession:
    """The session: handshake, the steps a second apart, orderly close."""
    session = TcpSession()
    session.open()
    for transaction_id, item in enumerate(STEPS, start=1):
        session.pause(POLL_INTERVAL)
        session.mark(item.title)
        header = mbap(transaction_id, 1 + len(item.request), unit=item.unit)
        session.send(Side.CLIENT, header + item.request)
        if item.response is None:
            session.ack(Side.SERVER)
            continue
        answer = mbap(transaction_id, 1 + len(item.response), unit=item.unit)
        session.send(Side.SERVER, answer + item.response)
        session.ack(Side.CLIENT)
    session.pause()
    session.close()
    return session


def main() -> None:
    """Parse the options, write the capture."""
    run(__doc__, DEFAULT_OUT, build)


if __name__ == "__main__":
    main()
