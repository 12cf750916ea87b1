"""PPLNS split over a window of 1,000,000 shares: what splitting one block's reward costs,
in memory and end to end through each database.

The database gets 1,000,000 accepted shares from 1,000 addresses (a few heavy miners and
a long tail, each with a handful of vardiff difficulties that change over time, arbitrary
doubles as a vardiff produces them) and one block at the end whose network difficulty
makes the window (``pplns_factor`` x network difficulty x ``share_units``, litecoin's
policy: 2 x ... x 65536) hold every one of those shares, with a little room to spare, so
the split reads the whole table. Then:

- **in memory**: ``PplnsWindow.add`` over the rows (newest first, already in a list),
  then ``weights()`` and ``split_reward``: the pure cost of the arithmetic;
- **split_block**: ``rounds.split_block`` end to end in one transaction (the block row,
  the window read page by page, ``PAGE`` shares per query, the split, the
  ``block_rewards`` rows, the effort sum), rolled back after each repetition so every
  one does the same work; and its two reads on their own, ``round_weights`` (the pages)
  and ``round_effort`` (one SUM over the round). While split_block runs, a 5 ms ticker
  on the same event loop records the longest stall (``pool serve`` runs the block
  tracker, which splits, in the loop of the stratum server).

Checks (printed, never asserted on time): the amounts sum to the reward exactly, every
address has a weight, and the database split equals the in-memory one to the unit.

Run: .venv/bin/python bench/pplns_split.py [--shares N] [--addresses A] [--repeat R]
     [--backends sqlite,postgresql,mariadb]   (default: every backend whose binaries exist)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from _common import report
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.rewards import PplnsWindow, split_reward
from multipool.accounting.rounds import PAGE, RewardPolicy, round_effort, round_weights, split_block
from multipool.accounting.schema import blocks
from multipool.accounting.writer import write_rows
from multipool.testdb import MariaDBServer, PostgresServer, find_mariadb, find_pg_bin

BACKENDS = ("sqlite", "postgresql", "mariadb")
# Litecoin: scrypt share difficulty is in units 2^16 smaller than network difficulty.
POLICY = RewardPolicy(scheme="pplns", fee_percent=1.0, pplns_factor=2.0, share_units=65536.0)
REWARD = 1_250_000_000  # 12.5 LTC in litoshis
# Rows per write_rows call (one transaction each) while filling the database.
FILL_BATCH = 5_000
# The window is this much larger than the shares' total, so every share counts in full.
ROOM = 1.000001


class LoopStalls:
    """The longest time the event loop went without running a 5 ms ticker, while in the
    ``async with`` block: what the stratum server (same loop in ``pool serve``) would
    have waited at worst."""

    TICK = 0.005

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            began = time.perf_counter()
            await asyncio.sleep(self.TICK)
            self.longest = max(self.longest, time.perf_counter() - began - self.TICK)

    async def __aenter__(self) -> LoopStalls:
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def available_backends() -> list[str]:
    found = ["sqlite"]
    if find_pg_bin() is not None:
        found.append("postgresql")
    if find_mariadb() is not None:
        found.append("mariadb")
    return found


def make_shares(count: int, addresses: int, seed: int = 1) -> tuple[list[str], list[float]]:
    """Return (address, difficulty) columns of ``count`` shares, oldest first."""
    rng = random.Random(seed)
    names = [f"rltc1qbench{i:05d}".ljust(43, "x") for i in range(addresses)]
    # Shares per address: Pareto-like, a few big miners and a long tail.
    activity = [rng.paretovariate(1.2) for _ in range(addresses)]
    # Each address sees 8 vardiff difficulties over the window, log-uniform 2^4..2^16.
    levels = [[2 ** rng.uniform(4, 16) for _ in range(8)] for _ in range(addresses)]
    who = rng.choices(range(addresses), weights=activity, k=count)
    # Make sure every address has at least one share, so all of them get a weight.
    who[:addresses] = range(addresses)
    rng.shuffle(who)
    step = max(1, count // 8)
    difficulty = [levels[a][(i // step + a) % 8] for i, a in enumerate(who)]
    return [names[a] for a in who], difficulty


def share_rows(addresses: list[str], difficulties: list[float], start: int, stop: int,
               began: float) -> list[dict[str, Any]]:
    return [{"time": began + i * 0.01, "height": 1000, "address": addresses[i],
             "worker": f"rig{i % 5}", "ip": f"10.0.{i % 250}.{i % 199}",
             "difficulty": difficulties[i], "share_difficulty": difficulties[i] * 1.5,
             "accepted": True, "reject_code": None}
            for i in range(start, stop)]


async def fill(engine: AsyncEngine, addresses: list[str], difficulties: list[float],
               network_difficulty: float) -> float:
    """Insert the shares and the block through write_rows; return the seconds it took."""
    began_at = time.time() - len(addresses) * 0.01
    began = time.perf_counter()
    for start in range(0, len(addresses), FILL_BATCH):
        stop = min(start + FILL_BATCH, len(addresses))
        rows = share_rows(addresses, difficulties, start, stop, began_at)
        if stop == len(addresses):
            rows.append({"kind": "block", "time": time.time(), "height": 1001,
                         "hash": "00" * 32, "address": addresses[-1], "worker": "rig0",
                         "reward": REWARD, "network_difficulty": network_difficulty})
        async with engine.begin() as connection:
            await write_rows(connection, rows)
    return time.perf_counter() - began


def in_memory(addresses: list[str], difficulties: list[float], window: float
              ) -> tuple[dict[str, int], dict[str, float]]:
    """The split without a database; return (amounts, seconds per step)."""
    newest_first = list(zip(reversed(addresses), reversed(difficulties), strict=True))
    began = time.perf_counter()
    accumulator = PplnsWindow(window)
    add = accumulator.add
    for address, difficulty in newest_first:
        if not add(address, difficulty):
            break
    filled = time.perf_counter()
    weights = accumulator.weights()
    weighed = time.perf_counter()
    amounts = split_reward(REWARD, weights, fee_percent=POLICY.fee_percent)
    done = time.perf_counter()
    return amounts, {"window": filled - began, "weights": weighed - filled,
                     "split_reward": done - weighed, "total": done - began}


async def through_database(engine: AsyncEngine, repeat: int
                           ) -> tuple[dict[str, int], dict[str, list[float]]]:
    """split_block, round_weights and round_effort ``repeat`` times each, every time in a
    transaction that is rolled back; return (amounts, seconds of each run)."""
    times: dict[str, list[float]] = {"split_block": [], "round_weights": [],
                                     "round_effort": [], "split_block_stall": []}
    amounts: dict[str, int] | None = None
    async with engine.connect() as connection:
        block_id = (await connection.execute(select(func.max(blocks.c.id)))).scalar()
        await connection.rollback()
        for _ in range(repeat):
            transaction = await connection.begin()
            async with LoopStalls() as stalls:
                began = time.perf_counter()
                result = await split_block(connection, block_id, POLICY)
                times["split_block"].append(time.perf_counter() - began)
            times["split_block_stall"].append(stalls.longest)
            await transaction.rollback()
            assert result is not None
            amounts = result
        block = (await connection.execute(select(blocks).where(blocks.c.id == block_id))).one()
        for _ in range(repeat):
            began = time.perf_counter()
            await round_weights(connection, block, POLICY)
            times["round_weights"].append(time.perf_counter() - began)
            began = time.perf_counter()
            await round_effort(connection, block, POLICY)
            times["round_effort"].append(time.perf_counter() - began)
            await connection.rollback()
    assert amounts is not None
    return amounts, times


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[tuple[Callable[[str], str], str]]:
    """Yield (a function that creates a database and returns its URL, server version)."""
    if backend == "sqlite":
        yield (lambda name: f"sqlite:///{workdir / name}.db"), sqlite3.sqlite_version
    elif backend == "postgresql":
        with PostgresServer() as pg:
            yield pg.create_database, pg.psql("SHOW server_version").strip()
    else:
        with MariaDBServer() as db:
            yield db.create_database, db.sql("SELECT VERSION()").strip()


def _row(backend: str, measure: str, seconds: float, count: int, paid: Any = "",
         exact: Any = "", stall: float | None = None) -> dict[str, Any]:
    return {"backend": backend, "measure": measure, "seconds": f"{seconds:.3f}",
            "shares/s": count / seconds if seconds > 0 else 0.0,
            "loop stall ms": f"{1000 * stall:.0f}" if stall is not None else "",
            "paid": paid, "exact": exact}


async def on_backend(backend: str, workdir: Path, names: list[str], difficulties: list[float],
                     network_difficulty: float, repeat: int) -> dict[str, Any]:
    with database(backend, workdir) as (create, version):
        engine = create_engine(create("pplns"))
        try:
            await upgrade(engine)
            filled = await fill(engine, names, difficulties, network_difficulty)
            amounts, times = await through_database(engine, repeat)
        finally:
            await engine.dispose()
    return {"version": version, "fill": filled, **times, "amounts": amounts}


async def measure(backends: list[str], count: int, addresses: int, repeat: int
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    names, difficulties = make_shares(count, addresses)
    total = math.fsum(difficulties)
    # Network difficulty such that factor x it x share_units is the total, with room.
    network_difficulty = total * ROOM / (POLICY.pplns_factor * POLICY.share_units)
    window = POLICY.pplns_factor * network_difficulty * POLICY.share_units
    results: dict[str, Any] = {"shares": count, "addresses": addresses, "page": PAGE,
                               "fill_batch": FILL_BATCH, "repeat": repeat,
                               "network_difficulty": network_difficulty, "window": window,
                               "difficulty_total": total, "reward": REWARD,
                               "distinct_difficulties": len(set(difficulties)),
                               "backends": {}}

    reference, steps = in_memory(names, difficulties, window)
    exact = "yes" if sum(reference.values()) == REWARD else "NO"
    paid = len(reference) - 1  # less the pool fee
    table = [_row("memory", "PplnsWindow.add, every share", steps["window"], count),
             _row("memory", "weights() + split_reward", steps["weights"] + steps["split_reward"],
                  count, paid, exact),
             _row("memory", "whole split", steps["total"], count, paid, exact)]
    results["memory"] = {**steps, "addresses_paid": paid, "sum_is_reward": exact == "yes"}

    with tempfile.TemporaryDirectory(prefix="multipool-bench-") as tmp:
        for backend in backends:
            try:
                done = await on_backend(backend, Path(tmp), names, difficulties,
                                        network_difficulty, repeat)
            except Exception as exc:  # noqa: BLE001 - one backend failing is a result too
                table.append({"backend": backend, "measure": "FAILED", "seconds": "",
                              "shares/s": 0.0, "loop stall ms": "", "paid": "",
                              "exact": type(exc).__name__})
                results["backends"][backend] = {"error": repr(exc)}
                print(f"{backend}: {exc!r}")
                continue
            amounts = done.pop("amounts")
            same = amounts == reference
            exact = "yes" if sum(amounts.values()) == REWARD and same else "NO"
            table += [
                _row(backend, f"fill, write_rows x {FILL_BATCH:,}", done["fill"], count),
                _row(backend, "split_block end to end", statistics.median(done["split_block"]),
                     count, len(amounts) - 1, exact, max(done["split_block_stall"])),
                _row(backend, f"  round_weights, {PAGE:,}/page",
                     statistics.median(done["round_weights"]), count),
                _row(backend, "  round_effort (SUM)",
                     statistics.median(done["round_effort"]), count)]
            results["backends"][backend] = {**done, "same_as_memory": same,
                                            "sum_is_reward": exact == "yes"}
    return table, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shares", type=int, default=1_000_000)
    parser.add_argument("--addresses", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each database split")
    parser.add_argument("--backends", default=",".join(available_backends()),
                        help="comma-separated, of " + ", ".join(BACKENDS))
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    if args.shares < args.addresses:
        parser.error("--shares must be at least --addresses")
    table, results = asyncio.run(measure(backends, args.shares, args.addresses, args.repeat))
    report("pplns_split", f"PPLNS split over a window of {args.shares:,} shares "
           f"({args.addresses:,} addresses; medians of {args.repeat})", table, results)


if __name__ == "__main__":
    main()
