"""The share writer when the database hangs, refuses rows or the writer is stopped with a
batch in flight, and block candidates made durable before submission, on SQLite,
PostgreSQL and MariaDB (real servers).

A hanging database is a real lock held by another session: a second connection holds
the writer's marker row (PostgreSQL, MariaDB: SELECT ... FOR UPDATE) or the database's
write lock (SQLite: BEGIN IMMEDIATE), so the writer's transaction waits as it would
behind a long migration or a stuck server. Refused rows are real constraint errors (a
NULL address). The one mock is the bug that kills a writer (write_rows patched to
raise), since no real fault raises anything but database errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting import writer as writer_module
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import blocks, shares, spool_progress
from multipool.accounting.writer import ShareWriter
from multipool.stratum.sink import BlockCandidate, BlockRecord, ShareRecord
from multipool.testdb import PostgresServer, find_pg_bin
from tests.support.requirements import missing
from tests.unit.test_share_writer import sequences, share

TIMEOUT = 0.5  # the writer's insert timeout in these tests


def candidate(height: int = 500, hash_hex: str = "ab" * 32) -> BlockCandidate:
    return BlockCandidate(time=time.time(), height=height, hash_hex=hash_hex,
                          address="finder", worker="rig", reward=5_000_000_000,
                          network_difficulty=0.5)


def verdict(accepted: bool, height: int = 500, hash_hex: str = "ab" * 32) -> BlockRecord:
    return BlockRecord(time=time.time(), height=height, hash_hex=hash_hex, address="finder",
                       worker="rig", reward=5_000_000_000, network_difficulty=0.5,
                       accepted=accepted, result=None if accepted else "bad-cb-amount")


async def block_rows(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as connection:
        return [dict(row) for row in (await connection.execute(
            select(blocks).order_by(blocks.c.id))).mappings()]


async def share_id(engine: AsyncEngine, seq: int) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(
            select(shares.c.id).where(shares.c.height == seq))).scalar_one()


def spool_lines(writer: ShareWriter) -> list[dict[str, Any]]:
    return [json.loads(line) for path in writer.spool.files()
            for line in path.read_text().splitlines()]


class Hold:
    """Another session that holds the lock the writer's next transaction needs."""

    def __init__(self, url: str, engine: AsyncEngine, marker: str):
        self.url, self.engine, self.marker = url, engine, marker
        self._sqlite: sqlite3.Connection | None = None
        self._other: AsyncEngine | None = None
        self._connection: Any = None

    async def take(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self._sqlite = sqlite3.connect(make_url(self.url).database, isolation_level=None)
            self._sqlite.execute("BEGIN IMMEDIATE")
            return
        self._other = create_engine(self.url)
        self._connection = await self._other.connect()
        await self._connection.begin()
        await self._connection.execute(
            select(spool_progress).where(spool_progress.c.file == self.marker)
            .with_for_update())

    async def release(self) -> None:
        if self._sqlite is not None:
            self._sqlite.execute("ROLLBACK")
            self._sqlite.close()
            self._sqlite = None
        if self._connection is not None:
            await self._connection.rollback()
            await self._connection.close()
            self._connection = None
        if self._other is not None:
            await self._other.dispose()
            self._other = None


@pytest.fixture
async def writer_for(engine: AsyncEngine, database_url: str, tmp_path: Path
                     ) -> AsyncIterator[Any]:
    holds: list[Hold] = []

    async def make(**options: Any) -> tuple[ShareWriter, Hold]:
        writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool",
                             insert_timeout=TIMEOUT, **options)
        writer.record_share(share(-1))  # creates the writer's marker row
        await writer.flush()
        hold = Hold(database_url, engine, writer.marker)
        holds.append(hold)
        return writer, hold

    yield make
    for hold in holds:
        await hold.release()


async def test_candidate_is_in_the_database_when_record_candidate_returns(
        engine: AsyncEngine, tmp_path: Path):
    writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool")
    for seq in range(5):
        writer.record_share(share(seq))
    await writer.record_candidate(candidate())
    # No flush: the candidate and the shares before it are stored already.
    (row,) = await block_rows(engine)
    assert row["status"] == "candidate"
    assert row["last_share_id"] == await share_id(engine, 4)  # its finder's share
    assert await sequences(engine) == list(range(5))
    writer.record_share(share(5))  # a share after the block ends no round
    writer.record_block(verdict(accepted=True))
    await writer.flush()
    (row,) = await block_rows(engine)
    assert (row["status"], row["last_share_id"]) == ("pending", await share_id(engine, 4))
    # A refused candidate is dropped; its share stays.
    await writer.record_candidate(candidate(501, "cd" * 32))
    assert [r["status"] for r in await block_rows(engine)] == ["pending", "candidate"]
    writer.record_block(verdict(False, 501, "cd" * 32))
    await writer.flush()
    assert [r["hash"] for r in await block_rows(engine)] == ["ab" * 32]
    assert await sequences(engine) == list(range(6))


