"""Pipeline behaviours end to end: crafted captures in, JSON records out.

A small Modbus session is written with scapy, packet by packet, then altered the ways real
captures are (another port, one byte per segment, a lost segment, no handshake, a start in
the middle) and run through the whole pipeline with the shipped rules.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otids.alerts.sinks import JsonLinesSink, SinkSet
from otids.capture.readers import open_capture
from otids.pipeline import Pipeline
from otids.rules.loader import default_rules_dir, load_rules

scapy_all = pytest.importorskip("scapy.all")

Analyse = Callable[..., Any]

CLIENT, SERVER = 0, 1
CLIENT_IP, SERVER_IP = "192.0.2.10", "192.0.2.20"  # RFC 5737 documentation addresses
# Locally administered MACs. Given explicitly: without them scapy resolves them by ARP.
CLIENT_MAC, SERVER_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:14"
CLIENT_PORT = 49152
MODBUS_PORT = 502
ISN = (0x1000_0000, 0x2000_0000)  # initial sequence numbers of client and server
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
STEP = 0.001  # seconds between packets

FORCE_LISTEN_ONLY = 9101101
REPORT_SERVER_ID = 9101105
GAP = 9101010
UNSOLICITED_RESPONSE = 9101007

# (request ADU, response ADU or None): the session every test starts from.
EXCHANGES: list[tuple[bytes, bytes | None]] = [
    (
        bytes([
            0x00, 0x01,  # transaction id 1
            0x00, 0x00,  # protocol id
            0x00, 0x06,  # length
            0x01,        # unit id
            0x03,        # read holding registers
            0x00, 0x00,  # starting address 0
            0x00, 0x02,  # quantity 2
        ]),
        bytes([
            0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x01,  # MBAP: tid 1, length 7, unit 1
            0x03,        # read holding registers
            0x04,        # byte count
            0x00, 0x0A,  # register 0: 10
            0x00, 0x14,  # register 1: 20
        ]),
    ),
    (
        bytes([
            0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x01,  # MBAP: tid 2, length 2, unit 1
            0x11,        # report server id
        ]),
        bytes([
            0x00, 0x02, 0x00, 0x00, 0x00, 0x05, 0x01,  # MBAP: tid 2, length 5, unit 1
            0x11,        # report server id
            0x02,        # byte count
            0x01,        # server id
            0xFF,        # run indicator: on
        ]),
    ),
    (
        bytes([
            0x00, 0x03, 0x00, 0x00, 0x00, 0x06, 0x01,  # MBAP: tid 3, length 6, unit 1
            0x06,        # write single register
            0x00, 0x01,  # address 1
            0x00, 0x03,  # value 3
        ]),
        bytes([
            0x00, 0x03, 0x00, 0x00, 0x00, 0x06, 0x01,  # MBAP: tid 3, length 6, unit 1
            0x06,        # write single register: the echo
            0x00, 0x01,  # address 1
            0x00, 0x03,  # value 3
        ]),
    ),
    (
        bytes([
            0x00, 0x04, 0x00, 0x00, 0x00, 0x06, 0x01,  # MBAP: tid 4, length 6, unit 1
            0x01,        # read coils
            0x00, 0x64,  # starting address 100
            0x00, 0x08,  # quantity 8
        ]),
        bytes([
            0x00, 0x04, 0x00, 0x00, 0x00, 0x03, 0x01,  # MBAP: tid 4, length 3, unit 1
            0x81,        # read coils, exception
            0x02,        # illegal data address
        ]),
    ),
    (
        bytes([
            0x00, 0x05, 0x00, 0x00, 0x00, 0x06, 0x01,  # MBAP: tid 5, length 6, unit 1
            0x08,        # diagnostics
            0x00, 0x04,  # sub-function: force listen only mode
            0x00, 0x00,  # data
        ]),
        None,  # a server in listen-only mode does not answer
    ),
]  # fmt: skip


def response(index: int) -> bytes:
    """The response ADU of ``EXCHANGES[index]`` (one that has a response)."""
    adu = EXCHANGES[index][1]
    assert adu is not None
    return adu


class Session:
    """One TCP connection, packet by packet; acknowledgements follow the bytes sent."""

    def __init__(self, server_port: int = MODBUS_PORT, client_port: int = CLIENT_PORT) -> None:
        self.packets: list[Any] = []
        self.ports = (client_port, server_port)
        self.next_seq = list(ISN)
        self.time = START

    def emit(self, side: int, flags: str, payload: bytes = b"") -> None:
        other = 1 - side
        ips, macs = (CLIENT_IP, SERVER_IP), (CLIENT_MAC, SERVER_MAC)
        packet = (
            scapy_all.Ether(src=macs[side], dst=macs[other])
            / scapy_all.IP(src=ips[side], dst=ips[other])
            / scapy_all.TCP(
                sport=self.ports[side],
                dport=self.ports[other],
                flags=flags,
                seq=self.next_seq[side],
                ack=self.next_seq[other] if "A" in flags else 0,
            )
        )
        if payload:
            packet = packet / payload
        packet.time = self.time
        self.time += STEP
        self.packets.append(packet)
        self.next_seq[side] += len(payload) + ("S" in flags) + ("F" in flags)

    def open(self) -> None:
        self.emit(CLIENT, "S")
        self.emit(SERVER, "SA")
        self.emit(CLIENT, "A")

    def send(self, side: int, data: bytes, segment: int = 0) -> None:
        """``data`` in segments of ``segment`` bytes (0: one segment)."""
        size = segment or len(data)
        for start in range(0, len(data), size):
            self.emit(side, "PA", data[start : start + size])

    def close(self) -> None:
        self.emit(CLIENT, "FA")
        self.emit(SERVER, "FA")
        self.emit(CLIENT, "A")

    def index(self, payload: bytes) -> int:
        """Position of the packet carrying ``payload``."""
        found = [
            i for i, p in enumerate(self.packets) if bytes(p[scapy_all.TCP].payload) == payload
        ]
        assert len(found) == 1
        return found[0]


def session(server_port: int = MODBUS_PORT, segment: int = 0) -> Session:
    s = Session(server_port)
    s.open()
    for request, answer in EXCHANGES:
        s.send(CLIENT, request, segment)
        if answer is not None:
            s.send(SERVER, answer, segment)
    s.close()
    return s


def write(tmp_path: Path, packets: list[Any], name: str = "capture.pcap") -> Path:
    path = tmp_path / name
    scapy_all.wrpcap(str(path), packets)
    return path


def view(sink: Any) -> list[tuple[Any, ...]]:
    """What a user reads in the records, without times, flow ids and statistics."""
    out = []
    for record in sink.records:
        if record["event_type"] == "stats":
            continue
        out.append((
            record["event_type"],
            record["src_ip"],
            record["src_port"],
            record["dest_ip"],
            record["dest_port"],
            record["app_proto"],
            record.get("alert", {}).get("signature_id"),
            record.get("decoder_event", {}).get("name"),
            json.dumps(record.get("modbus"), sort_keys=True),
        ))  # fmt: skip
    return out


def transactions(sink: Any) -> list[tuple[int, bool, bool]]:
    """(transaction id, has request, has response) of each transaction record."""
    return [
        (r["modbus"]["transaction_id"], "request" in r["modbus"], "response" in r["modbus"])
        for r in sink.of("modbus")
    ]


def alerts(sink: Any) -> Counter[int]:
    return Counter(a["alert"]["signature_id"] for a in sink.of("alert"))


ALL_ANSWERED = [
    (1, True, True),
    (2, True, True),
    (3, True, True),
    (4, True, True),
    (5, True, False),
]


@pytest.fixture
def clean(tmp_path: Path, run_analysis: Analyse) -> Any:
    """The records of the unaltered session."""
    return run_analysis([write(tmp_path, session().packets, "clean.pcap")])


def test_clean_session(clean: Any) -> None:
    assert transactions(clean) == ALL_ANSWERED
    assert alerts(clean) == {REPORT_SERVER_ID: 1, FORCE_LISTEN_ONLY: 1}
    modbus = {r["modbus"]["transaction_id"]: r["modbus"] for r in clean.of("modbus")}
    assert modbus[1]["response"] == {"values": [10, 20]}
    assert modbus[4]["response"] == {"exception_code": 2, "exception": "illegal_data_address"}


def test_modbus_on_a_non_standard_port_is_found_by_the_probe(
    tmp_path: Path, run_analysis: Analyse, clean: Any
) -> None:
    sink = run_analysis([write(tmp_path, session(server_port=5020).packets)])
    assert {r["dest_port"] for r in sink.records if "dest_port" in r} == {5020}
    assert [v[:4] + v[5:] for v in view(sink)] == [v[:4] + v[5:] for v in view(clean)]


def test_other_traffic_on_a_non_standard_port_is_ignored_silently(
    tmp_path: Path, run_analysis: Analyse
) -> None:
    s = Session(server_port=8080)
    s.open()
    s.send(CLIENT, b"GET / HTTP/1.1\r\nHost: plc\r\n\r\n")
    s.send(SERVER, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    s.close()
    sink = run_analysis([write(tmp_path, s.packets)])
    assert [r["event_type"] for r in sink.records] == ["stats"]


def test_one_byte_per_segment_gives_the_same_records(
    tmp_path: Path, run_analysis: Analyse, clean: Any
) -> None:
    split = session(segment=1)
    assert len(split.packets) > 100
    sink = run_analysis([write(tmp_path, split.packets)])
    assert view(sink) == view(clean)


def test_lost_segment_gives_a_gap_and_decoding_resumes(
    tmp_path: Path, run_analysis: Analyse
) -> None:
    """The request of transaction 2 is missing from the capture; the server's ACK covers it."""
    s = session()
    del s.packets[s.index(EXCHANGES[1][0])]
    sink = run_analysis([write(tmp_path, s.packets)])
    gaps = [a for a in sink.of("alert") if a["alert"]["signature_id"] == GAP]
    assert [(g["decoder_event"]["name"], g["src_port"]) for g in gaps] == [
        ("modbus.gap", CLIENT_PORT)
    ]
    # Its response has no request; everything after the gap decodes as before.
    assert transactions(sink) == [(1, True, True), (2, False, True), *ALL_ANSWERED[2:]]
    assert alerts(sink)[UNSOLICITED_RESPONSE] == 1


