"""Modbus PDU parsers, one request and one response parser per function.

A parser reads one PDU (``pdu[0]`` is the function code; the MBAP header is already gone)
into a :class:`ModbusTransaction` and returns None when all is well, or the list of
``(event, detail)`` problems it found. Parsers never raise on short or odd input: they
check lengths before every read, and loops over sub-records are bounded by the PDU size.

Response parsers may find the request's fields already on the transaction (``request_ts``
is set then) and check the response against them; for an unsolicited response they fill
those fields from the response alone.

Diagrams are the PDU layouts of the Modbus Application Protocol Specification V1.1b3,
section 6 (sizes in bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from typing import Any

from otids.decode.modbus.codes import (
    CONFORMITY_LEVELS,
    DiagnosticSubFunction,
    MeiType,
    ReadDeviceIdCode,
    device_object_name,
    exception_name,
    subfunction_name,
)
from otids.decode.modbus.events import ModbusEvent
from otids.decode.modbus.transaction import ModbusTransaction

Problems = list[tuple[str, str]]
PduParser = Callable[[ModbusTransaction, bytes], Problems | None]

INVALID_LENGTH: str = ModbusEvent.INVALID_LENGTH
INVALID_VALUE: str = ModbusEvent.INVALID_VALUE
VALUE_MISMATCH: str = ModbusEvent.VALUE_MISMATCH
INVALID_EXCEPTION_CODE: str = ModbusEvent.INVALID_EXCEPTION_CODE

# Quantity limits (section 6): they keep a response within the 253-byte PDU.
MAX_READ_BITS = 2000  # 1, 2: 2000 bits = 250 bytes of status
MAX_READ_REGISTERS = 125  # 3, 4, 23 (read part): 250 bytes of registers
MAX_WRITE_BITS = 1968  # 15: 246 bytes of outputs in the request
MAX_WRITE_REGISTERS = 123  # 16: 246 bytes of registers in the request
MAX_RW_WRITE_REGISTERS = 121  # 23: write part, after the 9 bytes of the read/write header
MAX_FIFO_COUNT = 31  # 24: registers a FIFO queue may hold
MAX_EVENT_LOG = 64  # 12: event bytes in a comm event log response
MAX_RECORD_NUMBER = 0x270F  # 20, 21: records of a file are numbered 0..9999
FILE_REFERENCE_TYPE = 6  # 20, 21: the only reference type defined
COIL_ON = 0xFF00  # 5: the two legal output values
COIL_OFF = 0x0000
STATUS_READY = 0x0000  # 11, 12: status word of an idle server
STATUS_BUSY = 0xFFFF  # 11, 12: status word while a program command is still running
MORE_FOLLOWS = 0xFF  # 43/14: more objects follow; 0x00 none

_U16 = Struct(">H")
_U16_U16 = Struct(">HH")
_U16_U16_U16 = Struct(">HHH")
_U16_U16_U16_U16 = Struct(">HHHH")
_FILE_SUB_REQUEST = Struct(">BHHH")  # reference type, file number, record number, length
# Register arrays, by count: a PDU (253 bytes) holds at most 126 registers.
_REGISTERS = tuple(Struct(f">{count}H") for count in range(127))
# Coil/discrete status bytes are packed LSB first (section 6.1). Each byte's bits as eight
# 0/1 octets: joining them and listing the result runs in C, without a tuple per byte.
_BITS = tuple(bytes((byte >> bit) & 1 for bit in range(8)) for byte in range(256))


def unpack_bits(data: bytes, offset: int, count: int) -> list[int]:
    """Unpack ``data[offset:]`` into bits (LSB of the first byte first), at most ``count``."""
    return list(b"".join(map(_BITS.__getitem__, data[offset:]))[:count])


def unpack_registers(data: bytes, offset: int, count: int) -> list[int]:
    """``count`` big-endian 16-bit registers from ``data[offset:]`` (the caller checked size)."""
    return list(_REGISTERS[count].unpack_from(data, offset))


def _problem(problems: Problems | None, event: str, detail: str) -> Problems:
    """Add one problem to a (possibly not yet created) problem list."""
    if problems is None:
        return [(event, detail)]
    problems.append((event, detail))
    return problems


def _wrong_size(pdu: bytes, expected: int, minimum: bool = False) -> Problems:
    """The invalid_length problem of a PDU whose size does not fit its function."""
    takes = "at least " if minimum else ""
    return [(INVALID_LENGTH, f"PDU of {len(pdu)} bytes, function {pdu[0]} takes {takes}{expected}")]


def _is_answer(tx: ModbusTransaction) -> bool:
    """True when the transaction holds a request to check a response against."""
    return tx.request_ts is not None


# --- 1, 2, 3, 4: read coils / discrete inputs / holding registers / input registers ---
#
# Request:  | function (1) | starting address (2) | quantity (2) |


def _read_request(limit: int) -> PduParser:
    """Request parser of a read function whose quantity must lie in 1..limit."""

    def parse(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
        problems = None
        if len(pdu) != 5:
            problems = _wrong_size(pdu, 5)
            if len(pdu) < 5:
                return problems
        tx.address, quantity = _U16_U16.unpack_from(pdu, 1)
        tx.quantity = quantity
        if not 1 <= quantity <= limit:
            problems = _problem(problems, INVALID_VALUE, f"quantity {quantity} not in 1..{limit}")
        return problems

    return parse


# Response (1, 2): | function (1) | byte count N (1) | status (N), LSB of byte 0 first |


def parse_read_bits_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Coil / discrete input status, unpacked and trimmed to the requested quantity."""
    if len(pdu) < 2 or len(pdu) != 2 + pdu[1]:
        return [(INVALID_LENGTH, f"byte count does not match the PDU of {len(pdu)} bytes")]
    byte_count = pdu[1]
    quantity = tx.quantity
    if quantity is None:
        tx.response_values = unpack_bits(pdu, 2, byte_count * 8)
        return None
    tx.response_values = unpack_bits(pdu, 2, quantity)
    if byte_count != (quantity + 7) >> 3:
        return [(VALUE_MISMATCH, f"{byte_count} status bytes for {quantity} bits")]
    return None


