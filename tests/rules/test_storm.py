"""DNP3 unsolicited response storms (9102108, 9102116) and the state-rule sample captures.

9102108 counts unsolicited responses against the outstation's usual rate (``threshold``
``mode: baseline``); 9102116 counts those sent while the previous one still awaits the
master's confirm (``state: {unsolicited: unconfirmed}``). Both must fire on the crafted
storms and stay silent on the real opendnp3 stack's traffic and on the benchmark's DNP3
mix, where a fixed count of unsolicited responses fired.
"""

from __future__ import annotations

import importlib
import sys
from collections import Counter
from pathlib import Path

import pytest

from otids.decode.base import Direction
from otids.decode.dnp3 import Dnp3Parser
from otids.decode.dnp3.transport import encode_fragment
from otids.rules.loader import default_rules_dir, parse_rule
from otids.rules.threshold import AlertGate
from tests.conftest import PCAPS, REPO, ListSink, analyse
from tests.rules.test_state import Harness

UNCONFIRMED_RULE = default_rules_dir() / "dnp3" / "unconfirmed-unsolicited.yaml"
STORM_SID, UNCONFIRMED_SID = 9102108, 9102116
MASTER, OUTSTATION = 1, 10  # link addresses
MASTER_CONTROL, OUTSTATION_CONTROL = 0xC4, 0x44  # unconfirmed user data, DIR set / clear


def unsolicited(seq: int, confirm: bool = True) -> bytes:
    """An unsolicited response with one binary input event, from the outstation."""
    return encode_fragment(
        bytes([
            0xD0 | (0x20 if confirm else 0) | seq,  # FIR, FIN, (CON), UNS, sequence
            0x82,  # unsolicited response
            0x00, 0x00,  # IIN
            2, 1, 0x17, 1,  # g2v1 binary input event, 1-octet index prefix, count 1
            0, 0x81,  # index 0: online, on
        ]),
        OUTSTATION_CONTROL, MASTER, OUTSTATION,
    )  # fmt: skip


def confirm(seq: int) -> bytes:
    """The master's confirm of unsolicited response ``seq``."""
    return encode_fragment(
        bytes([
            0xD0 | seq,  # FIR, FIN, UNS, sequence
            0x00,  # confirm
        ]),
        MASTER_CONTROL, OUTSTATION, MASTER,
    )  # fmt: skip


def storm_harness(threshold: bool) -> Harness:
    text = UNCONFIRMED_RULE.read_text(encoding="utf-8")
    if not threshold:
        text = text.replace("threshold:", "unused:").split("unused:")[0]
    rule, problems = parse_rule(text, str(UNCONFIRMED_RULE))
    assert rule is not None, problems
    return Harness(rule, Dnp3Parser(), port=20000)


# (title, messages as "u<seq>" unsolicited, "n<seq>" unsolicited without CON, "c<seq>"
# confirm; the sequences of the unsolicited responses that pass the state)
SEQUENCES: list[tuple[str, list[str], list[int]]] = [
    ("each confirmed", ["u0", "c0", "u1", "c1", "u2", "c2"], []),
    ("none confirmed", ["u0", "u1", "u2", "u3"], [1, 2, 3]),
    ("retry of an unconfirmed one", ["u0", "u0", "c0", "u1", "c1"], [0]),
    ("confirm of another sequence", ["u0", "c5", "u1"], [1]),
    ("no confirm asked for", ["n0", "n1"], [0, 1]),
    ("confirmed late, after the next one", ["u0", "u1", "c1", "u2"], [1]),
]


@pytest.mark.parametrize(("title", "messages", "passed"), SEQUENCES, ids=[s[0] for s in SEQUENCES])
def test_unconfirmed_unsolicited(title: str, messages: list[str], passed: list[int]) -> None:
    h = storm_harness(threshold=False)
    for i, message in enumerate(messages):
        kind, seq = message[0], int(message[1:])
        if kind == "c":
            h.feed(Direction.TO_SERVER, confirm(seq), float(i))
        else:
            h.feed(Direction.TO_CLIENT, unsolicited(seq, confirm=kind == "u"), float(i))
    assert [state["sequence"] for state in h.states()] == passed, title


def test_five_unconfirmed_in_ten_seconds_make_one_storm_alert() -> None:
    h = storm_harness(threshold=True)
    for seq in range(12):  # the first follows nothing: 11 unconfirmed ones, 0.5 s apart
        h.feed(Direction.TO_CLIENT, unsolicited(seq & 0x0F), seq * 0.5)
    (alert,) = h.alerts
    assert alert.extra["count"] == 5
    assert alert.extra["threshold"]["track"] == "by_dst"
    assert alert.extra["state"]["unsolicited"] == "unconfirmed"


def test_awaiting_outstations_are_bounded() -> None:
    h = storm_harness(threshold=False)
    h.gate.state.max_unsolicited = 1
    h.feed(Direction.TO_CLIENT, unsolicited(0), 0.0)
    other = encode_fragment(
        bytes([0xF0, 0x82, 0x00, 0x00]),  # FIR FIN CON UNS seq 0, unsolicited, IIN: null
        OUTSTATION_CONTROL, MASTER, OUTSTATION + 1,
    )  # fmt: skip
    h.feed(Direction.TO_CLIENT, other, 1.0)
    assert h.gate.state.unsolicited_evicted == 1


# --- mode baseline -----------------------------------------------------------------------------

BASELINE = (
    "threshold: {track: by_dst, count: 5, seconds: 10, mode: baseline, factor: 10, learn: 600}"
)


