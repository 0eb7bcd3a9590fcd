"""``otids verify``: cross-check otids' Modbus and DNP3 decoding against Wireshark's."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from otids.cli.app import main
from otids.cli.common import EXIT_BAD_INPUT, EXIT_OK, warn

if TYPE_CHECKING:  # otids.verify is imported when the command runs: it pulls the pipeline
    from otids.verify import Report

EXIT_DISAGREE = 1  # the decoders disagree somewhere (as ``diff`` and ``cmp`` report it)


@main.command()
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Disagreements printed per capture (0: all); --json prints all.",
)
def verify(captures: tuple[str, ...], as_json: bool, limit: int) -> None:
    """Decode captures with otids and with Wireshark (tshark) and compare, message by
    message: Modbus transaction id, unit, function, exception, address, quantity; DNP3 link
    addresses, application function, IIN, object group/variation.

    Exit status: 0 when they agree, 1 when they disagree, 2 when a capture cannot be read
    or tshark is missing.
    """
    from otids.verify import VerifyError
    from otids.verify import verify as check

    reports: list[Report] = []
    code = EXIT_OK
    for path in captures:
        try:
            reports.append(check(path))
        except VerifyError as exc:
            warn(str(exc))
            code = EXIT_BAD_INPUT
    if as_json:
        click.echo(json.dumps({"captures": [r.as_dict() for r in reports]}, default=str))
    else:
        for report in reports:
            _print(report, limit)
    if code == EXIT_OK and any(r.disagreements for r in reports):
        code = EXIT_DISAGREE
    sys.exit(code)


def _print(report: Report, limit: int) -> None:
    from rich.console import Console

    from otids.verify import show

    console = Console(highlight=False)
    head = (
        f"{report.path}: {report.otids_messages} messages decoded by otids, "
        f"{report.wireshark_messages} by Wireshark"
    )
    if report.warning:
        warn(f"{report.path}: {report.warning}")
    shown = report.disagreements if not limit else report.disagreements[:limit]
    if not report.disagreements:
        click.echo(f"{head}: they agree")
        return
    click.echo(f"{head}: {len(report.disagreements)} disagreement(s)")
    rows = [
        (str(d.frame), show(d.otids_frame), d.protocol, d.field, show(d.otids), show(d.wireshark))
        for d in shown
    ]
    if console.is_terminal:
        from rich.table import Table

        table = Table("frame", "otids frame", "protocol", "field", "otids", "wireshark")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        for row in rows:
            click.echo("  " + "\t".join(row))
    if len(shown) < len(report.disagreements):
        click.echo(f"  ... {len(report.disagreements) - len(shown)} more (--limit 0 shows all)")
