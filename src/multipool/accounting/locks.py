"""A named lock held in the coin's database, so that runs of one job (payments) never
overlap, whichever process or host starts them.

A holder is ``host:pid:random``. The lock expires ``ttl`` seconds after it was last
taken or renewed, and is taken over at once when its holder is a process of this host
that no longer exists (killed with -9, so it could not release it).
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.schema import locks


def _naive_utc(moment: datetime) -> datetime:
    # SQLite and MariaDB hand back naive datetimes: compare everything as naive UTC.
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _process_gone(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class DatabaseLock:
    def __init__(self, engine: AsyncEngine, name: str, *, ttl: float = 900.0):
        self.engine = engine
        self.name = name
        self.ttl = timedelta(seconds=ttl)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    async def holder_of(self) -> str | None:
        """Who holds the lock now (None when free or expired)."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(
                select(locks.c.holder, locks.c.expires).where(locks.c.name == self.name))).first()
        if row is None or _naive_utc(row.expires) < _naive_utc(datetime.now(UTC)):
            return None
        return str(row.holder)

    async def acquire(self) -> bool:
        """Take the lock; return False when someone else holds it."""
        now = datetime.now(UTC)
        try:
            async with self.engine.begin() as connection:
                await connection.execute(insert(locks).values(
                    name=self.name, holder=self.holder, expires=now + self.ttl))
            return True
        except IntegrityError:
            pass
        current = await self.holder_of()
        async with self.engine.begin() as connection:
            condition = locks.c.expires < now
            if current is not None and (current == self.holder or _process_gone(current)):
                condition = condition | (locks.c.holder == current)
            taken = await connection.execute(
                update(locks).where(locks.c.name == self.name, condition)
                .values(holder=self.holder, expires=now + self.ttl))
        return taken.rowcount == 1

    async def renew(self) -> bool:
        """Push the expiry out again; return False when the lock was lost meanwhile."""
        async with self.engine.begin() as connection:
            renewed = await connection.execute(
                update(locks).where(locks.c.name == self.name, locks.c.holder == self.holder)
                .values(expires=datetime.now(UTC) + self.ttl))
        return renewed.rowcount == 1

    async def release(self) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(
                delete(locks).where(locks.c.name == self.name, locks.c.holder == self.holder))
