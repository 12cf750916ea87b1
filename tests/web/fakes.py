"""A hand-written stand-in for the pools' database readers, for the page and API unit
tests only (rendering, escaping, paging, errors, CORS, rate limits, routing).

The figures it returns are canned, not computed: the tests that check figures against
the shares table use the real reader on a real database (tests/web/test_web_database.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from multipool.chain.address import encode_segwit_address
from multipool.web.data import (
    BlockRow,
    HashratePoint,
    MinerFigures,
    MinerPage,
    MinerPayment,
    MinerRow,
    Paged,
    PaymentRow,
    PoolFigures,
    PoolReader,
    PoolReaders,
    WorkerRow,
)
from multipool.web.status import PoolStatus

T = TypeVar("T")



def now() -> datetime:
    """The time the rows are made: at each fixture's start, not at import, so ages on
    the page ("30 s ago") do not grow with the tests that ran before."""
    return datetime.now(UTC).replace(microsecond=0)

# Valid litecoin regtest addresses (bech32 P2WPKH of made-up key hashes).
ALICE = encode_segwit_address("rltc", 0, bytes(range(20)))
BOB = encode_segwit_address("rltc", 0, bytes(range(1, 21)))
CAROL = encode_segwit_address("rltc", 0, bytes(range(2, 22)))  # valid, never mined
EVIL_WORKER = '<img src=x onerror=alert(1)>"\'&'


def page_of(rows: list[T], page: int, per_page: int) -> Paged[T]:
    start = (page - 1) * per_page
    return Paged(tuple(rows[start:start + per_page]), page, per_page, len(rows))


def block(height: int, status: str, *, confirmations: int | None, age: int,
          finder: str = ALICE, worker: str = "rig1", effort: float | None = 0.87) -> BlockRow:
    return BlockRow(height=height, hash=f"{height:064x}", time=now() - timedelta(seconds=age),
                    status=status, confirmations=confirmations, maturity=101,
                    reward=625_000_000, effort=effort, finder=finder, worker=worker)


def series(peak: float) -> tuple[HashratePoint, ...]:
    at = now()
    start = at.replace(minute=at.minute - at.minute % 10, second=0) - timedelta(hours=24)
    return tuple(HashratePoint(start + timedelta(minutes=10 * i),
                               peak * (i % 12) / 11) for i in range(144))


@dataclass
class FakeReader(PoolReader):
    """Stands in for the database reader (multipool.web.data.PoolReader) in unit tests
    only. ``fail`` makes every query raise as a database that went away does."""

    blocks_list: list[BlockRow] = field(default_factory=list)
    payments_list: list[PaymentRow] = field(default_factory=list)
    miners_list: list[MinerRow] = field(default_factory=list)
    miner_figures: dict[str, MinerFigures] = field(default_factory=dict)
    miner_payments_list: dict[str, list[MinerPayment]] = field(default_factory=dict)
    figures: PoolFigures | None = None
    fail: bool = False
    calls: list[tuple[object, ...]] = field(default_factory=list)
    closed: bool = False

    def _check(self, *call: object) -> None:
        self.calls.append(call)
        if self.fail:
            raise OSError("connection refused")

    async def pool(self) -> PoolFigures:
        self._check("pool")
        assert self.figures is not None
        return self.figures

    async def hashrate_series(self, address: str | None = None, *, hours: int = 24,
                              bucket_minutes: int = 10) -> tuple[HashratePoint, ...]:
        self._check("hashrate_series", address, hours, bucket_minutes)
        return series(2e6 if address is None else 5e5)

    async def blocks(self, page: int = 1, per_page: int = 20) -> Paged[BlockRow]:
        self._check("blocks", page, per_page)
        return page_of(self.blocks_list, page, per_page)

    async def payments(self, page: int = 1, per_page: int = 20) -> Paged[PaymentRow]:
        self._check("payments", page, per_page)
        return page_of(self.payments_list, page, per_page)

    async def miners(self, page: int = 1, per_page: int = 20, *,
                     window: int = 3600) -> Paged[MinerRow]:
        self._check("miners", page, per_page, window)
        return page_of(self.miners_list, page, per_page)

    async def miner(self, address: str) -> MinerFigures:
        self._check("miner", address)
        return self.miner_figures.get(address) or MinerFigures(
            address=address, has_history=False, hashrate={w: 0.0 for w in (600, 3600, 86400)},
            immature=0, unpaid=0, paid=0, workers=(), rejects_24h={}, round_share=None,
            round_difficulty=0.0)

    async def miner_payments(self, address: str, page: int = 1,
                             per_page: int = 20) -> Paged[MinerPayment]:
        self._check("miner_payments", address, page, per_page)
        return page_of(self.miner_payments_list.get(address, []), page, per_page)

    async def miner_page(self, address: str, *, hours: int = 24, bucket_minutes: int = 10,
                         per_page: int = 20) -> MinerPage:
        return MinerPage(await self.miner(address),
                         await self.hashrate_series(address, hours=hours,
                                                    bucket_minutes=bucket_minutes),
                         await self.miner_payments(address, 1, per_page))

    async def workers(self, address: str) -> tuple[WorkerRow, ...]:
        self._check("workers", address)
        figures = self.miner_figures.get(address)
        return figures.workers if figures else ()

    async def close(self) -> None:
        self.closed = True


class FakeReaders(PoolReaders):
    """Stands in for multipool.web.data.PoolReaders in unit tests only: a fixed reader
    per prefix (a prefix left out has no readable database)."""

    def __init__(self, readers: dict[str, FakeReader]):
        super().__init__(Path("/nonexistent"))
        self.readers = readers
        self.closed = False

    async def get(self, prefix: str, status: PoolStatus | None = None) -> PoolReader | None:
        return self.readers.get(prefix)

    async def close(self) -> None:
        self.closed = True


def sample_reader() -> FakeReader:
    """A pool with blocks in every state, payments, two miners and their workers."""
    blocks = [block(1300, "pending", confirmations=42, age=300),
              block(1290, "confirmed", confirmations=150, age=4000, finder=BOB,
                    worker=EVIL_WORKER, effort=1.5),
              block(1280, "orphaned", confirmations=None, age=8000, effort=None)]
    blocks += [block(1000 - i, "confirmed", confirmations=400, age=9000 + i * 600)
               for i in range(40)]
    payments = [PaymentRow(batch_id=str(100 - i), time=now() - timedelta(hours=i),
                           txid=f"{i:064x}" if i else None,
                           status="broadcast" if i == 1 else "confirmed",
                           amount=1_234_500_000, fee=2250, recipients=3) for i in range(25)]
    miners = [MinerRow(ALICE, 1_500_000.0, 2, 600, 3, 3600),
              MinerRow(BOB, 500_000.0, 1, 200, 0, 3600)]
    alice = MinerFigures(
        address=ALICE, has_history=True, hashrate={600: 1_500_000.0, 3600: 1_400_000.0,
                                                   86400: 1_000_000.0},
        immature=312_500_000, unpaid=5_000_000, paid=410_000_000,
        workers=(WorkerRow("rig1", 1_000_000.0, 4000, 10, now() - timedelta(seconds=30), True),
                 WorkerRow(EVIL_WORKER, 0.0, 500, 2, now() - timedelta(minutes=45), False)),
        rejects_24h={"stale": 9, "low difficulty": 3, "<b>dup</b>": 1},
        round_share=0.4, round_difficulty=5120.0)
    return FakeReader(
        blocks_list=blocks, payments_list=payments, miners_list=miners,
        miner_figures={ALICE: alice},
        miner_payments_list={ALICE: [MinerPayment("100", now() - timedelta(hours=1), "ab" * 32,
                                                  "confirmed", 410_000_000)]},
        figures=PoolFigures(hashrate={600: 2_000_000.0, 3600: 1_900_000.0,
                                      86400: 1_500_000.0},
                            miners=2, workers=3, blocks_24h=3, last_block=blocks[0],
                            round_effort=0.25, accepted_24h=16200,
                            rejects_24h={"stale": 30}))
