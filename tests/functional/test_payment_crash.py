"""Crash safety of payments on the real litecoind wallet: `multipool payments run` is
killed with SIGKILL (a real kill -9, through a failpoint) at every step of the payment
path (before the build, after the build with the coins locked, after the intent, after
the broadcast, after recording it), over several rounds; after a restart every miner has
been paid exactly what the ledger owed, once, to the smallest unit, every batch ends
confirmed, and the ledger explains every balance."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from multipool.accounting import bookkeeping
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import payment_batches, payments
from multipool.config import to_units
from multipool.devnet import RegtestNetwork, free_port, regtest_coin_data, write_coin_file
from tests.functional.conftest import add_miners_wallet

STEPS = ["payment:before_build", "payment:after_build", "payment:after_intent",
         "payment:after_broadcast", "payment:after_record"]
CONFIRMATIONS = 2
# Kills per step; raise it for a longer soak (MULTIPOOL_CRASH_ROUNDS=20 make test).
ROUNDS = int(os.environ.get("MULTIPOOL_CRASH_ROUNDS", "3"))
MIN_PAYOUT = Decimal("0.01")


def payments_run(coin_file: Path, failpoint: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MULTIPOOL_FAILPOINT"}
    if failpoint is not None:
        env["MULTIPOOL_FAILPOINT"] = failpoint
    return subprocess.run(
        [sys.executable, "-m", "multipool.cli", "payments", "run", "--coin", str(coin_file),
         "--json"],
        env=env, capture_output=True, text=True, timeout=120, check=False)


def received(node, address: str) -> int:
    return to_units(Decimal(str(node.rpc("getreceivedbyaddress", address, 0,
                                         wallet="miners"))), 8)


def own_wallet(network: RegtestNetwork, name: str, coins: int = 6) -> str:
    """A pool wallet of the test's own, funded with ``coins`` confirmed coins of 10 LTC:
    a fresh pool database on a wallet that already paid others would (rightly) pause
    on those sends."""
    node = network.nodes[0]
    node.rpc("createwallet", name)
    for _ in range(coins):
        node.rpc("sendtoaddress", node.rpc("getnewaddress", wallet=name), 10, wallet="pool")
    network.mine(1)
    return name


def coin_file_for(node, tmp_path: Path, wallet: str, database_file: Path, **pool) -> Path:
    data = regtest_coin_data(node, address=node.rpc("getnewaddress", wallet=wallet),
                             port=free_port(), difficulty=1.0, min_payout=float(MIN_PAYOUT),
                             payment_confirmations=CONFIRMATIONS,
                             database=f"sqlite:///{database_file}", **pool)
    data["daemon"]["wallet"] = wallet
    return write_coin_file(tmp_path / "ltc.toml", data)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    """Its own nodes: the chain stays short of MWEB activation (height 432), whose block
    needs a peg-in in the mempool."""
    with RegtestNetwork(tmp_path_factory.mktemp("payments"), nodes=2) as network:
        add_miners_wallet(network)
        # Mature coins in the pool wallet, enough for every round of every test.
        network.mine(110)
        yield network


@pytest.mark.parametrize("step", STEPS)
async def test_kill_at_every_payment_step_pays_each_miner_exactly_once(
        net: RegtestNetwork, tmp_path: Path, step: str):
    regtest = net
    node = regtest.nodes[0]
    wallet = own_wallet(regtest, f"pool-{step.partition(':')[2]}")
    database_file = tmp_path / "pool.db"
    coin_file = coin_file_for(node, tmp_path, wallet, database_file)
    engine = create_engine(f"sqlite:///{database_file}")
    await upgrade(engine)
    owed: dict[str, int] = {}
    rng = random.Random(step)
    try:
        for round_number in range(ROUNDS):
            # Fresh miners with random debts, one of them below the threshold.
            debts = {node.rpc("getnewaddress", wallet="miners"): rng.randrange(10**6, 10**8)
                     for _ in range(4)}
            small = node.rpc("getnewaddress", wallet="miners")
            debts[small] = to_units(MIN_PAYOUT, 8) - 1
            async with engine.begin() as connection:
                for address, amount in debts.items():
                    await bookkeeping.post(connection, address=address, amount=amount,
                                           kind=bookkeeping.ADJUSTMENT,
                                           note=f"round {round_number}")
            owed.update(debts)

            killed = payments_run(coin_file, step)
            assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
            node.rpc("getwalletinfo", wallet="pool")  # a send in flight has finished
            restarted = payments_run(coin_file, None)
            assert restarted.returncode == 0, restarted.stderr[-2000:]
            again = payments_run(coin_file, None)  # nothing left to pay, nothing paid twice
            assert again.returncode == 0, again.stderr[-2000:]
            assert '"status": "nothing_due"' in again.stdout
            assert not node.rpc("listlockunspent", wallet=wallet)  # none left behind
            regtest.mine(1)  # the change is spendable in the next round
        regtest.mine(CONFIRMATIONS)
        final = payments_run(coin_file, None)
        assert final.returncode == 0 and '"status": "nothing_due"' in final.stdout

        threshold = to_units(MIN_PAYOUT, 8)
        for address, amount in owed.items():
            expected = amount if amount >= threshold else 0
            assert received(node, address) == expected, address
        async with engine.connect() as connection:
            assert await bookkeeping.ledger_mismatches(connection) == []
            for address, amount in owed.items():
                left = await bookkeeping.balance_of(connection, address)
                assert left == (0 if amount >= threshold else amount)
            sent = (await connection.execute(
                select(payments.c.address)
                .join(payment_batches, payments.c.batch_id == payment_batches.c.id)
                .where(payment_batches.c.status == "confirmed"))).scalars().all()
            states = set((await connection.execute(
                select(payment_batches.c.status))).scalars())
        # Each paid miner appears in exactly one confirmed batch; none is left open.
        assert sorted(sent) == sorted(a for a, v in owed.items() if v >= threshold)
        assert states == {"confirmed"}
    finally:
        await engine.dispose()


async def test_pool_engine_killed_after_broadcast_pays_once_after_restart(
        net: RegtestNetwork, tmp_path: Path):
    """The same through `multipool pool serve`, which pays every payment_interval: the
    engine dies by SIGKILL right after the broadcast, before recording it; restarted, it
    finds the recorded transaction in the mempool instead of paying again, and follows it
    to confirmed."""
    node = net.nodes[0]
    wallet = own_wallet(net, "pool-engine")
    database_file = tmp_path / "pool.db"
    coin_file = coin_file_for(node, tmp_path, wallet, database_file, payment_interval=0.5)
    engine = create_engine(f"sqlite:///{database_file}")
    await upgrade(engine)
    debts = {node.rpc("getnewaddress", wallet="miners"): 12_345_678 * (i + 1) for i in range(3)}
    try:
        async with engine.begin() as connection:
            for address, amount in debts.items():
                await bookkeeping.post(connection, address=address, amount=amount,
                                       kind=bookkeeping.ADJUSTMENT)
        command = [sys.executable, "-m", "multipool.cli", "pool", "serve", "--coin",
                   str(coin_file), "--allow-root"]
        env = {**os.environ, "MULTIPOOL_FAILPOINT": "payment:after_broadcast"}
        killed = subprocess.run(command, env=env, capture_output=True, text=True,
                                timeout=120, check=False)
        assert killed.returncode == -9, killed.stderr[-2000:]
        async with engine.connect() as connection:
            [(batch_id, txid)] = (await connection.execute(
                select(payment_batches.c.id, payment_batches.c.txid)
                .where(payment_batches.c.status == "intent"))).all()
        assert txid in node.rpc("getrawmempool")  # sent, not recorded as sent
        env.pop("MULTIPOOL_FAILPOINT")
        restarted = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        try:
            async with asyncio.timeout(60):
                status = None
                while status != "confirmed":
                    if status == "broadcast":
                        net.mine(1)
                    async with engine.connect() as connection:
                        status = (await connection.execute(
                            select(payment_batches.c.status)
                            .where(payment_batches.c.id == batch_id))).scalar()
                    await asyncio.sleep(0.3)
            await asyncio.sleep(1.5)  # three more payment runs: none may pay again
        finally:
            restarted.send_signal(signal.SIGTERM)
            _, stderr = restarted.communicate(timeout=30)
        assert restarted.returncode == 0, stderr[-2000:]
        assert f"batch {batch_id} confirmed" in stderr
        for address, amount in debts.items():
            assert received(node, address) == amount
        async with engine.connect() as connection:
            assert await bookkeeping.ledger_mismatches(connection) == []
            batches = (await connection.execute(select(payment_batches.c.txid))).scalars()
            assert list(batches) == [txid]
    finally:
        await engine.dispose()
