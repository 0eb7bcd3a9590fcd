"""Modbus/TCP dissector (Modbus Application Protocol V1.1b3, Messaging on TCP/IP V1.0b).

``SPEC`` tells the pipeline how to find and build it; :class:`ModbusParser` is the per-flow
dissector and :class:`ModbusTransaction` what it produces.
"""

from __future__ import annotations

from otids.decode.base import ProtocolSpec
from otids.decode.modbus.events import EVENTS, ModbusEvent
from otids.decode.modbus.fields import FIELDS
from otids.decode.modbus.framer import probe
from otids.decode.modbus.parser import REQUEST_FLOOD, ModbusParser
from otids.decode.modbus.transaction import ModbusTransaction

MODBUS_PORT = 502  # IANA "mbap"

SPEC = ProtocolSpec(
    name="modbus",
    tcp_ports=frozenset({MODBUS_PORT}),
    udp_ports=frozenset(),
    probe=probe,
    parser_factory=ModbusParser,
    port_mismatch_event=ModbusEvent.NON_MODBUS_TRAFFIC,
    fields=FIELDS,
    events=EVENTS,
    index_field="modbus.function",
)

__all__ = [
    "EVENTS",
    "FIELDS",
    "REQUEST_FLOOD",
    "SPEC",
    "ModbusEvent",
    "ModbusParser",
    "ModbusTransaction",
    "probe",
]