def test_midstream_capture_decodes(tmp_path: Path, run_analysis: Analyse, clean: Any) -> None:
    s = session()
    sink = run_analysis([write(tmp_path, s.packets[3:])])  # no handshake
    assert view(sink) == view(clean)


def test_flow_whose_first_packet_goes_server_to_client(
    tmp_path: Path, run_analysis: Analyse
) -> None:
    """Midstream, and the first packet is the answer to a request the capture missed: the
    port makes 502 the server, the response is unsolicited, the rest decodes."""
    s = session()
    sink = run_analysis([write(tmp_path, s.packets[s.index(response(0)) :])])
    assert transactions(sink) == [(1, False, True), *ALL_ANSWERED[1:]]
    assert {(r["src_port"], r["dest_port"]) for r in sink.of("modbus")} == {
        (CLIENT_PORT, MODBUS_PORT)
    }
    (unsolicited,) = (
        a for a in sink.of("alert") if a["alert"]["signature_id"] == UNSOLICITED_RESPONSE
    )
    assert (unsolicited["src_port"], unsolicited["dest_port"]) == (MODBUS_PORT, CLIENT_PORT)


def test_midstream_start_inside_an_adu(tmp_path: Path, run_analysis: Analyse) -> None:
    s = Session()
    s.open()
    first_request = EXCHANGES[0][0]
    s.send(CLIENT, first_request[:5])
    s.send(CLIENT, first_request[5:])  # the capture starts here: 7 bytes of a 12-byte ADU
    s.send(SERVER, response(0))
    for index in (1, 2):
        s.send(CLIENT, EXCHANGES[index][0])
        s.send(SERVER, response(index))
    s.close()
    sink = run_analysis([write(tmp_path, s.packets[4:])])
    assert transactions(sink) == [(1, False, True), (2, True, True), (3, True, True)]
    assert [a["decoder_event"]["name"] for a in sink.of("alert") if "decoder_event" in a] == [
        "modbus.unsolicited_response"
    ]


