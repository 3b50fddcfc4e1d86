"""ESL event parsing: zpctl's sans-IO codec against genesis, on the same recorded stream.

Two steps, because they need different environments:

  .venv/bin/python benchmarks/bench_esl.py record [--calls 2000] [--out FILE]
      Records the raw bytes an ESL client receives after `event plain ALL` from the
      scripted ESL peer (tests/esl_peer.py) replaying one real call's events (recorded
      from the lab's FreeSWITCH: tests/unit/fixtures/esl/events-call.esl) once per call
      with new uuids, plus its HEARTBEAT every 10 calls.  Offline and repeatable; the
      events are a real switch's, their mix is that one call's.

  .venv/bin/python benchmarks/bench_esl.py record-real --lab-dir DIR [--seconds 30] [--rate 20]
      Records `event plain ALL` from every switch of a running lab's first data center
      (real FreeSWITCH) while a steady SIPp call load runs through the lab.

  python benchmarks/bench_esl.py run [--stream FILE] [--repeat 5]
      Parses the stream with zpctl.protocols.esl (FrameParser + decode_frame, fed 64 KiB
      reads as a socket would give them) and, when it can be imported, with genesis
      (`pip install '.[bench]'`: its ESLReaderFSM driven line by line exactly as its
      asyncio reader does, minus the event loop).  Both sides parse every frame into
      header dictionaries; the best of --repeat runs is reported.  Needs only the standard
      library plus zpctl (and genesis for the comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_STREAM = REPO / "build" / "bench" / "esl-events-plain.bin"
REAL_STREAM = REPO / "build" / "bench" / "esl-events-real.bin"


async def _record(calls: int, out: Path) -> tuple[int, int]:
    # test tools; they need zpctl's deps
    from tests.esl_peer import EslPeer, recorded_events  # noqa: PLC0415

    call = recorded_events()
    heartbeat = next(e for e in call if e.name == "HEARTBEAT")
    call = [e for e in call if e.name != "HEARTBEAT"]
    legs = sorted({e.unique_id for e in call if e.unique_id})
    received = bytearray()
    async with EslPeer("ClueCon", hostname="bench-switch") as sw:
        reader, writer = await asyncio.open_connection(sw.host, sw.port)
        await reader.readuntil(b"\n\n")
        writer.write(b"auth ClueCon\n\n")
        await reader.readuntil(b"\n\n")
        writer.write(b"event plain ALL\n\n")
        await writer.drain()
        await reader.readuntil(b"\n\n")
        for i in range(calls):
            new = {old: f"{i:08x}-{n:04x}-4000-8000-{i:012x}" for n, old in enumerate(legs)}
            for ev in call:
                hdrs = []
                for k, value in ev.headers:
                    text = value
                    for old, fresh in new.items():
                        text = text.replace(old, fresh)
                    hdrs.append((k, text))
                sw.fire(ev.name, headers=hdrs, body=ev.body)
            if i % 10 == 0:
                sw.replay(heartbeat)
            while True:
                try:
                    chunk = await asyncio.wait_for(reader.read(1 << 20), 0.01)
                except TimeoutError:
                    break
                received += chunk
        writer.write(b"exit\n\n")
        await writer.drain()
        received += await reader.read()
    # Keep only the events: drop the trailing exit reply and disconnect notice.
    cut = received.rfind(b"Content-Type: command/reply\nReply-Text: +OK bye")
    data = bytes(received[:cut])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    return len(data), data.count(b"Content-Type: text/event-plain")


def _record_real(lab_dir: Path, seconds: float, rate: float, out: Path) -> tuple[int, int]:
    """`event plain ALL` from every switch of the running lab's first data center while a
    steady SIPp call load runs through it; the streams (events only) one after the other."""
    import tempfile  # noqa: PLC0415

    from tests.esl_capture import Recorder  # noqa: PLC0415 - a test tool
    from zpctl.freeswitch.control import targets_for  # noqa: PLC0415
    from zpctl.lab import Lab  # noqa: PLC0415
    from zpctl.loadtest.steady import SteadyLoad  # noqa: PLC0415
    from zpctl.secrets import ESL_PASSWORD_KEY  # noqa: PLC0415

    lab = Lab(lab_dir)
    inv = lab.inventory()
    password = lab.secrets().get(ESL_PASSWORD_KEY)
    dc = inv.model.datacenters[0].id
    recorders = [Recorder(t.host, t.port, password, events="ALL") for t in targets_for(inv)
                 if inv.node(t.name).dc.id == dc]
    with tempfile.TemporaryDirectory() as work:
        load = SteadyLoad(lab, Path(work), call_rate=rate, duration_s=seconds).start()
        result = load.finish()
    data = b""
    for rec in recorders:
        raw = rec.stop()
        first = raw.find(b"Content-Type: text/event-plain")
        start = raw.rfind(b"\n\n", 0, first) + 2 if first > 0 else len(raw)
        data += raw[start:]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"load: {result['calls']['succeeded']}/{result['calls']['attempted']} calls")
    return len(data), data.count(b"Content-Type: text/event-plain")


def _zpctl(data: bytes) -> int:
    from zpctl.protocols import esl  # noqa: PLC0415

    parser = esl.FrameParser()
    n = 0
    for i in range(0, len(data), 65536):
        parser.receive_data(data[i:i + 65536])
        while isinstance(frame := parser.next_frame(), esl.Frame):
            ev = esl.decode_frame(frame)
            assert isinstance(ev, esl.Event)
            n += 1
    return n


def _genesis(data: bytes) -> int:
    from genesis.protocol.reader_fsm import ESLReaderFSM  # noqa: PLC0415

    stream = io.BytesIO(data)
    fsm = ESLReaderFSM()
    n = 0
    while True:
        buffer = ""
        while True:  # genesis: readline() until the block ends with a blank line
            line = stream.readline()
            if not line:
                return n
            buffer += line.decode("utf-8")
            if buffer.endswith(("\n\n", "\r\n\r\n")):
                break
        events, length = fsm.process_headers(buffer)
        if length > 0:
            events = fsm.process_body(stream.read(length))
        n += len(events)


def _time(fn: Callable[[bytes], int], data: bytes, repeat: int) -> tuple[float, int]:
    best, count = float("inf"), 0
    for _ in range(repeat):
        t = time.perf_counter()
        count = fn(data)
        best = min(best, time.perf_counter() - t)
    return best, count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("--calls", type=int, default=2000)
    rec.add_argument("--out", type=Path, default=DEFAULT_STREAM)
    real = sub.add_parser("record-real")
    real.add_argument("--lab-dir", type=Path, required=True)
    real.add_argument("--seconds", type=float, default=30.0)
    real.add_argument("--rate", type=float, default=20.0)
    real.add_argument("--out", type=Path, default=REAL_STREAM)
    runp = sub.add_parser("run")
    runp.add_argument("--stream", type=Path, default=DEFAULT_STREAM)
    runp.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    if args.cmd in ("record", "record-real"):
        size, events = (asyncio.run(_record(args.calls, args.out)) if args.cmd == "record"
                        else _record_real(args.lab_dir, args.seconds, args.rate, args.out))
        print(f"recorded {events} events, {size / 1e6:.2f} MB into {args.out}")
        return 0
    data = args.stream.read_bytes()
    print(f"stream: {args.stream} ({len(data) / 1e6:.2f} MB); Python {platform.python_version()} "
          f"on {platform.machine()}")
    rows = []
    secs, n = _time(_zpctl, data, args.repeat)
    rows.append(("zpctl.protocols.esl", n, secs))
    try:
        import genesis  # noqa: F401, PLC0415
    except ImportError:
        print("genesis not importable (pip install '.[bench]'): zpctl only")
    else:
        secs, n = _time(_genesis, data, args.repeat)
        rows.append(("genesis " + _version("genesis"), n, secs))
    print(f"{'parser':28} {'events':>8} {'seconds':>9} {'events/s':>10} {'MB/s':>7}")
    for name, n, secs in rows:
        print(f"{name:28} {n:8d} {secs:9.3f} {n / secs:10.0f} {len(data) / 1e6 / secs:7.1f}")
    return 0


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


if __name__ == "__main__":
    raise SystemExit(main())
