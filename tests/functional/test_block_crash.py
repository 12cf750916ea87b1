"""A block the daemon accepted is never forgotten: `multipool pool serve` is killed with
SIGKILL (a real kill -9) right after its miners found a block on the real litecoind, at
a failpoint after submitblock, at one between the candidate's durable write and
submitblock, and at random moments around a block in a loop of real kills. After a
restart every pool block on the chain is in the database, and once the blocks matured,
each is credited exactly once.

Which blocks are the pool's is decided from the daemon's own view of the chain (getblock
verbosity 2: the coinbase scriptSig holds the pool tag and an output pays the pool's
script), not from multipool's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from multipool.accounting.bookkeeping import ledger_mismatches
from multipool.accounting.database import create_engine
from multipool.accounting.rounds import RewardPolicy
from multipool.accounting.schema import block_rewards, blocks, ledger
from multipool.accounting.tracker import BlockTracker
from multipool.chain.rpc import DaemonClient
from multipool.config import load_coin_config, to_units
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_data, write_coin_file
from multipool.miner import StratumMiner
from tests.support.running import scrypt_miner

POOL_TAG = "/multipool-crash/"
# Kills in the loop; raise it for a longer soak (MULTIPOOL_CRASH_ROUNDS=20 make test).
ROUNDS = int(os.environ.get("MULTIPOOL_CRASH_ROUNDS", "3"))
SHARE_DIFFICULTY = 2e-5  # about half of all hashes are blocks on regtest


@pytest.fixture
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestNetwork]:
    """Fresh nodes per test: each mines 100+ blocks, and the chain must stay short of MWEB
    activation (height 432), whose block needs a peg-in."""
    with RegtestNetwork(tmp_path_factory.mktemp("block-crash"), nodes=2) as network:
        network.mine(1)  # out of initial block download
        yield network


class Pool:
    """One coin's files and its `multipool pool serve` process (in its own process
    group, so a kill -9 also takes its hashing workers)."""

    def __init__(self, net: RegtestNetwork, directory: Path):
        node = net.nodes[0]
        self.node = node
        self.address = node.rpc("getnewaddress", "", "bech32", wallet="pool")
        self.script_hex = node.rpc("validateaddress", self.address)["scriptPubKey"]
        self.port = free_port()
        self.database_url = f"sqlite:///{directory / 'pool.db'}"
        self.coin_file = write_coin_file(directory / "ltc.toml", regtest_coin_data(
            node, address=self.address, port=self.port, difficulty=SHARE_DIFFICULTY,
            pool_tag=POOL_TAG, database=self.database_url))
        self.log = directory / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, failpoint: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MULTIPOOL_FAILPOINT"}
        if failpoint is not None:
            env["MULTIPOOL_FAILPOINT"] = failpoint
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "multipool.cli", "pool", "serve", "--coin",
                 str(self.coin_file), "--allow-root"],
                env=env, stdout=log, stderr=log, start_new_session=True)

    async def wait_listening(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.tail()
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"stratum port not open in {timeout}s\n{self.tail()}")

    def kill(self) -> int:
        """SIGKILL the engine and its process group; return its exit code."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.reap()

    def reap(self) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=30)
        # Whatever of its group is left (hashing workers of a process killed by a
        # failpoint) goes too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return code

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.reap()

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def chain_pool_blocks(self, start: int) -> dict[int, str]:
        """The pool's blocks on the best chain above ``start``, as the daemon shows
        them: height -> hash."""
        found = {}
        for height in range(start + 1, self.node.rpc("getblockcount") + 1):
            block = self.node.rpc("getblock", self.node.rpc("getblockhash", height), 2)
            coinbase = block["tx"][0]
            if (POOL_TAG.encode().hex() in coinbase["vin"][0]["coinbase"]
                    and any(out["scriptPubKey"]["hex"] == self.script_hex
                            for out in coinbase["vout"])):
                found[height] = block["hash"]
        return found

    def coinbase_value(self, hash_hex: str) -> int:
        coinbase = self.node.rpc("getblock", hash_hex, 2)["tx"][0]
        return sum(to_units(Decimal(str(out["value"])), 8) for out in coinbase["vout"]
                   if out["scriptPubKey"]["hex"] == self.script_hex)


def mining(pool: Pool) -> AbstractAsyncContextManager[StratumMiner]:
    return scrypt_miner(pool.port, f"{pool.address}.rig")


async def block_rows(pool: Pool) -> dict[str, tuple[int, str]]:
    engine = create_engine(pool.database_url)
    try:
        async with engine.connect() as connection:
            rows = (await connection.execute(
                select(blocks.c.hash, blocks.c.height, blocks.c.status))).all()
    finally:
        await engine.dispose()
    return {hash_hex: (height, status) for hash_hex, height, status in rows}


async def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


