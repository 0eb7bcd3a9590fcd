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
    """Load the embedded rules (unless disabled) then each ``--rules`` path; exit 2 on errors."""
    paths: list[str | Path] = [default_rules_dir()] if default_rules else []
    paths.extend(rule_dirs)
    try:
        ruleset = load_rules(paths, variables)
    except RuleLoadError as exc:
        for problem in exc.problems:
            click.echo(f"otids: rule error: {problem}", err=True)
        fail(f"{len(exc.problems)} rule error(s); no rule was loaded")
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
    return click.option(
        "--rules",
        "rule_dirs",
        multiple=True,
        type=click.Path(exists=True),
        help="Rule file or directory, in addition to the embedded rules (repeatable).",
    )(command)
