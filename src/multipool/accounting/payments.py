"""Payments: miners at or above the payout threshold are paid with ``sendmany``, so that a
crash at any moment never pays twice and never forgets a debt.

One batch goes through these steps:

1. **intent**: one database transaction writes the batch (a fresh id, status
   ``intent``), its recipients and amounts, and debits their balances with ledger rows.
   Nothing has left the wallet yet.
2. **send**: ``sendmany`` with the wallet comment ``multipool-batch:<id>``.
3. **record**: the batch becomes ``sent`` with its txid and the transaction fee, which is
   booked against the pool's own account.

Before anything new is paid, every batch still at ``intent`` is reconciled against the
wallet: if a wallet transaction carries its comment, the coins went out and the batch is
recorded as sent; if none does (and the batch is older than ``reconcile_grace``, so a
send in flight cannot be missed), the send never happened, the batch is marked
``failed`` and the balances are credited back, to be paid in a later batch. A send the
daemon refused is refunded at once; one whose answer was lost stays at ``intent`` for
reconciliation.

Runs of one coin never overlap (a lock in the database, locks.py) and can be paused per
coin (the ``payments_paused`` setting). Only what the wallet can spend now is paid
(``getbalances`` mine.trusted: no immature coinbase), largest balance first; a run pays at
most ``max_recipients`` per transaction and halves a batch the wallet finds too large.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting import bookkeeping
from multipool.accounting.locks import DatabaseLock
from multipool.accounting.rewards import POOL_FEE
from multipool.accounting.schema import balances, payment_batches, payments, settings
from multipool.chain.rpc import DaemonError, DaemonOutcomeUnknown
from multipool.config import CoinConfig, format_coins, to_coins, to_units
from multipool.failpoints import failpoint

COMMENT_PREFIX = "multipool-batch:"
PAUSED = "payments_paused"
LOCK_NAME = "payments"
# Bitcoin Core's wallet error codes for a refused send.
RPC_WALLET_ERROR = -4
RPC_WALLET_INSUFFICIENT_FUNDS = -6
# How far before a batch's creation the wallet is searched (clock differences).
CLOCK_MARGIN = timedelta(minutes=10)


class WalletAPI(Protocol):
    async def sendmany(self, amounts: dict[str, Any], comment: str) -> str: ...

    async def listtransactions(self, count: int = 100, skip: int = 0) -> list[dict[str, Any]]:
        ...

    async def gettransaction(self, txid: str) -> dict[str, Any]: ...

    async def getbalances(self) -> dict[str, Any]: ...


@dataclass
class PaymentReport:
    """What one payment run did."""

    status: str  # paid | nothing_due | paused | busy | waiting | stopped
    message: str = ""
    reconciled_sent: int = 0
    reconciled_failed: int = 0
    due: int = 0
    paid: int = 0
    total: int = 0
    batches: list[str] = field(default_factory=list)
    txids: list[str] = field(default_factory=list)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def set_paused(engine: AsyncEngine, paused: bool) -> None:
    """Pause or resume the payments of the coin whose database this is."""
    async with engine.begin() as connection:
        await connection.execute(delete(settings).where(settings.c.name == PAUSED))
        if paused:
            await connection.execute(insert(settings).values(name=PAUSED, value="1"))


async def is_paused(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        value = (await connection.execute(
            select(settings.c.value).where(settings.c.name == PAUSED))).scalar()
    return value == "1"


class PaymentProcessor:
    def __init__(self, *, engine: AsyncEngine, wallet: WalletAPI, decimals: int,
                 min_payout: int, max_recipients: int = 200, fee_reserve: int | None = None,
                 reconcile_grace: float = 60.0, lock_ttl: float = 900.0,
                 logger: logging.Logger | None = None):
        if min_payout <= 0:
            raise ValueError(f"min_payout must be positive, got {min_payout}")
        self.engine = engine
        self.wallet = wallet
        self.decimals = decimals
        self.min_payout = min_payout
        self.max_recipients = max_recipients
        # Left in the wallet for transaction fees: 0.01 coin unless told otherwise.
        self.fee_reserve = fee_reserve if fee_reserve is not None else 10 ** (decimals - 2)
        self.reconcile_grace = timedelta(seconds=reconcile_grace)
        self.lock = DatabaseLock(engine, LOCK_NAME, ttl=lock_ttl)
        self.logger = logger or logging.getLogger(__name__)

    @classmethod
    def from_config(cls, config: CoinConfig, *, engine: AsyncEngine, wallet: WalletAPI,
                    logger: logging.Logger | None = None) -> PaymentProcessor:
        decimals = config.network.decimals
        return cls(engine=engine, wallet=wallet, decimals=decimals,
                   min_payout=to_units(config.pool.min_payout, decimals),
                   max_recipients=config.pool.payment_max_recipients, logger=logger)

    async def run_once(self) -> PaymentReport:
        if await is_paused(self.engine):
            return PaymentReport("paused", "payments are paused for this coin")
        if not await self.lock.acquire():
            holder = await self.lock.holder_of()
            return PaymentReport("busy", f"another payment run holds the lock ({holder})")
        try:
            return await self._locked_run()
        finally:
            await self.lock.release()

    async def _locked_run(self) -> PaymentReport:
        sent, failed, waiting = await self.reconcile()
        report = PaymentReport("paid", reconciled_sent=sent, reconciled_failed=failed)
        if waiting:
            report.status = "waiting"
            report.message = (f"{waiting} unfinished batch(es) too recent to judge; "
                              "nothing new is paid until they are reconciled")
            return report
        due = await self._due()
        report.due = len(due)
        if not due:
            report.status = "nothing_due"
            return report
        spendable = await self._spendable()
        chosen, room = [], spendable - self.fee_reserve
        for address, amount in due:
            if amount <= room:
                chosen.append((address, amount))
                room -= amount
        if len(chosen) < len(due):
            owed = sum(amount for _, amount in due)
            self.logger.warning(
                "wallet can spend %s, owed %s to %d miners: paying %d now, the rest when "
                "more coins mature", format_coins(spendable, self.decimals),
                format_coins(owed, self.decimals), len(due), len(chosen))
        queue = [chosen[i:i + self.max_recipients]
                 for i in range(0, len(chosen), self.max_recipients)]
        while queue:
            batch = queue.pop(0)
            if not await self.lock.renew():
                report.status = "stopped"
                report.message = "lost the payment lock"
                break
            outcome = await self._pay(batch, report)
            if outcome == "too_large" and len(batch) > 1:
                half = len(batch) // 2
                queue[:0] = [batch[:half], batch[half:]]
                self.logger.info("batch of %d too large for one transaction: splitting",
                                 len(batch))
            elif outcome != "sent":
                report.status = "stopped"
                break
        if report.status == "paid" and report.paid:
            report.message = (f"paid {format_coins(report.total, self.decimals)} to "
                              f"{report.paid} miner(s) in {len(report.txids)} transaction(s)")
        return report

    async def _due(self) -> list[tuple[str, int]]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(
                select(balances.c.address, balances.c.amount)
                .where(balances.c.amount >= self.min_payout, balances.c.address != POOL_FEE)
                .order_by(balances.c.amount.desc(), balances.c.address))).all()
        return [(str(address), int(amount)) for address, amount in rows]

    async def _spendable(self) -> int:
        answer = await self.wallet.getbalances()
        try:
            trusted = answer["mine"]["trusted"]
        except (KeyError, TypeError):
            raise DaemonError(f"getbalances answered without mine.trusted: {answer!r}",
                              method="getbalances") from None
        return to_units(trusted, self.decimals)

    async def _pay(self, recipients: list[tuple[str, int]], report: PaymentReport) -> str:
        """Pay one batch through intent, send and record; return sent, too_large,
        refused or unknown."""
        batch_id = str(uuid.uuid4())
        total = sum(amount for _, amount in recipients)
        failpoint("payment:before_intent")
        async with self.engine.begin() as connection:
            held = await bookkeeping.balances_of(connection, [a for a, _ in recipients])
            short = [(a, held[a], v) for a, v in recipients if held[a] < v]
            if short:  # cannot happen while the lock is held; refuse anyway
                raise RuntimeError(f"balances below the amounts to pay: {short[:3]}")
            await connection.execute(insert(payment_batches).values(
                id=batch_id, created=datetime.now(UTC), status="intent", total=total))
            await connection.execute(insert(payments), [
                {"batch_id": batch_id, "address": address, "amount": amount}
                for address, amount in recipients])
            await bookkeeping.post_many(connection, [(a, -v) for a, v in recipients],
                                        kind=bookkeeping.PAYMENT, batch_id=batch_id)
        failpoint("payment:after_intent")
        try:
            txid = await self.wallet.sendmany(
                {address: to_coins(amount, self.decimals) for address, amount in recipients},
                COMMENT_PREFIX + batch_id)
        except DaemonOutcomeUnknown as exc:
            self.logger.warning("batch %s: the answer to sendmany was lost (%s); it will be "
                                "reconciled against the wallet before anything is retried",
                                batch_id, exc)
            return "unknown"
        except DaemonError as exc:
            await self._refund(batch_id, f"sendmany refused: {exc}")
            self.logger.warning("batch %s of %d recipients refused by the wallet: %s",
                                batch_id, len(recipients), exc)
            too_large = exc.code == RPC_WALLET_ERROR and "too large" in str(exc).lower()
            return "too_large" if too_large else "refused"
        failpoint("payment:after_send")
        await self._record_sent(batch_id, txid)
        failpoint("payment:after_record")
        self.logger.info("batch %s: paid %s to %d miner(s) in %s", batch_id,
                         format_coins(total, self.decimals), len(recipients), txid)
        report.batches.append(batch_id)
        report.txids.append(txid)
        report.paid += len(recipients)
        report.total += total
        return "sent"

    async def _record_sent(self, batch_id: str, txid: str) -> None:
        try:
            details = await self.wallet.gettransaction(txid)
            fee = -to_units(details.get("fee", 0), self.decimals)
        except DaemonError as exc:
            self.logger.warning("batch %s sent as %s, fee unknown: %s", batch_id, txid, exc)
            fee = None
        async with self.engine.begin() as connection:
            marked = await connection.execute(
                update(payment_batches)
                .where(payment_batches.c.id == batch_id, payment_batches.c.status == "intent")
                .values(status="sent", txid=txid, fee=fee, finished=datetime.now(UTC)))
            if marked.rowcount == 1 and fee:
                await bookkeeping.post(connection, address=POOL_FEE, amount=-fee,
                                       kind=bookkeeping.TX_FEE, batch_id=batch_id,
                                       note=f"transaction fee of {txid}")

    async def _refund(self, batch_id: str, reason: str) -> None:
        async with self.engine.begin() as connection:
            marked = await connection.execute(
                update(payment_batches)
                .where(payment_batches.c.id == batch_id, payment_batches.c.status == "intent")
                .values(status="failed", error=reason[:200], finished=datetime.now(UTC)))
            if marked.rowcount != 1:
                return
            rows = (await connection.execute(
                select(payments.c.address, payments.c.amount)
                .where(payments.c.batch_id == batch_id))).all()
            await bookkeeping.post_many(connection, [(str(a), int(v)) for a, v in rows],
                                        kind=bookkeeping.PAYMENT_REFUND, batch_id=batch_id,
                                        note=reason[:200])

    async def reconcile(self) -> tuple[int, int, int]:
        """Settle every batch left at intent; return (found sent, failed, too recent)."""
        async with self.engine.connect() as connection:
            unfinished = (await connection.execute(
                select(payment_batches.c.id, payment_batches.c.created)
                .where(payment_batches.c.status == "intent")
                .order_by(payment_batches.c.created))).all()
        if not unfinished:
            return 0, 0, 0
        oldest = min(_utc(created) for _, created in unfinished)
        in_wallet = await self._wallet_comments(since=oldest - CLOCK_MARGIN)
        sent = failed = waiting = 0
        now = datetime.now(UTC)
        for batch_id, created in unfinished:
            txid = in_wallet.get(COMMENT_PREFIX + batch_id)
            if txid is not None:
                await self._record_sent(batch_id, txid)
                self.logger.info("reconciled batch %s: the wallet sent it as %s", batch_id,
                                 txid)
                sent += 1
            elif now - _utc(created) >= self.reconcile_grace:
                await self._refund(batch_id, "no wallet transaction carries this batch: "
                                             "never sent; balances credited back")
                self.logger.warning("reconciled batch %s: never sent, balances credited back",
                                    batch_id)
                failed += 1
            else:
                waiting += 1
        return sent, failed, waiting

    async def _wallet_comments(self, since: datetime, page: int = 500) -> dict[str, str]:
        """Map wallet comment -> txid for sends back to ``since``."""
        found: dict[str, str] = {}
        skip = 0
        cutoff = since.timestamp()
        while True:
            entries = await self.wallet.listtransactions(page, skip)
            for entry in entries:
                comment = entry.get("comment")
                if isinstance(comment, str) and comment.startswith(COMMENT_PREFIX):
                    found.setdefault(comment, str(entry["txid"]))
            times = [int(e.get("time", 0)) for e in entries]
            if len(entries) < page or (times and max(times) < cutoff):
                return found
            skip += page
