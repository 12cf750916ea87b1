"""Payments through outages on the real litecoind wallet: the daemon frozen in the middle
of a broadcast for longer than the payment lock's (shortened) TTL while another runner
takes the lock over; a payment evicted from every mempool and abandoned by the operator;
a pool database restored from a backup older than a payment; and a wallet holding MWEB
coins. After each, every miner received exactly what the ledger owed, once, and the
ledger explains every balance."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from multipool.accounting import bookkeeping, wallet_watch
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.payment_tx import spendable_coins
from multipool.accounting.payments import PaymentProcessor
from multipool.accounting.schema import locks, payment_batches
from multipool.chain.rpc import DaemonClient, DaemonUnavailable
from multipool.config import parse_coin_config, to_units
from multipool.devnet import (
    RegtestNetwork,
    RegtestNode,
    free_port,
    regtest_coin_data,
    write_coin_file,
)
from tests.functional.conftest import add_miners_wallet

CONFIRMATIONS = 2
MIN_PAYOUT = Decimal("0.01")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory):
    with RegtestNetwork(tmp_path_factory.mktemp("outages"), nodes=2) as network:
        add_miners_wallet(network)
        network.mine(110)
        yield network


def own_wallet(network: RegtestNetwork, name: str, coins: int = 4) -> str:
    """A pool wallet of the test's own with ``coins`` confirmed coins of 10 LTC."""
    node = network.nodes[0]
    node.rpc("createwallet", name, False, False, "", False, False, True)  # load on start
    for _ in range(coins):
        node.rpc("sendtoaddress", node.rpc("getnewaddress", wallet=name), 10, wallet="pool")
    network.mine(1)
    return name


def coin_data(node: RegtestNode, wallet: str, database: str, **pool: Any) -> dict[str, Any]:
    data = regtest_coin_data(node, address=node.rpc("getnewaddress", wallet=wallet),
                             port=free_port(), difficulty=1.0, min_payout=float(MIN_PAYOUT),
                             payment_confirmations=CONFIRMATIONS, database=database, **pool)
    data["daemon"]["wallet"] = wallet
    return data


def client(node: RegtestNode, wallet: str, **options: Any) -> DaemonClient:
    return DaemonClient(node.rpc_url, user=node.rpc_user, password=node.rpc_password,
                        wallet=wallet, **options)


def received(node: RegtestNode, address: str, minconf: int = 1) -> int:
    return to_units(Decimal(str(node.rpc("getreceivedbyaddress", address, minconf,
                                          wallet="miners"))), 8)


def sends_of(node: RegtestNode, wallet: str) -> set[str]:
    """Every send of the wallet that is confirmed or still could be."""
    entries = node.rpc("listtransactions", "*", 1000, 0, wallet=wallet)
    return {e["txid"] for e in entries if e["category"] == "send"
            and e["confirmations"] >= 0 and not e.get("abandoned")}


async def owe(engine: Any, node: RegtestNode, count: int, base: int) -> dict[str, int]:
    debts = {node.rpc("getnewaddress", wallet="miners"): base * (i + 1) for i in range(count)}
    async with engine.begin() as connection:
        for address, amount in debts.items():
            await bookkeeping.post(connection, address=address, amount=amount,
                                   kind=bookkeeping.ADJUSTMENT)
    return debts


async def assert_settled(engine: Any, node: RegtestNode, debts: dict[str, int]) -> None:
    for address, amount in debts.items():
        assert received(node, address) == amount, address
    async with engine.connect() as connection:
        assert await bookkeeping.ledger_mismatches(connection) == []
        for address in debts:
            assert await bookkeeping.balance_of(connection, address) == 0


