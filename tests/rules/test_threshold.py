"""Thresholds, suppression, rate limits and undefined variables: validation and semantics."""

from __future__ import annotations

from typing import Any

import pytest

from otids.capture.flow import Flow, FlowTable
from otids.capture.packet import PROTO_TCP, TH_ACK, Packet
from otids.decode.base import DecoderEvent, Direction
from otids.rules.engine import Rule, RuleSet
from otids.rules.loader import parse_rule
from otids.rules.threshold import AlertGate

_TABLE = FlowTable()


def flow(client: str = "10.0.0.5", server: str = "10.0.0.9", port: int = 40000) -> Flow:
    """The flow ``client:port`` -> ``server:502``."""
    pkt = Packet(
        0.0,
        4,
        bytes(map(int, client.split("."))),
        bytes(map(int, server.split("."))),
        PROTO_TCP,
        port,
        502,
        b"",
        60,
        TH_ACK,
    )
    return _TABLE.lookup(pkt)[0]


def rule(extra: str = "", detection: str = "event: modbus.invalid_length") -> Rule:
    text = (
        "id: t\nsid: 7\ntitle: t\nseverity: low\n"
        f"detection:\n  selection:\n    {detection}\n  condition: selection\n" + extra
    )
    parsed, problems = parse_rule(text, "t.yaml", {"plcs": ["10.0.0.9"]})
    assert parsed is not None, problems
    return parsed


def event(ts: float) -> DecoderEvent:
    return DecoderEvent("modbus.invalid_length", Direction.TO_SERVER, ts, "test")


def run(r: Rule, matches: list[tuple[float, Flow]], gate: AlertGate | None = None) -> list[Any]:
    """``(ts, extra)`` of every alert written for these matches, the end's included."""
    gate = gate or AlertGate()
    out = []
    for ts, f in matches:
        out += gate.admit(r, event(ts), f, ts, "modbus")
        out += gate.due(ts)
    out += gate.drain()
    return [(a.ts, a.extra.get("count")) for a in out]


A, B = flow("10.0.0.5"), flow("10.0.0.6")


@pytest.mark.parametrize(
    ("threshold", "matches", "alerts"),
    [
        # once: one alert at the count-th match of a key's window, carrying the count
        ("by_src, count: 3, seconds: 10", [0, 1, 2, 3, 4], [(2, 3)]),
        # a new window opens at the first match after the previous one ended
        ("by_src, count: 2, seconds: 10", [0, 1, 5, 10, 11], [(1, 2), (11, 2)]),
        # every (detection_filter): every match from the count-th on
        ("by_src, count: 3, seconds: 10, mode: every", [0, 1, 2, 3], [(2, 3), (3, 4)]),
        # limit: the first count matches of the window
        ("by_src, count: 2, seconds: 10, mode: limit", [0, 1, 2, 3], [(0, 1), (1, 2)]),
        # nth (Suricata type threshold): every count-th match of the window
        ("by_src, count: 2, seconds: 10, mode: nth", [0, 1, 2, 3, 4], [(1, 2), (3, 4)]),
        # by_rule: all sources share one key
        ("by_rule, count: 2, seconds: 10", [0, 1], [(1, 2)]),
    ],
)
def test_threshold_modes(threshold: str, matches: list[float], alerts: list[Any]) -> None:
    r = rule(f"threshold: {{track: {threshold}}}\n")
    # two sources, interleaved: by_src counts each on its own
    both = [(t, A) for t in matches] + [(t + 0.5, B) for t in matches]
    both.sort(key=lambda m: m[0])
    got = run(r, both)
    if "by_rule" in threshold:
        assert got == [(0.5, 2)]
    else:
        assert got == sorted(alerts + [(t + 0.5, n) for t, n in alerts])


def test_threshold_alert_names_its_key() -> None:
    r = rule("threshold: {track: by_pair, count: 1, seconds: 5}\n")
    [alert] = AlertGate().admit(r, event(0.0), A, 0.0, "modbus")
    assert alert.extra == {
        "count": 1,
        "threshold": {
            "track": "by_pair",
            "key": ["10.0.0.5", "10.0.0.9"],
            "count": 1,
            "seconds": 5.0,
            "mode": "once",
        },
    }


def test_suppress_drops_before_counting() -> None:
    r = rule(
        "suppress:\n  - {track: by_src, ip: 10.0.0.2/31}\n  - {track: by_dst, ip: [10.0.9.9]}\n"
    )
    assert run(r, [(0, A), (1, flow("10.0.0.3")), (2, B)]) == [(0, None), (2, None)]
    on_plc = rule("suppress:\n  - {track: by_either, ip: $plcs}\n")
    assert run(on_plc, [(0, A), (1, B)]) == []


