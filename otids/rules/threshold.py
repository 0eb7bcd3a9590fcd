"""Which rule matches become alert lines: suppression, thresholds and rate limiting.

A rule's condition says *what* matches; these optional blocks say *how often* a match is
worth a line. Time is the records' capture time, never the wall clock, so reading a capture
twice gives the same alerts. A match goes through three gates, in this order:

``suppress`` (list)
    ``{track: by_src | by_dst | by_either, ip: address, CIDR block, list or $variable}``:
    a match whose source (destination, either) address is listed is dropped before any
    counting. Like Suricata's ``suppress``.

``threshold`` (map)
    ``{track, count, seconds, mode}`` counts matches per *key* in fixed windows: a key's
    window opens at its first match and lasts ``seconds``; the next match after that opens a
    new one. ``track`` chooses the key: ``by_src`` and ``by_dst`` (the record's source and
    destination address: client and server for a transaction), ``by_pair`` (both),
    ``by_unit`` (server address and Modbus unit id or DNP3 destination address), ``by_flow``
    (the connection), ``by_rule`` (one key for the rule). ``mode``:

    * ``once`` (default): one alert per key and window, at the ``count``-th match (Suricata
      ``type both``); the later matches of the window are counted silently;
    * ``every``: an alert for every match from the ``count``-th on (Suricata
      ``detection_filter``);
    * ``limit``: an alert for each of the first ``count`` matches, then silence until the
      window ends (Suricata ``type limit``);
    * ``nth``: an alert at every ``count``-th match of the window (Suricata
      ``type threshold``);
    * ``baseline``: one alert per key and window, at the first match that makes the window
      hold ``count`` matches or more *and* run at ``factor`` (default 10) times the key's
      usual rate: its matches before the window over the time since its first one. A key
      is judged only once known for ``learn`` seconds (default 600): a rate is anomalous
      for a device only against its own history, which a fixed count cannot know.

    A thresholded alert carries ``alert.count`` (matches of the key in the window so far)
    and ``alert.threshold`` (the block, with the key).

rate limit (every rule)
    At most ``RATE_LIMIT_ALERTS`` alerts per rule per ``RATE_LIMIT_SECONDS`` (a rule may set
    its own ``rate_limit: {alerts, seconds}``). The window opens at the rule's first alert;
    further alerts inside it are folded, and when the window has passed one alert stands for
    them all: the last folded match, with ``alert.count`` (how many were folded) and
    ``alert.rate_limit`` (the limit and the first folded match's time). A storm of a million
    matches gives a few lines with counts, not a million lines.

State is bounded: at most ``MAX_THRESHOLD_KEYS`` (rule, key) windows are kept, the oldest
evicted first (an evicted key starts counting again), as many ``baseline`` histories, and
one rate window per rule. Rules with a ``state`` block pass through
:class:`otids.rules.state.RuleState` first (after suppression). With
several worker processes each worker counts the flows it owns: a key whose matches are
spread over flows of different workers is counted per worker.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from otids.capture.flow import Flow
from otids.decode.base import DecoderEvent, Direction, Transaction
from otids.rules.state import RuleState

if TYPE_CHECKING:
    from otids.rules.engine import Rule

MAX_THRESHOLD_KEYS = (
    100_000  # (rule, key) windows kept: a source-address sweep cannot exhaust memory
)
RATE_LIMIT_ALERTS = 1000  # alerts per rule per window before folding: a safety net, not a filter
RATE_LIMIT_SECONDS = 60.0  # the rate window: at most one folded alert per rule per minute

MODES = ("once", "every", "limit", "nth", "baseline")
BASELINE_FACTOR = 10.0  # a window this many times a key's usual rate is anomalous
BASELINE_LEARN_SECONDS = 600.0  # history a key needs before its usual rate is trusted
SUPPRESS_TRACKS = ("by_src", "by_dst", "by_either")

Record = Transaction | DecoderEvent


def _ends(record: Record, flow: Flow) -> tuple[str, str]:
    """(source, destination) address of a record, as the ``src_ip``/``dest_ip`` fields."""
    if isinstance(record, DecoderEvent) and record.direction == Direction.TO_CLIENT:
        return flow.server_str, flow.client_str
    return flow.client_str, flow.server_str


def _unit(record: Record) -> Any:
    tx = record.tx if isinstance(record, DecoderEvent) else record
    if tx is None:
        return None
    # Modbus unit id, DNP3 destination address: the device behind the server address.
    return getattr(tx, "unit_id", None) if tx.protocol == "modbus" else getattr(tx, "dst", None)


# track -> key of a match
TRACKS: dict[str, Callable[[Record, Flow], Hashable]] = {
    "by_src": lambda r, f: _ends(r, f)[0],
    "by_dst": lambda r, f: _ends(r, f)[1],
    "by_pair": _ends,
    "by_unit": lambda r, f: (f.server_str, _unit(r)),
    "by_flow": lambda r, f: f.flow_id,
    "by_rule": lambda r, f: None,
}


@dataclass(frozen=True, slots=True)
class Threshold:
    """A rule's ``threshold`` block."""

    track: str
    count: int
    seconds: float
    mode: str = "once"
    factor: float = BASELINE_FACTOR  # mode baseline only
    learn: float = BASELINE_LEARN_SECONDS  # mode baseline only


