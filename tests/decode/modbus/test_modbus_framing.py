"""MBAP framing: several ADUs per feed, one ADU over many feeds, datagrams, the probe, and
the rule fields."""

from __future__ import annotations

import random

import pytest

from otids.decode.base import DecoderEvent, Direction, ProbeResult, Record
from otids.decode.modbus import FIELDS, SPEC, ModbusParser, ModbusTransaction, probe
from otids.decode.modbus.framer import MAX_ADU

Q = Direction.TO_SERVER
R = Direction.TO_CLIENT

# fmt: off
READ_REQUEST = bytes([
    0x00, 0x01,  # transaction id 1
    0x00, 0x00,  # protocol id
    0x00, 0x06,  # length
    0x11,  # unit id 17
    0x03,  # function: read holding registers
    0x00, 0x6B,  # starting address 107
    0x00, 0x03,  # quantity 3
])
READ_RESPONSE = bytes([
    0x00, 0x01,  # transaction id 1
    0x00, 0x00,  # protocol id
    0x00, 0x09,  # length
    0x11,  # unit id 17
    0x03,  # function
    0x06,  # byte count
    0x02, 0x2B, 0x00, 0x00, 0x00, 0x64,  # registers 555, 0, 100
])
WRITE_REQUEST = bytes([
    0x00, 0x02,  # transaction id 2
    0x00, 0x00,  # protocol id
    0x00, 0x06,  # length
    0x11,  # unit id 17
    0x05,  # function: write single coil
    0x00, 0xAC,  # output address 172
    0x00, 0x00,  # output value: off
])
WRITE_RESPONSE = bytes([
    0x00, 0x02,  # transaction id 2
    0x00, 0x00,  # protocol id
    0x00, 0x06,  # length
    0x11,  # unit id 17
    0x05,  # function
    0x00, 0xAC,  # output address
    0x00, 0x00,  # output value
])
EXCEPTION_RESPONSE = bytes([
    0x00, 0x01,  # transaction id 1
    0x00, 0x00,  # protocol id
    0x00, 0x03,  # length
    0x11,  # unit id 17
    0x83,  # function 3 + exception bit
    0x02,  # illegal data address
])

# Other protocols' first bytes, as seen on port 502 (zeek's modbus_and_non_modbus trace).
HTTP_GET = b"GET / HTTP/1.1\r\nHost: 160.97.70.34\r\n\r\n"
TLS_CLIENT_HELLO = bytes([
    0x16,  # record type: handshake
    0x03, 0x01,  # version TLS 1.0
    0x00, 0x85,  # record length
    0x01,  # handshake type: client hello
    0x00, 0x00, 0x81,  # handshake length
    0x03, 0x03,  # client version TLS 1.2
]) + bytes(32)  # random
SSL3_CLIENT_HELLO = bytes([
    0x16,  # record type: handshake
    0x03, 0x00,  # version SSL 3.0: protocol id would read 0x0000 ...
    0x00, 0x85,  # ... but the record length byte pair makes an MBAP length of 0x8501
    0x01, 0x00, 0x00, 0x81, 0x03, 0x00,
])
RDP_CONNECTION_REQUEST = bytes([
    0x03, 0x00,  # TPKT version 3, reserved
    0x00, 0x2B,  # TPKT length 43
    0x26,  # X.224 length
    0xE0,  # X.224 connection request
    0x00, 0x00, 0x00, 0x00, 0x00,
]) + b"Cookie: mstshash=admin\r\n"
DCERPC_BIND = bytes([
    0x05, 0x00,  # version 5.0
    0x0B,  # packet type: bind
    0x03,  # flags: first + last fragment
    0x10, 0x00, 0x00, 0x00,  # data representation
    0x48, 0x00,  # fragment length
    0x00, 0x00,  # auth length
])
NFS_RPC_CALL = bytes([
    0x80, 0x00, 0x00, 0x28,  # record marker: last fragment, 40 bytes
    0x7E, 0x86, 0xAB, 0x4A,  # xid
    0x00, 0x00, 0x00, 0x00,  # message type: call
    0x00, 0x00, 0x00, 0x02,  # RPC version 2
])
# fmt: on


