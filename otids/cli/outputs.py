"""Output options shared by the commands that raise alerts (``read``, ``live``) and the
sinks they build: console, JSON lines.

:func:`output_options` adds the options and passes one :class:`Outputs` to the command as
``outputs``; :meth:`Outputs.open` checks them before any work (exit 2 on a bad one),
:meth:`Outputs.sinks` builds the sinks of one analysing process and
:meth:`Outputs.final_sinks` those that receive the final statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from otids.alerts.sinks import JsonLinesSink, Sink
from otids.cli.common import fail, warn
from otids.workers import LineWriter


@dataclass(slots=True)
class Outputs:
    """Where alerts, transactions and statistics go."""

    json_out: str | None = None
    transactions: bool = False
    quiet: bool = False

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
        return out

    def final_sinks(self) -> list[Sink]:
        """The sinks that receive the final statistics (console summary, JSON log)."""
        out: list[Sink] = []
        if not self.quiet:
            out.append(self._console(stderr=self.json_out == "-"))
        if self.json_out is not None:
            out.append(JsonLinesSink(self.json_out, append=True))
        return out


def output_options(command: Callable[..., None]) -> Callable[..., None]:
    """``--json``, ``--transactions``, ``--quiet``, given to the command as ``outputs``."""

    @functools.wraps(command)
    def wrapper(
        *args: Any, json_out: str | None, transactions: bool, quiet: bool, **kwargs: Any
    ) -> None:
        outputs = Outputs(json_out=json_out, transactions=transactions, quiet=quiet)
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
        )
    ):
        wrapper = decorator(wrapper)
    return wrapper
