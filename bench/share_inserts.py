"""Share insert throughput per database (rows/s): shares into the ``shares`` table of a
freshly migrated database on SQLite (a file), PostgreSQL and MariaDB (throwaway servers
from multipool.testdb on loopback), each through two paths:

- ``write_rows``: the writer's insert function, one transaction per batch of rows (500,
  the writer's batch size), rows built beforehand;
- ``ShareWriter.flush``: ``record_share`` a batch of shares, then ``flush()``, repeated:
  the writer's own path (row building, spool check, lock, transaction).

Every path starts on an empty database, and the row count is checked afterwards.
Durability is as the servers are set up: the throwaway servers run without fsync
(multipool.testdb), SQLite runs as multipool sets it up (WAL, synchronous=FULL: one fsync
per commit). ``--sqlite-normal`` adds the same SQLite rows with synchronous=NORMAL (no
fsync per commit), measured in the same run, to show what FULL costs.

Run: .venv/bin/python bench/share_inserts.py [--rows N] [--batch B]
     [--backends sqlite,postgresql,mariadb] [--sqlite-normal]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select

from _common import report
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import shares
from multipool.accounting.writer import ShareWriter, share_row, write_rows
from multipool.stratum.sink import ShareRecord
from multipool.testdb import MariaDBServer, PostgresServer

BACKENDS = ("sqlite", "postgresql", "mariadb")


def make_shares(count: int) -> list[ShareRecord]:
    now = time.time()
    return [ShareRecord(time=now + i * 1e-3, address=f"rltc1qbenchaddress{i % 50:04d}",
                        worker=f"rig{i % 7}", ip="127.0.0.1", job_id="1", height=i,
                        difficulty=1.0, share_difficulty=2.0, accepted=True)
            for i in range(count)]


# SQLite's synchronous setting for the engines made next (None: multipool's own, FULL).
SQLITE_SYNC: list[str | None] = [None]


async def fresh_engine(url: str):
    engine = create_engine(url)
    sync = SQLITE_SYNC[0]
    if sync is not None and engine.dialect.name == "sqlite":
        def pragma(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA synchronous={sync}")  # after multipool's own
            cursor.close()
        event.listen(engine.sync_engine, "connect", pragma)
    await upgrade(engine)
    return engine


async def count_shares(engine) -> int:
    async with engine.connect() as connection:
        return (await connection.execute(select(func.count()).select_from(shares))).scalar()


async def through_write_rows(url: str, records: list[ShareRecord], batch: int) -> float:
    """Seconds to insert ``records`` with write_rows, one transaction per ``batch``."""
    engine = await fresh_engine(url)
    rows = [share_row(record) for record in records]
    try:
        began = time.perf_counter()
        for start in range(0, len(rows), batch):
            async with engine.begin() as connection:
                await write_rows(connection, rows[start:start + batch])
        elapsed = time.perf_counter() - began
        assert await count_shares(engine) == len(rows)
    finally:
        await engine.dispose()
    return elapsed


async def through_flush(url: str, records: list[ShareRecord], batch: int,
                        spool_dir: Path) -> float:
    """Seconds to record ``records`` into a ShareWriter and flush every ``batch``."""
    engine = await fresh_engine(url)
    writer = ShareWriter(engine=engine, spool_dir=spool_dir, batch_size=batch)
    try:
        began = time.perf_counter()
        for start in range(0, len(records), batch):
            for record in records[start:start + batch]:
                writer.record_share(record)
            await writer.flush()
        elapsed = time.perf_counter() - began
        assert writer.written == len(records) and writer.spooled == 0
        assert await count_shares(engine) == len(records)
    finally:
        await engine.dispose()
    return elapsed


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[tuple[Callable[[str], str], str]]:
    """Yield (a function that creates a database and returns its URL, server version)."""
    if backend == "sqlite":
        yield (lambda name: f"sqlite:///{workdir / name}.db"), sqlite3.sqlite_version
    elif backend == "postgresql":
        with PostgresServer() as pg:
            yield pg.create_database, pg.psql("SHOW server_version").strip()
    else:
        with MariaDBServer() as db:
            yield db.create_database, db.sql("SELECT VERSION()").strip()


async def measure(backends: list[str], rows: int, batch: int, sqlite_normal: bool
                  ) -> tuple[list[dict[str, Any]], dict[str, str]]:
    records = make_shares(rows)
    table: list[dict[str, Any]] = []
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="multipool-bench-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            syncs: list[str | None] = [None]
            if backend == "sqlite" and sqlite_normal:
                syncs = [None, "NORMAL"]
            with database(backend, workdir) as (create, version):
                versions[backend] = version
                for path in ("write_rows", "ShareWriter.flush"):
                    for sync in syncs:
                        SQLITE_SYNC[0] = sync
                        label = f"{backend} (synchronous={sync or 'FULL'})" \
                            if backend == "sqlite" else backend
                        url = create(f"bench_{path.split('.')[-1]}_{sync or 'full'}")
                        if path == "write_rows":
                            seconds = await through_write_rows(url, records, batch)
                        else:
                            seconds = await through_flush(
                                url, records, batch,
                                workdir / f"spool-{backend}-{sync or 'full'}")
                        table.append({"backend": label,
                                      "path": f"{path}, batches of {batch}",
                                      "rows": rows, "seconds": round(seconds, 2),
                                      "rows/s": rows / seconds})
    SQLITE_SYNC[0] = None
    return table, versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per backend and path")
    parser.add_argument("--batch", type=int, default=500, help="rows per transaction")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated, of " + ", ".join(BACKENDS))
    parser.add_argument("--sqlite-normal", action="store_true",
                        help="also SQLite with synchronous=NORMAL, in the same run")
    args = parser.parse_args()
    backends = args.backends.split(",")
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    table, versions = asyncio.run(measure(backends, args.rows, args.batch,
                                          args.sqlite_normal))
    report("share_inserts", "Share inserts per database", table,
           {"rows_per_path": args.rows, "batch": args.batch, "versions": versions})


if __name__ == "__main__":
    main()
