"""Standby switches and what they rely on, without a lab: the standby's command line, the
choice of standby, FreeSWITCH's recover answer, the rendered core database and switch legs,
and the lab phone's handling of a re-INVITE (what a recovered call sends each party).

The takeover itself runs against real FreeSWITCH and PostgreSQL in
tests/integration/test_switch_standby.py.
"""

from __future__ import annotations

import pwd
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.errors import EnvironmentProblem, ZpctlError
from zpctl.lab.database import _version, bootstrap_database
from zpctl.lab.procs import ProcRecord, as_user_kwargs
from zpctl.lab.sipua import Msg, Ua, parse
from zpctl.lab.standby import parse_recovered, standby_argv, standby_for, stands_in_for
from zpctl.model import load_inventory
from zpctl.render import render
from zpctl.secrets import Secrets


@pytest.fixture(scope="module")
def lab_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("lab") / "build"
    render(load_inventory(INVENTORIES / "lab"),
           Secrets.load(out.parent / "secrets.yml")).write(out)
    return out


def test_the_standby_runs_the_dead_switchs_config_with_its_own_folders() -> None:
    argv = ["/usr/bin/freeswitch", "-nf", "-conf", "/b/lab1-a-switch1/freeswitch",
            "-log", "/n/lab1-a-switch1/run", "-run", "/n/lab1-a-switch1/run",
            "-db", "/n/lab1-a-switch1/state", "-temp", "/n/lab1-a-switch1/run",
            "-sounds", "/n/lab1-a-switch1/state/freeswitch/sounds"]
    mine = {"state": Path("/n/sb/state"), "run": Path("/n/sb/run"), "log": Path("/n/sb/log")}
    out = standby_argv(argv, mine)
    assert out[out.index("-conf") + 1] == "/b/lab1-a-switch1/freeswitch"
    assert out[out.index("-db") + 1] == "/n/sb/state"
    assert out[out.index("-run") + 1] == out[out.index("-log") + 1] == "/n/sb/run"
    # the prompts are the switch's own (the same on every host of the zone)
    assert out[out.index("-sounds") + 1] == "/n/lab1-a-switch1/state/freeswitch/sounds"
    rec = ProcRecord("lab1-a-standby/freeswitch", 1, 1, out, "/dev/null")
    assert stands_in_for(rec) == "lab1-a-switch1"


def test_recover_answers_are_read() -> None:
    assert parse_recovered("Recovered 8 call(s)\n") == 8
    assert parse_recovered("No calls to recover.\n") == 0


def test_the_standby_of_a_switch_is_its_zones() -> None:
    inv = load_inventory(INVENTORIES / "lab")
    dead, spare = standby_for(inv, "lab1-b-switch1")
    assert (dead.name, spare.name) == ("lab1-b-switch1", "lab1-b-standby")
    for switch, standby, why in [
            ("lab1-a-switch1", "lab1-b-standby", "stands by for zone lab1/b"),
            ("lab1-a-proxy", None, "is a proxy node, not a switch"),
            ("lab2-a-switch1", None, "zone lab2/a has no switch-standby node"),
            ("nope", None, "no node 'nope'")]:
        with pytest.raises(ZpctlError) as exc:
            standby_for(inv, switch, standby)
        assert why in exc.value.message and exc.value.exit_code == 2


def test_core_database_and_switch_legs_are_rendered_per_data_center(lab_build: Path) -> None:
    sw = lab_build / "lab1-a-switch1" / "freeswitch"
    conf = (sw / "autoload_configs" / "switch.conf.xml").read_text()
    assert '<param name="core-db-dsn" value="$${zp_core_db_dsn}"/>' in conf
    assert '<param name="switchname" value="lab1-a-switch1"/>' in conf
    assert 'module="mod_pgsql"' in (sw / "autoload_configs" / "pre_load_modules.conf.xml").read_text()
    secrets = sw / "secrets.xml"
    assert secrets.stat().st_mode & 0o077 == 0
    assert re.search(r"zp_core_db_dsn=pgsql://hostaddr=127\.1\.0\.5 port=5432 "
                     r"dbname=fs_lab1_a_switch1 user=freeswitch connect_timeout=3",
                     secrets.read_text())
    # the passwords are in libpq's password file, never in a DSN FreeSWITCH would log
    assert " password=" not in secrets.read_text()
    passfile = sw / "pgpass"
    assert passfile.stat().st_mode & 0o077 == 0
    lines = passfile.read_text().splitlines()
    assert [ln.rsplit(":", 1)[0] for ln in lines] == ["127.1.0.5:5432:*:freeswitch",
                                                       "127.1.0.5:5432:zpctl:kamailio"]
    assert all(len(ln.rsplit(":", 1)[1]) >= 16 for ln in lines)
    assert 'name="track-calls" value="true"' in (sw / "sip_profiles" / "zpctl.xml").read_text()
    # lab1's switch legs are plain RTP (it has standbys); lab2's stay SRTP
    assert "rtp_secure_media_inbound=forbidden" in (sw / "vars.xml").read_text()
    lab2 = (lab_build / "lab2-a-switch1" / "freeswitch" / "vars.xml").read_text()
    assert "rtp_secure_media_inbound=mandatory:AES_256_CM_HMAC_SHA1_80" in lab2
    for dc, want in (("lab1", 'transport-protocol=RTP/AVP"'), ("lab2", "transport-protocol=RTP/SAVP")):
        cfg = (lab_build / f"{dc}-a-proxy" / "kamailio" / "kamailio.cfg").read_text()
        to_switch = cfg.split("the switch gets SRTP with every usable suite")[1].split("route(MEDIA)")[0]
        assert want in to_switch, dc
        sbc = (lab_build / f"{dc}-a-sbc" / "kamailio" / "kamailio.cfg").read_text()
        assert f'"direction=external direction=internal {want.rstrip(chr(34))}' in sbc, dc
    # a standby runs nothing until it takes over
    assert '"services": []' in (lab_build / "lab1-a-standby" / "node.json").read_text()


