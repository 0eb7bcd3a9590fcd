"""Alerts to syslog receivers: RFC 5424 and RFC 3164 messages over UDP (RFC 5426), TCP
(octet counting, RFC 6587) and TLS (RFC 5425), delivered reliably.

Shape: the pipeline thread only renders an alert and puts it in a bounded queue
(:meth:`SyslogSink.handle` never blocks and never touches the network); one sender thread
per receiver connects, reconnects with exponential backoff and sends. While a receiver is
down its alerts wait in the queue; when the queue is full further alerts are dropped and
counted. At shutdown the sender gets ``drain_timeout`` seconds to empty the queue; what is
still unsent then is written to the receiver's spool file (when a spool directory is
configured) and replayed first by the next run, or counted as dropped. A slow or dead
receiver therefore never blocks capture or the other outputs, and its losses show up in
the final statistics.

Worker processes (``otids read --workers N``) do not talk to receivers themselves: an
:class:`AlertRelay` created before the fork carries their alerts to the parent, whose sinks
send them, so each alert is sent once, over one connection per receiver, and the dropped
counts are the parent's own.

Delivery is at least once across restarts (an alert replayed from the spool may have
reached the receiver just before a crash) and at most once within a TCP connection that
dies: syslog has no acknowledgements, so bytes the kernel accepted before the receiver
vanished are lost unnoticed (RELP would be needed to close that gap).
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import multiprocessing
import os
import queue
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from otids.alerts.eve import EveRecord
from otids.alerts.formats import RENDERERS, rfc3339

if TYPE_CHECKING:
    # ssl is imported by the functions that use TLS: importing it costs every run a few
    # milliseconds of start-up, most runs have no syslog receiver and few use TLS.
    import ssl

# RFC 5424 section 6.2.1 facility codes by name.
FACILITIES: dict[str, int] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    "ntp": 12,
    "security": 13,
    "console": 14,
    "solaris-cron": 15,
    **{f"local{i}": 16 + i for i in range(8)},
}
# Rule severity (alert.level) -> syslog severity (RFC 5424 section 6.2.1: 2 critical,
# 3 error, 4 warning, 5 notice, 6 informational).
SYSLOG_SEVERITY: dict[str, int] = {"critical": 2, "high": 3, "medium": 4, "low": 5, "info": 6}
DEFAULT_SYSLOG_SEVERITY = 4  # an alert of unknown level: a warning, as rules default to medium
DEFAULT_PORTS: dict[str, int] = {"udp": 514, "tcp": 514, "tls": 6514}  # RFC 5426/6587/5425
HEADERS = ("rfc5424", "rfc3164")

# The SD-ID of otids' structured data. 32473 is the IANA enterprise number reserved for
# documentation (RFC 5612): otids has none of its own, and receivers only need a stable name.
SD_ID = "otids@32473"
MSGID = "alert"  # RFC 5424 MSGID: the type of message; otids sends only alerts
# RFC 3164 section 4.1.3: the TAG is at most 32 alphanumeric characters.
TAG_MAX = 32
# Largest datagram sent: IPv4's UDP payload limit (65535 - 20 - 8). A longer message is
# truncated (RFC 5426 section 3.2 allows it) rather than lost with EMSGSIZE.
UDP_MAX_MESSAGE = 65507

# Delivery timing. A connect or a send that takes longer than this is treated as a failure:
# the sender then backs off and retries, so a receiver that hangs cannot hold the thread.
CONNECT_TIMEOUT = 5.0
SEND_TIMEOUT = 10.0
# With TLS 1.3 a receiver that rejects the client (no or a bad client certificate) says so
# only after the handshake has completed on the client's side: the sender waits this long
# after connecting for such a refusal, instead of writing alerts into a doomed session.
TLS_SETTLE = 0.2
# First wait after a failed connection; it doubles up to reconnect_max.
RECONNECT_MIN = 0.25
# How often an idle sender checks that its receiver is still there (seconds): it notices a
# restarted receiver before the next alert is written into a dead connection.
IDLE_POLL = 0.2
# Alerts waiting per receiver while it is down: about 10 MB of CEF at ~1 KB each.
DEFAULT_QUEUE_SIZE = 10_000
# Seconds a finishing run waits for each receiver to take its queued alerts.
DEFAULT_DRAIN_TIMEOUT = 10.0
DEFAULT_RECONNECT_MAX = 30.0
# A spool file never grows past this: the oldest messages beyond it are dropped (counted).
SPOOL_MAX_BYTES = 64 * 1024 * 1024
# Relay: seconds the parent waits for its relay thread to pass on the workers' last alerts.
RELAY_JOIN_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class SyslogTarget:
    """Where one receiver listens: ``transport`` is ``udp``, ``tcp`` or ``tls``."""

    transport: str
    host: str
    port: int

    @property
    def url(self) -> str:
        """``tcp://host:port`` (IPv6 hosts bracketed)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_target(url: str) -> SyslogTarget:
    """``udp://HOST[:PORT]``, ``tcp://…`` or ``tls://…`` -> target; ValueError says why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"{url!r}: scheme must be udp://, tcp:// or tls://")
    if not parts.hostname:
        raise ValueError(f"{url!r}: no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: expected {scheme}://HOST[:PORT] and nothing more")
    return SyslogTarget(scheme, parts.hostname, port or DEFAULT_PORTS[scheme])


@dataclass(slots=True)
class SyslogOptions:
    """Message and delivery settings shared by the receivers of one run."""

    format: str = "cef"  # payload: a key of otids.alerts.formats.RENDERERS
    header: str = "rfc5424"  # or rfc3164
    facility: str = "local5"  # Suricata's EVE syslog default
    app_name: str = "otids"
    hostname: str = ""  # empty: this machine's name
    ca_file: str | None = None  # TLS: CA bundle that signed the receiver's certificate
    cert_file: str | None = None  # TLS: client certificate (PEM), when the receiver asks
    key_file: str | None = None  # TLS: its private key (default: inside cert_file)
    queue_size: int = DEFAULT_QUEUE_SIZE
    spool_dir: str | None = None
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    reconnect_max: float = DEFAULT_RECONNECT_MAX

    def check(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if self.format not in RENDERERS:
            raise ValueError(f"syslog format {self.format!r}: use one of {', '.join(RENDERERS)}")
        if self.header not in HEADERS:
            raise ValueError(f"syslog header {self.header!r}: use {' or '.join(HEADERS)}")
        if self.facility not in FACILITIES:
            raise ValueError(
                f"syslog facility {self.facility!r}: use one of {', '.join(FACILITIES)}"
            )
        if not re.fullmatch(r"[!-~]{1,48}", self.app_name):
            raise ValueError(f"syslog app name {self.app_name!r}: 1-48 printable ASCII characters")
        if self.queue_size < 1:
            raise ValueError("syslog queue size must be at least 1")
        if self.drain_timeout < 0 or self.reconnect_max <= 0:
            raise ValueError("syslog drain timeout must be >= 0 and reconnect maximum > 0")


# --- messages -----------------------------------------------------------------------------
#
# RFC 5424 (section 6):
#
#   SYSLOG-MSG = <PRI>1 SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
#   SD         = [SD-ID SP PARAM-NAME="PARAM-VALUE" ...]   ("\", "]" and '"' escaped with "\")
#
# RFC 3164 (section 4.1):
#
#   <PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG          (day padded with a space, local time)
#
# MSG is sent without the optional UTF-8 BOM: the payloads are ASCII in practice, and a BOM
# in front of a JSON payload breaks most JSON parsers downstream.

_SD_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "]": "\\]"})
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_NON_HEADER = re.compile(r"[^!-~]")  # header fields are printable US-ASCII without spaces


def syslog_severity(record: EveRecord) -> int:
    """The alert's syslog severity, from its rule's level."""
    alert = record.get("alert")
    level = alert.get("level") if isinstance(alert, dict) else None
    return SYSLOG_SEVERITY.get(str(level), DEFAULT_SYSLOG_SEVERITY)


def structured_data(record: EveRecord) -> str:
    """The ``[otids@32473 ...]`` element: rule id, sid, severity, ATT&CK ids, addresses."""
    alert = record.get("alert")
    alert = alert if isinstance(alert, dict) else {}
    meta = alert.get("metadata")
    attack = meta.get("mitre_attack") if isinstance(meta, dict) else None
    params = (
        ("rule_id", alert.get("rule_id")),
        ("sid", alert.get("signature_id")),
        ("level", alert.get("level")),
        ("severity", alert.get("severity")),
        ("attack", ",".join(attack) if isinstance(attack, list) and attack else None),
        ("src", record.get("src_ip")),
        ("sport", record.get("src_port")),
        ("dst", record.get("dest_ip")),
        ("dport", record.get("dest_port")),
        ("proto", record.get("proto")),
        ("app_proto", record.get("app_proto")),
        ("community_id", record.get("community_id")),
        ("flow_id", record.get("flow_id")),
    )
    body = " ".join(
        f'{name}="{str(value).translate(_SD_ESCAPES)}"'
        for name, value in params
        if value is not None
    )
    return f"[{SD_ID} {body}]"


def _header_field(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable ASCII, no spaces, at most ``limit`` chars."""
    return _NON_HEADER.sub("_", value)[:limit] or "-"


