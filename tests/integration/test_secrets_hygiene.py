"""Secrets (SIP passwords, the topoh key, the nonce secret, TLS keys) never appear in files
others can read, in the lab's logs, or in `-o json` output; the lab's folders are 0700 and
its logs, pid files and subscriber database (HA1 hashes) 0600, or, on PostgreSQL, in the
server's own 0700 folder behind password logins."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import stat
import time
from pathlib import Path

import pytest
import yaml

from zpctl.cli.main import main
from zpctl.clients.kamailio import KamailioRpc
from zpctl.lab import Lab
from zpctl.lab.database import pg_root
from zpctl.model.schema import Role
from zpctl.testing import wait_for

SOURCE = "127.0.66.1"  # sends the malformed requests: no phone, peer or load generator


def _secrets(lab: Lab) -> list[str]:
    values = yaml.safe_load((lab.dir / "secrets.yml").read_text())
    assert len(values) > 10
    return [v for v in values.values() if len(v) >= 8]


def test_secrets_file_and_keys_are_private(zpctl_lab: Lab) -> None:
    assert stat.S_IMODE((zpctl_lab.dir / "secrets.yml").stat().st_mode) == 0o600
    for key in (zpctl_lab.dir / "pki").glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) & 0o077 == 0, key


def test_no_secret_in_readable_files_or_logs(zpctl_lab: Lab) -> None:
    secrets = _secrets(zpctl_lab)
    leaks = []
    for path in list((zpctl_lab.dir / "build").rglob("*")) + \
            list((zpctl_lab.dir / "nodes").glob("*/log/*")):
        if not path.is_file():
            continue
        readable_by_others = stat.S_IMODE(path.stat().st_mode) & 0o077
        if "build" in path.parts and not readable_by_others:
            continue  # secrets.cfg: 0600 on purpose
        text = path.read_text(errors="replace")
        leaks += [f"{path}: {s[:4]}..." for s in secrets if s in text]
    assert leaks == []


@pytest.mark.parametrize("argv", [["accounts", "users", "inventories/lab"],
                                  ["lab", "status"], ["node", "status"],
                                  ["registrations", "ls"]])
def test_no_secret_in_json_output(zpctl_lab: Lab, capsys: pytest.CaptureFixture[str],
                                  argv: list[str]) -> None:
    assert main(["-o", "json", *argv, "--lab-dir", str(zpctl_lab.dir)]) == 0
    out = capsys.readouterr().out
    assert out.strip()
    assert [s[:4] for s in _secrets(zpctl_lab) if s in out] == []


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_lab_dir_state_logs_and_database_are_private(zpctl_lab: Lab) -> None:
    lab = zpctl_lab.dir
    folders = [lab, lab / "state", lab / "pids", lab / "nodes",
               *(d for d in (lab / "nodes").glob("*/*") if d.is_dir())]
    files = [*(lab / "pids").glob("*.json"),
             *(f for f in (lab / "nodes").glob("*/log/*") if f.is_file())]
    assert len(list((lab / "pids").glob("*.json"))) > 10
    assert len([f for f in files if f.name.endswith(".log")]) > 10
    assert any(f.name.startswith("sipp") for f in files)  # written by SIPp itself, not by us
    assert [f"{d}: {_mode(d):o}" for d in folders if _mode(d) != 0o700] == []
    assert [f"{f}: {_mode(f):o}" for f in files if _mode(f) != 0o600] == []
    # the platform database (HA1 hashes) is PostgreSQL's: its folder is the server's, 0700
    data = pg_root(lab) / "data"
    assert (_mode(pg_root(lab)), _mode(data)) == (0o700, 0o700)
    assert data.stat().st_uid != 0 and (data / "base").is_dir()
    hba = (data / "pg_hba.conf").read_text()
    assert [ln.split()[-1] for ln in hba.splitlines() if ln.startswith("host")] \
        == ["scram-sha-256"] * 2


def _sqlite_lab(tmp_path: Path) -> Path:
    """The lab inventory with its platform database in a sqlite file (a single-node lab)."""
    inv = tmp_path / "inv"
    shutil.copytree("inventories/lab", inv)
    platform = inv / "platform.yml"
    platform.write_text(platform.read_text().replace(
        "database:\n  engine: postgres\n  host: 127.1.0.5\n", "database:\n  engine: sqlite\n"))
    assert "engine: sqlite" in platform.read_text()
    return inv


def test_a_lab_dir_from_before_is_made_private(tmp_path: Path) -> None:
    """An existing lab (made with umask 022: folders 0755, database 0644) is tightened."""
    lab = Lab(tmp_path / "lab")
    (lab.dir / "state").mkdir(parents=True, mode=0o755)
    lab.dir.chmod(0o755)
    sqlite3.connect(lab.db_path).close()
    lab.db_path.chmod(0o644)
    lab.prepare(lab.inventory(_sqlite_lab(tmp_path)))
    assert _mode(lab.dir) == 0o700
    assert _mode(lab.dir / "state") == 0o700
    assert _mode(lab.db_path) == 0o600
    assert [str(d) for d in (lab.dir / "nodes").glob("*/*") if _mode(d) != 0o700] == []
    with sqlite3.connect(lab.db_path) as conn:  # the HA1 hashes are in it
        assert conn.execute("SELECT count(*) FROM subscriber WHERE ha1 != ''").fetchone()[0] > 5


def test_a_new_lab_dir_is_private(tmp_path: Path) -> None:
    lab = Lab(tmp_path / "deep" / "lab")
    lab.prepare(lab.inventory(_sqlite_lab(tmp_path)))
    assert _mode(lab.dir) == 0o700
    assert _mode(lab.dir / "state") == 0o700
    assert _mode(lab.db_path) == 0o600


def _malformed(password: str, n: int) -> list[bytes]:
    """Requests whose broken header carries ``password``: Kamailio's core parser used to log
    such a header verbatim ("bad header field [...]"), or the whole message."""
    via = f"Via: SIP/2.0/UDP {SOURCE}:5099;branch=z9hG4bK-hyg{n}"
    top = "REGISTER sip:lab.zpctl.test SIP/2.0\r\n"
    std = (f"From: <sip:1001@lab.zpctl.test>;tag=h{n}\r\nTo: <sip:1001@lab.zpctl.test>\r\n"
           f"Call-ID: hygiene-{n}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n")
    msgs = [
        # a header without a colon, after the Via (found when a route reads later headers)
        top + via + "\r\n" + std + f"X-Creds password={password}\r\nContent-Length: 0\r\n\r\n",
        # the same before the first Via (the core's first parse fails: whole message dumped)
        top + f"X-Creds password={password}\r\n" + via + "\r\n" + std
        + "Content-Length: 0\r\n\r\n",
        # a broken To carrying it as a URI parameter
        top + via + "\r\n" + std.replace("To: <sip:1001@lab.zpctl.test>",
                                         f"To: <sip:1001@lab.zpctl.test;password={password}>>x \"")
        + "Content-Length: 0\r\n\r\n",
        # a broken Via
        top + f"Via: SIP/2.0/UDP {SOURCE}:5099;password={password};;;=\"\r\n" + std
        + "Content-Length: 0\r\n\r\n",
        # an unterminated digest with a plain password, then a header without an end of line
        top + via + "\r\n" + std + 'Authorization: Digest username="1001", '
        f'password="{password}", realm="x\r\nX-Foo: password={password}',
    ]
    return [m.encode() for m in msgs]


def _bad_headers(rpc: KamailioRpc) -> int:
    for item in rpc.call("stats.get_statistics", "bad_msg_hdr"):
        key, _, value = str(item).partition("=")
        if key.strip() == "core:bad_msg_hdr":
            return int(value)
    raise AssertionError("no core:bad_msg_hdr statistic")


def test_malformed_headers_carrying_a_password_are_not_logged(zpctl_lab: Lab) -> None:
    """A SIP user's real password in broken headers sent to an lb, a zone proxy and the sbc
    (both sides), three times each like a retransmitting phone: counted by each node as bad
    headers, and found in no log of the lab."""
    password = zpctl_lab.users()[0].password
    inv = zpctl_lab.inventory()
    nodes = {p.role: p.node for p in inv.nodes() if p.dc.id == inv.model.datacenters[0].id}
    sbc = nodes[Role.SBC]
    targets = [(nodes[Role.LB], nodes[Role.LB].address),
               (nodes[Role.PROXY], nodes[Role.PROXY].address),
               (sbc, sbc.address), (sbc, sbc.public)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((SOURCE, 5099))
        for i, (node, address) in enumerate(targets):
            rpc = KamailioRpc(f"http://{node.mgmt}:{node.ports.mgmt_http}/RPC")
            for n, msg in enumerate(_malformed(password, i) * 3):
                before = _bad_headers(rpc)
                s.sendto(msg, (address, node.ports.sip))

                def counted(rpc: KamailioRpc = rpc, before: int = before) -> bool:
                    return _bad_headers(rpc) > before
                wait_for(f"{node.name} ({address}) to count malformed request {n}", counted,
                         timeout=5)
    time.sleep(0.5)  # the node logs right after counting
    logs = [f for f in (zpctl_lab.dir / "nodes").glob("*/log/*") if f.is_file()]
    leaks = [f"{f}: {line[:120]}" for f in logs
             for line in f.read_text(errors="replace").splitlines() if password in line]
    assert leaks == []
    # What is logged instead: the source of a request the core could not parse, no content.
    lb_log = (zpctl_lab.dir / "nodes" / nodes[Role.LB].name / "log" / "kamailio.log").read_text()
    assert f"malformed SIP from {SOURCE}:5099" in lb_log
