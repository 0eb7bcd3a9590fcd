"""Craft a normal DNP3-over-UDP conversation: pcaps/dnp3-udp.pcap.

Written with scapy (see ``dnp3_crafted.py``): a master (192.0.2.10, link address 1) and an
outstation (192.0.2.20, link address 10), both on UDP port 20000. It shows what is particular
to datagrams: several link frames in one datagram, and an application fragment whose
transport segments span two datagrams. The steps:

1. integrity poll, answered in two application fragments, each confirmed by the master: the
   first fragment (130 analog inputs, 3 transport segments) in two datagrams of 2 and 1 link
   frames, the second (16 counters) in one;
2. an unsolicited response with a binary input event, confirmed;
3. select then operate of a control relay output block.

Nothing in it should raise an alert.

Usage: python scripts/pcaps/dnp3_udp.py [--out pcaps/dnp3-udp.pcap] [--list]
"""

from __future__ import annotations

import struct
from pathlib import Path

from crafted import Side, run
from dnp3_crafted import (
    MASTER_ADDRESS,
    MASTER_CONTROL,
    OUTSTATION_ADDRESS,
    OUTSTATION_CONTROL,
    UNSOLICITED_RESPONSE,
    Station,
    UdpSession,
    request,
    response,
)

from otids.decode.dnp3.link import frame_size

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "dnp3-udp.pcap"
ANALOG_INPUTS = 130  # in the first fragment: 5 + 130 * 5 octets, three transport segments
COUNTERS = 16

INTEGRITY_POLL = bytes([
    60, 2, 0x06,  # g60v2 class 1 data, all
    60, 3, 0x06,  # g60v3 class 2 data, all
    60, 4, 0x06,  # g60v4 class 3 data, all
    60, 1, 0x06,  # g60v1 class 0 data, all
])  # fmt: skip

# g30v1 analog input, 32-bit with flag, indexes 0-129 (2-octet start and stop): flags
# online, values 100, 110, 120...
ANALOGS = (
    bytes([30, 1, 0x01])
    + struct.pack("<HH", 0, ANALOG_INPUTS - 1)
    + b"".join(struct.pack("<Bi", 0x01, 100 + 10 * i) for i in range(ANALOG_INPUTS))
)
# g20v1 counter, 32-bit with flag, indexes 0-15: flags online, counts 1000, 1001...
COUNTS = bytes([20, 1, 0x00, 0, COUNTERS - 1]) + b"".join(
    struct.pack("<BI", 0x01, 1000 + i) for i in range(COUNTERS)
)
CONFIRM = 0x00
SELECT, OPERATE = 0x03, 0x04

BINARY_EVENT = bytes([
    2, 2,  # g2v2 binary input event with absolute time
    0x28, 1, 0,  # qualifier: 2-octet index prefix, 2-octet count; one event
    0x02, 0x00,  # index 2
    0x81,  # flags: online, state on
    0x00, 0xA8, 0xDA, 0x76, 0x9B, 0x01,  # time: 2026-01-01T00:00:00Z in ms (48-bit LE)
])  # fmt: skip

CROB = bytes([
    12, 1,  # g12v1 control relay output block
    0x28, 1, 0,  # qualifier: 2-octet index prefix, 2-octet count; one object
    0x03, 0x00,  # index 3
    0x03,  # control code: latch on
    1,  # count
    0x64, 0x00, 0x00, 0x00,  # on time 100 ms
    0x64, 0x00, 0x00, 0x00,  # off time 100 ms
    0,  # status: success
])  # fmt: skip


def frames_of(wire: bytes) -> list[bytes]:
    """Split the output of :meth:`Station.frames` back into its link frames."""
    frames = []
    while wire:  # each pass removes one frame (its LENGTH octet is at offset 2)
        size = frame_size(wire[2])
        frames.append(wire[:size])
        wire = wire[size:]
    return frames


def build() -> UdpSession:
    """The conversation, datagram by datagram."""
    session = UdpSession()
    master = Station(MASTER_ADDRESS, OUTSTATION_ADDRESS, MASTER_CONTROL)
    outstation = Station(OUTSTATION_ADDRESS, MASTER_ADDRESS, OUTSTATION_CONTROL)

    session.mark("1 integrity poll")
    session.send(Side.CLIENT, master.frames(request(0, 0x01, INTEGRITY_POLL)))
    first = frames_of(outstation.frames(response(0, ANALOGS, final=False, confirm=True)))
    session.mark("1 first response fragment: 2 link frames, then 1 in the next datagram")
    session.send(Side.SERVER, first[0] + first[1])
    session.send(Side.SERVER, first[2])
    session.send(Side.CLIENT, master.frames(request(0, CONFIRM)))
    session.mark("1 second response fragment, confirmed")
    session.send(Side.SERVER, outstation.frames(response(1, COUNTS, first=False, confirm=True)))
    session.send(Side.CLIENT, master.frames(request(1, CONFIRM)))

    session.pause()
    session.mark("2 unsolicited response, confirmed")
    unsolicited = response(0, BINARY_EVENT, function=UNSOLICITED_RESPONSE, confirm=True)
    session.send(Side.SERVER, outstation.frames(unsolicited))
    session.send(Side.CLIENT, master.frames(request(0, CONFIRM, uns=True)))

    session.pause()
    session.mark("3 select, operate")
    for seq, function in ((2, SELECT), (3, OPERATE)):
        session.send(Side.CLIENT, master.frames(request(seq, function, CROB)))
        session.send(Side.SERVER, outstation.frames(response(seq, CROB)))
    return session


def main() -> None:
    """Parse the options, write the capture."""
    run(__doc__, DEFAULT_OUT, build)


if __name__ == "__main__":
    main()