def test_non_modbus_detail_names_the_modbus_port(tmp_path: Path, run_analysis: Analyse) -> None:
    """The host on port 502 opens the connection (its SYN makes it the client) and sends an
    exception response, as in Quickdraw's modbus_test_data_part1: not a Modbus request, so
    the flow is reported as non-Modbus traffic on port 502."""
    s = Session(server_port=4446, client_port=MODBUS_PORT)
    s.open()
    s.send(CLIENT, response(3))
    s.close()
    sink = run_analysis([write(tmp_path, s.packets)])
    (alert,) = sink.of("alert")
    assert alert["decoder_event"]["name"] == "modbus.non_modbus_traffic"
    assert "port 502" in alert["decoder_event"]["detail"]


class FailingSink:
    """An output that breaks on every alert (a full disk, a dead syslog receiver)."""

    def handle(self, record: dict[str, Any]) -> None:
        if record["event_type"] == "alert":
            raise OSError("no space left on device")


def run_to_json(capture: Path, out: Path, extra: list[Any]) -> SinkSet:
    warnings: list[str] = []
    json_sink = JsonLinesSink(str(out))
    sinks = SinkSet([*extra, json_sink], on_error=warnings.append)
    pipeline = Pipeline(load_rules([default_rules_dir()]), sinks, log_transactions=True)
    with open_capture(capture) as reader:
        pipeline.files += 1
        pipeline.run(reader)
    pipeline.finish()
    sinks.close()
    assert len(warnings) == (1 if extra else 0)
    return sinks


