"""``otids live``: monitor network interfaces (a SPAN port, a tap) as packets arrive.

Process layout: the command opens every capture socket first (the only step needing
``CAP_NET_RAW``), drops privileges if asked, then forks ``--workers`` processes, each
owning one socket per interface. With several workers the sockets of an interface form a
``PACKET_FANOUT`` group in flow-hash mode, so every flow is dissected whole by one worker.

Workers write the JSON log themselves (whole lines, appended) and send their alerts and
statistics to the parent over a pipe. The parent is the only writer on the console: alert
lines, the statistics (a rich panel on a terminal, plain lines otherwise), the periodic
and final ``stats`` records of the JSON log, merged over the workers.

Signals: SIGINT/SIGTERM stop the capture; each worker analyses what the kernel already
handed over, closes its flows (pending alerts go out), reports, and the parent prints the
final statistics and exits 0. SIGHUP makes every worker reload its rules between two blocks
of packets; a rule set with errors is refused and the old one kept.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any

import click

from otids.alerts.eve import stats_record
from otids.alerts.sinks import JsonLinesSink, SinkSet
from otids.capture.live import (
    DEFAULT_RING_MB,
    DEFAULT_SNAPLEN,
    LiveCapture,
    LiveError,
    RingSocket,
    drop_privileges,
    fanout_group,
)
from otids.capture.pcapwriter import FlowRecorder, create_pcap
from otids.cli.app import main
from otids.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    SURICATA_RULES_KEY,
    build_ruleset,
    fail,
    load_variables,
    rule_source_options,
    warn,
    warn_disabled,
)
from otids.cli.config import config_option, config_variables
from otids.cli.outputs import Outputs, output_options
from otids.decode.registry import PROTOCOLS
from otids.pipeline import Pipeline
from otids.rules.engine import RuleSet
from otids.rules.loader import RuleLoadError, default_rules_dir, load_rules
from otids.workers import merge_stats

# The default filter also keeps, on any port, TCP/UDP payloads that start like a DNP3 link
# frame (0x05 0x64) or carry a plausible Modbus/TCP header (protocol id 0, length 2..254),
# so the pipeline's probe-on-any-port still sees Modbus and DNP3 moved off their ports (only
# their message-bearing segments: such flows are picked up midstream), and IPv4 fragments,
# whose later pieces have no ports. Everything else (web, file shares, backups on the same
# SPAN port) is dropped in the kernel, before it costs anything.
_TCP_PAYLOAD = "((tcp[12] & 0xf0) >> 2)"
_ANY_PORT_CLAUSES = (
    f"tcp[{_TCP_PAYLOAD}:2] = 0x0564",
    "udp[8:2] = 0x0564",
    f"(tcp[{_TCP_PAYLOAD} + 2:2] = 0 and tcp[{_TCP_PAYLOAD} + 4:2] >= 2"
    f" and tcp[{_TCP_PAYLOAD} + 4:2] <= 254)",
    "(ip[6:2] & 0x3fff != 0)",
)
# Modules imported on first use later on: loaded while still privileged, because the
# dropped-to user may not be able to read the installation (a venv under /root).
_IMPORTED_BEFORE_DROP = (
    "multiprocessing.popen_fork",
    "multiprocessing.synchronize",
    "rich.console",
    "rich.live",
    "rich.table",
    "otids.alerts.console",
)
MAX_WORKERS = 64  # more processes than that would only contend for the same cores
FLUSH_INTERVAL = 0.5  # seconds an alert may wait in a worker's JSON buffer
IDLE_TICK = 1.0  # seconds between the pipeline's timers on a link without packets
PARENT_WAIT = 0.2  # seconds the parent waits for a worker message before checking signals
STOP_TIMEOUT = 30.0  # seconds workers get to finish after a stop before they are killed
STOP_RESEND = 1.0  # seconds between stop signals to workers that have not finished
PANEL_REFRESH = 2  # panel redraws per second on a terminal


def default_filter() -> str:
    """The kernel filter used without ``--bpf``: every registered protocol's ports, plus
    the any-port clauses above."""
    tcp = sorted({p for spec in PROTOCOLS for p in spec.tcp_ports})
    udp = sorted({p for spec in PROTOCOLS for p in spec.udp_ports})
    ports = [f"tcp port {p}" for p in tcp] + [f"udp port {p}" for p in udp]
    return " or ".join([*ports, *_ANY_PORT_CLAUSES])


@main.command()
@config_option
@click.option(
    "-i",
    "--interface",
    "interfaces",
    multiple=True,
    required=True,
    metavar="IFACE",
    help="Interface to capture on (repeatable: e.g. a tap's two directions).",
)
@click.option(
    "--bpf",
    metavar="FILTER",
    help="Kernel capture filter, tcpdump syntax ('' for everything). "
    "Default: Modbus and DNP3 ports, and their messages on any port.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, MAX_WORKERS),
    default=1,
    show_default=True,
    help="Processes sharing the flows (PACKET_FANOUT by flow hash).",
)
@click.option(
    "--snaplen", type=click.IntRange(64, 262144), default=DEFAULT_SNAPLEN, show_default=True
)
@click.option(
    "--ring-mb",
    type=click.IntRange(2, 4096),
    default=DEFAULT_RING_MB,
    show_default=True,
    help="Capture ring per interface and worker, in MiB.",
)
@click.option("--no-promisc", is_flag=True, help="Do not put the interfaces in promiscuous mode.")
@click.option(
    "--stats-interval",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between statistics (console, JSON stats record); 0: at exit only.",
)
@click.option("--user", metavar="NAME", help="Drop privileges to this user once capturing.")
@click.option(
    "--pcap-out",
    type=click.Path(dir_okay=False, writable=True),
    help="Write the packets of alerting flows to this pcap file.",
)
@rule_source_options
@click.option(
    "--vars",
    "vars_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Site variables file (YAML): named lists such as modbus_clients.",
)
@output_options
def live(
    interfaces: tuple[str, ...],
    bpf: str | None,
    workers: int,
    snaplen: int,
    ring_mb: int,
    no_promisc: bool,
    stats_interval: float,
    user: str | None,
    pcap_out: str | None,
    rule_dirs: tuple[str, ...],
    no_default_rules: bool,
    vars_file: str | None,
    outputs: Outputs,
) -> None:
    """Monitor interfaces live (Linux; root or CAP_NET_RAW). Stop with Ctrl-C or SIGTERM;
    SIGHUP reloads the rules."""
    site_vars = config_variables()  # [variables] of --config; --vars overrides them
    ruleset = build_ruleset(
        rule_dirs, not no_default_rules, {**site_vars, **load_variables(vars_file)}
    )
    if not outputs.quiet:
        warn_disabled(ruleset)
    expression = default_filter() if bpf is None else bpf
    sockets: list[list[RingSocket]] = []
    try:
        # Worker-major order: in every interface's fanout group, worker k joins k-th.
        for _ in range(workers):
            sockets.append(
                [
                    RingSocket(
                        iface,
                        expression,
                        snaplen=snaplen,
                        promiscuous=not no_promisc,
                        ring_mb=ring_mb,
                        fanout=fanout_group(j) if workers > 1 else None,
                    )
                    for j, iface in enumerate(interfaces)
                ]
            )
        if user is not None:
            for module in _IMPORTED_BEFORE_DROP:
                importlib.import_module(module)
            drop_privileges(user)
    except LiveError as exc:
        for row in sockets:
            for s in row:
                s.close()
        fail(str(exc), EXIT_BAD_INPUT)
    outputs.open()
    linktype = sockets[0][0].linktype
    if pcap_out is not None:
        if any(s.linktype != linktype for s in sockets[0]):
            warn("--pcap-out: the interfaces differ in link type; only the first's are written")
        try:
            create_pcap(pcap_out, linktype, snaplen)
        except OSError as exc:
            fail(f"cannot write {pcap_out}: {exc.strerror or exc}")
    if not outputs.quiet:
        names = ", ".join(interfaces)
        click.echo(f"otids: capturing on {names} with {workers} worker(s); filter: {expression}",
                   err=True)  # fmt: skip
    # --suricata-rules reaches build_ruleset through the click context, which a reload
    # (in a worker, from a signal) does not have: the paths are taken now.
    suricata = click.get_current_context().meta.get(SURICATA_RULES_KEY, ())
    reload = _Reloader((*rule_dirs, *suricata), not no_default_rules, vars_file, site_vars)
    job = _Job(ruleset, reload, outputs, stats_interval, pcap_out, linktype)
    sys.exit(_supervise(job, sockets, outputs, stats_interval))


@dataclass(frozen=True, slots=True)
class _Reloader:
    """Loads the rule set again (SIGHUP) without exiting on errors."""

    rule_paths: tuple[str, ...]  # --rules, then --suricata-rules
    default_rules: bool
    vars_file: str | None
    config_vars: dict[str, list[Any]]  # [variables] of --config, read at start

    def __call__(self, report: bool) -> RuleSet | None:
        """The new rule set, or ``None`` (with a warning if ``report``) if it has errors."""
        try:
            variables = {**self.config_vars, **load_variables(self.vars_file)}
        except SystemExit:  # load_variables has said why; it exits, as suits the start-up
            if report:
                warn("rules not reloaded (variables file); the old ones stay")
            return None
        paths: list[str | Path] = [default_rules_dir()] if self.default_rules else []
        paths.extend(self.rule_paths)
        try:
            return load_rules(paths, variables)
        except RuleLoadError as exc:
            if report:
                for problem in exc.problems:
                    click.echo(f"otids: rule error: {problem}", err=True)
                warn(f"rules not reloaded ({len(exc.problems)} error(s)); the old ones stay")
            return None


@dataclass(frozen=True, slots=True)
class _Job:
    """What every worker needs, inherited through ``fork``."""

    ruleset: RuleSet
    reload: _Reloader
    outputs: Outputs
    stats_interval: float
    pcap_out: str | None
    linktype: int


# --- worker --------------------------------------------------------------------------------


class _ParentSink:
    """Sends alert records to the parent, which prints them."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def handle(self, record: dict[str, Any]) -> None:
        """Forward alerts; the JSON sink has everything else."""
        if record.get("event_type") == "alert":
            self.conn.send(("alert", record))


