"""The benchmark's DNP3 traffic (``bench/gen_mix.py --dnp3``) against tshark and otids.

Every packet the generator says carries DNP3 is one tshark dissects as DNP3, none malformed;
otids decodes the same mix without a DNP3 decoder event or an alert, and the mix stays mostly
background traffic.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
PACKETS = 20_000


@pytest.fixture(scope="module")
def mix(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    gen_mix = importlib.import_module("gen_mix")
    out = tmp_path_factory.mktemp("mix") / "mix.pcap"
    return out, gen_mix.generate(PACKETS, out, seed=3, dnp3=True)


def test_mix_is_mostly_background(mix: tuple[Path, Any]) -> None:
    _, stats = mix
    industrial = stats.modbus_packets + stats.dnp3_packets
    assert stats.packets == PACKETS and stats.packets - industrial >= industrial
    assert stats.dnp3_messages > PACKETS // 20 and stats.modbus_adus > PACKETS // 20


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_dissects_every_dnp3_packet(mix: tuple[Path, Any]) -> None:
    path, stats = mix

    def count(display_filter: str) -> int:
        result = subprocess.run(
            ["tshark", "-r", str(path), "-Y", display_filter, "-T", "fields", "-e", "frame.number"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return len(result.stdout.split())

    assert count("dnp3") == stats.dnp3_messages
    assert count("modbus") == stats.modbus_adus
    assert count("_ws.malformed") == 0
    assert count("dnp3.hdr.CRC.incorrect || dnp3.data_chunk.CRC.incorrect") == 0


def test_otids_decodes_the_mix_cleanly(
    mix: tuple[Path, Any], run_analysis: Callable[..., Any]
) -> None:
    path, _ = mix
    sink = run_analysis([path], transactions=False)
    stats = sink.of("stats")[-1]["stats"]
    assert sink.of("alert") == []
    assert not [e for e in stats["decoder_events"] if e.startswith("dnp3.")]
    functions = stats["app_layer"]["dnp3"]["functions"]
    assert {"1 read", "130 unsolicited_response", "0 confirm"} <= set(functions)
    assert {"3 select", "4 operate", "5 direct_operate"} & set(functions)
