"""The accounting tests run on every backend: ``engine`` is a migrated engine on a fresh
database of each (the servers come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database of each backend, migrated to the newest schema."""
    engine = create_engine(database_url)
    await upgrade(engine)
    yield engine
    await engine.dispose()
