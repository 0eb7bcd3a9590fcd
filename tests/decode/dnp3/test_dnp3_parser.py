"""The per-flow dissector: transactions, pairing, EVE records, rule fields, probe."""

from __future__ import annotations

from typing import Any

import pytest

from otids.decode.base import DecoderEvent, Direction, ProbeResult, Record
from otids.decode.dnp3 import SPEC, Dnp3Parser, Dnp3Transaction, probe
from otids.decode.dnp3.crc import append_crc
from otids.decode.dnp3.events import EVENTS, Dnp3Event
from otids.decode.dnp3.fields import FIELDS
from otids.decode.dnp3.functions import (
    Category,
    FunctionCode,
    category_of,
    function_name,
)
from otids.decode.dnp3.iin import Iin, iin_names
from otids.decode.dnp3.link import build_frame
from otids.decode.dnp3.transport import encode_fragment

TS, TC = Direction.TO_SERVER, Direction.TO_CLIENT
MASTER, OUTSTATION = 1, 10
REQ_LINK = 0xC4  # DIR PRM, unconfirmed user data
RESP_LINK = 0x44  # PRM, unconfirmed user data


def request(seq: int, function: int, *objects: int, fir: bool = True, fin: bool = True) -> bytes:
    """Frames of a request from the master (application control: FIR FIN . . SEQ)."""
    ac = (0x80 if fir else 0) | (0x40 if fin else 0) | seq
    return encode_fragment(bytes([ac, function, *objects]), REQ_LINK, OUTSTATION, MASTER)


def response(
    seq: int,
    *objects: int,
    function: int = 0x81,
    iin: int = 0,
    fir: bool = True,
    fin: bool = True,
    con: bool = False,
    dst: int = MASTER,
) -> bytes:
    """Frames of a response from the outstation (UNS set for unsolicited ones)."""
    ac = (0x80 if fir else 0) | (0x40 if fin else 0) | (0x20 if con else 0) | seq
    ac |= 0x10 if function == 0x82 else 0
    body = bytes([ac, function, iin >> 8, iin & 0xFF, *objects])
    return encode_fragment(body, RESP_LINK, dst, OUTSTATION)


def txs(records: list[Record]) -> list[Dnp3Transaction]:
    return [r for r in records if isinstance(r, Dnp3Transaction)]


def names(records: list[Record]) -> list[str]:
    return [r.name for r in records if isinstance(r, DecoderEvent)]


READ_CLASS_1 = (60, 2, 0x06)
BINARY_INPUTS = (1, 2, 0x00, 0, 1, 0x81, 0x01)  # g1v2 points 0-1: on, off (both online)


def test_request_then_response() -> None:
    p = Dnp3Parser()
    (tx,) = txs(p.feed(TS, request(3, 0x01, *READ_CLASS_1), 1.0))
    assert not tx.done and tx.func == FunctionCode.READ and tx.func_name == "read"
    assert tx.response is None and tx.iin is None
    (same,) = txs(p.feed(TC, response(3, *BINARY_INPUTS, iin=Iin.DEVICE_RESTART), 2.0))
    assert same is tx and tx.done
    assert tx.response_func == 0x81 and iin_names(tx.iin or 0) == ["device_restart"]
    assert [o.gv for o in tx.objects] == ["g60v2", "g1v2"]


def test_response_pairs_by_sequence_and_addresses() -> None:
    p = Dnp3Parser()
    first = txs(p.feed(TS, request(1, 0x01, *READ_CLASS_1), 1.0))[0]
    second = txs(p.feed(TS, request(2, 0x01, *READ_CLASS_1), 1.0))[0]
    assert txs(p.feed(TC, response(2), 2.0)) == [second]
    # A response to another master address does not answer the request of seq 1.
    (stray,) = txs(p.feed(TC, response(1, dst=7), 2.0))
    assert stray not in (first, second) and stray.request is None
    assert txs(p.feed(TC, response(1), 2.0)) == [first]


