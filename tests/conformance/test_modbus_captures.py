"""Every Modbus capture of the public corpus through the whole pipeline (../shared/corpus).

Each capture listed in the corpus INDEX.md must read to its last record without a capture
warning (the packet count is INDEX.md's "pkts" column, counted there with the standard
library) and give only Modbus records and ``modbus.*``/``stream.*`` events. The transaction
and event counts are otids' own, pinned so that a change in framing, pairing or reassembly
shows up here; the captures other tools have logs for are compared field by field in the
other ``test_modbus_*`` files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from otids.capture.readers import open_capture

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus is absent"),
]

# Captures above this size are marked slow (they still run by default): about 0.1 s each.
SLOW_BYTES = 1_000_000

# Pinned counts left out (None) for the captures that hold the Quickdraw function-code scan,
# whose first request (function 0) the probe rejects: see test_modbus_quickdraw.py.
UNPINNED = None

# capture, records (INDEX.md), modbus transactions, decoder events (name: count)
CAPTURES: list[tuple[str, int, int | None, dict[str, int] | None]] = [
    # Zeek btest traces
    ("zeek/icsnpp-modbus.analyzer.basic/trace.pcap", 100, 24, {"modbus.invalid_length": 3}),
    ("zeek/modbus.coil_parsing_big/trace.pcap", 13622, 2775, {
        # The capture lost a segment of the server's (tshark: "ACKed segment that wasn't
        # captured", frame 3149): the first response after it has no request.
        "modbus.gap": 1,
        "modbus.unsolicited_response": 1,
    }),
    ("zeek/modbus.coil_parsing_small/trace.pcap", 166, 16, {}),
    ("zeek/modbus.events/trace2.pcap", 4, 2, {
        "modbus.invalid_length": 1,
        "modbus.invalid_value": 2,
    }),
    # The three fuzz traces: their counts are checked in test_modbus_zeek.py.
    ("zeek/modbus.exception_handling/trace.pcap", 36, 21, {
        "modbus.gap": 23,
        "modbus.invalid_length": 1,
        "modbus.invalid_protocol_id": 1,
        "modbus.unsolicited_response": 5,
        "stream.bad_ack": 1,
    }),
    ("zeek/modbus.length_mismatch/trace.pcap", 2, 1, {
        "modbus.invalid_length": 1,
        "modbus.invalid_value": 3,
    }),
    ("zeek/modbus.modbus_and_non_modbus_on_port_502/trace.pcap", 86, 6, {
        "modbus.non_modbus_traffic": 6,
    }),
    ("zeek/modbus.register_parsing/trace.pcap", 6, 5, {
        "modbus.gap": 5,
        "modbus.invalid_length": 1,
        "modbus.invalid_value": 1,
        "modbus.unsolicited_response": 3,
        "stream.bad_ack": 1,
    }),
    # Arkime, Suricata
    ("arkime/modbus/input.pcap", 1237, UNPINNED, UNPINNED),
    ("suricata-verify/modbus/input.pcap", 99, 18, {
        "modbus.invalid_length": 2,
        "modbus.non_modbus_traffic": 2,
    }),
    # Digital Bond Quickdraw
    ("public/digitalbond-quickdraw/modbus_test_data_part1.pcap", 118, 20, {
        "modbus.invalid_length": 2,
        "modbus.invalid_protocol_id": 1,
        "modbus.non_modbus_traffic": 2,
        "modbus.unsolicited_response": 2,
    }),
    ("public/digitalbond-quickdraw/modbus_test_data_part2.pcap", 350, UNPINNED, UNPINNED),
    ("public/digitalbond-quickdraw/modicon_test.pcap", 191, 89, {"modbus.invalid_length": 2}),
    # EmreEkin lab captures
    ("public/emreekin-ics-pcaps/modbus/FC1-permit.pcap", 34, 9, {}),
    ("public/emreekin-ics-pcaps/modbus/IllegalFunction.pcap", 108, 21, {}),
    # Its last four requests carry transaction id 0; the server answers them with ids 1..4.
    ("public/emreekin-ics-pcaps/modbus/Modbus.pcap", 102, 55, {
        "modbus.unsolicited_response": 4,
    }),
    ("public/emreekin-ics-pcaps/modbus/ModbusFloat.pcap", 98, 18, {}),
    ("public/emreekin-ics-pcaps/modbus/ReadCoil.pcap", 83, 16, {}),
    ("public/emreekin-ics-pcaps/modbus/WriteMultipleCoil.pcap", 47, 10, {}),
    ("public/emreekin-ics-pcaps/modbus/crash.pcap", 8, 1, {}),
    ("public/emreekin-ics-pcaps/modbus/modbus-encapsulated-transport.pcap", 8, 1, {
        "modbus.invalid_length": 1,
    }),
    ("public/emreekin-ics-pcaps/modbus/modbus-mask-write-register.pcap", 8, 1, {
        "modbus.value_mismatch": 1,
    }),
    ("public/emreekin-ics-pcaps/modbus/modbus-read-write-multiple-registers.pcap", 8, 1, {}),
    ("public/emreekin-ics-pcaps/modbus/modbusAnalog.pcap", 388, 64, {}),
    # ITI ICS-Security-Tools
    # Plant1 starts mid-session: its third packet holds three responses to unseen requests.
    ("public/iti-ics-security-tools/modbus/ModbusTCP_Plant1.pcap", 15387, 7993, {
        "modbus.unsolicited_response": 3,
    }),
    ("public/iti-ics-security-tools/modbus/mb2.pcap", 13472, 1795, {
        "modbus.gap": 1,
        "modbus.unsolicited_response": 2,
    }),
    ("public/iti-ics-security-tools/modbus/modbus_test.pcap", 2257, 1146, {
        "modbus.unsolicited_response": 3,
        "modbus.value_mismatch": 1,
    }),
    # One connection polls for 14 minutes and 668 of its 2003 requests are never answered
    # (tshark): pending requests do not age out, so that crosses REQUEST_FLOOD.
    ("public/iti-ics-security-tools/modbus/modbus_test_2.pcap", 4901, 2383, {
        "modbus.flooded": 1,
        "modbus.unsolicited_response": 1,
    }),
]  # fmt: skip


def _params() -> list[Any]:
    params = []
    for name, packets, transactions, events in CAPTURES:
        path = CORPUS / name
        slow = path.is_file() and path.stat().st_size > SLOW_BYTES
        params.append(
            pytest.param(
                name,
                packets,
                transactions,
                events,
                id=name,
                marks=[pytest.mark.slow] if slow else [],
            )
        )
    return params


def test_the_table_covers_every_modbus_capture_of_the_corpus() -> None:
    """INDEX.md's Modbus captures are exactly the pcaps whose path names Modbus or Modicon."""
    found = {
        str(path.relative_to(CORPUS))
        for pattern in ("**/*.pcap", "**/*.pcapng")
        for path in CORPUS.glob(pattern)
        if "modbus" in str(path.relative_to(CORPUS)).lower() or "modicon" in path.name.lower()
    }
    assert found == {name for name, *_ in CAPTURES}


