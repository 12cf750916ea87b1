"""A payment run for 10,000 miners against the real litecoind regtest wallet.

One litecoind regtest node (multipool.devnet) in a temporary directory; its ``pool``
wallet mines enough mature coinbases to pay everyone (regtest halves the 50 LTC reward
every 150 blocks; coinbases mature after 100), and at least one per transaction: a payment
spends confirmed coins only, never the unconfirmed change of the one before. 10,000 payout
addresses are bech32 P2WPKH addresses of random 20-byte hashes (outside the wallet, as a
pool's miners are), checked with multipool's own decoder and, for a sample, the daemon's
``validateaddress``. Each miner is credited 0.01-0.1 LTC with ``bookkeeping.post(kind=
"adjustment")`` (one transaction for all), then ``PaymentProcessor.run_once()`` is timed
with ``max_recipients`` 200: 50 transactions for 10,000 miners.

The run's time is split into building the transactions in the wallet
(``createrawtransaction``, ``fundrawtransaction``, ``signrawtransactionwithwallet``,
``decoderawtransaction``), broadcasting them (``sendrawtransaction``), the other wallet
calls (``listunspent``, ``listsinceblock``, lock and fee calls), each timed around the
call, and the rest: the database transactions and the Python that drives them (the lock,
the due query, the intent and broadcast transactions). Of the rest, the time inside
``cursor.execute`` is shown too (SQLAlchemy cursor events); it leaves out the driver's
other round trips (aiosqlite hands every fetch and cursor close to its thread as well),
so it is a floor of the database's share, not the whole of it. A 5 ms ticker on the same event loop
records its longest stall during the run (``pool serve`` pays in the loop of the stratum
server).

Checks afterwards (printed): every miner's balance is 0, ``ledger_mismatches`` is empty,
the wallet's sends add up to what the run says it paid, and the payment transactions are
accepted: all in the mempool, then all confirmed in the next block.

Run: .venv/bin/python bench/payment_run.py [--miners N] [--max-recipients R]
     [--backends sqlite,postgresql,mariadb]   (default: every backend whose binaries exist;
     each gets its own regtest node)
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

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from _common import report
from multipool.accounting import bookkeeping
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.payments import PaymentProcessor
from multipool.accounting.schema import balances
from multipool.chain.address import address_to_script, encode_segwit_address
from multipool.chain.networks import NETWORKS
from multipool.chain.rpc import DaemonClient
from multipool.config import to_units
from multipool.devnet import RegtestNetwork, RegtestNode
from multipool.testdb import MariaDBServer, PostgresServer, find_mariadb, find_pg_bin

BACKENDS = ("sqlite", "postgresql", "mariadb")
PARAMS = NETWORKS[("litecoin", "regtest")]
DECIMALS = PARAMS.decimals
COIN = 10 ** DECIMALS
MIN_PAYOUT = COIN // 1000  # 0.001 LTC: every miner credited below is due
CREDIT_RANGE = (COIN // 100, COIN // 10)  # 0.01-0.1 LTC per miner
# Regtest: 50 LTC, halved every 150 blocks; coinbases spendable after 100 confirmations.
HALVING = 150
MATURITY = 100
MWEB_HEIGHT = 432  # a block template at this height needs a peg-in: stay below



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


def miner_addresses(count: int, rng: random.Random) -> list[str]:
    addresses = []
    for _ in range(count):
        key_hash = rng.randbytes(20)
        address = encode_segwit_address(PARAMS.bech32_hrp or "", 0, key_hash)
        assert address_to_script(address, PARAMS) == b"\x00\x14" + key_hash
        addresses.append(address)
    return addresses


def block_subsidy(height: int) -> int:
    return (50 * COIN) >> (height // HALVING)


def blocks_to_mine(need: int, utxos: int) -> int:
    """The fewest blocks from genesis after which the mature coinbases hold ``need`` and
    number at least ``utxos``."""
    height = MATURITY
    mature = mature_count = 0
    while mature < need or mature_count < utxos:
        height += 1
        mature += block_subsidy(height - MATURITY)
        mature_count += 1
    if height >= MWEB_HEIGHT:
        raise SystemExit(f"{height} blocks needed, past MWEB activation at {MWEB_HEIGHT}: "
                         "pay fewer miners or smaller amounts")
    return height


BUILD_CALLS = ("createrawtransaction", "fundrawtransaction", "signrawtransactionwithwallet",
               "decoderawtransaction")


class TimedWallet:
    """The pool wallet (a DaemonClient) with every call timed, by method name."""

    def __init__(self, daemon: DaemonClient):
        self.daemon = daemon
        self.seconds: dict[str, list[float]] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.daemon, name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self.seconds.setdefault(name, []).append(time.perf_counter() - began)
        return timed


class StatementClock:
    """Counts the statements an engine executes and sums their time."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine.sync_engine
        self.count = 0
        self.seconds = 0.0
        self._began: dict[int, float] = {}

    def _before(self, _conn: Any, cursor: Any, *_args: Any) -> None:
        self._began[id(cursor)] = time.perf_counter()

    def _after(self, _conn: Any, cursor: Any, *_args: Any) -> None:
        began = self._began.pop(id(cursor), None)
        if began is not None:
            self.count += 1
            self.seconds += time.perf_counter() - began

    def __enter__(self) -> StatementClock:
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc_info: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


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


