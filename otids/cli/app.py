"""The ``otids`` command group; each command lives in its own module of this package.

A command's module is imported when the command is run (or listed by ``--help``), not at
start-up: ``otids read`` need not pay for the imports of ``otids live`` or of the syslog and
Suricata machinery. Importing a module registers its command on :data:`main`.

Run as a program (``main()``, the console script), start-up imports run without the cyclic
garbage collector and the process ends without the interpreter's teardown; tests that call
``main.main()`` (click's runner) see neither.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import sys
import threading
from typing import Any, NoReturn

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
            gc.enable()  # start-up imports are over (see __call__)
        return super().get_command(ctx, cmd_name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """The console entry point: run the command, then end the process at once."""
        # Imports create thousands of long-lived objects and hardly any garbage: collecting
        # during them only rescans what was just built (a few percent of start-up).
        gc.disable()
        try:
            return self.main(*args, **kwargs)
        except SystemExit as exc:
            code = exc.code
            if threading.active_count() > 1 or not (code is None or isinstance(code, int)):
                raise  # threads to join or a message to print: the interpreter's own exit
            _exit_now(code or 0)


def _exit_now(code: int) -> NoReturn:
    """Exit with ``code`` after the exit handlers and a flush of stdout and stderr, skipping
    the interpreter's teardown (freeing every module and object: ~15 ms after a run). Every
    command closes its own files, so nothing else is left to write."""
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        raise SystemExit(code) from None  # the interpreter reports an output it cannot flush
    os._exit(code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="otids")
def main() -> None:
    """otids: intrusion detection for Modbus/TCP and DNP3 networks."""
