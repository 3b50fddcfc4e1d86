"""The lab reads its Kamailio logs for memory faults and crashed workers (what the
zpctl_lab fixture fails a test on), from where it last looked."""

from __future__ import annotations

from pathlib import Path

from zpctl.lab import Lab

DOUBLE_FREE = ("15(8111) CRITICAL: <core> [core/mem/q_malloc.c:519]: qm_free(): BUG: freeing "
               "already freed pointer (0x7f1c6b629708), called from tls: tls_init.c: ser_free(323)")
SEGV = " 0(7964) ALERT: <core> [main.c:774]: handle_sigs(): child process 8111 exited by a signal 11"
KILLED = " 0(7964) ALERT: <core> [main.c:774]: handle_sigs(): child process 8112 exited by a signal 9"
TERM = " 0(7964) ALERT: <core> [main.c:774]: handle_sigs(): child process 8113 exited by a signal 15"
QUIET = " 2(8065) NOTICE: <script>: failed authentication for 3002@initech (11) from 127.0.57.200"


def _log(lab_dir: Path, node: str, *lines: str) -> None:
    log = lab_dir / "nodes" / node / "log" / "kamailio.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as fh:
        fh.writelines(line + "\n" for line in lines)


def test_faults_are_named_by_node_and_only_new_ones_count(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    _log(tmp_path, "lab1-a-proxy", QUIET, DOUBLE_FREE)
    _log(tmp_path, "lab1-b-proxy", QUIET, KILLED, TERM)
    assert lab.kamailio_faults({}) == [f"lab1-a-proxy: {DOUBLE_FREE.strip()}"]
    sizes = lab.kamailio_log_sizes()
    assert sorted(sizes) == ["lab1-a-proxy", "lab1-b-proxy"]
    # Later: only what was written since counts, and a new log counts whole.
    _log(tmp_path, "lab1-a-proxy", QUIET)
    _log(tmp_path, "lab1-b-proxy", SEGV)
    _log(tmp_path, "lab1-a-sbc", DOUBLE_FREE)
    assert lab.kamailio_faults(sizes) == [f"lab1-a-sbc: {DOUBLE_FREE.strip()}",
                                          f"lab1-b-proxy: {SEGV.strip()}"]


def test_a_lab_without_logs_has_no_faults(tmp_path: Path) -> None:
    lab = Lab(tmp_path)
    assert lab.kamailio_log_sizes() == {}
    assert lab.kamailio_faults({}) == []
