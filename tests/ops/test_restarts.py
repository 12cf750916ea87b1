"""Services restarted after a configuration change: each service's fingerprint follows
what it runs on (and nothing else), the fingerprint a running process was started with is
read from its environment, and the changes that restart what runs an older configuration:
a `systemctl restart` per unit (against a fake systemctl: this host has no systemd), or
SIGHUP to a `multipool run`, whose supervisor then restarts, starts and stops services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from multipool.cli.main import app
from multipool.config import load_coin_config
from multipool.ops.coins import coin_services
from multipool.ops.layout import Layout
from multipool.ops.restarts import (
    RunState,
    ServiceRun,
    read_run_state,
    run_file,
    running_fingerprint,
    supervisor_changes,
    systemd_restart_changes,
    write_run_state,
)
from multipool.ops.services import CONFIG_ENV, ServiceSpec, config_fingerprint, fingerprinted
from multipool.ops.supervisor import Supervisor

runner = CliRunner()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "server"
    for args in (["init", "--root", str(root), "--mode", "local"],
                 ["coin", "add", "litecoin", "--network", "regtest", "--root", str(root)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return root


def fingerprints(root: Path) -> dict[str, str | None]:
    layout = Layout(root, "local")
    config = load_coin_config(layout.coin_file("ltc"))
    return {spec.name.rsplit("-", 1)[1]: config_fingerprint(spec)
            for spec in coin_services(layout, config)}


def edit(root: Path, old: str, new: str) -> None:
    coin_file = root / "coin" / "ltc" / "coin.toml"
    text = coin_file.read_text()
    assert old in text
    coin_file.write_text(text.replace(old, new))


def test_fingerprints_follow_what_each_service_runs_on(root: Path):
    first = fingerprints(root)
    assert set(first) == {"daemon", "peer", "pool"} and None not in first.values()
    assert len(set(first.values())) == 3
    assert fingerprints(root) == first  # stable: the config file's random salt is no input
    edit(root, "# The one place", "# An operator's comment.\n# The one place")
    assert fingerprints(root) == first  # a comment is no setting
    edit(root, "fee_percent = 1.0", "fee_percent = 2.0")
    fee = fingerprints(root)
    assert fee["pool"] != first["pool"]
    assert (fee["daemon"], fee["peer"]) == (first["daemon"], first["peer"])
    config = load_coin_config(root / "coin" / "ltc" / "coin.toml")
    edit(root, f"p2p_port = {config.daemon.p2p_port}", "p2p_port = 45123")
    moved = fingerprints(root)
    # The daemon listens elsewhere, its companion connects elsewhere, and the engine
    # reads coin.toml: all three run an older configuration now.
    assert all(moved[name] != fee[name] for name in moved)


def test_a_fingerprint_is_not_fooled_by_an_earlier_one_in_the_environment(tmp_path: Path):
    spec = ServiceSpec(name="s", description="", argv=("/bin/true",), working_dir=tmp_path,
                       environment=(("A", "1"),))
    once = fingerprinted(spec, b"input")
    assert fingerprinted(once, b"input") == once
    assert config_fingerprint(fingerprinted(once, b"other")) != config_fingerprint(once)
    assert dict(once.environment)["A"] == "1"


@contextlib.contextmanager
def process(*argv: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(list(argv), env=env)
    try:
        # Until it has exec'd, /proc shows the forked copy of this process.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/cmdline").read_bytes().split(b"\0")[:len(argv)] != [
                a.encode() for a in argv]:
            assert time.monotonic() < deadline, f"{argv} did not start"
            time.sleep(0.01)
        yield child
    finally:
        child.kill()
        child.wait()


def test_the_fingerprint_a_process_was_started_with_is_read_from_proc():
    with process("sleep", "30", env={CONFIG_ENV: "abc123", "PATH": "/usr/bin:/bin"}) as child:
        assert running_fingerprint(child.pid) == "abc123"
    with process("sleep", "30", env={"PATH": "/usr/bin:/bin"}) as child:
        assert running_fingerprint(child.pid) is None  # started by an older multipool
    assert running_fingerprint(child.pid) is None  # gone


# -- systemd (a fake systemctl: no systemd runs here) -------------------------------------

@pytest.fixture
def systemctl(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """A systemctl stand-in: `is-active` from <unit>.active and `show -p MainPID` from
    <unit>.pid in a state directory; every other call is logged."""
    state, log = tmp_path / "state", tmp_path / "systemctl.log"
    state.mkdir()
    script = tmp_path / "systemctl"
    script.write_text(f"""#!{sys.executable}
import sys
from pathlib import Path
state, log = Path({str(state)!r}), Path({str(log)!r})
args = sys.argv[1:]
if args[0] == "is-active":
    answer = state / (args[1] + ".active")
    print(answer.read_text().strip() if answer.exists() else "inactive")
    sys.exit(0)
