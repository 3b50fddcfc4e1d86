"""Record what a real FreeSWITCH says over ESL, as test fixtures (tests/unit/fixtures/esl/).

The unit tests of zpctl's ESL parsing (``show ... as json``, ``status``, ``fsctl
pause_check``, HEARTBEAT and CHANNEL_* events) read these transcripts instead of formats
written from memory.  How it works: against a running lab (``zpctl lab up``), one plain
socket speaks the wire protocol by hand (greeting, auth, ``event plain ...``) and keeps
every byte it receives while the lab's phones place, hold and hang up a call; a second
connection (zpctl's client) asks the api commands at known moments and keeps their
replies.  The files are the switch's own bytes, only the ESL password is never in them
(the client's ``auth`` line is not recorded; the switch does not echo it).

Run again after a FreeSWITCH upgrade::

    .venv/bin/zpctl lab up --lab-dir /tmp/lab
    .venv/bin/python -m tests.esl_capture /tmp/lab
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from pathlib import Path

from zpctl.clients.esl import EslConnection
from zpctl.freeswitch.control import targets_for
from zpctl.lab import Lab
from zpctl.lab.features import FeatureLab
from zpctl.secrets import ESL_PASSWORD_KEY

OUT = Path(__file__).resolve().parent / "unit" / "fixtures" / "esl"
EVENTS = ("HEARTBEAT CHANNEL_CREATE CHANNEL_ANSWER CHANNEL_BRIDGE CHANNEL_UNBRIDGE "
          "CHANNEL_HOLD CHANNEL_UNHOLD CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_CALLSTATE")
SWITCH = "lab1-a-switch1"


class Recorder:
    """A raw ESL connection subscribed to :data:`EVENTS`; every byte it receives is kept."""

    def __init__(self, host: str, port: int, password: str, events: str = EVENTS) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.data = bytearray()
        self._expect(b"auth/request")
        self.sock.sendall(f"auth {password}\n\n".encode())
        self._expect(b"+OK accepted")
        self.data.clear()  # the stream from here on: no auth in the file
        self.sock.sendall(f"event plain {events}\n\n".encode())
        self.sock.settimeout(0.2)
        self._running = True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _expect(self, marker: bytes) -> None:
        while marker not in self.data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the switch closed the connection")
            self.data += chunk

    def _loop(self) -> None:
        while self._running:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            self.data += chunk

    def stop(self) -> bytes:
        self._running = False
        self._thread.join(2)
        self.sock.close()
        return bytes(self.data)


async def api(conn: EslConnection, command: str) -> str:
    return await conn.api(command, check=False)


def main(lab_dir: str) -> None:
    fl = FeatureLab(Lab(Path(lab_dir)))
    password = fl.secrets.get(ESL_PASSWORD_KEY)
    target = next(t for t in targets_for(fl.inv) if t.name == SWITCH)
    others = [t.name for t in targets_for(fl.inv) if t.name != SWITCH]
    OUT.mkdir(parents=True, exist_ok=True)
    replies: dict[str, str] = {}

    async def ask(name: str, command: str) -> None:
        async with EslConnection(target.host, target.port, password, name=target.name) as c:
            replies[name] = await api(c, command)

    for name in others:  # the call lands on SWITCH: the others take no new calls meanwhile
        fl.switch_api("fsctl pause inbound", switch=name)
    rec = Recorder(target.host, target.port, password)
    try:
        asyncio.run(ask("status-idle", "status"))
        asyncio.run(ask("show-calls-idle", "show calls as json"))
        asyncio.run(ask("pause-check-false", "fsctl pause_check inbound"))
        asyncio.run(ask("sofia-status", "sofia status"))
        with fl.phone("1002@acme") as bob, fl.phone("1001@acme") as alice:
            call = alice.dial("1002")
            assert call.established, call.call
            time.sleep(1.0)
            asyncio.run(ask("status-call", "status"))
            asyncio.run(ask("show-calls-call", "show calls as json"))
            asyncio.run(ask("show-channels-call", "show channels as json"))
            asyncio.run(ask("show-channels-count", "show channels count"))
            asyncio.run(ask("sofia-status-call", "sofia status"))
            rows = replies["show-calls-call"]
            uuid = rows.split('"uuid":"', 1)[1].split('"', 1)[0]
            asyncio.run(ask("uuid-hold", f"uuid_hold {uuid}"))
            time.sleep(1.0)
            asyncio.run(ask("uuid-hold-off", f"uuid_hold off {uuid}"))
            time.sleep(0.5)
            asyncio.run(ask("uuid-kill-unknown", "uuid_kill 00000000-0000-0000-0000-000000000000"))
            call.bye()
            del bob
        time.sleep(21)  # one HEARTBEAT (every 20 s) after the call
        asyncio.run(ask("pause", "fsctl pause inbound"))
        asyncio.run(ask("pause-check-true", "fsctl pause_check inbound"))
        asyncio.run(ask("resume", "fsctl resume inbound"))
    finally:
        stream = rec.stop()
        for name in others:
            fl.switch_api("fsctl resume inbound", switch=name)
    (OUT / "events-call.esl").write_bytes(stream)
    for name, text in replies.items():
        (OUT / f"api-{name}.txt").write_text(text)
    print(f"{len(stream)} bytes of events, {len(replies)} api replies in {OUT}")


if __name__ == "__main__":
    main(sys.argv[1])
