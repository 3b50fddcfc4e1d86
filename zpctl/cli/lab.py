"""zpctl lab: run an inventory's platform on this machine, every node on loopback."""

from __future__ import annotations

import signal
import tempfile
import time
from pathlib import Path

import click

from zpctl.cli.context import Context, pass_ctx
from zpctl.cli.output import emit, info
from zpctl.cli.types import TIMEOUT, count
from zpctl.control import not_up
from zpctl.errors import RemoteFailure
from zpctl.lab import Lab
from zpctl.lab.demo import Demo
from zpctl.lab.standby import giveback, takeover
from zpctl.paths import default_inventory

LAB_DIR = click.option("--lab-dir", type=click.Path(path_type=Path), envvar="ZPCTL_LAB_DIR",
                       help="The lab directory (default: $ZPCTL_LAB_DIR or "
                            "~/.local/state/zpctl/lab).")
STATUS_COLUMNS = ["node", "role", "dc", "zone", "address", "state", "pid", "registrations",
                  "dialogs", "sessions"]


@click.group()
def lab() -> None:
    """Run a platform on this machine: every node a real process on its own loopback
    address (Kamailio lb/proxy/sbc, rtpengine and Redis per media node).

    \b
      zpctl lab up                  # inventories/lab; waits until every node answers
      zpctl lab status -o json      # role, zone, address, up/down, registrations, dialogs
      zpctl lab logs lab1-a-proxy   # the last lines of a node's logs
      zpctl lab kill lab1-a-switch1 # fail a process (SIGKILL); `lab up` restarts it
      zpctl lab takeover lab1-a-switch1   # its zone's standby takes it over, calls too
      zpctl lab down                # stops exactly what `up` started
    """


@lab.command("up")
@click.argument("inventory", type=click.Path(path_type=Path), required=False)
@LAB_DIR
@click.option("--timeout", type=TIMEOUT, default=30.0, show_default=True,
              help="Seconds to wait for each node to answer.")
@click.option("--dry-run", is_flag=True, help="Show what would start; start nothing.")
@pass_ctx
def up_cmd(ctx: Context, inventory: Path | None, lab_dir: Path | None, timeout: float,
           dry_run: bool) -> None:
    """Start the platform of INVENTORY (default: inventories/lab); idempotent.

    Refuses when a binary is missing (exit 9), an address/port is taken (exit 9) or a node
    does not answer in time (exit 7).
    """
    lab_ = Lab(lab_dir)
    if dry_run:
        inv = lab_.inventory(inventory or default_inventory())
        lab_.check_loopback(inv)
        rows = [{"service": s.name, "listen": " ".join(f"{a}:{p}/{t}" for a, p, t in s.listeners),
                 "command": " ".join(s.argv)} for s in lab_.services(inv)]
        emit(ctx.output, rows, rows=rows, columns=["service", "listen", "command"])
        return
    t0 = time.monotonic()
    info(f"lab: starting {inventory or lab_.inventory_label()} in {lab_.dir}")
    rows = lab_.up(inventory, progress=info, timeout=timeout)
    info(f"lab: {sum(r['state'] == 'up' for r in rows)}/{len(rows)} nodes up "
         f"in {time.monotonic() - t0:.1f} s")
    emit(ctx.output, rows, rows=rows, columns=STATUS_COLUMNS)


@lab.command("down")
@LAB_DIR
@pass_ctx
def down_cmd(ctx: Context, lab_dir: Path | None) -> None:
    """Stop every process the lab started (by pid and start time), nothing else.

    Returns once every one of them has exited (SIGKILL after 5 s) and every address they
    listened on is free again, so a following `lab up` finds no straggler (exit 9 if one
    survives).
    """
    report = Lab(lab_dir).down(progress=info)
    emit(ctx.output, report.as_dict(), text=report.summary())


@lab.command("status")
@LAB_DIR
@pass_ctx
def status_cmd(ctx: Context, lab_dir: Path | None) -> None:
    """Each node: role, zone, address, state, registrations and active dialogs (JSON-RPC),
    calls on each switch (``sessions``, over ESL).

    State: up; down (its process is gone); not answering (its process is there but it does
    not answer: frozen or overloaded).  Exit 7 when any node the lab runs is not up (the
    table is printed first).
    """
    rows = Lab(lab_dir).status()
    emit(ctx.output, rows, rows=rows, columns=STATUS_COLUMNS)
    bad = not_up([r for r in rows if not str(r["state"]).startswith("not run by the lab")
                  and r["role"] != "switch-standby"])
    if bad is not None:
        raise bad


@lab.command("kill")
@click.argument("service")
@click.option("--signal", "sig", type=click.Choice(["KILL", "TERM", "STOP", "CONT"]),
              default="KILL", show_default=True, help="The signal to send.")
