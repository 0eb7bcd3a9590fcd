"""The ``otids`` command group; each command lives in its own module of this package.

A command's module is imported when the command is run (or listed by ``--help``), not at
start-up: ``otids read`` need not pay for the imports of ``otids live`` or of the syslog and
Suricata machinery. Importing a module registers its command on :data:`main`.
"""

from __future__ import annotations

import importlib

import click

from otids import __version__

# Command name -> the module defining it.
COMMANDS = {
    "read": "otids.cli.read",
    "live": "otids.cli.live",
    "rules": "otids.cli.rules",
    "config": "otids.cli.config",
    "verify": "otids.cli.verify",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, imported or not."""
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command, its module imported first."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name])
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="otids")
def main() -> None:
    """otids: intrusion detection for Modbus/TCP and DNP3 networks."""
