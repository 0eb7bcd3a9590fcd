"""The dissectors otids runs, in the order their probes are tried on unknown ports."""

from __future__ import annotations

from otids.decode.base import ProtocolSpec
from otids.decode.dnp3 import SPEC as DNP3
from otids.decode.modbus import SPEC as MODBUS

PROTOCOLS: tuple[ProtocolSpec, ...] = (MODBUS, DNP3)

BY_NAME: dict[str, ProtocolSpec] = {spec.name: spec for spec in PROTOCOLS}
