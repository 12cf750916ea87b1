"""What the pages and the API show of one pool, read from its database, read-only.

The web process opens each coin's database read-only: on SQLite the file itself
(``mode=ro``, the web user in the database files' group), on PostgreSQL and MariaDB as
the read-only role ``multipool_web``. Where the database is comes from the engine's
``status.json`` (``database``: backend, path or host/port/name, never a credential).

Every figure states its window. Money is in the coin's smallest unit (int). Times are
tz-aware UTC datetimes. Answers are cached for a few seconds per query and arguments, so
many clients loading one page cost one query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")

# The windows the pages show hashrate over, in seconds: 10 minutes, 1 hour, 24 hours.
WINDOWS = (600, 3600, 86400)
# The most rows one page of a list may hold (?per_page= above it is refused).
MAX_PER_PAGE = 100


@dataclass(frozen=True, slots=True)
class Paged(Generic[T]):
    """One page of a list: ``page`` counts from 1; ``total`` rows in the whole list."""

    items: tuple[T, ...]
    page: int
    per_page: int
    total: int


@dataclass(frozen=True, slots=True)
class HashratePoint:
    """The average hashrate (hashes per second) of the bucket starting at ``time``."""

    time: datetime
    hashrate: float


@dataclass(frozen=True, slots=True)
class BlockRow:
    height: int
    hash: str
    time: datetime
    status: str  # candidate | pending | confirmed | orphaned
    confirmations: int | None  # from the daemon's tip in status.json; None if unknown
    maturity: int  # confirmations a pending block needs to be confirmed
    reward: int  # smallest unit
    effort: float | None  # round difficulty / network difficulty (1.0 = 100 %)
    finder: str  # address; "" when found outside any share (chain scan)
    worker: str


@dataclass(frozen=True, slots=True)
class PaymentRow:
    """One payment batch (one transaction) of the pool."""

    batch_id: str
    time: datetime
    txid: str | None
    status: str  # the batch's state: intent | broadcast | confirmed | voiding | failed
    amount: int  # paid to miners, smallest unit
    fee: int  # network fee, smallest unit
    recipients: int


@dataclass(frozen=True, slots=True)
class MinerPayment:
    """What one payment batch paid one miner."""

    batch_id: str
    time: datetime
    txid: str | None
    status: str
    amount: int


@dataclass(frozen=True, slots=True)
class MinerRow:
    """A miner in a list of miners, over ``window`` seconds."""

    address: str
    hashrate: float
    workers: int
    accepted: int
    rejected: int
    window: int


@dataclass(frozen=True, slots=True)
class WorkerRow:
    name: str
    hashrate: float  # over the last 600 s
    accepted: int  # shares in the last 24 h
    rejected: int
    last_share: datetime | None
    online: bool  # a share in the last ``offline_after`` minutes


@dataclass(frozen=True, slots=True)
class PoolFigures:
    hashrate: dict[int, float]  # window seconds (WINDOWS) -> hashes per second
    miners: int  # addresses with a share in the last 600 s
    workers: int  # address + worker pairs with a share in the last 600 s
    blocks_24h: int  # blocks found in 24 h, orphans and candidates left out
    last_block: BlockRow | None
    round_effort: float | None  # shares since the last block / network difficulty
    accepted_24h: int
    rejects_24h: dict[str, int]  # reason (words, e.g. "stale") -> count


@dataclass(frozen=True, slots=True)
class MinerFigures:
    address: str
    has_history: bool  # False: a valid address the pool has never seen
    hashrate: dict[int, float]  # window seconds (WINDOWS) -> hashes per second
    immature: int  # credits of blocks not yet confirmed, smallest unit
    unpaid: int  # balance owed, smallest unit
    paid: int  # sent in payments (broadcast or confirmed), smallest unit
    workers: tuple[WorkerRow, ...]
    rejects_24h: dict[str, int]  # reason -> count
    round_share: float | None  # this miner's fraction (0..1) of the current round
    round_difficulty: float  # this miner's accepted difficulty in the current round


class PoolReader:
    """One pool's database, read-only, with a short cache per query and arguments.

    Construction and the query bodies belong to the data layer; this is the interface
    the pages, the API and the metrics use."""

    async def pool(self) -> PoolFigures:
        raise NotImplementedError

    async def hashrate_series(self, address: str | None = None, *, hours: int = 24,
                              bucket_minutes: int = 10) -> tuple[HashratePoint, ...]:
        """The pool's (or one miner's) hashrate per bucket over the last ``hours``,
        oldest first, every bucket present (0.0 where no share came)."""
        raise NotImplementedError

    async def blocks(self, page: int = 1, per_page: int = 20) -> Paged[BlockRow]:
        """Newest first."""
        raise NotImplementedError

    async def payments(self, page: int = 1, per_page: int = 20) -> Paged[PaymentRow]:
        """Newest first."""
        raise NotImplementedError

    async def miners(self, page: int = 1, per_page: int = 20, *,
                     window: int = 3600) -> Paged[MinerRow]:
        """Miners with shares in the window, highest hashrate first (page 1 = top)."""
        raise NotImplementedError

    async def miner(self, address: str) -> MinerFigures:
        raise NotImplementedError

    async def miner_payments(self, address: str, page: int = 1,
                             per_page: int = 20) -> Paged[MinerPayment]:
        """Newest first."""
        raise NotImplementedError

    async def workers(self, address: str) -> tuple[WorkerRow, ...]:
        """The miner's workers seen in the last 24 h, by name."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PoolReaders:
    """Every pool's reader, opened on first use from ``<root>/web/<prefix>/status.json``
    (``database``) and, for PostgreSQL/MariaDB, ``<root>/web-database.secret``."""

    def __init__(self, root: Path, *, offline_after: int = 10):
        self.root = root
        self.offline_after = offline_after

    async def get(self, prefix: str) -> PoolReader | None:
        """The pool's reader; None when its database cannot be opened (the pages then
        show what status.json says and that the statistics are unavailable)."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError
