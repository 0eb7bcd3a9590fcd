"""Stateful rule options: the ``state`` block.

A rule's detection says which transactions it watches; an optional ``state`` block makes
the rule fire on what happens *between* transactions instead of on one alone. Exactly one
kind per rule: ``no_response_within`` (a request unanswered after a delay),
``write_readback: changed`` (Modbus, DNP3 analog outputs: a read shows another value than
a write set) and
``unsolicited: unconfirmed`` (DNP3: an unsolicited response sent before the previous one
was confirmed). :data:`STATE_DOCS` (the rule-writing guide's section) gives the semantics.

The loader validates the block (:func:`parse_state`) and wraps the rule's matcher
(:meth:`StateSpec.wrap`); the per-pipeline :class:`otids.rules.threshold.AlertGate` hands
every match of such a rule to its :class:`RuleState`, which decides whether and when it
becomes an alert. Memory is bounded by the limits below; what is shed or evicted is
counted.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any
from weakref import ref

from otids.capture.flow import Flow
from otids.decode.base import DecoderEvent, Transaction
from otids.decode.dnp3.functions import FunctionCode
from otids.decode.dnp3.iin import REQUEST_ERRORS
from otids.decode.dnp3.objects import Dnp3Object
from otids.decode.dnp3.transaction import APP_UNS, Dnp3Transaction
from otids.decode.modbus.transaction import ModbusTransaction

if TYPE_CHECKING:
    from otids.rules.engine import Matcher, Rule
    from otids.rules.fields import EvalContext

# For a transaction pending or done: (can the rule match it, the test left on the record's
# context, a test left on the transaction alone; None: no test).
Phase = tuple[bool, "Matcher | None", "Callable[[Any], bool] | None"]

# Requests awaiting their deadline (10,000 requests a second for 5 s); more start no timer.
MAX_PENDING_TIMERS = 50_000
MAX_WRITTEN_POINTS = 100_000  # remembered written addresses: a write sweep cannot exhaust memory
MAX_UNSOLICITED_KEYS = 10_000  # (flow, outstation, master) pairs awaiting a confirm
MAX_REPORTED_POINTS = 16  # differing addresses listed in one alert; the rest only counted

KINDS: dict[str, str] = {
    "no_response_within": "a duration: 500ms, 5s, 2m or a number of seconds",
    "write_readback": "changed",
    "unsolicited": "unconfirmed",
}
"""State kind -> the value it takes (for the guide and the loader's messages)."""

STATE_DOCS = """\
An optional `state` block makes a transaction rule fire on what happens *between*
transactions. It holds exactly one of the kinds below. The detection still chooses the
transactions the state watches; `suppress`, `threshold` and `rate_limit` apply to what the
state lets through.

```yaml
state:
  no_response_within: 5s      # 500ms, 5s, 2m, or a number of seconds
```

The detection picks requests (test request fields). A request still unanswered that many
seconds of capture time after it was sent fires once, at its deadline, whether it is still
pending or was given up (flow end, flood, reused id); the alert's `state.request_timestamp`
is when it was sent. Requests that expect no answer (DNP3 confirms, no-ack functions,
broadcasts) never fire. At the end of a capture, unanswered requests older than the delay
fire too.

```yaml
state:
  write_readback: changed     # Modbus, DNP3
```

The detection picks the writes to remember and the reads to compare, e.g.
`modbus.function: [1, 3, 5, 6, 15, 16, 22, 23]`. A write answered without exception sets,
per server address, unit, table and address, the value written (22, mask write register:
the bits its masks fix). A later read of the same table (1: coils; 3 and 23: holding
registers; functions 2 and 4 read tables nothing writes), asked for after the write was
answered, that shows another value fires. The alert's `state.points` lists each changed
address with `written`, `read`, `written_by` and `written_at`. A changed address is
reported once and forgotten; one read back as written stays watched, so a later change is
caught too.

On DNP3 (analog outputs) the detection is `dnp3.func: [1, 4, 5, 6]`. An operate (4, after
its select) or direct operate (5) of analog output blocks (g41v1-4) sets, per server
address, outstation (link address) and point index, the value written, once answered with
no IIN2 error bit, and only for the points echoed with control status 0. A direct operate
without acknowledgement (6) gets no answer: it is remembered as sent (a silently refused
one then shows as changed). A later read response (1) with analog output status (g40),
asked for after the write was answered, that shows another value fires as above; the
alert's `state` has `outstation`, `table: analog_output` and `points` with `index` instead
of `address`. Binary outputs (CROB, g12 then g10) are not compared.

```yaml
state:
  unsolicited: unconfirmed    # DNP3
```

The detection picks unsolicited responses and confirms (`dnp3.func: [0, 130]`). An
unsolicited response sent while the previous one from the same outstation still awaits the
master's confirm (or one asking for no confirm) fires: a conforming outstation waits for
the confirm, or its confirm timeout, before sending the next. Add a `threshold` to catch
storms.
"""
"""The ``state`` section of the rule-writing guide."""

STATE_LIMITS = (
    f"At most {MAX_PENDING_TIMERS} requests await their deadline (more start no timer), "
    f"{MAX_WRITTEN_POINTS} written addresses are remembered (oldest evicted) and "
    f"{MAX_UNSOLICITED_KEYS} outstations await a confirm (oldest forgotten)."
)
"""The state limits, for the guide."""

# Kind -> the protocols it can watch (the loader rejects other rules).
KIND_PROTOCOLS: dict[str, tuple[str, ...]] = {
    "no_response_within": ("modbus", "dnp3"),
    "write_readback": ("modbus", "dnp3"),
    "unsolicited": ("dnp3",),
}

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

# Modbus tables both written and read (discrete inputs and input registers, read by 2 and
# 4, are written by no function: a value read there says nothing about a write).
_READBACK_TABLES = frozenset({"coils", "holding"})
_REGISTER_MASK = 0xFFFF
_COIL_MASK = 1

# DNP3 writes remembered: function -> does the outstation answer it? Operate (after its
# select) and direct operate are remembered once answered without error; direct operate
# without acknowledgement gets no answer, so it is remembered as sent (see STATE_DOCS).
_DNP3_WRITES: dict[int, bool] = {
    FunctionCode.OPERATE: True,
    FunctionCode.DIRECT_OPERATE: True,
    FunctionCode.DIRECT_OPERATE_NR: False,
}
_DNP3_READ = int(FunctionCode.READ)
_DNP3_REQUEST_ERRORS = int(REQUEST_ERRORS)
# Command object group -> (the status group a read shows it in, the table's name in alerts).
_DNP3_OUTPUTS: dict[int, tuple[int, str]] = {41: (40, "analog_output")}
# Status group -> table name: which objects of a read response are compared.
_DNP3_STATUS: dict[int, str] = {status: table for status, table in _DNP3_OUTPUTS.values()}
_DNP3_STATUS_GROUPS = frozenset(_DNP3_STATUS)
_GROUP = attrgetter("group")
_DNP3_LAST_START_STOP = 2  # range codes 0-2: start and stop indexes (1, 2, 4 octets)
_DNP3_STATUS_OK = 0  # control status "success" of an echoed command (IEEE 1815-2012, 11.9.8)

Record = Transaction | DecoderEvent


def _answered_modbus(tx: ModbusTransaction) -> bool:
    return tx.response_ts is not None


def _answered_dnp3(tx: Dnp3Transaction) -> bool:
    return bool(tx.responses)


# protocol -> has the transaction received a response?
ANSWERED: dict[str, Callable[[Any], bool]] = {
    "modbus": _answered_modbus,
    "dnp3": _answered_dnp3,
}


def _given_up_dnp3(tx: Dnp3Transaction) -> bool:
    return tx.unanswered  # not set on requests that expect no response


# protocol -> was this done transaction a request given up without response?
GIVEN_UP: dict[str, Callable[[Any], bool]] = {
    "modbus": lambda tx: tx.response_ts is None,
    "dnp3": _given_up_dnp3,
}


def parse_duration(value: Any) -> float | None:
    """Seconds from ``5``, ``2.5``, ``"500ms"``, ``"5s"``, ``"2m"``; None if not a positive
    duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        return None
    return seconds if seconds > 0 else None


@dataclass(frozen=True, slots=True)
class StateSpec:
    """A rule's ``state`` block: its ``kind`` and, for a timeout, the ``seconds``."""

    kind: str
    seconds: float = 0.0
    protocol: str = ""  # the protocol of the rule's transactions

    def phases(
        self, test: Matcher | None, tx_test: Callable[[Any], bool] | None
    ) -> tuple[Phase, Phase]:
        """How the rule treats a transaction still pending, and one done: whether it can
        match it, and the tests left to run. ``test`` (on the context) and ``tx_test`` (on
        the transaction) are what is left of the detection; both None when the engine's
        index lookup decided it."""
        if self.kind == "no_response_within":
            # A request starts a timer. Once done, it matters again only when given up
            # unanswered (its dissector drops it, the timer must keep it): an answered one
            # costs the gate nothing, and the test needs no context built.
            return (True, test, tx_test), (True, None, GIVEN_UP[self.protocol])
        # Kinds that look at responses match a transaction once it is done: the engine fires
        # a rule once per transaction, so matching the bare request would hand the gate a
        # transaction without its response.
        return (False, None, None), (True, test, tx_test)

    def wrap(self, matcher: Matcher) -> Matcher:
        """The rule's matcher: the detection's ``matcher`` under :meth:`phases`."""
        pending, done = self.phases(matcher, None)

        def wrapped(ctx: EvalContext) -> bool:
            tx = ctx.tx
            if tx is None:
                return False
            ok, test, tx_test = done if tx.done else pending
            return ok and (tx_test is None or tx_test(tx)) and (test is None or test(ctx))

        return wrapped

    def describe(self) -> dict[str, Any]:
        """The block as written in an alert's ``state``."""
        if self.kind == "no_response_within":
            return {"no_response_within": self.seconds}
        return {self.kind: KINDS[self.kind]}


def parse_state(
    block: Any,
    kind: str,
    protocol: str | None,
    problem: Callable[[tuple[Any, ...], str], None],
) -> StateSpec | None:
    """Validate a rule's ``state`` block against the rule's kind and protocol."""
    if block is None:
        return None
    known = ", ".join(KINDS)
    if not isinstance(block, dict) or len(block) != 1:
        problem(("state",), f"state must be a map of exactly one of: {known}")
        return None
    ((name, value),) = block.items()
    if name not in KINDS:
        problem(("state", name), f"unknown state {name!r} (known: {known})")
        return None
    spec: StateSpec | None = None
    if name == "no_response_within":
        seconds = parse_duration(value)
        if seconds is None:
            problem(("state", name), f"no_response_within takes {KINDS[name]}, got {value!r}")
        else:
            spec = StateSpec(name, seconds, protocol or "")
    elif value != KINDS[name]:
        problem(("state", name), f"{name} takes {KINDS[name]!r}, got {value!r}")
    else:
        spec = StateSpec(name, protocol=protocol or "")
    if kind and kind != "transaction":
        problem(("state",), "state applies to transaction rules, not to decoder events")
        return None
    allowed = KIND_PROTOCOLS[name]
    if kind and protocol not in allowed:
        problem(
            ("state",),
            f"state {name} needs a rule on {' or '.join(allowed)} transactions "
            f"(test one of its fields), this one is on {protocol or 'no protocol'}",
        )
        return None
    return spec


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


# A running no-response timer: (deadline, the request or a weak reference to it, rule,
# flow, app_proto).
_Timer = tuple[float, Any, "Rule", Flow, str]

# A match the gate passes on to thresholds and rate limits:
# (rule, record, flow, alert time, app_proto, the alert's extra fields).
Fired = tuple["Rule", Record, Flow, float, str, dict[str, Any]]


class _Write:
    """What the addresses one write set share (one object per write, not per address)."""

    __slots__ = ("mask", "ts", "writer")

    def __init__(self, mask: int, ts: float, writer: str) -> None:
        self.mask = mask  # bits the write fixed (a mask write fixes only some)
        self.ts = ts  # reads asked for from then on must show the values
        self.writer = writer  # the client that wrote them


class _Group:
    """The written addresses of one table of one device."""

    __slots__ = ("hi", "lo", "values")

    def __init__(self) -> None:
        self.values: dict[int, tuple[int, _Write]] = {}  # address -> (value written, write)
        # Bounds of every address ever written here (kept when some are forgotten): most
        # reads of a device with setpoints are of other addresses, and skip the lookups.
        self.lo = 0x10000
        self.hi = 0


# (server address, unit, table) -> its written addresses
_Points = dict[tuple[str, int, str], _Group]


def _readback_state(
    count: int, changed: list[dict[str, Any]], device: tuple[str, int], table: str
) -> dict[str, Any] | None:
    """The alert's ``state`` for ``count`` changed points (None when none changed);
    ``device``: the field naming where they were read (Modbus unit, DNP3 outstation)."""
    if not count:
        return None
    name, value = device
    return {
        "state": {
            "write_readback": "changed",
            name: value,
            "table": table,
            "changed": count,
            "points": changed,
        }
    }


class RuleState:
    """The state of every rule with a ``state`` block, for one pipeline.

    :meth:`observe` takes each match of such a rule and returns the alert's extra fields
    when it fires now (None otherwise); :meth:`expired` returns the no-response timers whose
    deadline has passed without a response; :meth:`drain` those left at the end.
    """

    def __init__(
        self,
        max_timers: int = MAX_PENDING_TIMERS,
        max_points: int = MAX_WRITTEN_POINTS,
        max_unsolicited: int = MAX_UNSOLICITED_KEYS,
    ) -> None:
        self.max_timers = max_timers
        self.max_points = max_points
        self.max_unsolicited = max_unsolicited
        # sid -> timers in deadline order (one duration per rule, requests come in capture
        # time order). A timer holds its request by a weak reference when the class allows
        # one: an answered request is then freed as soon as its dissector drops it, instead
        # of living for the whole delay (which costs more than the rest of the feature).
        self._deadlines: dict[int, deque[_Timer]] = {}
        # id(tx) -> (deadline, tx): requests given up unanswered, kept alive for their timer
        self._given_up: dict[int, tuple[float, Transaction]] = {}
        self.timers = 0  # running
        self.timers_shed = 0  # not started: MAX_PENDING_TIMERS reached
        self._points: dict[int, _Points] = {}  # sid -> written values
        self.points = 0
        self.points_evicted = 0
        # (flow id, outstation, master) -> sequence of the unsolicited response awaiting its
        # confirm
        self._awaiting: dict[tuple[int, int, int], int] = {}
        self.unsolicited_evicted = 0
        self.now = 0.0  # latest capture time seen

    # --- dispatch ---------------------------------------------------------------------------

    def observe(
        self, rule: Rule, record: Record, flow: Flow, ts: float, app_proto: str
    ) -> dict[str, Any] | None:
        """A match of a state rule: the alert's extra fields if it fires now, else None."""
        spec = rule.state
        if spec is None or not isinstance(record, Transaction):
            return None
        if ts > self.now:
            self.now = ts
        if spec.kind == "no_response_within":
            self._timer(spec, rule, record, flow, app_proto)
            return None
        if spec.kind == "write_readback":
            if isinstance(record, ModbusTransaction):
                return self._readback(rule, record, flow)
            if isinstance(record, Dnp3Transaction):
                return self._readback_dnp3(rule, record, flow)
            return None
        if isinstance(record, Dnp3Transaction):
            return self._unsolicited(spec, record, flow)
        return None

    # --- no response within N seconds ---------------------------------------------------------

    def _timer(
        self, spec: StateSpec, rule: Rule, tx: Transaction, flow: Flow, app_proto: str
    ) -> None:
        """Start the timer of a request; keep a request given up alive for it."""
        deadline = tx.ts + spec.seconds
        if tx.done:  # given up unanswered (the only done ones the rule's matcher passes)
            if deadline > self.now and len(self._given_up) < self.max_timers:
                self._given_up[id(tx)] = (deadline, tx)
            return
        if self.timers >= self.max_timers:
            self.timers_shed += 1
            return
        queue = self._deadlines.get(rule.sid)
        if queue is None:
            queue = self._deadlines[rule.sid] = deque()
        handle = ref(tx) if type(tx).__weakrefoffset__ else tx
        queue.append((deadline, handle, rule, flow, app_proto))
        self.timers += 1
        # The rule has not fired: out of the transaction's ``alerted`` set, it sees the
        # transaction again when it is done, in case it is given up.
        tx.alerted.discard(rule.sid)

    def expired(self, now: float) -> list[Fired]:
        """The timers due by ``now`` whose request got no response, as matches to gate."""
        if now > self.now:
            self.now = now
        out: list[Fired] = []
        for queue in self._deadlines.values():
            # Each turn removes a timer: bounded by the queue's length.
            while queue and queue[0][0] <= now:
                deadline, handle, rule, flow, app_proto = queue.popleft()
                self.timers -= 1
                tx = handle() if type(handle) is ref else handle
                if tx is None:
                    continue  # freed: done and dropped, so answered (given up: kept alive)
                if not ANSWERED[tx.protocol](tx):
                    out.append(self._overdue(deadline, rule, tx, flow, app_proto))
        if self._given_up:  # their timers have fired by now
            for key in [k for k, (deadline, _) in self._given_up.items() if deadline <= now]:
                del self._given_up[key]
        return out

    def drain(self, now: float | None = None) -> list[Fired]:
        """At the end of the capture (``now``, default the latest time seen): the overdue
        unanswered requests; the timers still running are dropped."""
        out = self.expired(self.now if now is None else now)
        for queue in self._deadlines.values():
            queue.clear()
        self._given_up.clear()
        self.timers = 0
        return out

    @staticmethod
    def _overdue(deadline: float, rule: Rule, tx: Transaction, flow: Flow, app: str) -> Fired:
        assert rule.state is not None  # only state rules start timers
        state = {**rule.state.describe(), "request_timestamp": _iso(tx.ts)}
        return rule, tx, flow, deadline, app, {"state": state}

    # --- write then read back ---------------------------------------------------------------

    def _readback(self, rule: Rule, tx: ModbusTransaction, flow: Flow) -> dict[str, Any] | None:
        access = tx.access
        points = self._points.get(rule.sid)
        if access == "read" and not points:
            return None  # nothing written yet: the common case of a poll, kept cheap
        if tx.exception_code is not None or tx.response_ts is None or tx.request_ts is None:
            return None  # a refused or unanswered write changed nothing we know of
        table = tx.table
        if table not in _READBACK_TABLES:
            return None
        if points is None:
            points = self._points[rule.sid] = {}
        key = (flow.server_str, tx.unit_id, table)
        if access == "write" or access == "read_write":
            # 23 writes before it reads: its own read must show its write.
            when = tx.request_ts if access == "read_write" else tx.response_ts
            self._remember(points, key, tx, when, flow.client_str)
        if access == "read" or access == "read_write":
            return self._compare(points, key, tx, table)
        return None

    def _remember(
        self, points: _Points, key: tuple[str, int, str], tx: ModbusTransaction, ts: float, who: str
    ) -> None:
        start = tx.write_address if tx.function_code == 23 else tx.address
        if start is None:
            return
        if tx.function_code == 22:  # mask write: bits outside the AND mask are set from OR
            if tx.and_mask is None or tx.or_mask is None:
                return
            mask = ~tx.and_mask & _REGISTER_MASK
            values = [tx.or_mask & mask]
        else:
            if not tx.request_values:
                return
            mask = _COIL_MASK if key[2] == "coils" else _REGISTER_MASK
            values = tx.request_values
        group = points.get(key)
        if group is None:
            group = points[key] = _Group()
        written = group.values
        before = len(written)
        write = _Write(mask, ts, who)
        stop = start + len(values)
        if stop == start + 1:  # most writes set one coil or register (5, 6): no iterators
            written[start] = (values[0], write)
        else:
            # One C-level pass (at most 1968 coils or 123 registers per write); enumerate
            # numbers the addresses at half the cost of a strict zip with a range.
            written.update(enumerate(zip(values, repeat(write)), start))
        if start < group.lo:
            group.lo = start
        if stop > group.hi:
            group.hi = stop
        self.points += len(written) - before
        self._evict(points)

    def _forget(
        self,
        written_at: dict[int, tuple[int, _Write]],
        changed: list[dict[str, Any]],
        label: str,
        at: int,
        read: int,
    ) -> None:
        """A point read back changed: forget its write (it is reported once) and list it in
        ``changed`` under ``label`` (Modbus ``address``, DNP3 ``index``), up to
        :data:`MAX_REPORTED_POINTS`."""
        written, write = written_at.pop(at)
        self.points -= 1
        if len(changed) < MAX_REPORTED_POINTS:
            changed.append(
                {
                    label: at,
                    "written": written,
                    "read": read,
                    "written_by": write.writer,
                    "written_at": _iso(write.ts),
                }
            )

    def _evict(self, points: _Points) -> None:
        """Forget the oldest written addresses beyond :attr:`max_points`."""
        while self.points > self.max_points:  # one eviction per turn: bounded by the excess
            oldest_key = next(iter(points))
            oldest = points[oldest_key].values
            del oldest[next(iter(oldest))]
            if not oldest:
                del points[oldest_key]
            self.points -= 1
            self.points_evicted += 1

    def _compare(
        self, points: _Points, key: tuple[str, int, str], tx: ModbusTransaction, table: str
    ) -> dict[str, Any] | None:
        group = points.get(key)
        values = tx.response_values
        base = tx.address
        if group is None or not values or base is None:
            return None
        n = len(values)
        if base >= group.hi or base + n <= group.lo:
            return None  # reads nothing ever written
        asked = tx.request_ts
        assert asked is not None  # checked by the caller
        written_at = group.values
        # Walk whichever is smaller: the written addresses or the values read.
        candidates: list[tuple[int, tuple[int, _Write]]]
        if len(written_at) <= n:
            candidates = [(a, w) for a, w in written_at.items() if 0 <= a - base < n]
        else:
            get = written_at.get
            candidates = [(base + i, w) for i in range(n) if (w := get(base + i)) is not None]
        changed: list[dict[str, Any]] = []
        count = 0
        for address, (written, write) in candidates:
            read = values[address - base]
            if write.ts > asked or not (read ^ written) & write.mask:
                continue
            count += 1
            self._forget(written_at, changed, "address", address, read)
        if not written_at:
            del points[key]
        return _readback_state(count, changed, ("unit", tx.unit_id), table)

    # --- DNP3: analog output commands, then analog output status read back ---------------------

    def _readback_dnp3(self, rule: Rule, tx: Dnp3Transaction, flow: Flow) -> dict[str, Any] | None:
        """Remember the outputs a command set; compare those a read response shows.

        Parsed objects and their points may be shared with other transactions (caches):
        they are only read here, never changed.
        """
        points = self._points.get(rule.sid)
        requests = tx.requests
        if not requests:
            return None
        request = requests[0]
        function = request.function
        if function == _DNP3_READ:
            if not points:
                return None  # nothing written yet: the common case of a poll, kept cheap
            # Most reads (event polls) show no output status: the headers' groups are checked
            # at C speed (map, isdisjoint) before any object is looked at in Python.
            responses = tx.responses
            for msg in responses:
                if not _DNP3_STATUS_GROUPS.isdisjoint(map(_GROUP, msg.objects)):
                    break
            else:
                return None
            shown = [obj for msg in responses for obj in msg.objects if obj.group in _DNP3_STATUS]
            return self._compare_dnp3(points, request.dst, request.ts, shown, flow)
        answered = _DNP3_WRITES.get(function)
        if answered is None:
            return None
        if answered:
            response = tx.response
            if response is None or response.iin is None or response.iin & _DNP3_REQUEST_ERRORS:
                return None  # refused or unanswered: changed nothing we know of
            # The echo says, per point, whether the outstation accepted the command.
            accepted = {
                p["index"]: p.get("control_status")
                for obj in response.objects
                if obj.group in _DNP3_OUTPUTS
                for p in obj.points
            }
            when = tx.responses[-1].ts
        else:
            accepted = None
            when = request.ts
        write = _Write(0, when, flow.client_str)
        for obj in request.objects:
            output = _DNP3_OUTPUTS.get(obj.group)
            if output is None:
                continue
            if points is None:
                points = self._points[rule.sid] = {}
            key = (flow.server_str, request.dst, output[1])
            for p in obj.points:
                index = p["index"]
                if accepted is not None and accepted.get(index) != _DNP3_STATUS_OK:
                    continue
                value = p.get("value")
                if value is None:
                    continue
                group = points.get(key)
                if group is None:
                    group = points[key] = _Group()
                if index not in group.values:
                    self.points += 1
                group.values[index] = (value, write)
                if index < group.lo:
                    group.lo = index
                if index >= group.hi:
                    group.hi = index + 1
        if points is not None:
            self._evict(points)
        return None

    def _compare_dnp3(
        self, points: _Points, outstation: int, asked: float, shown: list[Dnp3Object], flow: Flow
    ) -> dict[str, Any] | None:
        """Compare the output status objects ``shown`` by a read response with the writes."""
        server = flow.server_str
        changed: list[dict[str, Any]] = []
        count = 0
        table = ""
        for obj in shown:
            name = _DNP3_STATUS[obj.group]
            key = (server, outstation, name)
            group = points.get(key)
            if group is None or (
                obj.range_code <= _DNP3_LAST_START_STOP
                and (obj.start >= group.hi or obj.stop < group.lo)
            ):
                continue  # a start-stop range holding no index ever written
            written_at = group.values
            for p in obj.points:
                index = p["index"]
                entry = written_at.get(index)
                if entry is None:
                    continue
                written, write = entry
                read = p.get("value")
                if write.ts > asked or read is None or read == written:
                    continue
                count += 1
                table = name
                self._forget(written_at, changed, "index", index, read)
            if not written_at:
                del points[key]
        return _readback_state(count, changed, ("outstation", outstation), table)

    # --- unconfirmed unsolicited responses ---------------------------------------------------

    def _unsolicited(
        self, spec: StateSpec, tx: Dnp3Transaction, flow: Flow
    ) -> dict[str, Any] | None:
        if tx.unsolicited and tx.responses:
            msg = tx.responses[0]
            key = (flow.flow_id, msg.src, msg.dst)
            awaiting = self._awaiting.pop(key, None)
            if msg.con:
                if len(self._awaiting) >= self.max_unsolicited:
                    del self._awaiting[next(iter(self._awaiting))]
                    self.unsolicited_evicted += 1
                self._awaiting[key] = msg.seq
            if awaiting is None and msg.con:
                return None  # the previous one was confirmed: the normal exchange
            return {
                "state": {
                    **spec.describe(),
                    "sequence": msg.seq,
                    "awaiting_confirm": awaiting,
                    "confirm_requested": msg.con,
                }
            }
        request = tx.request
        if (
            request is not None
            and request.function == FunctionCode.CONFIRM
            and request.app_control & APP_UNS  # it confirms an unsolicited response
        ):
            key = (flow.flow_id, request.dst, request.src)
            if self._awaiting.get(key) == request.seq:
                del self._awaiting[key]
        return None
