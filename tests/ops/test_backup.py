"""`multipool backup`: the archive (0600, whole or absent), a coin whose daemon is down
(exit 1 naming the coin and the URL, config and database still saved), --keep, database
dumps on real PostgreSQL and MariaDB servers that restore with every row and never put
the password in argv, SQLite copies that create no file beside the pool's database (also
with only the capability the backup unit has), and the units `init` writes in system
mode, accepted by systemd and scored <= 2.0. The wallet part against a real litecoind is
in tests/functional/test_backup_wallet.py."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import shares
from multipool.devnet import free_port, write_coin_file
from multipool.ops.backup import (
    WALLET_COPY,
    BackupError,
    archive_name,
    archives,
    backup_server,
    open_regular,
    sqlite_copy,
)
from multipool.ops.layout import Layout
from multipool.ops.server import init_changes
from multipool.testdb import MariaDBServer, PostgresServer
from tests.ops.test_systemd import MAX_EXPOSURE, exposure, verify

# '#' and ';' start comments in a MariaDB option file, '"' and '\' need escapes there.
PASSWORD_MARKS = "#;\"\\"


# -- helpers shared with tests/functional/test_backup_wallet.py ----------------------------

def multipool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "multipool.cli", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def local_server(base: Path) -> Layout:
    """An initialised local-mode server tree under ``base``."""
    layout = Layout(base / "server", "local")
    for change in init_changes(layout):
        change.apply()
    return layout


def coin_data(prefix: str, rpc_url: str, database: str, state_dir: Path) -> dict[str, Any]:
    return {
        "coin": {"name": "litecoin", "prefix": prefix, "symbol": "LTC",
                 "algorithm": "scrypt", "network": "regtest"},
        "daemon": {"rpc_url": rpc_url, "rpc_user": "pool",
                   "rpc_password": "rpc-" + secrets.token_hex(8), "wallet": "pool"},
        "stratum": {"host": "127.0.0.1", "ports": [{"port": free_port(), "difficulty": 0.05}]},
        "pool": {"state_dir": str(state_dir), "database": database},
    }


def add_coin(layout: Layout, prefix: str, *, rpc_url: str | None = None,
             database: str | None = None, data: dict[str, Any] | None = None) -> str:
    """coin/<prefix>/coin.toml (and pool/<prefix>/); return the database URL."""
    pool_dir = layout.pool_dir(prefix)
    layout.coin_dir(prefix).mkdir(parents=True)
    pool_dir.mkdir(parents=True, mode=0o700)
    url = database or f"sqlite:///{pool_dir / 'pool.db'}"
    if data is None:
        data = coin_data(prefix, rpc_url or f"http://127.0.0.1:{free_port()}/", url, pool_dir)
    write_coin_file(layout.coin_file(prefix), data)
    return url


def share_rows(count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [{"time": now, "height": 100 + i, "address": f"rltc1qminer{i}", "worker": "rig",
             "ip": "127.0.0.1", "difficulty": 0.05, "share_difficulty": 0.07 + i,
             "accepted": True, "reject_code": None} for i in range(count)]


async def _fill(url: str, count: int) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        async with engine.begin() as connection:
            await connection.execute(shares.insert(), share_rows(count))
    finally:
        await engine.dispose()


def pool_database(url: str, count: int) -> None:
    """The pool's schema (the real migrations) and ``count`` shares in it."""
    asyncio.run(_fill(url, count))


def members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        found = {}
        for member in tar.getmembers():
            assert member.isfile() and member.mode == 0o600, member.name
            handle = tar.extractfile(member)
            assert handle is not None
            found[member.name] = handle.read()
        return found


def sqlite_count(data: bytes, directory: Path) -> int:
    """Rows in ``shares`` of a SQLite file given as bytes; the copy must stand alone (no
    WAL mode: bytes 18 and 19 of the header are 1)."""
    assert data[:16] == b"SQLite format 3\x00" and data[18:20] == b"\x01\x01"
    path = directory / f"copy-{secrets.token_hex(4)}.sqlite"
    path.write_bytes(data)
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return connection.execute("SELECT count(*) FROM shares").fetchone()[0]
    finally:
        connection.close()