def test_orphan_response_is_a_transaction() -> None:
    (tx,) = txs(Dnp3Parser().feed(TC, response(9), 1.0))
    assert tx.done and tx.request is None and not tx.unsolicited
    assert tx.direction == TC and tx.func == 0x81
    assert [(ts, r["type"]) for ts, r in tx.eve_records()] == [(1.0, "response")]


def test_unsolicited_response() -> None:
    p = Dnp3Parser()
    (tx,) = txs(p.feed(TC, response(0, function=0x82, con=True, iin=0x8000), 1.0))
    assert tx.unsolicited and tx.done
    ((ts, record),) = tx.eve_records()
    assert ts == 1.0 and record["type"] == "unsolicited_response"
    assert record["application"]["control"] == {
        "fir": True, "fin": True, "con": True, "uns": True, "sequence": 0
    }  # fmt: skip
    assert record["iin"] == {"indicators": ["device_restart"]}


def test_confirm_is_its_own_transaction() -> None:
    p = Dnp3Parser()
    p.feed(TC, response(0, function=0x82, con=True), 1.0)
    (tx,) = txs(p.feed(TS, request(0, 0x00), 2.0))
    assert tx.done and tx.func_name == "confirm"
    assert tx.eve_records() == []  # Suricata logs no record for a confirm
    assert tx.eve()["request"]["application"]["function_code"] == 0


def test_no_response_functions_are_done_at_once() -> None:
    crob = (12, 1, 0x28, 1, 0, 3, 0, 0x03, 1, 100, 0, 0, 0, 100, 0, 0, 0, 0)
    (tx,) = txs(Dnp3Parser().feed(TS, request(4, 0x06, *crob), 1.0))  # direct_operate_nr
    assert tx.done and not tx.unanswered


def test_broadcast_request() -> None:
    frames = encode_fragment(bytes([0xC0, 0x0D]), REQ_LINK, 0xFFFF, MASTER)  # cold restart
    (tx,) = txs(Dnp3Parser().feed(TS, frames, 1.0))
    assert tx.broadcast and tx.done
    assert FIELDS["dnp3.broadcast"].get(tx) is True
    assert tx.eve()["broadcast"] is True


def test_multi_fragment_response() -> None:
    p = Dnp3Parser()
    (tx,) = txs(p.feed(TS, request(7, 0x01, *READ_CLASS_1), 1.0))
    part1 = response(7, *BINARY_INPUTS, fin=False)
    part2 = response(8, 30, 4, 0x00, 0, 0, 5, 0, fir=False)  # seq + 1, FIR clear
    assert txs(p.feed(TC, part1, 2.0)) == [tx] and not tx.done
    assert txs(p.feed(TC, part2, 3.0)) == [tx] and tx.done
    assert len(tx.responses) == 2
    eve = tx.eve()["response"]
    assert eve["fragments"] == 2 and eve["application"]["complete"]
    assert [o["group"] for o in eve["application"]["objects"]] == [1, 30]
    assert len(tx.eve_records()) == 3  # request, and one record per response fragment


def test_multi_fragment_request() -> None:
    p = Dnp3Parser()
    write = (50, 1, 0x07, 1, 1, 0, 0, 0, 0, 0)
    (tx,) = txs(p.feed(TS, request(2, 0x02, *write, fin=False), 1.0))
    assert txs(p.feed(TS, request(3, 0x02, 80, 1, 0x00, 7, 7, 0, fir=False), 2.0)) == [tx]
    assert [o.gv for o in tx.objects] == ["g50v1", "g80v1"]
    (other,) = txs(p.feed(TC, response(3), 3.0))  # the request is answered with seq 2
    assert other is not tx and not tx.done
    assert txs(p.feed(TC, response(2), 3.0)) == [tx] and tx.done


