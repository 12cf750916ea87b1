"""The pages in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

``browser``: one Chromium for the whole session, closed whatever the tests did.
``site``: per module, a real pool (engine.run_pool, as `pool serve` composes it) on two
litecoind regtest nodes, mined through its stratum port by the project's CPU miner into a
SQLite database until a whole minute of shares is rolled up, blocks were found and one
payment went out; then a real `multipool web serve` reading it. Nothing is mocked.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from multipool.chain.rpc import DaemonError
from multipool.devnet import RegtestNetwork, find_litecoind, free_port, regtest_coin_config
from multipool.engine import ServiceIntervals
from tests.support.live_pool import LivePool, web_process
from tests.support.requirements import missing
from tests.support.stratum_client import RawClient

PREFIX = "ltc"
COIN_NAME = "litecoin"
WORKERS = ("rig1", "rig2")
# At scrypt difficulty 2e-5 about every other hash is a share and every other share a
# block (regtest's target is 0x7fffff..): a few hashes a second give shares, blocks and,
# once 100 blocks bury them, payments, in about two minutes.
SHARE_DIFFICULTY = 2e-5
HASHRATE_LIMIT = 3.0
INTERVALS = ServiceIntervals(blocks=1.0, stats=1.0, status=1.0)
MATURITY = 100  # regtest coinbase maturity


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        missing("Debian's chromium", "apt-get install chromium (or run `make setup`)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium, started once; stopped at the end even after a failure."""
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright (PyPI playwright)", "run `make setup`")
    with sync_playwright() as playwright:
        # Chromium's sandbox needs user namespaces, which root (and many CI containers)
        # do not get: the pages under test are our own, served on loopback.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        chromium = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Site:
    """A pool mined for real and the web process in front of it."""

    base: str  # the web process, http://127.0.0.1:PORT
    prefix: str
    name: str
    stratum_port: int
    address: str  # the miner's payout address
    workers: tuple[str, ...]
    database: Path
    new_address: Callable[[], str]  # a valid address that never mined here
    status: dict[str, Any] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows from the pool's SQLite database, read with sqlite3 itself (read-only):
        the figures the pages must show, found without the web process's code."""
        with sqlite3.connect(f"file:{self.database}?mode=ro", uri=True) as connection:
            return connection.execute(sql, params).fetchall()


def wait_for(what: str, check: Any, timeout: float, pool: LivePool) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pool.error is not None:
            raise RuntimeError(f"the pool engine stopped: {pool.error!r}")
        result = check()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"not within {timeout:.0f} s: {what}; last status: {pool.status()}")


def miners_address(network: RegtestNetwork) -> str:
    """A payout address from a wallet "miners" on node 0, apart from the pool's."""
    node = network.nodes[0]
    if "miners" not in node.rpc("listwallets"):
        try:
            node.rpc("loadwallet", "miners")
        except DaemonError:
            node.rpc("createwallet", "miners")
    return node.rpc("getnewaddress", "", "bech32", wallet="miners")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if find_litecoind() is None:
        missing("litecoind", "install the litecoind package (or run `make setup`)")
    work = tmp_path_factory.mktemp("browser-site")
    root = work / "server"
    public = root / "web" / PREFIX
    public.mkdir(parents=True)
    state = root / PREFIX
    state.mkdir()
    database = state / "pool.db"
    with RegtestNetwork(work / "regtest", nodes=2) as network:
        node = network.nodes[0]
        pool_address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
        node.rpc("generatetoaddress", 1, pool_address)  # out of initial block download
        address = miners_address(network)
        port = free_port()
        config = regtest_coin_config(
            node, address=pool_address, port=port, difficulty=SHARE_DIFFICULTY,
            database=f"sqlite:///{database}", public_dir=str(public), state_dir=str(state),
            payment_interval=2.0)
        with LivePool(config, intervals=INTERVALS) as pool:
            for worker in WORKERS:
                pool.add_miner(f"{address}.{worker}", hashrate_limit=HASHRATE_LIMIT)
            # One share the pool must refuse, so the miner has a reject with its reason.
            pool.call(submit_unknown_job(port, f"{address}.{WORKERS[0]}"))
            # A hashrate is over whole minutes ending where the current one starts: wait
            # for a minute with shares to end and be rolled up.
            wait_for("a hashrate over a whole minute of shares",
                     lambda: (s := pool.status()) and (s["pool"]["hashrate"] or 0) > 0
                     and s["blocks"]["last_height"] is not None, 180, pool)
            pool.stop_miners()
            # Bury the pool's blocks (the daemon mines them, to an address outside the
            # pool's wallet): they are confirmed, the miner is credited and paid.
            node.rpc("generatetoaddress", MATURITY, miners_address(network))
            wait_for("a payment to the miner with its txid",
                     lambda: any(txid for (txid,) in _paid(database, address)), 120, pool)
            # One more status round, so the page's "last payment" agrees with the database.
            updated = pool.status()
            wait_for("a status file written after the payment",
                     lambda: (s := pool.status()) and s["updated"] != (updated or {}).get(
                         "updated") and s["payments"]["last_status"] is not None, 30, pool)
            with web_process(root, log=work / "web.log") as base:
                yield Site(base=base, prefix=PREFIX, name=COIN_NAME, stratum_port=port,
                           address=address, workers=WORKERS, database=database,
                           new_address=lambda: miners_address(network),
                           status=pool.status() or {})


async def submit_unknown_job(port: int, username: str) -> None:
    """Submit one share for a job the pool never sent; it must answer with an error."""
    client = await RawClient.connect(port)
    try:
        subscribed = await client.call("mining.subscribe", ["browser-test/1.0"])
        extranonce2_size = subscribed["result"][2]
        authorized = await client.call("mining.authorize", [username, "x"])
        assert authorized["result"] is True, authorized
        reply = await client.call("mining.submit", [
            username, "ffffffff", "00" * extranonce2_size, f"{int(time.time()):08x}",
            "00000000"])
        assert reply["error"], f"a share for an unknown job was accepted: {reply}"
    finally:
        await client.close()


def _paid(database: Path, address: str) -> list[tuple[str | None]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
        return connection.execute(
            "SELECT b.txid FROM payments p JOIN payment_batches b ON b.id = p.batch_id "
            "WHERE p.address = ?", (address,)).fetchall()
