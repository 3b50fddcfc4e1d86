"""zpctl render and zpctl diff: turn an inventory into per-host config trees."""

from __future__ import annotations

from pathlib import Path

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.errors import RenderError
from zpctl.model import load_inventory
from zpctl.render import check_out_dir, render
from zpctl.render.diff import BuildDiff, diff_build
from zpctl.render.verify import verify_rendered, verify_written
from zpctl.secrets import Secrets, default_path


def _default_out(platform: str) -> Path:
    return Path("build") / platform


def _render(inventory: Path, secrets_file: Path | None):  # type: ignore[no-untyped-def]
    inv = load_inventory(inventory)
    secrets = Secrets.load(secrets_file or default_path(inv.model.platform.name))
    build = render(inv, secrets)
    if secrets.dirty:
        secrets.save()
        info(f"generated missing secrets into {secrets.path} (mode 0600, keep out of git)")
    return inv, build


SECRETS_OPT = click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
                           help="Secrets file (default: $ZPCTL_SECRETS or "
                                "~/.config/zpctl/secrets/<platform>.yml).")


@click.command("render")
@INVENTORY_ARG
@click.option("--out", type=click.Path(path_type=Path),
              help="Build directory (default: build/<platform>).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Run `kamailio -c` on every rendered Kamailio config (needs kamailio), and "
                   "`promtool check config` on the monitoring files when promtool is installed.")
@click.option("--dry-run", is_flag=True, help="Render and show what would change; write nothing.")
@SECRETS_OPT
@pass_ctx
def render_cmd(ctx: Context, inventory: Path, out: Path | None, check: bool, dry_run: bool,
               secrets_file: Path | None) -> None:
    """Render INVENTORY into one tree per host under the build directory.

    \b
    Each host gets what it runs, e.g. for a Kamailio node:
      <host>/kamailio/kamailio.cfg   dispatcher.list   tls.cfg   secrets.cfg (0600)
      <host>/kamcli/kamcli.ini       <host>/node.json (role, services, memory sizing)
    and for a media node rtpengine/rtpengine.conf and redis/redis.conf.  Rendering is
    deterministic: the same inventory and secrets give byte-identical files, and
    MANIFEST.json records every file's hash and the build id.  A previous build in the
    same directory is replaced (see `zpctl diff` first); a directory that is not a zpctl
    build, or one holding files zpctl did not write, is never replaced (exit 9, nothing
    written), and neither is a read-only one.
    """
    inv, build = _render(inventory, secrets_file)
    verify_rendered(build)  # RenderError (exit 4) naming file, element and reason
    out = out or _default_out(inv.model.platform.name)
    check_out_dir(out)  # exit 9 unless out is new, empty or a zpctl build (also on --dry-run)
    delta = diff_build(build, out)
    if dry_run:
        _show_diff(ctx, delta, out)
        return
    build.write(out)
    failures = verify_written(out) if check else []
    result = {"build": build.digest(), "out": str(out), "hosts": len(build.hosts()),
              "files": len(build.files), "changed": delta.summary(),
              "kamailio_checked": check, "failures": failures}
    if failures:
        for f in failures:
            info(f"{f['check']} failed for {f['config']}:\n{f['output']}")
        checks = sorted({f["check"] for f in failures})
        what = "Kamailio config(s)" if checks == ["kamailio -c"] else "config(s)"
        raise RenderError(f"{len(failures)} {what} rejected by {' and '.join(checks)}")
    emit(ctx.output, result, text=(
        f"rendered {result['files']} files for {result['hosts']} hosts into {out} "
        f"(build {result['build']}; {delta.short()})"
        + ("; every Kamailio config passed kamailio -c" if check else "")))


@click.command("diff")
@INVENTORY_ARG
@click.option("--build", "build_dir", type=click.Path(path_type=Path),
              help="The previous build to compare with (default: build/<platform>).")
@click.option("--stat", is_flag=True, help="Only the list of changed files.")
@SECRETS_OPT
@pass_ctx
def diff_cmd(ctx: Context, inventory: Path, build_dir: Path | None, stat: bool,
             secrets_file: Path | None) -> None:
    """Show what rendering INVENTORY now would change against the previous build.

    Prints a unified diff per changed file (secrets files are compared but not shown).
    """
    inv, build = _render(inventory, secrets_file)
    out = build_dir or _default_out(inv.model.platform.name)
    _show_diff(ctx, diff_build(build, out), out, stat=stat)


def _show_diff(ctx: Context, delta: BuildDiff, out: Path, stat: bool = False) -> None:
    if ctx.output != "table":
        emit(ctx.output, delta.as_dict(include_patch=not stat))
        return
    if not out.exists():
        info(f"no previous build in {out}: everything is new")
    click.echo(delta.text(stat=stat) or "no changes")
