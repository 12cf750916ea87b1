"""Payments (payments.py) on SQLite, PostgreSQL and MariaDB, against an in-memory wallet
(tests/support/fake_wallet.py: the real litecoind is in tests/functional, this fake
provokes what a real node makes hard to time). The transaction is recorded before it is
broadcast; a broadcast is repeated, never rebuilt; a batch is credited back exactly once
and only with proof it can never confirm; a run whose lock was taken over writes
nothing; fees are charged where the config says, to the unit; unknown wallet sends pause
payments; wallet locks are restored. After every scenario each address has been paid at
most once per debt and the ledger explains every balance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting import bookkeeping, wallet_watch
from multipool.accounting.database import create_engine
from multipool.accounting.locks import DatabaseLock
from multipool.accounting.payments import (
    LOCK_NAME,
    PaymentProcessor,
    adopt_send,
    is_paused,
    set_paused,
)
from multipool.accounting.schema import (
    balances,
    ledger,
    locks,
    payment_batches,
    payment_inputs,
    payments,
)
from multipool.chain.rpc import DaemonUnavailable
from tests.support.fake_wallet import DECIMALS, FakeWallet

COIN = 10**DECIMALS
MIN_PAYOUT = COIN // 100  # 0.01 coin
CONFIRMATIONS = 3

# At the threshold is due, one unit below is not; the pool's own account is never paid.
OWED = {"ltc1qa": 150_000_000, "ltc1qb": MIN_PAYOUT, "ltc1qc": MIN_PAYOUT - 1,
        "ltc1qd": 123_456_789, "": 500_000_000}
DUE = {"ltc1qa": 150_000_000, "ltc1qb": MIN_PAYOUT, "ltc1qd": 123_456_789}


def wallet_with(*coins: int, **options: Any) -> FakeWallet:
    wallet = FakeWallet(**options)
    wallet.fund(*(coins or (50 * COIN, 50 * COIN)))
    return wallet


async def credit(engine: AsyncEngine, amounts: dict[str, int]) -> None:
    async with engine.begin() as connection:
        for address, amount in amounts.items():
            await bookkeeping.post(connection, address=address, amount=amount,
                                   kind="adjustment")


async def all_balances(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(balances.c.address, balances.c.amount))).all()
    return {str(address): int(amount) for address, amount in rows}


async def paid_off(engine: AsyncEngine, addresses: Any) -> bool:
    held = await all_balances(engine)
    return all(held[address] == 0 for address in addresses)


async def batches(engine: AsyncEngine) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(
            select(payment_batches).order_by(payment_batches.c.created,
                                             payment_batches.c.id))).all())


async def ledger_of(engine: AsyncEngine, batch_id: str) -> list[tuple[str, int, str]]:
    async with engine.connect() as connection:
        rows = (await connection.execute(
            select(ledger.c.address, ledger.c.amount, ledger.c.kind)
            .where(ledger.c.batch_id == batch_id))).all()
    return sorted((str(a), int(m), str(k)) for a, m, k in rows)


async def assert_books_balance(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await bookkeeping.ledger_mismatches(connection) == []


def processor(engine: AsyncEngine, wallet: FakeWallet, **options: Any) -> PaymentProcessor:
    options.setdefault("min_payout", MIN_PAYOUT)
    options.setdefault("confirmations", CONFIRMATIONS)
    return PaymentProcessor(engine=engine, wallet=wallet, decimals=DECIMALS, **options)


async def settle(engine: AsyncEngine, wallet: FakeWallet, **options: Any) -> Any:
    """Mine to the payment depth and run once: every open payment is confirmed."""
    wallet.mine(CONFIRMATIONS)
    return await processor(engine, wallet, **options).run_once()


def fee_of(wallet: FakeWallet, txid: str) -> int:
    return wallet.txs[txid].fee


async def test_due_miners_paid_once_exactly_and_the_pool_pays_the_fee(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with()
    report = await processor(engine, wallet).run_once()
    assert report.status == "paid"
    assert (report.due, report.paid, report.total) == (3, 3, sum(DUE.values()))
    [tx] = wallet.live()
    assert wallet.paid() == DUE
    [batch] = await batches(engine)
    # Recorded before the broadcast: txid, the signed bytes, the fee, the inputs.
    assert (batch.status, batch.txid, batch.raw_tx, batch.fee, batch.fee_mode) == (
        "broadcast", tx.txid, tx.hex, tx.fee, "pool")
    assert tx.fee > 0 and report.txids == [tx.txid]
    async with engine.connect() as connection:
        inputs = (await connection.execute(
            select(payment_inputs.c.txid, payment_inputs.c.vout))).all()
    assert sorted((str(t), int(v)) for t, v in inputs) == sorted(tx.inputs)
    # Fee: charged to the pool account "" as tx_fee; the miners get their full amounts.
    assert await ledger_of(engine, batch.id) == sorted(
        [(a, -m, "payment") for a, m in DUE.items()] + [("", -tx.fee, "tx_fee")])
    assert await all_balances(engine) == {
        "ltc1qa": 0, "ltc1qb": 0, "ltc1qc": MIN_PAYOUT - 1, "ltc1qd": 0,
        "": 500_000_000 - tx.fee}
    await assert_books_balance(engine)

    again = await settle(engine, wallet)
    assert again.status == "nothing_due" and again.confirmed == 1
    [batch] = await batches(engine)
    assert (batch.status, batch.confirmations) == ("confirmed", CONFIRMATIONS)
    assert wallet.calls["sendrawtransaction"] == 1 and wallet.locked == set()
    assert wallet.times_paid() == dict.fromkeys(DUE, 1)
    await assert_books_balance(engine)


async def test_miners_pay_the_fee_each_an_exact_share(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with()
    report = await processor(engine, wallet, fee_mode="miners").run_once()
    assert report.status == "paid"
    [tx] = wallet.live()
    [batch] = await batches(engine)
    async with engine.connect() as connection:
        found = (await connection.execute(
            select(payments.c.address, payments.c.amount, payments.c.fee))).all()
    rows = {str(a): (int(v), int(f)) for a, v, f in found}
    # Each received its balance less its share; the shares add up to the fee exactly.
    assert set(rows) == set(DUE)
    assert all(rows[a][0] + rows[a][1] == DUE[a] for a in DUE)
    assert sum(fee for _, fee in rows.values()) == tx.fee > 0
    assert max(f for _, f in rows.values()) - min(f for _, f in rows.values()) < len(DUE)
    assert wallet.paid() == {a: rows[a][0] for a in DUE}
    assert await ledger_of(engine, batch.id) == sorted(
        [(a, -rows[a][0], "payment") for a in DUE] + [(a, -rows[a][1], "tx_fee") for a in DUE])
    assert (await all_balances(engine))[""] == 500_000_000  # the pool paid nothing
    assert await paid_off(engine, DUE)
    await assert_books_balance(engine)


async def test_fee_account_is_paid_last_and_bears_its_own_fee(engine: AsyncEngine):
    fee_address = "ltc1qfee"
    await credit(engine, {**DUE, fee_address: 3 * COIN})
    wallet = wallet_with(50 * COIN, 50 * COIN, 50 * COIN)
    report = await processor(engine, wallet, fee_account=fee_address,
                             max_recipients=2).run_once()
    assert report.status == "paid" and len(report.txids) == 3
    miners_txs = [wallet.txs[t] for t in report.txids[:2]]
    fee_tx = wallet.txs[report.txids[2]]
    assert [a for a, _ in fee_tx.outputs if not a.startswith("change")] == [fee_address]
    # Its payout is its balance after the two miner batches' fees, less its own fee.
    expected = 3 * COIN - sum(tx.fee for tx in miners_txs) - fee_tx.fee
    assert wallet.paid()[fee_address] == expected
    assert {a: v for a, v in wallet.paid().items() if a != fee_address} == DUE
    assert (await all_balances(engine))[fee_address] == 0  # never negative
    async with engine.connect() as connection:
        assert await bookkeeping.negative_balances(connection) == []
    await assert_books_balance(engine)


async def test_negative_fee_account_is_reported(engine: AsyncEngine):
    await credit(engine, DUE)  # the pool account "" holds nothing to pay fees with
    wallet = wallet_with()
    report = await processor(engine, wallet).run_once()
    assert report.status == "paid"
    report = await settle(engine, wallet)
    [tx] = [wallet.txs[t] for t in wallet.txs]
    assert report.negative_accounts == [("", -tx.fee)]
    await assert_books_balance(engine)


async def test_paused_pays_nothing_until_resumed(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with()
    await set_paused(engine, True)
    await set_paused(engine, True)  # twice is the same
    assert await is_paused(engine)
    report = await processor(engine, wallet).run_once()
    assert report.status == "paused"
    assert wallet.calls["fundrawtransaction"] == 0 and await batches(engine) == []
    await set_paused(engine, False)
    assert (await processor(engine, wallet).run_once()).status == "paid"
    assert wallet.paid() == DUE
    await assert_books_balance(engine)


async def test_lock_held_elsewhere_means_busy(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with()
    other = DatabaseLock(engine, LOCK_NAME)
    assert await other.acquire()
    report = await processor(engine, wallet).run_once()
    assert report.status == "busy" and other.holder in report.message
    assert wallet.calls["listunspent"] == 0 and await batches(engine) == []
    await other.release()
    assert (await processor(engine, wallet).run_once()).status == "paid"
    assert wallet.paid() == DUE
    assert await other.holder_of() is None  # the run released its lock
    await assert_books_balance(engine)


async def test_run_whose_lock_was_taken_over_writes_nothing(engine: AsyncEngine):
    """The run is frozen in its broadcast past its lock's expiry; another run takes the
    lock over meanwhile. When the first wakes up, its fenced writes are refused: it
    records nothing, and the batch it recorded before is the other run's to finish."""
    await credit(engine, OWED)
    wallet = wallet_with()
    first = processor(engine, wallet)
    taker = DatabaseLock(engine, LOCK_NAME)

    async def taken_over(_hex: str) -> None:
        wallet.on_broadcast = None
        async with engine.begin() as connection:  # the first run's lock has expired
            await connection.execute(update(locks).values(
                expires=datetime.now(UTC) - timedelta(seconds=5)))
        assert await taker.acquire()

    wallet.on_broadcast = taken_over
    report = await first.run_once()
    assert report.status == "stopped" and "taken over" in report.message
    [batch] = await batches(engine)
    assert batch.status == "intent"  # the broadcast went out, but this run wrote nothing
    assert len(wallet.live()) == 1
    async with engine.connect() as connection:
        token = (await connection.execute(select(locks.c.token))).scalar_one()
    assert token == 2  # the first run's token was 1: its release changed nothing either

    await taker.release()  # the taker's run ends
    report = await processor(engine, wallet).run_once()
    assert report.status == "nothing_due"
    [batch] = await batches(engine)
    assert batch.status == "broadcast"  # the same bytes, already known to the node
    assert wallet.times_paid() == dict.fromkeys(DUE, 1)
    await assert_books_balance(engine)


