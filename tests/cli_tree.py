"""The zpctl command tree, walked: every leaf command by its path, for tests that must
cover every command (global options, bad values)."""

from __future__ import annotations

from collections.abc import Iterator

import click

from zpctl.cli.main import LazyGroup, cli


def leaves(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every leaf command's path under ``group``, sorted (e.g. ``("lab", "status")``)."""
    commands = group.load_all() if isinstance(group, LazyGroup) else group.commands
    for name, cmd in sorted(commands.items()):
        if isinstance(cmd, click.Group):
            yield from leaves(cmd, (*prefix, name))
        else:
            yield (*prefix, name)


def command(path: tuple[str, ...]) -> click.Command:
    """The command at ``path``."""
    cli.load_all()
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    return cmd
