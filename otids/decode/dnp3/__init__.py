"""DNP3 (IEEE 1815) over TCP and UDP: link frames, transport reassembly, application objects.

Layers, one module each: :mod:`.crc` (CRC-16/DNP), :mod:`.link` (frames), :mod:`.transport`
(fragment reassembly), :mod:`.functions`, :mod:`.iin`, :mod:`.objects` (object headers and
points), :mod:`.transaction` (messages and their pairing), :mod:`.parser` (per-flow state),
:mod:`.fields` (rule vocabulary), :mod:`.events`.
"""

from __future__ import annotations

from otids.decode.base import ProtocolSpec
from otids.decode.dnp3.events import EVENTS, Dnp3Event
from otids.decode.dnp3.fields import FIELDS
from otids.decode.dnp3.parser import Dnp3Parser, probe
from otids.decode.dnp3.transaction import Dnp3Message, Dnp3Transaction

SPEC = ProtocolSpec(
    name="dnp3",
    tcp_ports=frozenset({20000}),
    udp_ports=frozenset({20000}),
    probe=probe,
    parser_factory=Dnp3Parser,
    port_mismatch_event=Dnp3Event.NON_DNP3_TRAFFIC,
    fields=FIELDS,
    events=EVENTS,
    index_field="dnp3.func",
)

__all__ = ["SPEC", "Dnp3Message", "Dnp3Parser", "Dnp3Transaction", "probe"]
