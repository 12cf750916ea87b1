"""The throwaway database servers of multipool.testdb: real PostgreSQL and MariaDB.

Checked with the servers' own command-line clients (no Python DB driver needed). Without
the binaries the tests are skipped with the reason shown, except under CI=true, where a
missing server must fail the run.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from multipool.testdb import (
    MariaDBServer,
    PostgresServer,
    TestDBError,
    find_mariadb,
    find_pg_bin,
    pid_alive,
)

PG_MISSING = ("PostgreSQL not found under /usr/lib/postgresql/*/bin (install the postgresql "
              "package, e.g. with scripts/setup.sh, or set MULTIPOOL_PG_BIN)")
MARIADB_MISSING = ("mariadb-install-db/mariadbd/mariadb not found (install the "
                   "mariadb-server package, e.g. with scripts/setup.sh)")


def _require(found: object, reason: str) -> None:
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)


@pytest.fixture
def need_pg() -> None:
    _require(find_pg_bin(), PG_MISSING)


@pytest.fixture
def need_mariadb() -> None:
    _require(find_mariadb(), MARIADB_MISSING)


def listeners(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (from /proc/net)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                if len(address) == 8:  # IPv4, little-endian
                    found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
                else:
                    found.add(f"ipv6:{address}")
    return found


def port_free(port: int) -> bool:
    """True if nothing listens on ``port`` (SO_REUSEADDR: TIME_WAIT leftovers are fine)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))  # probing only, never listening
        except OSError:
            return False
    return not listeners(port)


def test_postgres_server_lifecycle(need_pg: None) -> None:
    with PostgresServer() as pg:
        port, pid, tmpdir = pg.port, pg.pid, pg.tmpdir
        assert pid is not None and pid_alive(pid)
        url = pg.create_database("accounting")
        assert url == f"postgresql+asyncpg://pool@127.0.0.1:{port}/accounting"
        assert pg.url("x", driver="psycopg") == f"postgresql+psycopg://pool@127.0.0.1:{port}/x"
        assert pg.psql("select 1", "accounting").strip() == "1"
        assert pg.psql("select current_user").strip() == "pool"
        assert listeners(port) == {"127.0.0.1"}
        assert 0 < pg.start_seconds < 30
    assert not pid_alive(pid)
    assert port_free(port)
    assert tmpdir is not None and not tmpdir.exists()
    assert not pg.running()
    pg.stop()  # a second stop is harmless


def test_postgres_stops_when_the_block_fails(need_pg: None) -> None:
    server = PostgresServer()
    with pytest.raises(ZeroDivisionError), server:
        pid = server.pid
        1 / 0  # noqa: B018
    assert pid is not None and not pid_alive(pid)
    assert port_free(server.port)


def test_postgres_errors_are_reported(need_pg: None) -> None:
    with PostgresServer() as pg:
        with pytest.raises(TestDBError, match="does not exist"):
            pg.psql("select 1", "nosuchdb")
        with pytest.raises(ValueError, match="bad database name"):
            pg.create_database('x"; drop')


def test_mariadb_server_lifecycle(need_mariadb: None) -> None:
    with MariaDBServer() as db:
        port, pid, tmpdir = db.port, db.pid, db.tmpdir
        assert pid is not None and pid_alive(pid)
        url = db.create_database("accounting")
        assert url == f"mysql+aiomysql://pool:{db.password}@127.0.0.1:{port}/accounting"
        assert len(db.password) >= 16
        assert db.sql("select 1", "accounting").strip() == "1"
        assert db.sql("select current_user()").strip() == "pool@%"
        assert listeners(port) == {"127.0.0.1"}
        assert 0 < db.start_seconds < 30
    assert not pid_alive(pid)
    assert port_free(port)
    assert tmpdir is not None and not tmpdir.exists()
    assert not db.running()
    db.stop()


def test_mariadb_needs_the_password(need_mariadb: None) -> None:
    with MariaDBServer() as db:
        db.password = "wrong"
        with pytest.raises(TestDBError, match="Access denied"):
            db.sql("select 1")


def test_mariadb_stops_when_the_block_fails(need_mariadb: None) -> None:
    server = MariaDBServer()
    with pytest.raises(ZeroDivisionError), server:
        pid = server.pid
        1 / 0  # noqa: B018
    assert pid is not None and not pid_alive(pid)
    assert port_free(server.port)