# -- a coin whose daemon is down ----------------------------------------------------------

def test_daemon_down_saves_the_rest_and_exits_1(tmp_path: Path):
    layout = local_server(tmp_path)
    port = free_port()  # nothing listens there
    url = add_coin(layout, "ltc", rpc_url=f"http://127.0.0.1:{port}/")
    pool_database(url, 7)
    old = layout.backup / "multipool-20200101T000000Z.tar.gz"
    old.write_bytes(b"an old archive")

    result = multipool("backup", "--root", str(layout.root), "--json", "--keep", "1",
                       "--daemon-wait", "0.5")

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    [coin] = report["coins"]
    assert coin["prefix"] == "ltc"
    assert [e for e in report["errors"] if e.startswith("ltc: wallet")] == report["errors"]
    assert f"127.0.0.1:{port}" in report["errors"][0]
    assert "ltc: wallet" in result.stderr and f"127.0.0.1:{port}" in result.stderr
    archive = Path(report["archive"])
    assert archive.parent == layout.backup and archive.exists()
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert archive.stat().st_uid == os.geteuid()
    found = members(archive)
    assert found["ltc/coin.toml"] == layout.coin_file("ltc").read_bytes()
    assert found["multipool.toml"] == layout.config_file.read_bytes()
    assert "ltc/wallet.dat" not in found
    assert sqlite_count(found["ltc/database.sqlite"], tmp_path) == 7
    manifest = json.loads(found["manifest.json"])
    assert manifest["coins"][0]["errors"] == coin["errors"]
    assert {p["name"] for p in coin["parts"]} == {"ltc/coin.toml", "ltc/database.sqlite"}
    # A run that failed deletes no old archive, whatever --keep says.
    assert old.exists() and report["removed"] == []
    # Nothing else is left in backup/: no staging directory, no partial archive.
    assert sorted(p.name for p in layout.backup.iterdir()) == sorted(
        [".lock", old.name, archive.name])


def test_unknown_coin_is_refused(tmp_path: Path):
    layout = local_server(tmp_path)
    result = multipool("backup", "nope", "--root", str(layout.root))
    assert result.returncode == 2 and "no coin 'nope'" in result.stderr
    assert archives(layout.backup) == []


def test_broken_coin_toml_is_saved_and_reported(tmp_path: Path):
    layout = local_server(tmp_path)
    layout.coin_dir("bad").mkdir(parents=True)
    layout.coin_file("bad").write_text("[coin]\nname = 'x'\n")
    report = backup_server(layout, retry_for=0.1)
    assert not report.ok
    [error] = report.errors
    assert error.startswith("bad: coin.toml:")
    assert members(report.archive)["bad/coin.toml"] == b"[coin]\nname = 'x'\n"


# -- --keep -------------------------------------------------------------------------------

