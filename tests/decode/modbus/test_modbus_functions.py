"""Every function code and diagnostics sub-function: a request and a normal response,
decoded field by field (vectors mostly from the examples of the Modbus Application Protocol
Specification V1.1b3, section 6)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from otids.decode.base import DecoderEvent, Direction, Record
from otids.decode.modbus import ModbusParser, ModbusTransaction
from otids.decode.modbus.codes import DiagnosticSubFunction, ExceptionCode


def mbap(transaction_id: int, unit: int, pdu: bytes) -> bytes:
    """Prefix a PDU with its MBAP header: protocol id 0, length = unit id + PDU."""
    return struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit) + pdu


def exchange(request: bytes, response: bytes) -> tuple[ModbusTransaction, list[Record]]:
    """Feed one request PDU and its response PDU (transaction 7, unit 1)."""
    parser = ModbusParser()
    records = parser.feed(Direction.TO_SERVER, mbap(7, 1, request), 1.0)
    records += parser.feed(Direction.TO_CLIENT, mbap(7, 1, response), 2.0)
    tx = records[-1]
    assert isinstance(tx, ModbusTransaction)
    return tx, records


# Byte vectors are laid out one field per line; keep the formatter off them.
# fmt: off
CASES = [
    pytest.param(
        bytes([
            0x01,  # function: read coils
            0x00, 0x13,  # starting address 19
            0x00, 0x13,  # quantity 19
        ]),
        bytes([
            0x01,  # function
            0x03,  # byte count
            0xCD,  # coils 27..20: 1100 1101
            0x6B,  # coils 35..28: 0110 1011
            0x05,  # coils 38..36: 101 (and 5 padding bits)
        ]),
        {
            "function_code": 1,
            "function": "read_coils",
            "category": "public",
            "access": "read",
            "table": "coils",
            "address": 19,
            "quantity": 19,
            "response_values": [1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1],
            "read_values": [1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1],
        },
        id="01-read-coils",
    ),
    pytest.param(
        bytes([
            0x02,  # function: read discrete inputs
            0x00, 0xC4,  # starting address 196
            0x00, 0x16,  # quantity 22
        ]),
        bytes([
            0x02,  # function
            0x03,  # byte count
            0xAC,  # inputs 203..196: 1010 1100
            0xDB,  # inputs 211..204: 1101 1011
            0x35,  # inputs 217..212: 11 0101
        ]),
        {
            "function": "read_discrete_inputs",
            "table": "discretes",
            "address": 196,
            "quantity": 22,
            "response_values": [0, 0, 1, 1, 0, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 0, 1, 1],
        },
        id="02-read-discrete-inputs",
    ),
    pytest.param(
        bytes([
            0x03,  # function: read holding registers
            0x00, 0x6B,  # starting address 107
            0x00, 0x03,  # quantity 3
        ]),
        bytes([
            0x03,  # function
            0x06,  # byte count
            0x02, 0x2B,  # register 108: 555
            0x00, 0x00,  # register 109: 0
            0x00, 0x64,  # register 110: 100
        ]),
        {
            "function": "read_holding_registers",
            "access": "read",
            "table": "holding",
            "address": 107,
            "quantity": 3,
            "response_values": [555, 0, 100],
        },
        id="03-read-holding-registers",
    ),
    pytest.param(
        bytes([
            0x04,  # function: read input registers
            0x00, 0x08,  # starting address 8
            0x00, 0x01,  # quantity 1
        ]),
        bytes([
            0x04,  # function
            0x02,  # byte count
            0x00, 0x0A,  # register 9: 10
        ]),
        {
            "function": "read_input_registers",
            "table": "input",
            "address": 8,
            "quantity": 1,
            "response_values": [10],
        },
        id="04-read-input-registers",
    ),
    pytest.param(
        bytes([
            0x05,  # function: write single coil
            0x00, 0xAC,  # output address 172
            0xFF, 0x00,  # output value: on
        ]),
        bytes([
            0x05,  # function (echo)
            0x00, 0xAC,  # output address
            0xFF, 0x00,  # output value
        ]),
        {
            "function": "write_single_coil",
            "access": "write",
            "table": "coils",
            "address": 172,
            "quantity": 1,
            "request_values": [1],
            "write_values": [1],
            "response_values": [1],
            "read_values": None,
        },
        id="05-write-single-coil",
    ),
    pytest.param(
        bytes([
            0x06,  # function: write single register
            0x00, 0x01,  # register address 1
            0x00, 0x03,  # register value 3
        ]),
        bytes([
            0x06,  # function (echo)
            0x00, 0x01,  # register address
            0x00, 0x03,  # register value
        ]),
        {
            "function": "write_single_register",
            "table": "holding",
            "address": 1,
            "request_values": [3],
            "response_values": [3],
        },
        id="06-write-single-register",
    ),
    pytest.param(
        bytes([
            0x07,  # function: read exception status
        ]),
        bytes([
            0x07,  # function
            0x6D,  # output data: 0110 1101
        ]),
        {"function": "read_exception_status", "access": None, "exception_status": 0x6D},
        id="07-read-exception-status",
    ),
    pytest.param(
        bytes([
            0x0B,  # function: get comm event counter
        ]),
        bytes([
            0x0B,  # function
            0xFF, 0xFF,  # status: busy
            0x01, 0x08,  # event count 264
        ]),
        {"function": "get_comm_event_counter", "status": 0xFFFF, "event_count": 264},
        id="11-get-comm-event-counter",
    ),
    pytest.param(
        bytes([
            0x0C,  # function: get comm event log
        ]),
        bytes([
            0x0C,  # function
            0x08,  # byte count
            0x00, 0x00,  # status: ready
            0x01, 0x08,  # event count 264
            0x01, 0x21,  # message count 289
            0x20,  # event 0: a communication restart
            0x00,  # event 1: listen only mode entered
        ]),
        {
            "function": "get_comm_event_log",
            "status": 0,
            "event_count": 264,
            "message_count": 289,
            "comm_events": [0x20, 0x00],
        },
        id="12-get-comm-event-log",
    ),
    pytest.param(
        bytes([
            0x0F,  # function: write multiple coils
            0x00, 0x13,  # starting address 19
            0x00, 0x0A,  # quantity 10
            0x02,  # byte count
            0xCD,  # outputs 27..20: 1100 1101
            0x01,  # outputs 29..28: 01
        ]),
        bytes([
            0x0F,  # function
            0x00, 0x13,  # starting address
            0x00, 0x0A,  # quantity
        ]),
        {
            "function": "write_multiple_coils",
            "access": "write",
            "table": "coils",
            "address": 19,
            "quantity": 10,
            "request_values": [1, 0, 1, 1, 0, 0, 1, 1, 1, 0],
            "response_values": None,
        },
        id="15-write-multiple-coils",
    ),
    pytest.param(
        bytes([
            0x10,  # function: write multiple registers
            0x00, 0x01,  # starting address 1
            0x00, 0x02,  # quantity 2
            0x04,  # byte count
            0x00, 0x0A,  # register 1: 10
            0x01, 0x02,  # register 2: 258
        ]),
        bytes([
            0x10,  # function
            0x00, 0x01,  # starting address
            0x00, 0x02,  # quantity
        ]),
        {
            "function": "write_multiple_registers",
            "table": "holding",
            "address": 1,
            "quantity": 2,
            "request_values": [10, 258],
            "write_values": [10, 258],
        },
        id="16-write-multiple-registers",
    ),
    pytest.param(
        bytes([
            0x11,  # function: report server id
        ]),
        bytes([
            0x11,  # function
            0x04,  # byte count
            0x2A,  # server id (device specific)
            0xFF,  # run indicator: on
            0x01, 0x02,  # additional data
        ]),
        {"function": "report_server_id", "server_id": bytes([0x2A, 0xFF, 0x01, 0x02])},
        id="17-report-server-id",
    ),
    pytest.param(
        bytes([
            0x14,  # function: read file record
            0x0E,  # byte count
            0x06,  # sub-request 1: reference type
            0x00, 0x04,  # file number 4
            0x00, 0x01,  # record number 1
            0x00, 0x02,  # record length 2
            0x06,  # sub-request 2: reference type
            0x00, 0x03,  # file number 3
            0x00, 0x09,  # record number 9
            0x00, 0x02,  # record length 2
        ]),
        bytes([
            0x14,  # function
            0x0C,  # response data length
            0x05,  # sub-response 1: file response length
            0x06,  # reference type
            0x0D, 0xFE,  # register 0x0DFE
            0x00, 0x20,  # register 0x0020
            0x05,  # sub-response 2: file response length
            0x06,  # reference type
            0x33, 0xCD,  # register 0x33CD
            0x00, 0x40,  # register 0x0040
        ]),
        {
            "function": "read_file_record",
            "access": "read",
            "table": "file",
            "request_file_records": [
                {"reference_type": 6, "file_number": 4, "record_number": 1, "record_length": 2},
                {"reference_type": 6, "file_number": 3, "record_number": 9, "record_length": 2},
            ],
            "response_file_records": [
                {"reference_type": 6, "record_data": [0x0DFE, 0x0020]},
                {"reference_type": 6, "record_data": [0x33CD, 0x0040]},
            ],
        },
        id="20-read-file-record",
    ),
    pytest.param(
        bytes([
            0x15,  # function: write file record
            0x0D,  # request data length
            0x06,  # sub-request: reference type
            0x00, 0x04,  # file number 4
            0x00, 0x07,  # record number 7
            0x00, 0x03,  # record length 3
            0x06, 0xAF,  # record data
            0x04, 0xBE,
            0x10, 0x0D,
        ]),
        bytes([
            0x15,  # function (the response echoes the request)
            0x0D,  # request data length
            0x06,  # reference type
            0x00, 0x04,  # file number
            0x00, 0x07,  # record number
            0x00, 0x03,  # record length
            0x06, 0xAF,  # record data
            0x04, 0xBE,
            0x10, 0x0D,
        ]),
        {
            "function": "write_file_record",
            "access": "write",
            "request_file_records": [
                {
                    "reference_type": 6,
                    "file_number": 4,
                    "record_number": 7,
                    "record_length": 3,
                    "record_data": [0x06AF, 0x04BE, 0x100D],
                }
            ],
            "response_file_records": None,  # an echo: compared, not stored twice
        },
        id="21-write-file-record",
    ),
    pytest.param(
        bytes([
            0x16,  # function: mask write register
            0x00, 0x04,  # reference address 4
            0x00, 0xF2,  # and mask
            0x00, 0x25,  # or mask
        ]),
        bytes([
            0x16,  # function (echo)
            0x00, 0x04,  # reference address
            0x00, 0xF2,  # and mask
            0x00, 0x25,  # or mask
        ]),
        {
            "function": "mask_write_register",
            "access": "write",
            "table": "holding",
            "address": 4,
            "and_mask": 0xF2,
            "or_mask": 0x25,
        },
        id="22-mask-write-register",
    ),
    pytest.param(
        bytes([
            0x17,  # function: read/write multiple registers
            0x00, 0x03,  # read starting address 3
            0x00, 0x06,  # quantity to read 6
            0x00, 0x0E,  # write starting address 14
            0x00, 0x03,  # quantity to write 3
            0x06,  # write byte count
            0x00, 0xFF,  # write registers
            0x00, 0xFF,
            0x00, 0xFF,
        ]),
        bytes([
            0x17,  # function
            0x0C,  # byte count
            0x00, 0xFE,  # registers read
            0x0A, 0xCD,
            0x00, 0x01,
            0x00, 0x03,
            0x00, 0x0D,
            0x00, 0xFF,
        ]),
        {
            "function": "read_write_multiple_registers",
            "access": "read_write",
            "table": "holding",
            "address": 3,
            "quantity": 6,
            "write_address": 14,
            "write_quantity": 3,
            "request_values": [255, 255, 255],
            "write_values": [255, 255, 255],
            "response_values": [254, 2765, 1, 3, 13, 255],
            "read_values": [254, 2765, 1, 3, 13, 255],
        },
        id="23-read-write-multiple-registers",
    ),
    pytest.param(
        bytes([
            0x18,  # function: read FIFO queue
            0x04, 0xDE,  # FIFO pointer address 1246
        ]),
        bytes([
            0x18,  # function
            0x00, 0x06,  # byte count
            0x00, 0x02,  # FIFO count
            0x01, 0xB8,  # FIFO value 440
            0x12, 0x84,  # FIFO value 4740
        ]),
        {
            "function": "read_fifo_queue",
            "table": "fifo",
            "address": 1246,
            "quantity": 2,
            "response_values": [440, 4740],
        },
        id="24-read-fifo-queue",
    ),
    pytest.param(
        bytes([
            0x2B,  # function: encapsulated interface transport
            0x0E,  # MEI type: read device identification
            0x01,  # read device id code: basic
            0x00,  # object id: VendorName
        ]),
        bytes([
            0x2B,  # function
            0x0E,  # MEI type
            0x01,  # read device id code
            0x01,  # conformity level: basic, stream access only
            0x00,  # more follows: no
            0x00,  # next object id
            0x03,  # number of objects
            0x00, 0x16,  # object 0 (VendorName), 22 bytes
        ]) + b"Company identification" + bytes([
            0x01, 0x0F,  # object 1 (ProductCode), 15 bytes
        ]) + b"Product code XX" + bytes([
            0x02, 0x05,  # object 2 (MajorMinorRevision), 5 bytes
        ]) + b"V2.11",
        {
            "function": "encapsulated_interface_transport",
            "mei_type": 14,
            "access": "read",
            "read_device_id_code": 1,
            "object_id": 0,
            "conformity_level": 1,
            "more_follows": 0,
            "next_object_id": 0,
            "objects": {
                0: {"name": "VendorName", "value": "Company identification"},
                1: {"name": "ProductCode", "value": "Product code XX"},
                2: {"name": "MajorMinorRevision", "value": "V2.11"},
            },
        },
        id="43-14-read-device-identification",
    ),
    pytest.param(
        bytes([
            0x2B,  # function: encapsulated interface transport
            0x0D,  # MEI type: CANopen general reference
            0x01, 0x02, 0x03,  # CANopen request data
        ]),
        bytes([
            0x2B,  # function
            0x0D,  # MEI type
            0x04, 0x05,  # CANopen response data
        ]),
        {
            "mei_type": 13,
            "access": None,
            "request_data": bytes([1, 2, 3]),
            "response_data": bytes([4, 5]),
        },
        id="43-13-canopen-general-reference",
    ),
    pytest.param(
        bytes([
            0x2B,  # function: encapsulated interface transport
            0x07,  # MEI type 7: reserved
            0xAA,  # data
        ]),
        bytes([
            0x2B,  # function
            0x07,  # MEI type
            0xBB,  # data
        ]),
        {"mei_type": 7, "request_data": b"\xaa", "response_data": b"\xbb"},
        id="43-reserved-mei",
    ),
    pytest.param(
        bytes([
            0x41,  # function 65: user defined
            0x01, 0x02,  # vendor data
        ]),
        bytes([
            0x41,  # function
            0x03,  # vendor data
        ]),
        {
            "function_code": 65,
            "function": "user_defined_65",
            "category": "user_defined",
            "access": None,
            "request_data": b"\x01\x02",
            "response_data": b"\x03",
        },
        id="65-user-defined",
    ),
    pytest.param(
        bytes([
            0x5A,  # function 90: reserved (Schneider UMAS in practice)
            0x00,  # UMAS session
            0x02,  # UMAS code: read PLC id
        ]),
        bytes([
            0x5A,  # function
            0x00,  # UMAS session
            0xFE,  # UMAS response: ok
            0x01,  # data
        ]),
        {
            "function_code": 90,
            "function": "reserved_90",
            "category": "reserved",
            "request_data": b"\x00\x02",
            "response_data": b"\x00\xfe\x01",
        },
        id="90-reserved-umas",
    ),
    pytest.param(
        bytes([
            0x63,  # function 99: public range, unassigned
        ]),
        bytes([
            0x63,  # function
            0x10,  # data
        ]),
        {
            "function_code": 99,
            "function": "unassigned_99",
            "category": "unassigned",
            "request_data": b"",
            "response_data": b"\x10",
        },
        id="99-unassigned",
    ),
]

READ_600_10 = bytes([
    0x03,  # function: read holding registers
    0x02, 0x58,  # starting address 600
    0x00, 0x0A,  # quantity 10
])
READ_WRITE_REQUEST = bytes([
    0x17,  # function: read/write multiple registers
    0x00, 0x03,  # read starting address
    0x00, 0x01,  # quantity to read
    0x00, 0x0E,  # write starting address
    0x00, 0x01,  # quantity to write
    0x02,  # write byte count
    0x00, 0xFF,  # write register
])
READ_WRITE_RESPONSE = bytes([
    0x17,  # function
    0x02,  # byte count
    0x12, 0x34,  # register read
])
PRIVATE_OBJECT_REQUEST = bytes([
    0x2B,  # function: encapsulated interface transport
    0x0E,  # MEI type: read device identification
    0x04,  # read device id code: one specific object
    0x80,  # object id: first private object
])
PRIVATE_OBJECT_RESPONSE = bytes([
    0x2B,  # function
    0x0E,  # MEI type
    0x04,  # read device id code
    0x83,  # conformity level: extended, individual access
    0x00,  # more follows: no
    0x00,  # next object id
    0x01,  # number of objects
    0x80, 0x02,  # object 0x80, 2 bytes
    0xFF, 0x01,  # not ASCII: kept as hex
])
# fmt: on


@pytest.mark.parametrize(("request_pdu", "response_pdu", "expected"), CASES)
def test_request_and_response_decode(
    request_pdu: bytes, response_pdu: bytes, expected: dict[str, Any]
) -> None:
    tx, records = exchange(request_pdu, response_pdu)
    assert [r for r in records if isinstance(r, DecoderEvent)] == []
    assert tx.events == []
    assert (tx.transaction_id, tx.unit_id, tx.done, tx.request_ts, tx.response_ts) == (
        7,
        1,
        True,
        1.0,
        2.0,
    )
    assert tx.function_code == request_pdu[0]
    for name, value in expected.items():
        assert getattr(tx, name) == value, name


# Diagnostics: (sub-function, request data, response data) for every sub-function.
DIAGNOSTICS = [
    # return query data: any data, echoed
    (0x00, bytes([0xA5, 0x37, 0x42]), bytes([0xA5, 0x37, 0x42])),
    (0x01, bytes([0xFF, 0x00]), bytes([0xFF, 0x00])),  # restart communications, clear log
    (0x01, bytes([0x00, 0x00]), bytes([0x00, 0x00])),  # restart communications, keep log
    (0x02, bytes([0x00, 0x00]), bytes([0x12, 0x34])),  # diagnostic register contents
    (0x03, bytes([0x3A, 0x00]), bytes([0x3A, 0x00])),  # new delimiter ':', 0x00
    (0x04, bytes([0x00, 0x00]), bytes([0x00, 0x00])),  # force listen only (if echoed)
    (0x0A, bytes([0x00, 0x00]), bytes([0x00, 0x00])),  # clear counters: echo
    *((sub, bytes([0x00, 0x00]), bytes([0x00, sub])) for sub in range(0x0B, 0x13)),  # counters
    (0x14, bytes([0x00, 0x00]), bytes([0x00, 0x00])),  # clear overrun counter: echo
    (0x15, bytes([0x00, 0x03]), bytes([0x00, 0x03, 0x00, 0x01])),  # reserved (Modbus Plus)
]


@pytest.mark.parametrize(("sub", "request_data", "response_data"), DIAGNOSTICS)
def test_diagnostics_subfunctions(sub: int, request_data: bytes, response_data: bytes) -> None:
    request = bytes([0x08, 0x00, sub]) + request_data  # function 8, sub-function, data
    response = bytes([0x08, 0x00, sub]) + response_data
    tx, records = exchange(request, response)
    assert [r for r in records if isinstance(r, DecoderEvent)] == []
    assert tx.function == "diagnostics"
    assert tx.subfunction == sub
    known = sub in {member.value for member in DiagnosticSubFunction}
    name = DiagnosticSubFunction(sub).name.lower() if known else f"reserved_{sub}"
    assert tx.subfunction_name == name
    assert tx.request_data == request_data
    assert tx.response_data == response_data
    assert tx.eve()["subfunction_name"] == name


@pytest.mark.parametrize("code", [member.value for member in ExceptionCode])
def test_every_exception_code(code: int) -> None:
    response = bytes([0x83, code])  # function 3 + exception bit, exception code
    tx, records = exchange(READ_600_10, response)
    assert [r for r in records if isinstance(r, DecoderEvent)] == []
    assert tx.function_code == 3
    assert tx.exception_code == code
    assert tx.exception == ExceptionCode(code).name.lower()
    assert (tx.address, tx.quantity, tx.response_values) == (600, 10, None)
    assert tx.eve()["response"] == {"exception_code": code, "exception": tx.exception}


def test_exception_names() -> None:
    assert [member.name.lower() for member in ExceptionCode] == [
        "illegal_function",
        "illegal_data_address",
        "illegal_data_value",
        "server_device_failure",
        "acknowledge",
        "server_device_busy",
        "memory_parity_error",
        "gateway_path_unavailable",
        "gateway_target_device_failed_to_respond",
    ]


def test_eve_shape() -> None:
    tx, _ = exchange(READ_WRITE_REQUEST, READ_WRITE_RESPONSE)
    assert tx.eve() == {
        "transaction_id": 7,
        "unit_id": 1,
        "function_code": 23,
        "function": "read_write_multiple_registers",
        "category": "public",
        "address": 3,
        "quantity": 1,
        "request": {"values": [255], "write_address": 14, "write_quantity": 1},
        "response": {"values": [0x1234]},
    }


def test_eve_device_identification_and_raw_data() -> None:
    tx, _ = exchange(PRIVATE_OBJECT_REQUEST, PRIVATE_OBJECT_RESPONSE)
    assert tx.eve()["response"] == {
        "conformity_level": 0x83,
        "more_follows": 0,
        "next_object_id": 0,
        "objects": [{"id": 0x80, "name": "private_128", "value": "ff01"}],
    }
    raw, _ = exchange(bytes([0x5A, 0x00, 0x02]), bytes([0x5A, 0x00, 0xFE]))
    assert raw.eve()["request"] == {"data": "0002"}
    assert raw.eve()["response"] == {"data": "00fe"}
