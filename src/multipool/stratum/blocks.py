"""Block candidates: assembled at once, submitted one at a time per chain tip.

On a real network two blocks from one pool at one height within a submission's
latency do not happen. On regtest, where every other hash solves a block, a miner can
hand in a hundred candidates for one height before the new template arrives, and
submitting them all keeps the daemon busy validating blocks that can no longer win.
So candidates on the same previous block wait behind the one in flight: if it is
accepted the rest are moot (they still count as shares) and are dropped, if it is
refused the next one is submitted.

A candidate is made durable before it is submitted: the sink writes it, behind its
finder's share, to the database (or, while the database is away, to the fsynced spool)
and only then does ``submitblock`` run. A kill -9 right after the daemon accepted the
block leaves the candidate row, which the block tracker confirms from the chain on the
next start; the verdict recorded afterwards moves it to pending (accepted) or drops it.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from multipool.chain.pow import SHA256D_DIFF1_TARGET, sha256d
from multipool.chain.serialize import le_to_hex
from multipool.failpoints import failpoint
from multipool.stratum.jobs import Job
from multipool.stratum.sink import BlockCandidate, ShareSink


class BlockSubmitterAPI(abc.ABC):
    """What the server needs to hand a solved block to the daemon."""

    @abc.abstractmethod
    async def submit_block(self, block: bytes, hash_hex: str) -> str | None:
        """Submit a block; return None when accepted, else the daemon's reason."""


@dataclass(frozen=True, slots=True)
class Candidate:
    job: Job
    block: bytes
    hash_hex: str
    address: str
    worker: str


class BlockSubmissions:
    """Submits block candidates and records the daemon's verdicts in the sink."""

    # Candidates kept waiting per tip; more than this on one height is a storm.
    MAX_WAITING = 16
    # Tips remembered as solved by the pool, to drop late candidates on them.
    SOLVED_MEMORY = 64

    def __init__(self, *, submitter: BlockSubmitterAPI, sink: ShareSink,
                 on_submitted: Callable[[], None], logger: logging.Logger):
        self.submitter = submitter
        self.sink = sink
        self.on_submitted = on_submitted
        self.logger = logger
        self.queues: dict[bytes, deque[Candidate]] = {}
        self.solved: OrderedDict[bytes, str] = OrderedDict()
        self.tasks: set[asyncio.Task[None]] = set()
        self.candidates = 0
        self.dropped = 0
        # Handed to the daemon, and its verdicts (submitted - accepted - refused are in
        # flight).
        self.submitted = 0
        self.accepted = 0
        self.refused = 0
        # Seconds each candidate's durable write held up its submitblock (recent ones).
        self.durable_seconds: deque[float] = deque(maxlen=1000)

    def found(self, job: Job, header: bytes, extranonce: bytes, address: str,
              worker: str) -> None:
        """A share solved the block of ``job``: assemble it and get it submitted."""
        self.candidates += 1
        prev = job.template.prev_hash_le
        # The block hash is double SHA-256 of the header whatever the PoW hash is.
        hash_hex = le_to_hex(sha256d(header))
        if prev in self.solved:
            self.dropped += 1
            self.logger.debug("block candidate %s at height %d not submitted: the pool's "
                              "block %s holds this height", hash_hex, job.template.height,
                              self.solved[prev])
            return
        queue = self.queues.get(prev)
        if queue is not None and len(queue) >= self.MAX_WAITING:
            self.dropped += 1
            return
        candidate = Candidate(job, job.work.block(header, extranonce), hash_hex, address,
                              worker)
        self.logger.info("block candidate at height %d: %s by %s.%s", job.template.height,
                         hash_hex, address, worker)
        if queue is not None:
            queue.append(candidate)
            return
        self.queues[prev] = deque([candidate])
        task = asyncio.get_running_loop().create_task(self._submit_queue(prev))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _submit_queue(self, prev: bytes) -> None:
        queue = self.queues[prev]
        try:
            while queue:
                candidate = queue[0]
                if await self._submit(candidate):
                    self.solved[prev] = candidate.hash_hex
                    while len(self.solved) > self.SOLVED_MEMORY:
                        self.solved.popitem(last=False)
                    self.dropped += len(queue) - 1
                    break
                queue.popleft()
        finally:
            del self.queues[prev]

    async def _submit(self, candidate: Candidate) -> bool:
        template = candidate.job.template
        found_at = time.time()
        # In the daemons' own unit (sha256d difficulty 1 for every algorithm), as
        # getmininginfo and explorers show it.
        network_difficulty = SHA256D_DIFF1_TARGET / template.target
        started = time.perf_counter()
        found = BlockCandidate(
            time=found_at, height=template.height, hash_hex=candidate.hash_hex,
            address=candidate.address, worker=candidate.worker,
            reward=template.coinbase_value, network_difficulty=network_difficulty)
        try:
            await self.sink.record_candidate(found)
        except Exception:
            # The one place where any failure is caught: a block left unsubmitted is
            # lost for good, an unrecorded one is found on the chain at the next start.
            # Logged with its traceback, then submitted.
            self.logger.exception("block candidate %d %s could not be recorded; "
                                  "submitting it anyway", template.height, candidate.hash_hex)
        stored = time.perf_counter() - started
        self.durable_seconds.append(stored)
        failpoint("block:after_candidate")
        self.submitted += 1
        result = await self.submitter.submit_block(candidate.block, candidate.hash_hex)
        failpoint("block:after_submit")
        accepted = result is None
        if accepted:
            self.accepted += 1
        else:
            self.refused += 1
        if accepted:
            self.logger.info("block %d %s accepted by the daemon (stored %.1f ms before "
                             "submission)", template.height, candidate.hash_hex,
                             stored * 1000)
        else:
            self.logger.error("block %d %s rejected by the daemon: %s", template.height,
                              candidate.hash_hex, result)
        self.sink.record_block(found.with_verdict(accepted, result))
        self.on_submitted()
        return accepted

    async def wait(self) -> None:
        """Wait for submissions in flight (used on shutdown: a found block is not lost)."""
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
