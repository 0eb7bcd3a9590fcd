"""Craft the DNP3 write read-back session: pcaps/dnp3-readback.pcap.

One DNP3/TCP session (scapy, see ``crafted.py`` and ``dnp3_crafted.py``): a master
(192.0.2.10, link address 1) and an outstation (192.0.2.20:20000, link address 10) with
two analog outputs (16-bit, indexes 0 and 1). ``--list`` prints packet numbers of each step:

1. an integrity poll, answered (analog output status included): nothing written yet;
2. select then operate of analog output 0 to ``SETPOINT_0``, each echoed with status 0;
3. direct operate of analog output 1 to ``SETPOINT_1``, echoed with status 0;
4. a read of the analog output status: both read back as written, no alert;
5. an integrity poll: both still as written;
6. a read of the analog output status showing output 0 at ``CHANGED_0``:
   ``otids-dnp3-write-readback-changed`` once (output 1, read back equal, stays watched);
7. the same read again: output 0 was reported and forgotten, no alert;
8. orderly close.

Usage: python scripts/pcaps/dnp3_readback.py [--out pcaps/dnp3-readback.pcap] [--list]
"""

from __future__ import annotations

import struct
from pathlib import Path

from crafted import Side, TcpSession, run
from dnp3_crafted import (
    DNP3_PORT,
    MASTER_ADDRESS,
    MASTER_CONTROL,
    OUTSTATION_ADDRESS,
    OUTSTATION_CONTROL,
    Station,
    request,
    response,
)

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "dnp3-readback.pcap"
SECOND = 1_000_000  # microseconds
READ, SELECT, OPERATE, DIRECT_OPERATE = 0x01, 0x03, 0x04, 0x05  # application function codes
SETPOINT_0 = 1500  # written to analog output 0 (select/operate)
SETPOINT_1 = 200  # written to analog output 1 (direct operate)
CHANGED_0 = 1400  # what output 0 reads back as at step 6
ONLINE = 0x01  # analog output status flag
SUCCESS = 0  # control status of an accepted command

CLASS_0 = bytes([60, 1, 0x06])  # g60v1 class 0 data, all points
ANALOG_OUTPUT_STATUS = bytes([40, 2, 0x06])  # g40v2 analog output status, all points
BINARY_INPUTS = bytes([
    1, 2, 0x00, 0, 1,  # g1v2 binary input with flags, indexes 0-1 (1-octet start, stop)
    0x81, 0x01,  # online; on, off
])  # fmt: skip


def analog_output(index: int, value: int) -> bytes:
    """g41v2 (16-bit analog output block), 1-octet index prefix and count: one point."""
    return bytes([41, 2, 0x17, 1, index]) + struct.pack("<hB", value, SUCCESS)


def analog_status(first: int, second: int) -> bytes:
    """g40v2 (16-bit analog output status with flag), indexes 0-1 (1-octet start, stop)."""
    return bytes([40, 2, 0x00, 0, 1]) + struct.pack("<BhBh", ONLINE, first, ONLINE, second)


def build() -> TcpSession:
    """The session, step by step."""
    session = TcpSession(server_port=DNP3_PORT)
    master = Station(MASTER_ADDRESS, OUTSTATION_ADDRESS, MASTER_CONTROL)
    outstation = Station(OUTSTATION_ADDRESS, MASTER_ADDRESS, OUTSTATION_CONTROL)
    app_seq = 0  # the master's application sequence

    def exchange(function: int, asked: bytes, answer: bytes) -> None:
        nonlocal app_seq
        session.send(Side.CLIENT, master.frames(request(app_seq, function, asked)))
        session.send(Side.SERVER, outstation.frames(response(app_seq, answer)))
        session.ack(Side.CLIENT)
        app_seq = (app_seq + 1) & 0x0F

    def command(function: int, index: int, value: int) -> None:
        exchange(function, analog_output(index, value), analog_output(index, value))

    session.open()
    session.pause()
    session.mark("1 integrity poll, answered")
    exchange(READ, CLASS_0, BINARY_INPUTS + analog_status(0, 0))
    session.pause(SECOND)
    session.mark(f"2 select, operate analog output 0 to {SETPOINT_0}")
    command(SELECT, 0, SETPOINT_0)
    session.pause()
    command(OPERATE, 0, SETPOINT_0)
    session.pause(SECOND)
    session.mark(f"3 direct operate analog output 1 to {SETPOINT_1}")
    command(DIRECT_OPERATE, 1, SETPOINT_1)
    session.pause(SECOND)
    session.mark("4 analog output status read back as written")
    exchange(READ, ANALOG_OUTPUT_STATUS, analog_status(SETPOINT_0, SETPOINT_1))
    session.pause(SECOND)
    session.mark("5 integrity poll, as written")
    exchange(READ, CLASS_0, BINARY_INPUTS + analog_status(SETPOINT_0, SETPOINT_1))
    session.pause(SECOND)
    session.mark(f"6 analog output 0 reads {CHANGED_0} (alert)")
    exchange(READ, ANALOG_OUTPUT_STATUS, analog_status(CHANGED_0, SETPOINT_1))
    session.pause(SECOND)
    session.mark("7 the same read again: reported once, no alert")
    exchange(READ, ANALOG_OUTPUT_STATUS, analog_status(CHANGED_0, SETPOINT_1))
    session.pause()
    session.close()
    return session


def main() -> None:
    """Parse the options, write the capture."""
    run(__doc__, DEFAULT_OUT, build)


if __name__ == "__main__":
    main()