class FreezingWallet:
    """The pool's DaemonClient, except that the first broadcast freezes the daemon
    (SIGSTOP) just before the request goes out: the request waits in the daemon's socket
    and runs whenever the daemon is let go."""

    def __init__(self, daemon: DaemonClient, node: RegtestNode):
        self.daemon, self.node = daemon, node
        self.frozen_at: float | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.daemon, name)

    async def sendrawtransaction(self, hex_tx: str) -> str:
        if self.frozen_at is None:
            assert self.node.process is not None
            os.kill(self.node.process.pid, signal.SIGSTOP)
            self.frozen_at = time.monotonic()
        return await self.daemon.sendrawtransaction(hex_tx)


async def test_daemon_frozen_in_a_broadcast_past_the_lock_ttl_pays_once(
        net: RegtestNetwork, tmp_path: Path):
    node = net.nodes[0]
    wallet = own_wallet(net, "pool-frozen")
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    ttl = 4.0  # the payment lock's TTL, shortened from 900 s
    config = parse_coin_config(coin_data(node, wallet, url, payment_lock_ttl=ttl), "frozen")
    engine = create_engine(url)
    await upgrade(engine)
    debts = await owe(engine, node, 3, 11_111_111)
    assert node.process is not None
    try:
        async with client(node, wallet, timeout=1.0) as first_daemon, \
                client(node, wallet, timeout=1.0) as second_daemon:
            freezing = FreezingWallet(first_daemon, node)
            first = PaymentProcessor.from_config(config, engine=engine, wallet=freezing)  # type: ignore[arg-type]
            second = PaymentProcessor.from_config(config, engine=engine, wallet=second_daemon)
            assert first.lock_margin == second.lock_margin == ttl / 4
            first_run = asyncio.create_task(first.run_once())
            while freezing.frozen_at is None:
                await asyncio.sleep(0.05)
            seen: list[str] = []
            # The daemon stays frozen for twice the lock's TTL; the second runner tries
            # every half second: busy while the first holds the lock, then it takes it.
            while time.monotonic() - freezing.frozen_at < 2 * ttl:
                try:
                    seen.append((await second.run_once()).status)
                except DaemonUnavailable:  # it took the lock; its calls hit the deadline
                    seen.append("unavailable")
                await asyncio.sleep(0.5)
            first_report = await first_run
            async with engine.connect() as connection:
                [batch] = (await connection.execute(select(payment_batches))).all()
                token = (await connection.execute(select(locks.c.token))).scalar_one()
            # The first run gave up at its deadline, before its lock could expire, and
            # wrote nothing more; the batch waits, recorded, at intent.
            assert first_report.status == "stopped"
            assert batch.status == "intent" and batch.txid
            assert "busy" in seen and "unavailable" in seen and token >= 3, (seen, token)
            os.kill(node.process.pid, signal.SIGCONT)
            await asyncio.sleep(0.5)
            report = await second.run_once()
            assert report.status == "nothing_due", report
            net.mine(CONFIRMATIONS)
            report = await second.run_once()
            assert report.confirmed == 1 and report.paid == 0
        assert sends_of(node, wallet) == {batch.txid}  # one transaction, whoever sent it
        await assert_settled(engine, node, debts)
    finally:
        os.kill(node.process.pid, signal.SIGCONT)
        await engine.dispose()


def restart_without_mempool(net: RegtestNetwork, *args: str) -> None:
    """Stop both nodes, drop their saved mempools, start them with ``args`` (and without
    loading a mempool), joined again."""
    for node in net.nodes:
        node.stop()
        with contextlib.suppress(FileNotFoundError):
            (node.datadir / "regtest" / "mempool.dat").unlink()
    for node in net.nodes:
        node.extra_args = ("-persistmempool=0", *args) if node.index == 0 else (
            "-persistmempool=0",)
        node.start()
    net.connect()
    add_miners_wallet(net)


