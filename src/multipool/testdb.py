"""Throwaway PostgreSQL and MariaDB servers for tests: real servers, private data dirs.

Each server gets its own temporary directory (data, socket, log), listens on a free port
on 127.0.0.1 only, and is stopped and its directory removed when the ``with`` block ends,
also when starting or the block failed. Servers a caller forgot to stop are killed at
interpreter exit. Standard library only: set-up goes through the servers' own binaries
(``initdb``/``pg_ctl``/``psql``, ``mariadb-install-db``/``mariadbd``/``mariadb``).

    with PostgresServer() as pg:
        url = pg.create_database("accounting")  # postgresql+asyncpg://pool@127.0.0.1:P/accounting
    with MariaDBServer() as db:
        url = db.create_database("accounting")  # mysql+aiomysql://pool:PW@127.0.0.1:P/accounting

Outages: inside the block, ``stop_server()`` shuts the server down cleanly (its clients'
connections drop, new ones are refused) and keeps its directory; ``start_server()`` brings
it back on the same data directory and port, with its databases, users and password, so
URLs taken before stay valid; ``restart(down_seconds=...)`` does both. They block, so an
asyncio test runs them in a thread (``asyncio.to_thread``). ``start_server()`` fails if
another process took the port meanwhile (unlikely: Linux gives ``bind(0)`` odd ports and
outgoing connections even ones). A server that fails to come back is stopped; the
``with`` block still removes its directory.

Root: ``initdb`` refuses to run as root, so when the effective uid is 0 ``initdb`` and
``pg_ctl`` run through ``runuser -u postgres --`` (user from $MULTIPOOL_PG_USER, else
``postgres``, else ``nobody``) and the temporary directory is chowned to that user; it is
created under the system temporary directory (``/tmp``), not under a caller's directory,
because pytest's ``tmp_path`` (mode 0700, owned by root) cannot be entered by that user.
``mariadbd`` runs as root with ``--user=root``.

Durability is off (PostgreSQL ``fsync=off``, ``full_page_writes=off``; ``initdb -N``;
MariaDB ``--innodb-flush-log-at-trx-commit=0``): a crash loses the data, which is thrown
away anyway. ``durable=True`` keeps each server's own defaults (every commit flushed to
disk), for benchmarks that measure what durability costs.

Measured on the development VM (Debian 12, 2 CPUs, PostgreSQL 15, MariaDB 10.11, as
root, three runs each): PostgreSQL start 0.96-1.03 s (initdb ~0.85 s of it), stop 0.13 s;
MariaDB start 0.79-0.87 s (mariadb-install-db ~0.7 s of it), stop 0.07 s. Each server
records its own in ``start_seconds`` and ``stop_seconds`` (the last start or stop,
restarts included). Restarts on the same VM (no initdb or install-db; three each):
PostgreSQL stop_server 0.11 s, start_server 0.12 s; MariaDB 0.02 s and 0.08-0.09 s.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
PG_USER = "pool"
MARIADB_USER = "pool"

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

# Servers still running, killed at interpreter exit should a caller forget to stop them.
_RUNNING: set[PostgresServer | MariaDBServer] = set()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_RUNNING):
        server.kill()


class TestDBError(RuntimeError):
    """A throwaway database server could not be set up, started or used."""

    __test__ = False  # not a pytest test class, despite the name


def _free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad database name {name!r}: letters, digits and _ only")
    return name


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie (a daemonised postmaster is
    reparented to PID 1, which may never reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _run(argv: list[str], *, what: str, cwd: Path, timeout: float = START_TIMEOUT,
         stdin: str | None = None) -> str:
    """Run a set-up command; return its stdout or raise TestDBError with its output."""
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            argv, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout,
            check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TestDBError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        raise TestDBError(f"{what} failed with code {done.returncode}:\n"
                          f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


# --- PostgreSQL ----------------------------------------------------------------------


def find_pg_bin() -> Path | None:
    """Return the PostgreSQL bin directory ($MULTIPOOL_PG_BIN first, else the newest
    /usr/lib/postgresql/*/bin) holding initdb, pg_ctl and psql, or None."""
    env = os.environ.get("MULTIPOOL_PG_BIN")
    candidates = [Path(env)] if env else []

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for directory in candidates:
        if all(os.access(directory / tool, os.X_OK) for tool in ("initdb", "pg_ctl", "psql")):
            return directory
    return None


def _pg_os_user() -> str:
    for name in (os.environ.get("MULTIPOOL_PG_USER"), "postgres", "nobody"):
        if name:
            with contextlib.suppress(KeyError):
                pwd.getpwnam(name)
                return name
    raise TestDBError("running as root, but no user postgres or nobody to run initdb as")


class PostgresServer:
    """A throwaway PostgreSQL cluster: superuser ``pool``, trust auth, 127.0.0.1 only.
    With ``password_auth=True`` only ``pool`` is trusted and every other role needs its
    password over TCP (to test roles and passwords).

    A context manager; or call :meth:`start` and :meth:`stop` (which always cleans up).
    :meth:`stop_server` and :meth:`start_server` make an outage in between.
    """

    def __init__(self, *, bin_dir: str | Path | None = None,
                 start_timeout: float = START_TIMEOUT, password_auth: bool = False,
                 durable: bool = False):
        found = Path(bin_dir) if bin_dir else find_pg_bin()
        if found is None:
            raise FileNotFoundError("PostgreSQL not found under /usr/lib/postgresql/*/bin: "
                                    "install the postgresql package or set MULTIPOOL_PG_BIN")
        self.bin_dir = found
        self.start_timeout = start_timeout
        self.password_auth = password_auth
        self.durable = durable
        self.host = "127.0.0.1"
        self.user = PG_USER
        self.port = 0
        self.pid: int | None = None
        self.tmpdir: Path | None = None
        self.start_seconds = 0.0
        self.stop_seconds = 0.0
        # As root, initdb and pg_ctl run as an unprivileged user (initdb refuses root).
        self.os_user = _pg_os_user() if os.geteuid() == 0 else None

    def __repr__(self) -> str:
        return f"PostgresServer({self.host}:{self.port}, pid={self.pid})"

    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None, "server not started"
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        assert self.tmpdir is not None, "server not started"
        return self.tmpdir / "server.log"

    def _as_owner(self, tool: str, *args: str) -> list[str]:
        argv = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", self.os_user, "--", *argv] if self.os_user else argv

    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def start(self) -> None:
        """Create the cluster and start the server; return once it accepts connections."""
        if self.running():
            return
        started = time.monotonic()
        _RUNNING.add(self)
        try:
            self.tmpdir = Path(tempfile.mkdtemp(prefix="multipool-pg-"))
            if self.os_user:
                entry = pwd.getpwnam(self.os_user)
                os.chown(self.tmpdir, entry.pw_uid, entry.pw_gid)
            _run(self._as_owner("initdb", "-D", str(self.datadir), "-U", self.user,
                                "--auth=trust", "-N", "-E", "UTF8", "--locale=C"),
                 what="initdb", cwd=self.tmpdir)
            if self.password_auth:
                self._require_passwords()
            for attempt in range(3):  # another process may take the port before us
                self.port = _free_port()
                try:
                    self._pg_ctl_start()
                    break
                except TestDBError as exc:
                    if attempt == 2 or "could not bind" not in str(exc):
                        raise
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def _require_passwords(self) -> None:
        """pg_hba.conf for ``password_auth``: ``pool`` keeps trust, every other role must
        give its password (scram-sha-256) over TCP. Rewritten in place, so the file keeps
        its owner and mode."""
        (self.datadir / "pg_hba.conf").write_text(
            "# multipool.testdb, password_auth=True\n"
            "local all all trust\n"
            f"host all {self.user} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")

    def _pg_ctl_start(self) -> None:
        """Start the postmaster on the existing cluster and ``self.port``; wait for it."""
        assert self.tmpdir is not None
        options = f"-p {self.port} -k {self.tmpdir} -c listen_addresses={self.host}"
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        try:
            _run(self._as_owner("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile),
                                "-w", "-t", str(int(self.start_timeout)), "-o", options,
                                "start"),
                 what="pg_ctl start", cwd=self.tmpdir, timeout=self.start_timeout + 5)
        except TestDBError as exc:
            raise TestDBError(f"{exc}\n{_tail(self.logfile)}") from None
        self.pid = int((self.datadir / "postmaster.pid").read_text().split()[0])

    def stop_server(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut the server down (``pg_ctl stop -m fast``: open sessions are ended, SIGKILL
        after ``timeout``) but keep its directory and port for :meth:`start_server`.
        Safe to call when it is stopped already."""
        if self.tmpdir is None:
            raise TestDBError("server not started")
        started = time.monotonic()
        if self.running():
            with contextlib.suppress(TestDBError):
                _run(self._as_owner("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w",
                                    "-t", str(int(timeout)), "stop"),
                     what="pg_ctl stop", cwd=self.tmpdir, timeout=timeout + 5)
            assert self.pid is not None
            if pid_alive(self.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                _wait_gone(self.pid, 10.0)
        self.pid = None
        self.stop_seconds = time.monotonic() - started

    def start_server(self) -> None:
        """Start a server stopped by :meth:`stop_server` again on the same data directory
        and port; return once it accepts connections. On failure the server is stopped
        (its directory stays until :meth:`stop`) and TestDBError tells why."""
        if self.tmpdir is None:
            raise TestDBError("server not started: use start(), which creates the cluster")
        if self.running():
            return
        started = time.monotonic()
        try:
            self._pg_ctl_start()
        except BaseException:
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.pid = int((self.datadir / "postmaster.pid").read_text().split()[0])
            self.stop_server()
            raise
        self.start_seconds = time.monotonic() - started

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server, leave it down for ``down_seconds``, start it again."""
        self.stop_server()
        time.sleep(down_seconds)
        self.start_server()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server (``pg_ctl stop -m fast``, SIGKILL after ``timeout``) and remove
        its directory. Safe to call more than once, and after a failed start."""
        started = time.monotonic()
        try:
            if self.tmpdir is not None and (self.datadir / "postmaster.pid").exists():
                if self.pid is None:  # start failed after the server came up
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        text = (self.datadir / "postmaster.pid").read_text()
                        self.pid = int(text.split()[0])
                with contextlib.suppress(TestDBError):
                    _run(self._as_owner("pg_ctl", "-D", str(self.datadir), "-m", "fast",
                                        "-w", "-t", str(int(timeout)), "stop"),
                         what="pg_ctl stop", cwd=self.tmpdir, timeout=timeout + 5)
        finally:
            self.kill()
        self.stop_seconds = time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the postmaster if it still runs, and remove the directory."""
        if self.pid is not None and pid_alive(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            _wait_gone(self.pid, 10.0)
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        _RUNNING.discard(self)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        """Return the SQLAlchemy URL of ``database`` (no password: trust auth)."""
        return f"postgresql+{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql over TCP as ``pool``; return unaligned, tuples-only output."""
        return _run([str(self.bin_dir / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-At",
                     "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
                     "-c", sql], what="psql", cwd=Path(tempfile.gettempdir()))

    def create_database(self, name: str) -> str:
        """Create database ``name`` (letters, digits, _); return its URL."""
        self.psql(f'CREATE DATABASE "{_check_name(name)}"')
        return self.url(name)


# --- MariaDB -------------------------------------------------------------------------

MARIADB_TOOLS = ("mariadb-install-db", "mariadbd", "mariadb")


def find_mariadb() -> dict[str, str] | None:
    """Return the paths of mariadb-install-db, mariadbd and mariadb
    (searched in $MULTIPOOL_MARIADB_BIN, $PATH, /usr/sbin, /usr/bin), or None."""
    path = os.pathsep.join(filter(None, (os.environ.get("MULTIPOOL_MARIADB_BIN"),
                                         os.environ.get("PATH"), "/usr/sbin", "/usr/bin")))
    found = {tool: shutil.which(tool, path=path) for tool in MARIADB_TOOLS}
    if not all(found.values()):
        return None
    return {tool: str(where) for tool, where in found.items()}


class MariaDBServer:
    """A throwaway MariaDB server: user ``pool`` with a random password and every
    privilege, 127.0.0.1 only. A context manager; or :meth:`start` and :meth:`stop`;
    :meth:`stop_server` and :meth:`start_server` make an outage in between."""

    def __init__(self, *, start_timeout: float = START_TIMEOUT, durable: bool = False):
        found = find_mariadb()
        if found is None:
            raise FileNotFoundError("MariaDB not found (need " + ", ".join(MARIADB_TOOLS)
                                    + "): install the mariadb-server package")
        self.tools = found
        self.start_timeout = start_timeout
        self.durable = durable
        self.host = "127.0.0.1"
        self.user = MARIADB_USER
        self.password = secrets.token_hex(16)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.tmpdir: Path | None = None
        self.start_seconds = 0.0
        self.stop_seconds = 0.0
        self.as_root = os.geteuid() == 0

    def __repr__(self) -> str:
        return f"MariaDBServer({self.host}:{self.port}, pid={self.pid})"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None, "server not started"
        return self.tmpdir / "data"

    @property
    def socket_path(self) -> Path:
        assert self.tmpdir is not None, "server not started"
        return self.tmpdir / "mariadb.sock"

    @property
    def logfile(self) -> Path:
        assert self.tmpdir is not None, "server not started"
        return self.tmpdir / "server.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Create the data dir, start mariadbd, create user ``pool``; return once ready."""
        if self.running():
            return
        started = time.monotonic()
        _RUNNING.add(self)
        root = ["--user=root"] if self.as_root else []
        try:
            self.tmpdir = Path(tempfile.mkdtemp(prefix="multipool-mariadb-"))
            # normal: root@localhost without password (not unix_socket auth, which would
            # only let in the OS user root), so any OS user can set up over the socket.
            _run([self.tools["mariadb-install-db"], "--no-defaults",
                  f"--datadir={self.datadir}", "--auth-root-authentication-method=normal",
                  "--skip-test-db", *root], what="mariadb-install-db", cwd=self.tmpdir)
            for attempt in range(3):  # another process may take the port before us
                self.port = _free_port()
                self._spawn()
                try:
                    self._wait_ready()
                    break
                except TestDBError:
                    if attempt == 2 or "Address already in use" not in _tail(self.logfile):
                        raise
            self.admin_sql(f"CREATE USER '{self.user}'@'%' IDENTIFIED BY '{self.password}';"
                           f" GRANT ALL PRIVILEGES ON *.* TO '{self.user}'@'%';")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started

    def _spawn(self) -> None:
        root = ["--user=root"] if self.as_root else []
        with open(self.logfile, "ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                [self.tools["mariadbd"], "--no-defaults", f"--datadir={self.datadir}",
                 f"--socket={self.socket_path}", f"--port={self.port}",
                 f"--bind-address={self.host}", f"--pid-file={self.tmpdir}/mariadbd.pid",
                 "--skip-name-resolve",
                 f"--innodb-flush-log-at-trx-commit={1 if self.durable else 0}",
                 "--innodb-buffer-pool-size=32M", *root],
                cwd=self.tmpdir, stdin=subprocess.DEVNULL, stdout=log, stderr=log)

    def _wait_ready(self) -> None:
        """Wait for the server's greeting on its TCP port (sent once it is ready)."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise TestDBError(f"mariadbd exited with code {self.process.returncode}:\n"
                                  f"{_tail(self.logfile)}")
            with contextlib.suppress(OSError):
                with socket.create_connection((self.host, self.port), timeout=2) as conn:
                    if conn.recv(64):
                        return
            if time.monotonic() > deadline:
                raise TestDBError(f"mariadbd not ready after {self.start_timeout:.0f}s:\n"
                                  f"{_tail(self.logfile)}")
            time.sleep(0.02)

    def _terminate(self, timeout: float) -> None:
        if self.running():
            assert self.process is not None
            # SIGTERM is mariadbd's clean shutdown, like `mariadb-admin shutdown`, but
            # that client polls the pid file once a second: 1 s per stop, not 0.02 s.
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout)

    def stop_server(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut the server down (SIGTERM, a clean shutdown that ends open connections;
        SIGKILL after ``timeout``) but keep its directory and port for
        :meth:`start_server`. Safe to call when it is stopped already."""
        if self.tmpdir is None:
            raise TestDBError("server not started")
        started = time.monotonic()
        self._terminate(timeout)
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.stop_seconds = time.monotonic() - started

    def start_server(self) -> None:
        """Start a server stopped by :meth:`stop_server` again on the same data directory
        and port (user ``pool`` and its password are in the data); return once it accepts
        connections. On failure the server is stopped (its directory stays until
        :meth:`stop`) and TestDBError tells why."""
        if self.tmpdir is None:
            raise TestDBError("server not started: use start(), which creates the data dir")
        if self.running():
            return
        started = time.monotonic()
        try:
            self._spawn()
            self._wait_ready()
        except BaseException:
            self.stop_server()
            raise
        self.start_seconds = time.monotonic() - started

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the server, leave it down for ``down_seconds``, start it again."""
        self.stop_server()
        time.sleep(down_seconds)
        self.start_server()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Shut the server down (SIGTERM, a clean shutdown; SIGKILL after ``timeout``) and
        remove its directory. Safe to call more than once, and after a failed start."""
        started = time.monotonic()
        try:
            self._terminate(timeout)
        finally:
            self.kill()
        self.stop_seconds = time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL mariadbd if it still runs, and remove the directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        _RUNNING.discard(self)

    def __enter__(self) -> MariaDBServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, database: str = "", driver: str = "aiomysql") -> str:
        """Return the SQLAlchemy URL of ``database`` as user ``pool``."""
        return (f"mysql+{driver}://{self.user}:{self.password}@{self.host}:{self.port}"
                f"/{database}")

    def create_admin(self, name: str = "admin", driver: str = "aiomysql") -> str:
        """Create (or re-create, with a new random password) user ``name`` with every
        privilege and GRANT OPTION, like an operator's root, which may create users and
        grant them privileges (``pool`` may not grant); return its URL (no database)."""
        password = secrets.token_hex(16)
        self.admin_sql(f"CREATE OR REPLACE USER '{_check_name(name)}'@'%' IDENTIFIED BY "
                       f"'{password}'; GRANT ALL PRIVILEGES ON *.* TO '{name}'@'%' "
                       f"WITH GRANT OPTION;")
        return f"mysql+{driver}://{name}:{password}@{self.host}:{self.port}/"

    def admin_sql(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` as root over the Unix socket; return the tab-separated output."""
        return _run([self.tools["mariadb"], "--no-defaults", "-uroot",
                     f"--socket={self.socket_path}", "-N", "-B", "-e", sql,
                     *([database] if database else [])],
                    what="mariadb (root)", cwd=Path(tempfile.gettempdir()))

    def sql(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` as ``pool`` over TCP; return the tab-separated output. (The
        password is on the client's command line: fine for a throwaway server.)"""
        return _run([self.tools["mariadb"], "--no-defaults", f"--host={self.host}",
                     f"--port={self.port}", "--protocol=TCP", f"--user={self.user}",
                     f"--password={self.password}", "-N", "-B", "-e", sql,
                     *([database] if database else [])],
                    what="mariadb", cwd=Path(tempfile.gettempdir()))

    def create_database(self, name: str) -> str:
        """Create database ``name`` (letters, digits, _; utf8mb4); return its URL."""
        self.admin_sql(f"CREATE DATABASE `{_check_name(name)}` CHARACTER SET utf8mb4")
        return self.url(name)