def _worker(index: int, job: _Job, sockets: list[RingSocket], conn: Connection) -> None:
    """Capture and analyse until stopped; send statistics now and then and at the end."""
    capture = LiveCapture(sockets)
    reload_requested = False

    def on_stop(_sig: int, _frame: FrameType | None) -> None:
        capture.stop()

    def on_hup(_sig: int, _frame: FrameType | None) -> None:
        nonlocal reload_requested
        reload_requested = True

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    outputs = job.outputs
    json_sink = JsonLinesSink(outputs.json_out, append=True) if outputs.json_out else None
    recorder = FlowRecorder(job.pcap_out, job.linktype) if job.pcap_out else None
    sinks: list[Any] = [] if json_sink is None else [json_sink]
    if not outputs.quiet:
        sinks.append(_ParentSink(conn))
    sinks.extend(outputs.network_sinks())  # syslog: relayed through the parent's senders
    if recorder is not None:
        sinks.append(recorder)
    sink = SinkSet(sinks)
    pipeline = Pipeline(job.ruleset, sink, log_transactions=outputs.transactions)
    interval = job.stats_interval
    now = time.monotonic()
    next_stats = now + interval if interval else float("inf")
    next_flush = now + FLUSH_INTERVAL
    next_tick = now
    try:
        for block in capture.blocks():
            if block:
                pipeline.run(block if recorder is None else recorder.record(block))
            elif time.monotonic() >= next_tick:
                # A quiet link: due alerts (no response in time) must not wait for traffic.
                next_tick = time.monotonic() + IDLE_TICK
                pipeline.tick(time.time())
            if reload_requested:
                reload_requested = False
                rules = job.reload(index == 0)
                if rules is not None:
                    pipeline.rules = rules  # between two blocks: no packet is lost
            now = time.monotonic()
            if now >= next_flush:
                next_flush = now + FLUSH_INTERVAL
                if json_sink is not None:
                    json_sink.flush()
            if now >= next_stats:
                next_stats = now + interval
                conn.send(("stats", index, _worker_stats(pipeline, capture, False)))
    finally:
        pipeline.finish(emit_stats=False)
        sink.close()
        if recorder is not None and recorder.error is not None:
            warn(f"--pcap-out: writing stopped: {recorder.error}")
        conn.send(("final", index, _worker_stats(pipeline, capture, True)))
        capture.close()
        conn.close()


