"""The syslog sink: message layout, framing, spool format, and delivery against small
in-process receivers (outages, a full queue, a receiver that stops reading, workers).

The same paths against a real rsyslog are in test_rsyslog.py.
"""

from __future__ import annotations

import multiprocessing
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from otids.alerts.syslog import (
    FACILITIES,
    SD_ID,
    MessageBuilder,
    SyslogOptions,
    SyslogOutputs,
    SyslogSink,
    SyslogTarget,
    _frame,
    parse_target,
    read_spool,
    structured_data,
)

WAIT = 10.0  # seconds any test waits for a delivery before failing


def alert(n: int, level: str = "medium", **alert_fields: Any) -> dict[str, Any]:
    """An alert record whose signature names it: ``alert <n>``."""
    return {
        "timestamp": "2026-11-24T18:38:57.356632+0000",
        "flow_id": 42,
        "event_type": "alert",
        "src_ip": "10.0.0.5",
        "src_port": 34544,
        "dest_ip": "10.0.0.9",
        "dest_port": 502,
        "proto": "TCP",
        "community_id": "1:sObZPfuTbzPHP0XQzJQcNvS6wQY=",
        "app_proto": "modbus",
        "alert": {
            "action": "allowed",
            "signature_id": 9100000 + n,
            "rule_id": f"rule-{n}",
            "signature": f"alert {n}",
            "category": "test",
            "severity": 2,
            "level": level,
            "metadata": {"mitre_attack": ["T0855"]},
            **alert_fields,
        },
    }


def numbers(messages: list[bytes]) -> list[int]:
    """The ``n`` of each ``alert <n>`` text-format message."""
    return [int(m) for msg in messages for m in re.findall(rb"\] alert (\d+) \(", msg)]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpReceiver:
    """A syslog receiver over TCP (octet counting) that can be stopped and restarted on
    its port; ``messages`` keeps every message received, in order."""

    def __init__(self, port: int, read: bool = True) -> None:
        self.port = port
        self.read = read
        self.messages: list[bytes] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if not self.read:  # a small window, so that a sender blocks soon
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.1)
        self._listener = listener
        self._spawn(self._accept, listener)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            self._conns.append(conn)
            if self.read:
                self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        conn.settimeout(0.1)
        while conn in self._conns:
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            buf += data
            while b" " in buf[:12]:
                size, _, rest = buf.partition(b" ")
                if len(rest) < int(size):
                    break
                with self._lock:
                    self.messages.append(rest[: int(size)])
                buf = rest[int(size) :]

    def stop(self) -> None:
        """Close the listener and every connection (a receiver going away)."""
        listener, self._listener = self._listener, None
        conns, self._conns = self._conns, []
        for sock in [*conns, *([listener] if listener else [])]:
            sock.close()
        for thread in self._threads:
            thread.join(2)
        self._threads = []

    def wait_for(self, count: int) -> list[bytes]:
        deadline = time.monotonic() + WAIT
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.messages)


@pytest.fixture
def receiver() -> Iterator[TcpReceiver]:
    rx = TcpReceiver(free_port())
    yield rx
    rx.stop()


def options(**changes: Any) -> SyslogOptions:
    opts = SyslogOptions(format="text", hostname="sensor-1", drain_timeout=WAIT, reconnect_max=0.2)
    for key, value in changes.items():
        setattr(opts, key, value)
    return opts


def tcp(port: int) -> SyslogTarget:
    return SyslogTarget("tcp", "127.0.0.1", port)


