"""Malformed, fuzzed and hostile DNP3 captures through the whole pipeline (../shared/corpus).

Each capture is read without a crash and raises exactly the expected decoder events, each
reported as an alert by the shipped rule for that event (``otids-dnp3-event-<name>``).
Finally every DNP3 capture of the corpus is read, and every decoder event it raises is
alerted on.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.corpus

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"
SV = "suricata-verify"
ITI = "public/iti-ics-security-tools"
OPENDNP3 = f"{ITI}/dnp3-opendnp3-conformance"

Analyse = Callable[..., Any]

# capture (relative to the corpus) -> decoder events (name: count), what makes them
CASES: list[tuple[str, dict[str, int], str]] = [
    *(
        (f"{ITI}/openics/DNP3-{name}.pcap", {"dnp3.bad_link_crc": 1}, "link status, CRC wrong")
        for name in (
            "ReadRequest",
            "RequestLink",
            "RequestLinkStatus",
            "SelectOperateRequest",
            "WriteRequest",
        )
    ),
    (
        f"{ITI}/openics/DNP3-Malformed.pcap",
        {
            "dnp3.malformed": 188,
            "dnp3.too_many_points": 51,
            "dnp3.unknown_object": 9,
            "dnp3.len_too_small": 1,
            "dnp3.non_dnp3_traffic": 1,
        },
        "197 operates with fuzzed objects, one frame of LENGTH 2",
    ),
    (
        f"{ITI}/dnp3/direct_operate_crob_malform_but_good_crc.pcap",
        {"dnp3.malformed": 1},
        "CROB shorter than its header says",
    ),
    (f"{SV}/dnp3-flood/input.pcap", {"dnp3.flooded": 1}, "33 requests, no response"),
    (
        f"{SV}/dnp3-max-points/input.pcap",
        {"dnp3.too_many_points": 1, "dnp3.malformed": 1},
        "65535 packed points declared, one octet short",
    ),
    *(
        (
            f"{SV}/dnp3-too-long-reassembly-{d}/input.pcap",
            {"dnp3.too_long_reassembly": 1},
            f"65 full transport segments in one {d}",
        )
        for d in ("request", "response")
    ),
    (
        "zeek/dnp3.dnp3-flowbuffer-overflow-assert/trace.pcap",
        {},
        "one response in many frames, transport FIN never set: nothing completes",
    ),
    (
        "zeek/dnp3.events/trace.pcap",
        {"dnp3.non_dnp3_traffic": 1, "dnp3.malformed": 6},
        "Digital Bond attacks: corrupted start octet; broadcasts with reserved qualifier 0xED",
    ),
    (
        "arkime/dnp3_synthetic/input.pcap",
        {"dnp3.too_many_points": 1, "dnp3.malformed": 2},
        "Arkime's synthetic sessions",
    ),
    (f"{OPENDNP3}/6.6.2.1/dump.pcap", {"dnp3.non_dnp3_traffic": 1}, "corrupted start octets"),
    (
        f"{OPENDNP3}/6.6.2.3/dump.pcap",
        {"dnp3.len_too_small": 2, "dnp3.non_dnp3_traffic": 2},
        "user data frames of LENGTH 5, their data outside the frame",
    ),
    (
        f"{OPENDNP3}/6.6.2.4/dump.pcap",
        {"dnp3.bad_link_crc": 1, "dnp3.len_too_small": 2, "dnp3.non_dnp3_traffic": 1},
        "first frame with a bad header CRC (the flow is still decoded)",
    ),
    (f"{OPENDNP3}/8.6.2.2/dump.pcap", {"dnp3.reserved_function": 1}, "function code 0x70"),
]


def event_alerts(sink: Any) -> collections.Counter[str]:
    """Decoder events alerted on, by name; each by the shipped rule for that event."""
    names: collections.Counter[str] = collections.Counter()
    for alert in sink.of("alert"):
        if "decoder_event" in alert:
            name = alert["decoder_event"]["name"]
            assert alert["alert"]["rule_id"] == "otids-" + name.replace(".", "-event-", 1).replace(
                "_", "-"
            )
            names[name] += 1
    return names


@pytest.mark.parametrize(
    ("capture", "events", "why"), CASES, ids=[c[0].rsplit("/", 2)[-2] + "/" + c[0].rsplit("/")[-1]
                                              for c in CASES]
)  # fmt: skip
def test_expected_events(
    capture: str, events: dict[str, int], why: str, corpus: Path, run_analysis: Analyse
) -> None:
    sink = run_analysis([corpus / capture])
    assert event_alerts(sink) == events, why
    stats = sink.of("stats")[-1]["stats"]
    assert stats["decoder_events"] == events
    assert stats["final"] is True


def test_fuzzed_operates_are_transactions(corpus: Path, run_analysis: Analyse) -> None:
    sink = run_analysis([corpus / ITI / "openics" / "DNP3-Malformed.pcap"])
    functions = sink.of("stats")[-1]["stats"]["app_layer"]["dnp3"]["functions"]
    assert functions == {"4 operate": {"count": 197, "errors": 0}}


def test_max_objects(corpus: Path, run_analysis: Analyse, monkeypatch: pytest.MonkeyPatch) -> None:
    # Suricata's test runs with max-objects 7: one response of the session carries 8.
    monkeypatch.setattr("otids.decode.dnp3.objects.MAX_OBJECTS", 7)
    sink = run_analysis([corpus / SV / "dnp3-max-objects" / "input.pcap"])
    assert event_alerts(sink) == {"dnp3.too_many_objects": 1}


def test_bad_first_frame_does_not_hide_the_flow(corpus: Path, run_analysis: Analyse) -> None:
    """An outstation drops a frame with a bad CRC; the flow is decoded all the same."""
    sink = run_analysis([corpus / OPENDNP3 / "6.6.2.4" / "dump.pcap"])
    assert sink.of("stats")[-1]["stats"]["app_layer"]["dnp3"]["flows"] == 1


DNP3_CAPTURES = (
    sorted(
        p.relative_to(CORPUS)
        for p in CORPUS.rglob("*.pcap")
        if "dnp3" in str(p.relative_to(CORPUS)).lower() and p.stat().st_size > 24
    )
    if CORPUS.is_dir()
    else []
)


@pytest.mark.slow
@pytest.mark.parametrize("capture", DNP3_CAPTURES, ids=str)
def test_every_dnp3_capture(capture: Path, corpus: Path, run_analysis: Analyse) -> None:
    """Read to the end; every decoder event alerted on; only finished transactions logged."""
    sink = run_analysis([corpus / capture])
    stats = sink.of("stats")[-1]["stats"]
    assert stats["final"] is True
    dnp3_events = {k: v for k, v in stats["decoder_events"].items() if k.startswith("dnp3.")}
    assert dict(event_alerts(sink)) == dnp3_events
    logged = {(r["flow_id"], r["tx_id"]) for r in sink.of("dnp3")}
    assert len(logged) <= stats["app_layer"]["dnp3"]["transactions"]
