"""`zpctl exporter` as a command: one scrape of a platform that is not running, exit codes
for bad input, and serving until SIGTERM.  No lab needed: the inventory is moved to
loopback addresses nothing listens on (127.0.6x / 127.1.6x)."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import INVENTORIES
from zpctl.cli.main import main
from zpctl.errors import ExitCode

CLI = [sys.executable, "-c", "import sys; from zpctl.cli.main import main; sys.exit(main())"]


@pytest.fixture(scope="module")
def nowhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("inv") / "lab"
    shutil.copytree(INVENTORIES / "lab", dest)
    for f in dest.rglob("*.yml"):
        f.write_text(re.sub(r"127\.(0|1)\.([129])\.", lambda m: f"127.{m[1]}.6{m[2]}.",
                            f.read_text()).replace("127.1.0.5", "127.1.60.5"))  # the db
    return dest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_once_on_a_platform_that_is_down(nowhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    assert main(["exporter", str(nowhere), "--once", "--timeout", "0.3"]) == 0
    assert time.monotonic() - t0 < 10  # every node probed in parallel, each bounded
    out = capsys.readouterr().out
    assert 'zpctl_zone_up{dc="lab1",zone="a"} 0.0' in out
    assert 'zpctl_datacenter_up{dc="lab2"} 0.0' in out
    assert re.search(r'zpctl_node_up\{[^}]*node="lab1-a-media"[^}]*\} 0\.0', out)
    assert 'zpctl_collector_success{collector="registrations"} 0.0' in out
    assert "zpctl_registrations{" not in out  # unknown, not zero


def test_bad_listen_is_a_usage_error(nowhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exporter", str(nowhere), "--listen", "localhost"]) == ExitCode.USAGE
    assert "--listen must be ADDR:PORT" in capsys.readouterr().err


def test_a_taken_port_is_an_environment_error(nowhere: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        assert main(["exporter", str(nowhere), "--listen", f"127.0.0.1:{port}"]) == \
            ExitCode.ENVIRONMENT
    assert "address already in use" in capsys.readouterr().err


def test_lab_dir_must_be_a_lab(nowhere: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["exporter", str(nowhere), "--lab-dir", str(tmp_path), "--once"]) == ExitCode.ENVIRONMENT
    assert "no lab PKI" in capsys.readouterr().err


def test_serves_until_sigterm(nowhere: Path, tmp_path: Path) -> None:
    listen = f"127.0.0.1:{_free_port()}"
    proc = subprocess.Popen([*CLI, "exporter", str(nowhere), "--listen", listen,
                             "--timeout", "0.2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        body = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not body:
            try:
                with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as resp:
                    body = resp.read()
            except OSError:
                time.sleep(0.2)
        assert b"zpctl_exporter_build_info" in body
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert b"exporter: stopped" in proc.stderr.read()  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