@pytest.mark.parametrize("when", ["before", "after"])
async def test_lost_answer_is_broadcast_again_never_rebuilt(engine: AsyncEngine, when: str):
    await credit(engine, OWED)
    wallet = wallet_with()
    wallet.lose_next = when
    report = await processor(engine, wallet).run_once()
    assert report.status == "stopped"
    [batch] = await batches(engine)
    assert batch.status == "intent" and batch.txid is not None
    # Debited at intent: the debt is neither forgotten nor payable a second time.
    assert await paid_off(engine, DUE)
    report = await processor(engine, wallet).run_once()
    assert report.status == "nothing_due" and report.refunded == 0
    [again] = await batches(engine)
    assert (again.id, again.txid, again.status) == (batch.id, batch.txid, "broadcast")
    assert wallet.calls["fundrawtransaction"] == 1  # built once, sent as recorded
    assert wallet.times_paid() == dict.fromkeys(DUE, 1)
    await settle(engine, wallet)
    assert [b.status for b in await batches(engine)] == ["confirmed"]
    await assert_books_balance(engine)


async def test_broadcast_that_takes_effect_long_after_its_call_gave_up(engine: AsyncEngine):
    """The node was stuck (a wallet lock held by backupwallet); the call gave up at the
    lock's deadline; runs go on while the node still holds the request. It is never
    refunded for it: the next broadcast of the same bytes and the late one are one
    transaction."""
    await credit(engine, OWED)
    wallet = wallet_with()
    wallet.late_next = True
    assert (await processor(engine, wallet).run_once()).status == "stopped"
    wallet.late_next = True  # still stuck on the next run
    with pytest.raises(DaemonUnavailable):
        await processor(engine, wallet).run_once()
    assert [b.status for b in await batches(engine)] == ["intent"]  # never refunded
    wallet.deliver_late()  # both late requests arrive: one transaction
    report = await processor(engine, wallet).run_once()
    assert report.status == "nothing_due"
    assert [b.status for b in await batches(engine)] == ["broadcast"]
    assert wallet.times_paid() == dict.fromkeys(DUE, 1) and len(wallet.live()) == 1
    await assert_books_balance(engine)


