"""Community ID v1: the spec's published vectors, and the id on every EVE record."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otids.alerts.community_id import community_id
from otids.alerts.eve import flow_community_id
from otids.capture.flow import Flow

# (proto, source, destination, source port, destination port, seed, id): the TCP and UDP
# rows of corelight/community-id-spec baseline/baseline_deflt.json (seed 0) and
# baseline_seed1.json (seed 1), and two of Zeek's community_id_v1 test vectors.
VECTORS = [
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (6, "66.35.250.204", "128.232.110.120", 80, 34855, 0, "1:LQU9qZlK+B5F3KDmev6m5PMibrg="),
    (17, "192.168.1.52", "8.8.8.8", 54585, 53, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, 0, "1:d/FP5EW3wiY1vCndhwleRRKHowQ="),
    (
        6,
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        "2607:f8b0:400c:c03::1a",
        63943,
        25,
        0,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    (
        6,
        "2607:f8b0:400c:c03::1a",
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        25,
        63943,
        0,
        "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
    ),
    (6, "128.232.110.120", "66.35.250.204", 34855, 80, 1, "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    (17, "8.8.8.8", "192.168.1.52", 53, 54585, 1, "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    (
        6,
        "2001:470:e5bf:dead:4957:2174:e82c:4887",
        "2607:f8b0:400c:c03::1a",
        63943,
        25,
        1,
        "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
    ),
    (6, "1.2.3.4", "5.6.7.8", 1122, 3344, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
    (17, "1.2.3.4", "5.6.7.8", 1122, 3344, 0, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
]


PCAPS = Path(__file__).resolve().parents[2] / "pcaps"


def raw(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


@pytest.mark.parametrize(("proto", "src", "dst", "sport", "dport", "seed", "expected"), VECTORS)
def test_spec_vectors(
    proto: int, src: str, dst: str, sport: int, dport: int, seed: int, expected: str
) -> None:
    assert community_id(raw(src), raw(dst), proto, sport, dport, seed) == expected


def test_same_address_both_ways_orders_by_port() -> None:
    a = raw("10.0.0.1")
    assert community_id(a, a, 6, 40000, 502) == community_id(a, a, 6, 502, 40000)


def test_flow_id_is_the_client_server_tuple() -> None:
    flow = Flow(6, raw("128.232.110.120"), 34855, raw("66.35.250.204"), 80, 4, 0.0)
    assert flow_community_id(flow) == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


def test_every_eve_record_of_a_capture_carries_it(run_analysis: Callable[..., Any]) -> None:
    sink = run_analysis([PCAPS / "modbus-attack.pcap"])
    flows = [r for r in sink.records if r["event_type"] != "stats"]
    assert flows
    for record in flows:
        expected = community_id(
            raw(record["src_ip"]),
            raw(record["dest_ip"]),
            6,
            record["src_port"],
            record["dest_port"],
        )
        assert record["community_id"] == expected
