"""Payments (payments.py) on SQLite, PostgreSQL and MariaDB, against an in-memory wallet:
intent before send, reconciliation of lost answers, refunds, splitting, pausing and the
run lock. After every scenario each miner has been paid at most once per debt, to the
smallest unit, and the ledger explains every balance."""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting import bookkeeping
from multipool.accounting.locks import DatabaseLock
from multipool.accounting.payments import (
    LOCK_NAME,
    PaymentProcessor,
    is_paused,
    set_paused,
)
from multipool.accounting.schema import balances, ledger, payment_batches, payments
from multipool.chain.rpc import DaemonError, DaemonOutcomeUnknown
from multipool.config import to_units

DECIMALS = 8
COIN = 10**DECIMALS
MIN_PAYOUT = COIN // 100  # 0.01 coin
COMMENT = "multipool-batch:"


@dataclass
class SentTx:
    txid: str
    comment: str
    amounts: dict[str, int]  # smallest unit
    fee: int


class FakeWallet:
    """An in-memory wallet with Bitcoin Core's answers for the four calls payments use.

    The real wallet (litecoind) is exercised in tests/functional; this fake lets the tests
    control refusals and lost answers. ``sent`` lists the transactions that left the
    wallet; ``entries`` is the wallet history, oldest first, as listtransactions pages it.
    """

    def __init__(self, trusted: Decimal = Decimal(1000), *,
                 fee: Decimal | float = Decimal("0.00002260")):
        self.trusted = Decimal(trusted)
        self.fee = fee  # as gettransaction reports it (positive here, negated there)
        self.sent: list[SentTx] = []
        self.entries: list[dict[str, Any]] = []
        self.sendmany_calls = 0
        self.list_calls: list[tuple[int, int]] = []
        self.refuse_above: int | None = None  # -4 "Transaction too large" above this many
        self.refuse_code: int | None = None  # refuse every send with this code
        self.lose_next: str | None = None  # "before" or "after" sending: answer lost once

    def _fee_units(self) -> int:
        return to_units(Decimal(str(self.fee)), DECIMALS)

    async def sendmany(self, amounts: dict[str, Any], comment: str) -> str:
        self.sendmany_calls += 1
        assert all(isinstance(v, Decimal) for v in amounts.values()), "amounts as Decimal"
        assert all(v.as_tuple().exponent >= -DECIMALS for v in amounts.values())
        if self.lose_next == "before":
            self.lose_next = None
            raise DaemonOutcomeUnknown("connection reset before the request was read",
                                       method="sendmany")
        if self.refuse_code is not None:
            raise DaemonError("refused", code=self.refuse_code, method="sendmany")
        if self.refuse_above is not None and len(amounts) > self.refuse_above:
            raise DaemonError("Transaction too large", code=-4, method="sendmany")
        units = {address: to_units(value, DECIMALS) for address, value in amounts.items()}
        fee = self._fee_units()
        if (sum(units.values()) + fee) > to_units(self.trusted, DECIMALS):
            raise DaemonError("Insufficient funds", code=-6, method="sendmany")
        txid = hashlib.sha256(f"{len(self.entries)}:{comment}".encode()).hexdigest()
        self.sent.append(SentTx(txid, comment, units, fee))
        self.trusted -= sum(amounts.values()) + Decimal(fee) / COIN
        now = int(time.time())
        for address, value in amounts.items():
            self.entries.append({"address": address, "category": "send", "amount": -value,
                                 "fee": -Decimal(fee) / COIN, "txid": txid, "time": now,
                                 "comment": comment})
        if self.lose_next == "after":
            self.lose_next = None
            raise DaemonOutcomeUnknown("connection reset after the request was sent",
                                       method="sendmany")
        return txid

    async def listtransactions(self, count: int = 10, skip: int = 0) -> list[dict[str, Any]]:
        """Newest last, like Core: skip the ``skip`` newest, return the ``count`` before."""
        self.list_calls.append((count, skip))
        end = max(0, len(self.entries) - skip)
        return [dict(entry) for entry in self.entries[max(0, end - count):end]]

    async def gettransaction(self, txid: str) -> dict[str, Any]:
        for tx in self.sent:
            if tx.txid == txid:
                fee = -self.fee if isinstance(self.fee, float) else -Decimal(tx.fee) / COIN
                return {"txid": txid, "fee": fee, "comment": tx.comment,
                        "amount": -Decimal(sum(tx.amounts.values())) / COIN}
        raise DaemonError("Invalid or non-wallet transaction id", code=-5,
                          method="gettransaction")

    async def getbalances(self) -> dict[str, Any]:
        return {"mine": {"trusted": self.trusted, "untrusted_pending": Decimal(0),
                         "immature": Decimal(50)}}

    def add_unrelated(self, count: int) -> None:
        now = int(time.time())
        for i in range(count):
            self.entries.append({"address": f"ltc1qother{i}", "category": "receive",
                                 "amount": Decimal("0.1"), "txid": f"{i:064x}", "time": now,
                                 **({"comment": "rent"} if i % 3 == 0 else {})})

    def paid(self) -> Counter[str]:
        """Smallest units each address received, over every transaction."""
        total: Counter[str] = Counter()
        for tx in self.sent:
            total.update(tx.amounts)
        return total

    def times_paid(self) -> Counter[str]:
        return Counter(address for tx in self.sent for address in tx.amounts)


