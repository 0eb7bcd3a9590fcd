"""A pymodbus Modbus/TCP client: one session of ``ACTIONS[name]`` against the PLC.

Usage: modbus_client.py HOST ACTION, ACTION one of ``poll`` (the legitimate master's reads
and a write), ``write`` (a write, from wherever it runs) and ``force-listen-only``
(diagnostics sub-function 4). Exits 0 when every request was sent.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from pymodbus import pymodbus_apply_logging_config
from pymodbus.client import ModbusTcpClient

PORT = 502
UNIT_ID = 1
TIMEOUT = 3.0  # seconds per request: the plant is three veths away

Action = Callable[[ModbusTcpClient], None]

ACTIONS: dict[str, list[Action]] = {
    "poll": [
        lambda c: c.read_holding_registers(0, count=10, device_id=UNIT_ID),
        lambda c: c.read_coils(0, count=8, device_id=UNIT_ID),
        lambda c: c.write_register(4, 1250, device_id=UNIT_ID),
        lambda c: c.read_input_registers(0, count=4, device_id=UNIT_ID),
    ],
    "write": [lambda c: c.write_register(4, 9999, device_id=UNIT_ID)],
    # The server goes silent after this request: wait for the reply pymodbus still sends.
    "force-listen-only": [
        lambda c: c.diag_force_listen_only(device_id=UNIT_ID, no_response_expected=False)
    ],
}


def main() -> None:
    """Connect, run the action's requests, close."""
    host, action = sys.argv[1], sys.argv[2]
    pymodbus_apply_logging_config(logging.CRITICAL)
    client = ModbusTcpClient(host, port=PORT, timeout=TIMEOUT, retries=0)
    if not client.connect():
        sys.exit(f"cannot connect to {host}:{PORT}")
    try:
        for request in ACTIONS[action]:
            try:
                request(client)
            except Exception as exc:  # a refused or unanswered request still crossed the wire
                print(f"{action}: {exc}", file=sys.stderr)
    finally:
        client.close()


if __name__ == "__main__":
    main()
