"""The ``otids`` command group; each command lives in its own module of this package."""

from __future__ import annotations

import click

from otids import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="otids")
def main() -> None:
    """otids: intrusion detection for Modbus/TCP and DNP3 networks."""