def transactions(records: list[Record]) -> list[ModbusTransaction]:
    return [r for r in records if isinstance(r, ModbusTransaction)]


def events(records: list[Record]) -> list[DecoderEvent]:
    return [r for r in records if isinstance(r, DecoderEvent)]


def test_several_adus_in_one_feed() -> None:
    parser = ModbusParser()
    requests = parser.feed(Q, READ_REQUEST + WRITE_REQUEST, 1.0)
    assert [(tx.transaction_id, tx.done) for tx in transactions(requests)] == [
        (1, False),
        (2, False),
    ]
    responses = parser.feed(R, WRITE_RESPONSE + READ_RESPONSE, 2.0)
    assert events(responses) == []
    read, write = transactions(requests)
    assert transactions(responses) == [write, read]  # paired on the transaction id
    assert read.done and read.response_values == [555, 0, 100]
    assert write.done and write.request_values == write.response_values == [0]


@pytest.mark.parametrize(("direction", "adu"), [(Q, READ_REQUEST), (R, EXCEPTION_RESPONSE)])
def test_one_adu_byte_by_byte(direction: Direction, adu: bytes) -> None:
    parser = ModbusParser()
    records: list[Record] = []
    for index in range(len(adu)):
        step = parser.feed(direction, adu[index : index + 1], float(index))
        if index < len(adu) - 1:
            assert step == []
        records += step
    whole = ModbusParser().feed(direction, adu, 0.0)
    assert [tx.eve() for tx in transactions(records)] == [tx.eve() for tx in transactions(whole)]
    assert len(transactions(records)) == 1


def test_split_header_and_pdu_pairs() -> None:
    parser = ModbusParser()
    assert parser.feed(Q, READ_REQUEST[:7], 0.0) == []  # the MBAP header alone
    (request,) = parser.feed(Q, READ_REQUEST[7:], 0.1)
    assert parser.feed(R, READ_RESPONSE[:9], 0.2) == []
    (response,) = parser.feed(R, READ_RESPONSE[9:], 0.3)
    assert request is response and isinstance(response, ModbusTransaction) and response.done
    assert (response.request_ts, response.response_ts) == (0.1, 0.3)


def test_buffer_never_exceeds_one_adu() -> None:
    parser = ModbusParser()
    header = bytes([0x00, 0x01, 0x00, 0x00, 0x00, 0xFE, 0x01, 0x41])  # length 254, function 65
    assert parser.feed(Q, header + bytes(200), 0.0) == []
    framer = parser._framers[Q]
    assert len(framer._buffer) <= MAX_ADU
    (tx,) = parser.feed(Q, bytes(52), 1.0)  # completes the 260-byte ADU
    assert isinstance(tx, ModbusTransaction) and tx.request_data == bytes(252)
    assert framer._buffer == b""


def test_datagrams_are_self_contained() -> None:
    parser = SPEC.parser_factory(True)
    records = parser.feed(Q, READ_REQUEST + WRITE_REQUEST[:5], 0.0)
    assert len(transactions(records)) == 1
    assert [e.name for e in events(records)] == ["modbus.invalid_length"]
    # The partial ADU was not kept: the next datagram starts afresh.
    assert len(transactions(parser.feed(Q, WRITE_REQUEST, 1.0))) == 1


