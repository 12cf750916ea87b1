"""Starting and stopping what the functional tests run beside the pool: a test miner on a
stratum port, and `multipool run` stopped the way an operator stops it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator

import pytest

from multipool.miner import StratumMiner


@contextlib.asynccontextmanager
async def scrypt_miner(port: int, username: str) -> AsyncIterator[StratumMiner]:
    """A scrypt test miner on 127.0.0.1:``port`` for the block of the ``async with``; it
    must stop within 30 s of the block's end."""
    miner = StratumMiner(host="127.0.0.1", port=port, username=username, algorithm="scrypt")
    task = asyncio.create_task(miner.run())
    try:
        yield miner
    finally:
        miner.stop()
        task.cancel()
        _, running = await asyncio.wait({task}, timeout=30)
        assert not running, "the miner did not stop within 30 s"


def stop_run(runner: subprocess.Popen[str], timeout: float = 120) -> str:
    """SIGTERM a `multipool run` (started with stderr piped); fail the test if it does not
    stop within ``timeout`` seconds. Return its standard error."""
    runner.send_signal(signal.SIGTERM)
    try:
        _, stderr = runner.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        runner.kill()
        _, stderr = runner.communicate()
        pytest.fail(f"multipool run did not stop on SIGTERM:\n{stderr[-3000:]}")
    return stderr