async def test_evicted_and_abandoned_payment_is_voided_then_paid_again_once(
        net: RegtestNetwork, tmp_path: Path):
    """The payment leaves every mempool (both nodes restarted without their mempools;
    the wallet does not re-broadcast it, -walletbroadcast=0) and the operator abandons
    it. The next run voids it (spends one of its inputs back to the wallet), refunds it
    once the void is buried, and pays the miners again, exactly once."""
    node = net.nodes[0]
    wallet = own_wallet(net, "pool-abandon")
    url = f"sqlite:///{tmp_path / 'pool.db'}"
    config = parse_coin_config(coin_data(node, wallet, url), "abandon")
    engine = create_engine(url)
    await upgrade(engine)
    debts = await owe(engine, node, 3, 22_222_222)
    try:
        async with client(node, wallet) as daemon:
            payer = PaymentProcessor.from_config(config, engine=engine, wallet=daemon)
            assert (await payer.run_once()).status == "paid"
        async with engine.connect() as connection:
            [first] = (await connection.execute(select(payment_batches))).all()
        assert first.txid in node.rpc("getrawmempool")
        restart_without_mempool(net, "-walletbroadcast=0")
        assert first.txid not in node.rpc("getrawmempool")
        assert first.txid not in net.nodes[1].rpc("getrawmempool")
        node.rpc("abandontransaction", first.txid, wallet=wallet)

        async with client(node, wallet) as daemon:
            payer = PaymentProcessor.from_config(config, engine=engine, wallet=daemon)
            report = await payer.run_once()
            assert report.voiding == 1 and report.paid == 0
            async with engine.connect() as connection:
                voiding = (await connection.execute(select(payment_batches))).one()
            assert voiding.status == "voiding" and voiding.void_txid in node.rpc(
                "getrawmempool")
            net.mine(CONFIRMATIONS)
            report = await payer.run_once()
            assert report.refunded == 1 and report.paid == 3 and len(report.txids) == 1
            assert node.rpc("gettransaction", first.txid, wallet=wallet)[
                "confirmations"] <= -CONFIRMATIONS  # the first can never confirm now
            net.mine(CONFIRMATIONS)
            report = await payer.run_once()
            assert report.confirmed == 1 and report.paid == 0 and report.refunded == 0
        async with engine.connect() as connection:
            states = sorted((await connection.execute(
                select(payment_batches.c.status))).scalars())
        assert states == ["confirmed", "failed"]
        await assert_settled(engine, node, debts)
    finally:
        restart_without_mempool(net)
        for peer in net.nodes:
            peer.extra_args = ()
        await engine.dispose()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "multipool.cli", "payments", *args],
                          capture_output=True, text=True, timeout=120, check=False)


async def test_database_restored_from_an_older_backup_pauses_and_pays_nothing_twice(
        net: RegtestNetwork, tmp_path: Path):
    node = net.nodes[0]
    wallet = own_wallet(net, "pool-restore")
    database = tmp_path / "pool.db"
    coin_file = write_coin_file(tmp_path / "ltc.toml",
                                coin_data(node, wallet, f"sqlite:///{database}"))
    engine = create_engine(f"sqlite:///{database}")
    await upgrade(engine)
    debts = await owe(engine, node, 3, 33_333_333)
    await engine.dispose()
    backup = tmp_path / "backup.db"
    with contextlib.closing(sqlite3.connect(database)) as source, \
            contextlib.closing(sqlite3.connect(backup)) as copy:
        source.backup(copy)  # the backup: the debts are owed, nothing is paid yet
    paid = cli("run", "--coin", str(coin_file), "--json")
    assert paid.returncode == 0 and '"status": "paid"' in paid.stdout, paid.stderr
    net.mine(1)
    txid = next(iter(sends_of(node, wallet)))

    for suffix in ("-wal", "-shm"):  # restore: the database as it was at the backup
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / f"pool.db{suffix}").unlink()
    shutil.copyfile(backup, database)
    for _ in range(2):
        run = cli("run", "--coin", str(coin_file), "--json")
        assert run.returncode == 0 and '"status": "paused"' in run.stdout, run.stderr
        assert txid in run.stdout
    status = cli("status", "--coin", str(coin_file), "--json")
    assert '"paused": true' in status.stdout and txid in status.stdout
    assert "adopt-tx" in status.stdout
    assert sends_of(node, wallet) == {txid}  # nothing paid twice
    assert cli("adopt-tx", "--coin", str(coin_file), txid).returncode == 0
    run = cli("run", "--coin", str(coin_file), "--json")
    assert '"status": "nothing_due"' in run.stdout, run.stdout + run.stderr
    net.mine(CONFIRMATIONS)
    assert cli("run", "--coin", str(coin_file), "--json").returncode == 0
    assert sends_of(node, wallet) == {txid}
    engine = create_engine(f"sqlite:///{database}")
    try:
        await assert_settled(engine, node, debts)
        async with engine.connect() as connection:
            assert list((await connection.execute(
                select(payment_batches.c.status))).scalars()) == ["confirmed"]
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def mweb_net(tmp_path_factory: pytest.TempPathFactory):
    """Past MWEB activation (height 432), with a peg-in: the pool wallet holds MWEB
    coins, the largest it has."""
    with RegtestNetwork(tmp_path_factory.mktemp("mweb"), nodes=2) as network:
        add_miners_wallet(network)
        node = network.nodes[0]
        network.mine(431)
        mweb = node.rpc("getnewaddress", "", "mweb", wallet="pool")
        node.rpc("sendtoaddress", mweb, 1000, wallet="pool")
        network.mine(3)
        yield network