async def credit(engine: AsyncEngine, amounts: dict[str, int]) -> None:
    async with engine.begin() as connection:
        for address, amount in amounts.items():
            await bookkeeping.post(connection, address=address, amount=amount,
                                   kind="adjustment")


async def all_balances(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(balances.c.address, balances.c.amount))).all()
    return {str(address): int(amount) for address, amount in rows}


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


async def payments_of(engine: AsyncEngine, batch_id: str) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(payments.c.address, payments.c.amount)
                                         .where(payments.c.batch_id == batch_id))).all()
    return {str(a): int(m) for a, m in rows}


async def assert_books_balance(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await bookkeeping.ledger_mismatches(connection) == []


async def assert_refunded(engine: AsyncEngine, batch: Any) -> None:
    """A failed batch: its payment and refund rows cancel out, address by address."""
    assert batch.status == "failed" and batch.txid is None and batch.error
    rows = await ledger_of(engine, batch.id)
    recipients = await payments_of(engine, batch.id)
    assert rows == sorted([(a, -m, "payment") for a, m in recipients.items()]
                          + [(a, m, "payment_refund") for a, m in recipients.items()])


def processor(engine: AsyncEngine, wallet: FakeWallet, **options: Any) -> PaymentProcessor:
    options.setdefault("min_payout", MIN_PAYOUT)
    return PaymentProcessor(engine=engine, wallet=wallet, decimals=DECIMALS, **options)


# At the threshold is due, one unit below is not; the pool's own account is never paid.
OWED = {"ltc1qa": 150_000_000, "ltc1qb": MIN_PAYOUT, "ltc1qc": MIN_PAYOUT - 1,
        "ltc1qd": 123_456_789, "": 500_000_000}
DUE = {"ltc1qa": 150_000_000, "ltc1qb": MIN_PAYOUT, "ltc1qd": 123_456_789}


@pytest.mark.parametrize("fee", [Decimal("0.00002260"), 0.0000226],
                         ids=["fee-decimal", "fee-float"])
async def test_due_miners_paid_once_exactly(engine: AsyncEngine, fee: Decimal | float):
    await credit(engine, OWED)
    wallet = FakeWallet(fee=fee)
    report = await processor(engine, wallet).run_once()
    assert report.status == "paid"
    assert (report.due, report.paid, report.total) == (3, 3, sum(DUE.values()))
    assert len(wallet.sent) == 1
    tx = wallet.sent[0]
    assert tx.amounts == DUE
    [batch] = await batches(engine)
    assert tx.comment == COMMENT + batch.id
    assert (batch.status, batch.txid, batch.total, batch.fee) == (
        "sent", tx.txid, sum(DUE.values()), 2260)
    assert report.txids == [tx.txid] and report.batches == [batch.id]
    assert await payments_of(engine, batch.id) == DUE
    # The transaction fee is the pool's: booked to "" as tx_fee.
    assert await ledger_of(engine, batch.id) == sorted(
        [(a, -m, "payment") for a, m in DUE.items()] + [("", -2260, "tx_fee")])
    assert await all_balances(engine) == {
        "ltc1qa": 0, "ltc1qb": 0, "ltc1qc": MIN_PAYOUT - 1, "ltc1qd": 0,
        "": 500_000_000 - 2260}
    await assert_books_balance(engine)

    again = await processor(engine, wallet).run_once()
    assert again.status == "nothing_due" and again.paid == 0
    assert wallet.sendmany_calls == 1
    assert wallet.trusted == Decimal(1000) - Decimal(sum(DUE.values()) + 2260) / COIN
    await assert_books_balance(engine)


async def test_paused_pays_nothing_until_resumed(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = FakeWallet()
    assert not await is_paused(engine)
    await set_paused(engine, True)
    await set_paused(engine, True)  # twice is the same
    assert await is_paused(engine)
    report = await processor(engine, wallet).run_once()
    assert report.status == "paused"
    assert wallet.sendmany_calls == 0 and await batches(engine) == []
    assert await all_balances(engine) == OWED
    await set_paused(engine, False)
    assert not await is_paused(engine)
    assert (await processor(engine, wallet).run_once()).status == "paid"
    assert wallet.paid() == DUE
    await assert_books_balance(engine)


async def test_lock_held_elsewhere_means_busy(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = FakeWallet()
    other = DatabaseLock(engine, LOCK_NAME)
    assert await other.acquire()
    report = await processor(engine, wallet).run_once()
    assert report.status == "busy" and other.holder in report.message
    assert wallet.sendmany_calls == 0 and await batches(engine) == []
    assert await other.holder_of() == other.holder  # still held by the other run
    await other.release()
    assert (await processor(engine, wallet).run_once()).status == "paid"
    assert wallet.paid() == DUE
    assert await other.holder_of() is None  # the run released its lock
    await assert_books_balance(engine)


async def test_refused_send_is_refunded_then_paid_later(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = FakeWallet()
    wallet.refuse_code = -6
    report = await processor(engine, wallet).run_once()
    assert report.status == "stopped" and report.paid == 0
    assert wallet.sent == []
    [batch] = await batches(engine)
    await assert_refunded(engine, batch)
    assert await all_balances(engine) == OWED
    await assert_books_balance(engine)

    wallet.refuse_code = None
    assert (await processor(engine, wallet).run_once()).status == "paid"
    assert wallet.paid() == DUE and set(wallet.times_paid().values()) == {1}
    await assert_books_balance(engine)


async def test_too_large_batches_are_halved_until_they_pass(engine: AsyncEngine):
    owed = {f"ltc1qminer{i:02d}": COIN + i * 1000 for i in range(10)}
    await credit(engine, owed)
    wallet = FakeWallet()
    wallet.refuse_above = 3
    report = await processor(engine, wallet).run_once()
    assert report.status == "paid" and report.paid == 10
    assert wallet.paid() == owed and set(wallet.times_paid().values()) == {1}
    # 10 refused -> 5 + 5; each 5 refused -> 2 + 3: three refusals, four transactions.
    assert sorted(len(tx.amounts) for tx in wallet.sent) == [2, 2, 3, 3]
    assert wallet.sendmany_calls == 7
    every = await batches(engine)
    failed = [b for b in every if b.status == "failed"]
    assert len(failed) == 3 and sum(b.status == "sent" for b in every) == 4
    for batch in failed:
        await assert_refunded(engine, batch)
    assert all(amount == 0 for address, amount in (await all_balances(engine)).items()
               if address != "")
    await assert_books_balance(engine)


async def test_single_recipient_too_large_stops(engine: AsyncEngine):
    await credit(engine, {"ltc1qa": COIN})
    wallet = FakeWallet()
    wallet.refuse_above = 0
    report = await processor(engine, wallet).run_once()
    assert report.status == "stopped" and wallet.sendmany_calls == 1
    [batch] = await batches(engine)
    await assert_refunded(engine, batch)
    assert await all_balances(engine) == {"ltc1qa": COIN}
    await assert_books_balance(engine)


async def test_pays_only_what_the_wallet_can_spend(engine: AsyncEngine):
    owed = {"ltc1qa": 5 * COIN, "ltc1qb": 3 * COIN, "ltc1qc": 2 * COIN, "ltc1qd": COIN}
    await credit(engine, owed)
    wallet = FakeWallet(Decimal("8.4"))
    reserve = COIN // 2
    # Room 8.4 - 0.5 = 7.9 coins, largest first: a (5) fits, b (3) does not, c (2) fits,
    # d (1) does not. Without the reserve b would have fitted after a.
    report = await processor(engine, wallet, fee_reserve=reserve).run_once()
    assert report.status == "paid" and (report.due, report.paid) == (4, 2)
    assert wallet.paid() == {"ltc1qa": 5 * COIN, "ltc1qc": 2 * COIN}
    assert await all_balances(engine) == {"ltc1qa": 0, "ltc1qb": 3 * COIN, "ltc1qc": 0,
                                          "ltc1qd": COIN, "": -wallet.sent[0].fee}
    await assert_books_balance(engine)

    wallet.trusted += 10  # more coins matured
    assert (await processor(engine, wallet, fee_reserve=reserve).run_once()).paid == 2
    assert wallet.paid() == owed and set(wallet.times_paid().values()) == {1}
    await assert_books_balance(engine)


async def test_lost_answer_after_send_is_reconciled_not_resent(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = FakeWallet()
    wallet.lose_next = "after"
    report = await processor(engine, wallet).run_once()
    assert report.status == "stopped" and report.paid == 0
    [tx] = wallet.sent
    [batch] = await batches(engine)
    assert batch.status == "intent" and batch.txid is None
    # Debited at intent: the debt is not forgotten, nor can it be paid a second time.
    assert await all_balances(engine) == {**OWED, **dict.fromkeys(DUE, 0)}
    await assert_books_balance(engine)

    report = await processor(engine, wallet, reconcile_grace=0).run_once()
    assert report.reconciled_sent == 1 and report.reconciled_failed == 0
    assert report.status == "nothing_due"
    assert wallet.sendmany_calls == 1 and wallet.paid() == DUE
    [batch] = await batches(engine)
    assert (batch.status, batch.txid, batch.fee) == ("sent", tx.txid, tx.fee)
    assert ("", -tx.fee, "tx_fee") in await ledger_of(engine, batch.id)
    await assert_books_balance(engine)


async def test_lost_answer_before_send_is_refunded_and_paid_once(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = FakeWallet()
    wallet.lose_next = "before"
    assert (await processor(engine, wallet).run_once()).status == "stopped"
    assert wallet.sent == []
    [lost] = await batches(engine)
    assert lost.status == "intent"

    report = await processor(engine, wallet, reconcile_grace=0).run_once()
    assert report.reconciled_failed == 1 and report.reconciled_sent == 0
    assert report.status == "paid" and report.paid == 3
    assert wallet.paid() == DUE and set(wallet.times_paid().values()) == {1}
    lost_id = lost.id
    lost, paid = sorted(await batches(engine), key=lambda b: b.id != lost_id)
    await assert_refunded(engine, lost)
    assert paid.status == "sent" and paid.txid == wallet.sent[0].txid
    await assert_books_balance(engine)

    assert (await processor(engine, wallet, reconcile_grace=0).run_once()).status == (
        "nothing_due")
    assert wallet.sendmany_calls == 2  # the lost call and the one that paid
    await assert_books_balance(engine)


async def test_recent_unfinished_batch_waits(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = FakeWallet()
    wallet.lose_next = "before"
    await processor(engine, wallet).run_once()
    await credit(engine, {"ltc1qnew": 2 * COIN})  # due meanwhile, must wait as well
    report = await processor(engine, wallet, reconcile_grace=3600).run_once()
    assert report.status == "waiting"
    assert (report.reconciled_sent, report.reconciled_failed, report.paid) == (0, 0, 0)
    assert wallet.sent == [] and wallet.sendmany_calls == 1
    [batch] = await batches(engine)
    assert batch.status == "intent"
    assert (await all_balances(engine))["ltc1qnew"] == 2 * COIN
    await assert_books_balance(engine)


async def test_reconcile_pages_through_a_long_wallet_history(engine: AsyncEngine):
    await credit(engine, OWED)
    wallet = FakeWallet()
    wallet.add_unrelated(700)  # older history
    wallet.lose_next = "after"
    await processor(engine, wallet).run_once()
    wallet.add_unrelated(1234)  # newer than the batch: it is well past the first page
    assert len(wallet.entries) > 3 * 500
    report = await processor(engine, wallet, reconcile_grace=0).run_once()
    assert report.reconciled_sent == 1 and report.status == "nothing_due"
    assert wallet.sendmany_calls == 1 and wallet.paid() == DUE
    assert max(skip for _, skip in wallet.list_calls) >= 1234 - 500
    [batch] = await batches(engine)
    assert (batch.status, batch.txid) == ("sent", wallet.sent[0].txid)
    await assert_books_balance(engine)


async def test_max_recipients_splits_a_run(engine: AsyncEngine):
    owed = {f"ltc1qminer{i}": COIN * (10 - i) for i in range(7)}
    await credit(engine, owed)
    wallet = FakeWallet()
    report = await processor(engine, wallet, max_recipients=3).run_once()
    assert report.status == "paid" and report.paid == 7 and len(report.txids) == 3
    # Largest balance first, three per transaction.
    assert [sorted(tx.amounts) for tx in wallet.sent] == [
        ["ltc1qminer0", "ltc1qminer1", "ltc1qminer2"],
        ["ltc1qminer3", "ltc1qminer4", "ltc1qminer5"], ["ltc1qminer6"]]
    assert wallet.paid() == owed and set(wallet.times_paid().values()) == {1}
    assert [b.status for b in await batches(engine)] == ["sent"] * 3
    assert (await all_balances(engine))[""] == -3 * 2260  # three transaction fees
    await assert_books_balance(engine)