# Response (3, 4, 23): | function (1) | byte count 2N (1) | registers (2N) |


def parse_read_registers_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Register values; the count must be twice the requested quantity."""
    if len(pdu) < 2 or len(pdu) != 2 + pdu[1] or pdu[1] & 1:
        return [(INVALID_LENGTH, f"byte count does not match the PDU of {len(pdu)} bytes")]
    count = pdu[1] >> 1
    tx.response_values = unpack_registers(pdu, 2, count)
    if tx.quantity is not None and count != tx.quantity:
        return [(VALUE_MISMATCH, f"{count} registers for a quantity of {tx.quantity}")]
    return None


# --- 5, 6: write single coil / register ---
#
# Request and response (an echo): | function (1) | address (2) | value (2) |
# A coil value is 0xFF00 (on) or 0x0000 (off); values are kept as 1 / 0.


def _single_write(tx: ModbusTransaction, pdu: bytes, response: bool) -> Problems | None:
    problems = None
    if len(pdu) != 5:
        problems = _wrong_size(pdu, 5)
        if len(pdu) < 5:
            return problems
    address, value = _U16_U16.unpack_from(pdu, 1)
    if pdu[0] == 5:
        if value == COIL_ON:
            value = 1
        elif value != COIL_OFF:
            problems = _problem(problems, INVALID_VALUE, f"coil value {value:#06x}")
    if not response:
        tx.address = address
        tx.quantity = 1
        tx.request_values = [value]
        return problems
    tx.response_values = [value]
    if not _is_answer(tx):
        tx.address = address
        tx.quantity = 1
    elif address != tx.address or [value] != tx.request_values:
        problems = _problem(problems, VALUE_MISMATCH, "echo differs from the request")
    return problems


def parse_single_write_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Address and value of a single coil / register write."""
    return _single_write(tx, pdu, False)


def parse_single_write_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The echo of a single write, checked against the request."""
    return _single_write(tx, pdu, True)


# --- 7, 11, 12, 17: requests that are the function code alone ---
#
# Request: | function (1) |


def parse_empty_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """A request without data."""
    return None if len(pdu) == 1 else _wrong_size(pdu, 1)


# Response (7): | function (1) | output data (1) |


def parse_exception_status_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The eight exception status outputs, as one byte."""
    if len(pdu) != 2:
        return _wrong_size(pdu, 2)
    tx.exception_status = pdu[1]
    return None


