"""What a crash of the pool engine costs in shares, on each database: a process feeding
a real ShareWriter (default 1 s flush interval) is killed with SIGKILL while it records
a share every 2 ms. Every share recorded more than one flush interval before the kill
is in the database, exactly once and in order; only the last interval's may be gone.
Stopped with SIGTERM instead, it loses nothing."""

from __future__ import annotations

import inspect
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from multipool.accounting.database import create_engine
from multipool.accounting.writer import ShareWriter
from tests.unit.test_share_writer import sequences

SHARE_INTERVAL = 0.002
FLUSH_INTERVAL = inspect.signature(ShareWriter).parameters["flush_interval"].default
# Time a flush may take to commit on a busy machine, beyond the interval itself.
COMMIT_MARGIN = 0.5
RUN_SECONDS = 3.0


class Producer:
    """The producer process and the (seq, time recorded) lines it printed."""

    def __init__(self, url: str, spool_dir: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.share_producer", url, str(spool_dir),
             str(SHARE_INTERVAL)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.recorded: list[tuple[int, float]] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == "ready":
                self.ready.set()
                continue
            seq, at = line.split()
            self.recorded.append((int(seq), float(at)))

    def stop(self, signum: int) -> float:
        """Send ``signum``; return the monotonic time it was sent."""
        sent = time.monotonic()
        self.process.send_signal(signum)
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return sent


@pytest.fixture
def producer_for(tmp_path: Path):
    started: list[Producer] = []

    def start(url: str) -> Producer:
        producer = Producer(url, tmp_path / "spool")
        started.append(producer)
        if not producer.ready.wait(60):
            producer.process.kill()
            pytest.fail(f"producer did not start: {producer.process.stderr.read()}")  # type: ignore[union-attr]
        return producer

    yield start
    for producer in started:
        if producer.process.poll() is None:
            producer.process.kill()
            producer.process.wait()


async def test_kill_loses_at_most_the_last_flush_interval(database_url: str, producer_for):
    producer = producer_for(database_url)
    time.sleep(RUN_SECONDS)
    killed_at = producer.stop(signal.SIGKILL)
    assert producer.process.returncode == -signal.SIGKILL

    engine = create_engine(database_url)
    try:
        stored = await sequences(engine)
    finally:
        await engine.dispose()
    recorded = producer.recorded
    assert len(recorded) > RUN_SECONDS / SHARE_INTERVAL / 4, "producer too slow to test"
    # What is stored is the first shares recorded, each once, in order: no gap, no repeat.
    assert stored == list(range(len(stored)))
    assert len(stored) <= len(recorded)
    old_enough = [seq for seq, at in recorded
                  if at < killed_at - FLUSH_INTERVAL - COMMIT_MARGIN]
    assert old_enough, "nothing was recorded long enough before the kill"
    assert len(stored) > old_enough[-1], (
        f"share {len(stored)} recorded {killed_at - recorded[len(stored)][1]:.2f} s "
        f"before the kill is lost")
    lost = recorded[len(stored):]
    window = killed_at - lost[0][1] if lost else 0.0
    print(f"\n{database_url.split(':')[0]}: {len(recorded)} shares recorded, "
          f"{len(lost)} lost to kill -9, recorded in the last {window:.2f} s "
          f"(flush interval {FLUSH_INTERVAL} s)")


async def test_sigterm_loses_nothing(database_url: str, producer_for):
    producer = producer_for(database_url)
    time.sleep(1.5)
    producer.stop(signal.SIGTERM)
    assert producer.process.returncode == 0, producer.process.stderr.read()  # type: ignore[union-attr]
    engine = create_engine(database_url)
    try:
        stored = await sequences(engine)
    finally:
        await engine.dispose()
    assert len(producer.recorded) > 100
    assert stored == [seq for seq, _ in producer.recorded]
