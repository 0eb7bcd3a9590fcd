"""Loading YAML rule files: one rule per file, Sigma-shaped.

Example::

    id: otids-modbus-force-listen-only
    sid: 9101101
    title: Modbus force listen only mode
    severity: high
    tags: [attack.t0814, attack.t0855]
    detection:
      selection:
        modbus.function: 8
        modbus.subfunction: 4
      condition: selection

Every problem is reported with ``file:line`` and a reason; a file with any error contributes
no rule at all (nothing loads half-way). A rule naming an undefined ``$variable`` is not an
error: it loads disabled (see :mod:`otids.rules.engine`).

Optional blocks beyond Sigma's: ``threshold``, ``suppress`` and ``rate_limit`` (see
:mod:`otids.rules.threshold`), ``state`` (see :mod:`otids.rules.state`), and ``tests``, a
list of ``{capture, alerts, vars}`` run by
``otids rules test``: the capture (and optional variables file), relative to the rule
file's directory or to one of its parents (the repository root), gives ``alerts`` alerts of
this rule.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from otids.decode.registry import BY_NAME
from otids.rules.condition import ConditionError, parse_condition
from otids.rules.engine import (
    SECONDARY_INDEX,
    SEVERITIES,
    CompileError,
    Matcher,
    Rule,
    RuleSet,
    compile_condition,
    compile_selection,
    index_exact,
    index_values,
)
from otids.rules.fields import EVENT_NAMES, VOCABULARY
from otids.rules.state import parse_state
from otids.rules.threshold import parse_limits

REQUIRED_KEYS = ("id", "sid", "title", "severity", "detection")
OPTIONAL_KEYS = (
    "description",
    "category",
    "tags",
    "references",
    "falsepositives",
    "author",
    "date",
    "modified",
    "status",
    "tests",
    "threshold",
    "suppress",
    "rate_limit",
    "state",
)
TEST_KEYS = ("capture", "alerts", "vars")
RULE_SUFFIXES = (".yaml", ".yml")
SURICATA_SUFFIX = ".rules"  # Suricata/Snort signature files (otids.rules.suricata)

# libyaml's safe loader when PyYAML was built with it: ten times faster than the pure-Python
# one, and the rule files are parsed at every start.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_CATEGORY = {"event": "Protocol Command Decode", "transaction": "ICS Policy Violation"}


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One error in a rule file."""

    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class RuleLoadError(Exception):
    """Rules could not be loaded; ``problems`` lists every error found."""

    def __init__(self, problems: list[RuleProblem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def default_rules_dir() -> Path:
    """The rule set embedded in the package (a copy of the repository's ``rules/``)."""
    return Path(str(resources.files("otids") / "default_rules"))


def rule_files(path: str | os.PathLike[str]) -> list[Path]:
    """The rule files at ``path`` (a file, or a directory searched recursively), sorted:
    YAML rules and Suricata/Snort ``.rules`` files."""
    p = Path(path)
    if p.is_dir():
        suffixes = (*RULE_SUFFIXES, SURICATA_SUFFIX)
        return sorted(f for f in p.rglob("*") if f.suffix in suffixes and f.is_file())
    return [p]


def _line_of(node: yaml.Node | None, path: tuple[Any, ...]) -> int:
    """1-based line of the YAML node at ``path`` (keys and list indexes), or its nearest parent."""
    if node is None:
        return 1
    line = node.start_mark.line + 1
    for step in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if getattr(k, "value", None) == str(step):
                    line = k.start_mark.line + 1
                    child = v
                    break
        elif (
            isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value)
        ):
            child = node.value[step]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _python_yaml_error(text: str) -> yaml.YAMLError:
    """The pure-Python parser's error for text libyaml rejected (it names the culprit)."""
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return exc
    return yaml.YAMLError("not accepted by libyaml")


def parse_rule(
    text: str, source: str, variables: dict[str, list[Any]] | None = None
) -> tuple[Rule | None, list[RuleProblem]]:
    """Parse and compile one rule file's text. Returns the rule, or None and its problems."""
    variables = variables or {}
    problems: list[RuleProblem] = []

    def problem(path: tuple[Any, ...], message: str) -> None:
        problems.append(RuleProblem(source, _line_of(root, path), message))

    try:
        root = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)  # _Loader is a safe loader
    except yaml.YAMLError:
        exc = _python_yaml_error(text)  # libyaml's messages say less: ask the Python parser
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [RuleProblem(source, line, f"not valid YAML: {reason}")]
    if not isinstance(data, dict):
        root = None
        return None, [RuleProblem(source, 1, "a rule file must hold one mapping (one rule)")]

    for key in REQUIRED_KEYS:
        if key not in data:
            problem((), f"missing required key {key!r}")
    for key in data:
        if key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
            problem(
                (key,), f"unknown key {key!r}" + _suggest(str(key), REQUIRED_KEYS + OPTIONAL_KEYS)
            )
    sid = data.get("sid")
    if "sid" in data and (not isinstance(sid, int) or isinstance(sid, bool) or sid <= 0):
        problem(("sid",), f"sid must be a positive integer, got {sid!r}")
    if "id" in data and not isinstance(data["id"], str):
        problem(("id",), "id must be text")
    if "title" in data and not isinstance(data["title"], str):
        problem(("title",), "title must be text")
    severity = data.get("severity")
    if "severity" in data and severity not in SEVERITIES:
        problem(("severity",), f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    for key in ("tags", "references", "falsepositives"):
        if key in data and not (
            isinstance(data[key], list) and all(isinstance(x, str) for x in data[key])
        ):
            problem((key,), f"{key} must be a list of text")

    missing: set[str] = set()
    detection = _compile_detection(data.get("detection"), variables, problem, missing)
    matcher, kind, protocol = detection.matcher, detection.kind, detection.protocol
    threshold, suppress, rate_limit = parse_limits(data, variables, problem, missing)
    state = parse_state(data.get("state"), kind, protocol, problem)
    _check_tests(data.get("tests"), problem)
    if problems or matcher is None:
        return None, problems
    return (
        Rule(
            id=data["id"],
            sid=sid,  # type: ignore[arg-type]
            title=data["title"],
            severity=severity,  # type: ignore[arg-type]
            kind=kind,
            protocol=protocol,
            match=matcher if state is None else state.wrap(matcher),
            description=str(data.get("description", "")).strip(),
            category=data.get("category") or DEFAULT_CATEGORY[kind],
            tags=list(data.get("tags", [])),
            references=list(data.get("references", [])),
            falsepositives=list(data.get("falsepositives", [])),
            source=source,
            index_values=detection.index_values,
            index_field=detection.index_field,
            index_exact=detection.index_exact,
            raw=data,
            threshold=threshold,
            suppress=suppress,
            rate_limit=rate_limit,
            tests=list(data.get("tests") or []),
            missing_vars=frozenset(missing),
            state=state,
            detect=matcher if state is not None else None,
            tx_match=detection.tx_matcher,
        ),
        [],
    )


def _check_tests(tests: Any, problem: Any) -> None:
    if tests is None:
        return
    if not isinstance(tests, list):
        problem(("tests",), "tests must be a list of {capture, alerts}")
        return
    for i, test in enumerate(tests):
        if not isinstance(test, dict):
            problem(("tests", i), "a test is a map of capture, alerts and optionally vars")
            continue
        for key in test:
            if key not in TEST_KEYS:
                problem(
                    ("tests", i, key), f"unknown test key {key!r} (known: capture, alerts, vars)"
                )
        if not isinstance(test.get("capture"), str):
            problem(("tests", i), "a test needs capture: a path to a capture file")
        alerts = test.get("alerts")
        if not isinstance(alerts, int) or isinstance(alerts, bool) or alerts < 0:
            problem(("tests", i), f"a test needs alerts: a count >= 0, got {alerts!r}")
        if "vars" in test and not isinstance(test["vars"], str):
            problem(("tests", i, "vars"), "vars must be a path to a variables file")


class _Detection(NamedTuple):
    """A compiled ``detection`` block (``matcher`` None: it did not compile)."""

    matcher: Matcher | None
    kind: str = ""
    protocol: str | None = None
    index_values: frozenset[Any] | None = None
    index_field: str = ""
    index_exact: bool = False  # the index lookup decides the condition
    tx_matcher: Callable[[Any], bool] | None = None  # on the transaction alone, if it can


_NO_DETECTION = _Detection(None)


def _compile_detection(
    detection: Any, variables: dict[str, list[Any]], problem: Any, missing: set[str]
) -> _Detection:
    if detection is None:
        return _NO_DETECTION
    if not isinstance(detection, dict):
        problem(("detection",), "detection must be a map of selections and a condition")
        return _NO_DETECTION
    selections: dict[str, Matcher] = {}
    literals: dict[str, dict[str, Any]] = {}
    used: list[str] = []
    for name, sel in detection.items():
        if name == "condition":
            continue
        try:
            matcher, fields, literal = compile_selection(
                sel, variables, ("detection", name), missing
            )
        except CompileError as exc:
            problem(exc.path or ("detection", name), str(exc) + _field_hint(str(exc)))
            continue
        selections[str(name)] = matcher
        literals[str(name)] = literal
        used.extend(fields)
        _check_event_names(sel, ("detection", name), problem)
    if not selections and len(detection) <= 1:
        problem(("detection",), "detection has no selection")
        return _NO_DETECTION
    condition = detection.get("condition")
    if condition is None:
        condition = " and ".join(selections)
    if not isinstance(condition, str):
        problem(("detection", "condition"), "condition must be text")
        return _NO_DETECTION
    try:
        tree = parse_condition(condition, list(selections))
    except ConditionError as exc:
        problem(("detection", "condition"), str(exc))
        return _NO_DETECTION
    if len(selections) != len(detection) - ("condition" in detection):
        # a selection failed to compile: already reported
        return _NO_DETECTION

    protocols = {p for p in (VOCABULARY[f].protocol for f in used) if p is not None}
    kind = "event" if "event" in used else "transaction"
    if len(protocols) > 1:
        problem(("detection",), f"a rule can test one protocol, this one tests {sorted(protocols)}")
        return _NO_DETECTION
    protocol = next(iter(protocols), None)
    idx_field = "event"
    idx = index_values(tree, literals, "event") if kind == "event" else None
    if kind == "transaction" and protocol is not None:
        # The function code first; failing that, the secondary field (exception code).
        candidates = (BY_NAME[protocol].index_field, SECONDARY_INDEX.get(protocol))
        for idx_field in filter(None, candidates):
            idx = index_values(tree, literals, idx_field)
            if idx is not None:
                break
    idx_field = idx_field if idx else ""
    tx_matcher = None
    if kind == "transaction" and all(VOCABULARY[f].protocol is not None for f in used):
        # Only the protocol's fields: compiled once more as a test of the transaction alone,
        # the engine then builds no evaluation context for the rule.
        on_tx = {
            str(name): compile_selection(sel, variables, (), missing, on_transaction=True)[0]
            for name, sel in detection.items()
            if name != "condition"
        }
        tx_matcher = compile_condition(tree, on_tx)
    return _Detection(
        compile_condition(tree, selections),
        kind,
        protocol,
        idx,
        idx_field,
        index_exact(tree, literals, idx_field),
        tx_matcher,
    )


def _field_hint(message: str) -> str:
    if message.startswith("unknown field "):
        return _suggest(message.split("'")[1], VOCABULARY)
    return ""


def _check_event_names(sel: Any, path: tuple[Any, ...], problem: Any) -> None:
    maps = sel if isinstance(sel, list) else [sel]
    for m in maps:
        if not isinstance(m, dict):
            continue
        for key, value in m.items():
            if str(key).partition("|")[0] != "event":
                continue
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str) and v not in EVENT_NAMES and "|" not in str(key):
                    problem((*path, key), f"unknown event {v!r}" + _suggest(v, EVENT_NAMES))


