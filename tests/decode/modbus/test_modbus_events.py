"""One test per decoder event: the bytes that raise it, and that nothing else is raised."""

from __future__ import annotations

import struct

import pytest

from otids.decode.base import DecoderEvent, Direction, Record
from otids.decode.modbus import EVENTS, REQUEST_FLOOD, SPEC, ModbusEvent, ModbusParser
from otids.decode.modbus.transaction import ModbusTransaction

Q = Direction.TO_SERVER  # request direction
R = Direction.TO_CLIENT  # response direction


def mbap(transaction_id: int, unit: int, pdu: bytes) -> bytes:
    """Prefix a PDU with its MBAP header: protocol id 0, length = unit id + PDU."""
    return struct.pack(">HHHB", transaction_id, 0, len(pdu) + 1, unit) + pdu


def run(feeds: list[tuple[Direction, bytes]]) -> list[Record]:
    parser = ModbusParser()
    records: list[Record] = []
    for number, (direction, data) in enumerate(feeds):
        records += parser.feed(direction, data, float(number))
    return records


def events(records: list[Record]) -> list[DecoderEvent]:
    return [r for r in records if isinstance(r, DecoderEvent)]


# fmt: off
READ_3 = bytes([
    0x03,  # function: read holding registers
    0x00, 0x00,  # starting address 0
    0x00, 0x03,  # quantity 3
])
WRITE_REGISTER = bytes([
    0x06,  # function: write single register
    0x00, 0x01,  # register address 1
    0x00, 0x03,  # register value 3
])

