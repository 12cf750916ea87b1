"""What making a block candidate durable adds before submitblock, per database.

``ShareWriter.record_candidate`` writes the buffered shares and the candidate and returns
once they are committed (or in the fsynced spool); only then is the block submitted. This
bench times that call on each backend, with the writer's flush loop running, twice: with
no other traffic, and while shares arrive at about 1,000/s (the candidate then waits for
a batch in flight, or goes to the spool after CANDIDATE_LOCK_WAIT).

Durability is real here: SQLite as multipool sets it up (WAL, synchronous=FULL),
PostgreSQL and MariaDB started by multipool.testdb with ``durable=True`` (their defaults:
fsync on, synchronous_commit on, innodb_flush_log_at_trx_commit=1), all on the local disk.

Run: .venv/bin/python bench/block_durability.py [--candidates N]
     [--backends sqlite,postgresql,mariadb]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _common import report
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.writer import ShareWriter
from multipool.stratum.sink import BlockCandidate, BlockRecord, ShareRecord
from multipool.testdb import MariaDBServer, PostgresServer

BACKENDS = ("sqlite", "postgresql", "mariadb")
SHARE_INTERVAL = 0.001


def share(seq: int) -> ShareRecord:
    return ShareRecord(time=time.time(), address=f"rltc1qbenchaddress{seq % 50:04d}",
                       worker="rig", ip="127.0.0.1", job_id="1", height=seq,
                       difficulty=1.0, share_difficulty=2.0, accepted=True)


async def time_candidates(url: str, spool_dir: Path, count: int, load: bool
                          ) -> tuple[list[float], int]:
    """Seconds each of ``count`` record_candidate calls took, and how many went to the
    spool rather than the database."""
    engine = create_engine(url)
    await upgrade(engine)
    writer = ShareWriter(engine=engine, spool_dir=spool_dir)
    run = asyncio.create_task(writer.run())
    stop = asyncio.Event()

    async def produce() -> None:
        seq = 0
        while not stop.is_set():
            writer.record_share(share(seq))
            seq += 1
            await asyncio.sleep(SHARE_INTERVAL)

    producer = asyncio.create_task(produce()) if load else None
    rng = random.Random(1)
    took: list[float] = []
    spooled = 0
    try:
        await asyncio.sleep(1.0)
        for n in range(count):
            found = dict(time=time.time(), height=10_000 + n, hash_hex=f"{n:064x}",
                         address="finder", worker="rig", reward=1, network_difficulty=1.0)
            before = writer.spooled
            began = time.perf_counter()
            await writer.record_candidate(BlockCandidate(**found))
            took.append(time.perf_counter() - began)
            spooled += writer.spooled > before
            writer.record_block(BlockRecord(**found, accepted=True, result=None))
            await asyncio.sleep(rng.uniform(0.05, 0.15))
    finally:
        stop.set()
        if producer is not None:
            await producer
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        await engine.dispose()
    return took, spooled


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[tuple[Callable[[str], str], str]]:
    if backend == "sqlite":
        yield (lambda name: f"sqlite:///{workdir / name}.db"), sqlite3.sqlite_version
    elif backend == "postgresql":
        with PostgresServer(durable=True) as pg:
            yield pg.create_database, pg.psql("SHOW server_version").strip()
    else:
        with MariaDBServer(durable=True) as db:
            yield db.create_database, db.sql("SELECT VERSION()").strip()


async def measure(backends: list[str], count: int) -> list[dict[str, Any]]:
    table: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="multipool-bench-") as tmp:
        workdir = Path(tmp)
        for backend in backends:
            with database(backend, workdir) as (create, version):
                for load in (False, True):
                    name = f"cand_{'load' if load else 'idle'}"
                    took, spooled = await time_candidates(
                        create(name), workdir / f"spool-{backend}-{name}", count, load)
                    ms = sorted(t * 1000 for t in took)
                    table.append({
                        "backend": f"{backend} {version.split()[0].split('-')[0]}",
                        "shares/s": "~1000" if load else "0",
                        "median ms": statistics.median(ms),
                        "p90 ms": ms[int(len(ms) * 0.9) - 1],
                        "max ms": ms[-1], "to spool": spooled})
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=40, help="per backend and load")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated, of " + ", ".join(BACKENDS))
    args = parser.parse_args()
    backends = args.backends.split(",")
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    table = asyncio.run(measure(backends, args.candidates))
    report("block_durability", "Block candidate durable write before submitblock", table,
           {"candidates": args.candidates})


if __name__ == "__main__":
    main()
