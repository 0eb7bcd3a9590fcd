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
event names, so a transaction is only checked against the rules that could match it. A rule
whose condition tests nothing but its index field is not evaluated at all once the index
found it; a state rule waiting for responses is not a candidate for a pending transaction;
and a condition reading only its protocol's fields is tested on the transaction, without
building an :class:`EvalContext`.
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
from otids.decode.dnp3.iin import iin_names
from otids.decode.registry import BY_NAME
from otids.rules.condition import Node
from otids.rules.fields import VOCABULARY, EvalContext, ResolvedField, transaction_context
from otids.rules.state import Phase, StateSpec
from otids.rules.threshold import DEFAULT_RATE_LIMIT, RateLimit, Suppression, Threshold

Predicate = Callable[[Any], bool]
Matcher = Callable[[EvalContext], bool]

SECONDARY_INDEX: dict[str, str] = {"modbus": "modbus.exception", "dnp3": "dnp3.iin"}
"""Protocol -> field indexing the rules that do not fix the function code. Exception-burst
rules match any function but one exception code, which most transactions lack; DNP3 scan
rules match one of a few IIN bits, which most responses lack: indexed, they cost one field
read per transaction instead of a full evaluation. A list-valued field (the IIN names)
selects the rules indexed under any of its values."""

RAW_INDEX: dict[str, tuple[Callable[[Any], Any], Callable[[Any], list[Any]]]] = {
    "dnp3.iin": (operator.attrgetter("iin"), iin_names),
}
"""List-valued secondary index field -> (getter of the raw value it is computed from, raw
value -> the field's values). The index is looked up on the raw value (the IIN bits): the
names are listed, and their rules merged, once per distinct value instead of per record."""

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
    # The condition tests nothing but the index field: a rule the index selected matches, and
    # the engine skips evaluating it.
    index_exact: bool = False
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
    # With a state block: the detection's own matcher, which ``match`` wraps.
    detect: Matcher | None = None
    # The detection as a test of the transaction alone (not wrapped), when it reads only its
    # protocol's fields: the engine then builds no context for the rule.
    tx_match: Callable[[Any], bool] | None = None

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
    on_transaction: bool = False,
) -> tuple[str, Matcher]:
    """Compile one ``field|modifier: value`` entry; return the field name and its matcher.

    A ``$name`` absent from ``variables`` is added to ``missing`` (an error when ``missing``
    is None) and the entry never matches. ``on_transaction``: the field is a protocol field
    and the matcher takes a transaction of that protocol instead of an :class:`EvalContext`.
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
            get = resolved.spec.get if on_transaction else resolved.get
            return name, lambda ctx: (get(ctx) is not None) == want
        if modifier == "range":
            pred = _range_predicate(value)
        elif modifier == "not":
            eq = _eq_predicate(_as_list(value), resolved.spec.type)
            inner = _field_matcher(resolved, eq, on_transaction)
            return name, lambda ctx: not inner(ctx)
        else:
            values = _as_list(value)
            if not values:
                raise CompileError("empty list of values")
            pred = _MODIFIERS[modifier](values, resolved.spec.type)
    except CompileError as exc:
        raise CompileError(str(exc), path) from None
    return name, _field_matcher(resolved, pred, on_transaction)


def _field_matcher(resolved: ResolvedField, pred: Predicate, on_transaction: bool) -> Matcher:
    """The matcher of ``pred`` on a field: it holds for the value or, on a list, for any
    element; never on an absent value (or another protocol's record).

    One frame reads the field and tests it (not a getter, a lift and the predicate
    chained): rules evaluate an entry on every candidate record.
    """
    get = resolved.spec.get
    proto = resolved.protocol
    if proto is None or on_transaction:
        # A flow or event field reads the context; a protocol field, with on_transaction,
        # the transaction the matcher is given.

        def direct(ctx: EvalContext) -> bool:
            v = get(ctx)
            if v is None:
                return False
            if isinstance(v, list):
                return any(map(pred, v))
            return pred(v)

        return direct

    def protocol_field(ctx: EvalContext) -> bool:
        tx = ctx.tx
        if tx is None or tx.protocol != proto:
            return False
        v = get(tx)
        if v is None:
            return False
        if isinstance(v, list):
            return any(map(pred, v))
        return pred(v)

    return protocol_field


def compile_selection(
    sel: Any,
    variables: dict[str, list[Any]],
    path: tuple[Any, ...],
    missing: set[str] | None = None,
    on_transaction: bool = False,
) -> tuple[Matcher, list[str], dict[str, Any]]:
    """Compile a selection (a map, or a list of maps); return matcher, fields used, literal map.

    ``on_transaction``: see :func:`compile_entry`."""
    if isinstance(sel, list):
        if not sel or not all(isinstance(m, dict) for m in sel):
            raise CompileError("a selection list must hold one or more maps", path)
        parts = [
            compile_selection(m, variables, (*path, i), missing, on_transaction)
            for i, m in enumerate(sel)
        ]
        matchers = [p[0] for p in parts]
        fields = [f for p in parts for f in p[1]]
        return _any(matchers), fields, {}
    if not isinstance(sel, dict) or not sel:
        raise CompileError("a selection must be a map of field: value", path)
    entries = [
        compile_entry(str(k), v, variables, (*path, k), missing, on_transaction)
        for k, v in sel.items()
    ]
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


def index_exact(node: Node, literal: dict[str, dict[str, Any]], field_name: str) -> bool:
    """True when the condition is one selection testing nothing but ``field_name`` for
    equality (with the values :func:`index_values` found): a record the index matched to the
    rule then satisfies it, with nothing left to evaluate."""
    if not field_name or node[0] != "sel":
        return False
    sel = literal.get(node[1])  # type: ignore[arg-type]
    if not sel:
        return False
    return list(sel) == [field_name] and VOCABULARY[field_name].spec.type != "ip"


# --- the rule set ---------------------------------------------------------------------------


# A candidate rule and the tests left to run: on the record's context, and on the
# transaction alone (None: no test; both None: the index lookup that made it a candidate
# decided).
_Entry = tuple[Rule, Matcher | None, Callable[[Any], bool] | None]


# How match() finds a protocol's candidates, for transactions pending or done: (primary
# index getter, its value -> (indexed entries, those followed by the rest), secondary getter,
# its value -> entries, the entries checked on every transaction).
class _SecondIndex(dict[Any, list[_Entry] | None]):
    """Secondary index value -> candidate entries, None for a value no rule is indexed
    under. For a :data:`RAW_INDEX` field keyed by the raw value: each one is expanded into
    the field's values on first use and remembered (a raw IIN value is 16 bits: bounded)."""

    __slots__ = ("by_value", "expand")

    def __init__(
        self,
        by_value: dict[Any, list[_Entry]],
        expand: Callable[[Any], list[Any]] | None,
    ) -> None:
        super().__init__(() if expand is not None else by_value)
        self.by_value = by_value
        self.expand = expand

    def __missing__(self, key: Any) -> list[_Entry] | None:
        if self.expand is None or key is None:
            return None
        found = [e for v in self.expand(key) for e in self.by_value.get(v, ())]
        entries = self[key] = list(dict.fromkeys(found)) if found else None
        return entries


_Plan = tuple[Any, dict[Any, tuple[list[_Entry], list[_Entry]]], Any, _SecondIndex, list[_Entry]]


def _phases(rule: Rule) -> tuple[Phase, Phase]:
    """Whether ``rule`` can match a transaction pending, and one done, and the tests left."""
    test = rule.match if rule.state is None else rule.detect
    tx_test = rule.tx_match
    if rule.index_exact:
        test = tx_test = None
    elif tx_test is not None:
        test = None
    elif test is None:  # a state rule built without its detection: its matcher does it all
        return (True, rule.match, None), (True, rule.match, None)
    if rule.state is None:
        return (True, test, tx_test), (True, test, tx_test)
    return rule.state.phases(test, tx_test)


def _phase_entries(rule: Rule) -> tuple[_Entry | None, _Entry | None]:
    """The candidate entry of ``rule`` for transactions pending and done (None: it cannot
    match them)."""
    pending, done = _phases(rule)
    return (
        (rule, pending[1], pending[2]) if pending[0] else None,
        (rule, done[1], done[2]) if done[0] else None,
    )


class RuleSet:
    """Rules indexed for evaluation. :meth:`match` is called for every record."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        everything = sorted(rules, key=lambda r: r.sid)
        self.rules: list[Rule] = [r for r in everything if not r.missing_vars]
        self.disabled: list[Rule] = [r for r in everything if r.missing_vars]
        by_event: dict[str, list[Rule]] = {}
        event_any: list[Rule] = []
        tx_index: dict[str, dict[Any, list[Rule]]] = {}
        tx_rest: dict[str, list[Rule]] = {}
        # protocol -> (secondary index field, value -> rules)
        tx_second: dict[str, tuple[str, dict[Any, list[Rule]]]] = {}
        tx_any: list[Rule] = []  # transaction rules valid for every protocol
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
                    event_any.append(rule)
                else:
                    for name in rule.index_values:
                        by_event.setdefault(name, []).append(rule)
            elif rule.protocol is None:
                tx_any.append(rule)
            elif rule.index_values is None:
                tx_rest.setdefault(rule.protocol, []).append(rule)
            elif rule.index_field == SECONDARY_INDEX.get(rule.protocol):
                _, by_value = tx_second.setdefault(rule.protocol, (rule.index_field, {}))
                for v in rule.index_values:
                    by_value.setdefault(v, []).append(rule)
            else:
                idx = tx_index.setdefault(rule.protocol, {})
                for v in rule.index_values:
                    idx.setdefault(v, []).append(rule)
        # One entry per rule and phase: a rule indexed under several values of a list-valued
        # field (the IIN names) is then found equal to itself, and checked once.
        entry_of = {id(rule): _phase_entries(rule) for rule in self.rules}

        def entries(found: Iterable[Rule], phase: int) -> list[_Entry]:
            out = (entry_of[id(rule)][phase] for rule in found)
            return [e for e in out if e is not None]

        # Event name -> candidate entries (rules indexed on the name, then the rest).
        self._event_any: list[_Entry] = entries(event_any, 1)
        self._by_event: dict[str, list[_Entry]] = {
            name: [*entries(found, 1), *self._event_any] for name, found in by_event.items()
        }
        # Transaction rules valid for every protocol, pending and done.
        self._tx_any: tuple[list[_Entry], list[_Entry]] = (entries(tx_any, 0), entries(tx_any, 1))
        # Per protocol and phase, everything match() needs in one tuple, looked up once per
        # record. A rule that cannot match in a phase (a state rule waiting for the response)
        # is left out of that phase's lists.
        self._plans: dict[str, tuple[_Plan, _Plan]] = {}
        for name, spec in BY_NAME.items():
            get1 = VOCABULARY[spec.index_field].spec.get if spec.index_field else None
            field2, idx2 = tx_second.get(name, ("", {}))
            get2, expand = (
                RAW_INDEX.get(field2, (VOCABULARY[field2].spec.get, None))
                if field2
                else (None, None)
            )
            idx1 = tx_index.get(name, {}) if get1 is not None else {}
            plans: list[_Plan] = []
            for phase in (0, 1):
                rest = entries([*tx_rest.get(name, ()), *tx_any], phase)
                first = {v: e for v, found in idx1.items() if (e := entries(found, phase))}
                second = {v: e for v, found in idx2.items() if (e := entries(found, phase))}
                plans.append(
                    (
                        get1,
                        {v: (e, [*e, *rest]) for v, e in first.items()},
                        get2,
                        _SecondIndex(second, expand) if second else _SecondIndex({}, None),
                        rest,
                    )
                )
            self._plans[name] = (plans[0], plans[1])

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
        condition holds. The evaluation context is only built when a candidate rule has a
        test left: most transactions (reads and writes of process data) need none.
        """
        if isinstance(record, DecoderEvent):
            cands = self._by_event.get(record.name, self._event_any)
            if not cands:
                return []
            ctx = None
            hits: list[Rule] = []
            for rule, test, _ in cands:  # event rules have no state, no test on a transaction
                if test is not None:
                    if ctx is None:
                        ctx = EvalContext(record, flow)
                    if not test(ctx):
                        continue
                hits.append(rule)
            return hits
        plans = self._plans.get(record.protocol)
        if plans is None:
            cands = self._tx_any[record.done]
        else:
            get1, idx1, get2, idx2, rest = plans[record.done]
            first = idx1.get(get1(record)) if idx1 else None
            second = idx2[get2(record)] if idx2.by_value else None
            if second is not None:
                cands = [*(first[0] if first is not None else ()), *second, *rest]
            elif first is not None:
                cands = first[1]
            else:
                cands = rest
        if not cands:
            return []
        alerted = record.alerted
        ctx = None
        hits = []
        for rule, test, tx_test in cands:
            if rule.sid in alerted:
                continue
            if tx_test is not None and not tx_test(record):
                continue
            if test is not None:
                if ctx is None:
                    ctx = transaction_context(record, flow)
                if not test(ctx):
                    continue
            hits.append(rule)
        for rule in hits:
            alerted.add(rule.sid)
        return hits
