"""No process ends without its reason and exit code in the log: the pool engine, the web
process, and `multipool run` about the services it runs (with real processes, a real
system user and a real interpreter out of that user's reach)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import multipool
from multipool.cli.main import app as cli_app
from multipool.devnet import free_port
from multipool.ops.commands import as_user_argv
from multipool.ops.services import ServiceSpec
from multipool.ops.supervisor import Supervisor
from tests.support.requirements import in_ci

COIN = """
[coin]
name = "litecoin"
prefix = "ltc"
symbol = "LTC"
algorithm = "scrypt"
network = "regtest"

[daemon]
rpc_url = "http://127.0.0.1:{rpc_port}"
rpc_user = "pool"
rpc_password = "secret"

[stratum]
host = "127.0.0.1"
ports = [ {{ port = {port}, difficulty = 0.05 }} ]

[pool]
address = "rltc1q6hnhkmvc0ls0vcjahd9wcau8x37s03mnaez28g"
database = "{database}"
"""


def coin_file(directory: Path, database: str) -> Path:
    path = directory / "coin.toml"
    path.write_text(COIN.format(rpc_port=free_port(), port=free_port(), database=database))
    return path


def serve(argv_prefix: list[str], coin: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv_prefix, "-m", "multipool.cli", "pool", "serve", "--coin",
                           str(coin), "--allow-root"], cwd=cwd, capture_output=True,
                          text=True, timeout=120, check=False)


def test_an_engine_that_fails_at_start_logs_the_error_and_its_exit_code(tmp_path: Path):
    """The database cannot be opened (its directory does not exist): the engine's log
    says so, with the traceback and the exit code."""
    coin = coin_file(tmp_path, f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'pool.db'}")
    result = serve([sys.executable], coin, tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"CRITICAL multipool.pool: pool engine for {coin} stopped by an error (exit " \
           "code 1)" in result.stderr
    assert "unable to open database file" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr


@pytest.fixture
def system_user() -> Iterator[str]:
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("CI runs as root: this test must not be skipped")
        pytest.skip("creates a system user: needs root")
    name = "mpx" + uuid.uuid4().hex[:6]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                    "/usr/sbin/nologin", name], check=True, capture_output=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def test_an_interpreter_out_of_the_users_reach_is_named_in_the_log(system_user: str):
    """The field case: a virtualenv whose Python lives in a directory closed to the
    pool's user (root's 0700 home), started as that user the way `multipool run` does
    (setpriv). setpriv still holds root's capabilities when it executes the interpreter,
    so the engine starts, but its scrypt workers (which execute the interpreter again,
    as the user) cannot: that used to end the engine with code 1 and no word in its log
    (a broken pipe that Click takes for a closed stdout)."""
    base = Path(tempfile.mkdtemp(prefix="multipool-exit-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        closed = base / "closed"
        closed.mkdir(mode=0o700)
        venv = closed / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)],
                       check=True, capture_output=True)
        # The open venv the pool is started with: its python is a link into the closed one.
        opened = base / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(opened)],
                       check=True, capture_output=True)
        python = opened / "bin" / "python"
        python.unlink()
        python.symlink_to(venv / "bin" / "python")
        site = next(opened.glob("lib/python3*/site-packages"))
        source = Path(multipool.__file__).parents[1]
        (site / "reach.pth").write_text("\n".join([str(source), *sys.path[1:]]) + "\n")
        state = base / "state"
        state.mkdir()
        shutil.chown(state, system_user, system_user)
        coin = coin_file(state, f"sqlite:///{state / 'pool.db'}")
        os.chmod(coin, 0o644)
        reach = subprocess.run(as_user_argv(system_user, ["/usr/bin/test", "-r",
                                                          str(source)]), check=False)
        if reach.returncode != 0:
            pytest.skip(f"this checkout ({source}) is out of reach of other users")
        result = serve(as_user_argv(system_user, [str(python)], reset_env=False), coin,
                       state)
        assert result.returncode == 1, result.stderr
        assert "stopped by an error (exit code 1)" in result.stderr, result.stderr
        assert f"the interpreter {python} cannot be reached: a directory on its path is " \
               f"closed to this user" in result.stderr
        assert f"(uid {pwd.getpwnam(system_user).pw_uid})" in result.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_web_process_logs_an_error_that_ends_it(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    """The web process reports every start-up failure it knows (a port taken, bad
    options) with its own message; this injects the one class of error Click used to
    swallow without a word, a broken pipe, into the running server (no real failure of
    the web process escapes its own handling to provoke it otherwise)."""
    class BrokenServer:
        async def serve(self, sockets: object) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr("multipool.cli.web.make_server",
                        lambda *args, **kwargs: BrokenServer())
    # The command sets up the root logger's handlers itself: listen on its own logger.
    seen = Records()
    logging.getLogger("multipool.web").addHandler(seen)
    try:
        result = CliRunner().invoke(cli_app, ["web", "serve", "--allow-root", "--root",
                                              str(tmp_path), "--listen",
                                              f"127.0.0.1:{free_port()}",
                                              "--metrics-listen", "", "--workers", "1"])
    finally:
        logging.getLogger("multipool.web").removeHandler(seen)
    assert result.exit_code == 1
    (record,) = [r for r in seen.records if r.levelno == logging.CRITICAL]
    assert record.getMessage() == ("web process stopped by an error (exit code 1): "
                                   "[Errno 32] Broken pipe")
    assert record.exc_info is not None


async def run_supervised(spec: ServiceSpec, log_dir: Path, until) -> Supervisor:
    supervisor = Supervisor([spec], log_dir=log_dir, first_delay=0.1, max_delay=0.2)
    task = asyncio.create_task(supervisor.run())
    try:
        deadline = time.monotonic() + 20
        while not until(supervisor):
            assert time.monotonic() < deadline, "the service never got that far"
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return supervisor


@pytest.mark.parametrize("case", ["missing", "not executable"])
async def test_run_logs_a_service_it_cannot_execute(tmp_path: Path, case: str,
                                                    caplog: pytest.LogCaptureFixture):
    program = tmp_path / "python3"
    if case == "not executable":
        program.write_text("#!/bin/sh\n")
        program.chmod(0o644)
    spec = ServiceSpec(name="engine", description="", argv=(str(program), "-c", "1"),
                       working_dir=tmp_path)
    code = 127 if case == "missing" else 126
    with caplog.at_level("INFO", logger="multipool.run"):
        supervisor = await run_supervised(spec, tmp_path / "log",
                                          lambda s: s.states["engine"].last_exit == code)
    assert supervisor.states["engine"].status.startswith("restarting")
    assert f"engine cannot be started: [Errno {13 if code == 126 else 2}]" in caplog.text
    assert f"(exit code {code}); trying again in" in caplog.text
    own_log = (tmp_path / "log" / "engine.log").read_text()
    assert f"multipool run: cannot execute {program}:" in own_log
    assert f"(exit code {code})" in own_log


async def test_run_logs_how_a_service_ended_with_its_last_words(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    spec = ServiceSpec(name="engine", description="",
                       argv=(sys.executable, "-c", "raise RuntimeError('no database')"),
                       working_dir=tmp_path)
    with caplog.at_level("INFO", logger="multipool.run"):
        await run_supervised(spec, tmp_path / "log",
                             lambda s: s.states["engine"].starts >= 2)
    assert "engine exited (exit code 1); starting it again in" in caplog.text
    assert "'RuntimeError: no database'" in caplog.text
    assert "multipool run: engine exited (exit code 1)" in \
        (tmp_path / "log" / "engine.log").read_text()


async def test_run_names_the_signal_that_killed_a_service(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    spec = ServiceSpec(name="engine", description="",
                       argv=(sys.executable, "-c", "import os; os.kill(os.getpid(), 9)"),
                       working_dir=tmp_path)
    with caplog.at_level("INFO", logger="multipool.run"):
        await run_supervised(spec, tmp_path / "log",
                             lambda s: s.states["engine"].starts >= 2)
    assert "engine exited (killed by SIGKILL); starting it again" in caplog.text
    assert "it wrote nothing to its log" in caplog.text