async def credit(engine: AsyncEngine, credits: dict[str, int]) -> float:
    began = time.perf_counter()
    async with engine.begin() as connection:
        for address, amount in credits.items():
            await bookkeeping.post(connection, address=address, amount=amount,
                                   kind=bookkeeping.ADJUSTMENT, note="bench credit")
    return time.perf_counter() - began


async def pay(node: RegtestNode, engine: AsyncEngine, max_recipients: int,
              miners: list[str]) -> dict[str, Any]:
    """Time one run_once(); return its figures and the checks made afterwards."""
    async with DaemonClient(node.rpc_url, user=node.rpc_user, password=node.rpc_password,
                            wallet="pool", timeout=300.0) as daemon:
        wallet = TimedWallet(daemon)
        processor = PaymentProcessor(engine=engine, wallet=wallet, decimals=DECIMALS,
                                     min_payout=MIN_PAYOUT, max_recipients=max_recipients)
        with StatementClock(engine) as clock:
            async with LoopStalls() as stalls:
                began = time.perf_counter()
                result = await processor.run_once()
                seconds = time.perf_counter() - began
        async with engine.connect() as connection:
            unpaid = (await connection.execute(
                select(func.count()).select_from(balances)
                .where(balances.c.address.in_(miners), balances.c.amount != 0))).scalar()
            mismatches = await bookkeeping.ledger_mismatches(connection)
        sent = 0
        for txid in result.txids:
            details = (await daemon.gettransaction(txid))["details"]
            sent += -sum(to_units(d["amount"], DECIMALS) for d in details
                         if d["category"] == "send")
    return {"report": result, "seconds": seconds, "wallet": wallet.seconds,
            "statements": clock.count, "statement_seconds": clock.seconds,
            "loop_stall": stalls.longest,
            "unpaid_miners": unpaid, "ledger_mismatches": mismatches, "wallet_sent": sent}


