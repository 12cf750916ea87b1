"""System mode as root (CI is root): `init` and `coin add` create the users, give every
directory and secret its owner and mode, write units that systemd accepts and scores at
2.0 or lower; a second run changes nothing; `coin remove` keeps the wallet."""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from multipool.devnet import free_port
from multipool.ops.commands import as_user_argv
from multipool.ops.layout import BUILD_USER, WEB_USER, Layout
from multipool.ops.reach import identity, interpreter_problem
from tests.ops.test_systemd import exposure, verify


def multipool(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "multipool.cli", *args],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"multipool {' '.join(args)}:\n{result.stderr}"
    return result


def changes_of(result: subprocess.CompletedProcess[str]) -> list[dict[str, str]]:
    return json.loads(result.stdout)["changes"]


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def owner_group_mode(path: Path) -> tuple[str, str, int]:
    st = path.lstat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


@pytest.fixture
def server() -> Iterator[tuple[Path, str]]:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: the system-mode test must not be skipped")
        pytest.skip("system mode creates users: needs root")
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: run `make setup`")
    problem = interpreter_problem(identity("nobody"))
    if problem is not None:
        # init and coin add refuse it (tests/ops/test_reach.py), as they should: the
        # coins' users could not run the engines from here.
        pytest.skip(f"{sys.executable} or this checkout is out of reach of the coins' "
                    f"users: {problem}")
    prefix = "t" + uuid.uuid4().hex[:6]
    shared_before = {name for name in (BUILD_USER, WEB_USER) if user_exists(name)}
    # Under /tmp itself: pytest's own temporary directories are 0700, which the coin's
    # users could not traverse.
    base = Path(tempfile.mkdtemp(prefix="multipool-system-", dir="/tmp"))
    os.chmod(base, 0o755)
    try:
        yield base, prefix
    finally:
        for user in (f"{prefix}d", f"{prefix}pool",
                     *({BUILD_USER, WEB_USER} - shared_before)):
            if user_exists(user):
                subprocess.run(["userdel", user], check=False, capture_output=True)
        if os.environ.get("MULTIPOOL_KEEP_TMP") is None:
            shutil.rmtree(base, ignore_errors=True)


