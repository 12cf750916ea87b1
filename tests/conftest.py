"""Fixtures for every test directory: real database servers, so that accounting tests
and functional tests alike run on SQLite and on throwaway PostgreSQL and MariaDB servers
on loopback (multipool.testdb), one of each per test session, started on first use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from multipool.testdb import MariaDBServer, PostgresServer, find_mariadb, find_pg_bin
from tests.support.requirements import missing

BACKENDS = ["sqlite", "postgresql", "mariadb"]


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgresServer]:
    if find_pg_bin() is None:
        missing("PostgreSQL")
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def postgresql_passwords() -> Iterator[PostgresServer]:
    """A PostgreSQL server that checks passwords (the `postgresql` one trusts every
    role): for tests of roles, and of tools that must be given a password to get in."""
    if find_pg_bin() is None:
        missing("PostgreSQL")
    with PostgresServer(password_auth=True) as server:
        yield server


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    if find_mariadb() is None:
        missing("MariaDB")
    with MariaDBServer() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend, as a URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pool.db'}"
    server = request.getfixturevalue(request.param)
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


