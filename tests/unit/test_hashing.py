"""Share-check worker processes do not outlive their engine, even one killed with -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

CHILD = """
import asyncio, sys
from multipool.chain.pow import ALGORITHMS
from multipool.stratum.hashing import WorkerPool

async def main():
    pool = WorkerPool(ALGORITHMS["scrypt"].pow_hash, 2)
    await pool.start()
    print(" ".join(str(w.pid) for w in pool.workers.values()), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead but not yet reaped by its (new) parent.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_when_the_engine_is_killed():
    engine = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert engine.stdout is not None
        workers = [int(pid) for pid in engine.stdout.readline().split()]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
        engine.send_signal(signal.SIGKILL)
        engine.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in workers), "workers outlived the killed engine"
    finally:
        if engine.poll() is None:
            engine.kill()
