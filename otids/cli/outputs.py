"""Output options shared by the commands that raise alerts (``read``, ``live``) and the
sinks they build: console, JSON lines, syslog receivers (:mod:`otids.alerts.syslog`).

:func:`output_options` adds the options and passes one :class:`Outputs` to the command as
``outputs``; :meth:`Outputs.open` checks them before any work (exit 2 on a bad one),
:meth:`Outputs.sinks` builds the sinks of one analysing process and
:meth:`Outputs.final_sinks` those that receive the final statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click

from otids.alerts.formats import RENDERERS
from otids.alerts.sinks import JsonLinesSink, Sink
from otids.alerts.syslog import (
    FACILITIES,
    HEADERS,
    SyslogOptions,
    SyslogOutputs,
    SyslogSummarySink,
    dropped_total,
    parse_target,
)
from otids.cli.common import fail, warn
from otids.workers import LineWriter


@dataclass(slots=True)
class Outputs:
    """Where alerts, transactions and statistics go."""

    json_out: str | None = None
    transactions: bool = False
    quiet: bool = False
    syslog: tuple[str, ...] = ()  # receiver URLs
    syslog_options: SyslogOptions = field(default_factory=SyslogOptions)
    # Started by open() in the parent process; forked workers reach it through its relay,
    # so each alert is sent once and the drop counts are the parent's (see finish()).
    _syslog: SyslogOutputs | None = field(default=None, init=False, repr=False)

    def open(self) -> None:
        """Check the outputs before any work: create or truncate the JSON log (every
        writer appends to it afterwards); exit 2 when one cannot be used."""
        if self.transactions and self.json_out is None:
            warn("--transactions has no effect without --json")
        if self.json_out not in (None, "-"):
            try:
                JsonLinesSink(self.json_out).close()
            except OSError as exc:
                fail(f"cannot write {self.json_out}: {exc.strerror or exc}")
        if self.syslog:
            self._open_syslog()

    def _open_syslog(self) -> None:
        """Check the receivers' settings (exit 2 when wrong) and start their senders; a
        receiver that is down is only a warning: its alerts queue."""
        try:
            targets = [parse_target(url) for url in self.syslog]
            self.syslog_options.check()
            network = SyslogOutputs(targets, self.syslog_options, warn)
        except ValueError as exc:
            fail(str(exc))
        except OSError as exc:  # TLS files: missing, unreadable, not PEM
            fail(f"syslog TLS files: {exc}")
        network.start()
        self._syslog = network

    def finish(self) -> dict[str, Any]:
        """Deliver (or spool) what the syslog receivers still hold and return the
        ``outputs`` object of the final statistics; warns when alerts were lost."""
        if self._syslog is None:
            return {}
        stats = {"syslog": self._syslog.shutdown()}
        self._syslog = None
        lost = dropped_total(stats)
        if lost:
            warn(f"{lost} alert(s) could not be delivered to syslog (see the statistics)")
        return stats

    def _console(self, **kwargs: Any) -> Sink:
        from rich.console import Console

        from otids.alerts.console import ConsoleSink

        return ConsoleSink(Console(highlight=False, **kwargs))

    def sinks(self) -> list[Sink]:
        """The sinks of one analysing process (each worker has its own)."""
        out: list[Sink] = []
        if not self.quiet:
            # JSON on stdout: the console's output moves to stderr so the two never mix.
            fd = 2 if self.json_out == "-" else 1
            out.append(self._console(file=LineWriter(fd)))
        if self.json_out is not None:
            out.append(JsonLinesSink(self.json_out, append=True))
        out.extend(self.network_sinks())
        return out

    def network_sinks(self) -> list[Sink]:
        """The syslog sinks for the calling process (alerts only): the receivers themselves
        in the process that called open(), a relay to them in a forked worker."""
        return self._syslog.process_sinks() if self._syslog is not None else []

    def final_sinks(self) -> list[Sink]:
        """The sinks that receive the final statistics (console summary, JSON log)."""
        out: list[Sink] = []
        if not self.quiet:
            out.append(self._console(stderr=self.json_out == "-"))
            if self.syslog:
                out.append(SyslogSummarySink(stderr=self.json_out == "-"))
        if self.json_out is not None:
            out.append(JsonLinesSink(self.json_out, append=True))
        return out


def output_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--json``, ``--transactions``, ``--quiet``, given to the command as ``outputs``."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        json_out: str | None,
        transactions: bool,
        quiet: bool,
        syslog: tuple[str, ...],
        **kwargs: Any,
    ) -> None:
        options = SyslogOptions(**{name: kwargs.pop(key) for key, name in _SYSLOG_PARAMS.items()})
        outputs = Outputs(
            json_out=json_out,
            transactions=transactions,
            quiet=quiet,
            syslog=syslog,
            syslog_options=options,
        )
        command(*args, outputs=outputs, **kwargs)

    for decorator in reversed(
        (
            click.option(
                "--json",
                "json_out",
                metavar="OUT",
                help="Write EVE-style JSON lines to OUT ('-' for stdout).",
            ),
            click.option(
                "--transactions",
                is_flag=True,
                help="Also log every decoded transaction to the JSON output.",
            ),
            click.option(
                "-q", "--quiet", is_flag=True, help="No alert lines or summary on the console."
            ),
            *_SYSLOG_OPTIONS,
        )
    ):
        wrapper = decorator(wrapper)
    return wrapper


_defaults = SyslogOptions()
# click parameter name -> SyslogOptions field.
_SYSLOG_PARAMS = {
    "syslog_format": "format",
    "syslog_header": "header",
    "syslog_facility": "facility",
    "syslog_app_name": "app_name",
    "syslog_hostname": "hostname",
    "syslog_ca": "ca_file",
    "syslog_cert": "cert_file",
    "syslog_key": "key_file",
    "syslog_queue": "queue_size",
    "syslog_spool": "spool_dir",
    "syslog_drain_timeout": "drain_timeout",
    "syslog_reconnect_max": "reconnect_max",
}
_PEM = click.Path(exists=True, dir_okay=False)
_SYSLOG_OPTIONS = (
    click.option(
        "--syslog",
        multiple=True,
        metavar="URL",
        help="Send alerts to a syslog receiver: udp://HOST[:514], tcp://HOST[:514] or "
        "tls://HOST[:6514] (repeatable).",
    ),
    click.option(
        "--syslog-format",
        type=click.Choice(list(RENDERERS)),
        default=_defaults.format,
        show_default=True,
        help="Syslog payload: CEF, LEEF 2.0, ECS JSON, EVE JSON or a text line.",
    ),
    click.option(
        "--syslog-header",
        type=click.Choice(HEADERS),
        default=_defaults.header,
        show_default=True,
        help="Syslog message header.",
    ),
    click.option(
        "--syslog-facility",
        type=click.Choice(list(FACILITIES)),
        default=_defaults.facility,
        show_default=True,
        metavar="NAME",
        help="Syslog facility (local0..local7, daemon, security, ...).",
    ),
    click.option(
        "--syslog-app-name", default=_defaults.app_name, show_default=True, help="Syslog APP-NAME."
    ),
    click.option(
        "--syslog-hostname", default="", help="Syslog HOSTNAME (default: this machine's name)."
    ),
    click.option("--syslog-ca", type=_PEM, help="TLS: CA certificates (PEM) of the receiver."),
    click.option("--syslog-cert", type=_PEM, help="TLS: client certificate (PEM)."),
    click.option("--syslog-key", type=_PEM, help="TLS: client private key (PEM)."),
    click.option(
        "--syslog-queue",
        type=click.IntRange(min=1),
        default=_defaults.queue_size,
        show_default=True,
        help="Alerts kept per receiver while it is down; beyond, they are dropped and counted.",
    ),
    click.option(
        "--syslog-spool",
        type=click.Path(file_okay=False),
        help="Directory where alerts still queued at exit are kept for the next run.",
    ),
    click.option(
        "--syslog-drain-timeout",
        type=click.FloatRange(min=0),
        default=_defaults.drain_timeout,
        show_default=True,
        metavar="SECONDS",
        help="At exit, how long to wait for receivers to take queued alerts.",
    ),
    click.option(
        "--syslog-reconnect-max",
        type=click.FloatRange(min=0.1),
        default=_defaults.reconnect_max,
        show_default=True,
        metavar="SECONDS",
        help="Longest wait between attempts to reach a receiver that is down.",
    ),
)
