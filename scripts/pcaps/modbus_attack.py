"""Capture attack-like traffic against a real pymodbus server: pcaps/modbus-attack.pcap.

The server is pymodbus's ``ModbusTcpServer`` on 127.0.0.1:502 (the same simulated PLC as
``modbus_polling.py``), captured with tcpdump on ``lo``. Two connections, in this order:

1. A scanner (a plain socket sending hand-built ADUs, one at a time, each answered before the
   next is sent):

   * function-code scan: every function code 1..127 once, unit 1. Codes pymodbus implements
     get a well-formed request (``SCAN_REQUESTS``) and a normal answer; the others get
     ``00 00 00 01`` as data and are answered with exception 1 (illegal function);
   * point scan: single-point reads far apart (holding registers every 128 addresses, coils
     every 64), answered with exception 2 (illegal data address) beyond the PLC's tables.

2. An attacker's tool, ``pymodbus.client.ModbusTcpClient``: report server id (FC 17), read
   device identification (FC 43/14, basic and regular), writes to setpoints and coils (FC 6,
   16, 5, 15), then diagnostics (FC 8): force listen only mode (sub 0x0004), restart
   communications (sub 0x0001), clear counters and diagnostic register (sub 0x000A).

Expected otids alerts (rules in rules/modbus): force listen only, restart communications,
clear counters, read device identification, report server id. pymodbus's own answers add
decoder events: its reply to force listen only is FC 8 sub 4 with no data field (the spec
says no reply at all).

pymodbus quirk worked around: for a function code it does not implement, pymodbus 3.x answers
with function code 0x80 (it loses the code) instead of code | 0x80. The server is therefore
given one ``custom_pdu`` class per unimplemented code, whose only behaviour is to answer
exception 1 the way the spec says.

Usage: python scripts/pcaps/modbus_attack.py [--out pcaps/modbus-attack.pcap]
"""

from __future__ import annotations

import argparse
import socket
import struct
import time
from pathlib import Path

from pymodbus.client import ModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.pdu.decoders import DecodePDU
from realstack import HOST, UNIT_ID, PymodbusServer, bpf_for, check_sessions, tcpdump

DEFAULT_OUT = Path(__file__).resolve().parents[2] / "pcaps" / "modbus-attack.pcap"
REQUEST_GAP = 0.002  # seconds between two requests: a scanner goes as fast as answers come
RESPONSE_TIMEOUT = 2.0  # seconds the scanner waits for one answer
MAX_FUNCTION = 127  # function codes 1..127: every code without the exception bit

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length, unit id

# Well-formed requests (PDU after the function code) for the codes pymodbus implements; a
# scanner that knows the formats sends these so that the server answers normally.
SCAN_REQUESTS: dict[int, bytes] = {
    1: bytes([0x00, 0x00, 0x00, 0x01]),  # read coils: address 0, quantity 1
    2: bytes([0x00, 0x00, 0x00, 0x01]),  # read discrete inputs: address 0, quantity 1
    3: bytes([0x00, 0x00, 0x00, 0x01]),  # read holding registers: address 0, quantity 1
    4: bytes([0x00, 0x00, 0x00, 0x01]),  # read input registers: address 0, quantity 1
    5: bytes([0x00, 0x00, 0x00, 0x00]),  # write single coil: address 0, OFF
    6: bytes([0x00, 0x00, 0x03, 0xE8]),  # write single register: address 0, 1000
    7: b"",  # read exception status
    8: bytes([0x00, 0x00, 0xA5, 0xA5]),  # diagnostics: return query data, echo 0xA5A5
    11: b"",  # get comm event counter
    12: b"",  # get comm event log
    15: bytes([0x00, 0x00, 0x00, 0x01, 0x01, 0x00]),  # write coils: address 0, 1 coil, OFF
    16: bytes([0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0xE8]),  # write registers: address 0, 1000
    17: b"",  # report server id
    # read file record: byte count 7, reference type 6, file 1, record 0, length 2 (pymodbus
    # 3.x takes the length for bytes, not registers, and rejects an odd one)
    20: bytes([0x07, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02]),
    # write file record: byte count 9, reference type 6, file 1, record 0, length 1, data 0
    21: bytes([0x09, 0x06, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00]),
    22: bytes([0x00, 0x00, 0xFF, 0xFF, 0x00, 0x00]),  # mask write register 0: AND ffff, OR 0
    # read/write registers: read address 0 quantity 1, write address 0 quantity 1, 1000
    23: bytes([0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0xE8]),
    24: bytes([0x00, 0x00]),  # read FIFO queue at address 0
    43: bytes([0x0E, 0x01, 0x00]),  # read device identification: basic, from object 0
}
# What a scanner sends for a function code whose format it does not know.
GENERIC_REQUEST = bytes([0x00, 0x00, 0x00, 0x01])

