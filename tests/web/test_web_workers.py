"""`multipool web serve --workers N`: several processes on one port, a dead one replaced,
one stop signal stopping them all, and a worker that keeps dying failing the service."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from multipool.devnet import free_port
from multipool.web.workers import MAX_DEATHS, auto_workers
from tests.support.live_pool import get
from tests.web.serving import serve_command
from tests.web.test_web import status_doc, write_status


def children(pid: int) -> set[int]:
    """The processes ``pid`` forked and that still run (Linux's /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 20.0,
             what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def answers(url: str) -> bool:
    try:
        return get(url, timeout=2)[0] == 200
    except OSError:
        return False


def test_auto_workers_is_one_per_core_up_to_four():
    assert [auto_workers(n) for n in (1, 2, 3, 4, 8)] == [1, 2, 3, 4, 4]


def test_workers_share_the_port_a_dead_one_is_replaced_and_sigterm_stops_all(
        tmp_path: Path):
    write_status(tmp_path, "ltc", status_doc("ltc"))
    port, metrics_port = free_port(), free_port()
    base, metrics = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics"
    with serve_command(tmp_path, "--listen", f"127.0.0.1:{port}", "--metrics-listen",
                       f"127.0.0.1:{metrics_port}", "--workers", "3") as process:
        wait_for(lambda: len(children(process.pid)) == 3, what="three workers")
        first = children(process.pid)
        wait_for(lambda: answers(f"{base}/healthz") and answers(metrics),
                 what="the pages and /metrics")
        # Each worker accepts on the shared socket: each holds it open.
        inode = os.stat(f"/proc/{process.pid}/fd/{_listening_fd(process.pid, port)}").st_ino
        for child in first:
            assert inode in _socket_inodes(child), f"worker {child} lacks the socket"

        # Every worker killed, the one serving /metrics among them: each is replaced,
        # and the pages and /metrics answer again.
        for victim in sorted(first):
            os.kill(victim, signal.SIGKILL)
        wait_for(lambda: len(children(process.pid)) == 3
                 and not children(process.pid) & first, what="three new workers")
        assert process.poll() is None
        wait_for(lambda: answers(f"{base}/ltc/") or answers(f"{base}/healthz"),
                 what="the pages after the restart")
        wait_for(lambda: answers(metrics), what="/metrics after the restart")
        last = children(process.pid)

        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    for pid in last:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"worker {pid} still runs"
    assert "3 web workers started" in stderr
    assert stderr.count("was killed by SIGKILL; starting another") == 3, stderr
    assert stderr.rstrip().endswith("multipool.web: stopped"), stderr
    assert "Traceback" not in stderr


def test_workers_that_keep_dying_stop_the_service_with_status_1(tmp_path: Path):
    script = textwrap.dedent("""
        import logging, sys
        from multipool.web import workers
        workers.RESTART_DELAY = 0.05
        logging.basicConfig(level=logging.INFO)
        sys.exit(workers.run_workers(2, lambda number: 3, logging.getLogger("w")))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("exited with status 3; starting another") == MAX_DEATHS + 1
    assert f"web workers died {MAX_DEATHS + 1} times in a minute" in result.stderr


def _listening_fd(pid: int, port: int) -> str:
    """The fd of ``pid`` that is the socket listening on ``port``."""
    wanted = f":{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(wanted) and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    for fd in os.listdir(f"/proc/{pid}/fd"):
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return fd
    pytest.fail(f"process {pid} holds no socket listening on {port}")


def _socket_inodes(pid: int) -> set[int]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            found.add(int(target[8:-1]))
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True