def test_broken_multi_fragment_message_is_closed() -> None:
    p = Dnp3Parser()
    (unsol,) = txs(p.feed(TC, response(0, function=0x82, fin=False), 1.0))
    records = p.feed(TC, response(5, function=0x82), 2.0)  # a new message, FIR set
    assert unsol.done and txs(records)[0] is unsol and len(txs(records)) == 2


def test_close_flushes_pending() -> None:
    p = Dnp3Parser()
    (tx,) = txs(p.feed(TS, request(1, 0x01, *READ_CLASS_1), 1.0))
    assert txs(p.close(2.0)) == [tx]
    assert tx.done and tx.unanswered and tx.eve()["unanswered"] is True
    assert FIELDS["dnp3.unanswered"].get(tx) is True
    assert p.close(3.0) == []


def test_retry_gives_up_the_first_request() -> None:
    p = Dnp3Parser()
    (first,) = txs(p.feed(TS, request(1, 0x01, *READ_CLASS_1), 1.0))
    records = txs(p.feed(TS, request(1, 0x01, *READ_CLASS_1), 2.0))
    assert records[0] is first and first.done and first.unanswered
    assert txs(p.feed(TC, response(1), 3.0)) == [records[1]]


def test_frames_split_and_batched() -> None:
    stream = b"".join(
        request(seq, 0x01, *READ_CLASS_1) + response(seq, *BINARY_INPUTS) for seq in range(16)
    )
    for chunk in (1, 7, 100, len(stream)):
        p = Dnp3Parser()
        records: list[Record] = []
        for i in range(0, len(stream), chunk):
            # Both directions in one byte stream is not TCP, but sorts frames the same way:
            # the direction only keys the buffers; requests and responses pair by address.
            records += p.feed(TS, stream[i : i + chunk], 1.0)
        done = {id(tx) for tx in txs(records) if tx.done}
        assert len(done) == 16 and names(records) == []


def test_udp_datagram_with_several_frames() -> None:
    p = Dnp3Parser(datagram=True)
    datagram = request(1, 0x01, *READ_CLASS_1) + request(2, 0x01, *READ_CLASS_1)
    assert len(txs(p.feed(TS, datagram, 1.0))) == 2
    # Transport reassembly spans datagrams.
    long_write = bytes([0xC3, 0x02, 110, 200, 0x00, 0, 0]) + bytes(200) + bytes([60, 1, 6] * 30)
    frames = encode_fragment(long_write, REQ_LINK, OUTSTATION, MASTER)
    cut = 292  # the first full frame
    assert txs(p.feed(TS, frames[:cut], 2.0)) == []
    (tx,) = txs(p.feed(TS, frames[cut:], 3.0))
    assert tx.request is not None and len(tx.request.data) == len(long_write)


def test_gap_resynchronises() -> None:
    p = Dnp3Parser()
    frames = request(1, 0x01, *READ_CLASS_1)
    p.feed(TS, frames[:12], 1.0)
    assert names(p.gap(TS, 2.0)) == ["dnp3.gap"]
    assert len(txs(p.feed(TS, frames, 3.0))) == 1


def test_eve_record_shape() -> None:
    p = Dnp3Parser()
    (tx,) = txs(p.feed(TS, request(3, 0x01, *READ_CLASS_1), 1.0))
    p.feed(TC, response(3, *BINARY_INPUTS, iin=0x1002), 2.0)
    (req_ts, req), (resp_ts, resp) = tx.eve_records()
    assert (req_ts, resp_ts) == (1.0, 2.0)  # each record has its own message's time
    assert req == {
        "type": "request",
        "control": {"dir": True, "pri": True, "fcb": False, "fcv": False, "function_code": 4},
        "src": 1,
        "dst": 10,
        "application": {
            "control": {"fir": True, "fin": True, "con": False, "uns": False, "sequence": 3},
            "function_code": 1,
            "objects": [
                {"group": 60, "variation": 2, "qualifier": 6, "prefix_code": 0,
                 "range_code": 6, "start": 0, "stop": 0, "count": 0}
            ],
            "complete": True,
        },
    }  # fmt: skip
    assert resp["type"] == "response" and resp["control"]["dir"] is False
    assert resp["iin"] == {"indicators": ["need_time", "object_unknown"]}
    (obj,) = resp["application"]["objects"]
    assert obj["points"][0] == {
        "prefix": 0, "index": 0, "online": 1, "restart": 0, "comm_lost": 0,
        "remote_forced": 0, "local_forced": 0, "chatter_filter": 0, "reserved": 0, "state": 1,
    }  # fmt: skip
    assert tx.eve() == {"request": req, "response": resp}


