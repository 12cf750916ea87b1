"""`multipool run`: the server's services in the foreground, for hosts without systemd
(containers, CI, the local demo).

The same :class:`~multipool.ops.services.ServiceSpec` list as the systemd units: the same
argv, the same users (dropped to with setpriv when run as root), the same readiness gates
(a pool engine starts once its daemon answers RPC) and a restart policy like the units':
a service that exits is started again after 1 s, then 2, 4 ... up to 60 s, the delay
resetting once it has run for a minute. SIGINT/SIGTERM stop everything, dependents first.

Every end of a service is logged with its exit code (or signal) and the last line its
log holds from that run, so `multipool run`'s own output says why; a program that cannot
be executed at all (missing, or out of reach of the service's user) is logged in both
logs, with the exit code a shell gives it (127, 126), and tried again like a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from multipool.chain.rpc import DaemonClient, DaemonError
from multipool.errors import PoolError
from multipool.ops.commands import as_user_argv
from multipool.ops.services import RpcReady, ServiceSpec
from multipool.supervision import describe_exit

logger = logging.getLogger("multipool.run")


@dataclass
class ServiceState:
    """What `multipool run` knows of one service, for the status display."""

    spec: ServiceSpec
    pid: int | None = None
    starts: int = 0
    last_exit: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float | None = None

    @property
    def status(self) -> str:
        if self.pid is None:
            return "waiting" if self.starts == 0 else f"restarting (exit {self.last_exit})"
        return "ready" if self.ready.is_set() else "starting"


async def rpc_ready(check: RpcReady) -> bool:
    """True once the daemon answers getblockchaininfo (not just accepts connections)."""
    try:
        async with DaemonClient(check.url, user=check.user, password=check.password,
                                cookie_file=check.cookie_file, timeout=5.0,
                                retry_for=0.0) as daemon:
            await daemon.getblockchaininfo()
        return True
    except DaemonError:
        return False


class Supervisor:
    """Runs services, gates each on the readiness of those it comes after, restarts
    the ones that exit, and stops them all in reverse order when cancelled."""

    FIRST_DELAY = 1.0
    MAX_DELAY = 60.0
    STABLE_AFTER = 60.0  # seconds up after which a crash counts as a first one again
    READY_POLL = 0.25

    def __init__(self, specs: Sequence[ServiceSpec], *, log_dir: Path,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY):
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise PoolError(f"service names repeat: {names}")
        for spec in specs:
            for dependency in spec.after:
                if dependency not in names:
                    raise PoolError(f"{spec.name} comes after {dependency}, which is not "
                                    "one of the services")
        self.states = {spec.name: ServiceState(spec) for spec in specs}
        self.log_dir = log_dir
        self.first_delay = first_delay
        self.max_delay = max_delay
        self._processes: dict[str, asyncio.subprocess.Process] = {}

    def argv(self, spec: ServiceSpec) -> list[str]:
        """The command line as systemd would run it: as the service's user when root."""
        if spec.user is None or os.geteuid() != 0:
            return list(spec.argv)
        return as_user_argv(spec.user, spec.argv, reset_env=False)

    async def run(self) -> None:
        """Run until cancelled, then stop every service (dependents first)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        tasks = [asyncio.create_task(self._keep_running(state), name=name)
                 for name, state in self.states.items()]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._stop_all()

    async def _keep_running(self, state: ServiceState) -> None:
        spec = state.spec
        delay = self.first_delay
        for dependency in spec.after:
            await self.states[dependency].ready.wait()
        while True:
            log_start = self._log_size(spec)
            try:
                process = await self._start(state)
            except OSError as exc:
                # A shell's codes: 127 not found, 126 found but not executable.
                code = 127 if isinstance(exc, FileNotFoundError) else 126
                state.starts += 1  # a start that failed: shown as restarting (exit N)
                state.last_exit = code
                self._note_in_log(spec, f"cannot execute {self.argv(spec)[0]}: {exc} "
                                        f"(exit code {code})")
                logger.error("%s cannot be started: %s (exit code %d); trying again in "
                             "%.0f s", spec.name, exc, code, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
                continue
            began = time.monotonic()
            waiter = asyncio.create_task(process.wait())
            try:
                await self._wait_ready(state, waiter)
                code = await waiter
            finally:
                waiter.cancel()
            state.pid, state.last_exit = None, code
            state.ready.clear()
            self._processes.pop(spec.name, None)
            if time.monotonic() - began >= self.STABLE_AFTER:
                delay = self.first_delay
            last_words = self._last_words(spec, log_start)
            self._note_in_log(spec, f"{spec.name} exited ({describe_exit(code)})")
            logger.warning("%s exited (%s); starting it again in %.0f s (log: %s): %s",
                           spec.name, describe_exit(code), delay, self._log_file(spec),
                           last_words)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_delay)

    def _log_file(self, spec: ServiceSpec) -> Path:
        return self.log_dir / f"{spec.name}.log"

    def _log_size(self, spec: ServiceSpec) -> int:
        try:
            return self._log_file(spec).stat().st_size
        except FileNotFoundError:
            return 0

    # How much of a log's end is read for a service's last words.
    LAST_WORDS_BYTES = 4096

    def _last_words(self, spec: ServiceSpec, since: int) -> str:
        """The last non-empty line the service wrote to its log since offset ``since``,
        or a note that it wrote none (itself a clue: an exit before any logging)."""
        try:
            with open(self._log_file(spec), "rb") as log:
                size = log.seek(0, os.SEEK_END)
                log.seek(max(since, size - self.LAST_WORDS_BYTES))
                tail = log.read().decode(errors="replace")
        except OSError as exc:
            return f"its log cannot be read ({exc})"
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        return repr(lines[-1][-300:]) if lines else "it wrote nothing to its log"

    def _note_in_log(self, spec: ServiceSpec, line: str) -> None:
        """Say in the service's own log what `multipool run` saw of it."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            with open(self._log_file(spec), "a", encoding="utf-8") as log:
                log.write(f"{stamp} multipool run: {line}\n")
        except OSError as exc:
            logger.warning("cannot write to %s: %s", self._log_file(spec), exc)

    async def _start(self, state: ServiceState) -> asyncio.subprocess.Process:
        spec = state.spec
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **dict(spec.environment)}
        with open(self._log_file(spec), "ab") as log:
            process = await asyncio.create_subprocess_exec(
                *self.argv(spec), cwd=spec.working_dir, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True)
        self._processes[spec.name] = process
        state.pid, state.started_at = process.pid, time.monotonic()
        state.starts += 1
        logger.info("started %s (pid %d)%s", spec.name, process.pid,
                    "" if state.starts == 1 else f", start {state.starts}")
        return process

    async def _wait_ready(self, state: ServiceState, exited: asyncio.Task[int]) -> None:
        check = state.spec.ready
        while check is not None and not exited.done():
            if await rpc_ready(check):
                break
            await asyncio.sleep(self.READY_POLL)
        if not exited.done():
            state.ready.set()
            logger.info("%s is ready", state.spec.name)

    async def _stop_all(self) -> None:
        # Dependents first: a pool engine flushes its shares while its daemon still runs.
        order = list(self.states)
        dependents = [n for n in order if self.states[n].spec.after]
        for group in (dependents, [n for n in order if n not in dependents]):
            await asyncio.gather(*(self._stop(name) for name in group))

    async def _stop(self, name: str) -> None:
        process = self._processes.pop(name, None)
        if process is None or process.returncode is not None:
            return
        spec = self.states[name].spec
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(spec.stop_timeout):
                await process.wait()
            logger.info("stopped %s", name)
        except TimeoutError:
            logger.error("%s did not stop within %.0f s: killing it", name, spec.stop_timeout)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
