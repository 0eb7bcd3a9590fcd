"""Capture normal HMI polling between a real pymodbus client and server: pcaps/modbus-polling.pcap.

One TCP connection from ``pymodbus.client.ModbusTcpClient`` to a pymodbus ``ModbusTcpServer``
on 127.0.0.1:502, captured with tcpdump on ``lo``. The client behaves like an HMI: every cycle
it reads holding registers, input registers, coils and discrete inputs (a few ms apart), and
every few cycles it writes a setpoint or a command bit. Nothing in it should raise an alert.

Usage: python scripts/pcaps/modbus_polling.py [--out pcaps/modbus-polling.pcap]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from pymodbus.client import ModbusTcpClient
from pymodbus.pdu import ModbusPDU
from realstack import HOST, UNIT_ID, PymodbusServer, bpf_for, check_sessions, tcpdump

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "modbus-polling.pcap"
CYCLES = 25  # 4 reads a cycle: 100 read transactions
WRITE_EVERY = 5  # cycles between two writes: 5 writes in all
POLL_INTERVAL = 0.005  # seconds between requests, as a fast HMI scan
CLIENT_TIMEOUT = 2.0  # seconds the client waits for a response


def poll(client: ModbusTcpClient) -> int:
    """Run the polling session; return the number of transactions made."""
    reads: list[Callable[[], ModbusPDU]] = [
        lambda: client.read_holding_registers(0, count=10, device_id=UNIT_ID),
        lambda: client.read_input_registers(0, count=8, device_id=UNIT_ID),
        lambda: client.read_coils(0, count=16, device_id=UNIT_ID),
        lambda: client.read_discrete_inputs(0, count=16, device_id=UNIT_ID),
    ]
    # The HMI operator's actions, one every WRITE_EVERY cycles: a setpoint, a start
    # command, a recipe of three registers, a bank of valve commands, the setpoint back.
    writes: list[Callable[[], ModbusPDU]] = [
        lambda: client.write_register(4, 1250, device_id=UNIT_ID),
        lambda: client.write_coil(2, True, device_id=UNIT_ID),
        lambda: client.write_registers(10, [30, 45, 60], device_id=UNIT_ID),
        lambda: client.write_coils(8, [True, False, True, True], device_id=UNIT_ID),
        lambda: client.write_register(4, 1200, device_id=UNIT_ID),
    ]
    count = 0
    for cycle in range(CYCLES):
        requests = list(reads)
        if cycle % WRITE_EVERY == WRITE_EVERY - 1:
            requests.append(writes[cycle // WRITE_EVERY])
        for request in requests:
            response = request()
            if response.isError():
                raise RuntimeError(f"unexpected error response: {response}")
            count += 1
            time.sleep(POLL_INTERVAL)
    return count


def main() -> None:
    """Parse the options, run the server, capture the session."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="pcap file to write")
    args = parser.parse_args()
    with PymodbusServer() as server, tcpdump(args.out, bpf_for(server.port)):
        client = ModbusTcpClient(HOST, port=server.port, timeout=CLIENT_TIMEOUT, retries=0)
        if not client.connect():
            raise RuntimeError(f"cannot connect to {HOST}:{server.port}")
        try:
            count = poll(client)
        finally:
            client.close()
    check_sessions(args.out, server.port, expected=1)
    print(f"{args.out}: {count} transactions on {HOST}:{server.port}")


if __name__ == "__main__":
    main()