if args[0] == "show":
    answer = state / (args[-1] + ".pid")
    print(answer.read_text().strip() if answer.exists() else "0")
    sys.exit(0)
with log.open("a") as handle:
    handle.write(" ".join(args) + "\\n")
""")
    script.chmod(0o755)
    return [str(script)], state, log


def test_systemd_restarts_only_the_running_units_of_an_older_configuration(
        root: Path, systemctl: tuple[list[str], Path, Path]):
    command, state, log = systemctl
    layout = Layout(root, "local")
    specs = coin_services(layout, load_coin_config(layout.coin_file("ltc")))
    daemon, peer, pool = specs
    env = {"PATH": "/usr/bin:/bin"}
    with process("sleep", "30", env=env | {CONFIG_ENV: config_fingerprint(daemon) or ""}) \
            as current, process("sleep", "30", env=env | {CONFIG_ENV: "older"}) as older:
        for spec, pid in ((daemon, current.pid), (pool, older.pid)):
            (state / f"{spec.name}.service.active").write_text("active\n")
            (state / f"{spec.name}.service.pid").write_text(f"{pid}\n")
        # The companion is stopped: nothing runs an older configuration there.
        plan = systemd_restart_changes(specs, systemctl=command)
        assert [(c.operation, c.target) for c in plan] == [
            ("systemd.restart", f"{pool.name}.service")]
        assert f"pid {older.pid} runs an older configuration" in plan[0].summary
        plan[0].apply()
    assert log.read_text() == f"restart {pool.name}.service\n"
    assert peer.name not in log.read_text()


# -- multipool run ------------------------------------------------------------------------

# A stand-in for `multipool run` (its argv has "multipool" and "run"): records SIGHUPs.
FAKE_RUN = ("import signal, sys, time\n"
            "signal.signal(signal.SIGHUP, lambda *_: open(sys.argv[1], 'a').write('hup\\n'))\n"
            "open(sys.argv[1] + '.ready', 'w').close()\n"
            "time.sleep(60)\n")


def test_a_running_supervisor_is_told_what_to_restart_start_and_stop(root: Path,
                                                                      tmp_path: Path):
    layout = Layout(root, "local")
    daemon, peer, pool = coin_services(layout, load_coin_config(layout.coin_file("ltc")))
    hups = tmp_path / "hups"
    with process(sys.executable, "-c", FAKE_RUN, str(hups), "multipool", "run") as run:
        deadline = time.monotonic() + 20
        while not Path(f"{hups}.ready").exists():  # the stand-in has its SIGHUP handler
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.05)
        services = {
            daemon.name: ServiceRun(4321, config_fingerprint(daemon)),  # current
            pool.name: ServiceRun(None, "older"),  # waiting to start again, older spec
            "multipool-old-pool": ServiceRun(1, "x")}
        write_run_state(run_file(layout), RunState(run.pid, None, services))
        assert read_run_state(layout) == RunState(run.pid, None, services)
        plan = supervisor_changes(layout, [daemon, peer, pool],
                                  removed=["multipool-old-pool"])
        assert [(c.operation, c.target) for c in plan] == [
            ("run.reload", f"multipool run (pid {run.pid})")]
        assert plan[0].summary == (f"restart {pool.name}; start {peer.name}; stop "
                                   "multipool-old-pool (SIGHUP: it re-reads the services)")
        write_run_state(run_file(layout), RunState(run.pid, None, {}))  # (stopped meanwhile)
        plan[0].apply()
        deadline = time.monotonic() + 10
        while not hups.exists():
            assert time.monotonic() < deadline, "no SIGHUP"
            time.sleep(0.05)
        # A supervisor that runs only other coins is not told about this one.
        write_run_state(run_file(layout), RunState(run.pid, ("other",), {}))
        assert supervisor_changes(layout, [daemon, peer, pool]) == []
    # Its process gone (a run file left by a SIGKILL), nothing runs.
    assert read_run_state(layout) is None
    assert supervisor_changes(layout, [daemon, peer, pool]) == []


def test_a_run_file_that_is_not_one_is_ignored(root: Path):
    layout = Layout(root, "local")
    run_file(layout).write_text(json.dumps({"pid": "1", "services": []}))
    assert read_run_state(layout) is None
    run_file(layout).write_text(json.dumps({"pid": os.getpid(), "prefixes": None,
                                            "services": {"a": 5}}))
    assert read_run_state(layout) is None
    run_file(layout).write_text("{")
    assert read_run_state(layout) is None


# -- the supervisor's reload --------------------------------------------------------------

def sleeper(tmp_path: Path, name: str, *inputs: bytes, after: tuple[str, ...] = ()) \
        -> ServiceSpec:
    return fingerprinted(ServiceSpec(name=name, description=name,
                                     argv=("/bin/sleep", "60"), working_dir=tmp_path,
                                     after=after), *inputs)


async def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


async def test_reload_restarts_the_changed_starts_the_new_and_stops_the_gone(tmp_path: Path):
    specs = [sleeper(tmp_path, "kept", b"1"), sleeper(tmp_path, "changed", b"1"),
             sleeper(tmp_path, "gone", b"1")]
    wanted = [specs[0], sleeper(tmp_path, "changed", b"2"), sleeper(tmp_path, "new", b"1")]
    supervisor = Supervisor(specs, log_dir=tmp_path / "log", loader=lambda: wanted,
                            run_file=tmp_path / "run.json")
    run = asyncio.create_task(supervisor.run())
    try:
        await wait_until(lambda: all(s.pid for s in supervisor.states.values()), 10,
                         "all started")
        before = {name: state.pid for name, state in supervisor.states.items()}
        assert json.loads((tmp_path / "run.json").read_text())["services"] == {
            spec.name: {"pid": before[spec.name], "config": config_fingerprint(spec)}
            for spec in specs}
        gone_pid = before["gone"]
        await supervisor.reload()
        await wait_until(lambda: all(s.pid for s in supervisor.states.values()), 10,
                         "all running again")
        after = {name: state.pid for name, state in supervisor.states.items()}
        assert set(after) == {"kept", "changed", "new"}
        assert after["kept"] == before["kept"]
        assert after["changed"] != before["changed"]
        assert running_fingerprint(after["changed"]) == config_fingerprint(wanted[1])
        assert running_fingerprint(after["new"]) == config_fingerprint(wanted[2])
        assert not Path(f"/proc/{gone_pid}").exists() or _zombie(gone_pid)
        assert json.loads((tmp_path / "run.json").read_text())["services"] == {
            spec.name: {"pid": after[spec.name], "config": config_fingerprint(spec)}
            for spec in wanted}
        await supervisor.reload()  # nothing changed: nothing restarts
        assert {name: state.pid for name, state in supervisor.states.items()} == after
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    assert not (tmp_path / "run.json").exists()


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    return True


async def test_a_reload_that_fails_leaves_the_services_running(tmp_path: Path):
    spec = sleeper(tmp_path, "one", b"1")

    def broken() -> list[ServiceSpec]:
        return [sleeper(tmp_path, "two", b"1", after=("missing",))]

    supervisor = Supervisor([spec], log_dir=tmp_path / "log", loader=broken)
    run = asyncio.create_task(supervisor.run())
    try:
        await wait_until(lambda: supervisor.states["one"].pid is not None, 10, "started")
        pid = supervisor.states["one"].pid
        await supervisor.reload()
        assert list(supervisor.states) == ["one"] and supervisor.states["one"].pid == pid
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run


async def test_a_program_that_cannot_be_executed_is_logged_and_retried(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """An interpreter a service's user may not execute fails at exec: the reason goes to
    both logs and the service is tried again, as an exit would be; the others run on."""
    locked = tmp_path / "locked"
    locked.mkdir()
    program = locked / "program"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o644)  # not executable, even by root
    bad = ServiceSpec(name="bad", description="", argv=(str(program),), working_dir=tmp_path)
    good = sleeper(tmp_path, "good", b"1")
    supervisor = Supervisor([bad, good], log_dir=tmp_path / "log", first_delay=0.1,
                            max_delay=0.2)
    run = asyncio.create_task(supervisor.run())
    try:
        await wait_until(lambda: supervisor.states["bad"].starts >= 3, 10, "three tries")
        assert supervisor.states["bad"].last_exit == 126  # a shell's "not executable"
        assert supervisor.states["good"].pid is not None and not run.done()
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    log = (tmp_path / "log" / "bad.log").read_text()
    assert (f"multipool run: cannot execute {program}: [Errno 13] Permission denied: "
            f"'{program}' (exit code 126)") in log
    assert (f"bad cannot be started: [Errno 13] Permission denied: '{program}' "
            "(exit code 126)") in caplog.text


def test_multipool_run_refuses_a_second_instance(root: Path, tmp_path: Path):
    with process(sys.executable, "-c", FAKE_RUN, str(tmp_path / "hups"), "multipool",
                 "run") as run:
        write_run_state(run_file(Layout(root, "local")), RunState(run.pid, None, {}))
        result = runner.invoke(app, ["run", "--root", str(root)])
        os.kill(run.pid, signal.SIGKILL)
    assert result.exit_code == 2
    assert (f"error: run: multipool run (pid {run.pid}) runs this server already"
            in " ".join(result.output.split()))
