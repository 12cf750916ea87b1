"""The job manager: block templates in, stratum jobs out.

New blocks are noticed by getblocktemplate long polling (the daemon answers as soon as
its tip changes), by polling ``getbestblockhash`` when the daemon offers no long poll,
and by :meth:`JobManager.new_block_signal` for blocknotify/ZMQ style signals. The
template is also refreshed every ``template_refresh`` seconds so new transactions (and
their fees) reach the miners. Jobs built on an older tip are retired at once: a share
for them is stale, and no job is ever sent on a template older than the tip.

The ids of retired jobs are remembered for a while (:meth:`JobManager.retired_recently`),
so a share for one is told apart from a share for an id the pool never issued (or retired
so long ago that no honest miner still works on it): the first is stale, the network's
doing; the second is the miner's error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from multipool.chain.header import prevhash_to_stratum, u32_to_stratum
from multipool.chain.rpc import DaemonError
from multipool.chain.template import BlockTemplate, Work, make_work, parse_template
from multipool.errors import TemplateError


class JobSourceAPI(Protocol):
    """What the job manager needs from a coin daemon (DaemonClient has it)."""

    async def getblocktemplate(
        self, rules: list[str], longpollid: str | None = None
    ) -> Any: ...

    async def getbestblockhash(self) -> str: ...


@dataclass(slots=True)
class Job:
    """One stratum job: work on one template, under a pool-wide job id."""

    job_id: str
    work: Work
    created: float
    clean: bool
    notify_params: list[Any]
    # (extranonce, ntime, nonce, version) of every share seen, for duplicate checks;
    # freed with the job when the tip moves on.
    seen: set[tuple[bytes, int, int, int]] = field(default_factory=set)

    @property
    def template(self) -> BlockTemplate:
        return self.work.template


class JobManager:
    """Keeps the current job and the recent ones on the same tip, and announces new jobs."""

    # Older jobs on the current tip stay valid for shares in flight after a refresh.
    MAX_JOBS_PER_TIP = 16
    # A retired job's shares count as stale this long (seconds): a miner hands in the
    # shares it found on a job within seconds of the next one. Older ones are unknown.
    STALE_FOR = 300.0
    # Retired ids remembered at most (a regtest pool retires a job a second or more).
    RETIRED_MEMORY = 4096
    # Backoff while the daemon cannot give templates (not connected, in IBD, down).
    RETRY_DELAYS = (0.5, 1, 2, 5, 10)

    def __init__(
        self,
        *,
        daemon: JobSourceAPI,
        rules: tuple[str, ...],
        payout_script: bytes,
        extranonce_size: int,
        pool_tag: bytes,
        refresh_interval: float = 30.0,
        poll_interval: float = 1.0,
        on_job: Callable[[Job], None],
        logger: logging.Logger | None = None,
    ):
        self.daemon = daemon
        self.rules = list(rules)
        self.payout_script = payout_script
        self.extranonce_size = extranonce_size
        self.pool_tag = pool_tag
        self.refresh_interval = refresh_interval
        self.poll_interval = poll_interval
        self.on_job = on_job
        self.logger = logger or logging.getLogger(__name__)
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        # Retired job ids and when they were retired (monotonic), oldest first.
        self.retired: OrderedDict[str, float] = OrderedDict()
        self.current: Job | None = None
        self.first_job = asyncio.Event()
        self._next_id = int(time.time()) & 0xFFFF_0000
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._template_errors = 0

    # -- lookups used by share validation ---------------------------------------

    def get(self, job_id: str) -> Job | None:
        """Given a job id, return the job if it is still on the current tip."""
        return self.jobs.get(job_id)

    def retired_recently(self, job_id: str, now: float | None = None) -> bool:
        """Given a job id, say whether the pool issued it and retired it less than
        STALE_FOR seconds ago."""
        retired_at = self.retired.get(job_id)
        if retired_at is None:
            return False
        return (time.monotonic() if now is None else now) - retired_at < self.STALE_FOR

    def _retire(self, job: Job, now: float) -> None:
        self.retired[job.job_id] = now
        while len(self.retired) > self.RETIRED_MEMORY:
            self.retired.popitem(last=False)

    @property
    def tip_le(self) -> bytes | None:
        return self.current.template.prev_hash_le if self.current else None

    # -- template intake ---------------------------------------------------------

    async def update(self, *, force_clean: bool = False, longpoll: str | None = None) -> bool:
        """Fetch a template (long polling when ``longpoll`` is given) and publish a job
        when it moves the tip or brings new work. Return True if a job was published."""
        raw = await self.daemon.getblocktemplate(self.rules, longpollid=longpoll)
        template = parse_template(raw)
        if self._maybe_outdated(template):
            # Two requests raced (a refresh started before a block, a long poll after)
            # or the chain reorganised: only the daemon's best block can tell which.
            best = await self.daemon.getbestblockhash()
            if best != template.prev_hash_hex:
                self.logger.debug("dropping a template on %s: not the best block",
                                  template.prev_hash_hex[:16])
                return False
        async with self._lock:
            return self._publish(template, force_clean=force_clean)

    def _maybe_outdated(self, template: BlockTemplate) -> bool:
        current = self.current
        return (current is not None
                and template.prev_hash_le != current.template.prev_hash_le
                and template.height <= current.template.height)

    def _publish(self, template: BlockTemplate, *, force_clean: bool) -> bool:
        current = self.current
        new_tip = current is None or template.prev_hash_le != current.template.prev_hash_le
        if current is not None and not new_tip:
            if template.height < current.template.height:
                return False  # an answer that raced with a newer one
            if (template.txids_le == current.template.txids_le
                    and template.coinbase_value == current.template.coinbase_value
                    and not force_clean):
                return False
        work = make_work(template, payout_script=self.payout_script,
                         extranonce_size=self.extranonce_size, pool_tag=self.pool_tag)
        self._next_id += 1
        job_id = f"{self._next_id & 0xFFFFFFFF:x}"
        clean = new_tip or force_clean
        job = Job(job_id, work, time.monotonic(), clean, _notify_params(job_id, work))
        now = time.monotonic()
        if clean:
            for old in self.jobs.values():
                self._retire(old, now)
            self.jobs.clear()
        self.jobs[job_id] = job
        while len(self.jobs) > self.MAX_JOBS_PER_TIP:
            self._retire(self.jobs.popitem(last=False)[1], now)
        self.current = job
        if new_tip:
            self.logger.info("new block template: height %d on %s, %d transactions",
                             template.height, template.prev_hash_hex[:16],
                             len(template.tx_data))
        self.first_job.set()
        self.on_job(job)
        return True

    def new_block_signal(self) -> None:
        """A block notification arrived (blocknotify, ZMQ, our own block): refresh now."""
        self._wake.set()

    # -- loops -------------------------------------------------------------------

    async def run(self) -> None:
        """Keep jobs current until cancelled."""
        await self._first_template()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._longpoll_loop())
            group.create_task(self._refresh_loop())

    async def _first_template(self) -> None:
        while self.current is None:
            if not await self._try_update(force_clean=True):
                await asyncio.sleep(self._retry_delay())

    def _retry_delay(self) -> float:
        return self.RETRY_DELAYS[min(self._template_errors, len(self.RETRY_DELAYS)) - 1]

    async def _try_update(self, *, force_clean: bool = False, longpoll: str | None = None) -> bool:
        """Like update(), but a daemon or template error is logged and reported as
        False instead of ending the loop."""
        try:
            await self.update(force_clean=force_clean, longpoll=longpoll)
        except (DaemonError, TemplateError) as exc:
            self._template_errors += 1
            if self._template_errors in (1, 10) or self._template_errors % 100 == 0:
                self.logger.warning("cannot get a block template (%d in a row): %s",
                                    self._template_errors, exc)
            return False
        if self._template_errors:
            self.logger.info("block templates flow again after %d failures",
                             self._template_errors)
            self._template_errors = 0
        return True

    async def _longpoll_loop(self) -> None:
        while True:
            longpoll = self.current.template.longpoll_id if self.current else None
            if longpoll is None:
                await self._poll_tip()
            elif not await self._try_update(longpoll=longpoll):
                await asyncio.sleep(self._retry_delay())

    async def _poll_tip(self) -> None:
        """Fallback when the daemon offers no long poll: watch the best block hash."""
        await asyncio.sleep(self.poll_interval)
        try:
            best = await self.daemon.getbestblockhash()
        except DaemonError as exc:
            self.logger.debug("getbestblockhash failed: %s", exc)
            return
        if self.current is None or best != self.current.template.prev_hash_hex:
            await self._try_update()

    async def _refresh_loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that
            # lands as the event fires, and the loop would outlive its task group.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_interval):
                    await self._wake.wait()
            self._wake.clear()
            await self._try_update()


def _notify_params(job_id: str, work: Work) -> list[Any]:
    t = work.template
    return [
        job_id,
        prevhash_to_stratum(t.prev_hash_le),
        work.coinbase.coinb1.hex(),
        work.coinbase.coinb2.hex(),
        [step.hex() for step in work.merkle_branch],
        u32_to_stratum(t.version),
        u32_to_stratum(t.bits),
        u32_to_stratum(t.curtime),
    ]
