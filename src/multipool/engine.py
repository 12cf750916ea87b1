"""One coin's pool engine: daemon client, job manager and stratum server in one task tree."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from multipool.chain.address import address_to_script
from multipool.chain.pow import ALGORITHMS
from multipool.chain.rpc import DaemonClient, DaemonError
from multipool.chain.sync import (
    CLOSE_AFTER,
    MAX_HEADER_LAG,
    Gate,
    SyncGate,
    SyncState,
    SyncWatcher,
)
from multipool.chain.zmq_notify import HashblockListener
from multipool.config import CoinConfig
from multipool.errors import PoolError
from multipool.stratum.blocks import BlockSubmitterAPI
from multipool.stratum.jobs import Job, JobManager
from multipool.stratum.server import StratumServer
from multipool.stratum.session import SessionLimits
from multipool.stratum.sink import MemoryShareSink, ShareSink


class DaemonBlockSubmitter(BlockSubmitterAPI):
    """Submits a block and confirms with getblockheader that the daemon holds it."""

    def __init__(self, daemon: DaemonClient, logger: logging.Logger):
        self.daemon = daemon
        self.logger = logger

    async def submit_block(self, block: bytes, hash_hex: str) -> str | None:
        try:
            result = await self.daemon.submitblock(block.hex())
        except DaemonError as exc:
            return f"submitblock failed: {exc}"
        # "duplicate" means the daemon already has it: a resubmission, not a loss.
        if result not in (None, "duplicate"):
            return str(result)
        try:
            header: Any = await self.daemon.getblockheader(hash_hex)
        except DaemonError as exc:
            return f"submitted, but the daemon does not know the block: {exc}"
        confirmations = header.get("confirmations", 0) if isinstance(header, dict) else 0
        if confirmations < 1:
            self.logger.warning("block %s is known but not on the best chain", hash_hex)
        return None


class PoolEngine:
    """Wires one coin's parts together and runs them until cancelled.

    The stratum ports are open only while the daemon is synced (out of initial block
    download, headers at most ``max_header_lag`` ahead of blocks, at least one peer) and
    a job on its best block is ready; they close, and every miner is disconnected, once
    ``close_after`` readings in a row (``sync_interval`` seconds apart) found the daemon
    behind. ``sync_state`` holds the last reading (None before the first) and
    ``stratum_open`` whether the ports are open.
    """

    # Longer than the share writer's own final-flush timeout.
    SERVICE_STOP_TIMEOUT = 20.0
    # While the ports stay closed, the reason is logged again this often (seconds).
    BEHIND_REMINDER = 600.0

    def __init__(
        self,
        *,
        config: CoinConfig,
        daemon: DaemonClient,
        sink: ShareSink | None = None,
        limits: SessionLimits | None = None,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        logger: logging.Logger | None = None,
        sync_interval: float = 5.0,
        sync_timeout: float = 30.0,
        max_header_lag: int = MAX_HEADER_LAG,
        close_after: int = CLOSE_AFTER,
    ):
        self.config = config
        # Services that live as long as the engine (the share writer's flush loop).
        self.background = tuple(background)
        self._main_task: asyncio.Task[Any] | None = None
        self._service_error: BaseException | None = None
        self.daemon = daemon
        self.sink = sink if sink is not None else MemoryShareSink()
        self.logger = logger or logging.getLogger(f"multipool.engine.{config.coin.prefix}")
        algorithm = ALGORITHMS[config.coin.algorithm]
        stratum = config.stratum
        self.jobs = JobManager(
            daemon=daemon,
            rules=config.daemon.template_rules,
            payout_script=config.payout_script,
            extranonce_size=4 + stratum.extranonce2_size,
            pool_tag=stratum.pool_tag.encode(),
            refresh_interval=config.daemon.template_refresh,
            poll_interval=config.daemon.poll_interval,
            on_job=self._on_job,
            logger=self.logger.getChild("jobs"),
        )
        self.server = StratumServer(
            config=stratum,
            algorithm=algorithm,
            jobs=self.jobs,
            sink=self.sink,
            submitter=DaemonBlockSubmitter(daemon, self.logger),
            check_address=lambda address: address_to_script(address, config.network),
            limits=limits,
            logger=self.logger.getChild("stratum"),
        )
        self.sync_watcher = SyncWatcher(daemon, interval=sync_interval,
                                        answer_timeout=sync_timeout,
                                        max_header_lag=max_header_lag,
                                        logger=self.logger.getChild("sync"))
        self.sync_gate = SyncGate(close_after=close_after)
        self.sync_state: SyncState | None = None
        self.stratum_open = False
        self._opened_before = False
        self._behind_logged: tuple[str, float] | None = None  # (reason, when)

    def _service_ended(self, task: asyncio.Task[None]) -> None:
        """A background service must live as long as the engine: one that ends early
        (a bug, a lost database driver) takes the engine down rather than lose data."""
        if not task.cancelled():
            self._service_error = task.exception() or PoolError("background service ended")
            self.logger.error("background service ended: %r", self._service_error)
            main = self._main_task
            if main is not None:
                main.cancel()

    def _on_job(self, job: Job) -> None:
        self.server.broadcast(job)
        if not self.stratum_open:
            self.sync_watcher.wake()  # the work the closed ports wait for may be here

    def _work_ready(self, state: SyncState) -> bool:
        """Is there a job to hand out on the daemon's best block? After the ports were
        closed the current job may be far behind the tip the daemon caught up with."""
        current = self.jobs.current
        if current is not None and (not state.best_hash
                                    or current.template.prev_hash_hex == state.best_hash):
            return True
        if current is not None:
            self.jobs.new_block_signal()  # fetch a template on the new tip now
        return False

    async def _gate_stratum(self) -> None:
        """Read the daemon's sync state every few seconds; open the stratum ports when it
        is synced and work is ready, close them when it falls behind. Runs until
        cancelled."""
        while True:
            state = await self.sync_watcher.read()
            self.sync_state = state
            ready = not self.stratum_open and state.synced and self._work_ready(state)
            action = self.sync_gate.update(state, ready=ready)
            if action is Gate.OPEN:
                await self._open_stratum()
            elif action is Gate.CLOSE:
                await self._close_stratum(state)
            elif state.reason is not None and not self.stratum_open:
                self._note_behind(state.reason)
            elif state.reason is None and not self.stratum_open:
                self.logger.debug("daemon synced; waiting for a job on its best block")
            elif state.reason is not None:
                self.logger.debug("daemon behind (%s) at %d reading(s) in a row; the "
                                  "ports close at %d", state.reason,
                                  self.sync_gate.behind_count, self.sync_gate.close_after)
            await self.sync_watcher.sleep()

    def _note_behind(self, reason: str) -> None:
        """While the ports stay closed: say why, once, and again every BEHIND_REMINDER
        seconds (initial block download can take hours)."""
        now = time.monotonic()
        last = self._behind_logged
        if last is None:
            self.logger.warning("daemon behind (%s): stratum ports stay closed until it "
                                "is synced", reason)
        elif now - last[1] >= self.BEHIND_REMINDER:
            self.logger.info("daemon still behind (%s): stratum ports closed", reason)
        else:
            return
        self._behind_logged = (reason, now)

    async def _open_stratum(self) -> None:
        self.logger.info("daemon synced: opening stratum ports")
        try:
            await self.server.start()
        except OSError as exc:
            if not self._opened_before:
                raise  # a port taken or not allowed from the start: a setup error
            self.logger.error("cannot open the stratum ports again: %s; trying again at "
                              "the next reading", exc)
            return
        self.sync_gate.opened()
        self.stratum_open = True
        self._opened_before = True
        self._behind_logged = None

    async def _close_stratum(self, state: SyncState) -> None:
        # Existing miners are disconnected, not only new ones refused: their work is on
        # a tip the network has left (or, without peers, a block they find may never
        # reach the network), and a miner whose pool hangs up goes to its backup pool.
        # A share whose hash check is still running when its session closes is dropped.
        reason = state.reason or "unknown"
        self.logger.warning("daemon behind (%s): closing stratum ports", reason)
        self.stratum_open = False
        self.sync_gate.closed()
        self._behind_logged = (reason, time.monotonic())
        await self.server.stop_listening(disconnect=f"daemon behind: {reason}")

    async def run(self) -> None:
        """Get jobs, open the stratum ports while the daemon is synced, serve until
        cancelled."""
        self._main_task = asyncio.current_task()
        self.logger.info("starting %s pool engine (%s, %s)", self.config.coin.name,
                         self.config.coin.algorithm, self.config.coin.network)
        # Background services (the share writer) start first and stop last: the stratum
        # server's shutdown still records shares and blocks in flight, which must reach
        # the writer before its final flush.
        services = [asyncio.create_task(service()) for service in self.background]
        try:
            async with asyncio.TaskGroup() as group:
                for service in services:
                    service.add_done_callback(self._service_ended)
                group.create_task(self.jobs.run())
                if self.config.daemon.zmq_hashblock:
                    listener = HashblockListener(
                        self.config.daemon.zmq_hashblock,
                        lambda _hash: self.jobs.new_block_signal(),
                        self.logger.getChild("zmq"))
                    group.create_task(listener.run())
                group.create_task(self.server.serve())
                group.create_task(self._gate_stratum())
        finally:
            for service in services:
                service.remove_done_callback(self._service_ended)
                service.cancel()
            if services:
                _, stuck = await asyncio.wait(services, timeout=self.SERVICE_STOP_TIMEOUT)
                for service in stuck:
                    self.logger.error("background service %r did not stop in %gs",
                                      service.get_coro(), self.SERVICE_STOP_TIMEOUT)
            self.logger.info("pool engine stopped")
        if self._service_error is not None:
            raise PoolError(f"pool engine stopped: a background service failed: "
                            f"{self._service_error!r}") from self._service_error