async def test_hanging_database_times_out_to_the_spool_then_replays_once_in_order(
        engine: AsyncEngine, writer_for):
    writer, hold = await writer_for()
    for seq in range(10):
        writer.record_share(share(seq))
    await writer.flush()
    await hold.take()
    for seq in range(10, 20):
        writer.record_share(share(seq))
    began = time.monotonic()
    await writer.flush()
    waited = time.monotonic() - began
    # The batch went to the spool after the deadline, in doubt (its commit is unknown).
    assert TIMEOUT <= waited < TIMEOUT + 3, waited
    assert writer.timeouts >= 1 and not writer.database_up
    lines = spool_lines(writer)
    assert lines[0]["kind"] == "in_doubt" and lines[0]["rows"] == 10
    assert [line["height"] for line in lines[1:]] == list(range(10, 20))
    # A candidate found now is durable at once: the spool, behind the shares.
    writer.record_share(share(20))
    began = time.monotonic()
    await writer.record_candidate(candidate())
    assert time.monotonic() - began < TIMEOUT + 2
    assert spool_lines(writer)[-1]["kind"] == "candidate"
    writer.record_block(verdict(accepted=True))
    await hold.release()
    for seq in range(21, 25):
        writer.record_share(share(seq))
    async with asyncio.timeout(30):
        while writer.spool.files() or writer.buffer:
            await writer.flush()
            await asyncio.sleep(0.05)
    assert await sequences(engine) == list(range(-1, 25))
    (row,) = await block_rows(engine)
    assert (row["status"], row["last_share_id"]) == ("pending", await share_id(engine, 20))
    assert writer.skipped == 0 and writer.replayed == writer.spooled


async def test_overflow_while_a_batch_is_in_flight_keeps_order(
        engine: AsyncEngine, writer_for):
    """The buffer overflows while a batch waits on the database; the batch then fails
    (lock held past the deadline) or commits (lock released in time): either way every
    share is stored once, in the order recorded."""
    writer, hold = await writer_for(max_buffer=50)
    for commits in (False, True):
        start = (await sequences(engine))[-1] + 1
        skipped, spooled = writer.skipped, writer.spooled
        await hold.take()
        for seq in range(start, start + 20):
            writer.record_share(share(seq))
        flush = asyncio.create_task(writer.flush())
        await asyncio.sleep(0.1)  # the batch is in flight, waiting on the lock
        for seq in range(start + 20, start + 75):  # 55 more: the buffer overflows
            writer.record_share(share(seq))
        assert writer.spooled - spooled == 20 + 50  # the batch in flight, then the buffer
        if commits:
            await hold.release()
        await flush
        await hold.release()
        async with asyncio.timeout(30):
            while writer.spool.files() or writer.buffer:
                await writer.flush()
                await asyncio.sleep(0.05)
        assert await sequences(engine) == list(range(-1, start + 75)), commits
        # Committed after all, the batch's spooled copy was skipped at replay.
        assert writer.skipped - skipped == (20 if commits else 0)


async def test_shutdown_spools_the_batch_in_flight_and_the_buffer(
        engine: AsyncEngine, writer_for, tmp_path: Path):
    writer, hold = await writer_for(flush_interval=0.05)
    writer.insert_timeout = 30.0  # the database hangs longer than the shutdown waits
    writer.SHUTDOWN_FLUSH_TIMEOUT = 0.5
    run = asyncio.create_task(writer.run())
    await hold.take()
    for seq in range(40):
        writer.record_share(share(seq))
    await asyncio.sleep(0.2)  # a batch is in flight, stuck
    for seq in range(40, 60):
        writer.record_share(share(seq))
    run.cancel()
    began = time.monotonic()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    assert time.monotonic() - began < 5
    rows = [line for line in spool_lines(writer) if line.get("kind") is None]
    assert [row["height"] for row in rows] == list(range(60))
    writer.record_share(share(60))  # recorded after the stop: spooled too
    await asyncio.sleep(0.05)
    assert spool_lines(writer)[-1]["height"] == 60
    await hold.release()
    # The flush that was stuck goes on once the lock is free (in a real shutdown the
    # process ends first); its batch is in the spool in doubt either way.
    stuck = [task for task in asyncio.all_tasks()
             if task.get_coro().__qualname__ == "ShareWriter.flush"]  # type: ignore[union-attr]
    await asyncio.wait_for(asyncio.gather(*stuck), 30)
    # The next engine's writer replays all of it, once.
    later = ShareWriter(engine=engine, spool_dir=tmp_path / "spool", insert_timeout=TIMEOUT)
    async with asyncio.timeout(30):
        while later.spool.files():
            await later.flush()
            await asyncio.sleep(0.05)
    assert await sequences(engine) == list(range(-1, 61))