@pytest.mark.parametrize(("name", "packets", "transactions", "events"), _params())
def test_capture_reads_cleanly(
    name: str,
    packets: int,
    transactions: int | None,
    events: dict[str, int] | None,
    run_analysis: Callable[..., Any],
) -> None:
    path = CORPUS / name
    with open_capture(path) as reader:
        records = sum(1 for _ in reader)
        assert reader.warning is None
    assert records == packets

    sink = run_analysis([path])
    (stats,) = (r["stats"] for r in sink.of("stats"))
    assert stats["capture"]["packets"] == packets
    assert stats["capture"]["warnings"] == []
    # A Modbus capture gives Modbus records only, each one finished.
    assert {r["event_type"] for r in sink.records} <= {"modbus", "alert", "stats"}
    assert {r["app_proto"] for r in sink.of("modbus")} <= {"modbus"}
    assert {r["app_proto"] for r in sink.of("alert")} <= {"modbus", "failed"}
    assert all(name.split(".")[0] in ("modbus", "stream") for name in stats["decoder_events"])
    assert stats["app_layer"]["modbus"]["transactions"] == len(sink.of("modbus"))
    assert sum(st["flows"] for proto, st in stats["app_layer"].items() if proto != "modbus") == 0
    if transactions is not None:
        assert len(sink.of("modbus")) == transactions
    if events is not None:
        assert stats["decoder_events"] == events
