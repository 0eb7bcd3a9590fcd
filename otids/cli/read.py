"""``otids read``: offline analysis of capture files."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click

from otids.alerts.eve import stats_record
from otids.alerts.sinks import SinkSet
from otids.balance import balanced_buckets
from otids.capture.link import SHARD_BUCKETS
from otids.capture.pcapwriter import FlowRecorder, create_pcap
from otids.capture.readers import CaptureError, CaptureReader, open_capture
from otids.cli.app import main
from otids.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    build_ruleset,
    fail,
    load_variables,
    rule_source_options,
    warn,
    warn_disabled,
)
from otids.cli.config import config_option, config_variables
from otids.cli.outputs import Outputs, output_options
from otids.pipeline import Pipeline
from otids.rules.engine import RuleSet
from otids.workers import analysis_heap, auto_workers, merge_stats, run_workers

# A capture smaller than this is over before a progress bar would be read.
PROGRESS_MIN_BYTES = 32 * 1024 * 1024
PCAP_OUT_SNAPLEN = 262144  # --pcap-out keeps frames whole (libpcap's largest snap length)


@main.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@config_option
@rule_source_options
@click.option(
    "--vars",
    "vars_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Site variables file (YAML): named lists such as modbus_clients.",
)
@output_options
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=0,
    show_default="0 = auto",
    help="Processes sharing the flows (0: one per CPU for large captures).",
)
@click.option(
    "--pcap-out",
    metavar="FILE",
    help="Write the packets of alerting flows to this pcap (recent ones before the alert too).",
)
def read(
    captures: tuple[str, ...],
    rule_dirs: tuple[str, ...],
    no_default_rules: bool,
    vars_file: str | None,
    outputs: Outputs,
    workers: int,
    pcap_out: str | None,
) -> None:
    """Analyse pcap/pcapng capture files (gzip accepted), in the order given."""
    # The configuration file's [variables], overridden by the --vars file's.
    variables = {**config_variables(), **load_variables(vars_file)}
    ruleset = build_ruleset(rule_dirs, not no_default_rules, variables)
    code = EXIT_OK
    good: list[str] = []
    for path in captures:  # unreadable captures are reported once, before any work
        try:
            open_capture(path).close()
            good.append(path)
        except CaptureError as exc:
            warn(str(exc))
            code = EXIT_BAD_INPUT
    if not good:
        sys.exit(EXIT_BAD_INPUT)
    if not outputs.quiet:
        warn_disabled(ruleset)
    outputs.open()
    recording = None
    if pcap_out is not None:
        linktype = _first_linktype(good[0])
        try:
            create_pcap(pcap_out, linktype, PCAP_OUT_SNAPLEN)
        except OSError as exc:
            fail(f"cannot write {pcap_out}: {exc.strerror or exc}")
        recording = (pcap_out, linktype)
    size = sum(os.path.getsize(p) for p in good)
    # More workers than flow buckets would have nothing to do.
    count = min(workers or auto_workers(size), SHARD_BUCKETS)
    started = time.monotonic()
    # Which worker takes which flows: planned from the first capture, before the workers start.
    buckets = balanced_buckets(good[0], count) if count > 1 else None

    def analysis(shard: tuple[int, int], report: bool) -> tuple[dict[str, Any], int]:
        return _analyse(good, ruleset, outputs, shard, report, recording, buckets)

    with analysis_heap():
        if count <= 1:
            stats, worker_code = analysis((0, 1), True)
        else:
            parts, worker_code = run_workers(count, analysis)
            if not parts:
                fail("every worker failed", EXIT_INTERNAL)
            stats = merge_stats(parts, time.monotonic() - started)
    outputs_stats = outputs.finish()  # syslog: deliver or spool what is queued
    if outputs_stats:
        stats["outputs"] = outputs_stats
    # The final statistics: console summary and the JSON log's last record.
    sinks = SinkSet(outputs.final_sinks())
    sinks.handle(stats_record(stats["last_ts"] or time.time(), stats))
    sinks.close()
    sys.exit(max(code, worker_code))


def _analyse(
    captures: list[str],
    ruleset: RuleSet,
    outputs: Outputs,
    shard: tuple[int, int],
    report: bool,
    recording: tuple[str, int] | None = None,
    buckets: bytes | None = None,
) -> tuple[dict[str, Any], int]:
    """Run the pipeline over ``captures`` for one shard of the flows; return its statistics
    and exit code. ``report``: this process reports capture warnings (one worker does).
    ``recording``: (pcap path, link type) for --pcap-out. ``buckets``: which shard takes
    each flow bucket (see :mod:`otids.balance`); None deals them in turn."""
    recorder = FlowRecorder(*recording) if recording is not None else None
    sink = SinkSet([*outputs.sinks(), *([recorder] if recorder is not None else [])])
    pipeline = Pipeline(ruleset, sink, log_transactions=outputs.transactions, shard=shard)
    if buckets is not None:
        pipeline.decoder.shard_buckets = buckets
    code = EXIT_OK
    try:
        for path in captures:
            try:
                reader = open_capture(path)
            except CaptureError as exc:  # vanished since it was checked
                if report:
                    warn(str(exc))
                code = EXIT_BAD_INPUT
                continue
            with reader:
                pipeline.files += 1
                reader.prefilter = pipeline.decoder
                packets = _with_progress(reader, path, outputs.quiet or not report)
                pipeline.run(packets if recorder is None else recorder.record(packets))
                if reader.damaged:
                    code = EXIT_BAD_INPUT
                if reader.warning:
                    done = f"{reader.records} records before it were analysed"
                    msg = f"{path}: {reader.warning}; {done}"
                    if report:
                        warn(msg)
                    pipeline.capture_warnings.append(msg)
    except KeyboardInterrupt:
        if report:
            warn("interrupted; flushing what was seen")
        code = EXIT_INTERRUPTED
    finally:
        stats = pipeline.finish(emit_stats=False)
        sink.close()
        if recorder is not None:
            recorder.close()
            if recorder.error is not None and report:
                warn(f"--pcap-out: writing stopped: {recorder.error}")
    return stats, code


def _first_linktype(path: str) -> int:
    """The link type of a capture's first packet (Ethernet when it has none): a pcap written
    by --pcap-out has one link type."""
    try:
        with open_capture(path) as reader:
            for _ts, linktype, _frame, _wirelen in reader:
                return linktype
    except CaptureError:
        pass
    return 1


def _with_progress(
    reader: CaptureReader, path: str, quiet: bool
) -> Iterable[tuple[float, int, bytes, int]]:
    """The reader's packets, with a progress bar on stderr for long files on a terminal
    (else the reader itself: a generator in between would cost a step per packet)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    if quiet or not sys.stderr.isatty() or size < PROGRESS_MIN_BYTES:
        return reader
    return _progress(reader, path, size)


def _progress(
    reader: CaptureReader, path: str, size: int
) -> Iterator[tuple[float, int, bytes, int]]:
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
