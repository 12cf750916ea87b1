"""Named values of a coin kept in its database's ``settings`` table (switches such as
``payments_paused``, watermarks such as how far the chain was read), read and written in
the caller's transaction."""

from __future__ import annotations

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from multipool.accounting.schema import settings


async def read_setting(connection: AsyncConnection, name: str) -> str | None:
    """The value of setting ``name``, or None when it is not set."""
    value = (await connection.execute(
        select(settings.c.value).where(settings.c.name == name))).scalar()
    return None if value is None else str(value)


async def write_setting(connection: AsyncConnection, name: str, value: str | None) -> None:
    """Set ``name`` to ``value`` (None: unset it)."""
    await connection.execute(delete(settings).where(settings.c.name == name))
    if value is not None:
        await connection.execute(insert(settings).values(name=name, value=value))