async def test_refused_rows_are_quarantined_and_the_rest_flow(
        engine: AsyncEngine, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool", insert_timeout=5.0)
    bad = ShareRecord(time=time.time(), address=None, worker="rig",  # type: ignore[arg-type]
                      ip="127.0.0.1", job_id="1", height=7_000, difficulty=1.0,
                      share_difficulty=1.0, accepted=True)
    with caplog.at_level(logging.ERROR):
        for seq in range(100):
            writer.record_share(share(seq))
            if seq == 37:
                writer.record_share(bad)
        await writer.flush()
    assert await sequences(engine) == list(range(100))
    assert writer.database_up and writer.spooled == 0 and writer.quarantined == 1
    (entry,) = [json.loads(line) for line in writer.quarantine.path.read_text().splitlines()]
    assert entry["row"]["height"] == 7_000 and entry["row"]["address"] is None
    assert "refused 1 row" in caplog.text
    assert writer.quarantine.path.parent == tmp_path  # beside the spool directory


async def test_refused_row_in_the_spool_is_quarantined_at_replay(
        engine: AsyncEngine, tmp_path: Path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    good = [{"time": time.time(), "height": seq, "address": "a", "worker": "w",
             "ip": "127.0.0.1", "difficulty": 1.0, "share_difficulty": 1.0,
             "accepted": True, "reject_code": None} for seq in range(30)]
    bad = {**good[0], "height": 9_999, "address": None}
    lines = [*good[:11], bad, *good[11:]]
    (spool_dir / "00000000000000000001-deadbeef.jsonl").write_text(
        "".join(json.dumps(row) + "\n" for row in lines))
    writer = ShareWriter(engine=engine, spool_dir=spool_dir, replay_chunk=8)
    await writer.flush()
    assert await sequences(engine) == list(range(30))
    assert writer.spool.files() == [] and writer.quarantined == 1
    (entry,) = [json.loads(line) for line in writer.quarantine.path.read_text().splitlines()]
    assert entry["row"]["height"] == 9_999


async def test_a_writer_that_dies_has_spooled_its_buffer(
        engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool", flush_interval=0.05)
    for seq in range(10):
        writer.record_share(share(seq))
    await writer.flush()

    async def broken(connection: Any, rows: list[dict[str, Any]]) -> None:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(writer_module, "write_rows", broken)
    run = asyncio.create_task(writer.run())
    for seq in range(10, 30):
        writer.record_share(share(seq))
    with pytest.raises(RuntimeError, match="a bug"):
        async with asyncio.timeout(10):
            await run
    assert [line["height"] for line in spool_lines(writer) if "height" in line] \
        == list(range(10, 30))
    monkeypatch.undo()
    later = ShareWriter(engine=engine, spool_dir=tmp_path / "spool")
    await later.flush()
    assert await sequences(engine) == list(range(30))
    async with engine.connect() as connection:
        assert (await connection.execute(
            select(func.count()).select_from(shares))).scalar() == 30


async def test_commit_that_timed_out_but_landed_is_not_written_twice(tmp_path: Path):
    """The in-doubt case for real: PostgreSQL waiting for a synchronous standby that
    never answers holds COMMIT after writing it locally, so the writer's deadline passes
    on a transaction that does commit once the wait ends. Replay reads the writer's
    marker under its lock and skips the batch: every share once. Its own server, since
    the standby setting is server-wide."""
    if find_pg_bin() is None:
        missing("PostgreSQL")
    with PostgresServer() as pg:
        engine = create_engine(pg.create_database("pool"))
        await upgrade(engine)
        writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool",
                             insert_timeout=TIMEOUT)
        try:
            for seq in range(10):
                writer.record_share(share(seq))
            await writer.flush()
            pg.psql("ALTER DATABASE pool SET synchronous_commit = on")
            pg.psql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
            pg.psql("SELECT pg_reload_conf()")
            await engine.dispose()  # new sessions take the database's setting
            for seq in range(10, 20):
                writer.record_share(share(seq))
            await writer.flush()
            assert writer.timeouts >= 1 and writer.written == 10
            lines = spool_lines(writer)
            assert lines[0]["kind"] == "in_doubt" and lines[0]["rows"] == 10
            pg.psql("ALTER SYSTEM RESET synchronous_standby_names")
            pg.psql("SELECT pg_reload_conf()")
            async with asyncio.timeout(30):
                while writer.spool.files():
                    await writer.flush()
                    await asyncio.sleep(0.1)
            assert await sequences(engine) == list(range(20))
            assert writer.skipped == 10 and writer.replayed == 10
        finally:
            await engine.dispose()