def test_init_and_coin_add_as_root(server: tuple[Path, str]):
    base, prefix = server
    root, unit_dir, nginx_dir = base / "opt", base / "units", base / "nginx"
    unit_dir.mkdir()
    for sub in ("sites-available", "sites-enabled"):
        (nginx_dir / sub).mkdir(parents=True)
    layout = Layout(root, "system")
    init = ("init", "--root", str(root), "--unit-dir", str(unit_dir), "--nginx-dir",
            str(nginx_dir), "--json")

    first = changes_of(multipool(*init))
    assert {(c["operation"], c["target"]) for c in first} >= {
        ("files.file", str(root / "multipool.toml")), ("files.directory", str(root))}
    assert user_exists(BUILD_USER) and user_exists(WEB_USER)
    for entry in layout.server_entries():
        group = WEB_USER if entry.path == layout.web else "root"
        assert owner_group_mode(entry.path) == ("root", group, entry.mode), entry.path
    assert owner_group_mode(root / "multipool.toml") == ("root", "root", 0o600)
    assert changes_of(multipool(*init)) == []
    # The web: its unit, and the nginx site that proxies the public host to it.
    site = nginx_dir / "sites-available" / "multipool"
    assert owner_group_mode(site) == ("root", "root", 0o644)
    assert "proxy_pass http://127.0.0.1:8080" in site.read_text()
    assert os.readlink(nginx_dir / "sites-enabled" / "multipool") == str(site)

    add = ("coin", "add", "litecoin", "--prefix", prefix, "--network", "regtest",
           "--root", str(root), "--unit-dir", str(unit_dir), "--json")
    assert changes_of(multipool(*add))
    daemon_user, pool_user = f"{prefix}d", f"{prefix}pool"
    assert user_exists(daemon_user) and user_exists(pool_user)
    assert pwd.getpwnam(daemon_user).pw_shell == "/usr/sbin/nologin"
    expected = {
        layout.bin_dir(prefix): ("root", daemon_user, 0o750),
        layout.src_dir(prefix): (BUILD_USER, BUILD_USER, 0o700),
        layout.wallet_dir(prefix): (daemon_user, daemon_user, 0o700),
        # The web user opens the SQLite files by name (their group by setgid), no more.
        layout.pool_dir(prefix): (pool_user, WEB_USER, 0o2710),
        layout.coin_dir(prefix): ("root", pool_user, 0o750),
        # The engine publishes status.json here; setgid gives it the web user's group.
        layout.public_dir(prefix): (pool_user, WEB_USER, 0o2750),
        # Secrets: the RPC password (pool config), the rpcauth hash (daemon config).
        layout.coin_file(prefix): ("root", pool_user, 0o640),
        layout.wallet_dir(prefix) / "litecoin.conf": ("root", daemon_user, 0o640),
    }
    for path, wanted in expected.items():
        assert owner_group_mode(path) == wanted, path
    binary = layout.bin_dir(prefix) / "litecoind"
    assert os.readlink(binary) == "/usr/lib/litecoin/litecoind"
    conf = (layout.wallet_dir(prefix) / "litecoin.conf").read_text()
    password = next(line.split("=", 1)[1].strip().strip('"')
                    for line in layout.coin_file(prefix).read_text().splitlines()
                    if line.startswith("rpc_password"))
    assert "rpcauth=pool:" in conf and password not in conf and "rpcpassword" not in conf
    assert "rpcbind=127.0.0.1" in conf

    web_unit = unit_dir / "multipool-web.service"
    assert f"User={WEB_USER}" in web_unit.read_text()
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None
    assert verify(analyze, [web_unit]) == []
    web_score = exposure(analyze, web_unit)
    print(f"{web_unit.name}: exposure {web_score}")
    assert web_score <= 2.0

    units = sorted(unit_dir.glob(f"multipool-{prefix}-*.service"))
    assert [u.name for u in units] == sorted(
        f"multipool-{prefix}-{kind}.service" for kind in ("daemon", "peer", "pool"))
    # init wrote the nightly backup: a oneshot service and its timer.
    assert (unit_dir / "multipool-backup.service").exists()
    assert (unit_dir / "multipool-backup.timer").exists()
    assert verify(analyze, units) == []
    for unit in units:
        text = unit.read_text()
        assert "setuid" not in text.lower()
        user = pool_user if unit.name.endswith("-pool.service") else daemon_user
        assert f"User={user}" in text
        # ProtectSystem=strict: the service writes exactly its own directories.
        writable = next(line for line in text.splitlines()
                        if line.startswith("ReadWritePaths=")).split("=", 1)[1].split()
        if user == pool_user:
            assert writable == [str(layout.pool_dir(prefix)), str(layout.public_dir(prefix))]
        elif unit.name.endswith("-daemon.service"):
            assert writable == [str(layout.wallet_dir(prefix))]
        score = exposure(analyze, unit)
        print(f"{unit.name}: exposure {score}")
        assert score <= 2.0, unit.name

    assert changes_of(multipool(*add)) == []  # idempotent, units included

    removed = changes_of(multipool("coin", "remove", prefix, "--root", str(root),
                                   "--unit-dir", str(unit_dir), "--json"))
    assert removed
    assert not layout.coin_dir(prefix).exists()
    assert not list(unit_dir.glob(f"multipool-{prefix}-*"))
    assert layout.wallet_dir(prefix).is_dir() and layout.pool_dir(prefix).is_dir()
    assert (layout.wallet_dir(prefix) / "litecoin.conf").exists()


def process_users(pattern: str) -> dict[str, str]:
    """The user of every process whose command line contains ``pattern``, by pid."""
    result = subprocess.run(["ps", "-ww", "-eo", "pid=,user:32=,args="], capture_output=True,
                            text=True, check=True)
    found = {}
    for line in result.stdout.splitlines():
        pid, user, args = line.split(None, 2)
        if pattern in args:
            found[pid] = (user, args)
    return found