@pytest.mark.parametrize(
    ("data", "direction", "expected"),
    [
        (READ_REQUEST, Q, ProbeResult.MATCH),
        (READ_RESPONSE, R, ProbeResult.MATCH),
        (EXCEPTION_RESPONSE, R, ProbeResult.MATCH),
        (EXCEPTION_RESPONSE, Q, ProbeResult.NO_MATCH),  # a request never has bit 0x80
        (READ_REQUEST[:7], Q, ProbeResult.NEED_MORE),
        (b"", Q, ProbeResult.NEED_MORE),
        (READ_REQUEST[:7] + b"\x00", Q, ProbeResult.NEED_MORE),  # function 0: frame must chain
        (READ_REQUEST[:5] + b"\x02" + READ_REQUEST[6:7] + b"\x00", Q, ProbeResult.MATCH),  # a scan
        (
            READ_REQUEST[:5] + b"\x02" + READ_REQUEST[6:7] + b"\x00GET / HTTP/1.1",
            Q,
            ProbeResult.NO_MATCH,
        ),
        (HTTP_GET, Q, ProbeResult.NO_MATCH),
        (TLS_CLIENT_HELLO, Q, ProbeResult.NO_MATCH),
        (SSL3_CLIENT_HELLO, Q, ProbeResult.NO_MATCH),
        (RDP_CONNECTION_REQUEST, Q, ProbeResult.NO_MATCH),
        (DCERPC_BIND, Q, ProbeResult.NO_MATCH),
        (NFS_RPC_CALL, Q, ProbeResult.NO_MATCH),
    ],
)
def test_probe(data: bytes, direction: Direction, expected: ProbeResult) -> None:
    assert probe(data, direction) is expected
    assert SPEC.probe(data, direction) is expected


def test_probe_rejects_random_bytes() -> None:
    rng = random.Random(502)
    samples = [rng.randbytes(64) for _ in range(2000)]
    matches = sum(probe(sample, Q) is ProbeResult.MATCH for sample in samples)
    assert matches == 0


def test_spec() -> None:
    assert SPEC.name == "modbus"
    assert SPEC.tcp_ports == frozenset({502})
    assert SPEC.udp_ports == frozenset()
    assert isinstance(SPEC.parser_factory(False), ModbusParser)


def test_fields() -> None:
    parser = ModbusParser()
    parser.feed(Q, READ_REQUEST, 0.0)
    (tx,) = parser.feed(R, READ_RESPONSE, 1.0)
    assert isinstance(tx, ModbusTransaction)
    values = {name: spec.get(tx) for name, spec in FIELDS.items()}
    assert values == {
        "modbus.transaction_id": 1,
        "modbus.unit": 17,
        "modbus.function": 3,
        "modbus.function_name": "read_holding_registers",
        "modbus.category": "public",
        "modbus.subfunction": None,
        "modbus.subfunction_name": None,
        "modbus.mei_type": None,
        "modbus.access": "read",
        "modbus.table": "holding",
        "modbus.address": 107,
        "modbus.quantity": 3,
        "modbus.write_address": None,
        "modbus.write_quantity": None,
        "modbus.write_values": None,
        "modbus.read_values": [555, 0, 100],
        "modbus.and_mask": None,
        "modbus.or_mask": None,
        "modbus.exception": None,
        "modbus.exception_name": None,
        "modbus.is_exception": False,
        "modbus.device_id": None,
        "modbus.unanswered": False,
        "modbus.unsolicited": False,
    }
    for name, spec in FIELDS.items():
        assert spec.name == name and spec.doc and spec.type


def test_fields_of_exception_and_unanswered() -> None:
    parser = ModbusParser()
    (exception, event) = parser.feed(R, EXCEPTION_RESPONSE, 0.0)
    assert isinstance(event, DecoderEvent) and event.name == "modbus.unsolicited_response"
    assert FIELDS["modbus.is_exception"].get(exception) is True
    assert FIELDS["modbus.exception"].get(exception) == 2
    assert FIELDS["modbus.exception_name"].get(exception) == "illegal_data_address"
    assert FIELDS["modbus.unsolicited"].get(exception) is True
    assert FIELDS["modbus.unanswered"].get(exception) is False
    (request,) = parser.feed(Q, WRITE_REQUEST, 1.0)
    assert FIELDS["modbus.write_values"].get(request) == [0]
    assert FIELDS["modbus.unanswered"].get(request) is False  # still pending
    parser.close(2.0)
    assert FIELDS["modbus.unanswered"].get(request) is True
