"""Fixtures for every test directory: real database servers, so that accounting tests
and functional tests alike run on SQLite and on throwaway PostgreSQL and MariaDB servers
on loopback (multipool.testdb), one of each per test session, started on first use."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from multipool.testdb import MariaDBServer, PostgresServer, find_mariadb, find_pg_bin

BACKENDS = ["sqlite", "postgresql", "mariadb"]


def _missing(what: str) -> None:
    reason = f"{what} is not installed: run `make setup`"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must not skip database tests)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgresql() -> Iterator[PostgresServer]:
    if find_pg_bin() is None:
        _missing("PostgreSQL")
    with PostgresServer() as server:
        yield server


@pytest.fixture(scope="session")
def mariadb() -> Iterator[MariaDBServer]:
    if find_mariadb() is None:
        _missing("MariaDB")
    with MariaDBServer() as server:
        yield server


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database on each backend, as a URL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pool.db'}"
    server = request.getfixturevalue(request.param)
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


