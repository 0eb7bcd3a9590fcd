"""``otids rules add-source`` and ``otids rules update``: Suricata rule sources, fetched and
merged by suricata-update in otids' own data directory (never /etc/suricata)."""

from __future__ import annotations

import click

from otids.cli.common import EXIT_BAD_INPUT, EXIT_INTERNAL, fail, load_variables
from otids.cli.rules import rules
from otids.rules.suricata.update import UpdateError, add_source, data_dir, sources, update

DATA_DIR_HELP = "Rule data directory (default: $OTIDS_DATA_DIR or ~/.local/share/otids/rules)."


@rules.command("add-source")
@click.argument("name")
@click.argument("location")
@click.option("--data-dir", "data_path", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
def rules_add_source(name: str, location: str, data_path: str | None) -> None:
    """Add a Suricata rule source NAME: a URL, or a local .rules or .tar.gz file."""
    data = data_dir(data_path)
    try:
        add_source(data, name, location)
    except UpdateError as exc:
        fail(str(exc), EXIT_INTERNAL if "not installed" in str(exc) else EXIT_BAD_INPUT)
    click.echo(f"source {name} added ({len(sources(data))} in {data}); run 'otids rules update'")


@rules.command("update")
@click.option("--data-dir", "data_path", type=click.Path(file_okay=False), help=DATA_DIR_HELP)
@click.option(
    "--vars",
    "vars_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Site variables file (YAML), to check the rules with the site's variables.",
)
def rules_update(data_path: str | None, vars_file: str | None) -> None:
    """Fetch every source with suricata-update and keep its Modbus/DNP3 rules."""
    data = data_dir(data_path)
    try:
        report = update(data, load_variables(vars_file))
    except UpdateError as exc:
        fail(str(exc))
    click.echo(
        f"{report.total} rules from {len(sources(data))} source(s); "
        f"{report.relevant} Modbus/DNP3 rules: {report.loaded} loaded, "
        f"{sum(report.skipped.values())} skipped"
    )
    for reason, count in report.skipped.most_common():
        click.echo(f"  skipped {count}: {reason}")
    click.echo(f"written to {report.output} (use: otids read --suricata-rules {report.output})")