def test_run_as_root_drops_each_service_to_its_user(server: tuple[Path, str]):
    """`multipool run` on a system install: the daemons run as <prefix>d, the pool
    engine as <prefix>pool, each writing only its own directory, and the pool opens its
    stratum port once its daemon is synced."""
    base, prefix = server
    root, unit_dir, nginx_dir = base / "opt", base / "units", base / "nginx"
    unit_dir.mkdir()
    for sub in ("sites-available", "sites-enabled"):
        (nginx_dir / sub).mkdir(parents=True)
    multipool("init", "--root", str(root), "--unit-dir", str(unit_dir), "--nginx-dir",
              str(nginx_dir), "--json")
    web = f"127.0.0.1:{free_port()}"
    server_file = root / "multipool.toml"
    server_file.write_text(server_file.read_text().replace("127.0.0.1:8080", web))
    multipool("coin", "add", "litecoin", "--prefix", prefix, "--network", "regtest",
              "--root", str(root), "--unit-dir", str(unit_dir), "--json")
    layout = Layout(root, "system")
    reach = subprocess.run(as_user_argv(f"{prefix}pool", [sys.executable, "-c",
                                                          "import multipool"]),
                           capture_output=True, text=True, check=False)
    if reach.returncode != 0:
        # The engines run this Python as the coin's pool user, as the units would.
        pytest.skip(f"{sys.executable} and this checkout are out of reach of other users "
                    f"(a Python or a clone under /root?): {reach.stderr.strip()[-300:]}")
    runner = subprocess.Popen([sys.executable, "-m", "multipool.cli", "run", "--root",
                               str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            coins = json.loads(multipool("status", "--root", str(root), "--json").stdout)
            if coins[0]["stratum_listening"]:
                break
            assert runner.poll() is None, runner.communicate()[1][-3000:]
            assert time.monotonic() < deadline, (
                f"stratum not open in 120 s: {coins}\n"
                + (layout.log / f"multipool-{prefix}-pool.log").read_text()[-3000:])
            time.sleep(0.5)
        daemons = process_users(f"-datadir={layout.wallet_dir(prefix)}")
        engines = process_users(f"--coin {layout.coin_file(prefix)}")
        assert {user for user, _ in daemons.values()} == {f"{prefix}d"}, daemons
        assert len(daemons) == 2  # the daemon and its regtest companion
        assert {user for user, _ in engines.values()} == {f"{prefix}pool"}, engines
        # What each wrote belongs to it: the chain to the daemon, the database to the pool.
        assert owner_group_mode(layout.wallet_dir(prefix) / "regtest")[0] == f"{prefix}d"
        assert owner_group_mode(layout.pool_dir(prefix) / "pool.db") == (
            f"{prefix}pool", WEB_USER, 0o640)
        # The web reads the database, read-only (tests/ops/test_web_database_access.py
        # tries the writes).
        read_db = subprocess.run(as_user_argv(WEB_USER, [
            sys.executable, "-c", "import sqlite3, sys; print(sqlite3.connect("
            "f'file:{sys.argv[1]}?mode=ro', uri=True).execute('SELECT count(*) FROM "
            "blocks').fetchone()[0])", str(layout.pool_dir(prefix) / "pool.db")]),
            capture_output=True, text=True, check=False)
        assert read_db.returncode == 0 and read_db.stdout.strip().isdigit(), read_db.stderr
        # The web user can read the status the engine published, and only that.
        status_file = layout.public_dir(prefix) / "status.json"
        deadline = time.monotonic() + 60
        while not status_file.exists():
            assert time.monotonic() < deadline, "no status.json published"
            time.sleep(0.5)
        assert owner_group_mode(status_file) == (f"{prefix}pool", WEB_USER, 0o640)
        read = subprocess.run(as_user_argv(WEB_USER, ["cat", str(status_file)]),
                              capture_output=True, text=True, check=False)
        assert json.loads(read.stdout)["coin"]["prefix"] == prefix
        denied = subprocess.run(as_user_argv(WEB_USER, ["cat", str(layout.coin_file(prefix))]),
                                capture_output=True, text=True, check=False)
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        # The web process runs as the web user and lists the pool.
        assert {user for user, _ in process_users("multipool.cli web serve").values()} == {
            WEB_USER}
        with urllib.request.urlopen(f"http://{web}/api/pools", timeout=10) as response:
            pools = json.loads(response.read())
        assert [pool["prefix"] for pool in pools] == [prefix]
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.communicate()
            pytest.fail("multipool run did not stop on SIGTERM")
    assert runner.returncode == 0
    assert process_users(str(root)) == {}