class MessageBuilder:
    """Turns an alert record into the bytes of one syslog message (without framing)."""

    def __init__(self, options: SyslogOptions) -> None:
        self.render = RENDERERS[options.format]
        self.rfc5424 = options.header == "rfc5424"
        self.facility = FACILITIES[options.facility]
        hostname = options.hostname or socket.gethostname()
        self.hostname = _header_field(hostname, 255)
        self.app_name = _header_field(options.app_name, 48)
        self.procid = str(os.getpid())
        tag = re.sub(r"[^A-Za-z0-9_.-]", "", options.app_name)[:TAG_MAX] or "otids"
        self.tag = f"{tag}[{self.procid}]"

    def build(self, record: EveRecord) -> bytes:
        """The whole message for ``record``."""
        pri = self.facility * 8 + syslog_severity(record)
        payload = self.render(record)
        if self.rfc5424:
            head = (
                f"<{pri}>1 {rfc3339(record.get('timestamp', '-'))} {self.hostname}"
                f" {self.app_name} {self.procid} {MSGID} {structured_data(record)}"
            )
        else:
            head = f"<{pri}>{_rfc3164_time(record)} {self.hostname} {self.tag}:"
        return f"{head} {payload}".encode("utf-8", "replace")


def _rfc3164_time(record: EveRecord) -> str:
    """``Nov 24 18:38:57`` in local time, as RFC 3164 receivers assume."""
    try:
        moment = datetime.fromisoformat(str(record.get("timestamp"))).astimezone()
    except ValueError:
        moment = datetime.now().astimezone()
    return f"{_MONTHS[moment.month - 1]} {moment.day:2d} {moment:%H:%M:%S}"


