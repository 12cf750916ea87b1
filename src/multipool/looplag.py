"""How late the event loop runs what is due: the stall figure of the stratum loop.

Everything the engine does for miners (reading a share, replying, sending a job) waits
while one callback holds the loop. :class:`LoopLagMonitor` schedules a tiny callback
every ``interval`` seconds and records how late it ran. A stall of S seconds delays the
callback due during it by at least S - interval, so with the default 5 ms a 50 ms stall
shows as at least 45 ms; an idle loop shows about the selector's 1 ms timeout rounding.

It is a plain ``call_at`` chain, not a task: no future, no coroutine step. Measured on
the 2-core test machine under load: about 20 us of its own per tick; on an otherwise
idle loop each tick is also a wake-up (~100 us there), so about 2 % of one core in all
at 200 ticks a second, less on a busy loop, whose wake-ups for I/O the ticks share.
Samples are counted per second in 0.1 ms steps, so the p99 of the last minute is read
without sorting thousands of samples on the loop it measures.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, deque
from dataclasses import dataclass


@dataclass(slots=True)
class _Second:
    """The samples of one second of loop time, in 0.1 ms steps (rounded up)."""

    second: int
    tenths: Counter[int]
    max_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class LoopLag:
    """The lateness of the loop over the window: p99 and max in milliseconds."""

    p99_ms: float
    max_ms: float
    samples: int
    window_seconds: float

    def to_json(self) -> dict[str, float | int]:
        return {"p99_ms": self.p99_ms, "max_ms": self.max_ms, "samples": self.samples,
                "window_seconds": self.window_seconds}


class LoopLagMonitor:
    """Measures how late the running loop runs a callback that is due every
    ``interval`` seconds; :meth:`figures` gives p99 and max over the last ``window``
    seconds."""

    INTERVAL = 0.005
    WINDOW = 60

    def __init__(self, *, interval: float = INTERVAL, window: int = WINDOW):
        self.interval = interval
        self.window = window
        self._seconds: deque[_Second] = deque(maxlen=window + 1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Start measuring on the running loop (again after :meth:`stop`)."""
        if self._handle is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._due = self._loop.time() + self.interval
        self._handle = self._loop.call_at(self._due, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        late = now - self._due
        if late < 0.0:  # asyncio runs timers up to its clock resolution early
            late = 0.0
        second = int(now)
        seconds = self._seconds
        if not seconds or seconds[-1].second != second:
            seconds.append(_Second(second, Counter()))
        current = seconds[-1]
        current.tenths[math.ceil(late * 10_000)] += 1
        if late > current.max_seconds:
            current.max_seconds = late
        self._due = now + self.interval
        self._handle = loop.call_at(self._due, self._tick)

    def figures(self) -> LoopLag:
        """p99 and max lateness over the last ``window`` seconds (0 without samples).

        The p99 is the smallest 0.1 ms step that at least 99 % of the samples do not
        exceed; the max is exact."""
        loop = self._loop
        now = loop.time() if loop is not None else 0.0
        oldest = int(now) - self.window
        counts: Counter[int] = Counter()
        worst = 0.0
        for entry in self._seconds:
            if entry.second > oldest:
                counts.update(entry.tenths)
                worst = max(worst, entry.max_seconds)
        total = sum(counts.values())
        if not total:
            return LoopLag(0.0, 0.0, 0, float(self.window))
        # Samples allowed above the p99: the 1 % largest.
        allowed = total - math.ceil(0.99 * total)
        above = 0
        p99 = 0
        for tenth in sorted(counts, reverse=True):
            above += counts[tenth]
            if above > allowed:
                p99 = tenth
                break
        max_ms = round(worst * 1000, 3)
        # The step is rounded up; the p99 is never more than the exact max.
        return LoopLag(p99_ms=min(p99 / 10, max_ms), max_ms=max_ms, samples=total,
                       window_seconds=float(self.window))
