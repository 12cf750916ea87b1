"""Payments: miners at or above the payout threshold are paid by a transaction whose id is
known, and recorded, before anything is broadcast, so that a crash, an outage or a second
runner at any moment never pays twice and never forgets a debt.

One batch goes through these steps (a run stops at the first that fails):

1. **build**: the wallet funds and signs the transaction without broadcasting it
   (payment_tx.py); the coins it spends are locked in the wallet.
2. **intent**: one database transaction writes the batch (status ``intent``) with the
   signed transaction, its txid, fee and inputs, its recipients, and debits their
   balances (``payment``) and charges the fee (``tx_fee``). Nothing has left the wallet.
3. **broadcast**: ``sendrawtransaction`` with the recorded bytes. The same bytes can only
   ever be that one transaction, so sending them again is harmless and a run can always
   retry it; the batch becomes ``broadcast``.

From then on the batch follows its txid, at the start of every run, before anything new
is paid: ``confirmed`` at ``confirmations`` depth; re-broadcast while it is in neither
the mempool nor a block; a fee bump by the operator (``replaced_by_txid``) is adopted if
the replacement pays the same recipients the same amounts. It is ``failed`` and credited
back, exactly once, only with proof that it can never confirm: a transaction spending one
of its inputs buried ``confirmations`` deep (the wallet reports the payment conflicted
that deep). A payment the operator abandoned (``abandontransaction``) is made impossible
first: a small transaction spending one of its inputs back to the wallet (the *void*,
recorded before it is broadcast; state ``voiding``), and refunded once that is buried. A
refusal to broadcast proves nothing and refunds nothing. The miners of a failed batch are
paid again by a later run.

Runs of one coin never overlap: a lock in the database with a fencing token that every
write of the run checks (locks.py); the lock is renewed right before each broadcast, and
no wallet call of the run is retried or waited for past the lock's expiry less a margin.
Wallet locks are restored from the open batches at the start of every run (litecoind
forgets them when it restarts). Payments pause by hand (``payments_paused``) or by
themselves while the wallet holds sends this database cannot explain (wallet_watch.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting import bookkeeping, payment_tx, wallet_watch
from multipool.accounting.locks import DatabaseLock, LockLost
from multipool.accounting.payment_tx import (
    BuildError,
    BuiltTx,
    Coin,
    InsufficientFunds,
    TooLarge,
)
from multipool.accounting.rewards import POOL_FEE
from multipool.accounting.schema import (
    balances,
    payment_batches,
    payment_inputs,
    payments,
)
from multipool.accounting.settings_rows import read_setting, write_setting
from multipool.chain.rpc import DaemonClient, DaemonError, DaemonUnavailable
from multipool.config import CoinConfig, format_coins, to_coins, to_units
from multipool.failpoints import failpoint

PAUSED = "payments_paused"
PAUSED_BY_HAND = "payments are paused by hand: 'multipool payments resume' restarts them"
LOCK_NAME = "payments"
INTENT, BROADCAST, CONFIRMED, VOIDING, FAILED = (
    "intent", "broadcast", "confirmed", "voiding", "failed")
OPEN = (INTENT, BROADCAST, VOIDING)
FEE_MODES = ("pool", "miners")
# Bitcoin Core's codes: not in the wallet / mempool; already in the chain; bad parameter.
RPC_INVALID_ADDRESS_OR_KEY = -5
RPC_VERIFY_ALREADY_IN_CHAIN = -27
RPC_INVALID_PARAMETER = -8
ALREADY_SENT = ("txn-already-known", "txn-already-in-mempool", "already in block chain")
# Most extra coins tried when the fee of a built transaction exceeds the estimate.
MORE_COINS_TRIES = 3
# A void output must stay above every daemon's dust limit.
DUST = 1000


class PaymentWallet(payment_tx.BuilderWallet, wallet_watch.ScanWallet, Protocol):
    async def gettransaction(self, txid: str) -> dict[str, Any]: ...

    async def getmempoolentry(self, txid: str) -> dict[str, Any]: ...

    async def gettxout(self, txid: str, vout: int, include_mempool: bool = True) -> Any: ...

    async def sendrawtransaction(self, hex_tx: str) -> str: ...

    async def listlockunspent(self) -> list[dict[str, Any]]: ...

    async def getrawchangeaddress(self) -> str: ...


@dataclass
class PaymentReport:
    """What one payment run did."""

    status: str  # paid | nothing_due | paused | busy | stopped
    message: str = ""
    confirmed: int = 0
    refunded: int = 0
    voiding: int = 0
    due: int = 0
    paid: int = 0
    total: int = 0
    batches: list[str] = field(default_factory=list)
    txids: list[str] = field(default_factory=list)
    unknown_sends: list[str] = field(default_factory=list)
    negative_accounts: list[tuple[str, int]] = field(default_factory=list)


async def set_paused(engine: AsyncEngine, paused: bool) -> None:
    """Pause or resume the payments of the coin whose database this is."""
    async with engine.begin() as connection:
        await write_setting(connection, PAUSED, "1" if paused else None)


async def is_paused(engine: AsyncEngine) -> bool:
    async with engine.connect() as connection:
        return await read_setting(connection, PAUSED) == "1"


def _already_sent(exc: DaemonError) -> bool:
    return exc.code == RPC_VERIFY_ALREADY_IN_CHAIN or any(
        text in exc.message.lower() for text in ALREADY_SENT)


def _abandoned(info: dict[str, Any]) -> bool:
    return any(detail.get("abandoned") for detail in info.get("details", []))


class PaymentProcessor:
    def __init__(self, *, engine: AsyncEngine, wallet: PaymentWallet, decimals: int,
                 min_payout: int, max_recipients: int = 200, fee_mode: str = "pool",
                 fee_account: str = POOL_FEE, confirmations: int = 6,
                 lock_ttl: float = 900.0, logger: logging.Logger | None = None):
        if min_payout <= 0:
            raise ValueError(f"min_payout must be positive, got {min_payout}")
        if fee_mode not in FEE_MODES:
            raise ValueError(f"fee_mode must be one of {FEE_MODES}, got {fee_mode!r}")
        if confirmations < 1:
            raise ValueError(f"confirmations must be at least 1, got {confirmations}")
        self.engine = engine
        self.wallet = wallet
        self.decimals = decimals
        self.min_payout = min_payout
        self.max_recipients = max_recipients
        self.fee_mode = fee_mode
        # Who bears network fees in "pool" mode (and the fee of a void, and an operator's
        # fee bump, in either mode): the fee_address's account, else the pool's own "".
        self.fee_account = fee_account
        self.confirmations = confirmations
        self.lock = DatabaseLock(engine, LOCK_NAME, ttl=lock_ttl)
        # Wallet calls stop this long before the lock could expire (clock differences
        # between hosts, the database write that follows).
        self.lock_margin = min(60.0, lock_ttl / 4)
        self.logger = logger or logging.getLogger(__name__)

    @classmethod
    def from_config(cls, config: CoinConfig, *, engine: AsyncEngine, wallet: PaymentWallet,
                    logger: logging.Logger | None = None) -> PaymentProcessor:
        decimals = config.network.decimals
        pool = config.pool
        return cls(engine=engine, wallet=wallet, decimals=decimals,
                   min_payout=to_units(pool.min_payout, decimals),
                   max_recipients=pool.payment_max_recipients, fee_mode=pool.payment_fee,
                   fee_account=pool.fee_address or POOL_FEE,
                   confirmations=pool.payment_confirmations, lock_ttl=pool.payment_lock_ttl,
                   logger=logger)

    def _deadline(self) -> Any:
        """No wallet call past the lock's expiry less the margin (see DaemonClient)."""
        return DaemonClient.retry_until(self.lock.valid_until - self.lock_margin)

    async def run_once(self) -> PaymentReport:
        """One payment run. Raises DaemonError (the daemon is away or refuses a call that
        is not a broadcast) and BuildError: whatever was recorded is taken up by the next
        run; a lost lock ends the run with the status "stopped"."""
        if await is_paused(self.engine):
            return PaymentReport("paused", PAUSED_BY_HAND)
        if not await self.lock.acquire():
            holder = await self.lock.holder_of()
            return PaymentReport("busy", f"another payment run holds the lock ({holder})")
        try:
            return await self._locked_run()
        except LockLost as exc:
            self.logger.warning("payment run stopped: %s", exc)
            return PaymentReport("stopped", str(exc))
        finally:
            await self.lock.release()

    async def _locked_run(self) -> PaymentReport:
        report = PaymentReport("paid")
        with self._deadline():
            await self._restore_locks()
        for batch in await self._open_batches():
            if not await self.lock.renew():
                raise LockLost("lost the payment lock while following open batches")
            with self._deadline():
                outcome = await self._follow(batch)
            if outcome == CONFIRMED:
                report.confirmed += 1
            elif outcome == FAILED:
                report.refunded += 1
            elif outcome == VOIDING:
                report.voiding += 1
        with self._deadline():
            await wallet_watch.scan(self.engine, self.wallet, self.decimals, self.lock.fence)
        unknown = await wallet_watch.unknown_sends(self.engine)
        async with self.engine.connect() as connection:
            report.negative_accounts = await bookkeeping.negative_balances(connection)
        for address, amount in report.negative_accounts:
            self.logger.warning("account %r is negative: %s (network fees it could not cover)",
                                address, format_coins(amount, self.decimals))
        if unknown:
            report.status = "paused"
            report.unknown_sends = [send.txid for send in unknown]
            report.message = wallet_watch.pause_message(unknown)
            self.logger.warning("%s", report.message)
            return report
        await self._pay_due(report)
        if report.status == "paid" and report.paid:
            report.message = (f"paid {format_coins(report.total, self.decimals)} to "
                              f"{report.paid} recipient(s) in {len(report.txids)} "
                              "transaction(s)")
        return report

    # --- wallet locks -----------------------------------------------------------------

    async def _open_inputs(self) -> set[tuple[str, int]]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(
                select(payment_inputs.c.txid, payment_inputs.c.vout)
                .join(payment_batches, payment_inputs.c.batch_id == payment_batches.c.id)
                .where(payment_batches.c.status.in_(OPEN)))).all()
        return {(str(txid), int(vout)) for txid, vout in rows}

    async def _restore_locks(self) -> None:
        """Lock the inputs of every open batch (a restarted daemon forgot them) and
        release every other lock (left by a run that died between build and intent)."""
        wanted = await self._open_inputs()
        held = {(str(o["txid"]), int(o["vout"])) for o in await self.wallet.listlockunspent()}
        for txid, vout in sorted(wanted - held):
            try:
                await self.wallet.lockunspent(False, [{"txid": txid, "vout": vout}])
            except DaemonError as exc:
                if exc.code != RPC_INVALID_PARAMETER:  # spent already: nothing to protect
                    raise
        stale = sorted(held - wanted)
        if stale:
            await payment_tx.unlock(self.wallet, stale)
            self.logger.info("released %d wallet lock(s) no open batch holds", len(stale))

    # --- following open batches ----------------------------------------------------------

    async def _open_batches(self) -> list[Row[Any]]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(
                select(payment_batches).where(payment_batches.c.status.in_(OPEN))
                .order_by(payment_batches.c.created, payment_batches.c.id))).all())

    async def _wallet_tx(self, txid: str | None) -> dict[str, Any] | None:
        if txid is None:
            return None
        try:
            return await self.wallet.gettransaction(txid)
        except DaemonError as exc:
            if exc.code == RPC_INVALID_ADDRESS_OR_KEY:
                return None
            raise

    async def _in_mempool(self, txid: str) -> bool:
        try:
            await self.wallet.getmempoolentry(txid)
            return True
        except DaemonError as exc:
            if exc.code == RPC_INVALID_ADDRESS_OR_KEY:
                return False
            raise

    async def _follow(self, batch: Row[Any]) -> str:
        """Move one open batch along its txid; return its state afterwards."""
        info = await self._wallet_tx(batch.txid)
        if info is not None and info.get("replaced_by_txid") and batch.status != VOIDING:
            if await self._adopt_replacement(batch, info):
                return str(batch.status)
        depth = int(info["confirmations"]) if info is not None else None
        if depth is not None and depth >= self.confirmations:
            await self._confirm(batch, depth)
            return CONFIRMED
        if depth is not None and depth <= -self.confirmations:
            await self._refund(batch, f"conflicted {-depth} blocks deep: a transaction "
                                      "spending its inputs is buried")
            return FAILED
        if batch.status == VOIDING:
            return await self._follow_void(batch, depth)
        if depth is not None and depth != 0:
            await self._note(batch, depth, BROADCAST)
            if depth < 0:
                self.logger.warning("batch %s: %s is conflicted %d block(s) deep; refunded "
                                    "at %d", batch.id, batch.txid, -depth, self.confirmations)
            return BROADCAST
        if info is not None and _abandoned(info):
            return await self._void(batch)
        if info is not None and await self._in_mempool(batch.txid):
            await self._note(batch, 0, BROADCAST)
            return BROADCAST
        return await self._broadcast(batch)

    async def _note(self, batch: Row[Any], depth: int, status: str) -> None:
        async with self.engine.begin() as connection:
            await self.lock.fence(connection)
            await connection.execute(
                update(payment_batches)
                .where(payment_batches.c.id == batch.id, payment_batches.c.status.in_(OPEN))
                .values(confirmations=depth,
                        status=status if batch.status == INTENT else batch.status))

    async def _broadcast(self, batch: Row[Any]) -> str:
        """Send the recorded transaction (again); return the batch's state."""
        refusal = await self._send_raw(batch.raw_tx)
        if refusal is not None:
            self.logger.warning(
                "batch %s: the node refused %s (%s); it stays %s and is tried again next "
                "run. A refusal proves nothing: if it cannot get in, bump its fee (bumpfee) "
                "or abandon it (abandontransaction) and the next run voids and refunds it; "
                "if its inputs are spent by a transaction the wallet does not know, "
                "payments pause on that send", batch.id, batch.txid, refusal, batch.status)
            return str(batch.status)
        failpoint("payment:after_broadcast")
        async with self.engine.begin() as connection:
            await self.lock.fence(connection)
            await connection.execute(
                update(payment_batches)
                .where(payment_batches.c.id == batch.id, payment_batches.c.status == INTENT)
                .values(status=BROADCAST))
        failpoint("payment:after_record")
        return BROADCAST

    async def _confirm(self, batch: Row[Any], depth: int) -> None:
        async with self.engine.begin() as connection:
            await self.lock.fence(connection)
            marked = await connection.execute(
                update(payment_batches)
                .where(payment_batches.c.id == batch.id, payment_batches.c.status.in_(OPEN))
                .values(status=CONFIRMED, confirmations=depth, finished=datetime.now(UTC)))
            if marked.rowcount == 1 and batch.void_fee:
                # The payment won over its void: the void never confirmed, nor its fee.
                await bookkeeping.post(connection, address=self._charged(batch),
                                       amount=int(batch.void_fee),
                                       kind=bookkeeping.TX_FEE_REFUND, batch_id=batch.id,
                                       note=f"void {batch.void_txid} never confirmed")
        await self._unlock_inputs(batch.id)
        self.logger.info("batch %s confirmed: %s is %d blocks deep", batch.id, batch.txid,
                         depth)

    def _charged(self, batch: Row[Any]) -> str:
        """The account that bears the batch's own extra fees (a void, a fee bump)."""
        return str(batch.fee_account) if batch.fee_account is not None else self.fee_account

    async def _refund(self, batch: Row[Any], reason: str) -> None:
        """Credit a batch back, exactly once: the status change and the credits are one
        transaction, and only an open batch changes."""
        async with self.engine.begin() as connection:
            await self.lock.fence(connection)
            marked = await connection.execute(
                update(payment_batches)
                .where(payment_batches.c.id == batch.id, payment_batches.c.status.in_(OPEN))
                .values(status=FAILED, error=reason[:200], finished=datetime.now(UTC)))
            if marked.rowcount != 1:
                return
            rows = (await connection.execute(
                select(payments.c.address, payments.c.amount, payments.c.fee)
                .where(payments.c.batch_id == batch.id))).all()
            await bookkeeping.post_many(connection, [(str(a), int(v)) for a, v, _ in rows],
                                        kind=bookkeeping.PAYMENT_REFUND, batch_id=batch.id,
                                        note=reason[:200])
            shares = [(str(a), int(f)) for a, _, f in rows if f]
            if shares:
                await bookkeeping.post_many(connection, shares, kind=bookkeeping.TX_FEE_REFUND,
                                            batch_id=batch.id, note="never confirmed")
            # The fee account's part: the whole fee when the pool pays it, else what an
            # operator's fee bump added on top of the recipients' shares.
            charged = int(batch.fee or 0) - (sum(f for _, f in shares)
                                             if batch.fee_mode == "miners" else 0)
            if charged > 0:
                await bookkeeping.post(connection, address=self._charged(batch),
                                       amount=charged, kind=bookkeeping.TX_FEE_REFUND,
                                       batch_id=batch.id, note=f"{batch.txid} never confirmed")
        await self._unlock_inputs(batch.id)
        self.logger.warning("batch %s failed (%s): %s credited back to %d recipient(s), paid "
                            "again by a later run", batch.id, reason,
                            format_coins(int(batch.total), self.decimals), len(rows))

    async def _inputs_of(self, batch_id: str) -> list[tuple[str, int]]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(
                select(payment_inputs.c.txid, payment_inputs.c.vout)
                .where(payment_inputs.c.batch_id == batch_id)
                .order_by(payment_inputs.c.txid, payment_inputs.c.vout))).all()
        return [(str(txid), int(vout)) for txid, vout in rows]

    async def _unlock_inputs(self, batch_id: str) -> None:
        await payment_tx.unlock(self.wallet, await self._inputs_of(batch_id))

    async def _void(self, batch: Row[Any]) -> str:
        """The wallet reports the payment abandoned: record, then broadcast, a transaction
        spending one of its inputs back to the wallet, so that it can never confirm."""
        coin = None
        for txid, vout in await self._inputs_of(batch.id):
            out = await self.wallet.gettxout(txid, vout, True)
            if out is not None:
                coin = (txid, vout, out)
                break
        if coin is None:
            self.logger.warning("batch %s: %s is abandoned but its inputs are spent already; "
                                "waiting for the spending transaction to be buried",
                                batch.id, batch.txid)
            return str(batch.status)
        txid, vout, out = coin
        value = to_units(out["value"], self.decimals)
        rate = await payment_tx.fee_rate(self.wallet, self.decimals)
        size = payment_tx.estimated_size(
            [Coin(txid, vout, value, payment_tx.input_size(out["scriptPubKey"]["hex"]))], 1)
        fee = payment_tx.fee_for(size, rate)
        if value - fee < DUST:
            self.logger.warning("batch %s: its input %s:%d is too small to void", batch.id,
                                txid, vout)
            return str(batch.status)
        address = await self.wallet.getrawchangeaddress()
        raw = await self.wallet.createrawtransaction(
            [{"txid": txid, "vout": vout}], [{address: to_coins(value - fee, self.decimals)}])
        signed = await self.wallet.signrawtransactionwithwallet(raw)
        if not signed.get("complete"):
            raise BuildError(f"the wallet could not sign the void of batch {batch.id}")
        void_txid = str((await self.wallet.decoderawtransaction(signed["hex"]))["txid"])
        async with self.engine.begin() as connection:
            await self.lock.fence(connection)
            marked = await connection.execute(
                update(payment_batches)
                .where(payment_batches.c.id == batch.id,
                       payment_batches.c.status.in_((INTENT, BROADCAST)))
                .values(status=VOIDING, void_txid=void_txid, void_tx=signed["hex"],
                        void_fee=fee))
            if marked.rowcount != 1:
                return str(batch.status)
            await bookkeeping.post(connection, address=self._charged(batch), amount=-fee,
                                   kind=bookkeeping.TX_FEE, batch_id=batch.id,
                                   note=f"void {void_txid} of abandoned {batch.txid}")
        self.logger.warning("batch %s: %s was abandoned; voiding it with %s (spends its input "
                            "%s:%d back to the wallet); refunded once that is %d deep",
                            batch.id, batch.txid, void_txid, txid, vout, self.confirmations)
        await self._send_void(batch.id, signed["hex"])
        return VOIDING

    async def _send_raw(self, hex_tx: str) -> DaemonError | None:
        """Broadcast recorded bytes, which is safe to repeat; return the node's refusal,
        or None once it has the transaction (now or before). The lock is renewed first."""
        if not await self.lock.renew():
            raise LockLost("lost the payment lock before a broadcast")
        with self._deadline():
            try:
                await self.wallet.sendrawtransaction(hex_tx)
            except DaemonUnavailable:
                raise
            except DaemonError as exc:
                if not _already_sent(exc):
                    return exc
        return None

    async def _send_void(self, batch_id: str, hex_tx: str) -> None:
        refusal = await self._send_raw(hex_tx)
        if refusal is not None:
            self.logger.warning("batch %s: the node refused its void (%s); tried again "
                                "next run", batch_id, refusal)

    async def _follow_void(self, batch: Row[Any], depth: int | None) -> str:
        info = await self._wallet_tx(batch.void_txid)
        void_depth = int(info["confirmations"]) if info is not None else None
        if void_depth is not None and void_depth >= self.confirmations:
            await self._refund(batch, f"abandoned; its void {batch.void_txid} is "
                                      f"{void_depth} blocks deep")
            return FAILED
        if depth is not None and depth > 0:
            await self._note(batch, depth, VOIDING)  # the payment got in after all
            return VOIDING
        if void_depth is None or (void_depth == 0 and not await self._in_mempool(
                batch.void_txid)):
            await self._send_void(batch.id, batch.void_tx)
        return VOIDING

    async def _adopt_replacement(self, batch: Row[Any], info: dict[str, Any]) -> bool:
        """The operator bumped the fee (bumpfee): follow the replacement when it pays the
        same recipients the same amounts; the extra fee is charged to the fee account.
        Otherwise the original will be conflicted, and the replacement is a send this
        database does not explain (payments pause)."""
        new_txid = str(info["replaced_by_txid"])
        replacement = await self._wallet_tx(new_txid)
        if replacement is None or "hex" not in replacement:
            return False
        decoded = await self.wallet.decoderawtransaction(replacement["hex"])
        async with self.engine.connect() as connection:
            owed = dict((await connection.execute(
                select(payments.c.address, payments.c.amount)
                .where(payments.c.batch_id == batch.id))).all())
        paying: dict[str, int] = {}
        for output in decoded["vout"]:
            script = output.get("scriptPubKey") or {}
            for address in script.get("addresses") or [script.get("address")]:
                if address in owed:
                    paying[address] = paying.get(address, 0) + to_units(output["value"],
                                                                         self.decimals)
        if paying != {str(a): int(v) for a, v in owed.items()}:
            self.logger.warning("batch %s: %s was replaced by %s, which does not pay the same "
                                "recipients the same amounts: not adopted", batch.id,
                                batch.txid, new_txid)
            return False
        fee = -to_units(replacement["fee"], self.decimals)
        async with self.engine.begin() as connection:
            await self.lock.fence(connection)
            replaced = ",".join(t for t in ((batch.replaced or ""), str(batch.txid)) if t)
            marked = await connection.execute(
                update(payment_batches)
                .where(payment_batches.c.id == batch.id, payment_batches.c.txid == batch.txid)
                .values(txid=new_txid, raw_tx=replacement["hex"], fee=fee, replaced=replaced,
                        status=BROADCAST))
            if marked.rowcount != 1:
                return False
            await connection.execute(
                delete(payment_inputs).where(payment_inputs.c.batch_id == batch.id))
            await connection.execute(insert(payment_inputs), [
                {"batch_id": batch.id, "txid": str(i["txid"]), "vout": int(i["vout"])}
                for i in decoded["vin"]])
            extra = fee - int(batch.fee or 0)
            if extra:
                await bookkeeping.post(connection, address=self._charged(batch), amount=-extra,
                                       kind=bookkeeping.TX_FEE, batch_id=batch.id,
                                       note=f"fee bump {batch.txid} -> {new_txid}")
        self.logger.info("batch %s: follows %s, the fee bump of %s", batch.id, new_txid,
                         batch.txid)
        return True

    # --- paying -------------------------------------------------------------------------

    async def _due(self) -> list[tuple[str, int]]:
        held_back = {POOL_FEE} | ({self.fee_account} if self.fee_mode == "pool" else set())
        async with self.engine.connect() as connection:
            rows = (await connection.execute(
                select(balances.c.address, balances.c.amount)
                .where(balances.c.amount >= self.min_payout)
                .order_by(balances.c.amount.desc(), balances.c.address))).all()
        return [(str(a), int(v)) for a, v in rows if str(a) not in held_back]

    async def _coins(self) -> list[Coin]:
        with self._deadline():
            unspent = await self.wallet.listunspent(1)
        return payment_tx.spendable_coins(unspent, self.decimals, await self._open_inputs())

    def _plan(self, due: Sequence[tuple[str, int]], coins: Sequence[Coin], rate: int
              ) -> tuple[list[tuple[list[tuple[str, int]], list[Coin]]], int]:
        """Who fits in this run: largest balances first, each batch with the coins that
        cover it and (when the pool pays) its estimated fee; an unconfirmed change is
        never spent, so each batch needs coins of its own. Return the batches and the
        number of recipients left for a later run."""
        batches: list[tuple[list[tuple[str, int]], list[Coin]]] = []
        remaining = list(coins)
        current: list[tuple[str, int]] = []
        chosen: list[Coin] = []
        left = 0
        total = 0
        for address, amount in due:
            selected = payment_tx.select_coins(remaining, total + amount, len(current) + 1,
                                               rate, fee_on_top=self.fee_mode == "pool")
            if selected is None:
                left += 1
                continue
            current.append((address, amount))
            total += amount
            chosen = selected
            if len(current) == self.max_recipients:
                batches.append((current, chosen))
                used = set(chosen)
                remaining = [c for c in remaining if c not in used]
                current, chosen, total = [], [], 0
        if current:
            batches.append((current, chosen))
        return batches, left

    async def _pay_due(self, report: PaymentReport) -> None:
        due = await self._due()
        report.due = len(due)
        fee_account_due = (self.fee_mode == "pool" and self.fee_account != POOL_FEE)
        if not due and not fee_account_due:
            report.status = "nothing_due"
            return
        with self._deadline():
            rate = await payment_tx.fee_rate(self.wallet, self.decimals)
        coins = await self._coins()
        plan, left = self._plan(due, coins, rate)
        if left:
            owed = sum(amount for _, amount in due)
            self.logger.warning(
                "the wallet's confirmed coins (%s) do not cover the %s owed to %d miners and "
                "the fees: paying %d now, the rest when more coins mature",
                format_coins(sum(c.value for c in coins), self.decimals),
                format_coins(owed, self.decimals), len(due), len(due) - left)
        queue = list(plan)
        while queue:
            recipients, selected = queue.pop(0)
            subtract = list(range(len(recipients))) if self.fee_mode == "miners" else []
            try:
                paid = await self._pay(recipients, selected, rate, subtract, report)
            except TooLarge as exc:
                if len(recipients) == 1:
                    raise
                half = len(recipients) // 2
                self.logger.info("batch of %d too large for one transaction (%s): "
                                 "splitting", len(recipients), exc)
                coins = await self._coins()
                halves = [*self._plan(recipients[:half], coins, rate)[0]]
                used = {c for _, chosen in halves for c in chosen}
                halves += self._plan(recipients[half:], [c for c in coins if c not in used],
                                     rate)[0]
                queue[:0] = halves
                continue
            if not paid:
                report.status = "stopped"
                return
        if fee_account_due:
            await self._pay_fee_account(rate, report)
        if not report.paid:
            report.status = "nothing_due" if not left else "stopped"
            if left:
                report.message = "the wallet has no confirmed coins to pay with yet"

    async def _pay_fee_account(self, rate: int, report: PaymentReport) -> None:
        """In "pool" mode the fee account is paid last, after this run's fees were charged
        to it, and its own payment's fee comes out of its output: it ends at exactly 0."""
        async with self.engine.connect() as connection:
            balance = await bookkeeping.balance_of(connection, self.fee_account)
        if balance < self.min_payout:
            return
        coins = await self._coins()
        selected = payment_tx.select_coins(coins, balance, 1, rate, fee_on_top=False)
        if selected is None:
            return
        await self._pay([(self.fee_account, balance)], selected, rate, [0], report)

    async def _pay(self, recipients: list[tuple[str, int]], selected: list[Coin], rate: int,
                   subtract: list[int], report: PaymentReport) -> bool:
        """Build, record and broadcast one batch; return False when the run must stop.
        (The intent is fenced and the broadcast renews the lock: no renewal here, which
        would cost one more synced commit per batch.)"""
        failpoint("payment:before_build")
        built = await self._build(recipients, selected, rate, subtract)
        if built is None:
            return False
        failpoint("payment:after_build")
        batch_id = str(uuid.uuid4())
        await self._record_intent(batch_id, built)
        failpoint("payment:after_intent")
        async with self.engine.connect() as connection:
            batch = (await connection.execute(
                select(payment_batches).where(payment_batches.c.id == batch_id))).one()
        try:
            status = await self._broadcast(batch)
        except DaemonUnavailable as exc:
            # Recorded: the next run broadcasts the same bytes again (or finds them sent).
            self.logger.warning("batch %s: %s recorded, broadcast unconfirmed (%s); the next "
                                "run sends it again", batch_id, built.txid, exc)
            status = INTENT
        total = sum(paid for _, paid, _ in built.outputs)
        self.logger.info("batch %s: %s to %d recipient(s) in %s (fee %s, %s)", batch_id,
                         format_coins(total, self.decimals), len(recipients), built.txid,
                         format_coins(built.fee, self.decimals), status)
        report.batches.append(batch_id)
        report.txids.append(built.txid)
        report.paid += len(recipients)
        report.total += total
        return status == BROADCAST

    async def _build(self, recipients: list[tuple[str, int]], selected: list[Coin], rate: int,
                     subtract: list[int]) -> BuiltTx | None:
        coins = list(selected)
        for _ in range(MORE_COINS_TRIES + 1):
            try:
                with self._deadline():
                    built = await payment_tx.build(self.wallet, recipients, coins, rate=rate,
                                                   decimals=self.decimals,
                                                   subtract_from=subtract)
            except InsufficientFunds as exc:
                spare = [c for c in await self._coins() if c not in coins]
                if not spare:
                    self.logger.warning("cannot pay %d recipient(s) now: %s", len(recipients),
                                        exc)
                    return None
                coins.append(spare[0])
                continue
            overlap = set(built.inputs) & await self._open_inputs()
            if overlap:  # the daemon restarted and forgot a lock since this run began
                with self._deadline():
                    await payment_tx.unlock(self.wallet, built.inputs)
                raise BuildError(f"the wallet chose coins an open batch spends ({overlap}); "
                                 "the next run locks them again first")
            return built
        self.logger.warning("cannot fund a payment of %d recipient(s) with %d coins",
                            len(recipients), len(coins))
        return None

    async def _record_intent(self, batch_id: str, built: BuiltTx) -> None:
        """The intent: batch, transaction, inputs, recipients, debits and the fee, in one
        database transaction, before anything is broadcast."""
        total = sum(paid for _, paid, _ in built.outputs)
        miners = self.fee_mode == "miners"
        async with self.engine.begin() as connection:
            await self.lock.fence(connection)
            debits = {address: paid + share for address, paid, share in built.outputs}
            held = await bookkeeping.balances_of(connection, list(debits))
            short = [(a, held[a], v) for a, v in debits.items() if held[a] < v]
            if short:  # cannot happen while the lock is held; refuse anyway
                raise RuntimeError(f"balances below the amounts to pay: {short[:3]}")
            await connection.execute(insert(payment_batches).values(
                id=batch_id, created=datetime.now(UTC), status=INTENT, total=total,
                txid=built.txid, raw_tx=built.hex, fee=built.fee, fee_mode=self.fee_mode,
                fee_account=None if miners else self.fee_account))
            await connection.execute(insert(payments), [
                {"batch_id": batch_id, "address": address, "amount": paid,
                 "fee": share if miners else 0}
                for address, paid, share in built.outputs])
            await connection.execute(insert(payment_inputs), [
                {"batch_id": batch_id, "txid": txid, "vout": vout}
                for txid, vout in built.inputs])
            await bookkeeping.post_many(
                connection, [(address, -paid) for address, paid, _ in built.outputs],
                kind=bookkeeping.PAYMENT, batch_id=batch_id)
            fee_rows = ([(address, -share) for address, _, share in built.outputs if share]
                        if miners else [(self.fee_account, -built.fee)])
            await bookkeeping.post_many(connection, fee_rows, kind=bookkeeping.TX_FEE,
                                        batch_id=batch_id, note=f"network fee of {built.txid}")



