"""zpctl render and zpctl diff: turn an inventory into per-host config trees."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.inventory import INVENTORY_ARG
from zpctl.cli.output import emit, info
from zpctl.errors import RenderError
from zpctl.freeswitch import scratch
from zpctl.model import load_inventory
from zpctl.render import check_out_dir, render
from zpctl.render.diff import BuildDiff, diff_build
from zpctl.render.verify import verify_rendered, verify_written
from zpctl.secrets import Secrets, default_path

# Scratch FreeSWITCH instances at once (each takes a core for about a second at start).
SWITCH_JOBS = 2


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


# Render and deploy both start the switch configs in a scratch FreeSWITCH.
SWITCH_CHECK_OPT = click.option(
    "--switch-check/--no-switch-check", default=True, show_default=True,
    envvar="ZPCTL_SWITCH_CHECK",
    help="Start each distinct switch config in a scratch FreeSWITCH on 127.0.0.1 (every "
         "module loaded, every sofia profile RUNNING, no [ERR]/[CRIT] line; about 2 s per "
         "config, 2 at a time); a config it rejects is exit 4 with FreeSWITCH's own line.  "
         "Runs only where `freeswitch` is installed or $ZPCTL_FREESWITCH names it: a machine "
         "without FreeSWITCH skips it by itself (and says so on stderr).  --no-switch-check "
         "skips it where FreeSWITCH is installed, for speed while iterating (also "
         "ZPCTL_SWITCH_CHECK=0); the XML validator still runs.")
SECRETS_OPT = click.option("--secrets", "secrets_file", type=click.Path(path_type=Path),
                           help="Secrets file (default: $ZPCTL_SECRETS or "
                                "~/.config/zpctl/secrets/<platform>.yml).")


@click.command("render")
@INVENTORY_ARG
@click.option("--out", type=click.Path(path_type=Path),
              help="Build directory (default: build/<platform>).")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Check the written build with the real programs: `kamailio -c` on every "
                   "rendered Kamailio config (needs kamailio), `promtool check config` on the "
                   "monitoring files when promtool is installed, and each switch config in a "
                   "scratch FreeSWITCH when FreeSWITCH is installed (see --no-switch-check). "
                   "--no-check skips all of them.")
@SWITCH_CHECK_OPT
@click.option("--dry-run", is_flag=True, help="Render and show what would change; write nothing.")
@SECRETS_OPT
@pass_ctx
def render_cmd(ctx: Context, inventory: Path, out: Path | None, check: bool, switch_check: bool,
               dry_run: bool, secrets_file: Path | None) -> None:
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
    result["switch_check"] = switches = _switch_check(out, check, switch_check)
    lines = [f"  {line}" for line in switches.pop("lines", [])]
    emit(ctx.output, result, text="\n".join([
        f"rendered {result['files']} files for {result['hosts']} hosts into {out} "
        f"(build {result['build']}; {delta.short()})"
        + ("; every Kamailio config passed kamailio -c" if check else "")
        + (f"; every switch config started in FreeSWITCH ({switches['switches']} switches, "
           f"{len(lines)} distinct configs, {switches['seconds']:.0f} s):" if lines else ""),
        *lines]))


def _switch_check(out: Path, check: bool, wanted: bool) -> dict[str, Any]:
    """Each distinct switch config of the build ``out`` in a scratch FreeSWITCH, when one is
    installed and the check is wanted; RenderError (exit 4) with FreeSWITCH's own lines when
    it rejects one.  What was done, for the result."""
    nodes = scratch.switch_nodes(out)
    if not nodes:
        return {"ran": False, "skipped": "no switch nodes"}
    if not (check and wanted):
        return {"ran": False, "skipped": "--no-check" if not check else "--no-switch-check"}
    binary = scratch.freeswitch_binary()
    if binary is None:
        info(f"switch configs not started in FreeSWITCH: it is not installed (no `freeswitch` "
             f"on PATH, ${scratch.FREESWITCH_ENV} unset); only the XML validator checked them")
        return {"ran": False, "skipped": "FreeSWITCH is not installed"}
    groups = scratch.plan(out, nodes)
    info(f"starting {len(groups)} distinct switch config(s) of {len(nodes)} switch(es) in "
         f"scratch FreeSWITCH instances ({binary}, {SWITCH_JOBS} at a time)")
    started = time.monotonic()
    results = scratch.check_switch_configs(out, nodes, binary=binary, jobs=SWITCH_JOBS,
                                           progress=info)
    scratch.raise_for(results)
    return {"ran": True, "binary": binary, "switches": len(nodes),
            "seconds": round(time.monotonic() - started, 1),
            "configs": [r.as_dict() for r in results], "lines": [r.line() for r in results]}


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
