"""Proof against a real receiver: rsyslog on 127.0.0.1 with UDP, TCP, TLS and TLS with
client certificates, writing each message's parsed fields to files; ``otids read`` on the
attack captures must get every alert there, parsed (RFC 5424 header and structured data,
RFC 3164, CEF, LEEF and JSON payloads), and outages must lose nothing within the queue
bound and report exactly what was dropped beyond it.

Skipped when rsyslogd (Debian ``rsyslog`` + ``rsyslog-gnutls``, see scripts/setup-system.sh)
or the openssl command is missing.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otids.alerts.formats import CEF_SEVERITY
from otids.alerts.syslog import SYSLOG_SEVERITY, SyslogOptions, SyslogSink, SyslogTarget

REPO = Path(__file__).resolve().parents[2]
CAPTURES = [REPO / "pcaps" / "modbus-attack.pcap", REPO / "pcaps" / "dnp3-attack.pcap"]
RSYSLOGD = shutil.which("rsyslogd") or (
    "/usr/sbin/rsyslogd" if os.access("/usr/sbin/rsyslogd", os.X_OK) else None
)
OPENSSL = shutil.which("openssl")
GTLS = bool(glob.glob("/usr/lib/*/rsyslog/lmnsd_gtls.so"))  # rsyslog-gnutls: the TLS driver
WAIT = 20.0  # seconds allowed for rsyslog to start, an otids run, a delivery
FIELDS = ("severity", "facility", "app_name", "hostname", "procid", "msgid", "sd", "msg")

pytestmark = [
    pytest.mark.skipif(RSYSLOGD is None, reason="rsyslogd is not installed"),
    pytest.mark.skipif(OPENSSL is None, reason="the openssl command is not installed"),
    pytest.mark.skipif(not GTLS, reason="rsyslog-gnutls (rsyslog's TLS driver) is not installed"),
]


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# A new unencrypted P-256 key: far quicker to make than RSA, and rsyslog's GnuTLS takes it.
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all PEM."""
    d = tmp_path_factory.mktemp("certs")
    openssl(
        "req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=otids test CA", cwd=d,
    )  # fmt: skip
    for name, san in (("server", "IP:127.0.0.1,DNS:localhost"), ("client", "DNS:otids-client")):
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        openssl(
            "req", *EC_KEY, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={name}", cwd=d,
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
            cwd=d,
        )  # fmt: skip
    return d


class Rsyslog:
    """An rsyslogd in the foreground with its own configuration, ports and output files."""

    def __init__(self, directory: Path, certs: Path) -> None:
        self.dir = directory
        self.ports = {
            "udp": free_port(socket.SOCK_DGRAM),
            "tcp": free_port(socket.SOCK_STREAM),
            "tls": free_port(socket.SOCK_STREAM),
            "mtls": free_port(socket.SOCK_STREAM),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        driver = (
            'streamDriver.name="gtls" streamDriver.mode="1"'
            f' streamDriver.CAFile="{certs}/ca.pem"'
            f' streamDriver.CertFile="{certs}/server.pem"'
            f' streamDriver.KeyFile="{certs}/server.key"'
        )
        template = "|".join(
            f"%{p}%"
            for p in (
                "syslogseverity",
                "syslogfacility-text",
                "app-name",
                "hostname",
                "procid",
                "msgid",
                "structured-data",
                "msg",
            )
        )
        inputs = {
            "udp": f'input(type="imudp" address="127.0.0.1" port="{self.ports["udp"]}"',
            "tcp": f'input(type="imtcp" address="127.0.0.1" port="{self.ports["tcp"]}"',
            "tls": f'input(type="imtcp" address="127.0.0.1" port="{self.ports["tls"]}"'
            f' {driver} streamDriver.authMode="anon"',
            # Mutual TLS: only clients with a certificate signed by the CA get in.
            "mtls": f'input(type="imtcp" address="127.0.0.1" port="{self.ports["mtls"]}"'
            f' {driver} streamDriver.authMode="x509/certvalid"',
        }
        lines = [
            f'global(workDirectory="{directory}" maxMessageSize="64k")',
            'module(load="imudp")',
            'module(load="imtcp")',
            f'template(name="fields" type="string" string="{template}\\n")',
        ]
        for name, head in inputs.items():
            lines.append(f'{head} ruleset="{name}")')
            lines.append(
                f'ruleset(name="{name}") {{ action(type="omfile" file="{directory}/{name}.log"'
                ' template="fields") }'
            )
        self.conf = directory / "rsyslog.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        assert RSYSLOGD is not None
        log = (self.dir / "rsyslogd.out").open("ab")
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.dir / "rsyslogd.pid")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:  # ready when the TCP input and UDP input work
            assert self.proc.poll() is None, (self.dir / "rsyslogd.out").read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.ports["tcp"]), timeout=1):
                    pass
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                    probe.sendto(b"<13>1 - - probe - - - ready", ("127.0.0.1", self.ports["udp"]))
                if any(r["app_name"] == "probe" for r in self.rows("udp")):
                    return
            except OSError:
                pass
            time.sleep(0.1)
        pytest.fail("rsyslogd did not start: " + (self.dir / "rsyslogd.out").read_text())

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT)
        self.proc = None

    def rows(self, name: str, app_name: str | None = None) -> list[dict[str, str]]:
        """The parsed fields of the messages received on input ``name``."""
        path = self.dir / f"{name}.log"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            row = dict(zip(FIELDS, line.split("|", len(FIELDS) - 1), strict=False))
            if app_name is None or row.get("app_name") == app_name:
                out.append(row)
        return out

    def wait_rows(self, name: str, app_name: str, count: int) -> list[dict[str, str]]:
        deadline = time.monotonic() + WAIT
        rows = self.rows(name, app_name)
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.05)
            rows = self.rows(name, app_name)
        time.sleep(0.2)  # anything beyond the expected count would show up now
        return self.rows(name, app_name)


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory: pytest.TempPathFactory, certs: Path) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path_factory.mktemp("rsyslog"), certs)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def idle_rsyslog(tmp_path: Path, certs: Path) -> Iterator[Rsyslog]:
    """An rsyslog configured but not started: the test starts and stops it."""
    server = Rsyslog(tmp_path, certs)
    yield server
    server.stop()


