"""Building a payment transaction in the wallet without broadcasting it.

The inputs are chosen here, not by the wallet: only confirmed, unlocked, non-MWEB coins
(litecoind 0.21's ``fundrawtransaction`` left to itself may select MWEB coins and then
returns a transaction without inputs that cannot be signed or relayed; and a coin that is
the unconfirmed change of an earlier payment would make this payment depend on that one).
``fundrawtransaction`` with ``add_inputs: false`` then only adds the change output (last)
and computes the fee at the fee rate given; ``signrawtransactionwithwallet`` signs it;
``decoderawtransaction`` gives the txid. The result is checked against what was asked
before anyone may record it: exactly the chosen inputs, the recipients' outputs first and
in order, each paying its amount (less its share of the fee when the miners pay it).

Sizes are in virtual bytes; fee rates in the smallest unit per 1000 virtual bytes.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from multipool.chain.rpc import DaemonError
from multipool.config import to_coins, to_units
from multipool.errors import PoolError

# Bitcoin Core's RPC_WALLET_ERROR, which fundrawtransaction answers for "Insufficient funds".
RPC_WALLET_ERROR = -4
# The fee estimate's target, in blocks.
CONF_TARGET = 6
# Virtual sizes: version, counts, locktime and the segwit marker; one output paying a
# 34-byte script (P2WSH/P2TR, the longest common ones: a conservative bound for any payout
# address); one input by the script of the coin it spends.
TX_OVERHEAD = 11
OUTPUT_SIZE = 8 + 1 + 34
INPUT_SIZE_BY_PREFIX = (("0014", 68), ("a914", 91), ("5120", 58))
INPUT_SIZE_DEFAULT = 148  # P2PKH and anything unknown: the largest common one
# More coins than this in one transaction means the wallet is full of dust: refuse.
MAX_INPUTS = 500


class BuildError(PoolError):
    """The wallet could not build the transaction asked for (or built another one)."""


class InsufficientFunds(BuildError):
    """The chosen coins do not cover the payments and the fee."""


class TooLarge(BuildError):
    """More outputs and inputs than one standard transaction may hold."""


class BuilderWallet(Protocol):
    async def listunspent(self, minconf: int = 1) -> list[dict[str, Any]]: ...

    async def createrawtransaction(self, inputs: list[dict[str, Any]],
                                   outputs: list[dict[str, Decimal]], *,
                                   replaceable: bool = True) -> str: ...

    async def fundrawtransaction(self, hex_tx: str,
                                 options: dict[str, Any]) -> dict[str, Any]: ...

    async def signrawtransactionwithwallet(self, hex_tx: str) -> dict[str, Any]: ...

    async def decoderawtransaction(self, hex_tx: str) -> dict[str, Any]: ...

    async def lockunspent(self, unlock: bool, outputs: list[dict[str, Any]]) -> bool: ...

    async def estimatesmartfee(self, conf_target: int) -> dict[str, Any]: ...

    async def getmempoolinfo(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Coin:
    txid: str
    vout: int
    value: int  # smallest unit
    size: int  # virtual bytes as an input

    @property
    def outpoint(self) -> tuple[str, int]:
        return self.txid, self.vout


@dataclass(frozen=True, slots=True)
class BuiltTx:
    txid: str
    hex: str
    fee: int
    inputs: tuple[tuple[str, int], ...]
    # Per recipient, in the order asked: (address, amount the output pays, fee share).
    outputs: tuple[tuple[str, int, int], ...]


def input_size(script_hex: str) -> int:
    """Given a coin's scriptPubKey, return its virtual size as an input.

    >>> input_size("0014" + "00" * 20), input_size("76a914" + "00" * 20 + "88ac")
    (68, 148)
    """
    for prefix, size in INPUT_SIZE_BY_PREFIX:
        if script_hex.startswith(prefix):
            return size
    return INPUT_SIZE_DEFAULT


def estimated_size(inputs: Sequence[Coin], outputs: int) -> int:
    """Given the inputs and the number of outputs (change included), return a virtual
    size at least that of the signed transaction."""
    return TX_OVERHEAD + sum(coin.size for coin in inputs) + OUTPUT_SIZE * outputs


def fee_for(size: int, rate: int) -> int:
    """Given a virtual size and a rate per 1000 vbytes, return the fee, rounded up."""
    return -(-size * rate // 1000)


def spendable_coins(unspent: Sequence[dict[str, Any]], decimals: int,
                    exclude: Set[tuple[str, int]] = frozenset()) -> list[Coin]:
    """Given listunspent's answer, return the coins a payment may spend, largest first:
    confirmed, spendable, safe, not MWEB (those come without vout and scriptPubKey), not
    among ``exclude`` (the inputs of open batches)."""
    coins = []
    for entry in unspent:
        if "vout" not in entry or "scriptPubKey" not in entry or entry.get("ismweb"):
            continue
        if not entry.get("spendable", False) or not entry.get("safe", True):
            continue
        if int(entry.get("confirmations", 0)) < 1:
            continue
        coin = Coin(str(entry["txid"]), int(entry["vout"]),
                    to_units(entry["amount"], decimals), input_size(str(entry["scriptPubKey"])))
        if coin.outpoint not in exclude:
            coins.append(coin)
    coins.sort(key=lambda c: (-c.value, c.txid, c.vout))
    return coins


def select_coins(coins: Sequence[Coin], amount: int, outputs: int, rate: int,
                 fee_on_top: bool) -> list[Coin] | None:
    """Given coins largest first, the total to pay, the number of payment outputs and a
    fee rate, return the fewest largest coins that cover the payments (and, with
    ``fee_on_top``, the fee of a transaction with change), or None when all do not."""
    chosen: list[Coin] = []
    held = 0
    size = TX_OVERHEAD + OUTPUT_SIZE * (outputs + 1)
    for coin in coins:
        chosen.append(coin)
        held += coin.value
        size += coin.size
        if held >= amount + (fee_for(size, rate) if fee_on_top else 0):
            return chosen
        if len(chosen) >= MAX_INPUTS:
            break
    return None


async def fee_rate(wallet: BuilderWallet, decimals: int) -> int:
    """The rate payments pay, per 1000 vbytes: the node's estimate for CONF_TARGET blocks,
    never below what its mempool accepts now; without an estimate (a fresh node, regtest)
    the mempool's minimum."""
    info = await wallet.getmempoolinfo()
    floor = max(to_units(info.get("mempoolminfee", 0), decimals),
                to_units(info.get("minrelaytxfee", 0), decimals), 1)
    estimate = await wallet.estimatesmartfee(CONF_TARGET)
    rate = estimate.get("feerate")
    return max(floor, to_units(rate, decimals)) if rate is not None else floor