def _worker_stats(pipeline: Pipeline, capture: LiveCapture, final: bool) -> dict[str, Any]:
    stats = pipeline.stats(final=final)
    per_iface = capture.counters()
    stats["capture"]["interfaces"] = {
        name: {"kernel_packets": c.packets, "kernel_drops": c.drops}
        for name, c in per_iface.items()
    }
    stats["capture"]["kernel_packets"] = sum(c.packets for c in per_iface.values())
    stats["capture"]["kernel_drops"] = sum(c.drops for c in per_iface.values())
    stats["capture"]["kernel_freezes"] = sum(c.freezes for c in per_iface.values())
    return stats


# --- parent --------------------------------------------------------------------------------


def _supervise(
    job: _Job, sockets: list[list[RingSocket]], outputs: Outputs, stats_interval: float
) -> int:
    """Start the workers, show what they report, stop them on a signal; the exit code."""
    ctx = multiprocessing.get_context("fork")
    stopping = False

    def on_stop(_sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    # Installed before the fork so a signal arriving at once cannot kill a half-started
    # worker; each worker installs its own handlers first thing.
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    procs: list[Any] = []
    readers: dict[Connection, int] = {}
    for index, own in enumerate(sockets):
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_worker, args=(index, job, own, writer), daemon=True)
        proc.start()
        writer.close()
        procs.append(proc)
        readers[reader] = index
    for row in sockets:  # the workers hold them now
        for s in row:
            s.close()

    def on_hup(_sig: int, _frame: FrameType | None) -> None:
        for p in procs:
            if p.pid is not None:
                os.kill(p.pid, signal.SIGHUP)

    signal.signal(signal.SIGHUP, on_hup)
    display = _Display(outputs, stats_interval)
    started = time.monotonic()
    latest: dict[int, dict[str, Any]] = {}
    finals: dict[int, dict[str, Any]] = {}
    stop_sent = last_kill = 0.0
    with display:
        while readers:
            now = time.monotonic()
            if stopping and not stop_sent:
                stop_sent = now
            # Repeated: a worker signalled before it had installed its handlers missed it.
            if stop_sent and now - last_kill >= STOP_RESEND:
                last_kill = now
                for i in readers.values():
                    if procs[i].pid is not None and procs[i].is_alive():
                        os.kill(procs[i].pid, signal.SIGTERM)
            if stop_sent and now - stop_sent > STOP_TIMEOUT:
                warn("workers did not finish in time; killed")
                for p in procs:
                    p.kill()
                break
            for conn in wait(list(readers), timeout=PARENT_WAIT):
                assert isinstance(conn, Connection)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    index = readers.pop(conn)
                    if index not in finals:
                        warn(f"worker {index} stopped unexpectedly; its flows are lost")
                    continue
                if msg[0] == "alert":
                    display.alert(msg[1])
                    continue
                _, index, stats = msg
                (finals if msg[0] == "final" else latest)[index] = stats
                if msg[0] == "stats" and len(latest) >= len(readers):
                    display.stats(_merge(list(latest.values()), started, False))
                    latest.clear()
    for p in procs:
        p.join(timeout=5)
    code = EXIT_OK
    if len(finals) < len(procs):
        code = EXIT_INTERNAL
    outputs_stats = outputs.finish()  # syslog: deliver or spool what is queued
    if finals:
        merged = _merge(list(finals.values()), started, True)
        if outputs_stats:
            merged["outputs"] = outputs_stats
        display.final(merged)
    return code


