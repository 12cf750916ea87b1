"""One supervision policy for the pool engine's background services.

A pool engine runs, beside stratum, services that need the database or the daemon: the
share writer, the block tracker, payments, the stats roll-up and the public status file.
Each is handed to the :class:`Supervisor` as one of two kinds:

- a :class:`Periodic` service is one coroutine doing one round of work (``check()``,
  ``run_once()``, ...). The supervisor runs a round every ``interval`` seconds (at once
  when its ``wake`` event is set). A round that raises never stops anything: the failure
  is logged (with its traceback the first time this failure is seen, then one line now
  and then), the service is shown *degraded* with the reason, and the round is tried
  again after a back-off (1 s, doubling, never longer than the interval). The first
  round that succeeds again logs the recovery and shows the service *ok*, unless its
  ``health`` says why it still does not do its job (payments paused). A round still
  running after ``stuck_after`` seconds shows the service degraded too (it is not
  cancelled: a payment round must not be cut half-way).
- an :class:`Essential` service is a coroutine that lives as long as the engine (the
  share writer). It starts first and stops last; if it ends or fails, the engine stops
  (the writer spools what it cannot write before it gives up, so nothing is lost), and
  the reason is logged. Its ``health`` callable tells whether it works degraded (the
  share writer spooling while the database is away).

:meth:`Supervisor.states` gives each service's :class:`Health` (``ok``/``degraded``, the
reason, since when), which the engine publishes in its status file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from multipool.errors import PoolError

OK: Literal["ok"] = "ok"
DEGRADED: Literal["degraded"] = "degraded"


def describe_exit(code: int | None) -> str:
    """Given a process's exit code (negative: killed by that signal, as subprocess and
    multiprocessing report it), say it in words.

    >>> describe_exit(-9), describe_exit(1)
    ('killed by SIGKILL', 'exit code 1')
    """
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class ServiceEnded(PoolError):
    """An essential service ended or failed: the engine cannot go on without it."""


@dataclass(frozen=True, slots=True)
class Health:
    """What the status file shows of one service."""

    state: Literal["ok", "degraded"]
    reason: str | None
    since: datetime | None  # when the state began (None: since the engine started)

    def to_json(self) -> dict[str, str | None]:
        return {"state": self.state, "reason": self.reason,
                "since": None if self.since is None else self.since.isoformat()}


@dataclass(slots=True)
class Periodic:
    """A service that does one round of work per call of ``step``."""

    name: str
    step: Callable[[], Awaitable[object]]
    interval: float
    # Set by anyone who wants a round now (the share writer wakes the block tracker).
    wake: asyncio.Event | None = None
    # A round running longer than this shows the service degraded (None: never).
    stuck_after: float | None = None
    # After a round that succeeded: why the service still does not do its job (payments
    # held back by a pause), or None.
    health: Callable[[], str | None] | None = None


@dataclass(slots=True)
class Essential:
    """A service that runs as long as the engine; the engine stops if it ends."""

    name: str
    run: Callable[[], Awaitable[None]]
    # Why the service works degraded right now, or None.
    health: Callable[[], str | None] = field(default=lambda: None)


@dataclass(slots=True)
class _Record:
    """The supervisor's bookkeeping of one service."""

    reason: str | None = None
    since: datetime | None = None
    failures: int = 0
    failing_since: float = 0.0
    last_logged: float = 0.0
    running_since: float | None = None
    running_since_wall: datetime | None = None
    # (exception type, innermost frame) of failures whose traceback was logged.
    seen: set[tuple[str, str]] = field(default_factory=set)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _failure_key(exc: BaseException) -> tuple[str, str]:
    """A failure's identity for the traceback-once rule: its type and where it was
    raised (messages vary: addresses, counts, times)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return type(exc).__qualname__, where


class Supervisor:
    """Runs the engine's background services under one policy (see the module doc)."""

    FIRST_RETRY = 1.0
    # While a failure repeats, one line at the 2nd and 3rd failure, then this often.
    REPEAT_LOG_EVERY = 300.0
    # How often essential services' health is read, to date a change to the second.
    HEALTH_POLL = 1.0
    # Bounds the traceback-once memory of a service.
    MAX_SEEN = 64

    def __init__(self, *, logger: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.logger = logger or logging.getLogger("multipool.supervisor")
        self.clock = clock
        self.wall = wall
        self.periodic: list[Periodic] = []
        self.essential: list[Essential] = []
        self._records: dict[str, _Record] = {}
        self._periodic_tasks: list[asyncio.Task[None]] = []
        self._essential_tasks: list[asyncio.Task[None]] = []
        self._monitor: asyncio.Task[None] | None = None
        self._on_fatal: Callable[[BaseException], None] | None = None
        self.fatal: BaseException | None = None

    # -- composition -------------------------------------------------------------------

    def add(self, service: Periodic | Essential) -> None:
        if service.name in self._records:
            raise PoolError(f"two services are named {service.name!r}")
        self._records[service.name] = _Record()
        if isinstance(service, Periodic):
            self.periodic.append(service)
        else:
            self.essential.append(service)
        if self._on_fatal is not None:  # added while running: start it now
            self._start(service)

    # -- state -------------------------------------------------------------------------

    def states(self) -> dict[str, Health]:
        """Each service's health, in the order the services were added."""
        self._poll_health()
        now = self.clock()
        result = {}
        for name, record in self._records.items():
            service = self._service(name)
            stuck = (isinstance(service, Periodic) and service.stuck_after is not None
                     and record.running_since is not None
                     and now - record.running_since > service.stuck_after)
            if record.reason is not None:
                result[name] = Health(DEGRADED, record.reason, record.since)
            elif stuck:
                assert record.running_since is not None
                result[name] = Health(
                    DEGRADED, f"a round has been running for "
                    f"{now - record.running_since:.0f} s", record.running_since_wall)
            else:
                result[name] = Health(OK, None, record.since)
        return result

    def _service(self, name: str) -> Periodic | Essential:
        services: list[Periodic | Essential] = [*self.periodic, *self.essential]
        return next(service for service in services if service.name == name)

    def _poll_health(self) -> None:
        for service in self.essential:
            record = self._records[service.name]
            reason = service.health()
            if reason != record.reason:
                if reason is None:
                    self.logger.info("%s: ok again (was: %s)", service.name, record.reason)
                else:
                    self.logger.warning("%s: degraded: %s", service.name, reason)
                record.reason, record.since = reason, self.wall()

    # -- running -----------------------------------------------------------------------

    def start(self, on_fatal: Callable[[BaseException], None]) -> None:
        """Start every service: essential ones first. ``on_fatal`` is called once if an
        essential service ends or fails (the engine then stops)."""
        self._on_fatal = on_fatal
        for essential in self.essential:
            self._start(essential)
        for periodic in self.periodic:
            self._start(periodic)
        self._monitor = asyncio.create_task(self._watch_health(), name="health")

    def _start(self, service: Periodic | Essential) -> None:
        if isinstance(service, Periodic):
            self._periodic_tasks.append(
                asyncio.create_task(self._run_periodic(service), name=service.name))
        else:
            self._essential_tasks.append(
                asyncio.create_task(self._run_essential(service), name=service.name))

    async def stop(self, timeout: float) -> None:
        """Cancel the periodic services, then the essential ones (the share writer's
        final flush), each group bounded by ``timeout`` seconds."""
        if self._monitor is not None:
            self._monitor.cancel()
        for group in (self._periodic_tasks, self._essential_tasks):
            for task in group:
                task.cancel()
            if group:
                _, stuck = await asyncio.wait(group, timeout=timeout)
                for task in stuck:
                    self.logger.error("service %s did not stop within %g s",
                                      task.get_name(), timeout)
        self._on_fatal = None

    async def _watch_health(self) -> None:
        while True:
            self._poll_health()
            await asyncio.sleep(self.HEALTH_POLL)

    async def _run_essential(self, service: Essential) -> None:
        try:
            await service.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the supervision top level
            self.logger.critical("%s failed; the pool engine stops", service.name,
                                 exc_info=exc)
            error = ServiceEnded(f"{service.name} failed: {_first_line(exc)}")
            error.__cause__ = exc
        else:
            self.logger.critical("%s ended; the pool engine stops", service.name)
            error = ServiceEnded(f"{service.name} ended")
        self._fail_engine(error)

    def _fail_engine(self, error: BaseException) -> None:
        if self.fatal is None:
            self.fatal = error
            if self._on_fatal is not None:
                self._on_fatal(error)

    async def _run_periodic(self, service: Periodic) -> None:
        record = self._records[service.name]
        while True:
            if service.wake is not None:
                service.wake.clear()
            record.running_since, record.running_since_wall = self.clock(), self.wall()
            try:
                await service.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the supervision top level
                self._failed(service, record, exc)
                delay = min(service.interval,
                            self.FIRST_RETRY * 2 ** min(record.failures - 1, 16))
            else:
                self._succeeded(service, record)
                delay = service.interval
            finally:
                record.running_since = record.running_since_wall = None
            await self._sleep(delay, service.wake)

    @staticmethod
    async def _sleep(delay: float, wake: asyncio.Event | None) -> None:
        if wake is None:
            await asyncio.sleep(delay)
            return
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
        # lands as the event fires.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await wake.wait()

    def _failed(self, service: Periodic, record: _Record, exc: Exception) -> None:
        now = self.clock()
        record.failures += 1
        reason = _first_line(exc)
        first = record.failures == 1
        if first:
            record.failing_since = now
            record.since = self.wall()
        record.reason = reason
        key = _failure_key(exc)
        if key not in record.seen and len(record.seen) < self.MAX_SEEN:
            record.seen.add(key)
            self.logger.error("%s failed, degraded until a round succeeds: %s",
                              service.name, reason, exc_info=exc)
        elif first or record.failures <= 3 or now - record.last_logged >= self.REPEAT_LOG_EVERY:
            self.logger.warning("%s failed (%d in a row, for %.0f s): %s", service.name,
                                record.failures, now - record.failing_since, reason)
        else:
            return
        record.last_logged = now

    def _succeeded(self, service: Periodic, record: _Record) -> None:
        if record.failures:
            self.logger.info("%s recovered after %d failed round(s) in %.0f s",
                             service.name, record.failures,
                             self.clock() - record.failing_since)
            record.failures = 0
            record.reason = None
            record.since = self.wall()
        held = service.health() if service.health is not None else None
        if held != record.reason:
            if held is None:
                self.logger.info("%s: ok again (was: %s)", service.name, record.reason)
            else:
                self.logger.warning("%s: degraded: %s", service.name, held)
            record.reason, record.since = held, self.wall()
