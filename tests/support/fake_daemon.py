"""A scripted stand-in for the coin daemon's template side, for stratum tests that need
full control of the chain tip (the functional tests use the real litecoind)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

from multipool.chain.merkle import merkle_root


def fake_txid() -> str:
    return hashlib.sha256(os.urandom(32)).hexdigest()


class FakeTemplateDaemon:
    """Hands out templates for a tip it controls; long polls wait for :meth:`new_block`.

    ``bits`` 0x207fffff is regtest's: about every other hash solves a block.
    """

    def __init__(self, *, bits: str = "207fffff", height: int = 200, txs: int = 3):
        self.bits = bits
        self.height = height
        self.prev = fake_txid()
        self.txs = [{"data": os.urandom(60).hex(), "txid": fake_txid()} for _ in range(txs)]
        self.longpoll_calls = 0
        self.template_calls = 0
        self.submitted: list[tuple[bytes, str]] = []
        self.submit_result: str | None = None
        self._tip_changed = asyncio.Event()

    def template(self) -> dict[str, Any]:
        now = int(time.time())
        target = int(self.bits[2:], 16) << (8 * (int(self.bits[:2], 16) - 3))
        return {
            "version": 0x20000000,
            "previousblockhash": self.prev,
            "transactions": list(self.txs),
            "coinbasevalue": 5_000_000_000,
            "bits": self.bits,
            "target": f"{target:064x}",
            "curtime": now,
            "mintime": now - 600,
            "height": self.height,
            "default_witness_commitment": "6a24aa21a9ed" + os.urandom(32).hex(),
            "longpollid": f"{self.prev}{self.height}",
        }

    async def getblocktemplate(self, rules: list[str], longpollid: str | None = None) -> Any:
        self.template_calls += 1
        if longpollid is not None:
            self.longpoll_calls += 1
            self._tip_changed.clear()
            await self._tip_changed.wait()
        return self.template()

    async def getbestblockhash(self) -> str:
        return self.prev

    def new_block(self, *, wake_longpoll: bool = True) -> None:
        """Move the tip on: the current jobs become stale. With ``wake_longpoll`` False
        the long polls keep waiting, as with a daemon whose long poll is broken, so only
        another signal (ZMQ, polling) can notice the block."""
        self.prev = fake_txid()
        self.height += 1
        if wake_longpoll:
            self._tip_changed.set()

    async def submit_block(self, block: bytes, hash_hex: str) -> str | None:
        self.submitted.append((block, hash_hex))
        return self.submit_result

    def expected_merkle_root(self, coinbase_txid_le: bytes) -> bytes:
        """The merkle root computed the plain way, independent of the stratum branch."""
        return merkle_root([coinbase_txid_le, *(bytes.fromhex(t["txid"])[::-1]
                                                for t in self.txs)])
