"""Supervised scrypt workers over real TCP: a worker killed with SIGKILL (or frozen with
SIGSTOP) never stops the pool answering shares, and a block is submitted even when its
miner or the ports are gone before its check returns."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import multiprocessing.spawn
import os
import signal
from dataclasses import replace

import pytest

from multipool.chain.pow import ALGORITHMS
from multipool.stratum.hashing import WorkerPool
from multipool.stratum.session import SessionLimits
from tests.support.stratum_client import RawClient
from tests.unit.test_stratum_server import GOOD, build_header, ready_client, start_pool

# Not a block (bits far above the shares' target), every share valid (difficulty 1e-6
# of scrypt's difficulty 1 is a target above 2^256).
NO_BLOCKS = "1d00ffff"


def submits(notify: list, first: int, count: int) -> bytes:
    """``count`` pipelined mining.submit lines with ids first.. and distinct nonces."""
    return b"".join(
        json.dumps({"id": first + i, "method": "mining.submit",
                    "params": [GOOD + ".rig1", notify[0], "00000000", notify[7],
                               f"{first + i:08x}"]}).encode() + b"\n"
        for i in range(count))


async def replies(client: RawClient, ids: range, timeout: float = 30.0) -> dict[int, dict]:
    """Read until every id in ``ids`` has its reply."""
    got: dict[int, dict] = {}
    async with asyncio.timeout(timeout):
        while len(got) < len(ids):
            message = await client.read(timeout)
            if message.get("id") in ids:
                got[message["id"]] = message
    return got


async def test_a_killed_worker_is_replaced_and_its_batch_checked_again(
        caplog: pytest.LogCaptureFixture):
    limits = replace(SessionLimits(), max_pending_checks=512, messages_per_second=1e6,
                     message_burst=1e6)
    started, task = await start_pool(algorithm="scrypt", bits=NO_BLOCKS, limits=limits)
    pool = started.server.hash_pool
    try:
        client, _, _, notify = await ready_client(started.port)
        before = {slot: worker.pid for slot, worker in pool.workers.items()}
        await client.send_line(submits(notify, 100, 2000))
        # Kill a worker while it holds a batch (a batch of hundreds of scrypt hashes
        # takes tens of milliseconds; the kill lands within microseconds of the send).
        with caplog.at_level(logging.WARNING, logger="multipool.stratum.hashing"):
            async with asyncio.timeout(10):
                while True:
                    busy = [w for w in pool.workers.values() if w.batch is not None]
                    if busy:
                        break
                    await asyncio.sleep(0)
            victim = busy[0]
            lost = len(victim.batch.headers)
            os.kill(victim.pid, signal.SIGKILL)
            first = await replies(client, range(100, 2100))
        assert all(reply["result"] is True for reply in first.values()), \
            [r for r in first.values() if r["result"] is not True][:3]
        # Replaced within seconds (the spawn of a Python takes a fraction of one).
        async with asyncio.timeout(5):
            while pool.counters.restarts < 1:
                await asyncio.sleep(0.01)
        assert pool.counters.deaths == 1 and pool.counters.restarts == 1
        assert pool.counters.rechecked == lost > 0
        assert pool.workers[victim.slot].pid != before[victim.slot]
        assert "died (killed by SIGKILL) with a batch of" in caplog.text
        assert f"share-check worker {victim.slot} replaced" in caplog.text
        # Shares keep flowing on the new worker.
        await client.send_line(submits(notify, 5000, 500))
        second = await replies(client, range(5000, 5500))
        assert all(reply["result"] is True for reply in second.values())
        assert started.sink.accepted == 2500
        await client.close()
    finally:
        task.cancel()
        await started.server.close()


async def test_shares_are_answered_in_a_thread_while_no_worker_can_start(
        caplog: pytest.LogCaptureFixture):
    """Every worker killed and the interpreter gone (an upgrade removed it): shares are
    still answered, in a thread; once the interpreter is back, workers return."""
    started, task = await start_pool(algorithm="scrypt", bits=NO_BLOCKS, hash_workers=1)
    pool = started.server.hash_pool
    spawn = multiprocessing.get_context("spawn")
    executable = multiprocessing.spawn.get_executable()
    try:
        client, _, _, notify = await ready_client(started.port)
        with caplog.at_level(logging.WARNING, logger="multipool.stratum.hashing"):
            spawn.set_executable("/nonexistent/python3")
            (worker,) = pool.workers.values()
            os.kill(worker.pid, signal.SIGKILL)
            async with asyncio.timeout(10):
                while pool.counters.start_failures < 1:
                    await asyncio.sleep(0.05)
            await client.send_line(submits(notify, 10, 50))
            answered = await replies(client, range(10, 60))
            assert all(reply["result"] is True for reply in answered.values())
            assert pool.counters.in_thread >= 50 and not pool.workers
            assert "cannot replace share-check worker 0" in caplog.text
            spawn.set_executable(executable)
            async with asyncio.timeout(30):
                while not pool.workers:
                    await asyncio.sleep(0.1)
        await client.send_line(submits(notify, 100, 20))
        assert all(r["result"] is True for r in (await replies(client, range(100, 120))).values())
        await client.close()
    finally:
        spawn.set_executable(executable)
        task.cancel()
        await started.server.close()


def block_solving_nonce(notify: list, extranonce1: str, extranonce2: str) -> tuple[str, int]:
    """A nonce whose scrypt hash meets regtest's block target (hashlib only)."""
    target = 0x7FFFFF << (8 * (0x20 - 3))
    for nonce in range(1000):
        header, _ = build_header(notify, extranonce1, extranonce2, notify[7], nonce)
        digest = hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)
        if int.from_bytes(digest, "little") <= target:
            return notify[7], nonce
    raise AssertionError("no block-solving nonce in 1000")