async def settle_and_check(net: RegtestNetwork, pool: Pool, start: int) -> dict[int, str]:
    """Mature the pool's blocks (101 blocks mined outside the pool), run the tracker
    once, and check: every pool block on the chain is in the database, confirmed, with
    its snapshot credited once; nothing else is. Return the pool blocks."""
    on_chain = pool.chain_pool_blocks(start)
    assert on_chain, "no pool block was mined"
    outsider = pool.node.rpc("getnewaddress", wallet="pool")
    net.mine(101, outsider)  # no pool tag: never recorded
    config = load_coin_config(pool.coin_file)
    engine = create_engine(pool.database_url)
    try:
        async with DaemonClient(pool.node.rpc_url, user=pool.node.rpc_user,
                                password=pool.node.rpc_password) as daemon:
            tracker = BlockTracker(engine=engine, daemon=daemon,
                                   policy=RewardPolicy.from_config(config),
                                   maturity=config.network.coinbase_maturity,
                                   pool_tag=POOL_TAG.encode(),
                                   payout_script=config.payout_script,
                                   candidate_grace=0)  # a candidate left now was never sent
            await tracker.check()
        async with engine.connect() as connection:
            recorded = {row.hash: row for row in (await connection.execute(
                select(blocks.c.id, blocks.c.hash, blocks.c.height, blocks.c.status,
                       blocks.c.reward))).all()}
            per_block = dict((await connection.execute(
                select(ledger.c.block_id, func.sum(ledger.c.amount))
                .group_by(ledger.c.block_id))).all())
            rows_per_address = (await connection.execute(
                select(ledger.c.block_id, ledger.c.address, func.count())
                .where(ledger.c.block_id.is_not(None))
                .group_by(ledger.c.block_id, ledger.c.address))).all()
            snapshots = dict((await connection.execute(
                select(block_rewards.c.block_id, func.sum(block_rewards.c.amount))
                .group_by(block_rewards.c.block_id))).all())
            mismatches = await ledger_mismatches(connection)
    finally:
        await engine.dispose()
    assert {row.height: hash_hex for hash_hex, row in recorded.items()} == on_chain
    for hash_hex, row in recorded.items():
        assert row.status == "confirmed", (row.height, row.status)
        reward = pool.coinbase_value(hash_hex)
        assert row.reward == reward
        assert snapshots[row.id] == reward
        assert per_block[row.id] == reward, f"block {row.height} credited {per_block[row.id]}"
    assert all(count == 1 for _, _, count in rows_per_address)  # once per block and address
    assert set(per_block) - {None} == {row.id for row in recorded.values()}
    assert mismatches == []
    return on_chain


@pytest.mark.parametrize("failpoint", ["block:after_submit", "block:after_candidate"])
async def test_killed_around_submitblock_the_block_is_recorded_and_credited_once(
        net: RegtestNetwork, tmp_path: Path, failpoint: str):
    pool = Pool(net, tmp_path)
    start = pool.node.rpc("getblockcount")
    pool.start(failpoint)
    try:
        await pool.wait_listening()
        async with mining(pool):
            deadline = time.monotonic() + 60
            while pool.process.poll() is None and time.monotonic() < deadline:  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
        assert pool.reap() == -signal.SIGKILL, pool.tail()
    finally:
        if pool.process.poll() is None:  # type: ignore[union-attr]
            pool.kill()
    (candidate,) = (await block_rows(pool)).items()
    hash_hex, (height, status) = candidate
    assert status == "candidate"
    on_chain = pool.chain_pool_blocks(start)
    if failpoint == "block:after_submit":
        assert on_chain == {height: hash_hex}  # the daemon has it; only the verdict is lost
        pool.start()  # the tracker's first check finds it on the chain
        try:
            async def pending() -> bool:
                return (await block_rows(pool))[hash_hex][1] == "pending"
            await wait_for(pending, 60, "candidate became pending")
        finally:
            assert pool.stop() == 0, pool.tail()
    else:
        assert on_chain == {}  # killed before submitblock: never sent
        # The pool mines on; the candidate that was never sent stays out of the books.
        pool.start()
        try:
            await pool.wait_listening()
            async with mining(pool):
                await wait_for(lambda: asyncio.to_thread(
                    lambda: bool(pool.chain_pool_blocks(start))), 60, "a pool block")
        finally:
            assert pool.stop() == 0, pool.tail()
    await settle_and_check(net, pool, start)
    if failpoint == "block:after_candidate":
        assert hash_hex not in await block_rows(pool)  # dropped, never credited


async def test_loop_of_kills_around_blocks_loses_no_block(net: RegtestNetwork, tmp_path: Path):
    """`pool serve` killed with SIGKILL at a random moment from 0 to 200 ms after the
    daemon's tip moved to a block of its miner, ROUNDS times, while the miner mines."""
    pool = Pool(net, tmp_path)
    node = pool.node
    start = node.rpc("getblockcount")
    rng = random.Random(8)
    delays = []
    for _ in range(ROUNDS):
        pool.start()
        try:
            await pool.wait_listening()
            tip = node.rpc("getblockcount")
            async with mining(pool):
                deadline = time.monotonic() + 60
                while node.rpc("getblockcount") == tip:
                    assert time.monotonic() < deadline, "no block within 60 s"
                    await asyncio.sleep(0.005)
                delay = rng.choice([0.0, 0.0, rng.uniform(0, 0.2)])
                await asyncio.sleep(delay)
                delays.append(delay)
                assert pool.kill() == -signal.SIGKILL
        finally:
            if pool.process.poll() is None:  # type: ignore[union-attr]
                pool.kill()
    # A clean start: the tracker settles what the kills left.
    pool.start()
    try:
        await pool.wait_listening()
        on_chain = pool.chain_pool_blocks(start)

        async def all_recorded() -> bool:
            rows = await block_rows(pool)
            return all(hash_hex in rows and rows[hash_hex][1] == "pending"
                       for hash_hex in on_chain.values())
        await wait_for(all_recorded, 60, "every pool block recorded as pending")
    finally:
        assert pool.stop() == 0, pool.tail()
    found = await settle_and_check(net, pool, start)
    print(f"\n{ROUNDS} kills at {[round(d, 3) for d in delays]} s after a block; "
          f"{len(found)} pool blocks, each recorded and credited once")
