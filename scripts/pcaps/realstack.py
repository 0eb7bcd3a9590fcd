"""Helpers for captures of real Modbus stacks: a pymodbus server and a tcpdump capture.

Used by ``modbus_polling.py`` and ``modbus_attack.py``. The server is pymodbus's own
``ModbusTcpServer`` (run in a thread with its own event loop), the capture is tcpdump on the
loopback interface, and every wait is bounded in time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from pymodbus import pymodbus_apply_logging_config
from pymodbus.pdu import ModbusPDU
from pymodbus.pdu.device import ModbusDeviceIdentification
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from scapy.layers.inet import TCP
from scapy.utils import rdpcap

HOST = "127.0.0.1"
MODBUS_PORT = 502  # the registered port: we run as root in the workplace, so it can be bound
FALLBACK_PORT = 5020  # used when 502 cannot be bound (not root, or taken)
UNIT_ID = 1  # the one device the simulated PLC answers for

SERVER_START_TIMEOUT = 5.0  # seconds for pymodbus to bind its port
SERVER_STOP_TIMEOUT = 5.0  # seconds for its thread to finish after shutdown
TCPDUMP_START_TIMEOUT = 10.0  # seconds for tcpdump to report "listening on"
TCPDUMP_STOP_TIMEOUT = 10.0  # seconds for tcpdump to flush and exit after SIGINT
# tcpdump says "listening" once the capture is active; this extra pause covers the packet
# socket's ring set-up so that the first SYN is never missed.
TCPDUMP_SETTLE = 0.5
# Pause between the last packet and SIGINT so that the final FIN/ACKs are captured.
CAPTURE_DRAIN = 1.0

# The simulated PLC's data model: deterministic values so that repeated runs differ only in
# ports and timing. 64 coils/discrete inputs and 100 registers of each kind; reads beyond
# them are answered with exception 2 (illegal data address), which the point scan relies on.
BIT_POINTS = 64
REGISTER_POINTS = 100
IDENTITY = {
    "VendorName": "otids lab",
    "ProductCode": "OTIDS-PLC",
    "MajorMinorRevision": "1.0",
    "VendorUrl": "https://example.invalid/otids",
    "ProductName": "pymodbus simulated PLC",
    "ModelName": "SIM-1",
}


def build_device() -> SimDevice:
    """The simulated PLC: separate coil, discrete input, holding and input register tables."""
    return SimDevice(
        id=UNIT_ID,
        simdata=(
            [SimData(0, values=[i % 3 == 0 for i in range(BIT_POINTS)], datatype=DataType.BITS)],
            [SimData(0, values=[i % 2 == 1 for i in range(BIT_POINTS)], datatype=DataType.BITS)],
            [
                SimData(
                    0,
                    values=[1000 + i for i in range(REGISTER_POINTS)],
                    datatype=DataType.REGISTERS,
                )
            ],
            [
                SimData(
                    0,
                    values=[(200 + 7 * i) & 0xFFFF for i in range(REGISTER_POINTS)],
                    datatype=DataType.REGISTERS,
                )
            ],
        ),
    )


class PymodbusServer:
    """A real pymodbus ``ModbusTcpServer`` serving :func:`build_device` from a thread.

    Use as a context manager; ``port`` is the port it bound (502, or the fallback).
    ``custom_pdu`` is passed to pymodbus (extra request classes the server should decode).
    """

    def __init__(self, custom_pdu: Sequence[type[ModbusPDU]] = ()) -> None:
        self.port = 0
        self._custom_pdu = list(custom_pdu)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> PymodbusServer:
        # pymodbus logs every frame it cannot decode; the scan provokes many on purpose.
        pymodbus_apply_logging_config(logging.CRITICAL)
        for port in (MODBUS_PORT, FALLBACK_PORT):
            self._start(port)
            if self._error is None:
                self.port = port
                return self
            print(f"pymodbus server could not listen on {HOST}:{port}: {self._error}")
        raise RuntimeError("pymodbus server could not be started")

    def __exit__(self, *_exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(SERVER_STOP_TIMEOUT)

    def _start(self, port: int) -> None:
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, args=(port,), daemon=True)
        self._thread.start()
        if not self._ready.wait(SERVER_START_TIMEOUT):
            self._error = TimeoutError(f"not listening after {SERVER_START_TIMEOUT} s")
        if self._error is not None:
            self._thread.join(SERVER_STOP_TIMEOUT)

    def _run(self, port: int) -> None:
        try:
            asyncio.run(self._serve(port))
        except Exception as exc:  # reported to the starting thread, which decides
            self._error = exc
            self._ready.set()

    async def _serve(self, port: int) -> None:
        # pymodbus builds its transport on the running loop, so the server is made in here.
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = ModbusTcpServer(
            build_device(),
            address=(HOST, port),
            identity=ModbusDeviceIdentification(info_name=IDENTITY),
            custom_pdu=self._custom_pdu,
        )
        await server.serve_forever(background=True)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.shutdown()


@contextmanager
def tcpdump(out: Path, bpf: str, interface: str = "lo") -> Iterator[None]:
    """Capture ``bpf`` on ``interface`` into ``out`` for the duration of the block.

    tcpdump writes into a private temporary directory (it drops privileges to the invoking
    user with ``-Z``) and the file is moved to ``out`` only when the capture ended cleanly.
    """
    tool = shutil.which("tcpdump")
    if tool is None:
        raise RuntimeError("tcpdump is not installed (make setup installs it)")
    user = pwd.getpwuid(os.getuid()).pw_name
    with tempfile.TemporaryDirectory(prefix="otids-pcap-") as tmp:
        partial = Path(tmp) / out.name
        # --immediate-mode: without it libpcap hands packets over in blocks (up to a second
        # late), and the packets of the last block are lost at SIGINT.
        argv = [tool, "-i", interface, "--immediate-mode", "-U", "-n", "-Z", user]
        argv += ["-w", str(partial), bpf]
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _wait_listening(proc)
            time.sleep(TCPDUMP_SETTLE)
            yield
            time.sleep(CAPTURE_DRAIN)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                _, tail = proc.communicate(timeout=TCPDUMP_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=TCPDUMP_STOP_TIMEOUT)
                raise RuntimeError("tcpdump did not stop after SIGINT") from None
        if proc.returncode != 0:
            raise RuntimeError(f"tcpdump failed ({proc.returncode}): {tail.strip()}")
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(partial, out)


def _wait_listening(proc: subprocess.Popen[str]) -> None:
    """Block until tcpdump reports that it is capturing (bounded by the start timeout)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + TCPDUMP_START_TIMEOUT
    seen = ""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                break
            line = proc.stderr.readline()
            if not line:  # tcpdump exited
                break
            seen += line
            if "listening on" in line:
                return
    proc.kill()
    proc.wait(TCPDUMP_STOP_TIMEOUT)
    raise RuntimeError(f"tcpdump did not start capturing: {seen.strip()}")


def check_sessions(path: Path, port: int, expected: int) -> None:
    """Fail unless the capture holds exactly ``expected`` TCP connections to ``port``.

    Someone else's test may talk to the same loopback port during the capture; this catches
    that instead of committing a polluted file.
    """
    opened = {
        (pkt[TCP].sport, pkt[TCP].dport)
        for pkt in rdpcap(str(path))
        if TCP in pkt and pkt[TCP].dport == port and pkt[TCP].flags.S and not pkt[TCP].flags.A
    }
    if len(opened) != expected:
        raise RuntimeError(
            f"{path}: {len(opened)} connections to port {port}, expected {expected}; "
            "another program used the port during the capture: run again"
        )


def bpf_for(port: int) -> str:
    """The capture filter for the Modbus server on ``port`` of the loopback address."""
    return f"tcp port {port} and host {HOST}"
