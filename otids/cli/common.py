"""What the ``otids`` commands share: exit codes, messages, site variables and rule loading."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from otids.rules.engine import RuleSet
from otids.rules.loader import RuleLoadError, default_rules_dir, load_rules

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
SURICATA_RULES_KEY = "otids.suricata_rules"  # click context meta: the --suricata-rules files


def fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"otids: error: {message}", err=True)
    sys.exit(code)


def warn(message: str) -> None:
    click.echo(f"otids: warning: {message}", err=True)


def load_variables(path: str | None) -> dict[str, list[Any]]:
    """Read the site variables file: a YAML map of name -> list of values."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read variables file {path}: {exc}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        fail(f"variables file {where}: not valid YAML: {reason}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        fail(f"variables file {path} must map names to lists of values")
    out: dict[str, list[Any]] = {}
    for name, value in data.items():
        out[str(name).lstrip("$")] = value if isinstance(value, list) else [value]
    return out


def build_ruleset(
    rule_dirs: tuple[str, ...], default_rules: bool, variables: dict[str, list[Any]]
) -> RuleSet:
    """Load the embedded rules (unless disabled), each ``--rules`` path, then each
    ``--suricata-rules`` file; exit 2 on errors. A skipped Suricata rule is a warning."""
    paths: list[str | Path] = [default_rules_dir()] if default_rules else []
    paths.extend(rule_dirs)
    ctx = click.get_current_context(silent=True)
    paths.extend(ctx.meta.get(SURICATA_RULES_KEY, ()) if ctx is not None else ())
    try:
        ruleset = load_rules(paths, variables)
    except RuleLoadError as exc:
        for problem in exc.problems:
            click.echo(f"otids: rule error: {problem}", err=True)
        fail(f"{len(exc.problems)} rule error(s); no rule was loaded")
    for line in ruleset.warnings:
        warn(line)
    return ruleset


def warn_disabled(ruleset: RuleSet) -> None:
    """One warning line per undefined site variable, naming the rules it disables."""
    for name, ids in ruleset.missing_vars().items():
        warn(f"${name} is not defined (--vars): rule(s) disabled: {', '.join(ids)}")


def rule_source_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--rules`` (repeatable) and ``--no-default-rules``, shared by the commands that load
    rules."""
    command = click.option(
        "--no-default-rules", is_flag=True, help="Do not load the embedded rule set."
    )(command)
    # Kept in the click context rather than passed on: build_ruleset reads it, so every
    # command that loads rules takes the option without a parameter of its own.
    command = click.option(
        "--suricata-rules",
        multiple=True,
        type=click.Path(exists=True, dir_okay=False),
        expose_value=False,
        callback=lambda ctx, param, value: ctx.meta.__setitem__(SURICATA_RULES_KEY, value),
        help="Suricata/Snort rules file (.rules), in addition to the others (repeatable).",
    )(command)
    return click.option(
        "--rules",
        "rule_dirs",
        multiple=True,
        type=click.Path(exists=True),
        help="Rule file or directory, in addition to the embedded rules (repeatable).",
    )(command)
