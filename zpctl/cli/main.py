"""The zpctl command line.  Click functions parse, call one library function and format.

Errors: library code raises ZpctlError (with its exit code); :func:`main` turns it into a
message on stderr and the documented exit code.  ``--debug`` shows the traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import MutableMapping

import click

from zpctl import __version__
from zpctl.cli.context import Context, OutputChoice, give_global_options, set_verbosity
from zpctl.errors import ExitCode, InventoryError, ZpctlError

# Each command as "module:attribute", imported when it is run or listed: a command pays
# only for its own imports (the lab's, the exporter's and deploy's are most of the CLI's
# start-up), which `zpctl accounts sync` on the day-2 path and scripts notice.
LAZY_COMMANDS = {
    "accounts": "zpctl.cli.accounts:accounts",
    "calls": "zpctl.cli.calls:calls",
    "cdr": "zpctl.cli.cdr:cdr_group",
    "db": "zpctl.cli.db:db_group",
    "dc": "zpctl.cli.control:dc",
    "deploy": "zpctl.cli.deploy:deploy",
    "dialogs": "zpctl.cli.control:dialogs",
    "diff": "zpctl.cli.render:diff_cmd",
    "dns": "zpctl.cli.dns:dns_group",
    "emergency": "zpctl.cli.emergency:emergency",
    "exporter": "zpctl.cli.exporter:exporter_cmd",
    "inventory": "zpctl.cli.inventory:inventory",
    "lab": "zpctl.cli.lab:lab",
    "loadtest": "zpctl.cli.loadtest:loadtest_cmd",
    "node": "zpctl.cli.control:node",
    "pki": "zpctl.cli.pki:pki_group",
    "queues": "zpctl.cli.queues:queues",
    "recordings": "zpctl.cli.recordings:recordings",
    "registrations": "zpctl.cli.control:registrations",
    "render": "zpctl.cli.render:render_cmd",
    "survivability": "zpctl.cli.survivability:survivability",
    "switch": "zpctl.cli.switch:switch",
    "voicemail": "zpctl.cli.voicemail:voicemail",
    "zone": "zpctl.cli.control:zone",
}


class LazyGroup(click.Group):
    """The root group: its commands come from :data:`LAZY_COMMANDS` on first use, each
    given the global options (-o, -v, --debug) as it is loaded."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[cmd_name].split(":")
            cmd = getattr(importlib.import_module(module), attr)
            give_global_options(cmd)
            self.add_command(cmd, cmd_name)
        return self.commands.get(cmd_name)

    def load_all(self) -> MutableMapping[str, click.Command]:
        """Every command, loaded (for tools that walk the tree)."""
        ctx = click.Context(self)
        for name in LAZY_COMMANDS:
            self.get_command(ctx, name)
        return self.commands


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "auto_envvar_prefix": "ZPCTL",
                    "max_content_width": 100}


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.option("-o", "--output", type=OutputChoice(), default="table",
              show_default=True, help="Format of the data printed on stdout.")
@click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for debug).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="zpctl")
@click.pass_context
def cli(ctx: click.Context, output: str, verbose: int, debug: bool) -> None:
    """zpctl: describe a Kamailio / rtpengine / FreeSWITCH phone platform once, in an
    inventory; validate it, render every config, run it in a lab, and operate it.

    \b
    Typical flow:
      zpctl inventory validate inventories/lab     # check the inventory
      zpctl render inventories/lab                 # write build/lab/<host>/...
      zpctl diff inventories/lab                   # what would change
      zpctl lab up                                 # run the platform on loopback

    Data goes to stdout (-o json|yaml for scripts), logs and progress to stderr.  The
    options -o, -v and --debug are accepted before or after the command
    (`zpctl -o json lab status` = `zpctl lab status -o json`).
    Exit codes: 0 ok, 1 internal error (a bug), 2 usage, 3 invalid inventory, 4 render
    failed, 5 deploy failed, 6 remote error, 7 unreachable/timeout, 8 SLO breached,
    9 environment (missing binary, port taken, unreadable or read-only file), 130
    interrupted.  Environment variables: ZPCTL_OUTPUT, ZPCTL_SECRETS.
    """
    logging.basicConfig(stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    set_verbosity(verbose)
    ctx.obj = Context(output=output, verbose=verbose, debug=debug)



def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code instead of raising SystemExit."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="zpctl", standalone_mode=False)
    except ZpctlError as exc:
        if debug:
            raise
        click.echo(f"zpctl: error: {exc.message}", err=True)
        return int(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("zpctl: interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("zpctl: interrupted", err=True)
        return int(ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        return int(ExitCode.USAGE) if isinstance(exc, click.UsageError) else exc.exit_code
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except Exception:
        if debug:
            raise
        import traceback  # noqa: PLC0415

        click.echo("zpctl: internal error (a bug; run with --debug for the traceback):", err=True)
        click.echo("  " + traceback.format_exc().strip().splitlines()[-1], err=True)
        return int(ExitCode.ERROR)
    return 0


def run() -> None:  # pragma: no cover - console entry point
    sys.exit(main())


__all__ = ["Context", "InventoryError", "cli", "main", "run"]