@pytest.mark.parametrize("gone", ["miner disconnected", "ports closed"])
async def test_a_block_is_submitted_even_after_its_session_closed(gone: str):
    """The share's check is held (its worker frozen with SIGSTOP) while the miner goes
    or the ports close; once the check returns, the block is still submitted and the
    share credited."""
    started, task = await start_pool(algorithm="scrypt", hash_workers=1)
    pool = started.server.hash_pool
    (worker,) = pool.workers.values()
    try:
        client, (_, en1, _), _, notify = await ready_client(started.port)
        ntime, nonce = block_solving_nonce(notify, en1, "0000abcd")
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            await client.send_line(json.dumps({
                "id": 7, "method": "mining.submit",
                "params": [GOOD + ".rig1", notify[0], "0000abcd", ntime,
                           f"{nonce:08x}"]}).encode() + b"\n")
            async with asyncio.timeout(5):
                while worker.batch is None:
                    await asyncio.sleep(0.01)
            if gone == "miner disconnected":
                await client.close()
            else:
                await started.server.stop_listening(disconnect="daemon behind: test")
            async with asyncio.timeout(5):
                while started.server.sessions:
                    await asyncio.sleep(0.01)
            assert started.daemon.submitted == []
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        async with asyncio.timeout(10):
            while not started.daemon.submitted:
                await asyncio.sleep(0.01)
        block, _ = started.daemon.submitted[0]
        expected, _ = build_header(notify, en1, "0000abcd", ntime, nonce)
        assert block[:80] == expected
        assert started.sink.accepted == 1
        assert started.sink.blocks and started.sink.blocks[0].accepted
    finally:
        task.cancel()
        await started.server.close()


async def test_pool_start_fails_clearly_when_workers_cannot_start():
    spawn = multiprocessing.get_context("spawn")
    executable = multiprocessing.spawn.get_executable()
    pool = WorkerPool(ALGORITHMS["scrypt"].pow_hash, 1)
    spawn.set_executable("/nonexistent/python3")
    try:
        with pytest.raises(Exception, match="interpreter /nonexistent/python3 does not exist"):
            await pool.start()
    finally:
        spawn.set_executable(executable)
        await pool.close()
