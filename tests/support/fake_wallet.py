"""An in-memory wallet with Bitcoin Core's answers for the calls payments make.

The real wallet (litecoind) is exercised in tests/functional; this fake lets the database
tests provoke what a real node makes hard to time: lost answers, a broadcast that takes
effect long after its call gave up, refusals, abandoned, conflicted and replaced
transactions, and a restart that forgets the wallet's locks. Amounts are Decimals on the
wire, as with ``parse_float=Decimal``; the fake keeps integer units inside.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from multipool.chain.rpc import DaemonError, DaemonUnavailable
from multipool.config import to_coins, to_units

DECIMALS = 8
P2WPKH = "0014" + "11" * 20


def _vsize(inputs: int, outputs: int) -> int:
    return 11 + 68 * inputs + 31 * outputs


@dataclass
class FakeTx:
    txid: str
    hex: str
    inputs: list[tuple[str, int]]
    outputs: list[tuple[str, int]]  # (address, units), in order
    fee: int
    ours: bool = True  # spends the wallet's coins
    state: str = "mempool"  # mempool | confirmed | out (evicted or never accepted)
    height: int | None = None
    abandoned: bool = False
    replaced_by: str | None = None


@dataclass
class Coin:
    value: int
    height: int | None  # None: unconfirmed
    mweb: bool = False


@dataclass
class FakeWallet:
    height: int = 200
    coins: dict[tuple[str, int], Coin] = field(default_factory=dict)
    txs: dict[str, FakeTx] = field(default_factory=dict)
    locked: set[tuple[str, int]] = field(default_factory=set)
    feerate: Decimal | None = None  # estimatesmartfee; None: no estimate (regtest)
    minfee: Decimal = Decimal("0.00001")
    calls: Counter[str] = field(default_factory=Counter)
    # Failure switches, each for the next sendrawtransaction.
    lose_next: str | None = None  # "before" or "after" it reached the node
    refuse_next: tuple[int, str] | None = None  # (code, message): refused, nothing sent
    refuse_always: tuple[int, str] | None = None
    late_next: bool = False  # the call gives up; the node takes the tx later
    late: list[str] = field(default_factory=list)
    on_broadcast: Any = None  # called (with the hex) at every sendrawtransaction
    too_large_above: int | None = None  # fundrawtransaction: "Transaction too large"
    changes: int = 0

    # --- set-up and the world outside the pool -----------------------------------------

    def fund(self, *values: Decimal | int, mweb: int = 0) -> None:
        """Give the wallet confirmed coins (coins: Decimal; int: units)."""
        for value in values:
            units = value if isinstance(value, int) else to_units(value, DECIMALS)
            txid = hashlib.sha256(f"coinbase{len(self.coins)}".encode()).hexdigest()
            self.coins[(txid, 0)] = Coin(units, self.height - 150)
        for i in range(mweb):
            self.coins[(f"mweb{i}", -1)] = Coin(10**10, self.height - 5, mweb=True)

    def mine(self, blocks: int = 1) -> None:
        for tx in self.txs.values():
            if tx.state == "mempool" and not tx.abandoned and not self._conflicted(tx):
                tx.state, tx.height = "confirmed", self.height + 1
                for index, (address, value) in enumerate(tx.outputs):
                    if address.startswith("change"):
                        self.coins[(tx.txid, index)] = Coin(value, self.height + 1)
        self.height += blocks

    def deliver_late(self) -> None:
        """The node finally runs the broadcasts whose calls gave up."""
        for hex_tx in self.late:
            self._accept(hex_tx)
        self.late.clear()

    def restart(self) -> None:
        """The daemon restarts: its locks are gone (0.21 keeps them in memory only)."""
        self.locked.clear()

    def evict(self, txid: str) -> None:
        self.txs[txid].state = "out"

    def abandon(self, txid: str) -> None:
        tx = self.txs[txid]
        assert tx.state != "confirmed"
        tx.state, tx.abandoned = "out", True

    def spend_elsewhere(self, txid: str) -> str:
        """Another transaction of the wallet spends the first input of ``txid`` (a send by
        hand racing it) and is mined now: ``txid`` is conflicted."""
        tx = self.txs[txid]
        outpoint = tx.inputs[0]
        if tx.state == "mempool":
            tx.state = "out"
        other = FakeTx(self._txid(f"conflict{txid}"), "", [outpoint], [("ltc1qelsewhere", 1)],
                       self.coins[outpoint].value - 1, state="confirmed", height=self.height + 1)
        self.txs[other.txid] = other
        self.height += 1
        return other.txid

    def bumpfee(self, txid: str, extra: int, *, change_to: str | None = None) -> str:
        """The operator bumps the fee: a replacement paying ``extra`` more from the change
        (or, with ``change_to``, moving one recipient's output there: another payment)."""
        old = self.txs[txid]
        outputs = list(old.outputs)
        change = next(i for i, (a, _) in enumerate(outputs) if a.startswith("change"))
        outputs[change] = (outputs[change][0], outputs[change][1] - extra)
        if change_to is not None:
            outputs[0] = (change_to, outputs[0][1])
        new = self._make(old.inputs, outputs, old.fee + extra)
        old.state, old.replaced_by = "out", new.txid
        new.state = "mempool"
        self.txs[new.txid] = new
        return new.txid

    def send_by_hand(self, address: str, amount: int) -> str:
        outpoint = next(o for o, c in self.coins.items()
                        if not c.mweb and c.value > amount + 10_000 and not self._spent(o))
        tx = self._make([outpoint], [(address, amount),
                                     (self._change(), self.coins[outpoint].value - amount - 1000)],
                        1000)
        tx.state = "mempool"
        self.txs[tx.txid] = tx
        return tx.txid

    # --- what tests read ----------------------------------------------------------------

    def live(self) -> list[FakeTx]:
        """Payments that are or may still be in the chain: mempool or confirmed, not
        conflicted."""
        return [tx for tx in self.txs.values() if tx.state in ("mempool", "confirmed")
                and not self._conflicted(tx)]

    def paid(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for tx in self.live():
            for address, value in tx.outputs:
                if not address.startswith("change") and address != "ltc1qelsewhere":
                    total[address] += value
        return total

    def times_paid(self) -> Counter[str]:
        return Counter(address for tx in self.live() for address, _ in tx.outputs
                       if not address.startswith("change") and address != "ltc1qelsewhere")

    # --- internals ------------------------------------------------------------------------

    def _txid(self, text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def _change(self) -> str:
        self.changes += 1
        return f"change{self.changes}"

    def _make(self, inputs: list[tuple[str, int]], outputs: list[tuple[str, int]],
              fee: int) -> FakeTx:
        body = json.dumps({"vin": inputs, "vout": outputs, "fee": fee, "signed": True})
        hex_tx = body.encode().hex()
        return FakeTx(self._txid(hex_tx), hex_tx, inputs, outputs, fee, state="out")

    def _spenders(self, outpoint: tuple[str, int]) -> list[FakeTx]:
        return [tx for tx in self.txs.values() if outpoint in tx.inputs
                and (tx.state in ("mempool", "confirmed")) and not tx.abandoned]

    def _spent(self, outpoint: tuple[str, int]) -> bool:
        return bool(self._spenders(outpoint))

    def _conflict_depth(self, tx: FakeTx) -> int:
        """Depth of the deepest confirmed transaction spending one of tx's inputs."""
        depth = 0
        for outpoint in tx.inputs:
            for other in self._spenders(outpoint):
                if other.txid != tx.txid and other.state == "confirmed":
                    assert other.height is not None
                    depth = max(depth, self.height - other.height + 1)
        return depth

    def _conflicted(self, tx: FakeTx) -> bool:
        return tx.state != "confirmed" and self._conflict_depth(tx) > 0

    def _decode_hex(self, hex_tx: str) -> dict[str, Any]:
        try:
            return json.loads(bytes.fromhex(hex_tx))
        except ValueError:
            raise DaemonError("TX decode failed", code=-22) from None

    def _accept(self, hex_tx: str) -> str:
        body = self._decode_hex(hex_tx)
        if not body.get("signed"):
            raise DaemonError("non-mandatory-script-verify-flag", code=-26)
        inputs = [tuple(i) for i in body["vin"]]
        tx = FakeTx(self._txid(hex_tx), hex_tx, inputs,
                    [tuple(o) for o in body["vout"]], body["fee"], state="out")
        known = self.txs.get(tx.txid)
        if known is not None and known.state == "confirmed":
            raise DaemonError("Transaction already in block chain", code=-27)
        if known is not None and known.state == "mempool":
            return tx.txid
        for outpoint in inputs:
            if outpoint not in self.coins and not any(
                    o.state == "confirmed" for o in self.txs.values() if o.txid == outpoint[0]):
                raise DaemonError("bad-txns-inputs-missingorspent", code=-25)
            if any(other.txid != tx.txid for other in self._spenders(outpoint)):
                raise DaemonError("txn-mempool-conflict", code=-26)
        if known is not None:
            known.state, known.abandoned = "mempool", False
        else:
            tx.state = "mempool"
            self.txs[tx.txid] = tx
        return tx.txid

    # --- the RPCs ---------------------------------------------------------------------------

    async def listunspent(self, minconf: int = 1) -> list[dict[str, Any]]:
        self.calls["listunspent"] += 1
        found = []
        for (txid, vout), coin in self.coins.items():
            if (txid, vout) in self.locked or self._spent((txid, vout)):
                continue
            depth = 0 if coin.height is None else self.height - coin.height + 1
            if depth < minconf:
                continue
            if coin.mweb:  # litecoind lists MWEB coins without vout and scriptPubKey
                found.append({"txid": txid, "amount": to_coins(coin.value, DECIMALS),
                              "confirmations": depth, "spendable": True,
                              "address": "tmweb1qq" + txid})
                continue
            found.append({"txid": txid, "vout": vout, "amount": to_coins(coin.value, DECIMALS),
                          "confirmations": depth, "spendable": True, "safe": True,
                          "scriptPubKey": P2WPKH})
        return found

    async def createrawtransaction(self, inputs: list[dict[str, Any]],
                                   outputs: list[dict[str, Decimal]], *,
                                   replaceable: bool = True) -> str:
        self.calls["createrawtransaction"] += 1
        assert replaceable
        for output in outputs:
            for value in output.values():
                assert isinstance(value, Decimal) and value.as_tuple().exponent >= -DECIMALS
        body = {"vin": [(i["txid"], i["vout"]) for i in inputs],
                "vout": [(a, to_units(v, DECIMALS)) for o in outputs for a, v in o.items()]}
        return json.dumps(body).encode().hex()

    async def fundrawtransaction(self, hex_tx: str, options: dict[str, Any]) -> dict[str, Any]:
        self.calls["fundrawtransaction"] += 1
        assert options["add_inputs"] is False and options["lockUnspents"] is True
        body = self._decode_hex(hex_tx)
        inputs = [tuple(i) for i in body["vin"]]
        for outpoint in inputs:
            coin = self.coins.get(outpoint)
            if coin is None or coin.mweb:
                raise DaemonError("Invalid parameter, unknown input", code=-8)
        held = sum(self.coins[o].value for o in inputs)
        outputs = [list(o) for o in body["vout"]]
        if self.too_large_above is not None and len(outputs) > self.too_large_above:
            raise DaemonError("Transaction too large", code=-4)
        rate = to_units(options["feeRate"], DECIMALS)
        fee = -(-_vsize(len(inputs), len(outputs) + 1) * rate // 1000)
        subtract = options.get("subtractFeeFromOutputs", [])
        asked = sum(v for _, v in outputs)
        if subtract:
            share, rest = divmod(fee, len(subtract))
            for n, index in enumerate(subtract):
                outputs[index][1] -= share + (rest if n == 0 else 0)
        change = held - asked - (0 if subtract else fee)
        if change < 0:
            raise DaemonError("Insufficient funds", code=-4)
        if change > 546:
            assert options["changePosition"] == len(outputs)
            outputs.append([self._change(), change])
        else:
            fee += change
        self.locked.update(inputs)
        funded = {"vin": inputs, "vout": outputs, "fee": fee}
        return {"hex": json.dumps(funded).encode().hex(), "fee": to_coins(fee, DECIMALS),
                "changepos": len(outputs) - 1 if change > 546 else -1}

    async def signrawtransactionwithwallet(self, hex_tx: str) -> dict[str, Any]:
        self.calls["signrawtransactionwithwallet"] += 1
        body = self._decode_hex(hex_tx)
        if "fee" not in body:  # a void: the fee is what the inputs leave
            held = sum(self.coins[tuple(o)].value for o in body["vin"])
            body["fee"] = held - sum(v for _, v in body["vout"])
        body["signed"] = True
        return {"hex": json.dumps(body).encode().hex(), "complete": True}

    async def decoderawtransaction(self, hex_tx: str) -> dict[str, Any]:
        body = self._decode_hex(hex_tx)
        return {"txid": self._txid(hex_tx), "vsize": _vsize(len(body["vin"]), len(body["vout"])),
                "vin": [{"txid": t, "vout": v} for t, v in body["vin"]],
                "vout": [{"value": to_coins(v, DECIMALS), "n": n,
                          "scriptPubKey": {"addresses": [a]}}
                         for n, (a, v) in enumerate(body["vout"])]}

    async def sendrawtransaction(self, hex_tx: str) -> str:
        self.calls["sendrawtransaction"] += 1
        if self.on_broadcast is not None:
            await self.on_broadcast(hex_tx)
        if self.lose_next == "before":
            self.lose_next = None
            raise DaemonUnavailable("cannot connect", method="sendrawtransaction")
        if self.late_next:
            self.late_next = False
            self.late.append(hex_tx)
            raise DaemonUnavailable("no answer before the deadline", method="sendrawtransaction")
        refusal, self.refuse_next = self.refuse_next or self.refuse_always, None
        if refusal is not None:
            raise DaemonError(refusal[1], code=refusal[0], method="sendrawtransaction")
        txid = self._accept(hex_tx)
        if self.lose_next == "after":
            self.lose_next = None
            raise DaemonUnavailable("connection lost", method="sendrawtransaction")
        return txid

    async def lockunspent(self, unlock: bool, outputs: list[dict[str, Any]]) -> bool:
        self.calls["lockunspent"] += 1
        for output in outputs:
            outpoint = (output["txid"], output["vout"])
            if unlock:
                if outpoint not in self.locked:
                    raise DaemonError("Invalid parameter, expected locked output", code=-8)
                self.locked.discard(outpoint)
            else:
                if outpoint not in self.coins or self._spent(outpoint):
                    raise DaemonError("Invalid parameter, expected unspent output", code=-8)
                if outpoint in self.locked:
                    raise DaemonError("Invalid parameter, output already locked", code=-8)
                self.locked.add(outpoint)
        return True

    async def listlockunspent(self) -> list[dict[str, Any]]:
        return [{"txid": t, "vout": v} for t, v in sorted(self.locked)]

    async def gettransaction(self, txid: str) -> dict[str, Any]:
        self.calls["gettransaction"] += 1
        tx = self.txs.get(txid)
        if tx is None or not tx.ours:
            raise DaemonError("Invalid or non-wallet transaction id", code=-5)
        if tx.state == "confirmed":
            assert tx.height is not None
            depth = self.height - tx.height + 1
        else:
            depth = -self._conflict_depth(tx)
        answer: dict[str, Any] = {
            "txid": txid, "confirmations": depth, "fee": -to_coins(tx.fee, DECIMALS),
            "hex": tx.hex, "walletconflicts": [],
            "details": [{"address": a, "category": "send", "amount": -to_coins(v, DECIMALS),
                         "abandoned": tx.abandoned}
                        for a, v in tx.outputs if not a.startswith("change")]}
        if tx.replaced_by:
            answer["replaced_by_txid"] = tx.replaced_by
        return answer

    async def getmempoolentry(self, txid: str) -> dict[str, Any]:
        tx = self.txs.get(txid)
        if tx is None or tx.state != "mempool" or tx.abandoned:
            raise DaemonError("Transaction not in mempool", code=-5)
        return {"fees": {"base": to_coins(tx.fee, DECIMALS)}}

    async def gettxout(self, txid: str, vout: int, include_mempool: bool = True) -> Any:
        coin = self.coins.get((txid, vout))
        if coin is None or self._spent((txid, vout)):
            return None
        return {"value": to_coins(coin.value, DECIMALS), "scriptPubKey": {"hex": P2WPKH}}

    async def estimatesmartfee(self, conf_target: int) -> dict[str, Any]:
        if self.feerate is None:
            return {"errors": ["Insufficient data or no feerate found"], "blocks": 2}
        return {"feerate": self.feerate, "blocks": conf_target}

    async def getmempoolinfo(self) -> dict[str, Any]:
        return {"mempoolminfee": self.minfee, "minrelaytxfee": self.minfee}

    async def getrawchangeaddress(self) -> str:
        return self._change()

    async def listsinceblock(self, block_hash: str | None = None) -> dict[str, Any]:
        self.calls["listsinceblock"] += 1
        since = -1
        if block_hash is not None:
            if not block_hash.startswith("block"):
                raise DaemonError("Block not found", code=-5)
            since = int(block_hash[5:])
        entries = []
        for tx in self.txs.values():
            if not tx.ours or tx.hex == "":
                continue
            if tx.state == "confirmed" and tx.height is not None and tx.height <= since:
                continue
            for address, value in tx.outputs:
                if not address.startswith("change"):
                    entries.append({"txid": tx.txid, "category": "send", "address": address,
                                    "amount": -to_coins(value, DECIMALS)})
        return {"transactions": entries, "lastblock": f"block{self.height}"}
