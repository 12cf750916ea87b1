"""System mode as root (CI is root): the web user reads a pool's SQLite database through
the pool directory's group and nothing else there, and cannot write the database.

`init` and `coin add` lay the tree out; the pool user then opens the database with the
engine's own code (multipool.accounting.database, the migrations, the share spool) and
keeps it open, as a running engine does. The web user then reads it as the web process
does (web/data.py, SQLite mode=ro) and tries what it must not do."""

from __future__ import annotations

import grp
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from multipool.ops.commands import as_user_argv
from multipool.ops.layout import WEB_USER, Layout
from tests.ops.test_system_mode import multipool, owner_group_mode
from tests.ops.test_system_mode import server as server  # the fixture

ENGINE_SIDE = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from sqlalchemy import insert
    from multipool.accounting.database import create_engine
    from multipool.accounting.migrate import upgrade
    from multipool.accounting.schema import balances
    from multipool.accounting.spool import ShareSpool

    async def main(pool_dir):
        engine = create_engine(f"sqlite:///{pool_dir}/pool.db")
        await upgrade(engine)
        async with engine.begin() as connection:
            await connection.execute(insert(balances).values(address="addrA", amount=777))
        ShareSpool(Path(pool_dir) / "spool-x").append([{"ip": "198.51.100.7"}])
        async with engine.connect() as connection:  # held open, as the engine does
            print("ready", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await engine.dispose()

    asyncio.run(main(sys.argv[1]))
""")

WEB_SIDE = textwrap.dedent("""
    import asyncio, json, os, sys
    from sqlalchemy import text
    from multipool.web.database import open_read_only
    from multipool.web.status import DatabaseLocation

    def attempt(action):
        try:
            action()
            return "allowed"
        except OSError as exc:
            return exc.strerror

    async def main(pool_dir):
        found = {}
        database = open_read_only(DatabaseLocation("sqlite", path=f"{pool_dir}/pool.db"),
                                  password=None)

        def delete(connection):
            connection.execute(text("DELETE FROM balances"))
            connection.commit()

        try:
            found["balance"] = await database.run(lambda connection: connection.execute(
                text("SELECT amount FROM balances WHERE address = 'addrA'")).scalar())
            try:
                await database.run(delete)
                found["sql_write"] = "allowed"
            except Exception as exc:  # the outcome is what this test reports
                found["sql_write"] = type(exc).__name__ + ": " + str(exc.orig)
        finally:
            await database.dispose()
        for name in ("pool.db", "pool.db-wal", "pool.db-shm"):
            found["write " + name] = attempt(lambda: open(f"{pool_dir}/{name}", "r+b").close())
        found["list"] = attempt(lambda: os.listdir(pool_dir))
        found["spool"] = attempt(lambda: os.listdir(f"{pool_dir}/spool-x"))
        found["address file"] = attempt(lambda: open(f"{pool_dir}/pool-address").close())
        print(json.dumps(found))

    asyncio.run(main(sys.argv[1]))
""")


def run_as(user: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(as_user_argv(user, [sys.executable, "-c", script, *args]),
                          capture_output=True, text=True, timeout=120, check=False)


def test_the_web_user_reads_the_pool_database_and_nothing_else(
        server: tuple[Path, str]):
    base, prefix = server
    root, unit_dir, nginx_dir = base / "opt", base / "units", base / "nginx"
    unit_dir.mkdir()
    for sub in ("sites-available", "sites-enabled"):
        (nginx_dir / sub).mkdir(parents=True)
    multipool("init", "--root", str(root), "--unit-dir", str(unit_dir), "--nginx-dir",
              str(nginx_dir), "--json")
    multipool("coin", "add", "litecoin", "--prefix", prefix, "--network", "regtest",
              "--root", str(root), "--unit-dir", str(unit_dir), "--json")
    layout = Layout(root, "system")
    pool_dir, pool_user = layout.pool_dir(prefix), f"{prefix}pool"
    assert owner_group_mode(pool_dir) == (pool_user, WEB_USER, 0o2710)
    # A private file the engine keeps there (its pool address): 0600 like the spool.
    (pool_dir / "pool-address").write_text("rltc1q...\n")
    os.chown(pool_dir / "pool-address", *_ids(pool_user))
    os.chmod(pool_dir / "pool-address", 0o600)

    # The engine's side, under the units' umask.
    engine = subprocess.Popen(as_user_argv(pool_user, [
        "sh", "-c", f'umask 077 && exec "{sys.executable}" -c "$0" "$1"', ENGINE_SIDE,
        str(pool_dir)]), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert engine.stdout is not None
        line = engine.stdout.readline()
        assert line.strip() == "ready", engine.communicate(timeout=30)[1][-3000:]
        for name in ("pool.db", "pool.db-wal", "pool.db-shm"):
            assert owner_group_mode(pool_dir / name) == (pool_user, WEB_USER, 0o640), name
        spool = pool_dir / "spool-x"
        assert owner_group_mode(spool)[2] == 0o700
        assert {owner_group_mode(f)[2] for f in spool.iterdir()} == {0o600}

        web = run_as(WEB_USER, WEB_SIDE, str(pool_dir))
        assert web.returncode == 0, web.stderr[-3000:]
        found = json.loads(web.stdout)
        assert found["balance"] == 777
        assert found["sql_write"].startswith("OperationalError"), found
        assert "readonly" in found["sql_write"] or "read-only" in found["sql_write"]
        for key in ("write pool.db", "write pool.db-wal", "write pool.db-shm", "list",
                    "spool", "address file"):
            assert found[key] == "Permission denied", (key, found)
        # ... and still not the coin's config (RPC password) nor the wallet.
        for path in (layout.coin_file(prefix), layout.wallet_dir(prefix)):
            denied = subprocess.run(as_user_argv(WEB_USER, ["ls", "-l", str(path)]),
                                    capture_output=True, text=True, check=False)
            assert denied.returncode != 0 and "Permission denied" in denied.stderr, path
    finally:
        engine.communicate(input="", timeout=60)
    assert engine.returncode == 0
    # The engine's write went through; the web's did not.
    check = run_as(pool_user, "import sqlite3, sys; print(sqlite3.connect(sys.argv[1])"
                   ".execute('SELECT amount FROM balances').fetchall())",
                   str(pool_dir / "pool.db"))
    assert check.stdout.strip() == "[(777,)]", check.stderr


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, grp.getgrgid(entry.pw_gid).gr_gid
