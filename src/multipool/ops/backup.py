"""`multipool backup`: every coin's config, wallet and database in one archive, online.

One run writes ``backup/multipool-<UTC time>.tar.gz`` (0600, the caller's: root on a
server), written under a temporary name, fsynced and renamed, so an archive that exists
is whole. Inside::

    multipool.toml
    manifest.json                  what the run saved and what failed, per coin
    <prefix>/coin.toml
    <prefix>/<daemon conf>         when there is one (coin add regenerates it from coin.toml)
    <prefix>/wallet.dat            `backupwallet` over RPC: the daemon copies its own wallet
    <prefix>/database.sqlite       SQLite: the backup API, a consistent copy while the pool writes
    <prefix>/database.pgdump       PostgreSQL: pg_dump --format=custom (restore: pg_restore)
    <prefix>/database.sql          MariaDB: mariadb-dump --single-transaction

A part that fails does not stop the others: a coin whose daemon is down still has its
config and database saved, and the report names the coin and what failed. Old archives
beyond ``keep`` are deleted only after a run where nothing failed.

Where the daemon writes the wallet copy: the daemon writes the file itself, as its own
user, so it must be a place the daemon may write and the backup may read. In system mode
that is the daemon's datadir (wallet/<prefix>/, the only path its unit may write; /tmp is
private to it): the copy goes to ``wallet/<prefix>/multipool-backup.dat``, overwritten by
each run and left there, owned by the daemon user like the wallet beside it. The backup
service only reads (CAP_DAC_READ_SEARCH, no write access to any wallet), so it cannot
delete it, and needs no power over the wallets to run. In local mode the daemon runs as
the caller: the copy goes to a private 0700 staging directory under backup/ and is
deleted with it, so nothing is left beside the wallet, and a daemon whose datadir is
elsewhere (an operator's own node) works too. Either way the copy is opened without
following links and must be a regular file of the directory's owner: a daemon that was
taken over cannot make the backup read another file.

SQLite without files beside the pool's database: the source is opened read-only. While
the engine runs, its -wal and -shm exist and SQLite reads them (with the -shm read-only
when the backup may not write it). With no -wal (the engine stopped cleanly) a read-only
connection would have to create -wal and -shm beside the database, as the backup's user:
root-owned files there would lock the pool user out. So in that case the file is read as
``immutable`` (it is the whole database when there is no -wal) and the copy is kept only
if no -wal appeared and the file did not change meanwhile; else the copy is made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import io
import json
import logging
import os
import re
import secrets
import shutil
import socket
import sqlite3
import stat
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from multipool import __version__
from multipool.accounting.database import database_url, state_directory
from multipool.chain.rpc import DaemonClient
from multipool.config import CoinConfig, load_coin_config
from multipool.errors import ConfigError, PoolError
from multipool.ops import changes, systemd
from multipool.ops.changes import Change
from multipool.ops.coins import conf_name
from multipool.ops.commands import run_command
from multipool.ops.layout import Layout
from multipool.ops.services import ServiceSpec

DEFAULT_KEEP = 14
UNIT = "multipool-backup"
ON_CALENDAR = "*-*-* 03:15:00"
WALLET_COPY = "multipool-backup.dat"
ARCHIVE = re.compile(r"multipool-(\d{8}T\d{6}Z)(?:-(\d+))?\.tar\.gz")
LOCK_FILE = ".lock"
STAGING_PREFIX = ".staging-"
PARTIAL_PREFIX = ".partial-"
# A dump of a big pool database takes a while; a hung server must not block forever.
DUMP_TIMEOUT = 3600.0
# backupwallet copies the wallet file: seconds, even for a big wallet.
WALLET_TIMEOUT = 600.0

Progress = Callable[[str], None]
# The client's "retrying" warnings would only repeat the error the report gives.
_RPC_LOG = logging.getLogger("multipool.backup.rpc")
_RPC_LOG.addHandler(logging.NullHandler())
_RPC_LOG.propagate = False


class BackupError(PoolError):
    """One part of a backup could not be made; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Part:
    """One file of the archive."""

    name: str  # the member name: "ltc/wallet.dat"
    size: int

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "size": self.size}


