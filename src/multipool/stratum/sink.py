"""Where accepted and rejected shares and found blocks go.

The pool engine hands every share decision and every block candidate to a
:class:`ShareSink`. The accounting layer persists them; :class:`MemoryShareSink` keeps
counters and a bounded recent history, enough for the engine alone, tests and the demo.

A solved block reaches the sink twice: first as a :class:`BlockCandidate`, which the sink
makes durable *before* the block is submitted (a kill right after the daemon accepted it
must not lose it), then as a :class:`BlockRecord` with the daemon's verdict.
"""

from __future__ import annotations

import abc
from collections import Counter, deque
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One share decision. ``difficulty`` is what the share is credited at (0 when
    rejected); ``reject_code`` is the stratum error code of a rejected share."""

    time: float
    address: str
    worker: str
    ip: str
    job_id: str
    height: int
    difficulty: float
    share_difficulty: float
    accepted: bool
    reject_code: int | None = None
    reject_reason: str | None = None


@dataclass(frozen=True, slots=True)
class BlockCandidate:
    """A solved block about to be submitted: recorded durably first."""

    time: float
    height: int
    hash_hex: str
    address: str
    worker: str
    reward: int
    network_difficulty: float

    def with_verdict(self, accepted: bool, result: str | None) -> BlockRecord:
        """This candidate as submitted, with the daemon's verdict."""
        found = {f.name: getattr(self, f.name) for f in fields(BlockCandidate)}
        return BlockRecord(**found, accepted=accepted, result=result)


@dataclass(frozen=True, slots=True)
class BlockRecord(BlockCandidate):
    """A block candidate the pool submitted, with the daemon's verdict."""

    accepted: bool
    result: str | None  # submitblock's reason string, None when accepted


class ShareSink(abc.ABC):
    """What the pool engine needs from share and block storage."""

    @abc.abstractmethod
    def record_share(self, share: ShareRecord) -> None:
        """Take one share decision. Must not block: called on the event loop."""

    @abc.abstractmethod
    async def record_candidate(self, candidate: BlockCandidate) -> None:
        """Store a block candidate durably (after the shares recorded before it) and
        return once it is: the block is submitted only then. Storage trouble is logged,
        never raised: a block is submitted even when it could not be recorded."""

    @abc.abstractmethod
    def record_block(self, block: BlockRecord) -> None:
        """Take the daemon's verdict on a submitted candidate. Must not block."""


class MemoryShareSink(ShareSink):
    """Counters plus the most recent shares and all blocks, in memory."""

    # Bounded so a long-running engine without accounting cannot grow without limit.
    RECENT_SHARES = 10_000

    def __init__(self) -> None:
        self.accepted = 0
        self.rejected = 0
        self.accepted_difficulty = 0.0
        self.rejects_by_code: Counter[int] = Counter()
        self.recent: deque[ShareRecord] = deque(maxlen=self.RECENT_SHARES)
        self.candidates: list[BlockCandidate] = []
        self.blocks: list[BlockRecord] = []

    def record_share(self, share: ShareRecord) -> None:
        self.recent.append(share)
        if share.accepted:
            self.accepted += 1
            self.accepted_difficulty += share.difficulty
        else:
            self.rejected += 1
            self.rejects_by_code[share.reject_code or 20] += 1

    async def record_candidate(self, candidate: BlockCandidate) -> None:
        self.candidates.append(candidate)

    def record_block(self, block: BlockRecord) -> None:
        self.blocks.append(block)