# Point scan: single-point reads this far apart, up to these limits.
REGISTER_SCAN = range(0, 4096, 128)  # 32 holding register reads, all but address 0 illegal
COIL_SCAN = range(0, 1024, 64)  # 16 coil reads, all but address 0 illegal


def illegal_function_pdu(code: int) -> type[ModbusPDU]:
    """A pymodbus request class for ``code`` whose server answer is exception 1."""

    class IllegalFunctionRequest(ModbusPDU):
        function_code = code

        def decode(self, data: bytes) -> None:
            """Accept any data: only the function code matters."""

        async def datastore_update(self, context: ModbusServerContext, device_id: int) -> ModbusPDU:
            """Answer as the spec says for an unsupported function."""
            return ExceptionResponse(code, ExcCodes.ILLEGAL_FUNCTION)

    IllegalFunctionRequest.__name__ = f"IllegalFunction{code}Request"
    return IllegalFunctionRequest


def unimplemented_codes() -> list[int]:
    """Function codes 1..127 the installed pymodbus server cannot decode."""
    implemented = set(DecodePDU(True).list_function_codes())
    return [code for code in range(1, MAX_FUNCTION + 1) if code not in implemented]


class Scanner:
    """A plain-socket Modbus client sending one hand-built ADU at a time."""

    def __init__(self, port: int) -> None:
        self._sock = socket.create_connection((HOST, port), timeout=RESPONSE_TIMEOUT)
        self._transaction_id = 0
        self.exceptions: dict[int, int] = {}  # exception code -> count

    def close(self) -> None:
        """Close the connection."""
        self._sock.close()

    def request(self, function: int, data: bytes) -> bytes:
        """Send one request; return the response PDU."""
        self._transaction_id += 1
        pdu = bytes([function]) + data
        self._sock.sendall(MBAP.pack(self._transaction_id, 0, len(pdu) + 1, UNIT_ID) + pdu)
        _, _, length, _ = MBAP.unpack(self._read(MBAP.size))
        response = self._read(length - 1)
        if response[0] & 0x80:
            self.exceptions[response[1]] = self.exceptions.get(response[1], 0) + 1
        time.sleep(REQUEST_GAP)
        return response

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:  # bounded: each recv returns data or raises on timeout
            chunk = self._sock.recv(size - len(data))
            if not chunk:
                raise RuntimeError("server closed the connection")
            data += chunk
        return data


def scan(port: int) -> dict[int, int]:
    """Function-code scan then point scan; return the exception codes received."""
    scanner = Scanner(port)
    try:
        for function in range(1, MAX_FUNCTION + 1):
            scanner.request(function, SCAN_REQUESTS.get(function, GENERIC_REQUEST))
        for address in REGISTER_SCAN:
            scanner.request(3, struct.pack(">HH", address, 1))
        for address in COIL_SCAN:
            scanner.request(1, struct.pack(">HH", address, 1))
    finally:
        scanner.close()
    return scanner.exceptions


def tamper(port: int) -> None:
    """Reconnaissance, writes and diagnostics through the pymodbus client."""
    client = ModbusTcpClient(HOST, port=port, timeout=RESPONSE_TIMEOUT, retries=0)
    if not client.connect():
        raise RuntimeError(f"cannot connect to {HOST}:{port}")
    try:
        steps = [
            lambda: client.report_device_id(device_id=UNIT_ID),
            lambda: client.read_device_information(read_code=1, device_id=UNIT_ID),
            lambda: client.read_device_information(read_code=2, device_id=UNIT_ID),
            lambda: client.write_register(4, 9999, device_id=UNIT_ID),
            lambda: client.write_registers(10, [0, 0, 0], device_id=UNIT_ID),
            lambda: client.write_coil(2, False, device_id=UNIT_ID),
            lambda: client.write_coils(8, [False] * 4, device_id=UNIT_ID),
            # pymodbus replies (with no data field) although the spec says a server in
            # listen-only mode does not: wait for that reply so it is not taken for the next.
            lambda: client.diag_force_listen_only(device_id=UNIT_ID, no_response_expected=False),
            lambda: client.diag_restart_communication(False, device_id=UNIT_ID),
            lambda: client.diag_clear_counters(device_id=UNIT_ID),
        ]
        for step in steps:
            step()
            time.sleep(REQUEST_GAP)
    finally:
        client.close()


def main() -> None:
    """Parse the options, run the server, capture both sessions."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="pcap file to write")
    args = parser.parse_args()
    custom = [illegal_function_pdu(code) for code in unimplemented_codes()]
    with PymodbusServer(custom_pdu=custom) as server, tcpdump(args.out, bpf_for(server.port)):
        exceptions = scan(server.port)
        tamper(server.port)
    check_sessions(args.out, server.port, expected=2)
    print(f"{args.out}: scan answered with exceptions {dict(sorted(exceptions.items()))}")


if __name__ == "__main__":
    main()