async def adopt_send(engine: AsyncEngine, wallet: PaymentWallet, txid: str, *, decimals: int,
                     fee_account: str = POOL_FEE) -> tuple[str, dict[str, int]]:
    """Book a wallet send this database does not know as a batch of its own (status
    ``broadcast``; runs follow it like any other): each output to an address that has an
    account here is debited what it received, and the fee is charged to ``fee_account``.
    For a database restored from a backup older than that payment. Return the batch id
    and what it debited."""
    info = await wallet.gettransaction(txid)
    decoded = await wallet.decoderawtransaction(info["hex"])
    fee = -to_units(info.get("fee", 0), decimals)
    async with engine.begin() as connection:
        accounts = set((await connection.execute(select(balances.c.address))).scalars())
        received: dict[str, int] = {}
        for output in decoded["vout"]:
            script = output.get("scriptPubKey") or {}
            for address in script.get("addresses") or [script.get("address")]:
                if address in accounts and address != POOL_FEE:
                    received[address] = received.get(address, 0) + to_units(output["value"],
                                                                             decimals)
        batch_id = str(uuid.uuid4())
        await connection.execute(insert(payment_batches).values(
            id=batch_id, created=datetime.now(UTC), status=BROADCAST,
            total=sum(received.values()), txid=txid, raw_tx=info["hex"], fee=fee,
            fee_mode="pool", fee_account=fee_account, error="adopted from the wallet"))
        if received:
            await connection.execute(insert(payments), [
                {"batch_id": batch_id, "address": a, "amount": v, "fee": 0}
                for a, v in received.items()])
            await bookkeeping.post_many(connection, [(a, -v) for a, v in received.items()],
                                        kind=bookkeeping.PAYMENT, batch_id=batch_id,
                                        note="adopted wallet send")
        await connection.execute(insert(payment_inputs), [
            {"batch_id": batch_id, "txid": str(i["txid"]), "vout": int(i["vout"])}
            for i in decoded["vin"]])
        if fee:
            await bookkeeping.post(connection, address=fee_account, amount=-fee,
                                   kind=bookkeeping.TX_FEE, batch_id=batch_id,
                                   note=f"network fee of adopted {txid}")
    await wallet_watch.mark(engine, txid, wallet_watch.ADOPTED, f"batch {batch_id}")
    return batch_id, received