@dataclass(slots=True)
class CoinBackup:
    """What the run saved of one coin, and what failed."""

    prefix: str
    parts: list[Part] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, object]:
        return {"prefix": self.prefix, "parts": [p.as_json() for p in self.parts],
                "errors": list(self.errors)}


@dataclass(slots=True)
class BackupReport:
    """The archive a run wrote, per coin what is in it and what failed, and the old
    archives deleted by ``keep``."""

    archive: Path
    size: int
    created: str
    parts: list[Part]  # server-wide: multipool.toml, manifest.json
    coins: list[CoinBackup]
    removed: list[Path] = field(default_factory=list)

    @property
    def errors(self) -> list[str]:
        return [f"{coin.prefix}: {error}" for coin in self.coins for error in coin.errors]

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, object]:
        return {"archive": str(self.archive), "size": self.size, "created": self.created,
                "ok": self.ok, "parts": [p.as_json() for p in self.parts],
                "coins": [c.as_json() for c in self.coins], "errors": self.errors,
                "removed": [str(p) for p in self.removed]}


# -- the archive --------------------------------------------------------------------------

class _Archive:
    """A tar.gz being written: every member 0600 root:root with the run's time."""

    def __init__(self, tar: tarfile.TarFile, mtime: float, staging: Path):
        self.tar = tar
        self.mtime = mtime
        self.staging = staging

    def add(self, name: str, source: IO[bytes] | bytes, size: int | None = None) -> Part:
        info = tarfile.TarInfo(name)
        info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "root", "root"
        info.mtime = int(self.mtime)
        if isinstance(source, bytes):
            info.size = len(source)
            self.tar.addfile(info, io.BytesIO(source))
        else:
            assert size is not None
            info.size = size
            self.tar.addfile(info, source)
        return Part(name, info.size)

    def add_own(self, name: str, path: Path) -> Part:
        """A file of the run's own (in the staging directory: nobody else changes it)."""
        with path.open("rb") as handle:
            return self.add(name, handle, os.fstat(handle.fileno()).st_size)

    def add_file(self, name: str, path: Path, *, owner: int | None = None) -> Part:
        """A file someone else may change meanwhile: copied to the staging directory
        first, since a member that came out shorter than its header says would spoil
        every member after it."""
        fd, copy = tempfile.mkstemp(dir=self.staging, prefix=".copy-")
        try:
            with open_regular(path, owner=owner) as source, os.fdopen(fd, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
            return self.add_own(name, Path(copy))
        finally:
            Path(copy).unlink(missing_ok=True)


def open_regular(path: Path, *, owner: int | None = None) -> IO[bytes]:
    """Given a path, return it opened for reading, refused unless it is a regular file (a
    link is not followed) owned by ``owner`` when given: a file in a directory another
    user controls cannot make the backup read something else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symbolic link
            raise BackupError(f"{path} is a symbolic link: refused") from None
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = f"{path} is not a regular file: refused"
    elif owner is not None and st.st_uid != owner:
        problem = (f"{path} belongs to uid {st.st_uid}, not to the directory's owner "
                   f"(uid {owner}): refused")
    if problem is not None:
        os.close(fd)
        raise BackupError(problem)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def archive_name(moment: datetime, taken: set[str]) -> str:
    """``multipool-20260130T031500Z.tar.gz``, with ``-1``, ``-2`` ... when a run in the
    same second took the name."""
    stamp = moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name, number = f"multipool-{stamp}.tar.gz", 0
    while name in taken:
        number += 1
        name = f"multipool-{stamp}-{number}.tar.gz"
    return name


def archives(directory: Path) -> list[Path]:
    """The archives in ``directory``, oldest first (by the time in their names)."""
    found = []
    for path in directory.iterdir():
        match = ARCHIVE.fullmatch(path.name)
        if match and path.is_file() and not path.is_symlink():
            found.append(((match.group(1), int(match.group(2) or 0)), path))
    return [path for _key, path in sorted(found)]


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete the oldest archives beyond the newest ``keep``; return what was deleted.
    Only files named like an archive are touched."""
    if keep < 1:
        raise ConfigError(f"must be at least 1, got {keep}", key="--keep")
    old = archives(directory)[:-keep]
    for path in old:
        path.unlink(missing_ok=True)
    return old


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One backup at a time: two would race for the wallet copy and the pruning."""
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another multipool backup is running (it holds "
                              f"{directory / LOCK_FILE})") from None
        yield
    finally:
        os.close(fd)


def _remove_leftovers(directory: Path) -> None:
    """A run that was killed leaves its staging directory and partial archive; with the
    lock held no other run is using them."""
    for path in directory.iterdir():
        if path.name.startswith(STAGING_PREFIX) and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.name.startswith(PARTIAL_PREFIX) and path.is_file():
            path.unlink(missing_ok=True)


# -- wallet -------------------------------------------------------------------------------

def wallet_destination(layout: Layout, prefix: str, staging: Path) -> Path:
    """Where the daemon writes its wallet copy (see the module's docstring)."""
    if layout.system:
        wallet_dir = layout.wallet_dir(prefix)
        if not wallet_dir.is_dir():
            raise BackupError(f"no wallet directory {wallet_dir}: run `multipool coin add "
                              f"{prefix}`")
        return wallet_dir / WALLET_COPY
    return staging / f"wallet-{prefix}-{secrets.token_hex(8)}.dat"


async def _backupwallet(config: CoinConfig, destination: Path, retry_for: float) -> None:
    d = config.daemon
    async with DaemonClient(d.rpc_url, user=d.rpc_user, password=d.rpc_password,
                            cookie_file=d.rpc_cookie, wallet=d.wallet,
                            timeout=WALLET_TIMEOUT, retry_for=retry_for,
                            logger=_RPC_LOG) as client:
        await client.backupwallet(destination)


def backup_wallet(config: CoinConfig, destination: Path, *, retry_for: float) -> None:
    """Ask the coin's daemon to copy its wallet to ``destination``; the message of a
    failure names the daemon's URL."""
    try:
        asyncio.run(_backupwallet(config, destination, retry_for))
    except PoolError as exc:
        url = config.daemon.rpc_url
        text = str(exc)
        raise BackupError(text if url.rstrip("/") in text else
                          f"daemon at {url}: {text}") from None


# -- databases ----------------------------------------------------------------------------

def _stat_identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _sqlite_backup(uri: str, destination: Path) -> None:
    destination.unlink(missing_ok=True)
    source = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        target = sqlite3.connect(destination)
        try:
            source.backup(target)
            # The copy stands alone: no -wal needed to open it (a WAL source marks
            # its pages as WAL mode).
            target.execute("PRAGMA journal_mode=DELETE")
            target.commit()
        finally:
            target.close()
    finally:
        source.close()


def sqlite_copy(source: Path, destination: Path, *, attempts: int = 5) -> None:
    """Given a live SQLite database, write a consistent copy of it to ``destination``
    without creating any file beside the source (see the module's docstring)."""
    wal = source.with_name(source.name + "-wal")
    problem = "it changed during every attempt"
    for _attempt in range(attempts):
        if not source.is_file() or source.is_symlink():
            raise BackupError(f"no SQLite database at {source} (the pool engine creates "
                              "it when it first starts)")
        base = "file:" + quote(str(source))
        try:
            if wal.exists():  # a running engine: read through its WAL
                _sqlite_backup(f"{base}?mode=ro", destination)
                return
            before = _stat_identity(source)
            _sqlite_backup(f"{base}?mode=ro&immutable=1", destination)
            if not wal.exists() and _stat_identity(source) == before:
                return
        except sqlite3.Error as exc:  # the engine started or stopped meanwhile
            problem = f"{exc}"
        time.sleep(0.2)
    raise BackupError(f"cannot copy SQLite database {source}: {problem}")


def _sqlite_path(url: URL, config: CoinConfig) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError(f"[pool] database {url.render_as_string()} is not a file")
    path = Path(url.database)
    # A relative path is relative to the engine's working directory, its state dir.
    return path if path.is_absolute() else state_directory(config) / path


def _tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or next(
            (str(Path(d) / name) for d in ("/usr/bin", "/usr/sbin")
             if (Path(d) / name).is_file()), None)
        if found:
            return found
    raise BackupError(f"{names[0]} is not installed (apt-get install "
                      f"{'postgresql-client' if names[0] == 'pg_dump' else 'mariadb-client'})")


def pg_dump(url: URL, destination: Path) -> None:
    """``pg_dump --format=custom`` of the URL's database as the URL's role; the password
    goes in the environment (PGPASSWORD), never in argv, where any user could read it."""
    argv = [_tool("pg_dump"), "--format=custom", "--no-password", f"--file={destination}"]
    if url.host:
        argv.append(f"--host={url.host}")
    if url.port:
        argv.append(f"--port={url.port}")
    if url.username:
        argv.append(f"--username={url.username}")
    argv.append(f"--dbname={url.database}")
    env = {**os.environ, "PGCONNECT_TIMEOUT": "30", "PGAPPNAME": "multipool-backup"}
    env.pop("PGPASSWORD", None)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    secrets_ = [str(url.password)] if url.password else []
    run_command(argv, env=env, secrets=secrets_, timeout=DUMP_TIMEOUT)


def _option_value(value: str) -> str:
    """A value for a MariaDB option file, quoted with the escapes it reads."""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def mariadb_dump(url: URL, destination: Path, staging: Path) -> None:
    """``mariadb-dump --single-transaction`` (a consistent snapshot without locking the
    pool's tables) of the URL's database as the URL's account; the credentials go in a
    0600 option file in the staging directory, never in argv, deleted afterwards."""
    lines = ["[client]"]
    if url.username:
        lines.append(f"user={_option_value(url.username)}")
    if url.password:
        lines.append(f"password={_option_value(str(url.password))}")
    if url.host:
        lines.append(f"host={_option_value(url.host)}")
    if url.port:
        lines.append(f"port={url.port}")
    fd, options = tempfile.mkstemp(dir=staging, prefix=".client-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w") as handle:  # mkstemp: 0600, ours
            handle.write("\n".join(lines) + "\n")
        # --defaults-extra-file must come first.
        argv = [_tool("mariadb-dump", "mysqldump"), f"--defaults-extra-file={options}",
                "--single-transaction", "--quick", "--skip-lock-tables",
                "--default-character-set=utf8mb4", f"--result-file={destination}",
                "--", str(url.database)]
        run_command(argv, secrets=[str(url.password)] if url.password else [],
                    timeout=DUMP_TIMEOUT)
    finally:
        Path(options).unlink(missing_ok=True)


def dump_database(config: CoinConfig, staging: Path) -> tuple[str, Path]:
    """Given a coin, write its database's dump into ``staging``; return the archive
    member's suffix (``sqlite``, ``pgdump`` or ``sql``) and the file."""
    text = database_url(config)
    try:
        url = make_url(text)
    except ArgumentError:
        raise BackupError("[pool] database is not a database URL") from None
    backend = url.drivername.split("+", 1)[0]
    prefix = config.coin.prefix
    if backend == "sqlite":
        path = staging / f"{prefix}.sqlite"
        sqlite_copy(_sqlite_path(url, config), path)
        return "sqlite", path
    if not url.database:
        raise BackupError(f"no database name in [pool] database of {config.path}")
    if backend in ("postgresql", "postgres"):
        path = staging / f"{prefix}.pgdump"
        pg_dump(url, path)
        return "pgdump", path
    if backend in ("mysql", "mariadb"):
        path = staging / f"{prefix}.sql"
        mariadb_dump(url, path, staging)
        return "sql", path
    raise BackupError(f"unsupported database {backend!r}")


# -- one coin, the whole server ------------------------------------------------------------

def _part(coin: CoinBackup, what: str, make: Callable[[], Part | None]) -> None:
    """Run one part; a failure is recorded and the next part goes on."""
    try:
        part = make()
    except (PoolError, OSError, sqlite3.Error) as exc:
        coin.errors.append(f"{what}: {exc}")
        return
    if part is not None:
        coin.parts.append(part)


def backup_coin(layout: Layout, prefix: str, archive: _Archive, staging: Path, *,
                retry_for: float, progress: Progress) -> CoinBackup:
    """Add one coin's config, daemon config, wallet and database to the archive."""
    coin = CoinBackup(prefix)
    progress(f"{prefix}: coin.toml")
    _part(coin, "coin.toml",
          lambda: archive.add_file(f"{prefix}/coin.toml", layout.coin_file(prefix)))
    try:
        config = load_coin_config(layout.coin_file(prefix))
    except ConfigError as exc:
        coin.errors.append(f"coin.toml: {exc}: no daemon config, wallet or database "
                           "saved")
        return coin

    conf = layout.wallet_dir(prefix) / conf_name(config)
    if conf.exists() or conf.is_symlink():
        progress(f"{prefix}: {conf.name}")
        _part(coin, conf.name, lambda: archive.add_file(f"{prefix}/{conf.name}", conf))

    def wallet() -> Part:
        destination = wallet_destination(layout, prefix, staging)
        progress(f"{prefix}: wallet (backupwallet at {config.daemon.rpc_url})")
        backup_wallet(config, destination, retry_for=retry_for)
        owner = destination.parent.stat().st_uid
        try:
            return archive.add_file(f"{prefix}/wallet.dat", destination, owner=owner)
        finally:
            if not layout.system:
                destination.unlink(missing_ok=True)

    _part(coin, "wallet", wallet)

    def database() -> Part:
        progress(f"{prefix}: database")
        suffix, path = dump_database(config, staging)
        try:
            return archive.add_own(f"{prefix}/database.{suffix}", path)
        finally:
            path.unlink(missing_ok=True)

    _part(coin, "database", database)
    return coin


def backup_server(layout: Layout, prefixes: Sequence[str] | None = None, *,
                  keep: int = DEFAULT_KEEP, progress: Progress | None = None,
                  retry_for: float = 10.0, now: datetime | None = None) -> BackupReport:
    """Given an initialised server, write one archive of multipool.toml and, for each
    coin (all by default), its coin.toml, daemon config, wallet and database; delete the
    archives beyond the newest ``keep`` when nothing failed. ``retry_for``: seconds to
    wait for a daemon that does not answer.

    Raises ConfigError for an unknown coin or a bad ``keep`` (before anything is
    written), BackupError when no archive could be written at all; a part that fails is
    in the report instead (``report.ok`` is False)."""
    if keep < 1:
        raise ConfigError(f"must be at least 1, got {keep}", key="--keep")
    known = layout.prefixes()
    chosen = list(prefixes) if prefixes else known
    for prefix in chosen:
        if prefix not in known:
            raise ConfigError(f"no coin {prefix!r} on this server (coins: "
                              f"{', '.join(known) or 'none'})", key="PREFIX")
    directory = layout.backup
    if not directory.is_dir():
        raise ConfigError(f"no backup directory {directory}: run `multipool init --root "
                          f"{layout.root}`", key="--root")
    say = progress or (lambda _message: None)
    moment = now or datetime.now(UTC)
    with _locked(directory):
        _remove_leftovers(directory)
        staging = Path(tempfile.mkdtemp(dir=directory, prefix=STAGING_PREFIX))
        fd, partial = tempfile.mkstemp(dir=directory, prefix=PARTIAL_PREFIX)  # 0600
        try:
            with os.fdopen(fd, "wb") as raw:
                with tarfile.open(fileobj=raw, mode="w:gz") as tar:
                    archive = _Archive(tar, moment.timestamp(), staging)
                    say("multipool.toml")
                    parts = [archive.add_file("multipool.toml", layout.config_file)]
                    coins = [backup_coin(layout, prefix, archive, staging,
                                         retry_for=retry_for, progress=say)
                             for prefix in chosen]
                    created = moment.astimezone(UTC).isoformat()
                    manifest = _manifest(layout, created, parts, coins)
                    parts.append(archive.add("manifest.json", manifest))
                raw.flush()
                os.fsync(raw.fileno())
            final = directory / archive_name(moment, {p.name for p in directory.iterdir()})
            os.replace(partial, final)
            changes.fsync_directory(directory)
        finally:
            Path(partial).unlink(missing_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
        report = BackupReport(final, final.stat().st_size, created, parts, coins)
        if report.ok:
            say(f"keeping the newest {keep} archives")
            report.removed = prune(directory, keep)
    return report


def _manifest(layout: Layout, created: str, parts: list[Part],
              coins: list[CoinBackup]) -> bytes:
    data: dict[str, Any] = {
        "format": 1, "created": created, "multipool": __version__,
        "host": socket.gethostname(), "root": str(layout.root), "mode": layout.mode,
        "parts": [p.as_json() for p in parts], "coins": [c.as_json() for c in coins]}
    return (json.dumps(data, indent=2) + "\n").encode()


# -- the timer ----------------------------------------------------------------------------

def backup_spec(layout: Layout) -> ServiceSpec:
    """The backup as a oneshot service: root (no User=), because it reads every coin's
    files, but writing only backup/."""
    return ServiceSpec(
        name=UNIT, description="multipool backup of every coin",
        argv=(sys.executable, "-m", "multipool.cli", "backup", "--root", str(layout.root)),
        working_dir=layout.root, writable=(layout.backup,), network=False,
        stop_timeout=120.0)


# The strict settings that the backup must relax to read files of the coins' users.
_RELAXED = {
    "CapabilityBoundingSet=": [
        "# why: it reads what the coins' users own (the wallet copy and daemon config in "
        "wallet/<prefix>/, the SQLite database in pool/<prefix>/), which needs "
        "CAP_DAC_READ_SEARCH; nothing lets it write there (ProtectSystem=strict, "
        "ReadWritePaths= only backup/)",
        "CapabilityBoundingSet=CAP_DAC_READ_SEARCH"],
    "PrivateUsers=yes": [
        "# why: no PrivateUsers=: in a user namespace the coins' users are unmapped and "
        "no capability reaches their files"],
}


def backup_units(layout: Layout) -> dict[str, str]:
    """multipool-backup.service and .timer (daily at 03:15, a missed run at the next
    boot), by file name, for :func:`multipool.ops.systemd.install_units`."""
    units = systemd.scheduled_units(backup_spec(layout), ON_CALENDAR)
    service = f"{UNIT}.service"
    lines: list[str] = []
    for line in units[service].splitlines():
        lines += _RELAXED.get(line, [line])
    units[service] = "\n".join(lines) + "\n"
    return units


def backup_unit_changes(layout: Layout, unit_dir: Path = systemd.UNIT_DIR) -> list[Change]:
    """System mode: the backup service and its timer written and, when they are in
    systemd's own unit directory, the timer enabled (and started where systemd runs)."""
    if not layout.system:
        return []
    plan = systemd.install_units(backup_units(layout), unit_dir)
    if unit_dir == systemd.UNIT_DIR:  # systemctl knows no other directory
        plan += systemd.service_state_changes(f"{UNIT}.timer",
                                              running=systemd.systemd_running(),
                                              enabled=True)
    return plan