# --- message layout -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("udp://siem", SyslogTarget("udp", "siem", 514)),
        ("tcp://10.0.0.1:1514", SyslogTarget("tcp", "10.0.0.1", 1514)),
        ("TLS://siem.example", SyslogTarget("tls", "siem.example", 6514)),
        ("tcp://[2001:db8::1]:601", SyslogTarget("tcp", "2001:db8::1", 601)),
    ],
)
def test_parse_target(url: str, expected: SyslogTarget) -> None:
    assert parse_target(url) == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://siem", "scheme"),
        ("siem:514", "scheme"),
        ("tcp://:514", "no host"),
        ("tcp://siem:99999", "out of range"),
        ("udp://siem/path", "nothing more"),
    ],
)
def test_parse_target_errors(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_target(url)


def test_target_url_round_trips() -> None:
    for url in ("udp://siem:514", "tls://[2001:db8::1]:6514"):
        assert parse_target(url).url == url


def test_rfc5424_message() -> None:
    message = MessageBuilder(options(facility="local5")).build(alert(1)).decode()
    pid = re.search(r"otids (\d+) alert", message)
    assert pid is not None
    assert message == (
        f"<172>1 2026-11-24T18:38:57.356632Z sensor-1 otids {pid[1]} alert "
        f'[{SD_ID} rule_id="rule-1" sid="9100001" level="medium" severity="2" attack="T0855"'
        ' src="10.0.0.5" sport="34544" dst="10.0.0.9" dport="502" proto="TCP"'
        ' app_proto="modbus" community_id="1:sObZPfuTbzPHP0XQzJQcNvS6wQY=" flow_id="42"]'
        " [9100001] alert 1 (medium) 10.0.0.5:34544 -> 10.0.0.9:502 attack=T0855"
    )


@pytest.mark.parametrize(
    ("level", "facility", "pri"),
    [
        ("critical", "local5", 21 * 8 + 2),
        ("high", "local0", 16 * 8 + 3),
        ("medium", "daemon", 3 * 8 + 4),
        ("low", "security", 13 * 8 + 5),
        ("info", "local7", 23 * 8 + 6),
        ("unknown", "user", 1 * 8 + 4),
    ],
)
def test_priority(level: str, facility: str, pri: int) -> None:
    message = MessageBuilder(options(facility=facility)).build(alert(1, level))
    assert message.startswith(b"<%d>1 " % pri)
    assert FACILITIES[facility] * 8 <= pri


def test_structured_data_escapes_quote_bracket_backslash() -> None:
    sd = structured_data(alert(1, rule_id='a"b]c\\d'))
    assert 'rule_id="a\\"b\\]c\\\\d"' in sd


def test_rfc3164_message() -> None:
    message = MessageBuilder(options(header="rfc3164", app_name="ot ids!")).build(alert(1))
    assert re.fullmatch(
        rb"<172>[A-Z][a-z]{2} [ 1-3]\d \d\d:\d\d:\d\d sensor-1 otids\[\d+\]:"
        rb" \[9100001\] alert 1 .*",
        message,
    ), message


def test_header_fields_are_printable_ascii() -> None:
    message = MessageBuilder(options(hostname="my host", app_name="a b")).build(alert(1))
    assert message.split(b" ")[2:4] == [b"my_host", b"a_b"]


@pytest.mark.parametrize(
    ("transport", "message", "framed"),
    [
        ("tcp", b"<13>1 - - - - - - hi", b"20 <13>1 - - - - - - hi"),
        ("tls", b"x", b"1 x"),
        ("udp", b"<13>1 - - - - - - hi", b"<13>1 - - - - - - hi"),
        ("udp", b"y" * 70000, b"y" * 65507),  # truncated, not lost
    ],
)
def test_framing(transport: str, message: bytes, framed: bytes) -> None:
    assert _frame(transport, message) == framed


@pytest.mark.parametrize(
    ("data", "messages"),
    [
        (b"", []),
        (b"3 abc2 de", [b"abc", b"de"]),
        (b"3 abc5 de", [b"abc"]),  # the last record was cut short
        (b"3 abcxx", [b"abc"]),  # garbage ends the file
        (b"0 3 abc", [b"", b"abc"]),
    ],
)
def test_read_spool(data: bytes, messages: list[bytes]) -> None:
    assert read_spool(data) == messages


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"format": "xml"}, "format"),
        ({"header": "rfc9999"}, "header"),
        ({"facility": "local9"}, "facility"),
        ({"app_name": "a b"}, "app name"),
        ({"queue_size": 0}, "queue"),
    ],
)
def test_options_check(change: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        options(**change).check()


# --- delivery -----------------------------------------------------------------------------


def test_tcp_delivery_in_order_alerts_only(receiver: TcpReceiver) -> None:
    receiver.start()
    sink = SyslogSink(tcp(receiver.port), options())
    sink.start()
    for n in range(20):
        sink.handle(alert(n))
        sink.handle({"event_type": "modbus", "modbus": {}})  # not sent: alerts only
    stats = sink.shutdown()
    assert numbers(receiver.wait_for(20)) == list(range(20))
    assert stats["alerts"] == stats["sent"] == 20
    assert stats["dropped"] == stats["spooled"] == 0


def test_receiver_absent_at_start_then_up(receiver: TcpReceiver) -> None:
    warnings: list[str] = []
    sink = SyslogSink(tcp(receiver.port), options(), warnings.append)
    sink.start()
    for n in range(10):
        sink.handle(alert(n))
    time.sleep(0.3)
    assert sink.sent == 0
    receiver.start()
    stats = sink.shutdown()
    assert numbers(receiver.wait_for(10)) == list(range(10))
    assert stats["sent"] == 10 and stats["dropped"] == 0 and stats["connect_failures"] >= 1
    assert "cannot deliver" in warnings[0] and "delivering again" in warnings[-1]


def test_receiver_stops_mid_run_and_comes_back(receiver: TcpReceiver) -> None:
    receiver.start()
    sink = SyslogSink(tcp(receiver.port), options())
    sink.start()
    for n in range(5):
        sink.handle(alert(n))
    receiver.wait_for(5)
    receiver.stop()
    time.sleep(0.5)  # the idle sender notices the closed connection
    for n in range(5, 10):
        sink.handle(alert(n))
    time.sleep(0.3)
    receiver.start()
    for n in range(10, 15):
        sink.handle(alert(n))
    stats = sink.shutdown()
    assert numbers(receiver.wait_for(15)) == list(range(15))
    assert stats["sent"] == 15 and stats["dropped"] == 0 and stats["reconnects"] == 1


def test_full_queue_drops_are_counted_exactly() -> None:
    sink = SyslogSink(tcp(free_port()), options(queue_size=3, drain_timeout=0))
    sink.start()
    started = time.monotonic()
    for n in range(5000):
        sink.handle(alert(n))
    assert time.monotonic() - started < 2.0  # handle never waits for the network
    stats = sink.shutdown()
    assert stats["alerts"] == 5000 and stats["sent"] == 0
    assert stats["dropped"] == 5000  # 4997 beyond the queue, 3 unsent at exit (no spool)


def test_spool_keeps_what_is_unsent_and_next_run_sends_it_first(
    receiver: TcpReceiver, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    first = SyslogSink(
        tcp(receiver.port), options(queue_size=4, drain_timeout=0.1, spool_dir=str(spool))
    )
    first.start()
    for n in range(6):
        first.handle(alert(n))
    stats = first.shutdown()
    assert (stats["dropped"], stats["spooled"], stats["sent"]) == (2, 4, 0)
    assert [p.name for p in spool.iterdir()] == [f"tcp_127.0.0.1_{receiver.port}.spool"]

    receiver.start()
    second = SyslogSink(tcp(receiver.port), options(spool_dir=str(spool)))
    second.start()
    for n in range(100, 103):
        second.handle(alert(n))
    stats = second.shutdown()
    assert numbers(receiver.wait_for(7)) == [0, 1, 2, 3, 100, 101, 102]
    assert (stats["from_spool"], stats["sent"], stats["spooled"]) == (4, 7, 0)
    assert list(spool.iterdir()) == []  # delivered: the spool is gone


def test_spool_in_use_by_another_run_is_not_shared(tmp_path: Path) -> None:
    warnings: list[str] = []
    port = free_port()
    first = SyslogSink(tcp(port), options(drain_timeout=0, spool_dir=str(tmp_path)))
    second = SyslogSink(
        tcp(port), options(drain_timeout=0, spool_dir=str(tmp_path)), warnings.append
    )
    first.start()
    second.start()
    second.handle(alert(1))
    assert second.shutdown()["dropped"] == 1
    first.shutdown()
    assert any("in use" in w for w in warnings)


def test_receiver_that_stops_reading_cannot_hold_shutdown() -> None:
    stuck = TcpReceiver(free_port(), read=False)
    stuck.start()
    try:
        sink = SyslogSink(tcp(stuck.port), options(queue_size=10_000, drain_timeout=0.5))
        sink.start()
        big = "x" * 4000
        for n in range(3000):  # 12 MB: far more than the socket buffers hold
            sink.handle(alert(n, rule_id=big))
        started = time.monotonic()
        stats = sink.shutdown()
        assert time.monotonic() - started < 3.0
        assert stats["sent"] + stats["dropped"] == 3000 and stats["dropped"] > 0
    finally:
        stuck.stop()


def test_udp_one_datagram_per_alert() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(WAIT)
        port = rx.getsockname()[1]
        sink = SyslogSink(SyslogTarget("udp", "127.0.0.1", port), options())
        sink.start()
        for n in range(10):
            sink.handle(alert(n))
        got = [rx.recv(65536) for _ in range(10)]
        stats = sink.shutdown()
    assert numbers(got) == list(range(10))
    assert all(d.startswith(b"<172>1 ") for d in got)  # no octet counting on UDP
    assert stats["sent"] == 10


def _worker(outputs: SyslogOutputs, first: int) -> None:
    (sink,) = outputs.process_sinks()
    assert not isinstance(sink, SyslogSink)  # the relay, not a second connection
    for n in range(first, first + 10):
        sink.handle(alert(n))
        sink.handle({"event_type": "stats"})


def test_forked_workers_send_once_through_the_parent(receiver: TcpReceiver) -> None:
    receiver.start()
    outputs = SyslogOutputs([tcp(receiver.port)], options())
    outputs.start()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(outputs, i * 10)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(WAIT)
        assert p.exitcode == 0
    (stats,) = outputs.shutdown()
    assert sorted(numbers(receiver.wait_for(20))) == list(range(20))
    assert stats["alerts"] == stats["sent"] == 20


def test_nothing_queued_means_no_wait_for_an_absent_receiver() -> None:
    sink = SyslogSink(tcp(free_port()), options(drain_timeout=WAIT))
    sink.start()
    started = time.monotonic()
    stats = sink.shutdown()
    assert time.monotonic() - started < 2.0
    assert stats["alerts"] == stats["dropped"] == 0
