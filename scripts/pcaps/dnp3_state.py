"""Craft the DNP3 state-rule session: pcaps/dnp3-state.pcap.

One DNP3/TCP session (scapy, see ``crafted.py`` and ``dnp3_crafted.py``): a master
(192.0.2.10, link address 1) and an outstation (192.0.2.20:20000, link address 10).
``--list`` prints packet numbers of each step:

1. an integrity poll, answered;
2. an unsolicited response reporting a binary input event, confirmed by the master: normal;
3. a flood: ``FLOOD`` unsolicited responses ``FLOOD_INTERVAL`` apart, none confirmed (the
   master only acknowledges at the TCP level): ``otids-dnp3-unconfirmed-unsolicited``
   (9102116) once: the first follows a confirmed one, the next ones each find their
   predecessor unconfirmed, and the fifth of those reaches the threshold. Too early for
   the storm rule, which judges an outstation known for ten minutes;
4. a read the outstation never answers, then ``SILENCE`` answered polls a second apart: a
   site's no-response rule (``state: {no_response_within: 5s}``) fires once;
5. a quiet period: ``QUIET`` unsolicited responses ``QUIET_INTERVAL`` apart, confirmed;
6. a storm: ``STORM`` unsolicited responses a second apart, each confirmed, at well over
   ten times the outstation's usual rate: ``otids-dnp3-unsolicited-storm`` (9102108) once;
7. orderly close.

Usage: python scripts/pcaps/dnp3_state.py [--out pcaps/dnp3-state.pcap] [--list]
"""

from __future__ import annotations

from pathlib import Path

from crafted import Side, TcpSession, run
from dnp3_crafted import (
    DNP3_PORT,
    MASTER_ADDRESS,
    MASTER_CONTROL,
    OUTSTATION_ADDRESS,
    OUTSTATION_CONTROL,
    UNSOLICITED_RESPONSE,
    Station,
    request,
    response,
)

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "dnp3-state.pcap"
SECOND = 1_000_000  # microseconds
FLOOD = 20  # unconfirmed unsolicited responses in the flood
FLOOD_INTERVAL = 100_000  # microseconds between two of them: ten a second
SILENCE = 6  # answered polls after the unanswered read: more than the rule's five seconds
QUIET = 11  # confirmed unsolicited responses of the quiet period: its history
QUIET_INTERVAL = 60 * SECOND  # one a minute: past the storm rule's ten minutes of learning
STORM = 10  # confirmed unsolicited responses of the storm, a second apart
READ, CONFIRM = 0x01, 0x00  # application function codes

CLASS_0 = bytes([60, 1, 0x06])  # g60v1 class 0 data, all points
BINARY_INPUTS = bytes([
    1, 2, 0x00, 0, 1,  # g1v2 binary input with flags, indexes 0-1 (1-octet start, stop)
    0x81, 0x01,  # online; on, off
])  # fmt: skip
BINARY_EVENT = bytes([
    2, 1, 0x17, 1,  # g2v1 binary input event; 1-octet index prefix, 1-octet count: 1
    0, 0x81,  # index 0: online, on
])  # fmt: skip


def build() -> TcpSession:
    """The session, step by step."""
    session = TcpSession(server_port=DNP3_PORT)
    master = Station(MASTER_ADDRESS, OUTSTATION_ADDRESS, MASTER_CONTROL)
    outstation = Station(OUTSTATION_ADDRESS, MASTER_ADDRESS, OUTSTATION_CONTROL)
    app_seq = 0  # the master's application sequence
    uns_seq = 0  # the outstation's unsolicited sequence

    def poll(answered: bool = True) -> None:
        nonlocal app_seq
        session.send(Side.CLIENT, master.frames(request(app_seq, READ, CLASS_0)))
        if answered:
            session.send(Side.SERVER, outstation.frames(response(app_seq, BINARY_INPUTS)))
            session.ack(Side.CLIENT)
        else:
            session.ack(Side.SERVER)
        app_seq = (app_seq + 1) & 0x0F

    def unsolicited(confirmed: bool) -> None:
        nonlocal uns_seq
        event = response(uns_seq, BINARY_EVENT, function=UNSOLICITED_RESPONSE, confirm=True)
        session.send(Side.SERVER, outstation.frames(event))
        if confirmed:
            session.send(Side.CLIENT, master.frames(request(uns_seq, CONFIRM, uns=True)))
            session.ack(Side.SERVER)
        else:
            session.ack(Side.CLIENT)
        uns_seq = (uns_seq + 1) & 0x0F

    session.open()
    session.pause()
    session.mark("1 integrity poll, answered")
    poll()
    session.pause(SECOND)
    session.mark("2 unsolicited response, confirmed")
    unsolicited(confirmed=True)
    session.pause(SECOND)
    session.mark(f"3 flood: {FLOOD} unsolicited responses, none confirmed (alert)")
    for _ in range(FLOOD):
        unsolicited(confirmed=False)
        session.pause(FLOOD_INTERVAL)
    session.pause(SECOND)
    session.mark("4 read never answered (no-response alert)")
    poll(answered=False)
    for i in range(SILENCE):
        session.pause(SECOND)
        session.mark(f"4.{i + 1} poll, answered")
        poll()
    for i in range(QUIET):
        session.pause(QUIET_INTERVAL)
        session.mark(f"5.{i + 1} quiet: unsolicited response, confirmed")
        unsolicited(confirmed=True)
    session.pause(SECOND)
    session.mark(f"6 storm: {STORM} unsolicited responses a second apart, confirmed (alert)")
    for _ in range(STORM):
        unsolicited(confirmed=True)
        session.pause(SECOND)
    session.pause()
    session.close()
    return session


def main() -> None:
    """Parse the options, write the capture."""
    run(__doc__, DEFAULT_OUT, build)


if __name__ == "__main__":
    main()
