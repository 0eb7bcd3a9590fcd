"""Compiled rules and their evaluation.

A rule's ``detection`` block holds named *selections* and a ``condition`` over them. A
selection maps ``field`` or ``field|modifier`` to a value; all its entries must hold (a list of
such maps holds when any map does). A list value matches when the field equals any element;
a field whose value is a list matches when any element does.

Modifiers:

========== ==========================================================================
(none)     equality; a value like ``10.0.0.0/8`` on an address field is a CIDR block
not        negation of equality
gt gte     numeric comparisons
lt lte
range      ``[low, high]`` inclusive
contains   substring (text, bytes) — element equality on list fields is the default
startswith text prefix
re         regular expression search on text
exists     ``true``: the field has a value; ``false``: it has none
========== ==========================================================================

Named lists (``$modbus_clients``) are replaced by the site variables' values before
compiling. A rule naming a variable the site did not define is *disabled*, not an error: it
loads (so every other mistake in it is still reported) but never matches, and the loader
lists it in :attr:`RuleSet.disabled` so the command line prints one warning per missing
variable. The default rules can thus use ``$modbus_clients`` and still let ``otids read``
run without ``--vars``.

Which matches become alert lines (suppression, thresholds, rate limiting) is decided after
matching, by :class:`otids.rules.threshold.AlertGate`; see that module for the semantics.

Rules are indexed on their protocol's ``index_field`` (the function code), failing that on
a field of :data:`SECONDARY_INDEX` (the exception code), and on
event names, so a transaction is only checked against the rules that could match it.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from otids.capture.flow import Flow
from otids.decode.base import DecoderEvent, Transaction
from otids.decode.registry import BY_NAME
from otids.rules.condition import Node
from otids.rules.fields import VOCABULARY, EvalContext
from otids.rules.state import StateSpec
from otids.rules.threshold import DEFAULT_RATE_LIMIT, RateLimit, Suppression, Threshold

Predicate = Callable[[Any], bool]
Matcher = Callable[[EvalContext], bool]

SECONDARY_INDEX: dict[str, str] = {"modbus": "modbus.exception", "dnp3": "dnp3.iin"}
"""Protocol -> field indexing the rules that do not fix the function code. Exception-burst
rules match any function but one exception code, which most transactions lack; DNP3 scan
rules match one of a few IIN bits, which most responses lack: indexed, they cost one field
read per transaction instead of a full evaluation. A list-valued field (the IIN names)
selects the rules indexed under any of its values."""

CIDR_MEMO_MAX = 4096  # addresses whose CIDR verdict a selection remembers; a sweep resets it

SEVERITIES: dict[str, int] = {"critical": 1, "high": 1, "medium": 2, "low": 3, "info": 4}
"""Rule severity -> EVE ``alert.severity`` (Suricata's scale: 1 is the most severe)."""


class CompileError(ValueError):
    """A selection cannot be compiled; ``path`` locates the culprit inside the rule."""

    def __init__(self, message: str, path: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.path = path


@dataclass(slots=True, eq=False)
class Rule:
    """A loaded, compiled rule. ``kind`` is ``transaction``, ``event`` or ``packet`` (a
    Suricata payload rule)."""

    id: str
    sid: int
    title: str
    severity: str
    kind: str
    protocol: str | None  # None: a transaction rule valid for every protocol
    match: Matcher
    description: str = ""
    category: str = ""
    tags: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    falsepositives: list[str] = field(default_factory=list)
    source: str = ""
    # Values of the protocol's index field (or event names) one of which the record must
    # carry for the rule to match; None when the rule cannot be indexed.
    index_values: frozenset[Any] | None = None
    index_field: str = ""  # the field index_values are values of
    raw: dict[str, Any] = field(default_factory=dict)
    threshold: Threshold | None = None
    suppress: tuple[Suppression, ...] = ()
    rate_limit: RateLimit = DEFAULT_RATE_LIMIT
    tests: list[dict[str, Any]] = field(default_factory=list)
    # Site variables the rule names but the site did not define: the rule is disabled.
    missing_vars: frozenset[str] = frozenset()
    # Suricata signatures (otids.rules.suricata): EVE alert.gid, alert.rev, and the rule's
    # priority as alert.severity (None: from ``severity``).
    gid: int = 1
    rev: int = 1
    priority: int | None = None
    # The ``state`` block (:mod:`otids.rules.state`): what the rule tracks across records.
    state: StateSpec | None = None

    @property
    def attack(self) -> list[str]:
        """ATT&CK for ICS technique ids from the tags (``attack.t0814`` -> ``T0814``)."""
        return [t[7:].upper() for t in self.tags if re.fullmatch(r"attack\.t\d{4}(\.\d{3})?", t)]

    @property
    def severity_num(self) -> int:
        """EVE ``alert.severity``: the Suricata priority when set."""
        return self.priority if self.priority is not None else SEVERITIES[self.severity]


# --- compiling selections -------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]


def _network(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if isinstance(value, str) and "/" in value:
        try:
            return ipaddress.ip_network(value, strict=False)
        except ValueError:
            return None
    return None


def _in_networks(v: Any, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        addr = ipaddress.ip_address(v)
    except ValueError:
        return False
    return any(addr in n for n in nets)


def _eq_predicate(values: list[Any], ftype: str) -> Predicate:
    if ftype == "ip":
        nets = [n for n in map(_network, values) if n is not None]
        plain = frozenset(str(v) for v in values if _network(v) is None)
        if nets:
            seen: dict[Any, bool] = {}  # address -> verdict: parsing an address costs more

            def in_any(v: Any) -> bool:
                verdict = seen.get(v)
                if verdict is None:
                    if len(seen) >= CIDR_MEMO_MAX:
                        seen.clear()
                    verdict = seen[v] = v in plain or _in_networks(v, nets)
                return verdict

            return in_any
        return plain.__contains__
    try:
        allowed = frozenset(values)
    except TypeError as exc:
        raise CompileError(f"values must be scalars: {values!r}") from exc
    return allowed.__contains__


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CompileError(f"expected a number, got {value!r}")
    return value


def _range(value: Any) -> tuple[float, float]:
    if isinstance(value, str) and "-" in value:
        lo_s, _, hi_s = value.partition("-")
        try:
            value = [int(lo_s, 0), int(hi_s, 0)]
        except ValueError as exc:
            raise CompileError(f"bad range {value!r}") from exc
    if not isinstance(value, list) or len(value) != 2:
        raise CompileError(f"range takes [low, high], got {value!r}")
    lo, hi = _number(value[0]), _number(value[1])
    if lo > hi:
        raise CompileError(f"range low {lo} is above high {hi}")
    return lo, hi


def _numeric(op: Callable[[Any, Any], bool], bound: float) -> Predicate:
    def pred(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and op(v, bound)

    return pred


def _text(v: Any) -> str | bytes | None:
    return v if isinstance(v, (str, bytes)) else None


def _contains(values: list[Any]) -> Predicate:
    needles = [v.encode() if isinstance(v, str) else v for v in values]
    texts = [v for v in values if isinstance(v, str)]

    def pred(v: Any) -> bool:
        if isinstance(v, bytes):
            return any(n in v for n in needles if isinstance(n, bytes))
        if isinstance(v, str):
            return any(t in v for t in texts)
        return False

    return pred


def _regex(values: list[Any]) -> Predicate:
    try:
        pats = [re.compile(str(v)) for v in values]
    except re.error as exc:
        raise CompileError(f"bad regular expression: {exc}") from exc
    return lambda v: isinstance(v, str) and any(p.search(v) for p in pats)


# modifier -> builder(values as list, field type) -> predicate on one scalar value
_MODIFIERS: dict[str, Callable[[list[Any], str], Predicate]] = {
    "": _eq_predicate,
    "gt": lambda vs, t: _numeric(operator.gt, _number(vs[0])),
    "gte": lambda vs, t: _numeric(operator.ge, _number(vs[0])),
    "lt": lambda vs, t: _numeric(operator.lt, _number(vs[0])),
    "lte": lambda vs, t: _numeric(operator.le, _number(vs[0])),
    "contains": lambda vs, t: _contains(vs),
    "startswith": lambda vs, t: lambda v: isinstance(v, str) and v.startswith(tuple(map(str, vs))),
    "re": lambda vs, t: _regex(vs),
}
MODIFIERS = frozenset({*_MODIFIERS, "not", "range", "exists"})
"""Every modifier a selection key may carry."""


def _range_predicate(value: Any) -> Predicate:
    lo, hi = _range(value)
    return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi


def _any_of(pred: Predicate) -> Predicate:
    """Lift a scalar predicate to fields that may hold a list (any element matches)."""

    def lifted(v: Any) -> bool:
        if v is None:
            return False
        if isinstance(v, list):
            return any(pred(x) for x in v)
        return pred(v)

    return lifted


def _var_names(value: Any) -> list[str]:
    """The ``$names`` a selection value refers to."""
    values = value if isinstance(value, list) else [value]
    return [v[1:] for v in values if isinstance(v, str) and v.startswith("$")]


def _resolve_vars(value: Any, variables: dict[str, list[Any]]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return list(variables[value[1:]])
    if isinstance(value, list):
        out: list[Any] = []
        for v in value:
            resolved = _resolve_vars(v, variables)
            out.extend(resolved if isinstance(v, str) and v.startswith("$") else [resolved])
        return out
    return value


def _never(ctx: EvalContext) -> bool:
    return False


def compile_entry(
    key: str,
    value: Any,
    variables: dict[str, list[Any]],
    path: tuple[Any, ...],
    missing: set[str] | None = None,
) -> tuple[str, Matcher]:
    """Compile one ``field|modifier: value`` entry; return the field name and its matcher.

    A ``$name`` absent from ``variables`` is added to ``missing`` (an error when ``missing``
    is None) and the entry never matches.
    """
    name, _, modifier = key.partition("|")
    if name not in VOCABULARY:
        raise CompileError(f"unknown field {name!r}", path)
    if modifier not in MODIFIERS:
        known = ", ".join(sorted(m for m in MODIFIERS if m))
        raise CompileError(
            f"unknown modifier {modifier!r} (known: {known})",
            path,
        )
    resolved = VOCABULARY[name]
    get = resolved.get
    undefined = [v for v in _var_names(value) if v not in variables]
    if undefined:
        if missing is None:
            raise CompileError(f"unknown variable ${undefined[0]} (define it in --vars)", path)
        missing.update(undefined)
        return name, _never
    value = _resolve_vars(value, variables)
    try:
        if modifier == "exists":
            want = bool(value)
            return name, lambda ctx: (get(ctx) is not None) == want
        if modifier == "range":
            pred = _any_of(_range_predicate(value))
        elif modifier == "not":
            inner = _any_of(_eq_predicate(_as_list(value), resolved.spec.type))
            return name, lambda ctx: not inner(get(ctx))
        else:
            values = _as_list(value)
            if not values:
                raise CompileError("empty list of values")
            pred = _any_of(_MODIFIERS[modifier](values, resolved.spec.type))
    except CompileError as exc:
        raise CompileError(str(exc), path) from None
    return name, lambda ctx: pred(get(ctx))


def compile_selection(
    sel: Any,
    variables: dict[str, list[Any]],
    path: tuple[Any, ...],
    missing: set[str] | None = None,
) -> tuple[Matcher, list[str], dict[str, Any]]:
    """Compile a selection (a map, or a list of maps); return matcher, fields used, literal map."""
    if isinstance(sel, list):
        if not sel or not all(isinstance(m, dict) for m in sel):
            raise CompileError("a selection list must hold one or more maps", path)
        parts = [compile_selection(m, variables, (*path, i), missing) for i, m in enumerate(sel)]
        matchers = [p[0] for p in parts]
        fields = [f for p in parts for f in p[1]]
        return _any(matchers), fields, {}
    if not isinstance(sel, dict) or not sel:
        raise CompileError("a selection must be a map of field: value", path)
    entries = [compile_entry(str(k), v, variables, (*path, k), missing) for k, v in sel.items()]
    matchers = [m for _, m in entries]
    fields = [f for f, _ in entries]
    if len(matchers) == 1:
        return matchers[0], fields, sel
    return _all(matchers), fields, sel


def compile_condition(node: Node, selections: dict[str, Matcher]) -> Matcher:
    """Turn a condition tree into one matcher."""
    kind = node[0]
    if kind == "sel":
        return selections[node[1]]  # type: ignore[index]
    if kind == "not":
        inner = compile_condition(node[1], selections)  # type: ignore[arg-type]
        return lambda ctx: not inner(ctx)
    parts = [compile_condition(n, selections) for n in node[1]]  # type: ignore[arg-type]
    return _all(parts) if kind == "and" else _any(parts)


def _all(parts: list[Matcher]) -> Matcher:
    # Two operands (``selection and not allowed``) are the common case: a plain ``and``
    # avoids a generator per evaluation, which matters on every polled transaction.
    if len(parts) == 2:
        a, b = parts
        return lambda ctx: a(ctx) and b(ctx)
    return lambda ctx: all(p(ctx) for p in parts)


def _any(parts: list[Matcher]) -> Matcher:
    if len(parts) == 2:
        a, b = parts
        return lambda ctx: a(ctx) or b(ctx)
    return lambda ctx: any(p(ctx) for p in parts)


def index_values(
    node: Node, literal: dict[str, dict[str, Any]], field_name: str
) -> frozenset[Any] | None:
    """Values of ``field_name`` the record must equal for the condition to hold, if known.

    Only plain equality entries in selections that the condition requires (the selection
    itself, or a member of a top-level ``and``) are used; anything else gives None.
    """
    required = [node] if node[0] == "sel" else list(node[1]) if node[0] == "and" else []
    for member in required:
        if isinstance(member, tuple) and member[0] == "sel":
            sel = literal.get(member[1])  # type: ignore[arg-type]
            if sel and field_name in sel:
                vals = _as_list(sel[field_name])
                if all(isinstance(v, (int, str)) and not str(v).startswith("$") for v in vals):
                    return frozenset(vals)
    return None


# --- the rule set ---------------------------------------------------------------------------


class RuleSet:
    """Rules indexed for evaluation. :meth:`match` is called for every record."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        everything = sorted(rules, key=lambda r: r.sid)
        self.rules: list[Rule] = [r for r in everything if not r.missing_vars]
        self.disabled: list[Rule] = [r for r in everything if r.missing_vars]
        self._by_event: dict[str, list[Rule]] = {}
        self._event_any: list[Rule] = []
        self._tx_index: dict[str, dict[Any, list[Rule]]] = {}
        self._tx_rest: dict[str, list[Rule]] = {}
        # protocol -> (getter of its secondary index field, value -> rules)
        self._tx_second: dict[str, tuple[Callable[[Any], Any], dict[Any, list[Rule]]]] = {}
        self._tx_any: list[Rule] = []  # transaction rules valid for every protocol
        # Suricata/Snort rules on packet payloads, run by the pipeline on each packet
        # (otids.rules.suricata.payload), never by match().
        self.packet_rules: list[Rule] = [r for r in self.rules if r.kind == "packet"]
        # Rules the loader skipped, one line each (file:line, sid, reason).
        self.warnings: list[str] = []
        for rule in self.rules:
            if rule.kind == "packet":
                continue
            if rule.kind == "event":
                if rule.index_values is None:
                    self._event_any.append(rule)
                else:
                    for name in rule.index_values:
                        self._by_event.setdefault(name, []).append(rule)
            elif rule.protocol is None:
                self._tx_any.append(rule)
            elif rule.index_values is None:
                self._tx_rest.setdefault(rule.protocol, []).append(rule)
            elif rule.index_field == SECONDARY_INDEX.get(rule.protocol):
                get2 = VOCABULARY[rule.index_field].spec.get
                _, by_value = self._tx_second.setdefault(rule.protocol, (get2, {}))
                for v in rule.index_values:
                    by_value.setdefault(v, []).append(rule)
            else:
                idx = self._tx_index.setdefault(rule.protocol, {})
                for v in rule.index_values:
                    idx.setdefault(v, []).append(rule)
        # Per protocol, everything match() needs in one tuple: (primary index getter, its
        # value -> rules, secondary getter, its value -> rules, rules checked on every
        # transaction). Looked up once per record.
        self._plans: dict[
            str, tuple[Any, dict[Any, list[Rule]], Any, dict[Any, list[Rule]], list[Rule]]
        ] = {}
        for name, spec in BY_NAME.items():
            get1 = VOCABULARY[spec.index_field].spec.get if spec.index_field else None
            second: tuple[Any, dict[Any, list[Rule]]] = self._tx_second.get(name, (None, {}))
            get2, idx2 = second
            self._plans[name] = (
                get1,
                self._tx_index.get(name, {}) if get1 is not None else {},
                get2,
                idx2,
                [*self._tx_rest.get(name, ()), *self._tx_any],
            )

    def __len__(self) -> int:
        return len(self.rules)

    def missing_vars(self) -> dict[str, list[str]]:
        """Undefined variable -> ids of the rules it disables."""
        out: dict[str, list[str]] = {}
        for rule in self.disabled:
            for name in sorted(rule.missing_vars):
                out.setdefault(name, []).append(rule.id)
        return out

    def match(self, record: Transaction | DecoderEvent, flow: Flow) -> list[Rule]:
        """Rules that fire on ``record`` seen in ``flow``.

        A transaction rule fires once per transaction, at the first update on which its
        condition holds. The evaluation context is only built when a rule is a candidate:
        most transactions (reads and writes of process data) have none.
        """
        if isinstance(record, DecoderEvent):
            cands: list[Rule] = [*self._by_event.get(record.name, ()), *self._event_any]
            if not cands:
                return []
            ctx = EvalContext(record, flow)
            return [r for r in cands if r.match(ctx)]
        plan = self._plans.get(record.protocol)
        if plan is None:
            cands = self._tx_any
        else:
            get1, idx1, get2, idx2, rest = plan
            first = idx1.get(get1(record)) if idx1 else None
            second = None
            if idx2:
                key2 = get2(record)
                if type(key2) is list:
                    found = [r for v in key2 for r in idx2.get(v, ())]
                    second = list(dict.fromkeys(found)) if found else None
                else:
                    second = idx2.get(key2)
            if first is None and second is None:
                cands = rest
            else:
                cands = [*(first or ()), *(second or ()), *rest]
        if not cands:
            return []
        ctx = EvalContext(record, flow)
        alerted = record.alerted
        hits = [r for r in cands if r.sid not in alerted and r.match(ctx)]
        for r in hits:
            alerted.add(r.sid)
        return hits
