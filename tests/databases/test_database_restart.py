"""A database restart while miners submit shares loses no share, on real PostgreSQL and
MariaDB servers.

Each test starts its own throwaway server (the session's shared servers, which other tests
use, are never stopped). A producer records numbered shares every few milliseconds into
a running ShareWriter while the server is stopped for a while and started again on the
same data directory and port; every share must land exactly once, in production order,
and the block found during the outage must end its round at the share just before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import blocks, shares
from multipool.accounting.writer import ShareWriter
from multipool.stratum.sink import BlockRecord
from multipool.testdb import (
    MariaDBServer,
    PostgresServer,
    TestDBError,
    find_mariadb,
    find_pg_bin,
)
from tests.support.requirements import missing
from tests.unit.test_share_writer import sequences, share

SHARE_INTERVAL = 0.002  # seconds between two shares of the producer
OUTAGE_SECONDS = 2.0  # how long the server stays down
FLUSH_INTERVAL = 0.05


@pytest.fixture(params=["postgresql", "mariadb"])
def own_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer | MariaDBServer]:
    """A private server of each kind, free to be stopped and started by the test."""
    server: PostgresServer | MariaDBServer
    if request.param == "postgresql":
        if find_pg_bin() is None:
            missing("PostgreSQL")
        server = PostgresServer()
    else:
        if find_mariadb() is None:
            missing("MariaDB")
        server = MariaDBServer()
    with server:
        yield server


def query(server: PostgresServer | MariaDBServer, sql: str, database: str) -> str:
    if isinstance(server, PostgresServer):
        return server.psql(sql, database).strip()
    return server.sql(sql, database).strip()


def test_restarted_server_keeps_its_port_and_databases(
        own_server: PostgresServer | MariaDBServer) -> None:
    own_server.create_database("kept")
    query(own_server, "CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (7)", "kept")
    port, tmpdir = own_server.port, own_server.tmpdir
    own_server.stop_server()
    own_server.stop_server()  # stopped already: nothing to do
    assert not own_server.running()
    with pytest.raises(TestDBError):
        query(own_server, "SELECT x FROM t", "kept")
    own_server.start_server()
    own_server.start_server()  # running already: nothing to do
    assert own_server.running()
    assert (own_server.port, own_server.tmpdir) == (port, tmpdir)
    assert query(own_server, "SELECT x FROM t", "kept") == "7"
    own_server.restart(down_seconds=0.1)
    assert query(own_server, "SELECT x FROM t", "kept") == "7"


def test_start_server_needs_a_started_server() -> None:
    if find_pg_bin() is not None:
        with pytest.raises(TestDBError, match="use start"):
            PostgresServer().start_server()
    if find_mariadb() is not None:
        with pytest.raises(TestDBError, match="use start"):
            MariaDBServer().start_server()


async def wait_for(condition, timeout: float, what: str) -> None:
    """Poll ``condition()`` every 10 ms until it holds; fail naming ``what`` if it
    does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


async def test_restart_while_miners_submit_loses_no_share(
        own_server: PostgresServer | MariaDBServer, tmp_path: Path) -> None:
    engine = create_engine(own_server.create_database("pool"))
    await upgrade(engine)
    spool_dir = tmp_path / "spool"
    writer = ShareWriter(engine=engine, spool_dir=spool_dir, flush_interval=FLUSH_INTERVAL)
    produced = 0
    finder: int | None = None  # the share recorded just before the block
    stop_producing = asyncio.Event()
    find_block = asyncio.Event()

    async def produce() -> None:
        nonlocal produced, finder
        while not stop_producing.is_set():
            writer.record_share(share(produced))
            produced += 1
            if find_block.is_set() and finder is None:
                finder = produced - 1
                writer.record_block(BlockRecord(
                    time=time.time(), height=777, hash_hex="ab" * 32, address="finder",
                    worker="rig", reward=5_000_000_000, network_difficulty=0.5,
                    accepted=True, result=None))
            await asyncio.sleep(SHARE_INTERVAL)

    run = asyncio.create_task(writer.run())
    producer = asyncio.create_task(produce())
    try:
        await asyncio.sleep(0.5)  # steady state: shares go straight to the database
        assert writer.written > 0 and writer.spooled == 0
        port = own_server.port

        await asyncio.to_thread(own_server.stop_server)
        down = time.monotonic()
        await wait_for(lambda: writer.spooled > 0, OUTAGE_SECONDS, "writer spools")
        assert not writer.database_up
        find_block.set()  # the block goes through the spool, behind its finder's share
        await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - down))
        spooled_in_outage = writer.spooled
        await asyncio.to_thread(own_server.start_server)
        outage = time.monotonic() - down
        assert own_server.port == port

        # The pool reconnects, replays the spool and writes shares directly again.
        await wait_for(lambda: writer.database_up and not writer.spool.files(), 20,
                       "writer replays the spool")
        written = writer.written
        await wait_for(lambda: writer.written > written, 5, "direct writes resume")
    finally:
        stop_producing.set()
        await producer
        run.cancel()  # the final flush writes what is buffered
        with contextlib.suppress(asyncio.CancelledError):
            await run

    try:
        assert await sequences(engine) == list(range(produced))
        assert writer.spooled > 0 and writer.replayed == writer.spooled
        assert writer.written + writer.spooled == produced + 1  # + the block
        assert list(spool_dir.iterdir()) == []
        assert finder is not None
        async with engine.connect() as connection:
            (found,) = (await connection.execute(select(blocks))).mappings().all()
            finder_id = (await connection.execute(
                select(shares.c.id).where(shares.c.height == finder))).scalar()
        assert (found["height"], found["last_share_id"]) == (777, finder_id)
    finally:
        await engine.dispose()
    print(f"\n{engine.dialect.name}: server down {outage:.2f} s; {produced} shares, "
          f"{spooled_in_outage} rows spooled during the outage, {writer.spooled} in all, "
          f"{writer.replayed} replayed, {writer.written} written directly")
