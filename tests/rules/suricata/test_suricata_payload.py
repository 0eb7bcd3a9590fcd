"""Packet rules in the pipeline: every TCP/UDP payload is checked, alerts go through the
alert gate, and flows on the ports the rules name are not bypassed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from otids.capture.flow import FlowTable
from otids.capture.packet import PROTO_TCP, PROTO_UDP, Packet
from otids.pipeline import Pipeline
from otids.rules.engine import RuleSet
from otids.rules.loader import default_rules_dir, load_rules
from otids.rules.suricata import parse_rules
from otids.rules.suricata.payload import PayloadRules
from tests.conftest import ListSink

scapy = pytest.importorskip("scapy.all")

CLIENT, SERVER = "10.1.1.1", "10.1.1.2"


def tcp_capture(path: Path, port: int, payloads: list[bytes]) -> Path:
    """A TCP connection CLIENT:40000 -> SERVER:port (handshake, then one segment per
    payload from the client)."""
    ip = scapy.IP(src=CLIENT, dst=SERVER)
    back = scapy.IP(src=SERVER, dst=CLIENT)
    seq, ack = 1000, 5000
    frames = [
        scapy.Ether() / ip / scapy.TCP(sport=40000, dport=port, flags="S", seq=seq - 1),
        scapy.Ether() / back / scapy.TCP(sport=port, dport=40000, flags="SA", seq=ack - 1, ack=seq),
        scapy.Ether() / ip / scapy.TCP(sport=40000, dport=port, flags="A", seq=seq, ack=ack),
    ]
    for data in payloads:
        frames.append(
            scapy.Ether()
            / ip
            / scapy.TCP(sport=40000, dport=port, flags="PA", seq=seq, ack=ack)
            / scapy.Raw(data)
        )
        seq += len(data)
    for i, frame in enumerate(frames):
        frame.time = 1_700_000_000 + i * 0.01
    scapy.wrpcap(str(path), frames)
    return path


def run(capture: Path, rules_text: str, tmp_path: Path) -> tuple[ListSink, Pipeline]:
    from otids.capture.readers import open_capture

    (tmp_path / "site.rules").write_text(rules_text)
    sink = ListSink()
    pipeline = Pipeline(load_rules([tmp_path / "site.rules"]), sink)
    with open_capture(capture) as reader:
        pipeline.run(reader)
    pipeline.finish()
    return sink, pipeline


def test_flows_on_rule_ports_are_not_bypassed(tmp_path: Path) -> None:
    """Port 8080 is no ICS port: its flow fails the probes and would be bypassed after its
    first segment; the rule naming the port keeps every segment in view."""
    capture = tcp_capture(tmp_path / "c.pcap", 8080, [b"hello EVIL one", b"EVIL two", b"EVIL 3"])
    rule = (
        'alert tcp any any -> any 8080 (msg:"evil"; content:"EVIL"; classtype:bad-unknown; '
        "sid:7; rev:3;)"
    )
    sink, _ = run(capture, rule, tmp_path)
    alerts = sink.of("alert")
    assert len(alerts) == 3
    first = alerts[0]
    assert (first["src_ip"], first["dest_port"], first["proto"]) == (CLIENT, 8080, "TCP")
    assert first["alert"]["signature"] == "evil"
    assert (first["alert"]["rev"], first["alert"]["category"]) == (3, "Potentially Bad Traffic")
    assert "decoder_event" not in first


def test_direction_and_threshold(tmp_path: Path) -> None:
    capture = tcp_capture(tmp_path / "c.pcap", 8080, [b"EVIL"] * 5)
    rules = (
        'alert tcp any any -> any any (msg:"to client"; flow:to_client; content:"EVIL"; sid:1;)\n'
        'alert tcp any any <> any any (msg:"limit"; content:"EVIL"; '
        "threshold: type limit, track by_src, count 2, seconds 60; sid:2;)\n"
    )
    sink, _ = run(capture, rules, tmp_path)
    assert [a["alert"]["signature_id"] for a in sink.of("alert")] == [2, 2]


def test_default_rules_need_no_packet_hook() -> None:
    ruleset = load_rules([default_rules_dir()])
    assert ruleset.packet_rules == []
    assert Pipeline(ruleset, ListSink()).payload_rules is None


def a_flow(proto: int, port: int) -> Any:
    packet = Packet(0.0, 4, bytes([10, 1, 1, 1]), bytes([10, 1, 1, 2]), proto, 40000, port, b"", 60)
    return FlowTable().lookup(packet)[0]


@pytest.mark.parametrize(
    ("header", "flow", "wanted"),
    [
        ("tcp any any -> any 502", (PROTO_TCP, 502), True),
        ("tcp any any -> any 502", (PROTO_TCP, 8080), False),
        ("tcp any any -> any 502", (PROTO_UDP, 502), False),
        ("tcp any any -> any $DNP3_PORTS", (PROTO_TCP, 20000), True),
        ("tcp any 502 <> any any", (PROTO_TCP, 502), True),
        ("tcp any any -> any any", (PROTO_TCP, 8080), True),
        ("ip any any -> any [1000:2000]", (PROTO_UDP, 1500), True),  # a range: every flow
        ("udp any any -> any !53", (PROTO_UDP, 8080), True),
    ],
)
def test_ports_kept_from_bypass(header: str, flow: tuple[int, int], wanted: bool) -> None:
    rules, _ = parse_rules(f'alert {header} (content:"x"; sid:1;)', "t.rules")
    assert PayloadRules(RuleSet(rules).packet_rules).wants(a_flow(*flow)) is wanted
