"""Rules with a ``state`` block: validation, no-response timers and write/readback."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from otids.capture.flow import Flow, FlowTable
from otids.capture.packet import PROTO_TCP, TH_ACK, Packet
from otids.decode.base import AppParser, Direction
from otids.decode.dnp3 import Dnp3Parser
from otids.decode.dnp3.transport import encode_fragment
from otids.decode.modbus import ModbusParser
from otids.rules.engine import Rule, RuleSet
from otids.rules.loader import parse_rule
from otids.rules.state import StateSpec, parse_duration
from otids.rules.threshold import AlertGate, Pending

TO_SERVER, TO_CLIENT = Direction.TO_SERVER, Direction.TO_CLIENT


def a_flow(port: int = 502) -> Flow:
    """The TCP flow 192.0.2.10:49152 -> 192.0.2.20:``port``."""
    packet = Packet(
        0.0, 4, bytes([192, 0, 2, 10]), bytes([192, 0, 2, 20]), PROTO_TCP, 49152, port, b"", 54,
        TH_ACK,
    )  # fmt: skip
    return FlowTable().lookup(packet)[0]


def make_rule(detection: str, state: str, extra: str = "") -> Rule:
    """A rule (sid 7) with the given selection and ``state`` block lines."""
    text = (
        "id: t\nsid: 7\ntitle: t\nseverity: low\n"
        f"detection:\n  selection:\n    {detection}\n  condition: selection\n"
        f"state:\n  {state}\n{extra}"
    )
    parsed, problems = parse_rule(text, "t.yaml")
    assert parsed is not None, problems
    return parsed


class Harness:
    """One flow fed to a dissector, its records matched and gated as the pipeline does."""

    def __init__(self, rule: Rule, parser: AppParser, port: int = 502) -> None:
        self.rules = RuleSet([rule])
        self.gate = AlertGate()
        self.parser = parser
        self.flow = a_flow(port)
        self.alerts: list[Pending] = []

    def feed(self, direction: Direction, data: bytes, ts: float) -> None:
        for record in self.parser.feed(direction, data, ts):
            self._match(record, ts)

    def _match(self, record: Any, ts: float) -> None:
        for rule in self.rules.match(record, self.flow):
            self.alerts += self.gate.admit(rule, record, self.flow, ts, self.parser.protocol)

    def due(self, now: float) -> None:
        self.alerts += self.gate.due(now)

    def close(self, ts: float) -> None:
        for record in self.parser.close(ts):
            self._match(record, ts)

    def drain(self, now: float | None = None) -> None:
        self.alerts += self.gate.drain(now)

    def states(self) -> list[dict[str, Any]]:
        return [a.extra["state"] for a in self.alerts]


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (2.5, 2.5),
        ("5s", 5.0),
        ("500ms", 0.5),
        ("2m", 120.0),
        (" 1h ", 3600.0),
        ("5", 5.0),
        (0, None),
        (-1, None),
        (True, None),
        ("5 seconds", None),
        ("s", None),
        ([5], None),
    ],
)
def test_durations(value: Any, seconds: float | None) -> None:
    assert parse_duration(value) == seconds


MODBUS_READ = "modbus.function: 3"
DNP3_READ = "dnp3.func: 1"

# (detection, state block lines, line of the error, message fragment)
BAD_STATES: list[tuple[str, str, int, str]] = [
    (MODBUS_READ, "no_response_within: soon", 9, "no_response_within takes a duration"),
    (MODBUS_READ, "no_response_within: 0", 9, "no_response_within takes a duration"),
    (MODBUS_READ, "no_respons_within: 5s", 9, "unknown state 'no_respons_within'"),
    (MODBUS_READ, "write_readback: different", 9, "write_readback takes 'changed'"),
    (DNP3_READ, "unsolicited: storm", 9, "unsolicited takes 'unconfirmed'"),
    (MODBUS_READ, "write_readback: changed\n  unsolicited: unconfirmed", 8, "exactly one of"),
    (MODBUS_READ, "[]", 8, "exactly one of"),
    ("event: modbus.invalid_length", "no_response_within: 5s", 8, "not to decoder events"),
    ("src_ip: 192.0.2.10", "write_readback: changed", 8, "needs a rule on modbus or dnp3"),
    (MODBUS_READ, "unsolicited: unconfirmed", 8, "needs a rule on dnp3 transactions"),
    ("src_ip: 192.0.2.10", "no_response_within: 5s", 8, "on no protocol"),
]


@pytest.mark.parametrize(("detection", "state", "line", "message"), BAD_STATES)
def test_bad_state_block_is_reported_with_its_line(
    detection: str, state: str, line: int, message: str
) -> None:
    text = (
        "id: t\nsid: 7\ntitle: t\nseverity: low\n"
        f"detection:\n  selection:\n    {detection}\n"
        f"state:\n  {state}\n"
    )
    if state == "[]":
        text = text.replace("state:\n  []", "state: []")
    rule, problems = parse_rule(text, "bad.yaml")
    assert rule is None
    assert any(
        str(p).startswith(f"bad.yaml:{line}: ") and message in p.message for p in problems
    ), problems


def test_good_state_blocks_load() -> None:
    loaded = [
        make_rule(MODBUS_READ, "no_response_within: 500ms").state,
        make_rule(MODBUS_READ, "write_readback: changed").state,
        make_rule("dnp3.func: [1, 4, 5, 6]", "write_readback: changed").state,
        make_rule("dnp3.func: [0, 130]", "unsolicited: unconfirmed").state,
    ]
    assert loaded == [
        StateSpec("no_response_within", 0.5, "modbus"),
        StateSpec("write_readback", protocol="modbus"),
        StateSpec("write_readback", protocol="dnp3"),
        StateSpec("unsolicited", protocol="dnp3"),
    ]


# --- Modbus messages ---------------------------------------------------------------------------


def adu(transaction_id: int, pdu: list[int], unit: int = 1) -> bytes:
    """An MBAP header (protocol 0, length from the PDU) followed by ``pdu``."""
    return bytes([
        transaction_id >> 8, transaction_id & 0xFF,  # transaction id
        0x00, 0x00,  # protocol id
        0x00, len(pdu) + 1,  # length: unit id and PDU
        unit,  # unit id
    ]) + bytes(pdu)  # fmt: skip


READ_100_REQUEST = [
    0x03,  # read holding registers
    0x00, 0x64,  # starting address 100
    0x00, 0x02,  # quantity 2
]  # fmt: skip


def read_100_response(first: int, second: int = 0) -> list[int]:
    return [
        0x03,  # read holding registers
        0x04,  # byte count
        first >> 8, first & 0xFF,  # register 100
        second >> 8, second & 0xFF,  # register 101
    ]  # fmt: skip


WRITE_100 = [
    0x06,  # write single register (the response echoes it)
    0x00, 0x64,  # address 100
    0x05, 0xDC,  # value 1500
]  # fmt: skip
WRITE_101_REFUSED = [
    0x86,  # write single register, exception bit
    0x04,  # server device failure
]  # fmt: skip
WRITE_101 = [
    0x06,  # write single register
    0x00, 0x65,  # address 101
    0x00, 0x07,  # value 7
]  # fmt: skip
WRITE_COILS_4 = [
    0x0F,  # write multiple coils
    0x00, 0x04,  # starting address 4
    0x00, 0x03,  # quantity 3
    0x01,  # byte count
    0b101,  # coils 4 and 6 on, 5 off
]  # fmt: skip
WRITE_COILS_4_ANSWER = [
    0x0F,  # write multiple coils
    0x00, 0x04,  # starting address 4
    0x00, 0x03,  # quantity 3
]  # fmt: skip
READ_COILS_0_REQUEST = [
    0x01,  # read coils
    0x00, 0x00,  # starting address 0
    0x00, 0x08,  # quantity 8
]  # fmt: skip


def read_coils_0_response(bits: int) -> list[int]:
    return [
        0x01,  # read coils
        0x01,  # byte count
        bits,  # coils 0-7
    ]  # fmt: skip


MASK_100 = [
    0x16,  # mask write register (the response echoes it)
    0x00, 0x64,  # address 100
    0x00, 0xF2,  # AND mask
    0x00, 0x25,  # OR mask: bits outside the AND mask become 0x05
]  # fmt: skip
READ_WRITE_100 = [
    0x17,  # read/write multiple registers
    0x00, 0x64,  # read starting address 100
    0x00, 0x01,  # read quantity 1
    0x00, 0x64,  # write starting address 100
    0x00, 0x01,  # write quantity 1
    0x02,  # write byte count
    0x00, 0x2A,  # value 42
]  # fmt: skip


def read_write_100_response(value: int) -> list[int]:
    return [
        0x17,  # read/write multiple registers
        0x02,  # byte count
        value >> 8, value & 0xFF,  # register 100 after the write
    ]  # fmt: skip


READ_INPUT_100_REQUEST = [
    0x04,  # read input registers
    0x00, 0x64,  # starting address 100
    0x00, 0x01,  # quantity 1
]  # fmt: skip
READ_INPUT_100_RESPONSE = [
    0x04,  # read input registers
    0x02,  # byte count
    0x00, 0x63,  # input register 100: 99
]  # fmt: skip


# --- no response within N seconds --------------------------------------------------------------


def no_response(seconds: str = "5s", extra: str = "") -> Harness:
    return Harness(
        make_rule("modbus.unit: 1", f"no_response_within: {seconds}", extra), ModbusParser()
    )


def test_unanswered_request_fires_at_its_deadline() -> None:
    h = no_response()
    h.feed(TO_SERVER, adu(1, READ_100_REQUEST), 10.0)
    h.due(14.9)
    assert h.alerts == []
    h.due(15.0)
    (alert,) = h.alerts
    assert alert.ts == 15.0
    assert alert.extra["state"] == {
        "no_response_within": 5.0,
        "request_timestamp": "1970-01-01T00:00:10.000000+0000",
    }
    h.feed(TO_CLIENT, adu(1, read_100_response(1)), 16.0)  # late: no second alert
    h.due(30.0)
    h.drain()
    assert len(h.alerts) == 1


def test_answered_request_stops_its_timer() -> None:
    h = no_response()
    h.feed(TO_SERVER, adu(1, READ_100_REQUEST), 10.0)
    h.feed(TO_CLIENT, adu(1, read_100_response(1)), 14.0)
    h.due(20.0)
    h.drain(100.0)
    assert h.alerts == []
    assert h.gate.state.timers == 0


def test_request_given_up_early_fires_at_its_deadline() -> None:
    h = no_response()
    h.feed(TO_SERVER, adu(1, READ_100_REQUEST), 10.0)
    h.close(11.0)  # the flow ends: the dissector gives the request up, unanswered
    h.due(12.0)
    assert h.alerts == []
    h.due(15.5)
    assert [a.ts for a in h.alerts] == [15.0]


@pytest.mark.parametrize(("end", "alerts"), [(14.0, 0), (15.0, 1), (100.0, 1)])
def test_capture_end_fires_only_requests_older_than_the_delay(end: float, alerts: int) -> None:
    h = no_response()
    h.feed(TO_SERVER, adu(1, READ_100_REQUEST), 10.0)
    h.drain(end)
    assert len(h.alerts) == alerts


def test_detection_chooses_the_watched_requests() -> None:
    h = no_response()  # unit 1 only
    h.feed(TO_SERVER, adu(1, READ_100_REQUEST, unit=2), 10.0)
    h.due(20.0)
    assert h.alerts == []


def test_threshold_applies_to_what_the_timers_let_through() -> None:
    h = no_response(extra="threshold: {track: by_dst, count: 1, seconds: 60}\n")
    for i in range(3):
        h.feed(TO_SERVER, adu(i, READ_100_REQUEST), 10.0 + i)
    h.due(20.0)
    (alert,) = h.alerts
    assert alert.extra["count"] == 1
    assert alert.extra["state"]["request_timestamp"].endswith("00:00:10.000000+0000")


def test_timers_are_bounded_and_the_shed_counted() -> None:
    h = no_response()
    h.gate.state.max_timers = 2
    for i in range(5):
        h.feed(TO_SERVER, adu(i, READ_100_REQUEST), 10.0)
    assert (h.gate.state.timers, h.gate.state.timers_shed) == (2, 3)
    h.due(20.0)
    assert len(h.alerts) == 2
    assert h.gate.state.timers == 0


# --- write, then read back -------------------------------------------------------------------

RB = "modbus.function: [1, 3, 4, 5, 6, 15, 16, 22, 23]"

Exchanges = list[tuple[list[int], list[int]]]  # (request PDU, response PDU) in order
Changed = list[list[tuple[int, int, int]]]  # per alert: (address, written, read) per point

# (title, exchanges, changed points expected)
READBACKS: list[tuple[str, Exchanges, Changed]] = [
    (
        "read back as written",
        [(WRITE_100, WRITE_100), (READ_100_REQUEST, read_100_response(1500))],
        [],
    ),
    (
        "read back changed",
        [(WRITE_100, WRITE_100), (READ_100_REQUEST, read_100_response(1400))],
        [[(100, 1500, 1400)]],
    ),
    (
        "reported once, then forgotten",
        [
            (WRITE_100, WRITE_100),
            (READ_100_REQUEST, read_100_response(1400)),
            (READ_100_REQUEST, read_100_response(1300)),
        ],
        [[(100, 1500, 1400)]],
    ),
    (
        "kept after an equal read: a later change is caught",
        [
            (WRITE_100, WRITE_100),
            (READ_100_REQUEST, read_100_response(1500)),
            (READ_100_REQUEST, read_100_response(1501)),
        ],
        [[(100, 1500, 1501)]],
    ),
    (
        "a refused write is not remembered",
        [(WRITE_101, WRITE_101_REFUSED), (READ_100_REQUEST, read_100_response(0, 3))],
        [],
    ),
    (
        "two addresses in one read",
        [
            (WRITE_100, WRITE_100),
            (WRITE_101, WRITE_101),
            (READ_100_REQUEST, read_100_response(1, 2)),
        ],
        [[(100, 1500, 1), (101, 7, 2)]],
    ),
    (
        "coils",
        [
            (WRITE_COILS_4, WRITE_COILS_4_ANSWER),
            (READ_COILS_0_REQUEST, read_coils_0_response(0b0101_0000)),
        ],
        [],
    ),
    (
        "coils changed",
        [
            (WRITE_COILS_4, WRITE_COILS_4_ANSWER),
            (READ_COILS_0_REQUEST, read_coils_0_response(0b0111_0000)),
        ],
        [[(5, 0, 1)]],
    ),
    (
        "mask write: only the bits its masks fix",
        [(MASK_100, MASK_100), (READ_100_REQUEST, read_100_response(0x0017))],
        [],
    ),
    (
        "mask write: a fixed bit changed",
        [(MASK_100, MASK_100), (READ_100_REQUEST, read_100_response(0x0013))],
        [[(100, 0x05, 0x13)]],
    ),
    ("23 reads back its own write", [(READ_WRITE_100, read_write_100_response(42))], []),
    (
        "23 reads back its own write, changed",
        [(READ_WRITE_100, read_write_100_response(41))],
        [[(100, 42, 41)]],
    ),
    (
        "input registers are another table",
        [(WRITE_100, WRITE_100), (READ_INPUT_100_REQUEST, READ_INPUT_100_RESPONSE)],
        [],
    ),
]


@pytest.mark.parametrize(
    ("title", "exchanges", "expected"), READBACKS, ids=[r[0] for r in READBACKS]
)
def test_write_readback(title: str, exchanges: Exchanges, expected: Changed) -> None:
    h = Harness(make_rule(RB, "write_readback: changed"), ModbusParser())
    ts = 1.0
    for transaction_id, (request, response) in enumerate(exchanges, start=1):
        h.feed(TO_SERVER, adu(transaction_id, request), ts)
        h.feed(TO_CLIENT, adu(transaction_id, response), ts + 0.01)
        ts += 1.0
    got = [
        [(p["address"], p["written"], p["read"]) for p in state["points"]] for state in h.states()
    ]
    assert got == expected, title
    for state in h.states():
        assert state["changed"] == len(state["points"])
        assert {p["written_by"] for p in state["points"]} == {"192.0.2.10"}


def test_read_asked_before_the_write_was_answered_is_not_compared() -> None:
    h = Harness(make_rule(RB, "write_readback: changed"), ModbusParser())
    h.feed(TO_SERVER, adu(1, WRITE_100), 1.0)
    h.feed(TO_SERVER, adu(2, READ_100_REQUEST), 1.001)  # pipelined behind the write
    h.feed(TO_CLIENT, adu(1, WRITE_100), 1.01)
    h.feed(TO_CLIENT, adu(2, read_100_response(1400)), 1.02)
    assert h.alerts == []
    h.feed(TO_SERVER, adu(3, READ_100_REQUEST), 2.0)
    h.feed(TO_CLIENT, adu(3, read_100_response(1400)), 2.01)
    assert len(h.alerts) == 1


def test_other_unit_or_server_is_another_point() -> None:
    h = Harness(make_rule(RB, "write_readback: changed"), ModbusParser())
    h.feed(TO_SERVER, adu(1, WRITE_100, unit=2), 1.0)
    h.feed(TO_CLIENT, adu(1, WRITE_100, unit=2), 1.01)
    h.feed(TO_SERVER, adu(2, READ_100_REQUEST), 2.0)
    h.feed(TO_CLIENT, adu(2, read_100_response(1400)), 2.01)
    assert h.alerts == []


def test_written_points_are_bounded_and_the_evicted_counted() -> None:
    h = Harness(make_rule(RB, "write_readback: changed"), ModbusParser())
    state = h.gate.state
    state.max_points = 1
    h.feed(TO_SERVER, adu(1, WRITE_100), 1.0)
    h.feed(TO_CLIENT, adu(1, WRITE_100), 1.01)
    h.feed(TO_SERVER, adu(2, WRITE_101), 2.0)
    h.feed(TO_CLIENT, adu(2, WRITE_101), 2.01)
    assert (state.points, state.points_evicted) == (1, 1)
    h.feed(TO_SERVER, adu(3, READ_100_REQUEST), 3.0)
    h.feed(TO_CLIENT, adu(3, read_100_response(1, 2)), 3.01)
    assert [[p["address"] for p in s["points"]] for s in h.states()] == [[101]]


# --- DNP3: analog output commands, then analog output status read back ------------------------

DNP3_RB = "dnp3.func: [1, 4, 5, 6]"
DNP3_PORT = 20000
MASTER, OUTSTATION = 1, 10  # link addresses
MASTER_CONTROL, OUTSTATION_CONTROL = 0xC4, 0x44  # unconfirmed user data, PRM; DIR on the master's
FIR_FIN = 0xC0
READ, SELECT, OPERATE, DIRECT_OPERATE, DIRECT_OPERATE_NR = 1, 3, 4, 5, 6
PARAMETER_ERROR = 0x0004  # IIN2 bit: the outstation rejected the request
NOT_SUPPORTED = 4  # control status of a refused command


def g41v2(index: int, value: int, status: int = 0) -> bytes:
    """A 16-bit analog output block, 1-octet index prefix and count, one point."""
    return (
        bytes([41, 2, 0x17, 1, index]) + value.to_bytes(2, "little", signed=True) + bytes([status])
    )


def g41v3(index: int, value: float) -> bytes:
    """A single-precision analog output block, one point."""
    return bytes([41, 3, 0x17, 1, index]) + struct.pack("<fB", value, 0)


def g40v2(*values: int, start: int = 0) -> bytes:
    """16-bit analog output status, online, indexes ``start``.. (1-octet start, stop)."""
    out = bytes([40, 2, 0x00, start, start + len(values) - 1])
    return out + b"".join(bytes([1]) + v.to_bytes(2, "little", signed=True) for v in values)


def g40v3(value: float) -> bytes:
    """Single-precision analog output status of index 0, online."""
    return bytes([40, 3, 0x00, 0, 0]) + struct.pack("<Bf", 1, value)


READ_G40 = bytes([40, 0, 0x06])  # analog output status, any variation, all points

# One exchange: (function, request objects, response objects or None: no response, IIN)
Dnp3Exchange = tuple[int, bytes, bytes | None, int]


def operate(function: int, block: bytes, iin: int = 0, echo: bytes | None = None) -> Dnp3Exchange:
    """A command echoed (as ``echo`` when given) with the IIN."""
    return function, block, block if echo is None else echo, iin


def read_back(objects: bytes) -> Dnp3Exchange:
    """A read of the analog output status answered with ``objects``."""
    return READ, READ_G40, objects, 0


class Dnp3Session:
    """One master and one outstation over a TCP flow, each fragment framed in link frames."""

    def __init__(self, harness: Harness) -> None:
        self.h = harness
        self.seq = 0  # application sequence of the master
        self.transport = [0, 0]  # transport sequence per direction

    def _send(self, direction: Direction, fragment: bytes, ts: float) -> None:
        side = 0 if direction is TO_SERVER else 1
        control, dst, src = (
            (MASTER_CONTROL, OUTSTATION, MASTER) if side == 0
            else (OUTSTATION_CONTROL, MASTER, OUTSTATION)
        )  # fmt: skip
        frames = encode_fragment(fragment, control, dst, src, self.transport[side])
        self.transport[side] = (self.transport[side] + 1) & 0x3F
        self.h.feed(direction, frames, ts)

    def exchange(self, exchange: Dnp3Exchange, ts: float, dst: int = OUTSTATION) -> None:
        function, asked, answer, iin = exchange
        self._send(TO_SERVER, bytes([FIR_FIN | self.seq, function]) + asked, ts)
        if answer is not None:
            header = bytes([FIR_FIN | self.seq, 0x81, iin >> 8, iin & 0xFF])
            self._send(TO_CLIENT, header + answer, ts + 0.01)
        self.seq = (self.seq + 1) & 0x0F


DNP3_READBACKS: list[tuple[str, list[Dnp3Exchange], Changed]] = [
    (
        "direct operate read back as written",
        [operate(DIRECT_OPERATE, g41v2(0, 1500)), read_back(g40v2(1500))],
        [],
    ),
    (
        "direct operate read back changed",
        [operate(DIRECT_OPERATE, g41v2(0, 1500)), read_back(g40v2(1400))],
        [[(0, 1500, 1400)]],
    ),
    (
        "select then operate: the operate is the write",
        [
            operate(SELECT, g41v2(1, 30)),
            operate(OPERATE, g41v2(1, 30)),
            read_back(g40v2(0, 31)),
        ],
        [[(1, 30, 31)]],
    ),
    (
        "a select alone writes nothing",
        [operate(SELECT, g41v2(0, 30)), read_back(g40v2(31))],
        [],
    ),
    (
        "direct operate without acknowledgement: remembered as sent",
        [(DIRECT_OPERATE_NR, g41v2(0, 1500), None, 0), read_back(g40v2(1400))],
        [[(0, 1500, 1400)]],
    ),
    (
        "reported once, then forgotten",
        [
            operate(DIRECT_OPERATE, g41v2(0, 1500)),
            read_back(g40v2(1400)),
            read_back(g40v2(1300)),
        ],
        [[(0, 1500, 1400)]],
    ),
    (
        "kept after an equal read: a later change is caught",
        [
            operate(DIRECT_OPERATE, g41v2(0, 1500)),
            read_back(g40v2(1500)),
            read_back(g40v2(1501)),
        ],
        [[(0, 1500, 1501)]],
    ),
    (
        "refused by an IIN2 error: not remembered",
        [operate(DIRECT_OPERATE, g41v2(0, 1500), iin=PARAMETER_ERROR), read_back(g40v2(1400))],
        [],
    ),
    (
        "refused by the echoed status: not remembered",
        [
            operate(DIRECT_OPERATE, g41v2(0, 1500), echo=g41v2(0, 1500, NOT_SUPPORTED)),
            read_back(g40v2(1400)),
        ],
        [],
    ),
    (
        "two points in one read, one changed",
        [
            operate(DIRECT_OPERATE, g41v2(0, 1500)),
            operate(DIRECT_OPERATE, g41v2(1, 7)),
            read_back(g40v2(1500, 2)),
        ],
        [[(1, 7, 2)]],
    ),
    (
        "float written, float read back equal",
        [operate(DIRECT_OPERATE, g41v3(0, 12.5)), read_back(g40v3(12.5))],
        [],
    ),
    (
        "16-bit written, float read back equal",
        [operate(DIRECT_OPERATE, g41v2(0, 12)), read_back(g40v3(12.0))],
        [],
    ),
    (
        "an index never written is not compared",
        [operate(DIRECT_OPERATE, g41v2(0, 1500)), read_back(g40v2(9, start=5))],
        [],
    ),
]


@pytest.mark.parametrize(
    ("title", "exchanges", "expected"), DNP3_READBACKS, ids=[r[0] for r in DNP3_READBACKS]
)
def test_dnp3_write_readback(title: str, exchanges: list[Dnp3Exchange], expected: Changed) -> None:
    h = Harness(make_rule(DNP3_RB, "write_readback: changed"), Dnp3Parser(), DNP3_PORT)
    session = Dnp3Session(h)
    for i, exchange in enumerate(exchanges):
        session.exchange(exchange, 1.0 + i)
    got = [[(p["index"], p["written"], p["read"]) for p in state["points"]] for state in h.states()]
    assert got == expected, title
    for state in h.states():
        assert (state["outstation"], state["table"]) == (OUTSTATION, "analog_output")
        assert state["changed"] == len(state["points"])
        assert {p["written_by"] for p in state["points"]} == {"192.0.2.10"}


def test_dnp3_read_asked_before_the_command_was_answered_is_not_compared() -> None:
    h = Harness(make_rule(DNP3_RB, "write_readback: changed"), Dnp3Parser(), DNP3_PORT)
    session = Dnp3Session(h)
    session.exchange(operate(DIRECT_OPERATE, g41v2(0, 1500)), 1.0)
    state = h.gate.state
    # The read was asked for before the command's answer: move the write after it.
    ((_, (_, write)),) = next(iter(state._points[7].values())).values.items()
    write.ts = 3.0
    session.exchange(read_back(g40v2(1400)), 2.0)
    assert h.alerts == []
    session.exchange(read_back(g40v2(1400)), 4.0)
    assert len(h.alerts) == 1


def test_dnp3_other_outstation_is_another_point() -> None:
    h = Harness(make_rule(DNP3_RB, "write_readback: changed"), Dnp3Parser(), DNP3_PORT)
    session = Dnp3Session(h)
    session.exchange(operate(DIRECT_OPERATE, g41v2(0, 1500)), 1.0)
    points = h.gate.state._points[7]
    assert list(points) == [("192.0.2.20", OUTSTATION, "analog_output")]


def test_dnp3_written_points_are_bounded_and_the_evicted_counted() -> None:
    h = Harness(make_rule(DNP3_RB, "write_readback: changed"), Dnp3Parser(), DNP3_PORT)
    state = h.gate.state
    state.max_points = 1
    session = Dnp3Session(h)
    session.exchange(operate(DIRECT_OPERATE, g41v2(0, 1500)), 1.0)
    session.exchange(operate(DIRECT_OPERATE, g41v2(1, 7)), 2.0)
    assert (state.points, state.points_evicted) == (1, 1)
    session.exchange(read_back(g40v2(1, 2)), 3.0)
    assert [[p["index"] for p in s["points"]] for s in h.states()] == [[1]]
    assert state.points == 0


def test_dnp3_parsed_objects_are_not_changed() -> None:
    h = Harness(make_rule(DNP3_RB, "write_readback: changed"), Dnp3Parser(), DNP3_PORT)
    session = Dnp3Session(h)
    seen: list[Any] = []
    match = h._match

    def keep(record: Any, ts: float) -> None:
        if record.done:  # complete: the state sees it now
            seen.append((record, [dict(p) for o in record.objects for p in o.points]))
        match(record, ts)

    h._match = keep  # type: ignore[method-assign]
    session.exchange(operate(DIRECT_OPERATE, g41v2(0, 1500)), 1.0)
    session.exchange(read_back(g40v2(1400)), 2.0)
    assert len(h.alerts) == 1
    assert len(seen) == 2
    for record, points in seen:
        assert [p for o in record.objects for p in o.points] == points
