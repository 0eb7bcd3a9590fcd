"""``otids live`` on the loopback: start, SIGHUP reload (good and bad rules), SIGTERM, and
the exit code without privileges."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
OTIDS = REPO / ".venv" / "bin" / "otids"
START_TIMEOUT = 20.0  # seconds for otids to print its first statistics
STOP_TIMEOUT = 30.0  # seconds for otids to finish after a signal
# Modbus on a port otids knows only by its content (the default filter's any-port clauses are
# replaced here by a port filter, the pipeline's probe recognises it).
LOOPBACK_PORT = 47502
RULE = """id: test-live-reload
sid: 9999001
title: "test rule"
severity: low
detection:
  selection:
    modbus.function: 3
  condition: selection
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="packet capture needs root")


def _wait_for(path: Path, text: str, count: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and proc.poll() is None:
        if path.read_text(errors="replace").count(text) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} x{count} not seen:\n{path.read_text(errors='replace')}")


def test_reload_and_stop(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yaml").write_text(RULE)
    err, eve = tmp_path / "err", tmp_path / "eve.json"
    with err.open("wb") as errf:
        proc = subprocess.Popen(
            [str(OTIDS), "live", "-i", "lo", "--bpf", "tcp port 65001", "--rules", str(rules),
             "--json", str(eve), "--stats-interval", "0.3", "--ring-mb", "4"],
            stdout=subprocess.DEVNULL, stderr=errf,
        )  # fmt: skip
    try:
        _wait_for(err, "otids: stats:", 1, proc)
        (rules / "r.yaml").write_text(RULE.replace("condition: selection", "condition: nope"))
        proc.send_signal(signal.SIGHUP)
        _wait_for(err, "rules not reloaded", 1, proc)
        (rules / "r.yaml").write_text(RULE)
        proc.send_signal(signal.SIGHUP)
        _wait_for(err, "otids: stats:", err.read_text().count("otids: stats:") + 2, proc)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(STOP_TIMEOUT) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert err.read_text().count("rules not reloaded") == 1  # one worker reports
    final = [json.loads(line) for line in eve.read_text().splitlines()][-1]
    assert final["event_type"] == "stats" and final["stats"]["final"]
    assert final["stats"]["capture"]["kernel_drops"] == 0


def test_without_cap_net_raw_exit_2() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    run = subprocess.run(
        ["setpriv", "--bounding-set=-net_raw", str(OTIDS), "live", "-i", "lo", "-q"],
        capture_output=True, text=True, timeout=STOP_TIMEOUT, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert "CAP_NET_RAW" in run.stderr


def test_unknown_interface_exit_2() -> None:
    run = subprocess.run([str(OTIDS), "live", "-i", "no-such-if0", "-q"], capture_output=True,
                         text=True, timeout=STOP_TIMEOUT, check=False)  # fmt: skip
    assert run.returncode == 2 and "no-such-if0" in run.stderr


def _modbus_exchange(port: int) -> None:
    """A TCP session on the loopback: a force-listen-only request and its echo."""
    request = bytes([
        0x00, 0x01,  # transaction id
        0x00, 0x00,  # protocol id
        0x00, 0x06,  # length
        0x01,  # unit id
        0x08,  # function: diagnostics
        0x00, 0x04,  # sub-function: force listen only mode
        0x00, 0x00,  # data
    ])  # fmt: skip
    with socket.create_server(("127.0.0.1", port)) as server:
        server.settimeout(STOP_TIMEOUT)
        with socket.create_connection(("127.0.0.1", port), timeout=STOP_TIMEOUT) as client:
            conn, _ = server.accept()
            with conn:
                client.sendall(request)
                conn.recv(64)
                conn.sendall(request)
                client.recv(64)


def test_user_drop_with_traffic() -> None:
    """--user: everything after the sockets runs unprivileged (outputs owned by the user),
    and an alert still reaches the JSON log, the console and --pcap-out."""
    out = Path(tempfile.mkdtemp(prefix="otids-live-"))  # not under pytest's 0700 root dir
    try:
        out.chmod(0o777)
        eve, pcap, err = out / "eve.json", out / "alerts.pcap", out / "err"
        with err.open("wb") as errf:
            proc = subprocess.Popen(
                [str(OTIDS), "live", "-i", "lo", "--user", "nobody", "--json", str(eve),
                 "--pcap-out", str(pcap), "--stats-interval", "0.3", "--ring-mb", "4",
                 "--bpf", f"tcp port {LOOPBACK_PORT}"],
                stdout=subprocess.PIPE, stderr=errf,
            )  # fmt: skip
        try:
            _wait_for(err, "otids: stats:", 1, proc)
            _modbus_exchange(LOOPBACK_PORT)
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            stdout, _ = proc.communicate(timeout=STOP_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, err.read_text()
        assert eve.stat().st_uid == pcap.stat().st_uid == pwd.getpwnam("nobody").pw_uid
        alerts = [r for r in map(json.loads, eve.read_text().splitlines())
                  if r["event_type"] == "alert"]  # fmt: skip
        assert [a["alert"]["signature_id"] for a in alerts] == [9101101]
        assert b"[9101101]" in stdout
        assert pcap.stat().st_size > 24  # the header and the session's packets
    finally:
        shutil.rmtree(out)