# (feeds, the event names expected in order, whether they concern a transaction)
CASES = [
    pytest.param(
        [(Q, bytes([
            0x00, 0x01,  # transaction id
            0x00, 0x01,  # protocol id 1: not Modbus
            0x00, 0x06,  # length
            0x01,  # unit id
            0x03, 0x00, 0x00, 0x00, 0x01,  # PDU (skipped)
        ]))],
        ["modbus.invalid_protocol_id"], False, id="invalid_protocol_id",
    ),
    pytest.param(
        [(Q, bytes([
            0x00, 0x01,  # transaction id
            0x00, 0x00,  # protocol id
            0x00, 0x01,  # length 1: no room for a function code
            0x01,  # unit id
            0x00, 0x00,  # junk
        ]))],
        ["modbus.invalid_length"], False, id="invalid_length-mbap-short",
    ),
    pytest.param(
        [(Q, bytes([
            0x00, 0x01,  # transaction id
            0x00, 0x00,  # protocol id
            0x01, 0x2C,  # length 300: over 254
            0x01,  # unit id
            0x03,  # function
        ]))],
        ["modbus.invalid_length"], False, id="invalid_length-mbap-long",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x03,  # function: read holding registers
            0x00, 0x00,  # starting address, then nothing
        ])))],
        ["modbus.invalid_length"], True, id="invalid_length-pdu-short",
    ),
    pytest.param(
        [(Q, mbap(1, 1, READ_3 + bytes([0x00])))],  # one byte too many
        ["modbus.invalid_length"], True, id="invalid_length-pdu-long",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x10,  # function: write multiple registers
            0x00, 0x00,  # starting address
            0x00, 0x01,  # quantity 1
            0x02,  # byte count 2
            0x00,  # one register byte missing
        ])))],
        ["modbus.invalid_length"], True, id="invalid_length-byte-count-overruns",
    ),
    pytest.param(
        [(Q, mbap(1, 1, READ_3)), (R, mbap(1, 1, bytes([
            0x03,  # function
            0x07,  # byte count 7, but only 6 follow
            0x00, 0x01, 0x00, 0x02, 0x00, 0x03,  # registers
        ])))],
        ["modbus.invalid_length"], True, id="invalid_length-response-byte-count",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([0x2B, 0x0E, 0x01, 0x00]))), (R, mbap(1, 1, bytes([
            0x2B, 0x0E, 0x01, 0x01,  # function, MEI type, code, conformity
            0x00, 0x00, 0x01,  # more follows, next object id, one object
            0x00, 0x05,  # object 0, 5 bytes
            0x41, 0x42,  # ... of which 2 are present
        ])))],
        ["modbus.invalid_length"], True, id="invalid_length-device-objects-overrun",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x00,  # function 0: never valid
        ])))],
        ["modbus.invalid_function_code"], True, id="invalid_function_code-0",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x83,  # exception bit in a request
            0x00, 0x00, 0x00, 0x01,  # data
        ])))],
        ["modbus.invalid_function_code"], True, id="invalid_function_code-exception-bit",
    ),
    pytest.param(
        [(Q, mbap(1, 1, READ_3)), (R, mbap(1, 1, bytes([
            0x83,  # exception response to function 3
            0x07,  # exception code 7: not defined by V1.1b3
        ])))],
        ["modbus.invalid_exception_code"], True, id="invalid_exception_code",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x05,  # function: write single coil
            0x00, 0x01,  # output address
            0x12, 0x34,  # value: neither 0x0000 nor 0xFF00
        ])))],
        ["modbus.invalid_value"], True, id="invalid_value-coil",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x01,  # function: read coils
            0x00, 0x00,  # starting address
            0x07, 0xD1,  # quantity 2001: over 2000
        ])))],
        ["modbus.invalid_value"], True, id="invalid_value-read-coils-quantity",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x04,  # function: read input registers
            0x00, 0x00,  # starting address
            0x00, 0x00,  # quantity 0
        ])))],
        ["modbus.invalid_value"], True, id="invalid_value-read-registers-quantity",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x0F,  # function: write multiple coils
            0x00, 0x00,  # starting address
            0x00, 0x0A,  # quantity 10
            0x01,  # byte count 1: 10 bits need 2
            0xFF,  # outputs
        ])))],
        ["modbus.invalid_value"], True, id="invalid_value-write-coils-byte-count",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x17,  # function: read/write multiple registers
            0x00, 0x00,  # read starting address
            0x00, 0x7E,  # quantity to read 126: over 125
            0x00, 0x00,  # write starting address
            0x00, 0x01,  # quantity to write 1
            0x02,  # write byte count
            0x00, 0x01,  # write register
        ])))],
        ["modbus.invalid_value"], True, id="invalid_value-read-write-quantity",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x08,  # function: diagnostics
            0x00, 0x01,  # sub-function: restart communications option
            0x12, 0x34,  # data: neither 0x0000 nor 0xFF00
        ])))],
        ["modbus.invalid_value"], True, id="invalid_value-restart-data",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x14,  # function: read file record
            0x07,  # byte count
            0x05,  # reference type 5: must be 6
            0x00, 0x01,  # file number
            0x00, 0x00,  # record number
            0x00, 0x01,  # record length
        ])))],
        ["modbus.invalid_value"], True, id="invalid_value-reference-type",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x2B,  # function: encapsulated interface transport
            0x0E,  # MEI type: read device identification
            0x05,  # read device id code 5: only 1..4 exist
            0x00,  # object id
        ])))],
        ["modbus.invalid_value"], True, id="invalid_value-read-device-id-code",
    ),
    pytest.param(
        [(Q, mbap(1, 1, READ_3)), (R, mbap(1, 1, bytes([
            0x03,  # function
            0x04,  # byte count: 2 registers for a quantity of 3
            0x00, 0x01, 0x00, 0x02,  # registers
        ])))],
        ["modbus.value_mismatch"], True, id="value_mismatch-byte-count",
    ),
    pytest.param(
        [(Q, mbap(1, 1, WRITE_REGISTER)), (R, mbap(1, 1, bytes([
            0x06,  # function
            0x00, 0x01,  # register address
            0x00, 0x04,  # value 4: the request wrote 3
        ])))],
        ["modbus.value_mismatch"], True, id="value_mismatch-echo",
    ),
    pytest.param(
        [(Q, mbap(1, 1, bytes([
            0x08, 0x00, 0x00,  # diagnostics: return query data
            0xAB, 0xCD,  # data
        ]))), (R, mbap(1, 1, bytes([
            0x08, 0x00, 0x00,  # diagnostics: return query data
            0xAB, 0xCE,  # data differs from the query
        ])))],
        ["modbus.value_mismatch"], True, id="value_mismatch-diagnostics-echo",
    ),
    pytest.param(
        [(R, mbap(9, 1, bytes([
            0x03,  # function
            0x02,  # byte count
            0x00, 0x2A,  # register
        ])))],
        ["modbus.unsolicited_response"], True, id="unsolicited_response",
    ),
    pytest.param(
        [(Q, mbap(1, 1, READ_3)), (R, mbap(1, 2, bytes([
            0x03,  # function
            0x06,  # byte count
            0x00, 0x01, 0x00, 0x02, 0x00, 0x03,  # registers
        ])))],
        ["modbus.unsolicited_response"], True, id="unsolicited_response-other-unit",
    ),
]
# fmt: on