async def test_refused_broadcast_is_never_refunded(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with()
    wallet.refuse_always = (-26, "min relay fee not met")
    for _ in range(3):
        report = await processor(engine, wallet).run_once()
        assert report.refunded == 0
    [batch] = await batches(engine)
    assert batch.status == "intent" and wallet.live() == []
    assert await paid_off(engine, DUE)  # still owed... as paid
    wallet.refuse_always = None
    assert (await processor(engine, wallet).run_once()).status == "nothing_due"
    assert wallet.times_paid() == dict.fromkeys(DUE, 1)
    await assert_books_balance(engine)


async def test_abandoned_payment_is_voided_refunded_once_and_paid_again(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with()
    await processor(engine, wallet).run_once()
    [batch] = await batches(engine)
    wallet.evict(batch.txid)
    wallet.abandon(batch.txid)  # the operator gave up on it
    report = await processor(engine, wallet).run_once()
    assert report.voiding == 1 and report.refunded == 0 and report.paid == 0
    [batch] = await batches(engine)
    assert batch.status == "voiding" and batch.void_txid in wallet.txs
    void = wallet.txs[batch.void_txid]
    assert void.inputs[0] in wallet.txs[batch.txid].inputs
    assert [a.startswith("change") for a, _ in void.outputs] == [True]
    assert batch.void_fee == void.fee > 0
    wallet.mine(1)  # the void is in a block, not yet deep enough: no refund
    assert (await processor(engine, wallet).run_once()).refunded == 0
    report = await settle(engine, wallet)
    assert report.refunded == 1
    assert report.paid == 3 and len(report.txids) == 1  # paid again, in a new batch
    # (MariaDB keeps whole seconds: order by state, not by creation time)
    failed, paid = sorted(await batches(engine), key=lambda b: b.status != "failed")
    assert failed.status == "failed" and paid.status == "broadcast"
    # Refunded exactly once: payment and refund rows cancel; the pool bears the void fee.
    assert await ledger_of(engine, failed.id) == sorted(
        [(a, -m, "payment") for a, m in DUE.items()]
        + [(a, m, "payment_refund") for a, m in DUE.items()]
        + [("", -failed.fee, "tx_fee"), ("", failed.fee, "tx_fee_refund"),
           ("", -void.fee, "tx_fee")])
    assert wallet.times_paid() == dict.fromkeys(DUE, 1)
    for _ in range(2):
        report = await settle(engine, wallet)
        assert report.refunded == 0 and report.paid == 0
    assert sorted(b.status for b in await batches(engine)) == ["confirmed", "failed"]
    await assert_books_balance(engine)


async def test_conflicted_payment_is_refunded_only_once_buried(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with(50 * COIN)
    await processor(engine, wallet).run_once()
    [batch] = await batches(engine)
    wallet.spend_elsewhere(batch.txid)  # conflicted 1 deep: it could still be reorged
    wallet.fund(50 * COIN)
    for _ in range(CONFIRMATIONS - 1):
        report = await processor(engine, wallet).run_once()
        assert report.refunded == 0 and report.paid == 0
        wallet.mine(1)
    report = await processor(engine, wallet).run_once()
    assert report.refunded == 1 and report.paid == 3  # buried: proof; paid again
    assert await processor(engine, wallet).run_once()
    assert sorted(b.status for b in await batches(engine)) == ["broadcast", "failed"]
    assert wallet.times_paid() == dict.fromkeys(DUE, 1)
    await assert_books_balance(engine)


async def test_fee_bump_is_followed_when_it_pays_the_same(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with()
    await processor(engine, wallet).run_once()
    [batch] = await batches(engine)
    new_txid = wallet.bumpfee(batch.txid, 5000)
    report = await processor(engine, wallet).run_once()
    assert report.status == "nothing_due" and report.unknown_sends == []
    [bumped] = await batches(engine)
    assert (bumped.txid, bumped.fee, bumped.replaced) == (new_txid, batch.fee + 5000,
                                                          batch.txid)
    assert ("", -5000, "tx_fee") in await ledger_of(engine, batch.id)
    await settle(engine, wallet)
    assert [b.status for b in await batches(engine)] == ["confirmed"]
    assert wallet.times_paid() == dict.fromkeys(DUE, 1)
    await assert_books_balance(engine)


async def test_replacement_paying_someone_else_pauses_payments(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with()
    await processor(engine, wallet).run_once()
    [batch] = await batches(engine)
    new_txid = wallet.bumpfee(batch.txid, 5000, change_to="ltc1qthief")
    report = await processor(engine, wallet).run_once()
    assert report.status == "paused" and report.unknown_sends == [new_txid]
    assert new_txid in report.message and "adopt-tx" in report.message
    [still] = await batches(engine)
    assert still.txid == batch.txid
    report = await settle(engine, wallet)  # the replacement confirms: original conflicted
    assert report.refunded == 1 and report.status == "paused" and report.paid == 0
    await assert_books_balance(engine)


async def test_unknown_wallet_send_pauses_until_acknowledged(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with()
    manual = wallet.send_by_hand("ltc1qrent", COIN)
    report = await processor(engine, wallet).run_once()
    assert report.status == "paused" and report.unknown_sends == [manual]
    assert wallet.calls["fundrawtransaction"] == 0
    assert [s.txid for s in await wallet_watch.unknown_sends(engine)] == [manual]
    wallet.mine(5)  # the watermark moves on: the send stays recorded, payments paused
    assert (await processor(engine, wallet).run_once()).status == "paused"
    assert await wallet_watch.mark(engine, manual, wallet_watch.IGNORED, "rent")
    report = await processor(engine, wallet).run_once()
    assert report.status == "paid" and wallet.paid()["ltc1qrent"] == COIN
    assert {a: v for a, v in wallet.paid().items() if a != "ltc1qrent"} == DUE
    await assert_books_balance(engine)


async def test_restored_database_pauses_and_never_pays_twice(engine: AsyncEngine):
    """The database is restored from a backup taken before a payment: it still owes
    what the wallet paid. The wallet's send pauses payments; adopting it books it; the
    miners are paid exactly once."""
    wallet = wallet_with()
    await credit(engine, OWED)
    await processor(engine, wallet).run_once()  # the "lost" run, before the restore
    [lost] = await batches(engine)
    async with engine.begin() as connection:  # restore: the batch and its rows vanish
        for table in (ledger, payments, payment_inputs):
            await connection.execute(table.delete().where(table.c.batch_id == lost.id))
        await connection.execute(payment_batches.delete())
        await connection.execute(balances.delete())
        await connection.execute(ledger.delete())
    await credit(engine, OWED)
    wallet.mine(1)
    for _ in range(2):
        report = await processor(engine, wallet).run_once()
        assert report.status == "paused" and report.unknown_sends == [lost.txid]
    assert wallet.times_paid() == dict.fromkeys(DUE, 1)
    _, received = await adopt_send(engine, wallet, lost.txid, decimals=DECIMALS)
    assert received == DUE
    report = await processor(engine, wallet).run_once()
    assert report.status == "nothing_due" and report.paid == 0
    await settle(engine, wallet)
    assert wallet.times_paid() == dict.fromkeys(DUE, 1)
    assert await paid_off(engine, DUE)
    await assert_books_balance(engine)


async def test_wallet_locks_restored_and_stale_ones_released(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = wallet_with(50 * COIN, 50 * COIN, 50 * COIN)
    wallet.refuse_always = (-26, "mempool full")
    await processor(engine, wallet).run_once()
    async with engine.connect() as connection:
        spent = {(str(t), int(v)) for t, v in (await connection.execute(
            select(payment_inputs.c.txid, payment_inputs.c.vout))).all()}
    assert wallet.locked == spent
    wallet.restart()  # the daemon forgot its locks
    stray = next(o for o in wallet.coins if o not in spent)
    wallet.locked.add(stray)  # left by a run killed between build and intent
    await credit(engine, {"ltc1qlate": COIN})
    report = await processor(engine, wallet).run_once()
    assert report.paid == 1  # recorded, its broadcast refused like the first one's
    async with engine.connect() as connection:
        new_inputs = {(str(t), int(v)) for t, v in (await connection.execute(
            select(payment_inputs.c.txid, payment_inputs.c.vout)
            .where(payment_inputs.c.batch_id == report.batches[0]))).all()}
    # The open batch's coins locked again, the stray freed (reusable), and the new batch
    # did not touch the open one's coins.
    assert not new_inputs & spent
    assert wallet.locked == spent | new_inputs and (stray in new_inputs or
                                                     stray not in wallet.locked)
    await assert_books_balance(engine)


async def test_pays_only_what_confirmed_non_mweb_coins_cover(engine: AsyncEngine):
    owed = {"ltc1qa": 5 * COIN, "ltc1qb": 3 * COIN, "ltc1qc": 2 * COIN, "ltc1qd": COIN}
    await credit(engine, owed)
    wallet = FakeWallet()
    wallet.fund(Decimal("5.5"), Decimal("2.9"), mweb=3)  # MWEB coins are never spent
    report = await processor(engine, wallet, max_recipients=1).run_once()
    # 5.5 pays a (5) with its fee; b (3) fits no coin left; c (2) fits 2.9; d waits too:
    # each batch has coins of its own (no unconfirmed change is spent).
    assert report.status == "paid" and (report.due, report.paid) == (4, 2)
    assert wallet.paid() == {"ltc1qa": 5 * COIN, "ltc1qc": 2 * COIN}
    assert all(not o[0].startswith("mweb") for tx in wallet.txs.values() for o in tx.inputs)
    report = await settle(engine, wallet, max_recipients=1)  # change confirmed: spendable
    assert report.paid >= 1
    await assert_books_balance(engine)


async def test_fee_follows_the_estimate_and_the_size(engine: AsyncEngine):
    owed = {f"ltc1qminer{i:02d}": COIN + i for i in range(20)}
    await credit(engine, owed)
    # 0.001 coin per 1000 vbytes: 100,000 units
    wallet = wallet_with(50 * COIN, 50 * COIN, 50 * COIN, feerate=Decimal("0.00100000"))
    report = await processor(engine, wallet, max_recipients=7).run_once()
    assert report.paid == 20 and len(report.txids) == 3
    for txid in report.txids:
        tx = wallet.txs[txid]
        size = 11 + 68 * len(tx.inputs) + 31 * len(tx.outputs)
        assert tx.fee == -(-size * 100_000 // 1000)
    assert wallet.paid() == owed
    await assert_books_balance(engine)


async def test_max_recipients_splits_a_run(engine: AsyncEngine):
    owed = {f"ltc1qminer{i}": COIN * (10 - i) for i in range(7)}
    await credit(engine, owed)
    wallet = wallet_with(30 * COIN, 30 * COIN, 30 * COIN)
    report = await processor(engine, wallet, max_recipients=3).run_once()
    assert report.status == "paid" and report.paid == 7 and len(report.txids) == 3
    assert [sorted(a for a, _ in wallet.txs[t].outputs if not a.startswith("change"))
            for t in report.txids] == [
        ["ltc1qminer0", "ltc1qminer1", "ltc1qminer2"],
        ["ltc1qminer3", "ltc1qminer4", "ltc1qminer5"], ["ltc1qminer6"]]
    assert wallet.paid() == owed and set(wallet.times_paid().values()) == {1}
    assert (await all_balances(engine))[""] == -sum(wallet.txs[t].fee for t in report.txids)
    await assert_books_balance(engine)


async def test_too_large_batches_are_halved_until_they_pass(engine: AsyncEngine):
    owed = {f"ltc1qminer{i:02d}": COIN + i * 1000 for i in range(10)}
    await credit(engine, owed)
    wallet = wallet_with(*[30 * COIN] * 6)
    wallet.too_large_above = 3
    report = await processor(engine, wallet).run_once()
    assert report.status == "paid" and report.paid == 10
    assert wallet.paid() == owed and set(wallet.times_paid().values()) == {1}
    # 10 refused -> 5 + 5; each 5 refused -> 2 + 3: four transactions, nothing recorded
    # for the refused builds and no coin left locked by them.
    assert sorted(len(tx.outputs) - 1 for tx in wallet.live()) == [2, 2, 3, 3]
    assert [b.status for b in await batches(engine)] == ["broadcast"] * 4
    assert wallet.locked == {o for tx in wallet.live() for o in tx.inputs}
    await assert_books_balance(engine)


async def test_sqlite_commits_are_synced_to_disk(tmp_path: Path):
    """synchronous=FULL: a committed intent survives a power loss, not only a crash."""
    engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
    try:
        async with engine.connect() as connection:
            assert (await connection.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
            assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        await engine.dispose()


@pytest.mark.parametrize("fee_mode", ["pool", "miners"])
async def test_refund_gives_back_every_charge_exactly(engine: AsyncEngine, fee_mode: str):
    """A fee-bumped payment that is then conflicted and buried: every account gets back,
    to the unit, what the batch took (payment, fee or fee share, the bump), once."""
    await credit(engine, OWED)
    wallet = wallet_with(50 * COIN)
    await processor(engine, wallet, fee_mode=fee_mode).run_once()
    [batch] = await batches(engine)
    bumped = wallet.bumpfee(batch.txid, 7000)
    await processor(engine, wallet, fee_mode=fee_mode).run_once()
    wallet.spend_elsewhere(bumped)
    wallet.mine(CONFIRMATIONS - 1)
    report = await processor(engine, wallet, fee_mode=fee_mode).run_once()
    assert report.refunded == 1
    net: dict[str, int] = {}
    for address, amount, _ in await ledger_of(engine, batch.id):
        net[address] = net.get(address, 0) + amount
    assert set(net.values()) == {0}, net
    assert len(await ledger_of(engine, batch.id)) > 2 * len(DUE)
    report = await processor(engine, wallet, fee_mode=fee_mode).run_once()
    assert report.refunded == 0
    await assert_books_balance(engine)