def test_keep_deletes_the_oldest_after_a_good_run(tmp_path: Path):
    layout = local_server(tmp_path)
    names = ["multipool-20250101T031500Z.tar.gz", "multipool-20250102T031500Z.tar.gz",
             "multipool-20250102T031500Z-1.tar.gz"]
    for name in names:
        (layout.backup / name).write_bytes(b"old")
    unrelated = layout.backup / "notes.txt"
    unrelated.write_text("an operator's file")

    result = multipool("backup", "--root", str(layout.root), "--keep", "2", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["coins"] == []
    new = Path(report["archive"])
    assert sorted(report["removed"]) == sorted(str(layout.backup / n) for n in names[:2])
    assert archives(layout.backup) == [layout.backup / names[2], new]
    assert unrelated.exists()


def test_archive_names_sort_by_time():
    moment = datetime(2026, 1, 30, 3, 15, tzinfo=UTC)
    first = archive_name(moment, set())
    assert first == "multipool-20260130T031500Z.tar.gz"
    assert archive_name(moment, {first}) == "multipool-20260130T031500Z-1.tar.gz"


def test_keep_must_be_positive(tmp_path: Path):
    layout = local_server(tmp_path)
    result = multipool("backup", "--root", str(layout.root), "--keep", "0")
    assert result.returncode == 2
    assert archives(layout.backup) == []


# -- reading files another user controls ---------------------------------------------------

def test_open_regular_refuses_links_and_other_owners(tmp_path: Path):
    target = tmp_path / "secret"
    target.write_text("not a wallet")
    link = tmp_path / WALLET_COPY
    link.symlink_to(target)
    with pytest.raises(BackupError, match="symbolic link"):
        open_regular(link)
    with pytest.raises(BackupError, match="not to the directory's owner"):
        open_regular(target, owner=os.geteuid() + 1)
    with pytest.raises(BackupError, match="not a regular file"):
        open_regular(tmp_path)
    with open_regular(target, owner=os.geteuid()) as handle:
        assert handle.read() == b"not a wallet"


# -- SQLite: consistent, and nothing created beside the pool's database -------------------

def test_sqlite_copy_of_a_closed_database_creates_no_files(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'pool' / 'pool.db'}"
    (tmp_path / "pool").mkdir()
    pool_database(url, 5)
    before = sorted(p.name for p in (tmp_path / "pool").iterdir())
    assert before == ["pool.db"]  # the engine closed: no -wal, no -shm
    sqlite_copy(tmp_path / "pool" / "pool.db", tmp_path / "copy.db")
    assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == before
    assert sqlite_count((tmp_path / "copy.db").read_bytes(), tmp_path) == 5


def test_sqlite_copy_reads_through_a_running_engines_wal(tmp_path: Path):
    (tmp_path / "pool").mkdir()
    source = tmp_path / "pool" / "pool.db"
    pool_database(f"sqlite:///{source}", 5)
    engine = sqlite3.connect(source)  # the engine, with commits only in its WAL
    try:
        engine.execute("PRAGMA journal_mode=WAL")
        engine.execute("PRAGMA wal_autocheckpoint=0")
        engine.execute("INSERT INTO shares (time, height, address, worker, ip, difficulty,"
                       " share_difficulty, accepted) SELECT time, height + 1000, address,"
                       " worker, ip, difficulty, share_difficulty, accepted FROM shares")
        engine.commit()
        engine.execute("BEGIN")  # and one it has not committed: not in the copy
        engine.execute("DELETE FROM shares")
        assert (tmp_path / "pool" / "pool.db-wal").stat().st_size > 0
        names = sorted(p.name for p in (tmp_path / "pool").iterdir())
        sqlite_copy(source, tmp_path / "copy.db")
        assert sorted(p.name for p in (tmp_path / "pool").iterdir()) == names
    finally:
        engine.rollback()
        engine.close()
    assert sqlite_count((tmp_path / "copy.db").read_bytes(), tmp_path) == 10


def _as_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: this test must not be skipped")
        pytest.skip("needs root")


COPY_WITH_UNIT_POWERS = """
import sys
from pathlib import Path
from multipool.ops.backup import sqlite_copy
sqlite_copy(Path(sys.argv[1]), Path(sys.argv[2]))
"""


@pytest.mark.parametrize("engine_running", [False, True])
def test_sqlite_copy_with_only_the_units_capability(engine_running: bool):
    """As in multipool-backup.service: root whose only capability is CAP_DAC_READ_SEARCH
    (read anything, write nothing it does not own), copying a database in a 0700
    directory of another user, with the engine stopped and running."""
    _as_root()
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is missing")
    base = Path(tempfile.mkdtemp(prefix="multipool-backup-", dir="/tmp"))
    try:
        pool_dir = base / "pool"
        pool_dir.mkdir()
        source = pool_dir / "pool.db"
        pool_database(f"sqlite:///{source}", 4)
        engine = None
        if engine_running:
            engine = sqlite3.connect(source)
            engine.execute("PRAGMA journal_mode=WAL")
            engine.execute("PRAGMA wal_autocheckpoint=0")
            engine.execute("DELETE FROM shares WHERE height = 100")
            engine.commit()
        os.chmod(pool_dir, 0o700)
        for path in [pool_dir, *pool_dir.iterdir()]:
            os.chown(path, 65534, 65534)  # nobody: like <prefix>pool, not root
        names = sorted(p.name for p in pool_dir.iterdir())
        result = subprocess.run(
            ["setpriv", "--bounding-set=-all,+dac_read_search", "--inh-caps=-all", "--",
             sys.executable, "-c", COPY_WITH_UNIT_POWERS, str(source), str(base / "copy.db")],
            capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert sorted(p.name for p in pool_dir.iterdir()) == names
        assert all(p.stat().st_uid == 65534 for p in pool_dir.iterdir())
        expected = 3 if engine_running else 4
        assert sqlite_count((base / "copy.db").read_bytes(), base) == expected
        if engine is not None:
            engine.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- PostgreSQL and MariaDB ----------------------------------------------------------------

def _postgresql_coin(server: PostgresServer, password: str) -> tuple[str, str]:
    name = "bk" + secrets.token_hex(4)
    literal = password.replace("'", "''")
    server.psql(f"CREATE ROLE {name} LOGIN PASSWORD '{literal}'")
    server.psql(f"CREATE DATABASE {name} OWNER {name}")
    url = (f"postgresql://{name}:{quote(password, safe='')}@{server.host}:{server.port}/"
           f"{name}")
    return url, name


def _postgresql_restore(server: PostgresServer, dump: bytes, tmp_path: Path) -> int:
    target = "restored" + secrets.token_hex(4)
    server.psql(f"CREATE DATABASE {target}")
    path = tmp_path / "restore.pgdump"
    path.write_bytes(dump)
    subprocess.run([str(server.bin_dir / "pg_restore"), "--no-owner", "--exit-on-error",
                    "-h", server.host, "-p", str(server.port), "-U", server.user,
                    "-d", target, str(path)], check=True, capture_output=True, timeout=120)
    return int(server.psql("SELECT count(*) FROM shares", target))


def _mariadb_coin(server: MariaDBServer, password: str) -> tuple[str, str]:
    name = "bk" + secrets.token_hex(4)
    literal = password.replace("\\", "\\\\").replace("'", "\\'")
    server.admin_sql(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{literal}'; "
                     f"CREATE DATABASE {name} CHARACTER SET utf8mb4; "
                     f"GRANT ALL PRIVILEGES ON {name}.* TO '{name}'@'%'")
    url = (f"mysql://{name}:{quote(password, safe='')}@{server.host}:{server.port}/"
           f"{name}")
    return url, name


def _mariadb_restore(server: MariaDBServer, dump: bytes, tmp_path: Path) -> int:
    target = "restored" + secrets.token_hex(4)
    server.admin_sql(f"CREATE DATABASE {target} CHARACTER SET utf8mb4")
    path = tmp_path / "restore.sql"
    path.write_bytes(dump)
    with path.open("rb") as dump_file:
        subprocess.run([server.tools["mariadb"], "--no-defaults", "-uroot",
                        f"--socket={server.socket_path}", target], stdin=dump_file,
                       check=True, capture_output=True, timeout=120)
    return int(server.admin_sql("SELECT count(*) FROM shares", target))


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_database_dump_restores_and_keeps_the_password_out_of_argv(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch):
    password = "pw" + PASSWORD_MARKS + secrets.token_hex(8)
    server: Any
    if backend == "postgresql":
        server = request.getfixturevalue("postgresql_passwords")
        url, _name = _postgresql_coin(server, password)
        member, restore = "ltc/database.pgdump", _postgresql_restore
    else:
        server = request.getfixturevalue("mariadb")
        url, _name = _mariadb_coin(server, password)
        member, restore = "ltc/database.sql", _mariadb_restore
    pool_database(url, 9)
    layout = local_server(tmp_path)
    add_coin(layout, "ltc", database=url)

    calls: list[tuple[list[str], dict[str, str] | None]] = []
    real_run = subprocess.run

    def recording_run(argv: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(([str(a) for a in argv], kwargs.get("env")))
        if "--defaults-extra-file" in " ".join(map(str, argv)):
            options = Path(str(argv[1]).split("=", 1)[1])
            assert stat.S_IMODE(options.stat().st_mode) == 0o600
            assert "password=" in options.read_text()
            calls[-1][0].append(f"(options file {options})")
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr("multipool.ops.commands.subprocess.run", recording_run)
    report = backup_server(layout, retry_for=0.2)
    monkeypatch.undo()

    [coin] = report.coins
    assert [e.split(":", 1)[0] for e in coin.errors] == ["wallet"], coin.errors  # no daemon
    dumps = [argv for argv, _env in calls if "dump" in Path(argv[0]).name]
    assert len(dumps) == 1, calls
    for argv, _env in calls:
        assert not any(password in arg or quote(password, safe="") in arg for arg in argv)
    if backend == "postgresql":
        [(argv, env)] = [(a, e) for a, e in calls if "dump" in Path(a[0]).name]
        assert "--format=custom" in argv and env is not None
        assert env["PGPASSWORD"] == password
    else:
        assert "--single-transaction" in dumps[0]
        options = Path(dumps[0][-1].removeprefix("(options file ").removesuffix(")"))
        assert not options.exists(), "the option file with the password is deleted"
    found = members(report.archive)
    assert restore(server, found[member], tmp_path) == 9
    # The staging directory (dump files, option file) is gone.
    assert not [p for p in layout.backup.iterdir() if p.name.startswith(".staging")]


# -- the units `init` writes in system mode ------------------------------------------------

def test_init_writes_the_backup_units_in_system_mode(tmp_path: Path):
    _as_root()
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is missing: run `make setup`")
    base = tmp_path / "srv"
    layout, unit_dir = Layout(base / "opt", "system"), base / "units"
    unit_dir.mkdir(parents=True)
    nginx_dir = base / "nginx"
    for sub in ("sites-available", "sites-enabled"):
        (nginx_dir / sub).mkdir(parents=True)
    plan = init_changes(layout, install_packages=False, unit_dir=unit_dir,
                        nginx_dir=nginx_dir)
    service, timer = unit_dir / "multipool-backup.service", unit_dir / "multipool-backup.timer"
    assert {c.target for c in plan} >= {str(service), str(timer)}
    # systemctl only knows /etc/systemd/system: nothing enables a unit elsewhere.
    assert not [c for c in plan if c.operation.startswith("systemd.")]
    for change in plan:  # the tree and the units, not the shared users or what is theirs
        if change.target.startswith(str(base)) and change.target != str(layout.web):
            change.apply()

    text = service.read_text()
    assert f"ExecStart={sys.executable} -m multipool.cli backup --root {layout.root}" in text
    assert f"ReadWritePaths={layout.backup}" in text
    assert "User=" not in text and "Type=oneshot" in text
    assert "CapabilityBoundingSet=CAP_DAC_READ_SEARCH" in text.splitlines()
    assert "IPAddressDeny=any" in text and "IPAddressAllow=localhost" in text
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("CapabilityBoundingSet="):
            assert lines[i - 1].startswith("# why: ")
    assert "PrivateUsers=" not in "\n".join(x for x in lines if not x.startswith("#"))
    assert "OnCalendar=*-*-* 03:15:00" in timer.read_text()
    assert "Persistent=true" in timer.read_text()

    assert verify(analyze, [service, timer]) == []
    score = exposure(analyze, service)
    print(f"multipool-backup.service: exposure {score}")
    assert score <= MAX_EXPOSURE
    again = init_changes(layout, install_packages=False, unit_dir=unit_dir)
    assert [c for c in again if c.target.startswith(str(unit_dir))] == []


def test_local_mode_has_no_units(tmp_path: Path):
    unit_dir = tmp_path / "units"
    plan = init_changes(Layout(tmp_path / "opt", "local"), unit_dir=unit_dir)
    assert plan and not [c for c in plan if c.target.startswith(str(unit_dir))
                         or c.operation.startswith("systemd")]
