"""``otids config check FILE`` and the ``--config FILE`` option of the analysing commands.

``--config`` is eager: click handles it before every other option, and its callback loads
the file into the context's ``default_map``, so each key becomes the default of its option
and a flag given on the command line still wins. The file's inline ``[variables]`` are kept
in ``ctx.meta`` for :func:`config_variables`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from otids.cli.app import main
from otids.cli.common import EXIT_BAD_INPUT, fail

if TYPE_CHECKING:  # imported when a configuration file is read: its schema costs start-up
    from otids.config import Config, ConfigError

CONFIG_META = "otids.config"  # ctx.meta key of the loaded Config
CONFIG_ENVVAR = "OTIDS_CONFIG"


def _report(exc: ConfigError) -> None:
    for problem in exc.problems:
        click.echo(f"otids: config error: {problem}", err=True)


def _load(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if not value:
        return
    from otids.config import ConfigError, load_config  # only when a file is given

    try:
        config = load_config(value)
    except ConfigError as exc:
        _report(exc)
        fail(f"{len(exc.problems)} problem(s) in {value}", EXIT_BAD_INPUT)
    ctx.default_map = {**(ctx.default_map or {}), **config.default_map}
    ctx.meta[CONFIG_META] = config


def config_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` (or $OTIDS_CONFIG): option defaults from a TOML file."""
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False),
        envvar=CONFIG_ENVVAR,
        is_eager=True,
        expose_value=False,
        callback=_load,
        help="TOML configuration file (see 'otids config check'); flags override its keys.",
    )(command)


def config_variables() -> dict[str, list[Any]]:
    """The ``[variables]`` of the current command's configuration file ({} without one)."""
    ctx = click.get_current_context(silent=True)
    config: Config | None = ctx.meta.get(CONFIG_META) if ctx is not None else None
    return dict(config.variables) if config is not None else {}


@main.group()
def config() -> None:
    """Configuration files."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def check(file: str) -> None:
    """Validate a configuration file: exit 0 when usable, else list every problem and
    exit 2."""
    from otids.config import ConfigError, load_config

    try:
        loaded = load_config(file)
    except ConfigError as exc:
        _report(exc)
        fail(f"{len(exc.problems)} problem(s) in {file}", EXIT_BAD_INPUT)
    keys = len(loaded.default_map)
    variables = len(loaded.variables)
    click.echo(f"{file}: OK ({keys} option(s), {variables} variable(s))")
