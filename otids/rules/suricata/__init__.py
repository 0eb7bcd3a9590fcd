"""Suricata and Snort signatures (``.rules`` files) as otids rules.

:func:`parse_rules` turns a rules file's text into :class:`~otids.rules.engine.Rule` objects
that the rule set, the alert gate and the EVE writer treat like native rules. A rule that
cannot be parsed, or uses something otids does not implement, is skipped with a warning
naming its file, line and sid; the rest of the file loads.

Variables (``$HOME_NET``, ``$MODBUS_SERVER``, ``$DNP3_PORTS``...) come from the site
variables file, over :data:`~otids.rules.suricata.groups.DEFAULT_VARIABLES`.
"""

from __future__ import annotations

from typing import Any

from otids.rules.engine import Rule
from otids.rules.loader import SURICATA_SUFFIX
from otids.rules.suricata.compiler import Compiler, Unsupported
from otids.rules.suricata.groups import DEFAULT_VARIABLES, site_variables
from otids.rules.suricata.parser import RuleSyntaxError, parse_rule, rule_lines

__all__ = ["DEFAULT_VARIABLES", "SURICATA_SUFFIX", "parse_rules"]


def parse_rules(
    text: str, source: str, variables: dict[str, list[Any]] | None = None
) -> tuple[list[Rule], list[str]]:
    """The rules of one ``.rules`` file and a warning line for each rule skipped.

    Only ``alert`` rules load (otids detects, it does not drop). Of two rules with the same
    sid the one with the higher ``rev`` stays (the first on a tie), as in Suricata.
    """
    compiler = Compiler(site_variables(variables or {}))
    by_sid: dict[int, Rule] = {}
    warnings: list[str] = []
    for line, rule_text in rule_lines(text):
        where = f"{source}:{line}"
        try:
            parsed = parse_rule(rule_text, source, line)
        except RuleSyntaxError as exc:
            warnings.append(f"{where}: rule skipped: {exc}")
            continue
        name = f"sid {parsed.sid}" if parsed.sid is not None else "rule without sid"
        if parsed.action != "alert":
            warnings.append(
                f"{where}: {name} skipped: action {parsed.action!r} (otids alerts only)"
            )
            continue
        try:
            rule = compiler.compile(parsed)
        except (Unsupported, RuleSyntaxError) as exc:
            warnings.append(f"{where}: {name} skipped: {exc}")
            continue
        old = by_sid.get(rule.sid)
        if old is not None:
            keep = rule if rule.rev > old.rev else old
            warnings.append(
                f"{where}: sid {rule.sid} duplicates line {old.raw['line']}; "
                f"keeping rev {keep.rev} (line {keep.raw['line']})"
            )
            rule = keep
        by_sid[rule.sid] = rule
    return list(by_sid.values()), warnings