OTIDS = [sys.executable, "-c", "from otids.cli import main; main()", "read"]


def otids_read(eve: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OTIDS, *map(str, CAPTURES), "-q", "--json", str(eve), *args],
        capture_output=True,
        text=True,
        timeout=WAIT * 3,
    )


def eve_alerts(eve: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    records = [json.loads(line) for line in eve.read_text().splitlines()]
    stats = records[-1]["stats"]
    return [r for r in records if r["event_type"] == "alert"], stats


def sd_params(sd: str) -> dict[str, str]:
    assert sd.startswith("[otids@32473 ") and sd.endswith("]"), sd
    return dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', sd))


def expected_sids(alerts: list[dict[str, Any]]) -> Counter[str]:
    return Counter(str(a["alert"]["signature_id"]) for a in alerts)


def check_payload(fmt: str, msg: str, alert: dict[str, Any]) -> None:
    """The payload of one message parses and names the same alert."""
    info = alert["alert"]
    if fmt == "cef":
        header = re.split(r"(?<!\\)\|", msg, maxsplit=7)
        assert header[0] == "CEF:0" and header[4] == str(info["signature_id"])
        assert int(header[6]) == CEF_SEVERITY[info["level"]]
        assert f"src={alert['src_ip']} spt={alert['src_port']}" in header[7]
    elif fmt == "leef":
        header, _, body = msg.partition("|^|")
        assert header.split("|")[0] == "LEEF:2.0" and header.split("|")[4] == str(
            info["signature_id"]
        )
        attrs = dict(pair.split("=", 1) for pair in body.split("^"))
        assert attrs["src"] == alert["src_ip"] and attrs["ruleId"] == info["rule_id"]
    elif fmt == "json":
        doc = json.loads(msg)
        assert doc["event"]["kind"] == "alert"
        assert doc["event"]["category"] == ["network", "intrusion_detection"]
        assert doc["rule"]["id"] == str(info["signature_id"])
        assert doc["source"]["ip"] == alert["src_ip"]
        assert doc["network"]["community_id"] == alert["community_id"]


@pytest.mark.parametrize(
    ("fmt", "extra"),
    [("cef", []), ("leef", ["--workers", "2"]), ("json", [])],
    ids=["cef", "leef-2-workers", "json"],
)
def test_every_alert_arrives_parsed_over_udp_tcp_tls(
    rsyslog: Rsyslog, certs: Path, tmp_path: Path, fmt: str, extra: list[str]
) -> None:
    app = f"otids-{fmt}"
    p = rsyslog.ports
    run = otids_read(
        tmp_path / "eve.json",
        "--syslog", f"udp://127.0.0.1:{p['udp']}",
        "--syslog", f"tcp://127.0.0.1:{p['tcp']}",
        "--syslog", f"tls://127.0.0.1:{p['tls']}",
        "--syslog-ca", str(certs / "ca.pem"),
        "--syslog-format", fmt,
        "--syslog-app-name", app,
        "--syslog-hostname", "sensor-1",
        "--syslog-facility", "local3",
        *extra,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    alerts, stats = eve_alerts(tmp_path / "eve.json")
    assert len(alerts) >= 10
    # A rule can fire on several flows and directions: the SD names which.
    by_key = {
        (str(a["alert"]["signature_id"]), str(a["flow_id"]), a["src_ip"], str(a["src_port"])): a
        for a in alerts
    }
    for transport in ("udp", "tcp", "tls"):
        rows = rsyslog.wait_rows(transport, app, len(alerts))
        assert len(rows) == len(alerts), transport  # one message per alert, no more
        sids: Counter[str] = Counter()
        for row in rows:
            params = sd_params(row["sd"])
            alert = by_key[params["sid"], params["flow_id"], params["src"], params["sport"]]
            sids[params["sid"]] += 1
            assert params["rule_id"] == alert["alert"]["rule_id"]
            assert params["src"] == alert["src_ip"] and params["dport"] == str(alert["dest_port"])
            assert params.get("attack", "") == ",".join(
                alert["alert"].get("metadata", {}).get("mitre_attack", [])
            )
            assert int(row["severity"]) == SYSLOG_SEVERITY[alert["alert"]["level"]]
            assert (row["facility"], row["hostname"], row["msgid"]) == (
                "local3",
                "sensor-1",
                "alert",
            )
            check_payload(fmt, row["msg"], alert)
        assert sids == expected_sids(alerts), transport
    rows_stats = stats["outputs"]["syslog"]
    assert [r["sent"] for r in rows_stats] == [len(alerts)] * 3
    assert sum(r["dropped"] for r in rows_stats) == 0


def test_rfc3164_text(rsyslog: Rsyslog, tmp_path: Path) -> None:
    run = otids_read(
        tmp_path / "eve.json",
        "--syslog", f"tcp://127.0.0.1:{rsyslog.ports['tcp']}",
        "--syslog-header", "rfc3164",
        "--syslog-format", "text",
        "--syslog-app-name", "otids3164",
        "--syslog-hostname", "sensor-2",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    alerts, _ = eve_alerts(tmp_path / "eve.json")
    rows = rsyslog.wait_rows("tcp", "otids3164", len(alerts))
    assert len(rows) == len(alerts)
    assert {row["hostname"] for row in rows} == {"sensor-2"}
    assert all(row["procid"].isdigit() for row in rows)  # the TAG's [pid]
    got = Counter(re.match(r"\s*\[(\d+)\] ", row["msg"])[1] for row in rows)  # type: ignore[index]
    assert got == expected_sids(alerts)
    assert sorted(int(r["severity"]) for r in rows) == sorted(
        SYSLOG_SEVERITY[a["alert"]["level"]] for a in alerts
    )


def test_tls_client_certificate(rsyslog: Rsyslog, certs: Path, tmp_path: Path) -> None:
    target = f"tls://127.0.0.1:{rsyslog.ports['mtls']}"
    common = ["--syslog", target, "--syslog-ca", str(certs / "ca.pem"), "--syslog-format", "json"]
    run = otids_read(
        tmp_path / "eve.json",
        *common,
        "--syslog-app-name", "otids-mtls",
        "--syslog-cert", str(certs / "client.pem"),
        "--syslog-key", str(certs / "client.key"),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    alerts, _ = eve_alerts(tmp_path / "eve.json")
    assert len(rsyslog.wait_rows("mtls", "otids-mtls", len(alerts))) == len(alerts)
    # Without the client certificate rsyslog refuses the session: nothing arrives, all
    # alerts are reported dropped, and the run still succeeds.
    anonymous = otids_read(
        tmp_path / "eve2.json",
        *common,
        "--syslog-app-name", "otids-nocert",
        "--syslog-drain-timeout", "1",
    )  # fmt: skip
    assert anonymous.returncode == 0, anonymous.stderr
    _, stats = eve_alerts(tmp_path / "eve2.json")
    assert stats["outputs"]["syslog"][0]["dropped"] == len(alerts)
    assert rsyslog.rows("mtls", "otids-nocert") == []


def run_during_outage(
    server: Rsyslog, tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]], dict[str, Any]]:
    """``otids read`` while rsyslog is down; rsyslog starts once otids has analysed
    everything and is waiting at exit for the receiver."""
    eve = tmp_path / "eve.json"
    proc = subprocess.Popen(
        [
            *OTIDS,
            *map(str, CAPTURES),
            "-q",
            "--json", str(eve),
            "--syslog", f"tcp://127.0.0.1:{server.ports['tcp']}",
            "--syslog-app-name", "otids-outage",
            "--syslog-drain-timeout", str(WAIT),
            "--syslog-reconnect-max", "0.3",
            *args,
        ],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    err: list[str] = []
    try:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:  # each line is a warning; the loop is bounded
            line = proc.stderr.readline()
            err.append(line)
            if "waiting up to" in line or not line:
                break
        assert "waiting up to" in err[-1], "".join(err)
        server.start()
        rest = proc.communicate(timeout=WAIT * 2)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    alerts, stats = eve_alerts(eve)
    return (
        subprocess.CompletedProcess(proc.args, proc.returncode, "", "".join(err) + rest),
        alerts,
        stats,
    )


def test_outage_at_start_loses_nothing_within_the_queue(
    idle_rsyslog: Rsyslog, tmp_path: Path
) -> None:
    run, alerts, stats = run_during_outage(idle_rsyslog, tmp_path)
    assert run.returncode == 0, run.stderr  # an absent receiver is a warning, not an error
    assert "cannot deliver" in run.stderr
    rows = idle_rsyslog.wait_rows("tcp", "otids-outage", len(alerts))
    assert Counter(sd_params(r["sd"])["sid"] for r in rows) == expected_sids(alerts)
    (row,) = stats["outputs"]["syslog"]
    assert (row["sent"], row["dropped"]) == (len(alerts), 0)


def test_outage_with_a_tiny_queue_reports_the_drops_exactly(
    idle_rsyslog: Rsyslog, tmp_path: Path
) -> None:
    run, alerts, stats = run_during_outage(idle_rsyslog, tmp_path, "--syslog-queue", "3")
    assert run.returncode == 0, run.stderr
    rows = idle_rsyslog.wait_rows("tcp", "otids-outage", 3)
    # The queue keeps the first three alerts; every later one is dropped and counted.
    first = [str(a["alert"]["signature_id"]) for a in alerts[:3]]
    assert [sd_params(r["sd"])["sid"] for r in rows] == first
    (row,) = stats["outputs"]["syslog"]
    assert (row["sent"], row["dropped"]) == (3, len(alerts) - 3)
    assert f"{len(alerts) - 3} alert(s) could not be delivered to syslog" in run.stderr


def test_rsyslog_restarted_mid_run(idle_rsyslog: Rsyslog) -> None:
    server = idle_rsyslog
    server.start()
    target = SyslogTarget("tcp", "127.0.0.1", server.ports["tcp"])
    sink = SyslogSink(
        target, SyslogOptions(format="cef", app_name="otids-restart", reconnect_max=0.3)
    )
    sink.start()
    alerts, _ = eve_alerts_from_capture()

    def send(batch: list[dict[str, Any]]) -> None:
        for record in batch:
            sink.handle(record)

    third = len(alerts) // 3
    send(alerts[:third])
    server.wait_rows("tcp", "otids-restart", third)
    server.stop()
    time.sleep(0.5)  # the sender notices the closed connection
    send(alerts[third : 2 * third])  # queued while rsyslog is down
    server.start()
    send(alerts[2 * third :])
    stats = sink.shutdown()
    rows = server.wait_rows("tcp", "otids-restart", len(alerts))
    assert Counter(sd_params(r["sd"])["sid"] for r in rows) == expected_sids(alerts)
    assert (stats["sent"], stats["dropped"], stats["reconnects"]) == (len(alerts), 0, 1)


def eve_alerts_from_capture() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The alerts of the attack captures, analysed in this process."""
    from conftest import analyse

    sink = analyse(CAPTURES, transactions=False)
    return sink.of("alert"), sink.of("stats")[-1]["stats"]
