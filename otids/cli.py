"""The ``otids`` command line: a thin click layer over :mod:`otids.pipeline`.

Exit codes: 0 success; 1 internal error; 2 bad input or usage (unreadable capture, bad rules,
bad options); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from otids import __version__
from otids.alerts.console import ConsoleSink
from otids.alerts.sinks import JsonLinesSink, SinkSet
from otids.capture.readers import CaptureError, CaptureReader, open_capture
from otids.pipeline import Pipeline
from otids.rules.engine import RuleSet
from otids.rules.loader import RuleLoadError, default_rules_dir, load_rules

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

# A capture smaller than this is over before a progress bar would be read.
PROGRESS_MIN_BYTES = 32 * 1024 * 1024


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    click.echo(f"otids: error: {message}", err=True)
    sys.exit(code)


def _warn(message: str) -> None:
    click.echo(f"otids: warning: {message}", err=True)


def load_variables(path: str | None) -> dict[str, list[Any]]:
    """Read the site variables file: a YAML map of name -> list of values."""
    if path is None:
        return {}
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read variables file {path}: {exc}")
    except yaml.YAMLError as exc:
        _fail(f"variables file {path} is not valid YAML: {exc}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        _fail(f"variables file {path} must map names to lists of values")
    out: dict[str, list[Any]] = {}
    for name, value in data.items():
        out[str(name).lstrip("$")] = value if isinstance(value, list) else [value]
    return out


def build_ruleset(rule_dirs: tuple[str, ...], default_rules: bool, variables: dict[str, list[Any]]) -> RuleSet:
    """Load the embedded rules (unless disabled) then each ``--rules`` path; exit 2 on errors."""
    paths: list[str | Path] = [default_rules_dir()] if default_rules else []
    paths.extend(rule_dirs)
    try:
        return load_rules(paths, variables)
    except RuleLoadError as exc:
        for problem in exc.problems:
            click.echo(f"otids: rule error: {problem}", err=True)
        _fail(f"{len(exc.problems)} rule error(s); no rule was loaded")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="otids")
def main() -> None:
    """otids: intrusion detection for Modbus/TCP and DNP3 networks."""


@main.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--rules", "rule_dirs", multiple=True, type=click.Path(exists=True),
              help="Rule file or directory, in addition to the embedded rules (repeatable).")
@click.option("--no-default-rules", is_flag=True, help="Do not load the embedded rule set.")
@click.option("--vars", "vars_file", type=click.Path(exists=True, dir_okay=False),
              help="Site variables file (YAML): named lists such as modbus_clients.")
@click.option("--json", "json_out", metavar="OUT",
              help="Write EVE-style JSON lines to OUT ('-' for stdout).")
@click.option("--transactions", is_flag=True,
              help="Also log every decoded transaction to the JSON output.")
@click.option("-q", "--quiet", is_flag=True, help="No alert lines or summary on the console.")
def read(
    captures: tuple[str, ...],
    rule_dirs: tuple[str, ...],
    no_default_rules: bool,
    vars_file: str | None,
    json_out: str | None,
    transactions: bool,
    quiet: bool,
) -> None:
    """Analyse pcap/pcapng capture files (gzip accepted), in the order given."""
    variables = load_variables(vars_file)
    ruleset = build_ruleset(rule_dirs, not no_default_rules, variables)
    if transactions and json_out is None:
        _warn("--transactions has no effect without --json")
    # JSON on stdout: the console's output moves to stderr so the two never mix.
    console = Console(stderr=json_out == "-", highlight=False)
    sinks: list[Any] = []
    if not quiet:
        sinks.append(ConsoleSink(console))
    if json_out is not None:
        try:
            sinks.append(JsonLinesSink(json_out))
        except OSError as exc:
            _fail(f"cannot write {json_out}: {exc.strerror or exc}")
    sink = SinkSet(sinks)
    pipeline = Pipeline(ruleset, sink, log_transactions=transactions)
    code = EXIT_OK
    try:
        for path in captures:
            try:
                reader = open_capture(path)
            except CaptureError as exc:
                _warn(str(exc))
                code = EXIT_BAD_INPUT
                continue
            with reader:
                pipeline.files += 1
                pipeline.run(_with_progress(reader, path, quiet))
                if reader.warning:
                    msg = f"{path}: {reader.warning}; {reader.records} records before it were analysed"
                    _warn(msg)
                    pipeline.capture_warnings.append(msg)
    except KeyboardInterrupt:
        _warn("interrupted; flushing what was seen")
        code = EXIT_INTERRUPTED
    finally:
        pipeline.finish()
        sink.close()
    sys.exit(code)


def _with_progress(reader: CaptureReader, path: str, quiet: bool) -> Iterator[tuple[float, int, bytes, int]]:
    """The reader's packets, with a progress bar on stderr for long files on a terminal."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    if quiet or not sys.stderr.isatty() or size < PROGRESS_MIN_BYTES:
        yield from reader
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with progress:
        task = progress.add_task(Path(path).name, total=size)
        for n, packet in enumerate(reader, 1):
            if not n & 0x3FFF:
                progress.update(task, completed=reader.position)
            yield packet


@main.group()
def rules() -> None:
    """Inspect and validate rules."""


@rules.command("list")
@click.option("--rules", "rule_dirs", multiple=True, type=click.Path(exists=True),
              help="Rule file or directory, in addition to the embedded rules (repeatable).")
@click.option("--no-default-rules", is_flag=True, help="Do not list the embedded rule set.")
@click.option("--vars", "vars_file", type=click.Path(exists=True, dir_okay=False))
def rules_list(rule_dirs: tuple[str, ...], no_default_rules: bool, vars_file: str | None) -> None:
    """Show the loaded rules: id, sid, severity, ATT&CK techniques, title."""
    ruleset = build_ruleset(rule_dirs, not no_default_rules, load_variables(vars_file))
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
        _fail(f"{len(exc.problems)} error(s)")
    click.echo(f"{len(ruleset)} rule(s) OK")


if __name__ == "__main__":  # pragma: no cover
    main()