def baseline_alerts(times: list[float]) -> list[tuple[float, int, float]]:
    """``(ts, count, usual per minute)`` of each alert of a baseline rule matching at
    ``times`` (a decoder event stands for any match)."""
    from tests.rules.test_threshold import event, flow, rule

    r, f, gate = rule(BASELINE), flow(), AlertGate()
    out = []
    for ts in times:
        out += gate.admit(r, event(ts), f, ts, "dnp3")
        out += gate.due(ts)
    return [
        (a.ts, a.extra["count"], round(a.extra["threshold"]["usual_per_minute"], 2)) for a in out
    ]


def every(start: float, stop: float, step: float) -> list[float]:
    return [start + i * step for i in range(int((stop - start) / step))]


BASELINE_CASES: list[tuple[str, list[float], list[tuple[float, int, float]]]] = [
    ("burst while learning", every(0, 300, 60) + every(300, 310, 1), []),
    ("burst after learning", every(0, 660, 60) + every(700, 710, 1), [(704.0, 5, 0.94)]),
    ("burst at the usual rate", every(0, 700, 2) + every(700, 710, 1), []),
    ("steady rate, well known", every(0, 2000, 1), []),
    (
        "one alert per window",
        every(0, 660, 60) + every(700, 720, 0.5),
        [(702.0, 5, 0.94), (712.0, 5, 2.62)],
    ),
]


@pytest.mark.parametrize(
    ("title", "times", "expected"), BASELINE_CASES, ids=[c[0] for c in BASELINE_CASES]
)
def test_baseline_mode(
    title: str, times: list[float], expected: list[tuple[float, int, float]]
) -> None:
    assert baseline_alerts(times) == expected, title


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{track: by_dst, count: 5, seconds: 10, factor: 3}", "factor applies to mode baseline"),
        ("{track: by_dst, count: 5, seconds: 10, mode: baseline, factor: 0}", "factor must be"),
        ("{track: by_dst, count: 5, seconds: 10, mode: baseline, learn: soon}", "learn must be"),
    ],
)
def test_bad_baseline_block(block: str, message: str) -> None:
    text = (
        "id: t\nsid: 7\ntitle: t\nseverity: low\n"
        f"detection:\n  selection:\n    dnp3.func: 130\nthreshold: {block}\n"
    )
    rule, problems = parse_rule(text, "t.yaml")
    assert rule is None
    assert any(message in p.message and p.line == 8 for p in problems), problems


# --- sample captures ---------------------------------------------------------------------------


def by_sid(sink: ListSink) -> Counter[int]:
    return Counter(a["alert"]["signature_id"] for a in sink.of("alert"))


# The DNP3 no-response rule a site may add (README, rules with state): not shipped, because
# every DNP3 request would then match a rule in the engine's own view (its timer starts).
DNP3_NO_RESPONSE = """\
id: site-dnp3-no-response
sid: 9900116
title: "DNP3: request with no response within 5 seconds"
severity: medium
tags: [attack.t0814, attack.t0815]
detection:
  selection:
    dnp3.uns: false
  condition: selection
state:
  no_response_within: 5s
threshold: {track: by_unit, count: 1, seconds: 60, mode: once}
"""


@pytest.fixture(scope="module")
def site_rules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("site-rules")
    (folder / "dnp3-no-response.yaml").write_text(DNP3_NO_RESPONSE, encoding="utf-8")
    return folder


# capture -> alerts expected per sid of the state rules (and the bursts' rules)
CAPTURES: dict[str, dict[int, int]] = {
    "modbus-state.pcap": {9101112: 2, 9101113: 2},
    "modbus-bursts.pcap": {9101010: 1, 9101108: 1, 9101109: 1},
    "dnp3-state.pcap": {STORM_SID: 1, UNCONFIRMED_SID: 1, 9900116: 1},
    "dnp3-opendnp3.pcap": {},
    "dnp3-udp.pcap": {},
    "dnp3-attack.pcap": {9102101: 1, 9102102: 1, 9102103: 1, 9102104: 1, 9102105: 1}
    | {9102106: 1, 9102107: 1},
    "modbus-polling.pcap": {},
}


@pytest.mark.parametrize(("name", "expected"), CAPTURES.items())
def test_sample_capture_alerts(name: str, expected: dict[int, int], site_rules: Path) -> None:
    assert by_sid(analyse([PCAPS / name], rules=[site_rules], transactions=False)) == expected


def test_benchmark_dnp3_mix_raises_no_state_alert(tmp_path: Path, site_rules: Path) -> None:
    """The mix a fixed count of unsolicited responses alerted on (8 in 10 s)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        gen_mix = importlib.import_module("gen_mix")
    finally:
        sys.path.remove(str(REPO / "bench"))
    mix = tmp_path / "mix.pcap"
    stats = gen_mix.generate(20_000, mix, seed=3, dnp3=True)
    assert stats.dnp3_messages > 1000
    alerts = by_sid(analyse([mix], rules=[site_rules], transactions=False))
    assert alerts == {}


def test_quickdraw_storm_trigger_raises_the_storm_rule_once(corpus: Path) -> None:
    """Quickdraw's trigger: ten unsolicited responses in 15 s from an outstation that sent
    three in the 37 minutes before; its other captures hold no storm."""
    quickdraw = corpus / "public" / "digitalbond-quickdraw"
    part1 = by_sid(analyse([quickdraw / "dnp3_test_data_part1.pcap"], transactions=False))
    part2 = by_sid(analyse([quickdraw / "dnp3_test_data_part2.pcap"], transactions=False))
    assert (part1[STORM_SID], part1[UNCONFIRMED_SID]) == (1, 0)
    assert (part2[STORM_SID], part2[UNCONFIRMED_SID]) == (0, 0)
