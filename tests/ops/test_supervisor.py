"""`multipool run`'s supervisor with small real processes: readiness gates, restart with
backoff, and stopping dependents before what they depend on."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from multipool.devnet import free_port
from multipool.errors import PoolError
from multipool.ops.services import RpcReady, ServiceSpec
from multipool.ops.supervisor import Supervisor

# A stand-in daemon: answers JSON-RPC getblockchaininfo once it has "warmed up", and on
# SIGTERM writes the time it stopped.
FAKE_DAEMON = textwrap.dedent("""
    import http.server, json, signal, sys, time
    port, warmup, stopped = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    time.sleep(warmup)
    def bye(*_):
        time.sleep(0.3)  # a daemon flushing its chainstate
        open(stopped, "w").write(repr(time.time()))
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"result": {"blocks": 1}, "error": None, "id": 1}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
""")

# A stand-in engine: writes when it started and when it got SIGTERM.
FAKE_ENGINE = textwrap.dedent("""
    import signal, sys, time
    started, stopped = sys.argv[1], sys.argv[2]
    open(started, "w").write(repr(time.time()))
    def bye(*_):
        open(stopped, "w").write(repr(time.time()))
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    while True:
        time.sleep(1)
""")


async def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


def specs(tmp_path: Path, port: int, warmup: float) -> list[ServiceSpec]:
    return [
        ServiceSpec(name="daemon", description="fake daemon",
                    argv=(sys.executable, "-c", FAKE_DAEMON, str(port), str(warmup),
                          str(tmp_path / "daemon.stopped")),
                    working_dir=tmp_path, ready=RpcReady(f"http://127.0.0.1:{port}", "u", "p")),
        ServiceSpec(name="engine", description="fake engine",
                    argv=(sys.executable, "-c", FAKE_ENGINE, str(tmp_path / "engine.started"),
                          str(tmp_path / "engine.stopped")),
                    working_dir=tmp_path, after=("daemon",)),
    ]


async def test_engine_waits_for_daemon_rpc_and_stops_first(tmp_path: Path):
    supervisor = Supervisor(specs(tmp_path, free_port(), warmup=1.0), log_dir=tmp_path / "log")
    run = asyncio.create_task(supervisor.run())
    try:
        await wait_until(lambda: supervisor.states["daemon"].pid is not None, 10,
                         "daemon started")
        began = time.time()
        await asyncio.sleep(0.6)
        # The daemon's RPC is not up yet: the engine must not have started.
        assert not (tmp_path / "engine.started").exists()
        assert supervisor.states["engine"].status == "waiting"
        await wait_until(lambda: (tmp_path / "engine.started").exists(), 15, "engine started")
        assert float((tmp_path / "engine.started").read_text()) >= began + 0.3
        assert supervisor.states["daemon"].status == "ready"
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    engine_stopped = float((tmp_path / "engine.stopped").read_text())
    daemon_stopped = float((tmp_path / "daemon.stopped").read_text())
    assert engine_stopped < daemon_stopped  # dependents first
    assert (tmp_path / "log" / "daemon.log").exists()


async def test_a_service_that_exits_is_restarted_with_growing_delays(tmp_path: Path):
    marker = tmp_path / "starts"
    crashy = ServiceSpec(
        name="crashy", description="exits at once",
        argv=(sys.executable, "-c",
              f"import time; open({str(marker)!r}, 'a').write(repr(time.time()) + '\\n'); "
              "raise SystemExit(3)"),
        working_dir=tmp_path)
    supervisor = Supervisor([crashy], log_dir=tmp_path / "log", first_delay=0.2, max_delay=0.8)
    run = asyncio.create_task(supervisor.run())
    try:
        await wait_until(lambda: marker.exists() and len(marker.read_text().split()) >= 4, 20,
                         "four starts")
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
    starts = [float(t) for t in marker.read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Delays 0.2, 0.4, 0.8 (capped): each gap at least its delay, and they grow.
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4 and gaps[2] >= 0.8
    assert supervisor.states["crashy"].last_exit == 3


def test_unknown_dependency_and_repeated_names_are_refused(tmp_path: Path):
    one = ServiceSpec(name="a", description="", argv=("true",), working_dir=tmp_path,
                      after=("nope",))
    with pytest.raises(PoolError, match="a comes after nope, which is not one of the services"):
        Supervisor([one], log_dir=tmp_path)
    two = ServiceSpec(name="a", description="", argv=("true",), working_dir=tmp_path)
    with pytest.raises(PoolError, match="service names repeat"):
        Supervisor([two, two], log_dir=tmp_path)


async def test_a_service_runs_at_its_nice_value(tmp_path: Path):
    """`multipool run` gives a service its nice value as the unit does (the web process
    yields to the engines); one without runs at the supervisor's own."""
    script = ("import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid()) + ' ' "
              "+ str(os.getpriority(os.PRIO_PROCESS, 0))); time.sleep(60)")
    services = [ServiceSpec(name=name, description=name,
                            argv=(sys.executable, "-c", script, str(tmp_path / name)),
                            working_dir=tmp_path, nice=nice)
                for name, nice in (("web", 10), ("engine", 0))]
    supervisor = Supervisor(services, log_dir=tmp_path / "log")
    run = asyncio.create_task(supervisor.run())
    try:
        await wait_until(lambda: all((tmp_path / n).exists() and (tmp_path / n).read_text()
                                     for n in ("web", "engine")), 20, "both started")
        own = os.getpriority(os.PRIO_PROCESS, 0)
        seen = {name: (tmp_path / name).read_text().split() for name in ("web", "engine")}
        assert int(seen["web"][1]) == min(own + 10, 19)
        assert int(seen["engine"][1]) == own
        # nice(1) execs the program: the pid the supervisor knows is the service's own.
        assert int(seen["web"][0]) == supervisor.states["web"].pid
    finally:
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
