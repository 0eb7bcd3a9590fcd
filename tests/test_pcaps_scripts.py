"""Smoke tests of the sample-capture scripts (scripts/pcaps) and the benchmark generator (bench).

They check that the committed crafted captures are what the scripts make, that each crafted
exchange raises the decoder event its script announces, that the samples raise the alerts
pcaps/README.md promises, and that the benchmark mix is well-formed and reproducible.
"""

from __future__ import annotations

import importlib
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from otids.decode.base import DecoderEvent, Direction
from otids.decode.modbus import ModbusParser

REPO = Path(__file__).resolve().parents[1]
PCAPS = REPO / "pcaps"
SCRIPT_DIRS = (REPO / "scripts" / "pcaps", REPO / "bench")
PCAP_HEADER_SIZE = 24
RECORD = struct.Struct("<IIII")  # seconds, microseconds, captured length, wire length


def script(name: str) -> ModuleType:
    """Import a script module from scripts/pcaps or bench (they import their siblings)."""
    for folder in SCRIPT_DIRS:
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return importlib.import_module(name)


# script module, committed file
CRAFTED = [
    ("modbus_malformed", "modbus-malformed.pcap"),
    ("modbus_flood", "modbus-flood.pcap"),
    ("modbus_non_modbus_502", "modbus-non-modbus-502.pcap"),
    ("modbus_state", "modbus-state.pcap"),
    ("modbus_bursts", "modbus-bursts.pcap"),
    ("dnp3_attack", "dnp3-attack.pcap"),
    ("dnp3_udp", "dnp3-udp.pcap"),
    ("dnp3_malformed", "dnp3-malformed.pcap"),
    ("dnp3_state", "dnp3-state.pcap"),
    ("dnp3_readback", "dnp3-readback.pcap"),
]


@pytest.mark.parametrize(("module", "name"), CRAFTED)
def test_crafted_capture_is_reproduced_byte_for_byte(
    module: str, name: str, tmp_path: Path
) -> None:
    session = script(module).build()
    out = tmp_path / name
    script("crafted").write(out, session.packets)
    assert out.read_bytes() == (PCAPS / name).read_bytes()


def _events_by_exchange() -> list[tuple[str, str | None, list[str]]]:
    """Feed the malformed session's exchanges, in order, to one Modbus parser."""
    malformed = script("modbus_malformed")
    parser = ModbusParser()
    seen = []
    for exchange in malformed.EXCHANGES:
        records: list[Any] = []
        for segment in exchange.request:
            records += parser.feed(Direction.TO_SERVER, segment, 0.0)
        for segment in exchange.response:
            records += parser.feed(Direction.TO_CLIENT, segment, 0.0)
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


# capture -> decoder events (name: count) and rule ids its alerts must include
SAMPLE_ALERTS: list[tuple[str, dict[str, int], set[str]]] = [
    ("modbus-polling.pcap", {}, set()),
    (
        "modbus-attack.pcap",
        {},
        {
            "otids-modbus-force-listen-only",
            "otids-modbus-restart-communications",
            "otids-modbus-clear-counters",
            "otids-modbus-read-device-identification",
            "otids-modbus-report-server-id",
        },
    ),
    ("modbus-flood.pcap", {"modbus.flooded": 1}, {"otids-modbus-event-flooded"}),
    (
        "modbus-non-modbus-502.pcap",
        {"modbus.non_modbus_traffic": 1},
        {"otids-modbus-event-non-modbus-traffic"},
    ),
    (
        "modbus-malformed.pcap",
        {
            "modbus.invalid_protocol_id": 1,
            "modbus.invalid_length": 3,
            "modbus.invalid_function_code": 2,
            "modbus.invalid_exception_code": 1,
            "modbus.invalid_value": 1,
            "modbus.value_mismatch": 1,
            "modbus.unsolicited_response": 1,
        },
        set(),
    ),
]


@pytest.mark.parametrize(("name", "events", "rules"), SAMPLE_ALERTS)
def test_sample_raises_the_documented_alerts(
    name: str, events: dict[str, int], rules: set[str], run_analysis: Callable[..., Any]
) -> None:
    alerts = run_analysis([PCAPS / name]).of("alert")
    fired = {a["alert"]["rule_id"] for a in alerts}
    decoded: dict[str, int] = {}
    for a in alerts:
        if "decoder_event" in a:
            key = a["decoder_event"]["name"]
            decoded[key] = decoded.get(key, 0) + 1
    if not events and not rules:
        assert alerts == []
    assert rules <= fired
    for event, count in events.items():
        assert decoded.get(event) == count, event


def _records(path: Path) -> list[tuple[float, bytes]]:
    data = path.read_bytes()
    offset, out = PCAP_HEADER_SIZE, []
    while offset < len(data):  # each turn consumes one record
        seconds, micros, size, _ = RECORD.unpack_from(data, offset)
        offset += RECORD.size
        out.append((seconds + micros / 1e6, data[offset : offset + size]))
        offset += size
    return out


def test_mix_is_exact_deterministic_and_ordered(tmp_path: Path) -> None:
    gen_mix = script("gen_mix")
    first, second = tmp_path / "a.pcap", tmp_path / "b.pcap"
    stats = gen_mix.generate(3000, first, seed=7)
    gen_mix.generate(3000, second, seed=7)
    assert first.read_bytes() == second.read_bytes()
    records = _records(first)
    assert len(records) == stats.packets == 3000
    times = [ts for ts, _ in records]
    assert times == sorted(times) and len(set(times)) == len(times)
    # At least as many background packets as packets of Modbus connections.
    assert stats.packets - stats.modbus_packets >= stats.modbus_packets
    assert stats.modbus_adus > 0


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_mix_decodes_cleanly_in_tshark(tmp_path: Path) -> None:
    out = tmp_path / "mix.pcap"
    stats = script("gen_mix").generate(5000, out, seed=3)

    def count(display_filter: str) -> int:
        result = subprocess.run(
            ["tshark", "-r", str(out), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return len(result.stdout.split())

    assert count("modbus") == stats.modbus_adus
    assert count("_ws.malformed") == 0


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("tcpdump") is None or os.geteuid() != 0, reason="needs tcpdump and root"
)
@pytest.mark.parametrize(
    ("module", "payload_packets"),
    [("modbus_polling", 2 * 105), ("modbus_attack", 2 * (127 + 32 + 16 + 10))],
)
def test_real_stack_capture(module: str, payload_packets: int, tmp_path: Path) -> None:
    out = tmp_path / "capture.pcap"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "pcaps" / f"{module}.py"), "--out", str(out)],
        check=True,
        timeout=120,
        capture_output=True,
    )
    carrying = 0
    for _, frame in _records(out):
        ihl = (frame[14] & 0x0F) * 4
        data_offset = (frame[14 + ihl + 12] >> 4) * 4
        carrying += len(frame) > 14 + ihl + data_offset
    assert carrying == payload_packets