def _merge(parts: list[dict[str, Any]], started: float, final: bool) -> dict[str, Any]:
    """One statistics object from the workers': every packet was seen by one of them, so
    capture and decoder counters add up."""
    elapsed = time.monotonic() - started
    merged = merge_stats(parts, elapsed)
    capture: dict[str, Any] = {}
    decoder: dict[str, Any] = {}
    for part in parts:
        _sum_into(capture, part["capture"])
        _sum_into(decoder, part["decoder"])
    capture["warnings"] = [w for part in parts for w in part["capture"]["warnings"]]
    merged["capture"] = capture
    merged["decoder"] = decoder
    merged["final"] = final
    merged["packets_per_s"] = round(capture["packets"] / max(elapsed, 1e-9), 1)
    return merged


def _sum_into(into: dict[str, Any], more: dict[str, Any]) -> None:
    """Add the numbers of ``more`` to ``into``, nested dicts included."""
    for key, value in more.items():
        if isinstance(value, dict):
            _sum_into(into.setdefault(key, {}), value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            into[key] = into.get(key, 0) + value


class _Display:
    """The parent's console (alerts, statistics) and its JSON stats records."""

    def __init__(self, outputs: Outputs, stats_interval: float) -> None:
        from rich.console import Console

        from otids.alerts.console import ConsoleSink

        self.outputs = outputs
        # JSON on stdout: the console moves to stderr so the two never mix.
        self.console = Console(highlight=False, stderr=outputs.json_out == "-")
        self.console_sink = ConsoleSink(self.console)
        self.json = (
            JsonLinesSink(outputs.json_out, append=True) if outputs.json_out is not None else None
        )
        self.panel: Any = None
        if not outputs.quiet and stats_interval and self.console.is_terminal:
            from rich.live import Live

            self.panel = Live(_panel(None), console=self.console, refresh_per_second=PANEL_REFRESH)

    def __enter__(self) -> _Display:
        if self.panel is not None:
            self.panel.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.panel is not None:
            self.panel.stop()
            self.panel = None

    def alert(self, record: dict[str, Any]) -> None:
        """One alert line (above the panel on a terminal)."""
        self.console.print(self.console_sink.alert_line(record), soft_wrap=True)

    def stats(self, stats: dict[str, Any]) -> None:
        """Periodic statistics: the panel or a plain line, and the JSON record."""
        if self.json is not None:
            self.json.handle(stats_record(time.time(), stats))
            self.json.flush()
        if self.outputs.quiet:
            return
        if self.panel is not None:
            self.panel.update(_panel(stats))
        else:
            click.echo(f"otids: stats: {_stats_line(stats)}", err=True)

    def final(self, stats: dict[str, Any]) -> None:
        """The final statistics: summary tables, kernel counters, JSON record."""
        sinks = SinkSet(self.outputs.final_sinks())
        sinks.handle(stats_record(time.time(), stats))
        sinks.close()
        if self.json is not None:
            self.json.close()
        if not self.outputs.quiet:
            click.echo(f"otids: final: {_stats_line(stats)}", err=True)


def _stats_line(stats: dict[str, Any]) -> str:
    cap = stats["capture"]
    parts = [
        f"packets={cap['packets']}",
        f"kernel_drops={cap.get('kernel_drops', 0)}",
        f"bytes={cap['bytes']}",
        f"flows={stats['flows']['total']}",
    ]
    parts += [f"{name}_tx={app['transactions']}" for name, app in stats["app_layer"].items()]
    parts.append(f"alerts={stats['alerts']['total']}")
    parts.append(f"pps={stats['packets_per_s']:.0f}")
    return " ".join(parts)


def _panel(stats: dict[str, Any] | None) -> Any:
    from rich.table import Table

    table = Table(title="otids live", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    if stats is None:
        table.add_row("waiting for the first statistics", "")
        return table
    cap = stats["capture"]
    for name, counters in sorted(cap.get("interfaces", {}).items()):
        table.add_row(
            f"{name} packets / drops",
            f"{counters['kernel_packets']:,} / {counters['kernel_drops']:,}",
        )
    table.add_row("packets analysed", f"{cap['packets']:,}")
    table.add_row("bytes", f"{cap['bytes']:,}")
    table.add_row("packets/s", f"{stats['packets_per_s']:,.0f}")
    table.add_row("flows", f"{stats['flows']['total']:,} ({stats['flows']['active']:,} active)")
    for name, app in stats["app_layer"].items():
        table.add_row(f"{name} flows / transactions", f"{app['flows']:,} / {app['transactions']:,}")
    table.add_row("alerts", f"{stats['alerts']['total']:,}")
    return table
