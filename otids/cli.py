"""The ``otids`` command line: a thin click layer over :mod:`otids.pipeline`.

Exit codes: 0 success; 1 internal error; 2 bad input or usage (unreadable capture, bad rules,
bad options); 130 interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
import yaml

from otids import __version__
from otids.alerts.eve import stats_record
from otids.alerts.sinks import JsonLinesSink, SinkSet
from otids.capture.readers import CaptureError, CaptureReader, open_capture
from otids.pipeline import Pipeline
from otids.rules.engine import RuleSet
from otids.rules.loader import RuleLoadError, default_rules_dir, load_rules, resolve_test_path
from otids.workers import LineWriter, auto_workers, merge_stats, run_workers

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
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        _fail(f"variables file {where}: not valid YAML: {reason}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        _fail(f"variables file {path} must map names to lists of values")
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
        _fail(f"{len(exc.problems)} rule error(s); no rule was loaded")
    return ruleset


def _warn_disabled(ruleset: RuleSet) -> None:
    """One warning line per undefined site variable, naming the rules it disables."""
    for name, ids in ruleset.missing_vars().items():
        _warn(f"${name} is not defined (--vars): rule(s) disabled: {', '.join(ids)}")


def _rule_source_options(command: Callable[..., None]) -> Callable[..., None]:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="otids")
def main() -> None:
    """otids: intrusion detection for Modbus/TCP and DNP3 networks."""


@main.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@_rule_source_options
@click.option(
    "--vars",
    "vars_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Site variables file (YAML): named lists such as modbus_clients.",
)
@click.option(
    "--json", "json_out", metavar="OUT", help="Write EVE-style JSON lines to OUT ('-' for stdout)."
)
@click.option(
    "--transactions", is_flag=True, help="Also log every decoded transaction to the JSON output."
)
@click.option("-q", "--quiet", is_flag=True, help="No alert lines or summary on the console.")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default="0 = auto",
    help="Processes sharing the flows (0: one per CPU for large captures).",
)
def read(
    captures: tuple[str, ...],
    rule_dirs: tuple[str, ...],
    no_default_rules: bool,
    vars_file: str | None,
    json_out: str | None,
    transactions: bool,
    quiet: bool,
    workers: int,
) -> None:
    """Analyse pcap/pcapng capture files (gzip accepted), in the order given."""
    variables = load_variables(vars_file)
    ruleset = build_ruleset(rule_dirs, not no_default_rules, variables)
    if transactions and json_out is None:
        _warn("--transactions has no effect without --json")
    code = EXIT_OK
    good: list[str] = []
    for path in captures:  # unreadable captures are reported once, before any work
        try:
            open_capture(path).close()
            good.append(path)
        except CaptureError as exc:
            _warn(str(exc))
            code = EXIT_BAD_INPUT
    if not good:
        sys.exit(EXIT_BAD_INPUT)
    if not quiet:
        _warn_disabled(ruleset)
    if json_out not in (None, "-"):
        try:
            JsonLinesSink(json_out).close()  # create or truncate; every writer appends
        except OSError as exc:
            _fail(f"cannot write {json_out}: {exc.strerror or exc}")
    size = sum(os.path.getsize(p) for p in good)
    count = workers or auto_workers(size)
    started = time.monotonic()

    def analysis(shard: tuple[int, int], report: bool) -> tuple[dict[str, Any], int]:
        return _analyse(good, ruleset, json_out, transactions, quiet, shard, report)

    if count <= 1:
        stats, worker_code = analysis((0, 1), True)
    else:
        parts, worker_code = run_workers(count, analysis)
        if not parts:
            _fail("every worker failed", EXIT_INTERNAL)
        stats = merge_stats(parts, time.monotonic() - started)
    # The final statistics: console summary and the JSON log's last record.
    final: list[Any] = []
    if not quiet:
        from rich.console import Console

        from otids.alerts.console import ConsoleSink

        final.append(ConsoleSink(Console(stderr=json_out == "-", highlight=False)))
    if json_out is not None:
        final.append(JsonLinesSink(json_out, append=True))
    sinks = SinkSet(final)
    sinks.handle(stats_record(stats["last_ts"] or time.time(), stats))
    sinks.close()
    sys.exit(max(code, worker_code))


def _analyse(
    captures: list[str],
    ruleset: RuleSet,
    json_out: str | None,
    transactions: bool,
    quiet: bool,
    shard: tuple[int, int],
    report: bool,
) -> tuple[dict[str, Any], int]:
    """Run the pipeline over ``captures`` for one shard of the flows; return its statistics
    and exit code. ``report``: this process reports capture warnings (one worker does)."""
    sinks: list[Any] = []
    if not quiet:
        from rich.console import Console

        from otids.alerts.console import ConsoleSink

        # JSON on stdout: the console's output moves to stderr so the two never mix.
        fd = 2 if json_out == "-" else 1
        sinks.append(ConsoleSink(Console(file=LineWriter(fd), highlight=False)))  # type: ignore[arg-type]
    if json_out is not None:
        sinks.append(JsonLinesSink(json_out, append=True))
    sink = SinkSet(sinks)
    pipeline = Pipeline(ruleset, sink, log_transactions=transactions, shard=shard)
    code = EXIT_OK
    try:
        for path in captures:
            try:
                reader = open_capture(path)
            except CaptureError as exc:  # vanished since it was checked
                if report:
                    _warn(str(exc))
                code = EXIT_BAD_INPUT
                continue
            with reader:
                pipeline.files += 1
                pipeline.run(_with_progress(reader, path, quiet or not report))
                if reader.damaged:
                    code = EXIT_BAD_INPUT
                if reader.warning:
                    done = f"{reader.records} records before it were analysed"
                    msg = f"{path}: {reader.warning}; {done}"
                    if report:
                        _warn(msg)
                    pipeline.capture_warnings.append(msg)
    except KeyboardInterrupt:
        if report:
            _warn("interrupted; flushing what was seen")
        code = EXIT_INTERRUPTED
    finally:
        stats = pipeline.finish(emit_stats=False)
        sink.close()
    return stats, code


def _with_progress(
    reader: CaptureReader, path: str, quiet: bool
) -> Iterator[tuple[float, int, bytes, int]]:
    """The reader's packets, with a progress bar on stderr for long files on a terminal."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    if quiet or not sys.stderr.isatty() or size < PROGRESS_MIN_BYTES:
        yield from reader
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

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
@_rule_source_options
@click.option("--vars", "vars_file", type=click.Path(exists=True, dir_okay=False))
def rules_list(rule_dirs: tuple[str, ...], no_default_rules: bool, vars_file: str | None) -> None:
    """Show the loaded rules: id, sid, severity, ATT&CK techniques, title."""
    from rich.console import Console
    from rich.table import Table

    ruleset = build_ruleset(rule_dirs, not no_default_rules, load_variables(vars_file))
    _warn_disabled(ruleset)
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
    _warn_disabled(ruleset)
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
        pipeline.run(reader)
    pipeline.finish(emit_stats=False)
    return counter.by_sid


@rules.command("test")
@_rule_source_options
def rules_test(rule_dirs: tuple[str, ...], no_default_rules: bool) -> None:
    """Run every rule's tests (capture -> expected alert count); exit 1 on any failure.

    A test whose capture is not found (an installed package ships no captures) is skipped.
    """
    from rich.console import Console
    from rich.table import Table

    paths: list[str | Path] = [default_rules_dir()] if not no_default_rules else []
    paths.extend(rule_dirs)
    try:
        ruleset = load_rules(paths)
    except RuleLoadError as exc:
        for problem in exc.problems:
            click.echo(f"otids: rule error: {problem}", err=True)
        _fail(f"{len(exc.problems)} rule error(s)")
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


if __name__ == "__main__":  # pragma: no cover
    main()
