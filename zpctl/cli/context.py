"""What every zpctl command shares: the output format, verbosity and debug flag.

SREs write flags where they think of them: ``zpctl -o json lab status`` and
``zpctl lab status -o json`` must mean the same.  The root group declares the options; as
each command is loaded (zpctl.cli.main's LazyGroup), :func:`give_global_options` gives it
and every command below it the same options.  Given there, an option overrides the root's
value (the last one written wins, as with any repeated option).  The command modules import
:class:`Context` from here, not from :mod:`zpctl.cli.main` (no cycle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

OUTPUT_FORMATS = ("table", "json", "yaml")


class OutputChoice(click.Choice):  # type: ignore[type-arg]
    """The -o/--output choice; a bad value from ZPCTL_OUTPUT is blamed on the variable, not
    on an -o the user never typed."""

    def __init__(self) -> None:
        super().__init__(OUTPUT_FORMATS)

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            if ctx is None or param is None or param.name is None or \
                    ctx.get_parameter_source(param.name) != ParameterSource.ENVIRONMENT:
                raise
            envvar = (param.envvar if isinstance(param.envvar, str)
                      else f"{ctx.auto_envvar_prefix}_{param.name.upper()}")
            raise click.UsageError(
                f"environment variable {envvar}={value!r} is not an output format: use one of "
                f"{', '.join(OUTPUT_FORMATS)} (or unset it, or give -o)", ctx) from None


@dataclass
class Context:
    output: str = "table"
    verbose: int = 0
    debug: bool = False


pass_ctx = click.make_pass_decorator(Context, ensure=True)


def set_verbosity(verbose: int) -> None:
    """Log WARNING and above; INFO with -v, DEBUG with -vv (always to stderr)."""
    logging.getLogger().setLevel(logging.WARNING - 10 * min(verbose, 2))


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(Context).output = value


def _add_verbose(ctx: click.Context, _param: click.Parameter, value: int) -> None:
    if value:
        obj = ctx.ensure_object(Context)
        obj.verbose += value
        set_verbosity(obj.verbose)


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(Context).debug = True


def _global_params() -> list[click.Parameter]:
    # expose_value=False: the command functions keep their signatures; the callbacks write
    # into the shared Context, which the root group created before any subcommand parses.
    # allow_from_autoenv=False: ZPCTL_OUTPUT is read once, by the root option.
    common: dict[str, Any] = {"expose_value": False, "allow_from_autoenv": False}
    return [
        click.Option(["-o", "--output"], type=OutputChoice(), default=None,
                     callback=_set_output, help="Format of the data printed on stdout "
                     "(table, json or yaml; also accepted before the command).", **common),
        click.Option(["-v", "--verbose"], count=True, callback=_add_verbose,
                     help="More logging on stderr (-vv for debug).", **common),
        click.Option(["--debug"], is_flag=True, callback=_set_debug,
                     help="Show tracebacks for errors.", **common),
    ]


def spread_global_options(root: click.Group) -> None:
    """Give every command under ``root`` the root's -o/--output, -v/--verbose and --debug."""
    for cmd in root.commands.values():
        give_global_options(cmd)


def give_global_options(cmd: click.Command) -> None:
    """Give ``cmd`` (and every command under it) -o/--output, -v/--verbose and --debug,
    except an option it has of its own."""
    taken = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
    for param in _global_params():
        if not taken & set(param.opts):
            cmd.params.append(param)
    if isinstance(cmd, click.Group):
        spread_global_options(cmd)