def _destination(output: dict[str, Any]) -> str | None:
    script = output.get("scriptPubKey") or {}
    if "address" in script:
        return str(script["address"])
    addresses = script.get("addresses") or []
    return str(addresses[0]) if len(addresses) == 1 else None


async def build(wallet: BuilderWallet, recipients: Sequence[tuple[str, int]],
                coins: Sequence[Coin], *, rate: int, decimals: int,
                subtract_from: Sequence[int] = ()) -> BuiltTx:
    """Given recipients (address, amount) and the coins to spend (``coins`` first, more
    from the rest of them if the fee needs it), return the signed transaction; the
    coins it spends are locked in the wallet. ``subtract_from``: indexes of the outputs
    that bear the fee (shared equally, as the wallet does); none: the fee comes on top."""
    inputs = list(coins)
    if not inputs:
        raise InsufficientFunds("no confirmed coin to spend")
    outputs = [{address: to_coins(amount, decimals)} for address, amount in recipients]
    options: dict[str, Any] = {
        "add_inputs": False, "lockUnspents": True, "changePosition": len(recipients),
        "feeRate": to_coins(rate, decimals), "replaceable": True}
    if subtract_from:
        options["subtractFeeFromOutputs"] = list(subtract_from)
    raw = await wallet.createrawtransaction(
        [{"txid": c.txid, "vout": c.vout} for c in inputs], outputs)
    try:
        funded = await wallet.fundrawtransaction(raw, options)
    except DaemonError as exc:
        if exc.code == RPC_WALLET_ERROR and "insufficient" in exc.message.lower():
            raise InsufficientFunds(f"{len(inputs)} coin(s) do not cover the payments and "
                                    f"the fee: {exc.message}") from exc
        if exc.code == RPC_WALLET_ERROR and "too large" in exc.message.lower():
            raise TooLarge(f"{len(recipients)} recipients: {exc.message}") from exc
        raise BuildError(f"the wallet refused to fund the payment: {exc}") from exc
    try:
        signed = await wallet.signrawtransactionwithwallet(str(funded["hex"]))
        if not signed.get("complete"):
            raise BuildError(f"the wallet could not sign the payment: {signed.get('errors')}")
        decoded = await wallet.decoderawtransaction(str(signed["hex"]))
        return _checked(decoded, str(signed["hex"]), recipients, inputs,
                        to_units(funded["fee"], decimals), decimals, subtract_from)
    except (DaemonError, BuildError, KeyError, TypeError, ValueError):
        await unlock(wallet, [c.outpoint for c in inputs])
        raise


