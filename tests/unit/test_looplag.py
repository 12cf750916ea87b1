"""The loop lag monitor on a real asyncio loop: deliberate stalls (a blocking sleep on the
loop) must show as what they are, an idle loop as nearly nothing."""

from __future__ import annotations

import asyncio
import time

from multipool.looplag import LoopLagMonitor


async def stall(seconds: float) -> None:
    """Hold the loop: a blocking sleep inside a callback, as a slow handler would."""
    done = asyncio.get_running_loop().create_future()

    def block() -> None:
        time.sleep(seconds)  # deliberately blocking: the stall under test
        done.set_result(None)

    asyncio.get_running_loop().call_soon(block)
    await done


async def test_a_50_ms_stall_shows_at_least_45_ms():
    monitor = LoopLagMonitor()
    monitor.start()
    try:
        await asyncio.sleep(0.1)
        await stall(0.050)
        await asyncio.sleep(0.05)
        figures = monitor.figures()
    finally:
        monitor.stop()
    assert figures.max_ms >= 45.0, figures
    # One stalled tick among ~30: the max, not the p99 (which allows 1 % above it).
    assert figures.samples >= 20, figures
    assert figures.window_seconds == 60.0


async def test_repeated_stalls_reach_the_p99():
    """More than 1 % of the ticks late by 20 ms or more: the p99 says so."""
    monitor = LoopLagMonitor(interval=0.005)
    monitor.start()
    try:
        for _ in range(4):
            await asyncio.sleep(0.03)
            await stall(0.025)
        figures = monitor.figures()
    finally:
        monitor.stop()
    # 4 stalls among about 4 * (6 + 1) ticks: far more than 1 %.
    assert figures.samples < 100, figures
    assert figures.p99_ms >= 20.0, figures
    assert figures.max_ms >= 20.0, figures


async def test_an_idle_loop_shows_little_lag():
    monitor = LoopLagMonitor()
    monitor.start()
    try:
        await asyncio.sleep(0.5)
        figures = monitor.figures()
    finally:
        monitor.stop()
    # 0.5 s at one tick per 5 ms (each a little late): about 100 ticks.
    assert 20 <= figures.samples <= 101, figures
    # The selector's timeout is rounded up to whole milliseconds; a test machine whose
    # cores are shared adds its scheduling delays (20 ms seen under load).
    assert figures.p99_ms < 40.0, figures
    assert figures.p99_ms <= figures.max_ms
    assert not monitor.running


async def test_samples_older_than_the_window_are_forgotten():
    monitor = LoopLagMonitor(window=1)
    # Samples are kept per whole second of the loop's clock and a 1 s window is the
    # current second: stall early in one, so the check below falls in the same second.
    loop = asyncio.get_running_loop()
    await asyncio.sleep(1.0 - loop.time() % 1.0 + 0.01)
    monitor.start()
    try:
        await stall(0.05)
        await asyncio.sleep(0.05)
        assert monitor.figures().max_ms >= 45.0
        await asyncio.sleep(2.1)
        figures = monitor.figures()
    finally:
        monitor.stop()
    assert figures.max_ms < 45.0, figures
    assert 0 < figures.samples <= 1.2 / 0.005, figures


def test_no_samples_no_figures():
    figures = LoopLagMonitor().figures()
    assert (figures.p99_ms, figures.max_ms, figures.samples) == (0.0, 0.0, 0)
