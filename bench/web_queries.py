"""Query times of the web's read side (web/data.py PoolReader), uncached, on a pool with
1,000 miners and 1,000,000 shares over 24 hours.

The database is filled as the engine would have it: shares (2 % rejected, by several
reasons) from 1,000 addresses with 1 to 3 workers each, spread over the last 24 hours,
rolled up by the real StatsRoller; 48 blocks (the newest 12 hours ago, so the current
round holds half the shares), their reward snapshots for every miner, balances, 200
payment batches paying 500 miners each. Then each PoolReader query runs ``--repeat``
times with the cache off (every call reads the database) and the median and the
slowest are reported, in milliseconds. The reader opens SQLite read-only (mode=ro) as
the web process does. The miners' ranking is read once per window and pages are sliced
from it: the rows time that one read.

Run: .venv/bin/python bench/web_queries.py [--backends sqlite,postgresql]
     [--shares N] [--miners M] [--repeat R]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from _common import report
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import (
    balances,
    block_rewards,
    blocks,
    payment_batches,
    payments,
    shares,
)
from multipool.accounting.stats import StatsRoller
from multipool.testdb import PostgresServer
from multipool.web.data import PoolReader
from multipool.web.database import open_read_only
from multipool.web.status import DatabaseLocation

BATCH = 20_000
REJECT_CODES = (21, 22, 23, 20)


def address_of(index: int) -> str:
    return f"rltc1qbench{index:06d}"


async def fill(engine: AsyncEngine, *, miners: int, count: int, now: datetime,
               seed: int = 1) -> None:
    """Fill a migrated database with ``count`` shares of ``miners`` miners over the 24
    hours before ``now``, blocks, rewards, balances and payments, then roll up."""
    rng = random.Random(seed)
    workers = {m: [f"rig{w}" for w in range(1 + m % 3)] for m in range(miners)}
    start = now - timedelta(hours=24)
    step = 86400 / count
    block_every = count // 48
    block_rows, last_ids = [], []
    async with engine.begin() as connection:
        for first in range(0, count, BATCH):
            rows = []
            for i in range(first, min(count, first + BATCH)):
                miner = rng.randrange(miners)
                accepted = rng.random() >= 0.02
                rows.append({
                    "time": start + timedelta(seconds=i * step), "height": 1000 + i // 20_000,
                    "address": address_of(miner), "worker": rng.choice(workers[miner]),
                    "ip": "192.0.2.1", "difficulty": 0.5, "share_difficulty": 0.7,
                    "accepted": accepted,
                    "reject_code": None if accepted else rng.choice(REJECT_CODES)})
            await connection.execute(insert(shares), rows)
        for b in range(24):  # 24 blocks in the first 12 hours
            last = (b + 1) * block_every
            last_ids.append(last)
            block_rows.append({
                "height": 1000 + b, "hash": uuid.uuid4().hex * 2,
                "time": start + timedelta(seconds=last * step),
                "address": address_of(b), "worker": "rig0", "reward": 2_500_000_000,
                "network_difficulty": 0.001, "effort": 1.0, "last_share_id": last,
                "status": "confirmed" if b < 20 else "pending", "confirmations": 0,
                "rewards_split": True, "scheme": "pplns"})
        await connection.execute(insert(blocks), block_rows)
        await connection.execute(insert(block_rewards), [
            {"block_id": b + 1, "address": address_of(m), "amount": 2_500_000}
            for b in range(24) for m in range(miners)])
        await connection.execute(insert(balances), [
            {"address": address_of(m), "amount": 1_000 * m} for m in range(miners)])
        batches = [{"id": str(uuid.UUID(int=n)), "created": start + timedelta(minutes=7 * n),
                    "status": "confirmed", "txid": f"{n:064x}", "total": 500 * 10_000,
                    "fee": 1_000} for n in range(200)]
        await connection.execute(insert(payment_batches), batches)
        for n in range(200):
            await connection.execute(insert(payments), [
                {"batch_id": batches[n]["id"], "address": address_of((n * 7 + k) % miners),
                 "amount": 10_000, "fee": 0} for k in range(500)])
    await StatsRoller(engine).roll()


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


async def measure(backend: str, url: str, location: DatabaseLocation, *, miners: int,
                  count: int, repeat: int) -> list[dict[str, Any]]:
    engine = create_engine(url)
    await upgrade(engine)
    now = datetime.now(UTC).replace(second=30, microsecond=0)
    started = time.perf_counter()
    await fill(engine, miners=miners, count=count, now=now)
    print(f"{backend}: filled in {time.perf_counter() - started:.0f} s")
    await engine.dispose()
    read = (open_read_only(location, password=None) if backend == "sqlite"
            else create_engine(url))
    reader = PoolReader(read, algorithm="scrypt", tip=1100, cache_seconds=0,
                        clock=lambda: now)
    miner = address_of(7)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "pool()": reader.pool,
        "hashrate_series() pool 24 h": reader.hashrate_series,
        "hashrate_series(miner) 24 h": lambda: reader.hashrate_series(miner),
        "blocks(1, 20)": reader.blocks,
        "payments(1, 20)": reader.payments,
        "miners(1, 20, 3600)": reader.miners,
        "miners(1, 20, 86400)": lambda: reader.miners(window=86400),
        "miners(40, 25, 86400)": lambda: reader.miners(40, 25, window=86400),
        "miner(address)": lambda: reader.miner(miner),
        "miner(unknown)": lambda: reader.miner("rltc1qnobody"),
        "miner_payments(address)": lambda: reader.miner_payments(miner),
        "workers(address)": lambda: reader.workers(miner),
    }
    rows = []
    try:
        # The first call builds the round's tally (the current round: half the shares);
        # later calls add only the shares written since.
        started = time.perf_counter()
        await reader.pool()
        first = (time.perf_counter() - started) * 1000
        rows.append({"backend": backend, "measure": "pool(), first call",
                     "median ms": first, "max ms": first})
        for name, call in calls.items():
            median, worst = await timed(call, repeat)
            rows.append({"backend": backend, "measure": name, "median ms": median,
                         "max ms": worst})
    finally:
        await reader.close()
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--shares", type=int, default=1_000_000)
    parser.add_argument("--miners", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    for backend in args.backends.split(","):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as directory:
                path = Path(directory) / "pool.db"
                rows += await measure(backend, f"sqlite:///{path}",
                                      DatabaseLocation("sqlite", path=str(path)),
                                      miners=args.miners, count=args.shares,
                                      repeat=args.repeat)
        elif backend == "postgresql":
            with PostgresServer() as server:
                url = server.create_database("bench_web")
                rows += await measure(backend, url, DatabaseLocation("postgresql"),
                                      miners=args.miners, count=args.shares,
                                      repeat=args.repeat)
        else:
            raise SystemExit(f"unknown backend {backend!r}")
    report("web_queries", f"PoolReader queries, uncached: {args.miners:,} miners, "
           f"{args.shares:,} shares", rows,
           {"miners": args.miners, "shares": args.shares, "repeat": args.repeat})


if __name__ == "__main__":
    asyncio.run(main())
