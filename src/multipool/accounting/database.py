"""Database URLs and engines for a coin's accounting database.

Operators write plain URLs (``sqlite:///path``, ``postgresql://...``,
``mysql://...``/``mariadb://...``); the engine needs an asyncio driver, chosen here.
SQLite runs in WAL mode so the web process can read while the engine writes, with
``synchronous=FULL`` so a commit survives a power cut. The database files (``pool.db``
and its ``-wal`` and ``-shm``) are kept at mode 0640: on a server the pool directory is
setgid to the web user's group, so the web process may read them and nothing else there
(ops/layout.py), and may write none of them.
"""

from __future__ import annotations

import os
import stat
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from multipool.config import CoinConfig
from multipool.errors import ConfigError

# Plain scheme -> the asyncio driver multipool installs for it.
ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
}


def async_url(url: str) -> str:
    """Given a database URL, return it with multipool's asyncio driver for its backend.

    >>> async_url("postgresql://pool@127.0.0.1/ltc")
    'postgresql+asyncpg://pool@127.0.0.1/ltc'
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {url!r}") from None
    backend = parsed.drivername.split("+", 1)[0]
    if backend not in ASYNC_DRIVERS:
        raise ConfigError(f"unsupported database {backend!r} in {parsed!r}: use sqlite, "
                          f"postgresql or mariadb")
    return parsed.set(drivername=ASYNC_DRIVERS[backend]).render_as_string(
        hide_password=False)


def public_location(url: str) -> dict[str, object]:
    """Given a database URL, return where the database is, for the web process to find
    it: ``{"backend": "sqlite", "path": ABSOLUTE}`` or ``{"backend": "postgresql" |
    "mysql", "host", "port", "name"}``. Never the user or the password.

    >>> public_location("postgresql://ltcpool:secret@db.example:5433/multipool_ltc")
    {'backend': 'postgresql', 'host': 'db.example', 'port': 5433, 'name': 'multipool_ltc'}
    >>> public_location("sqlite:///pool/ltc/pool.db")["path"].endswith("/pool/ltc/pool.db")
    True
    """
    parsed = make_url(async_url(url))
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return {"backend": "sqlite", "path": str(Path(parsed.database or "").resolve())}
    # A Unix socket directory may come as ?host=/run/postgresql instead of a host name.
    host = parsed.host or parsed.query.get("host") or "localhost"
    if isinstance(host, tuple):
        host = host[0]
    return {"backend": "postgresql" if backend == "postgresql" else "mysql",
            "host": host, "port": parsed.port, "name": parsed.database}


def default_sqlite_url(directory: str | Path) -> str:
    """The embedded default: ``pool.db`` in the given directory."""
    return f"sqlite:///{Path(directory).resolve() / 'pool.db'}"


def state_directory(config: CoinConfig) -> Path:
    """Where the engine keeps its state: ``[pool] state_dir``, or beside the coin file."""
    if config.pool.state_dir is not None:
        return Path(config.pool.state_dir)
    return Path(config.path).parent


def database_url(config: CoinConfig) -> str:
    """The coin's database: ``[pool] database``, or pool.db in the state directory."""
    return config.pool.database or default_sqlite_url(state_directory(config))


def spool_directory(config: CoinConfig) -> Path:
    """Where the coin's shares wait while its database is away."""
    return state_directory(config) / f"spool-{config.coin.prefix}"


# How long a SQLite statement waits for another connection's write lock before failing.
SQLITE_BUSY_TIMEOUT_MS = 5000


# The database files' mode: the pool user writes; the directory's group (on a server, the
# web user's) reads. SQLite gives the -wal and -shm files it creates the main file's mode.
DATABASE_FILE_MODE = 0o640


def share_with_group(path: Path) -> None:
    """Give the SQLite database at ``path`` and its -wal and -shm files (those that exist
    and belong to this user) DATABASE_FILE_MODE. New files are created by SQLite with the
    umask's mode (0600 under the units' UMask=0077); a database from before this was
    kept is brought in line too."""
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        try:
            found = os.stat(path.with_name(name))
        except FileNotFoundError:
            continue
        if found.st_uid == os.geteuid() and stat.S_IMODE(found.st_mode) != DATABASE_FILE_MODE:
            os.chmod(path.with_name(name), DATABASE_FILE_MODE)


def _sqlite_pragmas(path: Path | None, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL: readers never block the writer. FULL: every commit is fsynced before it
    # returns, so a commit survives a power cut or an OS crash, not only a kill -9
    # (NORMAL may lose the last commits then): a payment intent, a block candidate
    # written before submitblock, or a credit must not roll back once acted on.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()
    if path is not None:
        # After the journal mode: the file exists and has its header by now.
        share_with_group(path)


def create_engine(url: str) -> AsyncEngine:
    """Given a database URL (plain or with a driver), return an asyncio engine for it."""
    engine = create_async_engine(async_url(url), pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        path = (Path(database) if database and database != ":memory:"
                and not database.startswith("file:") else None)
        event.listen(engine.sync_engine, "connect", partial(_sqlite_pragmas, path))
    return engine
