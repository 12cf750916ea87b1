"""The job manager: long poll, ZMQ signal, polling fallback, stale jobs, refreshes."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import zmq
import zmq.asyncio

from multipool.chain.zmq_notify import HashblockListener
from multipool.stratum.jobs import Job, JobManager
from tests.support.fake_daemon import FakeTemplateDaemon


def manager(daemon, jobs: list[Job], **kwargs) -> JobManager:
    return JobManager(daemon=daemon, rules=("segwit",), payout_script=bytes(22),
                      extranonce_size=8, pool_tag=b"/t/", on_job=jobs.append, **kwargs)


async def wait_until(predicate, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(jm: JobManager):
    task = asyncio.create_task(jm.run())
    try:
        await asyncio.wait_for(jm.first_job.wait(), 3)
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_long_poll_brings_clean_job_and_retires_old_ones():
    daemon, jobs = FakeTemplateDaemon(), []
    jm = manager(daemon, jobs, refresh_interval=60)
    async with running(jm):
        first = jobs[-1]
        assert first.clean and jm.get(first.job_id) is first
        daemon.new_block()
        await wait_until(lambda: len(jobs) == 2)
        assert jobs[-1].clean and jobs[-1].template.height == first.template.height + 1
        assert jm.get(first.job_id) is None  # stale
        assert daemon.longpoll_calls >= 1


async def test_refresh_with_new_transactions_keeps_older_jobs_valid():
    daemon, jobs = FakeTemplateDaemon(), []
    jm = manager(daemon, jobs, refresh_interval=0.05)
    async with running(jm):
        first = jobs[-1]
        await asyncio.sleep(0.2)
        assert len(jobs) == 1  # same transactions: nothing new to send
        daemon.txs.append({"data": "00", "txid": "11" * 32})
        await wait_until(lambda: len(jobs) == 2)
        assert not jobs[-1].clean
        assert jm.get(first.job_id) is first


async def test_polling_fallback_when_daemon_has_no_long_poll():
    class NoLongPoll(FakeTemplateDaemon):
        def template(self):
            t = super().template()
            del t["longpollid"]
            return t

    daemon, jobs = NoLongPoll(), []
    jm = manager(daemon, jobs, refresh_interval=60, poll_interval=0.05)
    async with running(jm):
        daemon.new_block()
        await wait_until(lambda: len(jobs) == 2)
        assert jobs[-1].clean and daemon.longpoll_calls == 0


async def test_zmq_hashblock_triggers_refresh():
    daemon, jobs = FakeTemplateDaemon(), []
    jm = manager(daemon, jobs, refresh_interval=60)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    publisher = zmq.asyncio.Context.instance().socket(zmq.PUB)
    publisher.bind(endpoint)
    listener = HashblockListener(endpoint, lambda _h: jm.new_block_signal())
    listen = asyncio.create_task(listener.run())
    try:
        async with running(jm):
            daemon.new_block(wake_longpoll=False)  # only ZMQ can tell
            seq = 0
            async with asyncio.timeout(5):
                while len(jobs) < 2:
                    # Repeat: a SUB socket misses what is published before it joined.
                    await publisher.send_multipart([b"hashblock", bytes(32),
                                                    seq.to_bytes(4, "little")])
                    await publisher.send_multipart([b"hashblock", b"short"])
                    seq += 1
                    await asyncio.sleep(0.05)
            assert jobs[-1].clean
            assert jobs[-1].template.prev_hash_hex == daemon.prev
            assert listener.received >= 1
    finally:
        listen.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listen
        publisher.close(linger=0)


async def test_daemon_errors_are_retried_until_a_template_comes():
    class Flaky(FakeTemplateDaemon):
        failures = 2

        async def getblocktemplate(self, rules, longpollid=None):
            if self.failures:
                self.failures -= 1
                from multipool.chain.rpc import DaemonError
                raise DaemonError("Litecoin is not connected!", code=-9)
            return await super().getblocktemplate(rules, longpollid)

    daemon, jobs = Flaky(), []
    jm = manager(daemon, jobs)
    jm.RETRY_DELAYS = (0.01,)
    async with running(jm):
        assert len(jobs) == 1 and daemon.failures == 0


async def test_template_for_an_older_tip_is_never_published():
    daemon, jobs = FakeTemplateDaemon(), []
    jm = manager(daemon, jobs, refresh_interval=60)
    async with running(jm):
        old = daemon.template()
        daemon.new_block()
        await wait_until(lambda: len(jobs) == 2)
        newest = jobs[-1]

        # An answer for the previous tip arrives late (a request that raced the block).
        async def late(rules, longpollid=None):
            return old

        daemon.getblocktemplate = late  # type: ignore[method-assign]
        assert await jm.update() is False
        assert jm.current is newest and len(jobs) == 2


async def test_reorg_to_lower_height_is_followed_when_daemon_confirms():
    daemon, jobs = FakeTemplateDaemon(), []
    jm = manager(daemon, jobs, refresh_interval=60)
    async with running(jm):
        first = jobs[-1]
        daemon.prev = "ab" * 32  # invalidateblock: the tip moves to a different, lower block
        daemon.height -= 1
        assert await jm.update() is True
        assert jobs[-1].clean and jobs[-1].template.height == first.template.height - 1
