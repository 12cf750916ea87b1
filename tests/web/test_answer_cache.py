"""The web's answer cache (web/cache.py): one computation per key however many ask,
answers kept for their ttl, a moment-stale answer served while one refresh runs, errors
never cached, the number of keys bounded. A hand-moved clock stands in for time."""

from __future__ import annotations

import asyncio

import pytest

from multipool.web.cache import AnswerCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counted:
    """A computation that counts its calls and can be held until released."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> int:
        self.calls += 1
        await self.gate.wait()
        return self.calls


async def test_many_callers_at_once_share_one_computation():
    cache, compute = AnswerCache(5.0, clock=Clock()), Counted()
    compute.gate.clear()
    waiting = [asyncio.ensure_future(cache.get("k", compute)) for _ in range(200)]
    await asyncio.sleep(0)
    compute.gate.set()
    assert await asyncio.gather(*waiting) == [1] * 200
    assert compute.calls == 1


async def test_fresh_then_stale_served_while_refreshing_then_waited_for():
    clock = Clock()
    cache, compute = AnswerCache(5.0, clock=clock), Counted()
    assert await cache.get("k", compute) == 1
    clock.now += 4.9
    assert await cache.get("k", compute) == 1 and compute.calls == 1
    # Between ttl and 2 x ttl: the old answer at once, one refresh behind it.
    clock.now += 1.0
    compute.gate.clear()
    assert await cache.get("k", compute) == 1
    assert await cache.get("k", compute) == 1
    await asyncio.sleep(0)
    assert compute.calls == 2  # one refresh, not one per caller
    compute.gate.set()
    await asyncio.sleep(0.01)
    assert await cache.get("k", compute) == 2
    # Older than 2 x ttl: callers wait for a new answer rather than see an old one.
    clock.now += 10.1
    assert await cache.get("k", compute) == 3


async def test_an_error_reaches_the_callers_and_is_not_cached():
    cache = AnswerCache(5.0, clock=Clock())
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database away")
        return 7

    with pytest.raises(RuntimeError, match="database away"):
        await cache.get("k", failing)
    assert await cache.get("k", failing) == 7


async def test_keys_are_bounded_least_recently_used_first_and_ttl_per_key():
    clock = Clock()
    cache = AnswerCache(5.0, max_entries=3, clock=clock)
    computed: list[str] = []

    def compute(key: str):
        async def run() -> str:
            computed.append(key)
            return key
        return run

    for key in ("a", "b", "c"):
        await cache.get(key, compute(key))
    await cache.get("a", compute("a"))  # a is now the most recently used
    await cache.get("d", compute("d"))  # b goes
    assert computed == ["a", "b", "c", "d"]
    await cache.get("a", compute("a"))
    await cache.get("b", compute("b"))
    assert computed == ["a", "b", "c", "d", "b"]
    # A longer ttl for one key.
    await cache.get("long", compute("long"), ttl=60.0)
    clock.now += 30.0
    await cache.get("long", compute("long"), ttl=60.0)
    assert computed.count("long") == 1


async def test_no_ttl_means_no_caching():
    cache, compute = AnswerCache(0.0, clock=Clock()), Counted()
    assert [await cache.get("k", compute) for _ in range(3)] == [1, 2, 3]
