"""The shipped DNP3 rules (rules/dnp3) and the project's DNP3 sample captures (pcaps/dnp3-*).

* every DNP3 decoder event has exactly one rule, sid 9102001.., and that rule fires on it;
* each request detection rule (sids 9102101-9102107) fires on the request it is about, and
  on nothing else of a table of requests;
* the crafted captures are what their scripts make, byte for byte; the malformed capture
  raises each decoder event (so each event rule) once, the attack capture each request
  detection rule once, and nothing else; the normal captures (a real opendnp3 master and
  outstation over TCP, a crafted UDP conversation) raise no alert at all.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from otids.capture.flow import FlowTable
from otids.capture.packet import PROTO_TCP, Packet
from otids.decode.base import DecoderEvent, Direction
from otids.decode.dnp3 import Dnp3Parser, Dnp3Transaction
from otids.decode.dnp3.events import EVENTS, Dnp3Event
from otids.decode.dnp3.transport import encode_fragment
from otids.rules.engine import Rule, RuleSet
from otids.rules.loader import load_rules

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "rules" / "dnp3"
PCAPS = REPO / "pcaps"
SCRIPTS = REPO / "scripts" / "pcaps"
EVENT_SIDS = range(9102001, 9102100)
# The rules on one request's function or address; the later ones (Quickdraw's unauthorized
# masters, scans and time change) are tested in test_dnp3_quickdraw_rules.py.
REQUEST_SIDS = range(9102101, 9102108)

Analyse = Callable[..., Any]


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return load_rules([RULES])


def a_flow() -> Any:
    """A TCP flow 192.0.2.10:49152 -> 192.0.2.20:20000."""
    packet = Packet(
        0.0, 4, bytes([192, 0, 2, 10]), bytes([192, 0, 2, 20]), PROTO_TCP, 49152, 20000, b"", 54
    )
    return FlowTable().lookup(packet)[0]


# -- rule files --------------------------------------------------------------------------


def test_rule_files_are_consistent(rules: RuleSet) -> None:
    loaded = [*rules.rules, *rules.disabled]  # disabled: naming $dnp3_masters, not defined
    assert len(loaded) == len(list(RULES.glob("*.yaml")))
    assert all(r.id.startswith("otids-dnp3-") and r.title.startswith("DNP3: ") for r in loaded)
    for rule in loaded:
        assert rule.description.strip(), rule.id
        # Every ATT&CK tag is a technique id of ATT&CK for ICS (T08xx).
        assert all(re.fullmatch(r"T08\d\d", t) for t in rule.attack), rule.id


def test_every_event_has_one_rule(rules: RuleSet) -> None:
    by_event = {
        r.raw["detection"]["selection"]["event"]: r for r in rules.rules if r.kind == "event"
    }
    assert set(by_event) == set(EVENTS)
    assert sorted(r.sid for r in by_event.values()) == list(EVENT_SIDS[: len(EVENTS)])
    for name, rule in by_event.items():
        assert rule.id == "otids-" + name.replace(".", "-event-", 1).replace("_", "-")


@pytest.mark.parametrize("event", list(Dnp3Event))
def test_event_rule_fires_on_its_event(event: Dnp3Event, rules: RuleSet) -> None:
    hits = rules.match(DecoderEvent(event, Direction.TO_SERVER, 0.0, "detail"), a_flow())
    assert [r.raw["detection"]["selection"]["event"] for r in hits] == [event]


def test_detection_rules(rules: RuleSet) -> None:
    detections = {r.id: r for r in rules.rules if r.sid in REQUEST_SIDS}
    assert sorted(r.sid for r in detections.values()) == list(REQUEST_SIDS)
    assert {r.id: r.attack for r in detections.values()} == {
        "otids-dnp3-cold-restart": ["T0816", "T0855"],
        "otids-dnp3-warm-restart": ["T0816", "T0855"],
        "otids-dnp3-stop-application": ["T0881", "T0855"],
        "otids-dnp3-disable-unsolicited": ["T0804", "T0855"],
        "otids-dnp3-file-operations": ["T0867", "T0843", "T0882"],
        "otids-dnp3-broadcast": ["T0855"],
        "otids-dnp3-delete-file": ["T0809", "T0872"],
    }


# (title, application fragment of the request, destination, rules it must raise,
# named without their "" prefix)
REQUESTS: list[tuple[str, bytes, int, set[str]]] = [
    ("read class 0", bytes([0xC0, 0x01, 60, 1, 0x06]), 10, set()),
    ("cold restart", bytes([0xC1, 0x0D]), 10, {"cold-restart"}),
    ("warm restart", bytes([0xC2, 0x0E]), 10, {"warm-restart"}),
    ("stop application, all", bytes([0xC3, 0x12, 90, 1, 0x06]), 10, {"stop-application"}),
    ("start application", bytes([0xC3, 0x11, 90, 1, 0x06]), 10, set()),
    ("disable unsolicited", bytes([0xC4, 0x15, 60, 2, 0x06]), 10, {"disable-unsolicited"}),
    ("enable unsolicited", bytes([0xC4, 0x14, 60, 2, 0x06]), 10, set()),
    ("open file", bytes([0xC5, 0x19]), 10, {"file-operations"}),
    ("get file information", bytes([0xC5, 0x1C]), 10, {"file-operations"}),
    ("authenticate file", bytes([0xC5, 0x1D]), 10, {"file-operations"}),
    ("close file", bytes([0xC5, 0x1A]), 10, set()),
    ("abort file", bytes([0xC5, 0x1E]), 10, set()),
    ("delete file", bytes([0xC6, 0x1B]), 10, {"delete-file"}),
    ("read, broadcast", bytes([0xC7, 0x01, 60, 1, 0x06]), 0xFFFF, {"broadcast"}),
    ("read, 'self' address", bytes([0xC7, 0x01, 60, 1, 0x06]), 0xFFFC, {"broadcast"}),
    ("read, reserved address", bytes([0xC7, 0x01, 60, 1, 0x06]), 0xFFF0, set()),
    (
        "cold restart, broadcast",
        bytes([0xC8, 0x0D]),
        0xFFFD,
        {"cold-restart", "broadcast"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("title", "fragment", "dst", "expected"), REQUESTS)
def test_detection_rule_fires_on_its_request(
    title: str, fragment: bytes, dst: int, expected: set[str], rules: RuleSet
) -> None:
    records = Dnp3Parser().feed(Direction.TO_SERVER, encode_fragment(fragment, 0xC4, dst, 1), 1.0)
    (tx,) = {id(r): r for r in records if isinstance(r, Dnp3Transaction)}.values()
    flow = a_flow()
    hits: list[Rule] = rules.match(tx, flow)
    # A state rule's match only hands the transaction to its state (tested in test_state.py).
    fired = {
        r.id.removeprefix("otids-dnp3-")
        for r in hits
        if r.kind == "transaction" and r.state is None
    }
    assert fired == expected, title


# -- sample captures ------------------------------------------------------------------------


def script(name: str) -> ModuleType:
    """Import a script module of scripts/pcaps (they import their siblings)."""
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))
    return importlib.import_module(name)


def alerts_by_rule(sink: Any) -> Counter[str]:
    return Counter(a["alert"]["rule_id"] for a in sink.of("alert"))


def test_attack_capture_raises_each_detection_rule(run_analysis: Analyse) -> None:
    sink = run_analysis([PCAPS / "dnp3-attack.pcap"])
    expected = {e.rule for e in script("dnp3_attack").EXCHANGES if e.rule is not None}
    assert expected == {r.id for r in load_rules([RULES]).rules if r.sid in REQUEST_SIDS}
    assert alerts_by_rule(sink) == dict.fromkeys(expected, 1)
    stats = sink.of("stats")[-1]["stats"]
    assert stats["decoder_events"] == {}
    assert stats["app_layer"]["dnp3"]["transactions"] == 10


def _events_by_exchange() -> list[tuple[str, str | None, list[str]]]:
    """Feed the malformed session's exchanges, in order, to one DNP3 parser (a lost request
    is a gap)."""
    parser = Dnp3Parser()
    seen = []
    for exchange in script("dnp3_malformed").EXCHANGES:
        if exchange.lost:
            records = parser.gap(Direction.TO_SERVER, 0.0)
        else:
            records = parser.feed(Direction.TO_SERVER, exchange.request, 0.0)
        if exchange.response is not None:
            records += parser.feed(Direction.TO_CLIENT, exchange.response, 0.0)
        names = [r.name for r in records if isinstance(r, DecoderEvent)]
        seen.append((exchange.title, exchange.event, names))
    return seen


@pytest.mark.parametrize(
    ("title", "expected", "names"), _events_by_exchange(), ids=lambda v: str(v)[:40]
)
def test_malformed_exchange_raises_its_event(
    title: str, expected: str | None, names: list[str]
) -> None:
    assert names == ([expected] if expected else []), title


def test_malformed_capture_raises_each_event_rule_once(run_analysis: Analyse) -> None:
    sink = run_analysis([PCAPS / "dnp3-malformed.pcap"])
    event_rules = {r.id for r in load_rules([RULES]).rules if r.kind == "event"}
    assert alerts_by_rule(sink) == dict.fromkeys(event_rules, 1)
    assert sink.of("stats")[-1]["stats"]["decoder_events"] == dict.fromkeys(EVENTS, 1)


# capture -> transactions by function (the console's labels): what the capture holds
NORMAL_CAPTURES: list[tuple[str, dict[str, int]]] = [
    (
        "dnp3-opendnp3.pcap",
        {
            "0 confirm": 10,
            "1 read": 6,  # 3 integrity polls (2 at start-up), 3 event polls
            "2 write": 1,  # clear device restart
            "3 select": 2,
            "4 operate": 2,
            "5 direct_operate": 2,
            "20 enable_unsolicited": 1,
            "130 unsolicited_response": 7,  # the start-up one, then 3 x binary and analog
        },
    ),
    (
        "dnp3-udp.pcap",
        {
            "0 confirm": 3,
            "1 read": 1,  # one integrity poll, answered in 2 fragments
            "3 select": 1,
            "4 operate": 1,
            "130 unsolicited_response": 1,
        },
    ),
]


@pytest.mark.parametrize(("name", "functions"), NORMAL_CAPTURES)
def test_normal_capture_raises_no_alert(
    name: str, functions: dict[str, int], run_analysis: Analyse
) -> None:
    sink = run_analysis([PCAPS / name])
    assert sink.of("alert") == []
    stats = sink.of("stats")[-1]["stats"]
    assert stats["decoder_events"] == {}
    dnp3 = stats["app_layer"]["dnp3"]
    assert dnp3["flows"] == 1
    assert {label: row["count"] for label, row in dnp3["functions"].items()} == functions