# --- transports ---------------------------------------------------------------------------


def _frame(transport: str, message: bytes) -> bytes:
    """Stream transports prefix each message with its length (RFC 6587 section 3.4.1,
    RFC 5425 section 4.3): ``MSG-LEN SP SYSLOG-MSG``. A datagram is the message itself."""
    if transport == "udp":
        return message[:UDP_MAX_MESSAGE]
    return b"%d %b" % (len(message), message)


def tls_context(options: SyslogOptions) -> ssl.SSLContext:
    """A client context that verifies the receiver (``ca_file`` or the system store) and
    presents ``cert_file`` when one is given; OSError/SSLError when a file is unusable."""
    import ssl

    ctx = ssl.create_default_context(cafile=options.ca_file)
    if options.cert_file:
        ctx.load_cert_chain(options.cert_file, options.key_file)
    return ctx


def _connect(target: SyslogTarget, tls: ssl.SSLContext | None) -> socket.socket:
    """A connected socket to ``target`` (for UDP: a connected datagram socket)."""
    import ssl

    if target.transport == "udp":
        family, kind, proto, _, address = socket.getaddrinfo(
            target.host, target.port, type=socket.SOCK_DGRAM
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((target.host, target.port), timeout=CONNECT_TIMEOUT)
    if tls is not None:
        try:
            sock = tls.wrap_socket(sock, server_hostname=target.host)
            readable, _, _ = select.select([sock], [], [], TLS_SETTLE)
            if readable and _peer_closed(sock, refusal=True):
                raise ConnectionRefusedError("the receiver closed the TLS session")
        except (OSError, ssl.SSLError):
            sock.close()
            raise
    sock.settimeout(SEND_TIMEOUT)
    return sock


def _peer_closed(sock: socket.socket, refusal: bool = False) -> bool:
    """Whether a stream receiver has closed its end. Syslog receivers never write, so a
    readable socket means end of stream, a reset, or TLS housekeeping (session tickets),
    which reading without blocking consumes. ``refusal``: a TLS alert is raised (as
    ssl.SSLError, naming the reason) instead of being reported as a closed connection."""
    import ssl

    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    try:
        sock.setblocking(False)
        return not sock.recv(4096)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return False
    except ssl.SSLError:
        if refusal:
            raise
        return True
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(SEND_TIMEOUT)


# --- spool --------------------------------------------------------------------------------
#
# A spool file holds unsent messages in the stream framing: "MSG-LEN SP MSG" repeated. A
# record cut short (a crash while writing) ends the file.


def _spool_name(target: SyslogTarget) -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "_", target.host)
    return f"{target.transport}_{host}_{target.port}.spool"