def load_rules(
    paths: Iterable[str | os.PathLike[str]],
    variables: dict[str, list[Any]] | None = None,
) -> RuleSet:
    """Load every rule file under ``paths``; raise :class:`RuleLoadError` listing all problems.

    A later rule with the same ``id`` as an earlier one replaces it, so a site can override a
    default rule by copying it to its own directory.
    """
    by_id: dict[str, Rule] = {}
    problems: list[RuleProblem] = []
    warnings: list[str] = []  # Suricata rules skipped (the rest of their file loads)
    for base in paths:
        files = rule_files(base)
        if not Path(base).exists():
            problems.append(RuleProblem(str(base), 0, "no such file or directory"))
            continue
        for f in files:
            try:
                text = f.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(RuleProblem(str(f), 0, f"cannot read: {exc}"))
                continue
            if f.suffix == SURICATA_SUFFIX:
                # Imported here: most runs load no Suricata rule and skip its start-up cost.
                from otids.rules.suricata import parse_rules

                signatures, skipped = parse_rules(text, str(f), variables)
                by_id.update((r.id, r) for r in signatures)
                warnings.extend(skipped)
                continue
            rule, errs = parse_rule(text, str(f), variables)
            problems.extend(errs)
            if rule is not None:
                by_id[rule.id] = rule
    seen: dict[int, Rule] = {}
    for rule in by_id.values():
        other = seen.get(rule.sid)
        if other is not None:
            problems.append(
                RuleProblem(
                    rule.source, _sid_line(rule), f"sid {rule.sid} is also used by {other.source}"
                )
            )
        seen[rule.sid] = rule
    if problems:
        raise RuleLoadError(problems)
    ruleset = RuleSet(by_id.values())
    ruleset.warnings = warnings
    return ruleset


def resolve_test_path(rule_source: str, relative: str) -> Path | None:
    """A rule test's capture or vars file: relative to the rule file's directory or to the
    nearest parent holding it (the repository root for ``pcaps/...``); None if not found."""
    base = Path(rule_source).resolve().parent
    for folder in (base, *base.parents):
        candidate = folder / relative
        if candidate.is_file():
            return candidate
    return None


def _sid_line(rule: Rule) -> int:
    if "suricata" in rule.raw:  # a signature of a .rules file: its line is known
        return int(rule.raw["line"])
    try:
        text = Path(rule.source).read_text(encoding="utf-8")
        return _line_of(yaml.compose(text, Loader=_Loader), ("sid",))
    except (OSError, yaml.YAMLError):
        return 0
