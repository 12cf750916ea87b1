"""A short-lived cache of query answers, one per key, so many clients cost one query.

Each key (a query and its arguments) holds its answer for ``ttl`` seconds. Callers that
arrive while the answer is being computed wait for that one computation instead of
starting their own. Once the answer is older than ``ttl`` but younger than ``2 x ttl``,
callers get it at once while one refresh runs in the background: a page never waits for
a query that a moment-old answer can stand in for. Older than that, callers wait for
the fresh one. The number of keys is bounded (least recently used go first), so a
client walking through every page of a list cannot grow it without end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(slots=True)
class _Entry:
    value: Any
    at: float  # monotonic time the value was computed
    ttl: float


class AnswerCache:
    """Answers by key for ``ttl`` seconds (0: no caching), at most ``max_entries``."""

    def __init__(self, ttl: float, *, max_entries: int = 1024,
                 clock: Callable[[], float] = time.monotonic,
                 logger: logging.Logger | None = None):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.logger = logger or logging.getLogger(__name__)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._running: dict[Hashable, asyncio.Task[Any]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[T]], *,
                  ttl: float | None = None) -> T:
        """The answer for ``key``: cached, or from ``compute()`` (one call at a time per
        key). ``ttl`` overrides the cache's for this key (never to caching where the
        cache has none). An exception of ``compute`` reaches every caller waiting for it
        and is not cached."""
        if self.ttl <= 0:
            return await compute()
        ttl = self.ttl if ttl is None else ttl
        entry = self._entries.get(key)
        if entry is not None:
            age = self.clock() - entry.at
            if age < entry.ttl:
                self._entries.move_to_end(key)
                return entry.value  # type: ignore[no-any-return]
            if age < 2 * entry.ttl:
                self._entries.move_to_end(key)
                if key not in self._running:
                    self._start(key, compute, ttl)
                return entry.value  # type: ignore[no-any-return]
        task = self._running.get(key) or self._start(key, compute, ttl)
        # Shielded: one caller going away (a closed connection) must not cancel the
        # computation the others wait for.
        return await asyncio.shield(task)  # type: ignore[no-any-return]

    def _start(self, key: Hashable, compute: Callable[[], Awaitable[T]],
               ttl: float) -> asyncio.Task[T]:
        async def run() -> T:
            try:
                value = await compute()
            finally:
                self._running.pop(key, None)
            self._entries[key] = _Entry(value, self.clock(), ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            return value

        task = asyncio.ensure_future(run())
        task.add_done_callback(self._log_failure)
        self._running[key] = task
        return task

    def _log_failure(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # Whoever waited got the error; a background refresh keeps the old answer
            # and the next caller after 2 x ttl waits for a new try and sees it.
            self.logger.debug("query failed: %s", task.exception())

    def clear(self) -> None:
        self._entries.clear()

    async def close(self) -> None:
        """Cancel the computations still running."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()
        self._entries.clear()