def field_values(tx: Dnp3Transaction) -> dict[str, Any]:
    return {name: spec.get(tx) for name, spec in FIELDS.items()}


def test_fields() -> None:
    p = Dnp3Parser()
    crob = (12, 1, 0x28, 1, 0, 3, 0, 0x03, 1, 100, 0, 0, 0, 100, 0, 0, 0, 0)
    (tx,) = txs(p.feed(TS, request(5, 0x03, *crob), 1.0))
    p.feed(TC, response(5, *crob, iin=0x8000), 2.0)
    values = field_values(tx)
    data = values.pop("dnp3.data")
    assert values == {
        "dnp3.func": 3,
        "dnp3.func_name": "select",
        "dnp3.response_func": 129,
        "dnp3.iin": ["device_restart"],
        "dnp3.src": 1,
        "dnp3.dst": 10,
        "dnp3.uns": False,
        "dnp3.broadcast": False,
        "dnp3.unanswered": False,
        "dnp3.objects.group": [12, 12],
        "dnp3.objects.variation": [1, 1],
        "dnp3.objects.gv": ["g12v1", "g12v1"],
        "dnp3.objects.qualifier": [0x28, 0x28],
        "dnp3.objects.count": 2,
        "dnp3.points.index": [3, 3],
    }
    assert data[0] == bytes([0xC5, 0x03, *crob]) and data[1][:2] == b"\xc5\x81"
    assert SPEC.index_field in FIELDS


def test_spec() -> None:
    assert SPEC.name == "dnp3" and SPEC.tcp_ports == SPEC.udp_ports == frozenset({20000})
    assert SPEC.port_mismatch_event in EVENTS
    assert isinstance(SPEC.parser_factory(True), Dnp3Parser)
    assert set(EVENTS) == {e.value for e in Dnp3Event}
    assert all(name.startswith("dnp3.") for name in FIELDS)


@pytest.mark.parametrize(
    ("data", "result"),
    [
        (request(0, 0x01, *READ_CLASS_1), ProbeResult.MATCH),
        (build_frame(0x0B, 1, 10), ProbeResult.MATCH),  # link status
        (b"", ProbeResult.NEED_MORE),
        (b"\x05", ProbeResult.NEED_MORE),
        (b"\x05\x64\x05", ProbeResult.NEED_MORE),
        (b"\x05\x65", ProbeResult.NO_MATCH),
        (b"GET / HTTP/1.1\r\n", ProbeResult.NO_MATCH),
        # A bad header CRC is not enough to decide: a valid header may follow.
        (request(0, 0x01)[:8] + b"\x00\x00", ProbeResult.NEED_MORE),
        (b"\x05\x64\x04\xc9\x0a\x00\x01\x00" + b"\x00\x00", ProbeResult.NEED_MORE),
        # Length 4 under a valid CRC: DNP3, malformed (the dissector says len_too_small).
        (append_crc(b"\x05\x64\x04\xc9\x0a\x00\x01\x00"), ProbeResult.MATCH),
        (request(0, 0x01)[:8] + b"\x00\x00" + request(0, 0x01), ProbeResult.MATCH),
        (b"\x05\x64\x04\xc9\x0a\x00\x01\x00\x00\x00GET / HTTP/1.1", ProbeResult.NEED_MORE),
    ],
)
def test_probe(data: bytes, result: ProbeResult) -> None:
    assert probe(data, TS) is result


