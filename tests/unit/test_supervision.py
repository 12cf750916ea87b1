"""The supervision policy of the engine's background services, with small fake services
(the policy is plain asyncio; the functional tests run it with the real services)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from datetime import UTC, datetime

import pytest

from multipool.errors import PoolError
from multipool.supervision import (
    Essential,
    Periodic,
    ServiceEnded,
    Supervisor,
    describe_exit,
)


def quick_supervisor() -> Supervisor:
    supervisor = Supervisor(logger=logging.getLogger("test.supervisor"))
    supervisor.FIRST_RETRY = 0.02
    return supervisor


async def until(condition, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def raise_here(message: str) -> None:
    raise ConnectionRefusedError(message)


def raise_there(message: str) -> None:
    raise ValueError(message)


async def test_a_failing_round_degrades_backs_off_and_recovers(
        caplog: pytest.LogCaptureFixture):
    calls: list[float] = []
    failing = 5

    async def step() -> None:
        calls.append(time.monotonic())
        if len(calls) <= failing:
            raise_here(f"database down (try {len(calls)})")

    supervisor = quick_supervisor()
    supervisor.add(Periodic("stats", step, interval=0.1))
    began = datetime.now(UTC)
    with caplog.at_level(logging.INFO, logger="test.supervisor"):
        supervisor.start(on_fatal=lambda error: pytest.fail(f"fatal: {error}"))
        try:
            await until(lambda: len(calls) >= 2)
            health = supervisor.states()["stats"]
            assert health.state == "degraded"
            assert health.reason is not None
            assert health.reason.startswith("ConnectionRefusedError: database down (try")
            assert health.since is not None and began <= health.since <= datetime.now(UTC)
            await until(lambda: len(calls) >= failing + 2)
            assert supervisor.states()["stats"].state == "ok"
        finally:
            await supervisor.stop(5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # 0.02, 0.04, 0.08, then capped at the interval (0.1); after success: the interval.
    for gap, wanted in zip(gaps, [0.02, 0.04, 0.08, 0.1, 0.1, 0.1], strict=False):
        assert gap >= wanted * 0.9, gaps
    assert gaps[0] < 0.09, gaps  # the first retry comes before a whole interval
    records = [r for r in caplog.records if r.name == "test.supervisor"]
    tracebacks = [r for r in records if r.exc_info]
    assert len(tracebacks) == 1  # the same failure five times: one traceback
    assert "stats failed, degraded until a round succeeds" in tracebacks[0].getMessage()
    assert sum("stats failed (" in r.getMessage() for r in records) == 2  # 2nd and 3rd
    assert any("stats recovered after 5 failed round(s)" in r.getMessage()
               for r in records)
    health = supervisor.states()["stats"]
    assert health.reason is None and health.since is not None  # ok since the recovery


async def test_each_distinct_failure_gets_its_traceback_once(
        caplog: pytest.LogCaptureFixture):
    sequence = iter([raise_here, raise_there, raise_here, raise_there, None])
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        fail = next(sequence, None)
        if fail is not None:
            fail(f"message {calls}")  # messages differ; the place decides

    supervisor = quick_supervisor()
    supervisor.add(Periodic("blocks", step, interval=0.05))
    with caplog.at_level(logging.INFO, logger="test.supervisor"):
        supervisor.start(on_fatal=lambda error: None)
        try:
            await until(lambda: calls >= 5)
        finally:
            await supervisor.stop(5)
    tracebacks = [r.exc_info[0] for r in caplog.records if r.exc_info]
    assert tracebacks == [ConnectionRefusedError, ValueError]


async def test_repeats_are_logged_again_only_now_and_then(caplog: pytest.LogCaptureFixture):
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        raise_here("still down")

    supervisor = quick_supervisor()
    supervisor.FIRST_RETRY = 0.001
    supervisor.REPEAT_LOG_EVERY = 3600
    supervisor.add(Periodic("payments", step, interval=0.001))
    with caplog.at_level(logging.INFO, logger="test.supervisor"):
        supervisor.start(on_fatal=lambda error: None)
        try:
            await until(lambda: calls >= 50)
        finally:
            await supervisor.stop(5)
    lines = [r for r in caplog.records if "payments failed" in r.getMessage()]
    assert len(lines) == 3  # the first (with its traceback), the 2nd and the 3rd


async def test_wake_runs_a_round_at_once():
    calls = 0
    wake = asyncio.Event()

    async def step() -> None:
        nonlocal calls
        calls += 1

    supervisor = quick_supervisor()
    supervisor.add(Periodic("blocks", step, interval=3600, wake=wake))
    supervisor.start(on_fatal=lambda error: None)
    try:
        await until(lambda: calls == 1)
        wake.set()
        await until(lambda: calls == 2, timeout=5)
    finally:
        await supervisor.stop(5)


async def test_a_round_that_hangs_shows_degraded_without_being_cancelled():
    release = asyncio.Event()
    finished = []

    async def step() -> None:
        await release.wait()
        finished.append(1)

    supervisor = quick_supervisor()
    supervisor.add(Periodic("payments", step, interval=3600, stuck_after=0.1))
    supervisor.start(on_fatal=lambda error: None)
    try:
        await asyncio.sleep(0.02)
        assert supervisor.states()["payments"].state == "ok"
        await asyncio.sleep(0.15)
        health = supervisor.states()["payments"]
        assert health.state == "degraded"
        assert health.reason is not None and "a round has been running for" in health.reason
        release.set()
        await until(lambda: finished == [1])
        assert supervisor.states()["payments"].state == "ok"
    finally:
        await supervisor.stop(5)


async def test_an_essential_service_that_ends_stops_the_engine(
        caplog: pytest.LogCaptureFixture):
    async def writer() -> None:
        await asyncio.sleep(0.05)
        raise RuntimeError("disk on fire")

    fatal: list[BaseException] = []
    supervisor = quick_supervisor()
    supervisor.add(Essential("shares", writer))
    with caplog.at_level(logging.INFO, logger="test.supervisor"):
        supervisor.start(on_fatal=fatal.append)
        try:
            await until(lambda: bool(fatal))
        finally:
            await supervisor.stop(5)
    assert isinstance(fatal[0], ServiceEnded)
    assert str(fatal[0]) == "shares failed: RuntimeError: disk on fire"
    assert isinstance(fatal[0].__cause__, RuntimeError)
    assert "shares failed; the pool engine stops" in caplog.text


async def test_an_essential_services_health_is_shown_and_logged(
        caplog: pytest.LogCaptureFixture):
    reason: list[str | None] = [None]

    async def writer() -> None:
        await asyncio.Event().wait()

    supervisor = quick_supervisor()
    supervisor.HEALTH_POLL = 0.01
    supervisor.add(Essential("shares", writer, health=lambda: reason[0]))
    with caplog.at_level(logging.INFO, logger="test.supervisor"):
        supervisor.start(on_fatal=lambda error: None)
        try:
            assert supervisor.states()["shares"].state == "ok"
            reason[0] = "database unreachable"
            await until(lambda: "shares: degraded: database unreachable" in caplog.text)
            health = supervisor.states()["shares"]
            assert (health.state, health.reason) == ("degraded", "database unreachable")
            reason[0] = None
            await until(lambda: "shares: ok again" in caplog.text)
            assert supervisor.states()["shares"].to_json()["state"] == "ok"
        finally:
            await supervisor.stop(5)


def test_service_names_are_unique():
    supervisor = quick_supervisor()
    supervisor.add(Periodic("stats", asyncio.sleep, 1))
    with pytest.raises(PoolError, match="two services are named 'stats'"):
        supervisor.add(Essential("stats", asyncio.Event().wait))


def test_exit_codes_in_words():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(-15) == "killed by SIGTERM"
    assert describe_exit(1) == "exit code 1"
    assert describe_exit(None) == "still running"


async def test_a_round_that_succeeds_but_is_held_back_shows_why(
        caplog: pytest.LogCaptureFixture):
    """Payments paused (by hand, or because the wallet holds a send the database does not
    know) is not a failure, but the service does not do its job: degraded, with the
    reason its health gives, and ok again once that is gone."""
    held: list[str | None] = ["payments paused: the wallet holds an unknown send"]
    rounds: list[int] = []

    async def step() -> None:
        rounds.append(1)

    supervisor = quick_supervisor()
    supervisor.add(Periodic("payments", step, interval=0.05, health=lambda: held[0]))
    with caplog.at_level(logging.INFO, logger="test.supervisor"):
        supervisor.start(on_fatal=lambda error: pytest.fail(f"fatal: {error}"))
        try:
            await until(lambda: len(rounds) >= 2)
            health = supervisor.states()["payments"]
            assert (health.state, health.reason) == ("degraded", held[0])
            since = health.since
            await until(lambda: len(rounds) >= 4)
            assert supervisor.states()["payments"].since == since  # one state, not new ones
            held[0] = None
            count = len(rounds)
            await until(lambda: len(rounds) >= count + 2)
            assert supervisor.states()["payments"].state == "ok"
        finally:
            await supervisor.stop(5)
    messages = [r.getMessage() for r in caplog.records if r.name == "test.supervisor"]
    assert sum("payments: degraded: payments paused" in m for m in messages) == 1
    assert sum("payments: ok again (was: payments paused" in m for m in messages) == 1
    assert not any(r.exc_info for r in caplog.records)