async def run_backend(backend: str, workdir: Path, miners: list[str], credits: dict[str, int],
                      max_recipients: int) -> dict[str, Any]:
    need = sum(credits.values())
    batches = -(-len(miners) // max_recipients)
    # Room for the fee reserve and the fees, and one mature coinbase per transaction.
    height = blocks_to_mine(need + COIN, batches + 1)
    with RegtestNetwork(workdir / f"regtest-{backend}", nodes=1) as net, \
            database(backend, workdir) as (create, version):
        node = net.nodes[0]
        began = time.perf_counter()
        net.mine(height)
        mined = time.perf_counter() - began
        trusted = node.rpc("getbalances", wallet="pool")["mine"]["trusted"]
        sample = [node.rpc("validateaddress", a)["isvalid"] for a in miners[:: max(
            1, len(miners) // 20)]]
        engine = create_engine(create("payments"))
        try:
            await upgrade(engine)
            credited = await credit(engine, credits)
            done = await pay(node, engine, max_recipients, miners)
        finally:
            await engine.dispose()
        txids = done["report"].txids
        mempool = set(node.rpc("getrawmempool"))
        in_mempool = sum(txid in mempool for txid in txids)
        confirmed_block = net.mine(1)[0]
        block_txids = set(node.rpc("getblock", confirmed_block, 1)["tx"])
        in_block = sum(txid in block_txids for txid in txids)
        utxos = len(node.rpc("listunspent", 0, 9999999, wallet="pool"))
    return {**done, "version": version, "blocks_mined": height, "mine_seconds": mined,
            "wallet_trusted": trusted, "credit_seconds": credited,
            "validateaddress_sample": f"{sum(sample)}/{len(sample)}",
            "in_mempool": in_mempool, "in_next_block": in_block, "wallet_utxos_after": utxos}


def rows_of(backend: str, miners: int, done: dict[str, Any]) -> list[dict[str, Any]]:
    result = done["report"]
    wallet = done["wallet"]
    build = sum(sum(wallet.get(name, [])) for name in BUILD_CALLS)
    send = sum(wallet.get("sendrawtransaction", []))
    other_wallet = sum(sum(v) for k, v in wallet.items()
                       if k not in BUILD_CALLS and k != "sendrawtransaction")
    database = done["statement_seconds"]
    rest = done["seconds"] - build - send - other_wallet - database
    seconds = done["seconds"]

    def row(measure: str, value: float | str, share: str = "") -> dict[str, Any]:
        return {"backend": backend, "measure": measure,
                "value": f"{value:,.3f}" if isinstance(value, float) else value,
                "of run": share}

    def part(measure: str, value: float) -> dict[str, Any]:
        return row(measure, value, f"{100 * value / seconds:.0f} %")

    funds = wallet.get("fundrawtransaction", [0.0])
    return [
        row("credit: bookkeeping.post x miners, s", done["credit_seconds"]),
        row("run_once: status", result.status),
        row("transactions", str(len(result.txids))),
        row("recipients paid", f"{result.paid:,} of {miners:,}"),
        row("run_once, s", seconds, "100 %"),
        row("recipients/s", result.paid / seconds),
        part("  building (create/fund/sign/decode), s", build),
        part("  in sendrawtransaction, s", send),
        part("  other wallet calls, s", other_wallet),
        part("  database + Python (the rest), s", rest + database),
        part(f"    inside cursor.execute ({done['statements']:,}), s", database),
        row("longest event-loop stall, ms", f"{1000 * done['loop_stall']:.0f}"),
        row("fundrawtransaction each: first / median / last, s",
            f"{funds[0]:.3f} / {statistics.median(funds):.3f} / {funds[-1]:.3f}"),
        row("miners with balance != 0 after", str(done["unpaid_miners"])),
        row("ledger_mismatches", repr(done["ledger_mismatches"])),
        row("wallet sent == paid", "yes" if done["wallet_sent"] == result.total else "NO"),
        row("txs in mempool / next block",
            f"{done['in_mempool']} / {done['in_next_block']} of {len(result.txids)}"),
    ]


async def measure(backends: list[str], miners: int, max_recipients: int, seed: int
                  ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = random.Random(seed)
    addresses = miner_addresses(miners, rng)
    credits = {address: rng.randint(*CREDIT_RANGE) for address in addresses}
    table: list[dict[str, Any]] = []
    results: dict[str, Any] = {"miners": miners, "max_recipients": max_recipients,
                               "credited": sum(credits.values()), "backends": {}}
    with tempfile.TemporaryDirectory(prefix="multipool-bench-") as tmp:
        for backend in backends:
            done = await run_backend(backend, Path(tmp), addresses, credits, max_recipients)
            table += rows_of(backend, miners, done)
            result = done.pop("report")
            results["backends"][backend] = {
                **done, "status": result.status, "paid": result.paid, "total": result.total,
                "transactions": len(result.txids), "txids": result.txids,
                "ledger_mismatches": [repr(m) for m in done["ledger_mismatches"]],
                "wallet_trusted": str(done["wallet_trusted"])}
    return table, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--miners", type=int, default=10_000)
    parser.add_argument("--max-recipients", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backends", default=",".join(available_backends()),
                        help="comma-separated, of " + ", ".join(BACKENDS))
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends: {', '.join(sorted(unknown))}")
    table, results = asyncio.run(measure(backends, args.miners, args.max_recipients,
                                         args.seed))
    report("payment_run", f"Payment run: {args.miners:,} miners, at most "
           f"{args.max_recipients} per transaction, real litecoind regtest wallet",
           table, results)


if __name__ == "__main__":
    main()
