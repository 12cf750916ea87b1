"""Schema migrations and the share writer, the same tests on SQLite, PostgreSQL and
MariaDB (real servers)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import head_revision, upgrade
from multipool.accounting.schema import blocks, metadata, shares, spool_progress
from multipool.accounting.writer import ShareWriter
from multipool.stratum.sink import BlockRecord
from tests.unit.test_share_writer import sequences, share


async def test_migrations_build_the_described_schema(database_url: str):
    engine = create_engine(database_url)
    try:
        assert await upgrade(engine) == (None, head_revision())
        async with engine.connect() as connection:
            diffs = await connection.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), metadata))
        assert diffs == []
        assert await upgrade(engine) == (head_revision(), head_revision())
    finally:
        await engine.dispose()


async def test_batched_shares_keep_arrival_order(engine: AsyncEngine, tmp_path: Path):
    writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool", batch_size=300)
    for seq in range(1000):
        writer.record_share(share(seq))
        if seq % 250 == 0:
            await writer.flush()
    await writer.flush()
    assert await sequences(engine) == list(range(1000))
    assert writer.written == 1000 and writer.spooled == 0


async def test_spool_replay_resumes_at_committed_offset(engine: AsyncEngine, tmp_path: Path):
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    rows = [{"time": time.time(), "height": seq, "address": "a", "worker": "w",
             "ip": "127.0.0.1", "difficulty": 1.0, "share_difficulty": 1.0,
             "accepted": True, "reject_code": None} for seq in range(6)]
    lines = [json.dumps(row) + "\n" for row in rows]
    spool_file = spool_dir / "00000000000000000001-deadbeef.jsonl"
    # A previous process replayed 2 rows (offset committed with them) and was killed
    # in the middle of spooling a seventh.
    spool_file.write_text("".join(lines) + '{"time": 1, "hei')
    async with engine.begin() as connection:
        await connection.execute(shares.insert(), [
            {**row, "time": datetime.fromtimestamp(row["time"], UTC)} for row in rows[:2]])
        await connection.execute(spool_progress.insert(), {
            "file": spool_file.name, "offset": len(lines[0]) + len(lines[1])})
    await ShareWriter(engine=engine, spool_dir=spool_dir, replay_chunk=3).flush()
    assert await sequences(engine) == list(range(6))
    assert not spool_file.exists()
    async with engine.connect() as connection:
        total = (await connection.execute(select(func.count()).select_from(shares))).scalar()
    assert total == 6


def block(height: int, hash_hex: str, accepted: bool = True) -> BlockRecord:
    return BlockRecord(time=time.time(), height=height, hash_hex=hash_hex, address="finder",
                       worker="rig", reward=5_000_000_000, network_difficulty=0.5,
                       accepted=accepted, result=None if accepted else "high-hash")


async def test_block_recorded_once_after_its_finders_share(engine: AsyncEngine,
                                                           tmp_path: Path):
    writer = ShareWriter(engine=engine, spool_dir=tmp_path / "spool")
    for seq in range(5):
        writer.record_share(share(seq))
    writer.record_block(block(101, "ab" * 32))
    writer.record_block(block(101, "cd" * 32, accepted=False))  # refused: no block
    writer.record_share(share(5))
    await writer.flush()
    writer.record_block(block(101, "ab" * 32))  # the same block again: counted once
    await writer.flush()
    async with engine.connect() as connection:
        found = (await connection.execute(select(blocks))).mappings().all()
        finder_share = (await connection.execute(
            select(shares.c.id).where(shares.c.height == 4))).scalar()
    assert len(found) == 1
    assert found[0]["hash"] == "ab" * 32 and found[0]["reward"] == 5_000_000_000
    assert found[0]["last_share_id"] == finder_share
    assert found[0]["status"] == "pending"