def _checked(decoded: dict[str, Any], hex_tx: str, recipients: Sequence[tuple[str, int]],
             inputs: Sequence[Coin], fee: int, decimals: int,
             subtract_from: Sequence[int]) -> BuiltTx:
    """The built transaction, after checking it is the one asked for."""
    spent = [(str(i.get("txid")), int(i.get("vout", -1))) for i in decoded["vin"]]
    if sorted(spent) != sorted(c.outpoint for c in inputs):
        raise BuildError(f"the wallet built a transaction spending {spent}, not the coins "
                         "chosen")
    if any(part.get("ismweb") for part in [*decoded["vin"], *decoded["vout"]]) or \
            decoded.get("mweb_tx") or decoded.get("mweb"):
        raise BuildError("the wallet built an MWEB transaction, which a payment never is")
    vout = decoded["vout"]
    if len(vout) not in (len(recipients), len(recipients) + 1):
        raise BuildError(f"the transaction has {len(vout)} outputs for {len(recipients)} "
                         "recipients")
    out_total = sum(to_units(o["value"], decimals) for o in vout)
    if sum(c.value for c in inputs) - out_total != fee or fee <= 0:
        raise BuildError(f"the transaction's fee is not the {fee} units the wallet reported")
    paid = []
    for index, (address, amount) in enumerate(recipients):
        value = to_units(vout[index]["value"], decimals)
        if _destination(vout[index]) != address:
            raise BuildError(f"output {index} does not pay {address}")
        share = amount - value
        if share < 0 or (share > 0 and index not in subtract_from):
            raise BuildError(f"output {index} pays {value}, not {amount}, to {address}")
        paid.append((address, value, share))
    if subtract_from and sum(share for _, _, share in paid) != fee:
        raise BuildError("the recipients' shares of the fee do not add up to the fee")
    return BuiltTx(str(decoded["txid"]), hex_tx, fee, tuple(c.outpoint for c in inputs),
                   tuple(paid))


async def unlock(wallet: BuilderWallet, outpoints: Sequence[tuple[str, int]]) -> None:
    """Release wallet locks one by one; one that is gone already (-8) is fine."""
    for txid, vout in outpoints:
        try:
            await wallet.lockunspent(True, [{"txid": txid, "vout": vout}])
        except DaemonError as exc:
            if exc.code != -8:
                raise