async def test_payments_never_spend_mweb_coins(mweb_net: RegtestNetwork, tmp_path: Path):
    node = mweb_net.nodes[0]
    unspent = node.rpc("listunspent", wallet="pool")
    mweb = [u for u in unspent if "vout" not in u]
    assert mweb and max(u["amount"] for u in mweb) >= 900  # the largest coins are MWEB
    # Left to choose, the wallet would spend them and build a transaction that has no
    # inputs and cannot be signed: the reason payments choose their coins themselves.
    locked = [{"txid": u["txid"], "vout": u["vout"]} for u in unspent if "vout" in u]
    node.rpc("lockunspent", False, locked, wallet="pool")
    miner = node.rpc("getnewaddress", wallet="miners")
    raw = node.rpc("createrawtransaction", [], [{miner: 5}])
    funded = node.rpc("fundrawtransaction", raw, wallet="pool")
    assert node.rpc("decoderawtransaction", funded["hex"])["vin"] == []
    node.rpc("lockunspent", True, wallet="pool")
    assert len(spendable_coins(unspent, 8)) == len(locked)

    url = f"sqlite:///{tmp_path / 'pool.db'}"
    config = parse_coin_config(coin_data(node, "pool", url), "mweb")
    engine = create_engine(url)
    await upgrade(engine)
    debts = await owe(engine, node, 3, 40 * 10**8)  # 40, 80, 120 LTC: more than a coinbase
    try:
        async with client(node, "pool") as daemon:
            payer = PaymentProcessor.from_config(config, engine=engine, wallet=daemon)
            # A wallet with its own history: acknowledge the sends made before this pool.
            before = {e["txid"] for e in node.rpc("listtransactions", "*", 1000, 0,
                                                  wallet="pool") if e["category"] == "send"}
            for txid in before:
                await wallet_watch.mark(engine, txid, wallet_watch.IGNORED, "peg-in")
            report = await payer.run_once()
            assert report.status == "paid" and report.paid == 3, report
            [txid] = report.txids
            decoded = node.rpc("decoderawtransaction", node.rpc(
                "gettransaction", txid, wallet="pool")["hex"])
            assert decoded["vin"] and not any(part.get("ismweb") for part in
                                              decoded["vin"] + decoded["vout"])
            assert txid in node.rpc("getrawmempool")
            mweb_net.mine(CONFIRMATIONS)
            assert (await payer.run_once()).confirmed == 1
        await assert_settled(engine, node, debts)
    finally:
        await engine.dispose()
