"""The share writer's spool while the database cannot be opened (a real SQLite file whose
directory is moved away), replayed exactly once and in order. Batching and replay from a
committed offset run on all three databases in tests/databases."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from multipool.accounting.database import async_url, create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.rounds import RewardPolicy
from multipool.accounting.schema import blocks, shares
from multipool.accounting.tracker import BlockTracker
from multipool.accounting.writer import ShareWriter
from multipool.stratum.sink import BlockCandidate, BlockRecord, ShareRecord
from multipool.supervision import Periodic, Supervisor


def share(seq: int) -> ShareRecord:
    # The height field carries a sequence number so tests can check order.
    return ShareRecord(time=time.time(), address="addr", worker=f"w{seq % 3}",
                       ip="127.0.0.1", job_id="1", height=seq, difficulty=1.0,
                       share_difficulty=2.0, accepted=True)


async def make_engine(directory: Path):
    directory.mkdir(exist_ok=True)
    # NullPool: every transaction opens the file, so moving the directory makes the
    # database really unreachable (an open handle would keep working).
    engine = create_async_engine(async_url(f"sqlite:///{directory / 'pool.db'}"),
                                 poolclass=NullPool)
    await upgrade(engine)
    return engine


async def sequences(engine) -> list[int]:
    async with engine.connect() as connection:
        result = await connection.execute(select(shares.c.height).order_by(shares.c.id))
        return [row[0] for row in result]


async def test_database_away_spools_then_replays_exactly_once_in_order(tmp_path: Path):
    db_dir = tmp_path / "db"
    engine = await make_engine(db_dir)
    writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool", replay_chunk=7)
    for seq in range(10):
        writer.record_share(share(seq))
    await writer.flush()
    db_dir.rename(tmp_path / "away")  # the database goes away
    for seq in range(10, 50):
        writer.record_share(share(seq))
        if seq == 30:  # a block found while the database is away goes through the spool
            writer.record_block(BlockRecord(
                time=time.time(), height=900, hash_hex="ef" * 32, address="addr",
                worker="w0", reward=123, network_difficulty=1.0, accepted=True, result=None))
        if seq % 10 == 0:
            await writer.flush()
    await writer.flush()
    assert not writer.database_up and writer.spooled == 41
    assert len(writer.spool.files()) == 1
    (tmp_path / "away").rename(db_dir)  # and comes back
    for seq in range(50, 60):
        writer.record_share(share(seq))
    await writer.flush()
    assert writer.database_up
    assert await sequences(engine) == list(range(60))
    assert writer.spool.files() == []
    async with engine.connect() as connection:
        (found,) = (await connection.execute(select(blocks))).mappings().all()
        finder = (await connection.execute(select(shares.c.id).where(shares.c.height == 30))
                  ).scalar()
    assert (found["height"], found["reward"], found["last_share_id"]) == (900, 123, finder)
    await engine.dispose()


async def test_a_written_block_wakes_the_tracker_and_shares_alone_do_not(tmp_path: Path):
    engine = await make_engine(tmp_path / "db")
    woken: list[int] = []
    writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool",
                         on_block=lambda: woken.append(1))
    writer.record_share(share(1))
    await writer.flush()
    assert woken == []
    writer.record_share(share(2))
    writer.record_block(BlockRecord(
        time=time.time(), height=901, hash_hex="ab" * 32, address="addr", worker="w0",
        reward=1, network_difficulty=1.0, accepted=True, result=None))
    await writer.flush()
    assert woken == [1]
    await engine.dispose()


async def test_tracker_wake_checks_at_once(tmp_path: Path):
    engine = await make_engine(tmp_path / "db")

    class Chain:  # no daemon needed: no block is pending, only the tip is asked
        calls = 0

        async def getblockcount(self) -> int:
            Chain.calls += 1
            return 10

        async def getblockheader(self, hash_hex: str, verbose: bool = True):
            raise AssertionError("no block to look up")

    tracker = BlockTracker(engine=engine, daemon=Chain(),
                           policy=RewardPolicy(scheme="pplns", fee_percent=1.0))
    # The tracker runs as the engine runs it: a periodic service of the supervisor.
    supervisor = Supervisor()
    supervisor.add(Periodic("blocks", tracker.check, 3600, wake=tracker.wakeup))
    supervisor.start(on_fatal=lambda error: None)
    try:
        async with asyncio.timeout(5):
            while Chain.calls < 1:
                await asyncio.sleep(0.01)
            tracker.wake()
            while Chain.calls < 2:  # well before the hour-long interval
                await asyncio.sleep(0.01)
    finally:
        await supervisor.stop(5)
        await engine.dispose()
    assert Chain.calls == 2


async def test_sqlite_pool_database_syncs_every_commit(tmp_path: Path):
    """The pool database on SQLite is WAL with synchronous=FULL (2): a commit is on disk
    when it returns, so a power cut cannot undo a block candidate or a payment intent."""
    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("PRAGMA synchronous"))).scalar() == 2
            assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
    finally:
        await engine.dispose()


async def test_candidate_while_the_database_is_away_is_in_the_spool_before_submission(
        tmp_path: Path):
    db_dir = tmp_path / "db"
    engine = await make_engine(db_dir)
    writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool")
    writer.record_share(share(0))
    await writer.flush()
    db_dir.rename(tmp_path / "away")
    writer.record_share(share(1))
    found = dict(time=time.time(), height=900, hash_hex="ef" * 32, address="addr",
                 worker="w1", reward=123, network_difficulty=1.0)
    await writer.record_candidate(BlockCandidate(**found))
    # Durable now: the spool file holds the finder's share and the candidate after it.
    lines = [line for path in writer.spool.files() for line in path.read_text().splitlines()]
    assert '"kind":"candidate"' in lines[-1] and '"height":1,' in lines[-2]
    writer.record_block(BlockRecord(**found, accepted=True, result=None))
    (tmp_path / "away").rename(db_dir)
    await writer.flush()
    assert await sequences(engine) == [0, 1]
    async with engine.connect() as connection:
        (row,) = (await connection.execute(select(blocks))).mappings().all()
        finder = (await connection.execute(
            select(shares.c.id).where(shares.c.height == 1))).scalar()
    assert (row["status"], row["last_share_id"]) == ("pending", finder)
    await engine.dispose()