@LAB_DIR
@pass_ctx
def kill_cmd(ctx: Context, service: str, sig: str, lab_dir: Path | None) -> None:
    """Fail one process of the lab on purpose: SERVICE is a node that runs one process
    (lab1-a-switch1) or node/process (lab1-a-media/rtpengine).  SIGKILL by default, as a
    crash; STOP freezes it (CONT thaws).  `zpctl lab up` starts what is not running."""
    rec = Lab(lab_dir).kill(service, int(getattr(signal, f"SIG{sig}")))
    emit(ctx.output, {"service": rec.name, "pid": rec.pid, "signal": sig},
         text=f"{rec.name} (pid {rec.pid}): SIG{sig}")


@lab.command("takeover")
@click.argument("switch")
@click.option("--standby", help="The switch-standby node (default: the first of SWITCH's zone).")
@click.option("--timeout", type=TIMEOUT, default=30.0, show_default=True,
              help="Seconds to wait for the standby's switch to answer.")
@LAB_DIR
@pass_ctx
def takeover_cmd(ctx: Context, switch: str, standby: str | None, timeout: float,
                 lab_dir: Path | None) -> None:
    """A standby takes over dead SWITCH: FreeSWITCH starts on the standby with SWITCH's
    configuration and addresses (its own local folders), then `sofia recover` resumes the
    calls SWITCH carried, from its core database on the shared PostgreSQL
    (switch_recovery): each party gets a re-INVITE and the media flows again.

    \b
      zpctl lab kill lab1-a-switch1        # the switch dies (SIGKILL)
      zpctl lab takeover lab1-a-switch1    # lab1-a-standby takes its place and its calls
      zpctl lab giveback lab1-a-switch1    # the standby stops; the switch starts again

    Refused (exit 2) while SWITCH runs, or when its zone has no standby.
    """
    lab_ = Lab(lab_dir)
    res = takeover(lab_, switch, standby, progress=info, timeout=timeout)
    emit(ctx.output, res, text=f"{res['standby']} took over {res['switch']} in "
                               f"{res['took_s']} s: {res['recovered_channels']} channel(s) "
                               f"recovered")


@lab.command("giveback")
@click.argument("switch")
@click.option("--standby", help="The switch-standby node (default: the first of SWITCH's zone).")
@LAB_DIR
@pass_ctx
def giveback_cmd(ctx: Context, switch: str, standby: str | None, lab_dir: Path | None) -> None:
    """Stop the standby standing in for SWITCH (calls still on it end: drain it first with
    `zpctl switch drain INV SWITCH`) and start SWITCH again."""
    res = giveback(Lab(lab_dir), switch, standby, progress=info)
    emit(ctx.output, res, text=f"{res['switch']} is back; {res['standby']} "
                               + ("stopped" if res["standby_stopped"] else "was not running"))


@lab.command("logs")
@click.argument("node", required=False)
@click.option("-n", "--lines", type=count(1, 100_000), default=40, show_default=True,
              help="Lines per log file, from the end.")
@LAB_DIR
def logs_cmd(node: str | None, lines: int, lab_dir: Path | None) -> None:
    """The last lines of every node's logs, or of NODE's."""
    click.echo(Lab(lab_dir).logs(node, lines))


@lab.command("demo")
@LAB_DIR
@pass_ctx
def demo_cmd(ctx: Context, lab_dir: Path | None) -> None:
    """Place the demo calls through the running lab and print what happened.

    Extension to extension, PSTN for a Native, a BYOC-C and a BYOC-P account, an Opus app
    calling a G.711 carrier (transcoded by the switch), a user without a calling plan
    (refused) and an inbound DID call, each through a switch of the zone; then the PBX
    features, proven by what was heard: voicemail (greeting and beep heard, the caller's
    tone recorded, the message-waiting NOTIFY at the phone), retrieval with *97 and the PIN
    (the message heard back), and the PIN lockout across calls.  The table shows each flow,
    ok, its path (lb, zone, switch, sbc) and what it proved (the SIP result and the RTP
    packets each end sent and received, counted on the loopback interface); -o json adds
    the details.  Exits non-zero if any flow did not behave.
    """
    lab_ = Lab(lab_dir)
    lab_.require()  # never place calls through the lab addresses without our lab there
    with tempfile.TemporaryDirectory(prefix="zpctl-demo-") as tmp:
        flows = Demo(lab_, Path(tmp), say=info).run()
    rows = [f.row() for f in flows]
    emit(ctx.output, rows, rows=rows, columns=["flow", "ok", "path", "journey", "detail"])
    bad = [str(r["flow"]) for r in rows if not r["ok"]]
    if bad:
        raise RemoteFailure(f"demo flows failed: {', '.join(bad)}")