@pytest.mark.parametrize(
    ("code", "name", "category"),
    [
        (0x00, "confirm", Category.REQUEST),
        (0x06, "direct_operate_nr", Category.REQUEST),
        (0x17, "delay_measure", Category.REQUEST),
        (0x21, "authenticate_err", Category.REQUEST),
        (0x22, "reserved_34", Category.RESERVED),
        (0x80, "reserved_128", Category.RESERVED),
        (0x81, "response", Category.RESPONSE),
        (0x82, "unsolicited_response", Category.RESPONSE),
        (0x83, "authenticate_resp", Category.RESPONSE),
        (0xFF, "reserved_255", Category.RESERVED),
    ],
)
def test_function_codes(code: int, name: str, category: Category) -> None:
    assert function_name(code) == name and category_of(code) is category


def test_function_code_enum_is_complete() -> None:
    assert [c.value for c in FunctionCode] == [*range(0x22), 0x81, 0x82, 0x83]


def test_iin_names() -> None:
    assert iin_names(0) == []
    assert iin_names(0xFFFF) == [
        "all_stations", "class_1_events", "class_2_events", "class_3_events", "need_time",
        "local_control", "device_trouble", "device_restart", "no_func_code_support",
        "object_unknown", "parameter_error", "event_buffer_overflow", "already_executing",
        "config_corrupt", "reserved_2", "reserved_1",
    ]  # fmt: skip


# -- the cache of parsed objects -----------------------------------------------------------


def test_repeated_fragments_share_their_parsed_objects() -> None:
    from otids.decode.dnp3 import parser as dnp3_parser
    from otids.decode.dnp3.objects import parse_objects

    p = Dnp3Parser()
    read = (0x3C, 0x02, 0x06, 0x3C, 0x03, 0x06)  # class 1 and 2 data
    values = (0x01, 0x02, 0x00, 0x00, 0x01, 0x81, 0x01)  # g1v2, points 0-1
    first = txs(p.feed(TS, request(1, 0x01, *read), 0.0))[0]
    txs(p.feed(TC, response(1, *values), 0.1))
    # Another sequence number (application control octet), the same octets after it.
    second = txs(p.feed(TS, request(2, 0x01, *read), 0.2))[0]
    txs(p.feed(TC, response(2, *values), 0.3))
    assert second.requests[0].objects is first.requests[0].objects
    assert second.responses[0].objects is first.responses[0].objects
    fresh = parse_objects(second.responses[0].data, 4, False)
    assert [o.eve() for o in second.responses[0].objects] == [o.eve() for o in fresh.objects]
    assert second.responses[0].objects[0].points[0]["state"] == 1
    assert len(dnp3_parser._request_objects) <= dnp3_parser.OBJECTS_CACHE_SIZE


def test_objects_cache_stays_bounded() -> None:
    from otids.decode.dnp3 import parser as dnp3_parser

    cache = dnp3_parser._response_objects
    p = Dnp3Parser()
    for n in range(dnp3_parser.OBJECTS_CACHE_SIZE * 2):  # distinct responses: one per value
        p.feed(TC, response(n & 0x0F, 0x1E, 0x02, 0x00, 0x00, 0x00, 0x01, n & 0xFF, n >> 8), n)
        assert len(cache) <= dnp3_parser.OBJECTS_CACHE_SIZE
    points = dnp3_parser.OBJECTS_CACHE_POINTS + 1
    many = (0x01, 0x01, 0x00, 0x00, points - 1, *bytes(-(-points // 8)))  # g1v1 packed
    (tx,) = txs(p.feed(TC, response(0, *many), 1000.0))
    assert tx.responses[0].points == points
    assert tx.responses[0].data[1:] not in cache  # too many points to keep