# --- 8: diagnostics ---
#
# Request and response: | function (1) | sub-function (2) | data (2, any length for 0x00) |

_Sub = DiagnosticSubFunction


def _zero(word: int) -> bool:
    return word == 0


# Which request data word each sub-function accepts: every known sub-function but return
# query data (any data) carries exactly one word, 0x0000 unless said otherwise.
_DIAGNOSTIC_DATA_OK: dict[int, Callable[[int], bool]] = {sub: _zero for sub in _Sub}
del _DIAGNOSTIC_DATA_OK[_Sub.RETURN_QUERY_DATA]
# Restart communications: 0xFF00 also clears the communications event log, 0x0000 keeps it.
_DIAGNOSTIC_DATA_OK[_Sub.RESTART_COMMUNICATIONS_OPTION] = lambda word: word in (0x0000, 0xFF00)
_DIAGNOSTIC_DATA_OK[_Sub.CHANGE_ASCII_INPUT_DELIMITER] = lambda word: word & 0xFF == 0  # CHAR 00
# Sub-functions whose response echoes the request (the others return a register or counter).
_DIAGNOSTIC_ECHO = frozenset(
    {
        _Sub.RETURN_QUERY_DATA,
        _Sub.RESTART_COMMUNICATIONS_OPTION,
        _Sub.CHANGE_ASCII_INPUT_DELIMITER,
        _Sub.FORCE_LISTEN_ONLY_MODE,
        _Sub.CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER,
        _Sub.CLEAR_OVERRUN_COUNTER_AND_FLAG,
    }
)


def parse_diagnostics_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Sub-function and its data; known sub-functions get their data word checked."""
    if len(pdu) < 3:
        return _wrong_size(pdu, 3, minimum=True)
    (sub,) = _U16.unpack_from(pdu, 1)
    tx.subfunction = sub
    tx.subfunction_name = subfunction_name(sub)
    tx.request_data = data = pdu[3:]
    check = _DIAGNOSTIC_DATA_OK.get(sub)
    if check is None:  # return query data (any data) or a reserved sub-function
        return None
    if len(data) != 2:
        return _wrong_size(pdu, 5)
    (word,) = _U16.unpack_from(data)
    if not check(word):
        return [(INVALID_VALUE, f"data {word:#06x} for sub-function {tx.subfunction_name}")]
    return None


def parse_diagnostics_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Sub-function and data, checked against the request (echo, or one counter word)."""
    if len(pdu) < 3:
        return _wrong_size(pdu, 3, minimum=True)
    (sub,) = _U16.unpack_from(pdu, 1)
    tx.response_data = data = pdu[3:]
    if not _is_answer(tx):
        tx.subfunction = sub
        tx.subfunction_name = subfunction_name(sub)
    elif sub != tx.subfunction:
        return [(VALUE_MISMATCH, f"sub-function {sub} answers {tx.subfunction}")]
    if sub in _DIAGNOSTIC_DATA_OK and len(data) != 2:
        return _wrong_size(pdu, 5)
    if sub in _DIAGNOSTIC_ECHO and _is_answer(tx) and data != tx.request_data:
        return [(VALUE_MISMATCH, "echo differs from the request")]
    return None


# --- 11: get comm event counter ---
#
# Response: | function (1) | status (2) | event count (2) |


def _check_status(tx: ModbusTransaction, status: int) -> Problems | None:
    tx.status = status
    if status in (STATUS_READY, STATUS_BUSY):
        return None
    return [(INVALID_VALUE, f"status word {status:#06x}")]


def parse_comm_event_counter_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Status word and event counter."""
    if len(pdu) != 5:
        return _wrong_size(pdu, 5)
    status, tx.event_count = _U16_U16.unpack_from(pdu, 1)
    return _check_status(tx, status)


# --- 12: get comm event log ---
#
# Response: | function (1) | byte count N (1) | status (2) | event count (2) |
#           | message count (2) | events (N - 6), one byte each, newest first |


def parse_comm_event_log_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Status, counters and the event bytes."""
    if len(pdu) < 8 or len(pdu) != 2 + pdu[1]:
        return [(INVALID_LENGTH, f"byte count does not match the PDU of {len(pdu)} bytes")]
    status, tx.event_count, tx.message_count = _U16_U16_U16.unpack_from(pdu, 2)
    tx.comm_events = list(pdu[8:])
    problems = _check_status(tx, status)
    if len(pdu) - 8 > MAX_EVENT_LOG:
        problems = _problem(problems, INVALID_LENGTH, f"{len(pdu) - 8} events, at most 64")
    return problems


