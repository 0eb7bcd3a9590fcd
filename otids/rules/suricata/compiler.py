"""Parsed signatures -> otids :class:`~otids.rules.engine.Rule` objects.

Three kinds of rule come out:

* ``event``: ``app-layer-event:modbus.invalid_length`` and the like, on otids' decoder event
  of the same name;
* ``transaction``: ``alert modbus``/``alert dnp3`` rules (or ``alert tcp`` rules using
  ``modbus_*``/``dnp3_*`` keywords, Snort style). They are checked message by message: a
  transaction's request is its ``to_server`` side, its response(s) the ``to_client`` side,
  and every keyword of the rule must hold on one message of a side that ``flow`` allows.
  ``content`` and the other payload keywords inspect the Modbus ADU (MBAP header and PDU),
  ``modbus_data`` the PDU after the function code, ``dnp3_data`` (and plain content on
  ``alert dnp3``) the DNP3 application fragment without link CRCs;
* ``packet``: ``alert tcp``/``udp``/``ip`` rules with payload keywords, checked on every
  packet's TCP or UDP payload (:mod:`otids.rules.suricata.payload`), as Snort did.

Anything else (another application protocol, a keyword otids does not implement) raises
:class:`Unsupported`: the loader skips that rule with a warning.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from otids.decode.dnp3.functions import FunctionCode as Dnp3Function
from otids.decode.dnp3.iin import Iin
from otids.decode.modbus.codes import FunctionCode as ModbusFunction
from otids.rules.engine import Rule
from otids.rules.fields import EVENT_NAMES, EvalContext
from otids.rules.suricata.classification import classify
from otids.rules.suricata.content import (
    BYTE_OPS,
    MAX_BYTES,
    ByteJump,
    ByteTest,
    Content,
    IsDataAt,
    Pcre,
    Program,
    Step,
)
from otids.rules.suricata.groups import AddressGroup, GroupError, PortGroup
from otids.rules.suricata.parser import (
    ParsedRule,
    RuleSyntaxError,
    content_bytes,
    split_quoted,
    unquote,
)
from otids.rules.threshold import Threshold


class Unsupported(ValueError):
    """The rule uses something otids cannot evaluate; it is skipped."""


APP_PROTOCOLS = ("modbus", "dnp3")
PACKET_PROTOCOLS = {"tcp": (6,), "udp": (17,), "ip": (6, 17), "tcp-pkt": (6,)}
"""Header protocols of packet rules -> the IP protocols they inspect."""

PRIORITY_SEVERITY = {1: "high", 2: "medium", 3: "low"}  # priority -> otids level; else info

# Suricata's sticky-buffer names -> otids' buffer of a protocol's message.
STICKY = {"dnp3_data": "dnp3", "dnp3.data": "dnp3", "modbus_data": "modbus"}

THRESHOLD_TRACKS = {
    "by_src": "by_src",
    "by_dst": "by_dst",
    "by_both": "by_pair",
    "by_rule": "by_rule",
    "by_flow": "by_flow",
}
THRESHOLD_MODES = {"both": "once", "threshold": "nth", "limit": "limit"}
"""Suricata ``type`` -> otids threshold mode (``threshold``: an alert every ``count``
matches of the window, otids' ``nth``)."""

MBAP = struct.Struct(">HHHB")  # transaction id, protocol id, length, unit id

DNP3_FUNCTIONS = {f.name.lower(): int(f) for f in Dnp3Function}
DNP3_FUNCTIONS.update(
    {
        "immediate_freeze": 7,
        "immediate_freeze_nr": 8,
        "initialize_application": 16,
        "start_application": 17,
        "stop_application": 18,
        "delay_measurement": 23,
        "record_time": 24,
        "authenticate": 32,
        "unsolicited_resp": 130,
    }
)
IIN_FLAGS = {f.name.lower(): int(f) for f in Iin if f.name is not None}
# Suricata's name for IIN2 bit 0
IIN_FLAGS["function_code_not_implemented"] = int(Iin.NO_FUNC_CODE_SUPPORT)
MODBUS_FUNCTIONS = {f.name.lower(): int(f) for f in ModbusFunction}
MODBUS_FUNCTIONS.update({"report_slave_id": 17, "read_device_id": 43})

# Suricata's function classes (``modbus: function assigned``) -> otids' categories.
MODBUS_CATEGORIES = {
    "assigned": frozenset({"public"}),
    "unassigned": frozenset({"unassigned"}),
    "public": frozenset({"public", "unassigned"}),
    "user": frozenset({"user_defined"}),
    "reserved": frozenset({"reserved"}),
    "all": frozenset({"public", "unassigned", "user_defined", "reserved"}),
}
MODBUS_TABLES = {"coils", "discretes", "input", "holding"}
ACCESS = {"read": frozenset({"read", "read_write"}), "write": frozenset({"write", "read_write"})}

# One message of a transaction: (transaction, the message, side 0 to_server / 1 to_client)
Check = Callable[[Any, Any, int], bool]
UINT = re.compile(r"^\s*(!|>=|<=|>|<|=)?\s*(\w+)\s*(?:(<>|-)\s*(\w+))?\s*$")


def parse_uint(text: str, open_below: bool = False) -> Callable[[int], bool]:
    """Suricata's integer syntax: ``5``, ``!5``, ``>5``, ``>=5``, ``<5``, ``<=5``, ``1<>9``
    (exclusive), ``1-9`` (inclusive). ``open_below``: a ``0<>n`` range includes 0 (Modbus
    addresses, as Suricata's Modbus detection reads it)."""
    m = UINT.match(text)
    if m is None:
        raise Unsupported(f"bad number {text!r}")
    op, a, rng, b = m.groups()
    lo = _int(a, "number")
    hi = _int(b, "number") if b is not None else 0
    if rng == "<>":
        if open_below and lo == 0:
            return lambda v: v < hi
        return lambda v: lo < v < hi
    if rng == "-":
        return lambda v: lo <= v <= hi
    ops: dict[str | None, Callable[[int], bool]] = {
        None: lambda v: v == lo,
        "=": lambda v: v == lo,
        "!": lambda v: v != lo,
        ">": lambda v: v > lo,
        "<": lambda v: v < lo,
        ">=": lambda v: v >= lo,
        "<=": lambda v: v <= lo,
    }
    return ops[op]


@dataclass(slots=True)
class PacketMatch:
    """What a packet rule checks, for :mod:`otids.rules.suricata.payload`."""

    protos: tuple[int, ...]
    src: AddressGroup
    src_ports: PortGroup
    dst: AddressGroup
    dst_ports: PortGroup
    both_ways: bool  # "<>"
    direction: int | None  # 0 to_server, 1 to_client, None either
    established: bool
    dsize: Callable[[int], bool] | None
    program: Program | None


@dataclass(slots=True)
class _State:
    """What the options seen so far say."""

    sid: int = 0
    gid: int = 1
    rev: int = 1
    msg: str = ""
    classtype: str | None = None
    priority: int | None = None
    references: list[str] = field(default_factory=list)
    direction: int | None = None
    established: bool = False
    buffer: str = "payload"  # the sticky buffer payload keywords apply to
    steps: dict[str, list[Step]] = field(default_factory=dict)
    last_content: Content | None = None
    checks: list[tuple[str, Check]] = field(default_factory=list)  # (protocol, check)
    events: list[str] = field(default_factory=list)
    dsize: Callable[[int], bool] | None = None
    threshold: Threshold | None = None
    index: frozenset[int] | None = None  # Modbus function codes the rule requires


class Compiler:
    """Compiles one parsed rule with the site's variables."""

    def __init__(self, variables: dict[str, list[Any]]) -> None:
        self.variables = variables
        self._key = ""
        self.handlers: dict[str, Callable[[_State, str | None], None]] = {
            "msg": self._msg,
            "sid": lambda st, v: None,
            "rev": lambda st, v: setattr(st, "rev", _int(v, "rev")),
            "gid": lambda st, v: setattr(st, "gid", _int(v, "gid")),
            "classtype": lambda st, v: setattr(st, "classtype", (v or "").strip()),
            "priority": lambda st, v: setattr(st, "priority", _int(v, "priority")),
            "reference": lambda st, v: st.references.append((v or "").strip()),
            "metadata": lambda st, v: None,
            "target": lambda st, v: None,
            "service": lambda st, v: None,
            "flow": self._flow,
            "content": self._content,
            "nocase": self._modifier,
            "offset": self._modifier,
            "depth": self._modifier,
            "distance": self._modifier,
            "within": self._modifier,
            "startswith": self._modifier,
            "fast_pattern": lambda st, v: None,
            "rawbytes": lambda st, v: None,
            "pcre": self._pcre,
            "byte_test": self._byte_test,
            "byte_jump": self._byte_jump,
            "isdataat": self._isdataat,
            "dsize": self._dsize,
            "threshold": self._threshold,
            "detection_filter": self._threshold,
            "app-layer-event": self._event,
            "pkt_data": lambda st, v: setattr(st, "buffer", "payload"),
            "dnp3_data": self._sticky,
            "dnp3.data": self._sticky,
            "modbus_data": self._sticky,
            "modbus": self._modbus,
            "modbus_func": self._modbus_func,
            "modbus_unit": self._modbus_unit,
            "dnp3_func": self._dnp3_func,
            "dnp3.func": self._dnp3_func,
            "dnp3_ind": self._dnp3_ind,
            "dnp3.ind": self._dnp3_ind9,
            "dnp3_obj": self._dnp3_obj,
        }

    # --- the whole rule ---------------------------------------------------------------

    def compile(self, parsed: ParsedRule) -> Rule:
        """The otids rule; raises :class:`Unsupported` or :class:`RuleSyntaxError`."""
        if parsed.sid is None:
            raise RuleSyntaxError("no sid")
        st = _State(sid=parsed.sid)
        for key, value in parsed.options:
            handler = self.handlers.get(key)
            if handler is None:
                raise Unsupported(f"unsupported option {key!r}")
            self._key = key
            handler(st, value)
        missing: set[str] = set()
        try:
            src = AddressGroup(parsed.src, self.variables, missing)
            dst = AddressGroup(parsed.dst, self.variables, missing)
            sports = PortGroup(parsed.src_ports, self.variables, missing)
            dports = PortGroup(parsed.dst_ports, self.variables, missing)
        except GroupError as exc:
            raise RuleSyntaxError(str(exc)) from exc
        protocol = self._protocol(parsed, st)
        category, severity = classify(st.classtype, st.priority)
        rule = Rule(
            id=f"suricata-{st.gid}-{st.sid}",
            sid=st.sid,
            title=st.msg,
            severity=PRIORITY_SEVERITY.get(severity, "info"),
            kind="transaction",
            protocol=protocol,
            match=_never,
            category=category,
            references=st.references,
            source=parsed.source,
            raw={"suricata": parsed.text, "classtype": st.classtype, "line": parsed.line},
            threshold=st.threshold,
            missing_vars=frozenset(missing),
            gid=st.gid,
            rev=st.rev,
            priority=severity,
        )
        both = parsed.direction == "<>"
        if protocol is None:
            rule.kind = "packet"
            if st.checks or st.events or set(st.steps) - {"payload"}:
                raise Unsupported("application keywords on a packet rule")
            steps = st.steps.get("payload")
            rule.raw["packet"] = PacketMatch(
                PACKET_PROTOCOLS[parsed.protocol],
                src,
                sports,
                dst,
                dports,
                both,
                st.direction,
                st.established,
                st.dsize,
                Program(steps) if steps else None,
            )
            return rule
        header = _header(src, sports, dst, dports, both)
        if st.events:
            if st.checks or st.steps:
                raise Unsupported("app-layer-event mixed with other detection keywords")
            rule.kind = "event"
            rule.index_values = frozenset(st.events)
            rule.index_field = "event"
            rule.match = _event_matcher(st.direction, header)
            return rule
        checks = [check for proto, check in st.checks if proto == protocol]
        if len(checks) != len(st.checks):
            raise Unsupported("keywords of two protocols in one rule")
        for buffer, steps in st.steps.items():
            checks.append(_buffer_check(protocol, buffer, Program(steps)))
        if st.dsize is not None:
            checks.append(_dsize_check(protocol, st.dsize))
        if protocol == "modbus" and st.index is not None:
            rule.index_values = st.index
            rule.index_field = "modbus.function"
        rule.match = _tx_matcher(protocol, st.direction, header, checks)
        return rule

    def _protocol(self, parsed: ParsedRule, st: _State) -> str | None:
        """The application protocol of the rule, None for a packet rule."""
        used = {proto for proto, _ in st.checks}
        used.update(e.partition(".")[0] for e in st.events)
        used.update(STICKY[b] for b in st.steps if b in STICKY)
        if parsed.protocol in APP_PROTOCOLS:
            if used - {parsed.protocol}:
                raise Unsupported(f"keywords of {sorted(used)} on an {parsed.protocol} rule")
            return parsed.protocol
        if parsed.protocol not in PACKET_PROTOCOLS:
            raise Unsupported(f"protocol {parsed.protocol!r} (otids speaks modbus and dnp3)")
        if len(used) > 1:
            raise Unsupported(f"keywords of several protocols: {sorted(used)}")
        if used and "payload" in st.steps:
            raise Unsupported("packet content mixed with application keywords")
        return next(iter(used), None)

    # --- descriptive and flow ---------------------------------------------------------

    def _msg(self, st: _State, value: str | None) -> None:
        st.msg = unquote(value or "")

    def _flow(self, st: _State, value: str | None) -> None:
        for part in (value or "").split(","):
            word = part.strip().lower()
            if word in ("to_server", "from_client"):
                st.direction = 0
            elif word in ("to_client", "from_server"):
                st.direction = 1
            elif word == "established":
                st.established = True
            elif word not in ("stateless", "only_stream", "no_stream", ""):
                raise Unsupported(f"flow:{word}")

    # --- payload keywords -------------------------------------------------------------

    def _add(self, st: _State, step: Step) -> None:
        st.steps.setdefault(st.buffer, []).append(step)

    def _content(self, st: _State, value: str | None) -> None:
        negated, text, rest = split_quoted(value or "")
        content = Content(content_bytes(text), negated)
        if not content.pattern:
            raise RuleSyntaxError("empty content")
        self._add(st, content)
        st.last_content = content
        for part in rest.split(","):  # Snort 3: content:"x", offset 2, depth 4
            if part.strip():
                key, _, arg = part.strip().partition(" ")
                self._modifier(st, arg.strip() or None, key.strip().lower())

    def _modifier(self, st: _State, value: str | None, key: str = "") -> None:
        content = st.last_content
        if content is None:
            raise RuleSyntaxError("content modifier before any content")
        key = key or self._current_key
        if key == "nocase":
            content.nocase = True
        elif key == "startswith":
            content.offset, content.depth = 0, len(content.pattern)
        elif key in ("fast_pattern", "rawbytes"):
            return
        elif key in ("offset", "depth", "distance", "within"):
            setattr(content, key, _int(value, key))
        else:
            raise Unsupported(f"content modifier {key!r}")

    def _pcre(self, st: _State, value: str | None) -> None:
        negated, text, _ = split_quoted(value or "")
        if not text.startswith("/") or text.rfind("/") == 0:
            raise RuleSyntaxError(f"pcre must be /regex/flags, got {text!r}")
        end = text.rfind("/")
        pattern, flags = text[1:end], text[end + 1 :]
        re_flags = 0
        relative = anchored = False
        for flag in flags:
            if flag == "i":
                re_flags |= re.IGNORECASE
            elif flag == "s":
                re_flags |= re.DOTALL
            elif flag == "m":
                re_flags |= re.MULTILINE
            elif flag == "x":
                re_flags |= re.VERBOSE
            elif flag == "R":
                relative = True
            elif flag == "A":
                anchored = True
            elif flag not in "BOPG":  # raw bytes / override limits: no meaning here
                raise Unsupported(f"pcre flag {flag!r}")
        try:
            regex = re.compile(pattern.encode("latin-1"), re_flags)
        except (re.error, UnicodeEncodeError) as exc:
            raise Unsupported(f"pcre not usable as a Python regular expression: {exc}") from exc
        self._add(st, Pcre(regex, negated, relative, anchored))

    def _byte_args(self, value: str | None, name: str) -> tuple[list[str], dict[str, Any]]:
        parts = [p.strip() for p in (value or "").split(",")]
        opts: dict[str, Any] = {"relative": False, "little": False, "base": 0, "bitmask": None}
        rest: list[str] = []
        for p in parts:
            word, _, arg = p.partition(" ")
            word = word.lower()
            if word == "relative":
                opts["relative"] = True
            elif word in ("big", "little"):
                opts["little"] = word == "little"
            elif word == "string":
                opts["base"] = opts["base"] or 10
            elif word in ("hex", "dec", "oct"):
                opts["base"] = {"hex": 16, "dec": 10, "oct": 8}[word]
            elif word == "bitmask":
                opts["bitmask"] = _int(arg, f"{name} bitmask")
            elif word in ("multiplier", "post_offset"):
                opts[word] = _int(arg, f"{name} {word}")
            elif word in ("from_beginning", "align"):
                opts[word] = True
            elif word == "dce":
                raise Unsupported(f"{name} dce")
            else:
                rest.append(p)
        return rest, opts

    def _byte_test(self, st: _State, value: str | None) -> None:
        args, opts = self._byte_args(value, "byte_test")
        if len(args) != 4:
            raise RuleSyntaxError(f"byte_test needs nbytes, operator, value, offset: {value!r}")
        op = args[1].replace(" ", "")
        negated = op.startswith("!")
        op = op.lstrip("!") or "="
        if op not in BYTE_OPS:
            raise RuleSyntaxError(f"byte_test operator {args[1]!r}")
        nbytes = _int(args[0], "byte_test nbytes")
        if not 1 <= nbytes <= MAX_BYTES:
            raise RuleSyntaxError(f"byte_test reads 1 to {MAX_BYTES} bytes")
        opts.pop("multiplier", None)
        opts.pop("post_offset", None)
        step = ByteTest(
            nbytes,
            BYTE_OPS[op],
            _int(args[2], "byte_test value"),
            _int(args[3], "byte_test offset"),
            negated=negated,
            relative=opts["relative"],
            little=opts["little"],
            base=opts["base"],
            bitmask=opts["bitmask"],
        )
        self._add(st, step)

    def _byte_jump(self, st: _State, value: str | None) -> None:
        args, opts = self._byte_args(value, "byte_jump")
        if len(args) != 2:
            raise RuleSyntaxError(f"byte_jump needs nbytes, offset: {value!r}")
        nbytes = _int(args[0], "byte_jump nbytes")
        if not 1 <= nbytes <= MAX_BYTES:
            raise RuleSyntaxError(f"byte_jump reads 1 to {MAX_BYTES} bytes")
        self._add(st, ByteJump(nbytes, _int(args[1], "byte_jump offset"), **opts))

    def _isdataat(self, st: _State, value: str | None) -> None:
        parts = [p.strip() for p in (value or "").split(",")]
        at = parts[0]
        negated = at.startswith("!")
        extra = set(parts[1:]) - {"relative", "rawbytes"}
        if extra:
            raise Unsupported(f"isdataat {', '.join(sorted(extra))}")
        self._add(st, IsDataAt(_int(at.lstrip("!"), "isdataat"), "relative" in parts, negated))

    def _dsize(self, st: _State, value: str | None) -> None:
        st.dsize = parse_uint(value or "")

    def _sticky(self, st: _State, value: str | None) -> None:
        st.buffer = self._current_key

    # --- thresholds -------------------------------------------------------------------

    def _threshold(self, st: _State, value: str | None) -> None:
        args: dict[str, str] = {}
        for part in (value or "").split(","):
            key, _, arg = part.strip().partition(" ")
            args[key.strip().lower()] = arg.strip()
        kind = "detection_filter" if self._current_key == "detection_filter" else args.get("type")
        mode = "every" if kind == "detection_filter" else THRESHOLD_MODES.get(kind or "")
        track = THRESHOLD_TRACKS.get(args.get("track", ""))
        if mode is None or track is None:
            raise Unsupported(f"{self._current_key}: {value}")
        st.threshold = Threshold(
            track,
            _int(args.get("count"), "count"),
            float(_int(args.get("seconds"), "seconds")),
            mode,
        )

    # --- application keywords ---------------------------------------------------------

    def _event(self, st: _State, value: str | None) -> None:
        name = (value or "").strip()
        proto = name.partition(".")[0]
        if proto not in APP_PROTOCOLS:
            raise Unsupported(f"app-layer-event:{name}")
        if name not in EVENT_NAMES:
            raise Unsupported(f"app-layer-event:{name} (otids has no such event)")
        st.events.append(name)

    def _modbus(self, st: _State, value: str | None) -> None:
        for part in (value or "").split(","):
            words = part.split()
            if not words:
                continue
            key, args = words[0].lower(), words[1:]
            maker = _MODBUS_PARTS.get(key)
            if maker is None or not args:
                raise Unsupported(f"modbus: {part.strip()}")
            # Suricata inspects the modbus keyword on requests only (to_server).
            st.checks.append(("modbus", _on_request(maker(args, st))))

    def _modbus_func(self, st: _State, value: str | None) -> None:
        text = (value or "").strip().lower()
        code = MODBUS_FUNCTIONS.get(text)
        if code is None:
            code = _int(text, "modbus_func")
        st.checks.append(("modbus", lambda tx, pdu, side: pdu[0] == code))
        st.index = frozenset({code})

    def _modbus_unit(self, st: _State, value: str | None) -> None:
        unit = _int(value, "modbus_unit")
        st.checks.append(("modbus", lambda tx, pdu, side: tx.unit_id == unit))

    def _dnp3_func(self, st: _State, value: str | None) -> None:
        text = (value or "").strip().lower()
        code = DNP3_FUNCTIONS.get(text)
        if code is None:
            code = _int(text, "dnp3_func")
        st.checks.append(("dnp3", lambda tx, msg, side: msg.function == code))

    def _dnp3_ind(self, st: _State, value: str | None) -> None:
        """Suricata 7/8 ``dnp3_ind:a,b``: any of the named indicators is set."""
        mask = 0
        for name in (value or "").split(","):
            flag = IIN_FLAGS.get(name.strip().lower())
            if flag is None:
                raise RuleSyntaxError(f"unknown dnp3_ind flag {name.strip()!r}")
            mask |= flag
        st.checks.append(("dnp3", lambda tx, msg, side: bool((msg.iin or 0) & mask)))

    def _dnp3_ind9(self, st: _State, value: str | None) -> None:
        """Suricata 9 ``dnp3.ind``: a number (``0x8000``, ``!0``), or flags that must all be
        set, ``!flag`` ones clear."""
        text = (value or "").strip()
        first = text.lstrip("!").split(",")[0].strip().lower()
        if first not in IIN_FLAGS:
            test = parse_uint(text)
            number: Check = lambda tx, msg, side: msg.iin is not None and test(msg.iin)  # noqa: E731
            st.checks.append(("dnp3", number))
            return
        must = clear = 0
        for part in text.split(","):
            name = part.strip().lower()
            flag = IIN_FLAGS.get(name.lstrip("!"))
            if flag is None:
                raise RuleSyntaxError(f"unknown dnp3.ind flag {name!r}")
            if name.startswith("!"):
                clear |= flag
            else:
                must |= flag

        def flags(tx: Any, msg: Any, side: int) -> bool:
            iin = msg.iin
            return iin is not None and iin & must == must and not iin & clear

        st.checks.append(("dnp3", flags))

    def _dnp3_obj(self, st: _State, value: str | None) -> None:
        text = (value or "").lower().replace("group", "").replace("var", "")
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 2:
            raise RuleSyntaxError(f"dnp3_obj takes group,variation: {value!r}")
        group, variation = _int(parts[0], "dnp3_obj group"), _int(parts[1], "dnp3_obj variation")

        def has_object(tx: Any, msg: Any, side: int) -> bool:
            return any(o.group == group and o.variation == variation for o in msg.objects)

        st.checks.append(("dnp3", has_object))

    @property
    def _current_key(self) -> str:
        """The keyword being compiled, for handlers shared by several keywords."""
        return self._key


def _int(value: str | None, what: str) -> int:
    text = (value or "").strip().strip('"')
    try:
        # Base 0 reads 0x.. hex; "01" (leading zero, as in dnp3_obj:22,01) is decimal.
        return int(text, 0) if text[1:2].lower() in ("x", "o", "b") else int(text, 10)
    except ValueError as exc:
        raise RuleSyntaxError(f"{what} must be a number, got {value!r}") from exc


# --- the modbus: keyword ------------------------------------------------------------------


def _modbus_function(args: list[str], st: _State) -> Check:
    text = " ".join(args).strip().lower()
    negated = text.startswith("!")
    word = text.lstrip("!").strip()
    if word in MODBUS_CATEGORIES:
        cats = MODBUS_CATEGORIES[word]
        return lambda tx, pdu, side: (tx.category in cats) != negated
    code = _int(word, "modbus function")
    if not negated:
        st.index = frozenset({code})
    return lambda tx, pdu, side: (tx.function_code == code) != negated


def _modbus_subfunction(args: list[str], st: _State) -> Check:
    code = _int(args[0], "modbus subfunction")
    return lambda tx, pdu, side: tx.subfunction == code


def _modbus_access(args: list[str], st: _State) -> Check:
    kind = args[0].lower()
    if kind not in ACCESS or len(args) > 2:
        raise Unsupported(f"modbus: access {' '.join(args)}")
    allowed = ACCESS[kind]
    tables = frozenset(args[1:]) or frozenset(MODBUS_TABLES)
    if not tables <= MODBUS_TABLES:
        raise RuleSyntaxError(f"modbus table must be one of {sorted(MODBUS_TABLES)}")
    return lambda tx, pdu, side: tx.access in allowed and tx.table in tables


def _modbus_address(args: list[str], st: _State) -> Check:
    test = parse_uint("".join(args), open_below=True)

    def address(tx: Any, pdu: Any, side: int) -> bool:
        # Function 23 both reads and writes: its write range stands for the address of a
        # write rule, its read range otherwise.
        addr = tx.address if tx.write_address is None else tx.write_address
        return addr is not None and test(addr)

    return address


def _modbus_value(args: list[str], st: _State) -> Check:
    test = parse_uint("".join(args), open_below=True)

    def value(tx: Any, pdu: Any, side: int) -> bool:
        values = tx.request_values
        return values is not None and any(test(v) for v in values)

    return value


def _modbus_unit_part(args: list[str], st: _State) -> Check:
    test = parse_uint("".join(args))
    return lambda tx, pdu, side: test(tx.unit_id)


def _on_request(check: Check) -> Check:
    return lambda tx, pdu, side: not side and check(tx, pdu, side)


_MODBUS_PARTS: dict[str, Callable[[list[str], _State], Check]] = {
    "function": _modbus_function,
    "subfunction": _modbus_subfunction,
    "access": _modbus_access,
    "address": _modbus_address,
    "value": _modbus_value,
    "unit": _modbus_unit_part,
}


# --- matchers ------------------------------------------------------------------------------


def _never(ctx: EvalContext) -> bool:
    return False


Header = Callable[[Any, int], bool] | None


def _header(
    src: AddressGroup, sports: PortGroup, dst: AddressGroup, dports: PortGroup, both: bool
) -> Header:
    """A test of the rule header on a flow seen from one side, None when it is all ``any``."""
    if all(g.matches_all for g in (src, sports, dst, dports)):
        return None

    def oriented(a: str, ap: int, b: str, bp: int) -> bool:
        return src.match(a) and sports.match(ap) and dst.match(b) and dports.match(bp)

    def header(flow: Any, side: int) -> bool:
        c, cp, s, sp = flow.client_str, flow.client_port, flow.server_str, flow.server_port
        if side:
            c, cp, s, sp = s, sp, c, cp
        return oriented(c, cp, s, sp) or (both and oriented(s, sp, c, cp))

    return header


def _event_matcher(direction: int | None, header: Header) -> Callable[[EvalContext], bool]:
    def match(ctx: EvalContext) -> bool:
        side = int(ctx.direction)
        if direction is not None and side != direction:
            return False
        return header is None or header(ctx.flow, side)

    return match


def _modbus_units(tx: Any, side: int) -> list[bytes]:
    pdu = tx.response_pdu if side else tx.request_pdu
    return [] if pdu is None else [pdu]


def _dnp3_units(tx: Any, side: int) -> list[Any]:
    return tx.responses if side else tx.requests


UNITS: dict[str, Callable[[Any, int], list[Any]]] = {"modbus": _modbus_units, "dnp3": _dnp3_units}


def _modbus_adu(tx: Any, pdu: bytes) -> bytes:
    return MBAP.pack(tx.transaction_id, 0, len(pdu) + 1, tx.unit_id) + pdu


# protocol -> buffer name -> (transaction, message) -> bytes inspected
BUFFERS: dict[str, dict[str, Callable[[Any, Any], bytes]]] = {
    "modbus": {"payload": _modbus_adu, "modbus_data": lambda tx, pdu: pdu[1:]},
    "dnp3": {
        "payload": lambda tx, msg: msg.data,
        "dnp3_data": lambda tx, msg: msg.data,
        "dnp3.data": lambda tx, msg: msg.data,
    },
}


def _buffer_check(protocol: str, buffer: str, program: Program) -> Check:
    get = BUFFERS[protocol].get(buffer)
    if get is None:
        raise Unsupported(f"{buffer} on a {protocol} rule")
    return lambda tx, unit, side: program(get(tx, unit))


def _dsize_check(protocol: str, test: Callable[[int], bool]) -> Check:
    get = BUFFERS[protocol]["payload"]
    return lambda tx, unit, side: test(len(get(tx, unit)))


def _tx_matcher(
    protocol: str, direction: int | None, header: Header, checks: list[Check]
) -> Callable[[EvalContext], bool]:
    units_of = UNITS[protocol]
    sides = (0, 1) if direction is None else (direction,)

    def match(ctx: EvalContext) -> bool:
        tx = ctx.tx
        if tx is None or tx.protocol != protocol:
            return False
        for side in sides:
            units = units_of(tx, side)
            if not units or (header is not None and not header(ctx.flow, side)):
                continue
            for unit in units:
                if all(check(tx, unit, side) for check in checks):
                    return True
        return False

    return match