@pytest.mark.parametrize(("feeds", "expected", "with_tx"), CASES)
def test_event(feeds: list[tuple[Direction, bytes]], expected: list[str], with_tx: bool) -> None:
    found = events(run(feeds))
    assert [event.name for event in found] == expected
    for event in found:
        assert event.name in EVENTS
        assert event.protocol == "modbus"
        assert event.detail
        if with_tx:
            assert isinstance(event.tx, ModbusTransaction)
            assert event.name in event.tx.events
        else:
            assert event.tx is None


def test_flooded_once_and_oldest_given_up() -> None:
    parser = ModbusParser()
    records: list[Record] = []
    for transaction_id in range(REQUEST_FLOOD + 10):
        records += parser.feed(Q, mbap(transaction_id, 1, READ_3), float(transaction_id))
    flooded = [e for e in events(records) if e.name == ModbusEvent.FLOODED]
    assert len(flooded) == 1
    assert isinstance(flooded[0].tx, ModbusTransaction)
    assert flooded[0].tx.transaction_id == REQUEST_FLOOD
    returned = [r for r in records if isinstance(r, ModbusTransaction)]
    # Each request is returned when decoded; the ten oldest a second time, given up.
    seen: set[int] = set()
    given_up = []
    for tx in returned:
        if id(tx) in seen:
            given_up.append(tx)
        seen.add(id(tx))
    assert [tx.transaction_id for tx in given_up] == list(range(10))
    assert all(tx.unanswered for tx in given_up)
    # Memory stays bounded: only REQUEST_FLOOD are still pending, and close() returns them.
    closed = parser.close(1e6)
    assert len(closed) == REQUEST_FLOOD
    assert all(isinstance(tx, ModbusTransaction) and tx.done for tx in closed)


def test_gap_then_resync() -> None:
    parser = ModbusParser()
    # Half of an ADU, then bytes are lost.
    assert parser.feed(Q, mbap(1, 1, READ_3)[:5], 0.0) == []
    gap = parser.gap(Q, 1.0)
    assert [e.name for e in gap if isinstance(e, DecoderEvent)] == ["modbus.gap"]
    assert isinstance(gap[0], DecoderEvent) and "resynchronising" in gap[0].detail
    # The stream resumes mid-ADU: the tail of a lost request, then whole requests.
    tail = bytes([0x00, 0x05, 0x00, 0x01, 0x03])  # junk without a plausible header
    records = parser.feed(Q, tail + mbap(2, 1, READ_3) + mbap(3, 1, READ_3), 2.0)
    assert events(records) == []
    assert [tx.transaction_id for tx in records if isinstance(tx, ModbusTransaction)] == [2, 3]


def test_resync_after_invalid_length_skips_garbage() -> None:
    garbage = bytes([
        0x00, 0x01,  # transaction id
        0x00, 0x00,  # protocol id
        0x00, 0x00,  # length 0
        0xDE, 0xAD, 0xBE, 0xEF,  # junk
    ])  # fmt: skip
    records = run([(Q, garbage + mbap(5, 1, READ_3))])
    assert [e.name for e in events(records)] == ["modbus.invalid_length"]
    assert [tx.transaction_id for tx in records if isinstance(tx, ModbusTransaction)] == [5]


def test_reused_transaction_id_gives_up_the_older_request() -> None:
    records = run([(Q, mbap(1, 1, READ_3)), (Q, mbap(1, 1, WRITE_REGISTER))])
    first = records[0]
    assert isinstance(first, ModbusTransaction)
    assert first.done and first.unanswered and first.function == "read_holding_registers"
    assert records[1] is first  # given up, returned a second time
    assert isinstance(records[2], ModbusTransaction) and not records[2].done


def test_close_returns_pending_requests_done() -> None:
    parser = ModbusParser()
    parser.feed(Q, mbap(1, 1, READ_3) + mbap(2, 1, WRITE_REGISTER), 0.0)
    closed = parser.close(1.0)
    assert [tx.transaction_id for tx in closed if isinstance(tx, ModbusTransaction)] == [1, 2]
    assert all(isinstance(tx, ModbusTransaction) and tx.done and tx.unanswered for tx in closed)
    assert parser.close(2.0) == []


def test_non_modbus_traffic_is_declared() -> None:
    assert SPEC.port_mismatch_event == "modbus.non_modbus_traffic"
    assert SPEC.port_mismatch_event in SPEC.events
    assert set(SPEC.events) == {event.value for event in ModbusEvent}
    assert all(SPEC.events.values())
