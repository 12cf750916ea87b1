"""Migrations build exactly the schema the code describes, and re-running is a no-op."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from multipool.accounting.migrate import current_revision, head_revision, upgrade
from multipool.accounting.schema import metadata


async def test_upgrade_creates_schema_matching_metadata(tmp_path: Path):
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}")
    try:
        assert await current_revision(engine) is None
        before, after = await upgrade(engine)
        assert (before, after) == (None, head_revision())
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            diffs = await connection.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), metadata))
        assert tables >= set(metadata.tables)
        assert diffs == []
        # A second run changes nothing.
        assert await upgrade(engine) == (head_revision(), head_revision())
    finally:
        await engine.dispose()