# --- 15, 16: write multiple coils / registers ---
#
# Request:  | function (1) | starting address (2) | quantity (2) | byte count N (1) |
#           | values (N): coil bits LSB first, or registers |
# Response: | function (1) | starting address (2) | quantity (2) |


def _multiple_write_request(bits: bool, limit: int) -> PduParser:
    """Request parser of write multiple coils (``bits``) or registers."""

    def parse(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
        if len(pdu) < 6:
            return _wrong_size(pdu, 6, minimum=True)
        tx.address, quantity = _U16_U16.unpack_from(pdu, 1)
        tx.quantity = quantity
        byte_count = pdu[5]
        problems = None
        if not 1 <= quantity <= limit:
            problems = _problem(problems, INVALID_VALUE, f"quantity {quantity} not in 1..{limit}")
        expected = (quantity + 7) >> 3 if bits else quantity * 2
        if byte_count != expected:
            problems = _problem(
                problems, INVALID_VALUE, f"byte count {byte_count} for a quantity of {quantity}"
            )
        if len(pdu) != 6 + byte_count:
            return _problem(problems, INVALID_LENGTH, f"byte count {byte_count}, PDU {len(pdu)}")
        if bits:
            tx.request_values = unpack_bits(pdu, 6, quantity)
        else:
            tx.request_values = unpack_registers(pdu, 6, byte_count >> 1)
        return problems

    return parse


def parse_multiple_write_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The echoed address and quantity, checked against the request."""
    if len(pdu) != 5:
        return _wrong_size(pdu, 5)
    address, quantity = _U16_U16.unpack_from(pdu, 1)
    if not _is_answer(tx):
        tx.address, tx.quantity = address, quantity
    elif address != tx.address or quantity != tx.quantity:
        return [(VALUE_MISMATCH, f"echo {address}/{quantity} of {tx.address}/{tx.quantity}")]
    return None


# --- 17: report server id ---
#
# Response: | function (1) | byte count N (1) | server id (device specific) |
#           | run indicator status (1) | additional data | (N bytes after the count)
# Where the server id ends is device specific, so the N bytes are kept raw.


def parse_report_server_id_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The device-specific server id bytes."""
    if len(pdu) < 2 or len(pdu) != 2 + pdu[1]:
        return [(INVALID_LENGTH, f"byte count does not match the PDU of {len(pdu)} bytes")]
    tx.server_id = pdu[2:]
    return None


# --- 20: read file record ---
#
# Request:  | function (1) | byte count (1), 0x07..0xF5 |
#           then per sub-request: | reference type (1) = 6 | file number (2) |
#                                 | record number (2) | record length (2) |
# Response: | function (1) | response data length (1) |
#           then per sub-response: | file response length L (1) | reference type (1) = 6 |
#                                  | record data (L - 1) |

_MIN_READ_FILE_BYTES = 0x07
_MAX_READ_FILE_BYTES = 0xF5


def _file_sub_request(
    pdu: bytes, offset: int, records: list[dict[str, Any]], problems: Problems | None
) -> Problems | None:
    """Decode one 7-byte file sub-request header at ``offset`` into ``records``."""
    reference_type, file_number, record_number, record_length = _FILE_SUB_REQUEST.unpack_from(
        pdu, offset
    )
    records.append(
        {
            "reference_type": reference_type,
            "file_number": file_number,
            "record_number": record_number,
            "record_length": record_length,
        }
    )
    if reference_type != FILE_REFERENCE_TYPE:
        problems = _problem(problems, INVALID_VALUE, f"reference type {reference_type}")
    if file_number == 0:
        problems = _problem(problems, INVALID_VALUE, "file number 0")
    if record_number > MAX_RECORD_NUMBER:
        problems = _problem(problems, INVALID_VALUE, f"record number {record_number}")
    return problems


def parse_read_file_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The list of (reference type, file, record, length) sub-requests."""
    if len(pdu) < 2 or len(pdu) != 2 + pdu[1]:
        return [(INVALID_LENGTH, f"byte count does not match the PDU of {len(pdu)} bytes")]
    byte_count = pdu[1]
    problems = None
    if byte_count % 7 or not _MIN_READ_FILE_BYTES <= byte_count <= _MAX_READ_FILE_BYTES:
        problems = [(INVALID_LENGTH, f"byte count {byte_count} is not 7..245 sub-request bytes")]
    records: list[dict[str, Any]] = []
    for offset in range(2, len(pdu) - 6, 7):
        problems = _file_sub_request(pdu, offset, records, problems)
    tx.request_file_records = records
    return problems


def parse_read_file_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Record data of each sub-response, checked against the requested record lengths."""
    if len(pdu) < 2 or len(pdu) != 2 + pdu[1]:
        return [(INVALID_LENGTH, f"byte count does not match the PDU of {len(pdu)} bytes")]
    records: list[dict[str, Any]] = []
    problems = None
    offset = 2
    while offset < len(pdu):  # each turn consumes at least one byte
        length = pdu[offset]
        end = offset + 1 + length
        if length < 1 or length & 1 == 0 or end > len(pdu):
            problems = _problem(problems, INVALID_LENGTH, f"file response length {length}")
            break
        reference_type = pdu[offset + 1]
        records.append(
            {
                "reference_type": reference_type,
                "record_data": unpack_registers(pdu, offset + 2, (length - 1) >> 1),
            }
        )
        if reference_type != FILE_REFERENCE_TYPE:
            problems = _problem(problems, INVALID_VALUE, f"reference type {reference_type}")
        offset = end
    tx.response_file_records = records
    requested = tx.request_file_records
    if requested is not None and [r["record_length"] for r in requested] != [
        len(r["record_data"]) for r in records
    ]:
        problems = _problem(problems, VALUE_MISMATCH, "records do not match the request")
    return problems


# --- 21: write file record ---
#
# Request and response (an echo): | function (1) | request data length (1), 0x09..0xFB |
#   then per sub-request: | reference type (1) = 6 | file number (2) | record number (2) |
#                         | record length N (2) | record data (2N) |

_MIN_WRITE_FILE_BYTES = 0x09
_MAX_WRITE_FILE_BYTES = 0xFB


def _write_file_records(pdu: bytes) -> tuple[list[dict[str, Any]], Problems | None]:
    """Decode the sub-requests of a write file record request or response."""
    if len(pdu) < 2 or len(pdu) != 2 + pdu[1]:
        return [], [(INVALID_LENGTH, f"byte count does not match the PDU of {len(pdu)} bytes")]
    problems = None
    if not _MIN_WRITE_FILE_BYTES <= pdu[1] <= _MAX_WRITE_FILE_BYTES:
        problems = [(INVALID_LENGTH, f"request data length {pdu[1]} not in 9..251")]
    records: list[dict[str, Any]] = []
    offset = 2
    while offset < len(pdu):  # each turn consumes at least 7 bytes or stops
        if offset + 7 > len(pdu):
            return records, _problem(problems, INVALID_LENGTH, "truncated file sub-request")
        problems = _file_sub_request(pdu, offset, records, problems)
        count = records[-1]["record_length"]
        data_end = offset + 7 + 2 * count
        if data_end > len(pdu):
            return records, _problem(problems, INVALID_LENGTH, f"record length {count}")
        records[-1]["record_data"] = unpack_registers(pdu, offset + 7, count)
        offset = data_end
    return records, problems


def parse_write_file_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The sub-requests with their record data."""
    tx.request_file_records, problems = _write_file_records(pdu)
    return problems


def parse_write_file_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The echo of the request, compared with it."""
    records, problems = _write_file_records(pdu)
    if not _is_answer(tx):
        tx.response_file_records = records
    elif records != tx.request_file_records:
        problems = _problem(problems, VALUE_MISMATCH, "echo differs from the request")
    return problems


# --- 22: mask write register ---
#
# Request and response (an echo): | function (1) | reference address (2) | and mask (2) |
#                                 | or mask (2) |


def parse_mask_write_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Address and the two masks."""
    problems = None
    if len(pdu) != 7:
        problems = _wrong_size(pdu, 7)
        if len(pdu) < 7:
            return problems
    tx.address, tx.and_mask, tx.or_mask = _U16_U16_U16.unpack_from(pdu, 1)
    return problems


def parse_mask_write_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The echo, compared with the request."""
    if len(pdu) != 7:
        return _wrong_size(pdu, 7)
    echo = _U16_U16_U16.unpack_from(pdu, 1)
    if not _is_answer(tx):
        tx.address, tx.and_mask, tx.or_mask = echo
    elif echo != (tx.address, tx.and_mask, tx.or_mask):
        return [(VALUE_MISMATCH, "echo differs from the request")]
    return None


# --- 23: read/write multiple registers ---
#
# Request: | function (1) | read starting address (2) | quantity to read (2) |
#          | write starting address (2) | quantity to write (2) | write byte count 2N (1) |
#          | write registers (2N) |
# Response: as 3 (the registers read).


def parse_read_write_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The read range, the write range and the registers written."""
    if len(pdu) < 10:
        return _wrong_size(pdu, 10, minimum=True)
    tx.address, tx.quantity, tx.write_address, write_quantity = _U16_U16_U16_U16.unpack_from(pdu, 1)
    tx.write_quantity = write_quantity
    byte_count = pdu[9]
    problems = None
    if not 1 <= tx.quantity <= MAX_READ_REGISTERS:
        problems = _problem(problems, INVALID_VALUE, f"read quantity {tx.quantity}")
    if not 1 <= write_quantity <= MAX_RW_WRITE_REGISTERS:
        problems = _problem(problems, INVALID_VALUE, f"write quantity {write_quantity}")
    if byte_count != 2 * write_quantity:
        problems = _problem(
            problems, INVALID_VALUE, f"byte count {byte_count} for {write_quantity} registers"
        )
    if len(pdu) != 10 + byte_count or byte_count & 1:
        return _problem(problems, INVALID_LENGTH, f"byte count {byte_count}, PDU {len(pdu)}")
    tx.request_values = unpack_registers(pdu, 10, byte_count >> 1)
    return problems


# --- 24: read FIFO queue ---
#
# Request:  | function (1) | FIFO pointer address (2) |
# Response: | function (1) | byte count (2) | FIFO count N (2), <= 31 | FIFO registers (2N) |


def parse_fifo_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The FIFO pointer address."""
    problems = None
    if len(pdu) != 3:
        problems = _wrong_size(pdu, 3)
        if len(pdu) < 3:
            return problems
    (tx.address,) = _U16.unpack_from(pdu, 1)
    return problems


def parse_fifo_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The queued registers; ``quantity`` becomes the FIFO count."""
    if len(pdu) < 5:
        return _wrong_size(pdu, 5, minimum=True)
    byte_count, count = _U16_U16.unpack_from(pdu, 1)
    if len(pdu) != 3 + byte_count or byte_count != 2 + 2 * count:
        return [(INVALID_LENGTH, f"byte count {byte_count}, FIFO count {count}, PDU {len(pdu)}")]
    tx.quantity = count
    tx.response_values = unpack_registers(pdu, 5, count)
    if count > MAX_FIFO_COUNT:
        return [(INVALID_VALUE, f"FIFO count {count}, at most {MAX_FIFO_COUNT}")]
    return None


# --- 43: encapsulated interface transport ---
#
# Request and response: | function (1) | MEI type (1) | MEI-type-specific data |
#
# 43/14 read device identification:
# Request:  | 0x2B | 0x0E | read device id code (1), 1..4 | object id (1) |
# Response: | 0x2B | 0x0E | read device id code (1) | conformity level (1) |
#           | more follows (1), 0x00/0xFF | next object id (1) | number of objects (1) |
#           then per object: | object id (1) | object length L (1) | object value (L) |
# 43/13 CANopen general reference and reserved MEI types: data kept raw.

_READ_DEVICE_ID = MeiType.READ_DEVICE_IDENTIFICATION
_READ_DEVICE_ID_CODES = frozenset(ReadDeviceIdCode)


def parse_mei_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """MEI type, and the access code and object id of a device identification read."""
    if len(pdu) < 2:
        return _wrong_size(pdu, 2, minimum=True)
    tx.mei_type = pdu[1]
    if tx.mei_type != _READ_DEVICE_ID:
        tx.request_data = pdu[2:]
        return None
    tx.access = "read"
    problems = None
    if len(pdu) != 4:
        problems = _wrong_size(pdu, 4)
        if len(pdu) < 4:
            return problems
    tx.read_device_id_code = pdu[2]
    tx.object_id = pdu[3]
    if pdu[2] not in _READ_DEVICE_ID_CODES:
        problems = _problem(problems, INVALID_VALUE, f"read device id code {pdu[2]}")
    return problems


def parse_mei_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Raw data, or the device identification header and objects."""
    if len(pdu) < 2:
        return _wrong_size(pdu, 2, minimum=True)
    mei_type = pdu[1]
    if not _is_answer(tx):
        tx.mei_type = mei_type
    elif mei_type != tx.mei_type:
        return [(VALUE_MISMATCH, f"MEI type {mei_type} answers {tx.mei_type}")]
    if mei_type != _READ_DEVICE_ID:
        tx.response_data = pdu[2:]
        return None
    if len(pdu) < 7:
        return _wrong_size(pdu, 7, minimum=True)
    problems = None
    code, tx.conformity_level, tx.more_follows, tx.next_object_id, count = pdu[2:7]
    if tx.read_device_id_code is None:
        tx.read_device_id_code = code
    elif code != tx.read_device_id_code:
        problems = _problem(problems, VALUE_MISMATCH, f"read device id code {code}")
    if tx.conformity_level not in CONFORMITY_LEVELS:
        problems = _problem(problems, INVALID_VALUE, f"conformity {tx.conformity_level:#04x}")
    if tx.more_follows not in (0, MORE_FOLLOWS):
        problems = _problem(problems, INVALID_VALUE, f"more follows {tx.more_follows:#04x}")
    objects: dict[int, dict[str, str]] = {}
    offset = 7
    for _ in range(count):  # at most 255 turns, each consuming at least two bytes
        if offset + 2 > len(pdu) or offset + 2 + pdu[offset + 1] > len(pdu):
            problems = _problem(problems, INVALID_LENGTH, f"{count} objects overrun the PDU")
            break
        object_id, length = pdu[offset], pdu[offset + 1]
        value = pdu[offset + 2 : offset + 2 + length]
        objects[object_id] = {"name": device_object_name(object_id), "value": _text(value)}
        offset += 2 + length
    else:
        if offset != len(pdu):
            problems = _problem(
                problems, INVALID_LENGTH, f"{len(pdu) - offset} bytes after objects"
            )
    tx.objects = objects
    return problems


def _text(value: bytes) -> str:
    """An object value: ASCII as the spec says (sections 6.21), hex when it is not."""
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return value.hex()


# --- user-defined, reserved and unassigned functions ---
#
# Request and response: | function (1) | data (device specific) |


def parse_raw_request(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Keep the request data raw (vendor protocols such as UMAS on 90)."""
    tx.request_data = pdu[1:]
    return None


def parse_raw_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """Keep the response data raw."""
    tx.response_data = pdu[1:]
    return None


# --- exception responses (section 7) ---
#
# Response: | function + 0x80 (1) | exception code (1) |


def parse_exception_response(tx: ModbusTransaction, pdu: bytes) -> Problems | None:
    """The exception code and its name."""
    if len(pdu) < 2:
        return _wrong_size(pdu, 2, minimum=True)
    tx.exception_code = code = pdu[1]
    tx.exception = exception_name(code)
    problems = None if len(pdu) == 2 else _wrong_size(pdu, 2)
    if tx.exception is None:
        problems = _problem(problems, INVALID_EXCEPTION_CODE, f"exception code {code}")
    return problems


# Request parsers of the read functions and the two multiple writes, by limit.
parse_read_bits_request = _read_request(MAX_READ_BITS)
parse_read_registers_request = _read_request(MAX_READ_REGISTERS)
parse_write_coils_request = _multiple_write_request(True, MAX_WRITE_BITS)
parse_write_registers_request = _multiple_write_request(False, MAX_WRITE_REGISTERS)
