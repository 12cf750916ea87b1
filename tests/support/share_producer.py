"""A stand-in for the pool engine's share path, run as its own process so a test can kill
it: records numbered shares into a real ShareWriter (default flush interval) every
``interval`` seconds and prints ``<seq> <monotonic time>`` for each once it is recorded,
as the engine answers a miner's submit once the share is handed to the writer.

SIGTERM stops it the way ``pool serve`` stops: the writer's final flush runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.writer import ShareWriter
from tests.unit.test_share_writer import share


async def produce(url: str, spool_dir: Path, interval: float) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    writer = ShareWriter(engine=engine, spool_dir=spool_dir)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    run = asyncio.create_task(writer.run())
    print("ready", flush=True)
    seq = 0
    while not stop.is_set():
        writer.record_share(share(seq))
        print(seq, time.monotonic(), flush=True)
        seq += 1
        await asyncio.sleep(interval)
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    await engine.dispose()


if __name__ == "__main__":
    asyncio.run(produce(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])))
