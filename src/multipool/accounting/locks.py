"""A named lock held in the coin's database, so that runs of one job (payments) never
overlap, whichever process or host starts them, with a fencing token.

A holder is ``host:pid:random``. The lock expires ``ttl`` seconds after it was last
taken or renewed, and is taken over at once when its holder is a process of this host
that no longer exists (killed with -9, so it could not release it).

Every acquisition (a first one, a takeover, the holder's own again) increments the row's
``token``; the row is never deleted, so the token only grows. A holder checks its token
with :meth:`DatabaseLock.fence` inside each of its write transactions: once another run
has taken the lock over, even a holder that was frozen past its expiry and does not know
it yet writes nothing (the fence raises and the transaction rolls back).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from multipool.accounting.schema import locks
from multipool.errors import PoolError


class LockLost(PoolError):
    """The lock was taken over by another holder: this run must write nothing more."""


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
        # The token of the current acquisition (None: not held), and the monotonic time
        # before which the lock is surely still ours (taken before the database wrote
        # the expiry, so it errs early).
        self.token: int | None = None
        self.valid_until: float = 0.0

    async def holder_of(self) -> str | None:
        """Who holds the lock now (None when free or expired)."""
        async with self.engine.connect() as connection:
            row = (await connection.execute(
                select(locks.c.holder, locks.c.expires).where(locks.c.name == self.name))).first()
        if row is None or _naive_utc(row.expires) < _naive_utc(datetime.now(UTC)):
            return None
        return str(row.holder)

    async def acquire(self) -> bool:
        """Take the lock with a new token; return False when someone else holds it."""
        began, now = time.monotonic(), datetime.now(UTC)
        try:
            async with self.engine.begin() as connection:
                await connection.execute(insert(locks).values(
                    name=self.name, holder=self.holder, expires=now + self.ttl, token=1))
            self.token, self.valid_until = 1, began + self.ttl.total_seconds()
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
                .values(holder=self.holder, expires=now + self.ttl, token=locks.c.token + 1))
            if taken.rowcount != 1:
                return False
            token = (await connection.execute(
                select(locks.c.token).where(locks.c.name == self.name))).scalar_one()
        self.token, self.valid_until = int(token), began + self.ttl.total_seconds()
        return True

    async def renew(self) -> bool:
        """Push the expiry out again; return False when the lock was lost meanwhile."""
        if self.token is None:
            return False
        began = time.monotonic()
        async with self.engine.begin() as connection:
            renewed = await connection.execute(
                update(locks).where(locks.c.name == self.name, locks.c.token == self.token,
                                    locks.c.holder == self.holder)
                .values(expires=datetime.now(UTC) + self.ttl))
        if renewed.rowcount != 1:
            return False
        self.valid_until = began + self.ttl.total_seconds()
        return True

    async def fence(self, connection: AsyncConnection) -> None:
        """In the caller's write transaction: raise :class:`LockLost` unless the lock is
        still this acquisition's. The row stays locked until the transaction ends, so a
        takeover waits for it (and SQLite has one writer at a time anyway)."""
        if self.token is None:
            raise LockLost(f"lock {self.name!r} is not held by {self.holder}")
        checked = await connection.execute(
            update(locks).where(locks.c.name == self.name, locks.c.token == self.token)
            .values(token=locks.c.token))
        if checked.rowcount != 1:
            raise LockLost(f"lock {self.name!r} was taken over by another run (this run's "
                           f"token {self.token} is stale): it writes nothing more")

    async def release(self) -> None:
        """Let the lock go (expire it now); the row and its token stay."""
        if self.token is None:
            return
        async with self.engine.begin() as connection:
            await connection.execute(
                update(locks).where(locks.c.name == self.name, locks.c.token == self.token,
                                    locks.c.holder == self.holder)
                .values(expires=datetime.now(UTC) - timedelta(seconds=1)))
        self.token = None
