"""`coin add` on a server whose multipool.toml names a PostgreSQL or MariaDB admin URL:
each coin gets its own database and role (the password only in coin.toml), the web its
read-only role (the password beside multipool.toml, for the web user), the migrations run
as the coin's role, and a second `coin add` changes nothing."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import head_revision, upgrade
from multipool.cli.main import app
from multipool.config import load_coin_config

runner = CliRunner()


@pytest.fixture(params=["postgresql", "mariadb"])
def admin_url(request: pytest.FixtureRequest) -> str:
    server = request.getfixturevalue(request.param)
    if request.param == "postgresql":
        return server.url("postgres", driver="asyncpg").replace("+asyncpg", "")
    return server.create_admin(f"admin{id(request) % 10000}").replace("+aiomysql", "")


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_each_coin_gets_its_own_database_and_role(tmp_path: Path, admin_url: str):
    root = tmp_path / "server"
    cli("init", "--root", str(root), "--mode", "local")
    server_file = root / "multipool.toml"
    assert stat.S_IMODE(server_file.stat().st_mode) == 0o600  # may hold the admin URL
    server_file.write_text(server_file.read_text().replace(
        'url = "sqlite"', f'url = "{admin_url}"'))
    prefix = f"c{tmp_path.name[-6:].replace('_', '').lower()}"[:10]
    add = ("coin", "add", "litecoin", "--prefix", prefix, "--network", "regtest", "--root",
           str(root), "--json")
    first = json.loads(cli(*add))["changes"]
    assert any(c["operation"].startswith(("postgresql", "mariadb", "database"))
               for c in first), first
    config = load_coin_config(root / "coin" / prefix / "coin.toml")
    url = config.pool.database
    assert url is not None
    parts = urlsplit(url)
    assert parts.username == f"{prefix}pool" and parts.path == f"/multipool_{prefix}"
    assert parts.password and parts.password not in json.dumps(first)
    secret = root / "web-database.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o640
    assert secret.read_text().strip() not in json.dumps(first)

    async def migrate() -> str:
        engine = create_engine(url)  # the coin's own role runs the migrations
        try:
            return (await upgrade(engine))[1]
        finally:
            await engine.dispose()

    # `coin add` runs its own event loop (the database set-up): this test has none.
    assert asyncio.run(migrate()) == head_revision()
    assert json.loads(cli(*add))["changes"] == []
