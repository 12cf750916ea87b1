"""The batched share writer on a real SQLite database: batching, order, and the spool
while the database cannot be opened (its directory moved away), replayed exactly once."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from multipool.accounting.database import async_url
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import shares, spool_progress
from multipool.accounting.writer import ShareWriter
from multipool.stratum.sink import ShareRecord


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


async def test_batches_are_written_in_arrival_order(tmp_path: Path):
    engine = await make_engine(tmp_path / "db")
    writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool", batch_size=500)
    for seq in range(1200):
        writer.record_share(share(seq))
    await writer.flush()
    assert await sequences(engine) == list(range(1200))
    assert writer.written == 1200 and writer.spooled == 0
    await engine.dispose()


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
        if seq % 10 == 0:
            await writer.flush()
    await writer.flush()
    assert not writer.database_up and writer.spooled == 40
    assert len(writer.spool.files()) == 1
    (tmp_path / "away").rename(db_dir)  # and comes back
    for seq in range(50, 60):
        writer.record_share(share(seq))
    await writer.flush()
    assert writer.database_up
    assert await sequences(engine) == list(range(60))
    assert writer.spool.files() == []
    await engine.dispose()


async def test_replay_resumes_from_committed_offset_and_drops_torn_tail(tmp_path: Path):
    engine = await make_engine(tmp_path / "db")
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    rows = [{"time": time.time(), "height": seq, "address": "a", "worker": "w",
             "ip": "127.0.0.1", "difficulty": 1.0, "share_difficulty": 1.0,
             "accepted": True, "reject_code": None} for seq in range(6)]
    lines = [json.dumps(row) + "\n" for row in rows]
    spool_file = spool_dir / "00000000000000000001-deadbeef.jsonl"
    # A previous process replayed the first 2 rows (committed offset) and was killed
    # while writing a 7th row (torn last line).
    spool_file.write_text("".join(lines) + '{"time": 1, "hei')
    done = len(lines[0]) + len(lines[1])
    async with engine.begin() as connection:
        await connection.execute(shares.insert(), [
            {**row, "time": datetime.fromtimestamp(row["time"], UTC)}
            for row in rows[:2]])
        await connection.execute(spool_progress.insert(),
                                 {"file": spool_file.name, "offset": done})
    writer = ShareWriter(engine=engine, spool_dir=spool_dir)
    await writer.flush()
    assert await sequences(engine) == list(range(6))
    assert not spool_file.exists()
    async with engine.connect() as connection:
        count = (await connection.execute(select(func.count()).select_from(shares))).scalar()
    assert count == 6
    await engine.dispose()