def _udp(ip: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((ip, 0))
    s.settimeout(2)
    return s


def test_a_reinvite_moves_the_calls_media_and_starts_no_new_one() -> None:
    """A recovered call re-INVITEs both parties with the switch's (or the relay's) address:
    the phone answers from the call's own port and sends its RTP where the offer says."""
    far = _udp("127.0.0.1")  # the "proxy": gets the INVITE, answers 200, then re-INVITEs
    ua = Ua("127.0.0.1", 0, "1001", "1001", "acme.test", "pw", far.getsockname(),
            media_port=0)
    ua.sock.close()
    ua.sock = _udp("127.0.0.1")
    ua.port = ua.sock.getsockname()[1]
    ua.media_port = _free_udp_port()
    ua.answer_calls()
    try:
        rtp_a, rtp_b = _udp("127.0.0.1"), _udp("127.0.0.1")

        def answer_invite() -> None:
            data, addr = far.recvfrom(65535)
            inv = parse(data)
            assert inv.method == "INVITE"
            sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                   f"m=audio {rtp_a.getsockname()[1]} RTP/AVP 0 101\r\n")
            far.sendto(_reply(inv, "200 OK", sdp, "tag-far").encode(), addr)

        t = threading.Thread(target=answer_invite)
        t.start()
        dialog = ua.dial("1002", timeout=3)
        t.join(3)
        assert dialog.established and dialog.media is not None
        assert rtp_a.recv(2048)  # media flows to the first address
        sdp2 = (f"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {rtp_b.getsockname()[1]} RTP/AVP 0 101\r\n")
        reinvite = "\r\n".join([
            f"INVITE sip:1001@127.0.0.1:{ua.port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{far.getsockname()[1]};branch=z9hG4bKre1",
            f"From: <sip:1002@acme.test>;tag={dialog.to_tag}",
            f"To: <sip:1001@acme.test>;tag={dialog.from_tag}",
            f"Call-ID: {dialog.call_id}", "CSeq: 5 INVITE", "Content-Type: application/sdp",
            f"Content-Length: {len(sdp2)}", "", sdp2])
        far.sendto(reinvite.encode(), ("127.0.0.1", ua.port))
        reply = parse(far.recv(65535))
        while reply.method:  # the ACK of the first answer
            reply = parse(far.recv(65535))
        assert reply.first.startswith("SIP/2.0 200")
        assert f"m=audio {ua.media_port} " in reply.body  # the call's own port
        assert rtp_b.recv(2048)  # the media moved
        assert len(ua.reinvites) == 1 and ua.answered == [] and ua.received_invites == []
    finally:
        ua.close()


def _free_udp_port() -> int:
    s = _udp("127.0.0.1")
    port = int(s.getsockname()[1])
    s.close()
    time.sleep(0.01)
    return port


def _reply(req: Msg, status: str, body: str, tag: str) -> str:
    lines = [f"SIP/2.0 {status}", *(f"Via: {v}" for v in req.all("Via")),
             f"From: {req.get('From')}", f"To: {req.get('To')};tag={tag}",
             f"Call-ID: {req.get('Call-ID')}", f"CSeq: {req.get('CSeq')}",
             "Contact: <sip:1002@127.0.0.1>", "Content-Type: application/sdp",
             f"Content-Length: {len(body)}"]
    return "\r\n".join(lines) + "\r\n\r\n" + body


def test_the_lab_database_runs_as_postgres_with_its_group_only() -> None:
    assert as_user_kwargs(None) == {}
    pw = pwd.getpwnam("root")
    assert as_user_kwargs("root") == {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def test_the_newest_debian_postgresql_is_chosen() -> None:
    paths = ["/usr/lib/postgresql/9.6/bin/postgres", "/usr/lib/postgresql/15/bin/postgres",
             "/usr/lib/postgresql/13/bin/postgres"]
    assert max(paths, key=_version) == "/usr/lib/postgresql/15/bin/postgres"


def test_a_switch_db_password_that_sql_would_break_on_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZPCTL_SECRET_SWITCH_DB_PASSWORD", "x'; DROP ROLE freeswitch; --")
    inv = load_inventory(INVENTORIES / "lab")
    with pytest.raises(EnvironmentProblem) as exc:
        bootstrap_database(inv, tmp_path, Secrets.load(tmp_path / "s.yml"))
    assert "switch_db_password" in exc.value.message and "DROP" not in exc.value.message