def test_rate_limit_folds_a_storm_into_one_alert_with_a_count() -> None:
    r = rule("rate_limit: {alerts: 2, seconds: 10}\n")
    storm = [(t / 10, A) for t in range(1000)]  # 1000 matches in 100 s
    gate = AlertGate()
    got = run(r, storm, gate)
    # each 10 s window: 2 alerts, then one summary counting the 98 folded matches
    assert len(got) == 30
    assert got[:3] == [(0.0, None), (0.1, None), (9.9, 98)]
    assert sum(n or 1 for _, n in got) == 1000
    assert gate.folded == 980


def test_summary_written_when_the_window_passes() -> None:
    r = rule("rate_limit: {alerts: 1, seconds: 10}\n")
    gate = AlertGate()
    assert len(gate.admit(r, event(0.0), A, 0.0, "modbus")) == 1
    assert gate.admit(r, event(1.0), A, 1.0, "modbus") == []
    assert gate.due(5.0) == []
    [summary] = gate.due(10.0)
    assert summary.ts == 1.0
    assert summary.extra["count"] == 1
    assert summary.extra["rate_limit"]["first_timestamp"].startswith("1970-01-01T00:00:01")
    assert gate.drain() == []


def test_threshold_state_is_bounded() -> None:
    r = rule("threshold: {track: by_src, count: 2, seconds: 100}\n")
    gate = AlertGate(max_keys=2)
    a, b, c = flow("10.0.1.1"), flow("10.0.1.2"), flow("10.0.1.3")
    for ts, f in [(0, a), (1, b), (2, c)]:  # c evicts a, the oldest
        gate.admit(r, event(ts), f, ts, "modbus")
    assert gate.admit(r, event(3), a, 3, "modbus") == []  # a counts again from 1
    assert len(gate.admit(r, event(4), c, 4, "modbus")) == 1


@pytest.mark.parametrize(
    ("extra", "line", "reason"),
    [
        ("threshold: {track: by_srcc, count: 2, seconds: 1}\n", 8, "track must be one of"),
        ("threshold:\n  track: by_src\n  count: 0\n  seconds: 1\n", 10, "positive integer"),
        ("threshold:\n  track: by_src\n  count: 2\n  seconds: -1\n", 11, "positive number"),
        ("threshold:\n  track: by_src\n  count: 2\n  seconds: 1\n  mode: all\n", 12, "mode"),
        ("threshold:\n  track: by_src\n  count: 2\n  secs: 1\n", 11, "unknown threshold key"),
        ("threshold: 5\n", 8, "threshold must be a map"),
        ("suppress:\n  - {track: by_src, ip: 10.0.0.300}\n", 9, "not an address"),
        ("suppress:\n  - {track: by_pair, ip: 10.0.0.1}\n", 9, "track must be one of"),
        ("suppress: {track: by_src}\n", 8, "must be a list"),
        ("rate_limit:\n  alerts: 0\n", 9, "positive integer"),
        ("tests:\n  - {capture: x.pcap}\n", 9, "alerts"),
        ("tests:\n  - capture: x.pcap\n    alerts: 1\n    count: 2\n", 11, "unknown test key"),
    ],
)
def test_block_problems_name_the_line(extra: str, line: int, reason: str) -> None:
    text = (
        "id: t\nsid: 7\ntitle: t\nseverity: low\n"
        "detection:\n  selection:\n    modbus.function: 1\n" + extra
    )
    parsed, problems = parse_rule(text, "r.yaml")
    assert parsed is None
    assert any(p.line == line and reason in p.message for p in problems), problems


@pytest.mark.parametrize(
    "extra",
    [
        "",  # the variable in the detection
        "suppress:\n  - {track: by_src, ip: $hmis}\n",
    ],
)
def test_undefined_variable_disables_the_rule(extra: str) -> None:
    detection = "modbus.function: 6\n  ok:\n    src_ip: $clients\n  condition: selection and ok"
    text = (
        "id: t\nsid: 7\ntitle: t\nseverity: low\n"
        f"detection:\n  selection:\n    {detection}\n" + extra
    )
    parsed, problems = parse_rule(text, "r.yaml", {"clients": ["10.0.0.5"]} if extra else {})
    assert parsed is not None and not problems
    assert parsed.missing_vars == ({"hmis"} if extra else {"clients"})
    rules = RuleSet([parsed])
    assert rules.rules == [] and rules.disabled == [parsed]
    assert rules.missing_vars() == {"hmis" if extra else "clients": ["t"]}


def test_undefined_variable_does_not_hide_other_problems() -> None:
    text = (
        "id: t\nsid: 7\ntitle: t\nseverity: loud\ndetection:\n  selection:\n    src_ip: $clients\n"
    )
    parsed, problems = parse_rule(text, "r.yaml")
    assert parsed is None
    assert [p.line for p in problems] == [4]
