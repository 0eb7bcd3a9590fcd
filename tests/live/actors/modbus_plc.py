"""A pymodbus Modbus/TCP server (the plant's PLC) on 0.0.0.0:502 until SIGTERM.

Prints ``listening`` once the port is bound. Run inside the PLC's network namespace.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from pymodbus import pymodbus_apply_logging_config
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

PORT = 502
UNIT_ID = 1
POINTS = 100  # registers and coils of each kind


async def serve() -> None:
    """Serve until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    device = SimDevice(
        id=UNIT_ID,
        simdata=(
            [SimData(0, values=[False] * POINTS, datatype=DataType.BITS)],
            [SimData(0, values=[False] * POINTS, datatype=DataType.BITS)],
            [SimData(0, values=list(range(POINTS)), datatype=DataType.REGISTERS)],
            [SimData(0, values=list(range(POINTS)), datatype=DataType.REGISTERS)],
        ),
    )
    server = ModbusTcpServer(device, address=("0.0.0.0", PORT))
    await server.serve_forever(background=True)
    print("listening", flush=True)
    try:
        await stop.wait()
    finally:
        await server.shutdown()


if __name__ == "__main__":
    pymodbus_apply_logging_config(logging.CRITICAL)
    asyncio.run(serve())
