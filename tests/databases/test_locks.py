"""The database lock that keeps payment runs from overlapping (locks.py), on SQLite,
PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess

from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.locks import DatabaseLock


async def test_second_holder_waits_for_release(engine: AsyncEngine):
    first, second = DatabaseLock(engine, "job"), DatabaseLock(engine, "job")
    assert first.holder != second.holder
    assert await first.holder_of() is None
    assert await first.acquire()
    assert not await second.acquire()
    assert await second.holder_of() == first.holder
    assert await first.acquire()  # its own lock: taken again
    await second.release()  # not the holder: changes nothing
    assert not await second.acquire()
    # Another name is another lock.
    other = DatabaseLock(engine, "other-job")
    assert await other.acquire()
    await first.release()
    assert await first.holder_of() is None
    assert await second.acquire()
    assert await first.holder_of() == second.holder
    assert not await first.acquire()


async def test_renew_only_by_holder(engine: AsyncEngine):
    holder, outsider = DatabaseLock(engine, "job"), DatabaseLock(engine, "job")
    assert not await holder.renew()  # nobody holds it yet
    assert await holder.acquire()
    assert not await outsider.renew()
    assert await holder.renew()
    assert await outsider.holder_of() == holder.holder


async def test_expired_lock_is_taken_over(engine: AsyncEngine):
    stale = DatabaseLock(engine, "job", ttl=0.2)
    assert await stale.acquire()
    # MariaDB keeps whole seconds: wait past the expiry whatever the rounding.
    await asyncio.sleep(1.5)
    assert await stale.holder_of() is None
    successor = DatabaseLock(engine, "job")
    assert await successor.acquire()
    assert await stale.holder_of() == successor.holder
    assert not await stale.renew()  # the old holder learns it lost the lock
    await stale.release()
    assert await successor.holder_of() == successor.holder


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


async def test_lock_of_a_dead_local_process_is_taken_over_at_once(engine: AsyncEngine):
    pid = dead_pid()
    crashed = DatabaseLock(engine, "job")  # ttl 900 s: far from expiring
    crashed.holder = f"{socket.gethostname()}:{pid}:0badf00d"
    assert await crashed.acquire()
    successor = DatabaseLock(engine, "job")
    assert await successor.acquire()
    assert await successor.holder_of() == successor.holder


async def test_lock_of_a_live_or_remote_process_is_kept(engine: AsyncEngine):
    pid = dead_pid()
    remote = DatabaseLock(engine, "remote")
    # A pid that is gone here says nothing about a process on another host.
    remote.holder = f"not-{socket.gethostname()}:{pid}:0badf00d"
    assert await remote.acquire()
    assert not await DatabaseLock(engine, "remote").acquire()
    alive = DatabaseLock(engine, "alive")
    alive.holder = f"{socket.gethostname()}:{os.getppid()}:0badf00d"
    assert await alive.acquire()
    assert not await DatabaseLock(engine, "alive").acquire()
    assert await alive.holder_of() == alive.holder
