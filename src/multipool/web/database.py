"""A pool's database as the web reads it: read-only, one call per page's figures.

``await database.run(query, *args)`` calls ``query(connection, *args)`` (a synchronous
SQLAlchemy function, as in accounting/stats.py and accounting/history.py) and returns
its answer. Two ways to get there:

- SQLite (:class:`SQLiteDatabase`): the whole call runs in a worker thread on a plain
  ``sqlite3`` connection. Through an async driver every statement is several hops
  between the event loop and the driver's thread (about 0.65 ms each on this project's
  2-core benchmark host, more than most of these queries take); here a page's dozen
  statements cost one hop, and SQLite leaves the GIL while it reads.
- PostgreSQL and MariaDB (:class:`ServerDatabase`): the async engine's ``run_sync``, whose
  drivers talk to the server on the event loop itself.

Both can only read: SQLite's ``mode=ro`` and ``query_only``; on a server the
``multipool_web`` role, in read-only sessions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import sqlalchemy
from sqlalchemy import Connection, event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from multipool.accounting.stats import read
from multipool.ops.databases import WEB_ROLE
from multipool.web.status import DatabaseLocation

P = ParamSpec("P")
T = TypeVar("T")

# Connections (and SQLite's worker threads) per pool's database: answers are cached,
# so a few serve any load.
POOL_SIZE = 4
CONNECT_TIMEOUT = 10  # seconds
STATEMENT_TIMEOUT_MS = 10_000
READ_BUSY_TIMEOUT_MS = 2_000


class ReadOnlyDatabase:
    """A pool's database that can only be read."""

    backend: str

    async def run(self, query: Callable[Concatenate[Connection, P], T],
                  *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``query(connection, *args, **kwargs)`` in one transaction, rolled back."""
        raise NotImplementedError

    async def dispose(self) -> None:
        """Close every connection (the object may be used again: it reconnects)."""
        raise NotImplementedError


class SQLiteDatabase(ReadOnlyDatabase):
    """A SQLite file read in worker threads (see the module's docstring)."""

    backend = "sqlite"

    def __init__(self, path: str, *, threads: int = POOL_SIZE):
        # The pool hands a connection to whichever worker thread asks: SQLite allows it
        # (serialized mode); the sqlite3 module checks the thread unless told not to.
        self.engine = sqlalchemy.create_engine(
            sqlite_read_only_url(path), pool_size=threads, max_overflow=0,
            connect_args={"check_same_thread": False})
        event.listen(self.engine, "connect", _sqlite_reader_pragmas)
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, query: Callable[Concatenate[Connection, P], T],
                  *args: P.args, **kwargs: P.kwargs) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads,
                                                thread_name_prefix="sqlite-read")
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, partial(self._call, query, *args, **kwargs))

    def _call(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self.engine.connect() as connection:
            return query(connection, *args, **kwargs)

    async def dispose(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # Calls in flight finish first (each is bounded by SQLite's busy timeout).
            await asyncio.get_running_loop().run_in_executor(
                None, partial(executor.shutdown, wait=True))
        self.engine.dispose()


class ServerDatabase(ReadOnlyDatabase):
    """PostgreSQL or MariaDB through an async engine."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.backend = engine.dialect.name

    async def run(self, query: Callable[Concatenate[Connection, P], T],
                  *args: P.args, **kwargs: P.kwargs) -> T:
        return await read(self.engine, query, *args, **kwargs)

    async def dispose(self) -> None:
        await self.engine.dispose()


def sqlite_read_only_url(path: str) -> URL:
    """The URL that opens a SQLite file read-only (SQLite's own ``mode=ro``: any write
    is refused by SQLite, whatever the file's permissions)."""
    return URL.create("sqlite+pysqlite", database="file:" + quote(path),
                      query={"mode": "ro", "uri": "true"})


def _sqlite_reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # Belt and braces over mode=ro; and a reader may wait a moment for a checkpoint.
    cursor.execute("PRAGMA query_only=1")
    cursor.execute(f"PRAGMA busy_timeout={READ_BUSY_TIMEOUT_MS}")
    cursor.close()


def open_read_only(location: DatabaseLocation, *,
                   password: str | None) -> ReadOnlyDatabase:
    """Given where a pool's database is and the web role's password (PostgreSQL,
    MariaDB), return the database, able only to read. Connects to nothing yet."""
    if location.backend == "sqlite":
        assert location.path is not None
        return SQLiteDatabase(location.path)
    host = location.host or "localhost"
    socket = host.startswith("/")  # a Unix socket directory (PostgreSQL) or file
    if location.backend == "postgresql":
        url = URL.create("postgresql+asyncpg", username=WEB_ROLE, password=password,
                         host=None if socket else host, port=location.port,
                         database=location.name, query={"host": host} if socket else {})
        return ServerDatabase(create_async_engine(
            url, pool_size=POOL_SIZE, max_overflow=0, pool_pre_ping=True,
            connect_args={"timeout": CONNECT_TIMEOUT, "server_settings": {
                "default_transaction_read_only": "on",
                "statement_timeout": str(STATEMENT_TIMEOUT_MS)}}))
    url = URL.create("mysql+aiomysql", username=WEB_ROLE, password=password,
                     host=None if socket else host, port=location.port,
                     database=location.name,
                     query={"unix_socket": host} if socket else {})
    engine = create_async_engine(url, pool_size=POOL_SIZE, max_overflow=0,
                                 pool_pre_ping=True,
                                 connect_args={"connect_timeout": CONNECT_TIMEOUT})

    def read_only(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
        cursor.close()

    event.listen(engine.sync_engine, "connect", read_only)
    return ServerDatabase(engine)


def as_database(source: ReadOnlyDatabase | AsyncEngine) -> ReadOnlyDatabase:
    """A ReadOnlyDatabase as is; an async engine (tests, tools) wrapped as one."""
    return source if isinstance(source, ReadOnlyDatabase) else ServerDatabase(source)