@dataclass(frozen=True, slots=True)
class Suppression:
    """One ``suppress`` entry: drop matches whose tracked address is in ``ips``."""

    track: str
    nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

    def drops(self, record: Record, flow: Flow) -> bool:
        """True when this entry suppresses the match."""
        src, dst = _ends(record, flow)
        addrs = (
            (src,) if self.track == "by_src" else (dst,) if self.track == "by_dst" else (src, dst)
        )
        return any(_in(a, self.nets) for a in addrs)


def _in(addr: str, nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False
    return any(ip in n for n in nets)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``alerts`` alerts of a rule per ``seconds``; the rest are folded."""

    alerts: int = RATE_LIMIT_ALERTS
    seconds: float = RATE_LIMIT_SECONDS


DEFAULT_RATE_LIMIT = RateLimit()


class Pending(NamedTuple):
    """An alert to write: the match and the ``alert`` fields to add (count, threshold...)."""

    ts: float
    flow: Flow
    record: Record
    rule: Rule
    app_proto: str
    extra: dict[str, Any]


class _RateWindow:
    __slots__ = ("first_folded", "folded", "last", "passed", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.passed = 0
        self.folded = 0
        self.first_folded = 0.0
        self.last: Pending | None = None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


class AlertGate:
    """The per-pipeline state deciding which matches are written, and when.

    :meth:`admit` is called for each rule match and returns the alerts to write now (zero,
    one, or a folded summary followed by the new alert); :meth:`due` at housekeeping returns
    the folded summaries whose window has passed; :meth:`drain` at the end returns the rest.
    """

    def __init__(self, max_keys: int = MAX_THRESHOLD_KEYS) -> None:
        self.max_keys = max_keys
        # (sid, key) -> [window start, matches]; insertion order is window-start order
        self._windows: dict[tuple[int, Hashable], list[float]] = {}
        self._rates: dict[int, _RateWindow] = {}
        # (sid, key) -> [first match, matches so far, start of the window that fired]: the
        # history of ``mode: baseline`` keys, kept across windows; insertion order
        self._usual: dict[tuple[int, Hashable], list[float]] = {}
        self.suppressed = 0
        self.thresholded = 0
        self.folded = 0
        # What rules with a ``state`` block track across records (timers, written values).
        self.state = RuleState()

    def admit(
        self, rule: Rule, record: Record, flow: Flow, ts: float, app_proto: str
    ) -> list[Pending]:
        """The alerts to write for one match of ``rule``."""
        for sup in rule.suppress:
            if sup.drops(record, flow):
                self.suppressed += 1
                return []
        if rule.state is None:
            return self._limit(rule, record, flow, ts, app_proto, {})
        fired = self.state.observe(rule, record, flow, ts, app_proto)
        if fired is None:
            return []
        return self._limit(rule, record, flow, ts, app_proto, fired)

    def _limit(
        self,
        rule: Rule,
        record: Record,
        flow: Flow,
        ts: float,
        app_proto: str,
        extra: dict[str, Any],
    ) -> list[Pending]:
        """The threshold and rate-limit gates of a match that passed suppression (and its
        rule's state, whose fields ``extra`` holds)."""
        th = rule.threshold
        if th is not None:
            key = TRACKS[th.track](record, flow)
            n = self._count(rule.sid, key, th.seconds, ts)
            usual: float | None = None
            if th.mode == "once":
                fire = n == th.count
            elif th.mode == "every":
                fire = n >= th.count
            elif th.mode == "limit":
                fire = n <= th.count
            elif th.mode == "nth":
                fire = n % th.count == 0
            else:
                usual = self._usual_rate(rule.sid, key, th, ts, n)
                fire = usual is not None
            if not fire:
                self.thresholded += 1
                return []
            block: dict[str, Any] = {
                "track": th.track,
                "key": list(key) if isinstance(key, tuple) else key,
                "count": th.count,
                "seconds": th.seconds,
                "mode": th.mode,
            }
            if usual is not None:
                block.update(factor=th.factor, learn=th.learn, usual_per_minute=usual * 60)
            extra = {**extra, "count": n, "threshold": block}
        return self._rate(Pending(ts, flow, record, rule, app_proto, extra))

    def _usual_rate(
        self, sid: int, key: Hashable, th: Threshold, ts: float, n: int
    ) -> float | None:
        """``mode: baseline``: count the match in the key's history; when it makes the
        window anomalous (``count`` matches or more, at ``factor`` times the usual rate of a
        key known for ``learn`` seconds), the usual rate (matches per second); else None.
        Fires once per window."""
        wkey = (sid, key)
        history = self._usual.get(wkey)
        if history is None:
            if len(self._usual) >= self.max_keys:
                del self._usual[next(iter(self._usual))]
            history = self._usual[wkey] = [ts, 0.0, -1.0]
        history[1] += 1
        start = self._windows[wkey][0]
        known = start - history[0]
        if n < th.count or history[2] == start or known < th.learn:
            return None
        usual = (history[1] - n) / known  # matches per second before this window
        if n / th.seconds < th.factor * usual:
            return None
        history[2] = start
        return usual

    def _count(self, sid: int, key: Hashable, seconds: float, ts: float) -> int:
        wkey = (sid, key)
        win = self._windows.get(wkey)
        if win is None or ts >= win[0] + seconds:
            if win is not None:
                del self._windows[wkey]  # reinserted last: the order stays by window start
            elif len(self._windows) >= self.max_keys:
                del self._windows[next(iter(self._windows))]
            win = self._windows[wkey] = [ts, 0.0, seconds]
        win[1] += 1
        return int(win[1])

    def _rate(self, alert: Pending) -> list[Pending]:
        limit = alert.rule.rate_limit
        sid = alert.rule.sid
        win = self._rates.get(sid)
        out: list[Pending] = []
        if win is None or alert.ts >= win.start + limit.seconds:
            if win is not None and win.folded:
                out.append(self._summary(win))
            win = self._rates[sid] = _RateWindow(alert.ts)
        if win.passed < limit.alerts:
            win.passed += 1
            out.append(alert)
        else:
            if not win.folded:
                win.first_folded = alert.ts
            win.folded += 1
            win.last = alert
            self.folded += 1
        return out

    def _summary(self, win: _RateWindow) -> Pending:
        last = win.last
        assert last is not None  # folded > 0
        limit = last.rule.rate_limit
        extra = {
            **last.extra,
            "count": win.folded,
            "rate_limit": {
                "alerts": limit.alerts,
                "seconds": limit.seconds,
                "first_timestamp": _iso(win.first_folded),
            },
        }
        win.folded = 0
        win.last = None
        return last._replace(extra=extra)

    def due(self, now: float) -> list[Pending]:
        """Folded summaries whose rate window has passed, and alerts of state rules whose
        time has come (no response within N seconds); forgets expired threshold windows."""
        out = [
            self._summary(w)
            for w in self._rates.values()
            if w.folded and now >= w.start + w.last.rule.rate_limit.seconds  # type: ignore[union-attr]
        ]
        for fired in self.state.expired(now):
            out.extend(self._limit(*fired))
        windows = self._windows
        while windows:  # oldest first; stops at the first still-open window
            wkey = next(iter(windows))
            start, _, seconds = windows[wkey]
            if now < start + seconds:
                break
            del windows[wkey]
        return out

    def drain(self, now: float | None = None) -> list[Pending]:
        """At the end of the capture (``now``; default the latest time the gate saw): the
        overdue state alerts, then every folded summary still held."""
        out: list[Pending] = []
        for fired in self.state.drain(now):
            out.extend(self._limit(*fired))
        return out + [self._summary(w) for w in self._rates.values() if w.folded]


def parse_limits(
    data: dict[str, Any],
    variables: dict[str, list[Any]],
    problem: Callable[[tuple[Any, ...], str], None],
    missing: set[str],
) -> tuple[Threshold | None, tuple[Suppression, ...], RateLimit]:
    """Validate and build a rule's ``threshold``, ``suppress`` and ``rate_limit`` blocks.

    Problems go to ``problem(path, reason)``; undefined ``$variables`` go to ``missing``.
    """
    return (
        _parse_threshold(data.get("threshold"), problem),
        _parse_suppress(data.get("suppress"), variables, problem, missing),
        _parse_rate(data.get("rate_limit"), problem),
    )


def _positive(value: Any, integer: bool) -> bool:
    kinds = (int,) if integer else (int, float)
    return isinstance(value, kinds) and not isinstance(value, bool) and value > 0


def _check_keys(
    block: Any, name: str, allowed: tuple[str, ...], problem: Callable[..., None]
) -> bool:
    if not isinstance(block, dict):
        problem((name,), f"{name} must be a map of {', '.join(allowed)}")
        return False
    ok = True
    for key in block:
        if key not in allowed:
            problem((name, key), f"unknown {name} key {key!r} (known: {', '.join(allowed)})")
            ok = False
    return ok


def _parse_threshold(block: Any, problem: Callable[..., None]) -> Threshold | None:
    if block is None:
        return None
    keys = ("track", "count", "seconds", "mode", "factor", "learn")
    if not _check_keys(block, "threshold", keys, problem):
        return None
    ok = True
    track, count = block.get("track"), block.get("count")
    seconds, mode = block.get("seconds"), block.get("mode", "once")
    if track not in TRACKS:
        problem(("threshold", "track"), f"track must be one of {', '.join(TRACKS)}, got {track!r}")
        ok = False
    if not _positive(count, integer=True):
        problem(("threshold", "count"), f"count must be a positive integer, got {count!r}")
        ok = False
    if not _positive(seconds, integer=False):
        problem(("threshold", "seconds"), f"seconds must be a positive number, got {seconds!r}")
        ok = False
    if mode not in MODES:
        problem(("threshold", "mode"), f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        ok = False
    factor = block.get("factor", BASELINE_FACTOR)
    learn = block.get("learn", BASELINE_LEARN_SECONDS)
    for name in ("factor", "learn"):
        if name in block and mode != "baseline":
            problem(("threshold", name), f"{name} applies to mode baseline only")
            ok = False
    if not _positive(factor, integer=False):
        problem(("threshold", "factor"), f"factor must be a positive number, got {factor!r}")
        ok = False
    if not (_positive(learn, integer=False) or (learn == 0 and not isinstance(learn, bool))):
        problem(("threshold", "learn"), f"learn must be a number of seconds, got {learn!r}")
        ok = False
    if not ok:
        return None
    return Threshold(track, count, float(seconds), mode, float(factor), float(learn))


def _parse_suppress(
    block: Any,
    variables: dict[str, list[Any]],
    problem: Callable[..., None],
    missing: set[str],
) -> tuple[Suppression, ...]:
    if block is None:
        return ()
    if not isinstance(block, list):
        problem(("suppress",), "suppress must be a list of {track, ip}")
        return ()
    out: list[Suppression] = []
    for i, entry in enumerate(block):
        path = ("suppress", i)
        if not isinstance(entry, dict) or set(entry) != {"track", "ip"}:
            problem(path, "a suppress entry is a map of exactly track and ip")
            continue
        if entry["track"] not in SUPPRESS_TRACKS:
            problem(
                (*path, "track"),
                f"track must be one of {', '.join(SUPPRESS_TRACKS)}, got {entry['track']!r}",
            )
            continue
        ips: list[str] = []
        for v in entry["ip"] if isinstance(entry["ip"], list) else [entry["ip"]]:
            if isinstance(v, str) and v.startswith("$"):
                if v[1:] not in variables:
                    missing.add(v[1:])
                    continue
                ips.extend(str(x) for x in variables[v[1:]])
            else:
                ips.append(str(v))
        bad = [ip for ip in ips if not _valid_block(ip)]
        if bad:
            problem((*path, "ip"), f"not an address or CIDR block: {', '.join(bad)}")
            continue
        nets = tuple(ipaddress.ip_network(ip, strict=False) for ip in ips)
        out.append(Suppression(entry["track"], nets))
    return tuple(out)


def _valid_block(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _parse_rate(block: Any, problem: Callable[..., None]) -> RateLimit:
    if block is None:
        return DEFAULT_RATE_LIMIT
    if not _check_keys(block, "rate_limit", ("alerts", "seconds"), problem):
        return DEFAULT_RATE_LIMIT
    alerts = block.get("alerts", RATE_LIMIT_ALERTS)
    seconds = block.get("seconds", RATE_LIMIT_SECONDS)
    if not _positive(alerts, integer=True):
        problem(("rate_limit", "alerts"), f"alerts must be a positive integer, got {alerts!r}")
        return DEFAULT_RATE_LIMIT
    if not _positive(seconds, integer=False):
        problem(("rate_limit", "seconds"), f"seconds must be a positive number, got {seconds!r}")
        return DEFAULT_RATE_LIMIT
    return RateLimit(alerts, float(seconds))