def read_spool(data: bytes) -> list[bytes]:
    """The messages of a spool file's contents (a truncated last record is left out)."""
    out: list[bytes] = []
    pos, end = 0, len(data)
    while pos < end:  # each pass consumes one record or stops
        space = data.find(b" ", pos, pos + 12)
        if space < 0 or not data[pos:space].isdigit():
            break
        size = int(data[pos:space])
        if space + 1 + size > end:
            break
        out.append(data[space + 1 : space + 1 + size])
        pos = space + 1 + size
    return out


# --- the sink -----------------------------------------------------------------------------


class SyslogSink:
    """One syslog receiver: renders alerts into a bounded queue that a sender thread sends.

    ``handle`` ignores every record but alerts (one message per alert). Call :meth:`start`
    once, in the process that owns the receiver, and :meth:`shutdown` at the end; there is
    deliberately no ``close``: a :class:`~otids.alerts.sinks.SinkSet` of one analysis pass
    must not end a delivery that outlives it.
    """

    def __init__(
        self,
        target: SyslogTarget,
        options: SyslogOptions,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.target = target
        self.options = options
        self.builder = MessageBuilder(options)
        self._tls = tls_context(options) if target.transport == "tls" else None
        self._warn = warn or (lambda msg: None)
        self._queue: queue.Queue[bytes] = queue.Queue(options.queue_size)
        self._replay: collections.deque[bytes] = collections.deque()
        self._inflight: bytes | None = None
        self._finishing = threading.Event()  # drain the queue, then stop
        self._abort = threading.Event()  # stop now
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None  # the sender's connection, for shutdown()
        self._spool_path: Path | None = None
        self._spool_fd: int | None = None
        self._down_since: float | None = None
        self.alerts = 0  # alerts handed to this sink
        self.sent = 0
        self.dropped = 0  # lost: queue full, spool full, or unsent at exit without a spool
        self.spooled = 0  # written to the spool at exit, for the next run
        self.from_spool = 0  # loaded from the previous run's spool
        self.connect_failures = 0
        self.reconnects = 0  # connections lost after being established

    # --- pipeline side ---------------------------------------------------------------------

    def handle(self, record: EveRecord) -> None:
        """Queue one message per alert; drop (and count) when the queue is full."""
        if record.get("event_type") != "alert":
            return
        self.alerts += 1
        try:
            self._queue.put_nowait(self.builder.build(record))
        except queue.Full:
            self.dropped += 1

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Load the spool of a previous run (sent first) and start the sender thread."""
        if self.options.spool_dir:
            self._open_spool(Path(self.options.spool_dir))
        self._thread = threading.Thread(
            target=self._run, name=f"syslog {self.target.url}", daemon=True
        )
        self._thread.start()

    def shutdown(self) -> dict[str, Any]:
        """Give the sender ``drain_timeout`` seconds to send what is queued, stop it, spool
        or count what is left; return this receiver's statistics."""
        thread = self._thread
        if thread is not None:
            self._finishing.set()
            waiting = self._queue.qsize() + len(self._replay)
            if waiting and self._sock is None and self.options.drain_timeout:
                self._warn(
                    f"syslog {self.target.url}: waiting up to {self.options.drain_timeout:g} s"
                    f" for the receiver to take {waiting} queued alert(s)"
                )
            thread.join(self.options.drain_timeout)
            self._abort.set()
            sock = self._sock
            if sock is not None:
                # Unblock a send stuck on a receiver that stopped reading. The plain socket
                # method: SSLSocket.shutdown would tear down TLS state the sender is using.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
            thread.join(CONNECT_TIMEOUT + SEND_TIMEOUT)
            self._thread = None
        left = list(self._replay)
        self._replay.clear()
        if self._inflight is not None:
            left.insert(0, self._inflight)
            self._inflight = None
        for _ in range(self._queue.qsize()):  # bounded: nothing is added any more
            try:
                left.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if self._spool_path is not None:
            self._close_spool(left)
        else:
            self.dropped += len(left)
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """Counters for the ``stats`` record."""
        return {
            "target": self.target.url,
            "format": self.options.format,
            "alerts": self.alerts,
            "sent": self.sent,
            "dropped": self.dropped,
            "spooled": self.spooled,
            "from_spool": self.from_spool,
            "connect_failures": self.connect_failures,
            "reconnects": self.reconnects,
        }

    # --- spool -----------------------------------------------------------------------------

    def _open_spool(self, directory: Path) -> None:
        path = directory / _spool_name(self.target)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            self._warn(f"syslog {self.target.url}: spool {path} unusable ({exc}); not spooling")
            return
        try:
            # One otids per spool file: a second one would replay and rewrite the same
            # messages.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self._warn(f"syslog {self.target.url}: spool {path} is in use; not spooling")
            return
        size = os.fstat(fd).st_size
        data = os.pread(fd, min(size, SPOOL_MAX_BYTES), max(0, size - SPOOL_MAX_BYTES))
        messages = read_spool(data)
        self._replay.extend(messages)
        self.from_spool = len(messages)
        self._spool_path, self._spool_fd = path, fd

    def _close_spool(self, left: list[bytes]) -> None:
        """Rewrite the spool with ``left`` (or remove it when empty) and release it."""
        if self._spool_path is None or self._spool_fd is None:
            return
        path, fd = self._spool_path, self._spool_fd
        keep, size = [], 0
        for message in reversed(left):  # the newest fit; the oldest beyond the bound go
            size += len(message) + 12
            if size > SPOOL_MAX_BYTES:
                break
            keep.append(message)
        keep.reverse()
        self.dropped += len(left) - len(keep)
        try:
            if keep:
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(b"".join(b"%d %b" % (len(m), m) for m in keep))
                os.replace(tmp, path)
            else:
                path.unlink(missing_ok=True)
            self.spooled = len(keep)
        except OSError as exc:
            self._warn(f"syslog {self.target.url}: cannot write spool {path} ({exc})")
            self.dropped += len(keep)
        finally:
            os.close(fd)
            self._spool_fd = None

    # --- sender thread ---------------------------------------------------------------------

    def _next(self) -> bytes | None:
        """The next message to send (the previous run's first), or None when idle."""
        if self._replay:
            return self._replay.popleft()
        try:
            return self._queue.get(timeout=IDLE_POLL)
        except queue.Empty:
            return None

    def _run(self) -> None:
        """Connect, send, reconnect with backoff; until finished and drained, or aborted."""
        import ssl

        sock: socket.socket | None = None
        backoff = RECONNECT_MIN
        stream = self.target.transport != "udp"
        try:
            while not self._abort.is_set():
                if (
                    self._finishing.is_set()
                    and self._inflight is None
                    and not self._replay
                    and self._queue.empty()
                ):
                    break  # nothing left to deliver: do not wait for a receiver that is down
                if sock is None:
                    try:
                        sock = _connect(self.target, self._tls)
                    except (OSError, ssl.SSLError) as exc:
                        self._connect_failed(exc)
                        if self._abort.wait(backoff):
                            break
                        backoff = min(backoff * 2, self.options.reconnect_max)
                        continue
                    backoff = RECONNECT_MIN
                    self._sock = sock
                    self._connected()
                if self._inflight is None:
                    self._inflight = self._next()
                    if self._inflight is None:
                        if stream and _peer_closed(sock):
                            self._lost(sock)
                            sock = None
                        continue
                if stream and _peer_closed(sock):
                    self._lost(sock)
                    sock = None
                    continue
                try:
                    if stream:
                        sock.sendall(_frame("tcp", self._inflight))
                    else:
                        sock.send(_frame("udp", self._inflight))
                except (OSError, ssl.SSLError) as exc:
                    if not stream:
                        # An ICMP error from an earlier datagram: the port was closed. Keep
                        # the message and try again after a pause.
                        self._connect_failed(exc)
                        if self._abort.wait(backoff):
                            break
                        backoff = min(backoff * 2, self.options.reconnect_max)
                        continue
                    self._lost(sock)
                    sock = None
                    continue
                self.sent += 1
                self._inflight = None
                if not stream and self._down_since is not None:
                    self._connected()
                    backoff = RECONNECT_MIN
        finally:
            self._sock = None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()

    def _connect_failed(self, exc: BaseException) -> None:
        self.connect_failures += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._warn(
                f"syslog {self.target.url}: cannot deliver ({exc}); alerts are queued"
                f" (up to {self.options.queue_size}) and sent when it is back"
            )

    def _connected(self) -> None:
        if self._down_since is not None:
            down = time.monotonic() - self._down_since
            self._down_since = None
            self._warn(f"syslog {self.target.url}: delivering again after {down:.1f} s")

    def _lost(self, sock: socket.socket) -> None:
        """The connection died: count it; the caller reconnects."""
        self._sock = None
        with contextlib.suppress(OSError):
            sock.close()
        self.reconnects += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._warn(f"syslog {self.target.url}: connection lost; reconnecting")


# --- worker processes ---------------------------------------------------------------------


class _RelaySink:
    """A forked worker's stand-in for the syslog sinks: passes alerts to the parent."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel

    def handle(self, record: EveRecord) -> None:
        """Send alerts to the parent; other records do not go to syslog."""
        if record.get("event_type") == "alert":
            self._channel.put(record)


class AlertRelay:
    """Carries alerts from forked workers to the parent's syslog sinks.

    Created (with its pipe) before the workers are forked; a thread of the parent reads the
    pipe and hands each alert to every sink, which only queues it, so a worker waits on the
    pipe only as long as the parent takes to queue.
    """

    def __init__(self, sinks: list[SyslogSink]) -> None:
        self._sinks = sinks
        self._pid = os.getpid()
        self._channel = multiprocessing.get_context("fork").SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="syslog relay", daemon=True)
        self._thread.start()

    @property
    def in_parent(self) -> bool:
        """Whether this is the process that created the relay."""
        return os.getpid() == self._pid

    def sink(self) -> _RelaySink:
        """The sink a worker uses in place of the syslog sinks."""
        return _RelaySink(self._channel)

    def _run(self) -> None:
        while True:  # ends on the None close() sends
            record = self._channel.get()
            if record is None:
                return
            for sink in self._sinks:
                try:
                    sink.handle(record)
                except Exception:  # a dead relay thread would block every worker
                    sink.dropped += 1

    def close(self) -> None:
        """Pass on what the (finished) workers sent, then stop the thread."""
        self._channel.put(None)
        self._thread.join(RELAY_JOIN_TIMEOUT)
        self._channel.close()


class SyslogOutputs:
    """The syslog receivers of one run: built and started by the parent, used directly by
    the process that started them and through an :class:`AlertRelay` by forked workers."""

    def __init__(
        self,
        targets: list[SyslogTarget],
        options: SyslogOptions,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.sinks = [SyslogSink(t, options, warn) for t in targets]
        self._relay: AlertRelay | None = None

    def start(self) -> None:
        """Start every receiver's sender and the relay for workers."""
        for sink in self.sinks:
            sink.start()
        self._relay = AlertRelay(self.sinks)

    def process_sinks(self) -> list[Any]:
        """The sinks for the calling process: the receivers themselves in the parent, the
        relay in a forked worker."""
        if self._relay is not None and not self._relay.in_parent:
            return [self._relay.sink()]
        return list(self.sinks)

    def shutdown(self) -> list[dict[str, Any]]:
        """Deliver or spool what is left; return each receiver's statistics."""
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        return [sink.shutdown() for sink in self.sinks]


def dropped_total(outputs_stats: dict[str, Any]) -> int:
    """Alerts lost across every receiver in a ``stats`` record's ``outputs`` object."""
    return sum(row.get("dropped", 0) for row in outputs_stats.get("syslog", []))


class SyslogSummarySink:
    """Prints the receivers' delivery table when the final ``stats`` record comes (the
    console summary's companion)."""

    def __init__(self, stderr: bool = False) -> None:
        self.stderr = stderr

    def handle(self, record: EveRecord) -> None:
        """Print the table of the final statistics' ``outputs.syslog`` rows."""
        if record.get("event_type") != "stats":
            return
        rows = record.get("stats", {}).get("outputs", {}).get("syslog", [])
        if not rows:
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title="Syslog outputs", title_justify="left")
        for name in ("receiver", "format", "sent", "dropped", "spooled", "from spool"):
            table.add_column(name, justify="left" if name in ("receiver", "format") else "right")
        for row in rows:
            table.add_row(
                row["target"],
                row["format"],
                f"{row['sent']:,}",
                f"{row['dropped']:,}",
                f"{row['spooled']:,}",
                f"{row['from_spool']:,}",
                style="bold red" if row["dropped"] else "",
            )
        Console(highlight=False, stderr=self.stderr).print(table)
