"""``otids rules``: list, validate, test rules and print the rule-writing guide."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from otids.capture.readers import CaptureError, open_capture
from otids.cli.app import main
from otids.cli.common import (
    SURICATA_RULES_KEY,
    build_ruleset,
    fail,
    load_variables,
    rule_source_options,
    warn_disabled,
)
from otids.pipeline import Pipeline
from otids.rules.loader import RuleLoadError, default_rules_dir, load_rules, resolve_test_path


@main.group()
def rules() -> None:
    """Inspect and validate rules."""


@rules.command("list")
@rule_source_options
@click.option("--vars", "vars_file", type=click.Path(exists=True, dir_okay=False))
def rules_list(rule_dirs: tuple[str, ...], no_default_rules: bool, vars_file: str | None) -> None:
    """Show the loaded rules: id, sid, severity, ATT&CK techniques, title."""
    from rich.console import Console
    from rich.table import Table

    ruleset = build_ruleset(rule_dirs, not no_default_rules, load_variables(vars_file))
    warn_disabled(ruleset)
    table = Table(title=f"{len(ruleset)} rules", title_justify="left")
    for col in ("sid", "id", "severity", "ATT&CK", "title"):
        table.add_column(col, justify="right" if col == "sid" else "left")
    for rule in ruleset.rules:
        table.add_row(str(rule.sid), rule.id, rule.severity, " ".join(rule.attack), rule.title)
    Console().print(table)


@rules.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--vars", "vars_file", type=click.Path(exists=True, dir_okay=False))
def rules_validate(paths: tuple[str, ...], vars_file: str | None) -> None:
    """Check rule files; print every error with file:line and the reason."""
    variables = load_variables(vars_file)
    try:
        ruleset = load_rules(paths, variables)
    except RuleLoadError as exc:
        for problem in exc.problems:
            click.echo(str(problem))
        fail(f"{len(exc.problems)} error(s)")
    for line in ruleset.warnings:  # Suricata rules skipped (unsupported options)
        click.echo(line)
    warn_disabled(ruleset)
    click.echo(f"{len(ruleset)} rule(s) OK")


@rules.command("guide")
def rules_guide() -> None:
    """Print the rule-writing guide (Markdown): every field and event name."""
    from otids.rules.guide import render_guide

    click.echo(render_guide(), nl=False)


class _AlertCounter:
    """A sink counting alert lines per sid."""

    def __init__(self) -> None:
        self.by_sid: dict[int, int] = {}

    def handle(self, record: dict[str, Any]) -> None:
        if record.get("event_type") == "alert":
            sid = record["alert"]["signature_id"]
            self.by_sid[sid] = self.by_sid.get(sid, 0) + 1


def _alert_counts(
    paths: list[str | Path], capture: Path, vars_file: Path | None
) -> dict[int, int] | str:
    """Alert lines per sid from one capture with the rules at ``paths``, or a failure reason."""
    variables = load_variables(str(vars_file)) if vars_file is not None else {}
    try:
        ruleset = load_rules(paths, variables)
        reader = open_capture(str(capture))
    except (RuleLoadError, CaptureError) as exc:
        return str(exc).splitlines()[0]
    counter = _AlertCounter()
    pipeline = Pipeline(ruleset, counter)
    with reader:
        reader.prefilter = pipeline.decoder
        pipeline.run(reader)
    pipeline.finish(emit_stats=False)
    return counter.by_sid


@rules.command("test")
@rule_source_options
def rules_test(rule_dirs: tuple[str, ...], no_default_rules: bool) -> None:
    """Run every rule's tests (capture -> expected alert count); exit 1 on any failure.

    A test whose capture is not found (an installed package ships no captures) is skipped.
    """
    from rich.console import Console
    from rich.table import Table

    paths: list[str | Path] = [default_rules_dir()] if not no_default_rules else []
    paths.extend(rule_dirs)
    paths.extend(click.get_current_context().meta.get(SURICATA_RULES_KEY, ()))
    try:
        ruleset = load_rules(paths)
    except RuleLoadError as exc:
        for problem in exc.problems:
            click.echo(f"otids: rule error: {problem}", err=True)
        fail(f"{len(exc.problems)} rule error(s)")
    cases = [
        (rule, test)
        for rule in sorted([*ruleset.rules, *ruleset.disabled], key=lambda r: r.sid)
        for test in rule.tests
    ]
    runs: dict[tuple[Path, Path | None], dict[int, int] | str] = {}
    table = Table(title=f"{len(cases)} rule tests", title_justify="left")
    for col in ("sid", "rule", "capture", "expected", "got", "pass"):
        table.add_column(col, justify="right" if col in ("sid", "expected", "got") else "left")
    failed = skipped = 0
    for rule, test in cases:
        capture = resolve_test_path(rule.source, test["capture"])
        vars_file = resolve_test_path(rule.source, test["vars"]) if "vars" in test else None
        label = test["capture"] + (f" (vars {test['vars']})" if "vars" in test else "")
        if capture is None or ("vars" in test and vars_file is None):
            skipped += 1
            table.add_row(str(rule.sid), rule.id, label, str(test["alerts"]), "-", "skip")
            continue
        key = (capture, vars_file)
        if key not in runs:
            runs[key] = _alert_counts(paths, capture, vars_file)
        result = runs[key]
        got = result if isinstance(result, str) else str(result.get(rule.sid, 0))
        ok = got == str(test["alerts"])
        failed += not ok
        table.add_row(
            str(rule.sid), rule.id, label, str(test["alerts"]), got, "ok" if ok else "FAIL"
        )
    Console(width=160).print(table)
    untested = [r.id for r in ruleset.rules if not r.tests]
    click.echo(
        f"{len(cases) - failed - skipped} passed, {failed} failed, {skipped} skipped; "
        f"{len(untested)} rule(s) without tests"
    )
    sys.exit(1 if failed else 0)


# The rule-source commands (add-source, update) register themselves on the group above.
from otids.cli import rule_sources  # noqa: E402, F401
