"""``otids live`` on the SPAN port of a plant in network namespaces (see plant.py), with real
pymodbus and opendnp3 stacks and three attacks; needs root and iproute2."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otids.capture.readers import open_capture
from tests.live.plant import SPAN, Plant, address

REPO = Path(__file__).resolve().parents[2]
ACTORS = Path(__file__).resolve().parent / "actors"
OTIDS = REPO / ".venv" / "bin" / "otids"
PYTHON = sys.executable
START_TIMEOUT = 20.0  # seconds for a server or otids to be ready
CLIENT_TIMEOUT = 30.0  # seconds for one client session
STOP_TIMEOUT = 30.0  # seconds for otids to finish after SIGINT
SETTLE = 1.0  # seconds for the last frames to cross the hub before otids is stopped

SID_FORCE_LISTEN_ONLY = 9101101
SID_UNAUTHORIZED_WRITE = 9101107
SID_COLD_RESTART = 9102101

pytestmark = pytest.mark.slow


def _dnp3_python() -> str | None:
    """The Python 3.10 with dnp3-python (scripts/pcaps), or None when it cannot be had."""
    sys.path.insert(0, str(REPO / "scripts" / "pcaps"))
    try:
        from dnp3_opendnp3 import ensure_venv

        return str(ensure_venv())
    except Exception:
        return None
    finally:
        sys.path.pop(0)


@pytest.fixture
def plant() -> Iterator[Plant]:
    """A built plant, torn down at the end whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (ip) is not installed")
    p = Plant()
    try:
        try:
            p.build()
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot build network namespaces: {exc}")
        yield p
    finally:
        p.close()


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until ``text`` appears in the file ``path`` that ``proc`` writes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not seen in {path}:\n{path.read_text(errors='replace')}")


def _start(plant: Plant, host: str, argv: list[str], log: Path, ready: str) -> None:
    with log.open("wb") as out:
        proc = plant.popen(host, argv, stdout=out, stderr=subprocess.STDOUT)
    _wait_for(log, ready, proc, START_TIMEOUT)


def _client(plant: Plant, host: str, argv: list[str]) -> None:
    run = plant.run(host, argv, CLIENT_TIMEOUT)
    assert run.returncode == 0, run.stdout + run.stderr


def test_span_port_plant(plant: Plant, tmp_path: Path) -> None:
    """Attacks seen on the SPAN port raise their alerts, once each, with no kernel drop."""
    dnp3 = _dnp3_python()
    vars_file = tmp_path / "vars.yaml"
    vars_file.write_text(
        f"modbus_clients: [{address('master')}]\ndnp3_masters: [{address('master')}]\n"
    )
    _start(plant, "plc", [PYTHON, str(ACTORS / "modbus_plc.py")], tmp_path / "plc.log",
           "listening")  # fmt: skip
    if dnp3 is not None:
        _start(plant, "out", [dnp3, str(ACTORS / "dnp3_stack.py"), "outstation"],
               tmp_path / "out.log", "listening")  # fmt: skip
    eve = tmp_path / "eve.json"
    pcap = tmp_path / "alerts.pcap"
    err = tmp_path / "otids.err"
    with (tmp_path / "otids.out").open("wb") as out, err.open("wb") as errf:
        otids = plant.popen("mon", [str(OTIDS), "live", "-i", SPAN, "--workers", "2",
                                    "--vars", str(vars_file), "--json", str(eve),
                                    "--stats-interval", "0.5", "--pcap-out", str(pcap)],
                            stdout=out, stderr=errf)  # fmt: skip
    _wait_for(err, "otids: stats:", otids, START_TIMEOUT)

    modbus = [PYTHON, str(ACTORS / "modbus_client.py"), address("plc")]
    _client(plant, "master", [*modbus, "poll"])  # the HMI: no alert
    _client(plant, "rogue", [*modbus, "write"])  # a write from an unknown client
    _client(plant, "master", [*modbus, "force-listen-only"])
    if dnp3 is not None:
        _client(plant, "master", [dnp3, str(ACTORS / "dnp3_stack.py"), "master",
                                  address("out")])  # fmt: skip
    time.sleep(SETTLE)
    otids.send_signal(signal.SIGINT)
    assert otids.wait(STOP_TIMEOUT) == 0, err.read_text()

    records = [json.loads(line) for line in eve.read_text().splitlines()]
    alerts = [r for r in records if r["event_type"] == "alert"]
    by_sid: dict[int, list[dict[str, Any]]] = {}
    for a in alerts:
        by_sid.setdefault(a["alert"]["signature_id"], []).append(a)
    assert len(by_sid.get(SID_FORCE_LISTEN_ONLY, [])) == 1, alerts
    writes = by_sid.get(SID_UNAUTHORIZED_WRITE, [])
    assert [a["src_ip"] for a in writes] == [address("rogue")], alerts
    if dnp3 is not None:
        assert len(by_sid.get(SID_COLD_RESTART, [])) == 1, alerts
    # Each alert reached the log once although two workers shared the flows.
    keys = [(a["flow_id"], a["alert"]["signature_id"], a["timestamp"]) for a in alerts]
    assert len(keys) == len(set(keys))

    stats = [r["stats"] for r in records if r["event_type"] == "stats"]
    assert stats and stats[-1]["final"] and not any(s["final"] for s in stats[:-1])
    final = stats[-1]
    assert final["workers"] == 2
    assert final["capture"]["kernel_drops"] == 0
    assert final["capture"]["packets"] == final["capture"]["kernel_packets"] > 0
    assert final["app_layer"]["modbus"]["transactions"] >= 6
    if dnp3 is not None:
        assert final["app_layer"]["dnp3"]["transactions"] >= 2
    assert final["alerts"]["total"] == len(alerts)
    # The console got the alerts too, once (from the parent), and the final summary.
    console = (tmp_path / "otids.out").read_text()
    assert console.count(f"[{SID_FORCE_LISTEN_ONLY}]") == 1
    # --pcap-out: the alerting flows' packets, and only theirs.
    with open_capture(pcap) as reader:
        frames = [frame for _, _, frame, _ in reader]
    assert frames
    alerting = {a["src_ip"] for a in alerts} | {a["dest_ip"] for a in alerts}
    for frame in frames:
        assert {socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])} <= alerting
    if dnp3 is None:
        pytest.skip("DNP3 part skipped: no Python 3.10 with dnp3-python")