def test_a_failing_sink_does_not_stop_the_json_sink(tmp_path: Path) -> None:
    capture = write(tmp_path, session().packets)
    alone, beside = tmp_path / "alone.json", tmp_path / "beside.json"
    run_to_json(capture, alone, [])
    sinks = run_to_json(capture, beside, [FailingSink()])
    assert sinks.errors == {"FailingSink": 2}  # both alerts; the warning is given once

    def records(path: Path) -> list[dict[str, Any]]:
        out = [json.loads(line) for line in path.read_text().splitlines()]
        return [r for r in out if r["event_type"] != "stats"]

    assert records(beside) == records(alone)
    assert len(records(beside)) == 7  # five transactions, two alerts


def test_stats_counters(tmp_path: Path, run_analysis: Analyse) -> None:
    packets = session().packets
    sink = run_analysis([write(tmp_path, packets)])
    (record,) = sink.of("stats")
    stats = record["stats"]
    assert stats["final"] is True
    assert stats["capture"] == {
        "files": 1,
        "packets": len(packets),
        "bytes": sum(len(bytes(p)) for p in packets),
        "warnings": [],
    }
    assert stats["decoder"]["ip"] == len(packets)
    assert stats["flows"]["total"] == 1
    assert stats["app_layer"]["modbus"] == {
        "flows": 1,
        "transactions": 5,
        "functions": {
            "3 read_holding_registers": {"count": 1, "errors": 0},
            "17 report_server_id": {"count": 1, "errors": 0},
            "6 write_single_register": {"count": 1, "errors": 0},
            "1 read_coils": {"count": 1, "errors": 1},
            "8 diagnostics": {"count": 1, "errors": 0},
        },
    }
    assert stats["decoder_events"] == {}
    assert stats["alerts"]["total"] == 2
    assert [(r["sid"], r["count"]) for r in stats["alerts"]["by_rule"]] == [
        (FORCE_LISTEN_ONLY, 1),
        (REPORT_SERVER_ID, 1),
    ]


def test_stats_agree_with_the_records(run_analysis: Analyse) -> None:
    """On the malformed sample (one of each Modbus decoder event), the counters are the
    records counted: events, alerts per rule, transactions per function and exceptions."""
    sink = run_analysis([Path(__file__).resolve().parents[1] / "pcaps" / "modbus-malformed.pcap"])
    (record,) = sink.of("stats")
    stats = record["stats"]
    events = Counter(a["decoder_event"]["name"] for a in sink.of("alert") if "decoder_event" in a)
    assert stats["decoder_events"] == events  # every Modbus event has a shipped rule
    assert {r["sid"]: r["count"] for r in stats["alerts"]["by_rule"]} == alerts(sink)
    assert stats["alerts"]["total"] == len(sink.of("alert"))
    functions: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for r in sink.of("modbus"):
        label = f"{r['modbus']['function_code']} {r['modbus']['function']}"
        functions[label] += 1
        errors[label] += "exception_code" in r["modbus"].get("response", {})
    assert stats["app_layer"]["modbus"]["transactions"] == len(sink.of("modbus"))
    assert {
        k: v["count"] for k, v in stats["app_layer"]["modbus"]["functions"].items()
    } == functions
    assert {k: v["errors"] for k, v in stats["app_layer"]["modbus"]["functions"].items()} == errors
