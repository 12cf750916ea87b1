"""One coin's pool engine, and the one place it is put together.

:class:`PoolEngine` runs stratum (job manager, stratum server, the sync gate) in one task
tree, beside the background services its :class:`~multipool.supervision.Supervisor`
keeps running. :func:`run_pool` composes a whole engine from a coin's config: share-check
workers, database schema, daemon client and wallet, share writer, block tracker,
payments, stats roll-up and the public status file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.database import (
    create_engine,
    database_url,
    spool_directory,
    state_directory,
)
from multipool.accounting.migrate import upgrade
from multipool.accounting.payments import PaymentProcessor
from multipool.accounting.rounds import RewardPolicy
from multipool.accounting.stats import StatsRoller
from multipool.accounting.tracker import BlockTracker
from multipool.accounting.writer import ShareWriter
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
from multipool.chain.wallet import ensure_wallet, kept_address
from multipool.chain.zmq_notify import HashblockListener
from multipool.config import CoinConfig, with_pool_address
from multipool.errors import ConfigError
from multipool.looplag import LoopLagMonitor
from multipool.public_status import PublicStatusWriter
from multipool.stratum.blocks import BlockSubmitterAPI
from multipool.stratum.hashing import WorkerPool
from multipool.stratum.jobs import Job, JobManager
from multipool.stratum.protocol import REASONS
from multipool.stratum.server import StratumServer
from multipool.stratum.session import SessionLimits
from multipool.stratum.sink import MemoryShareSink, ShareSink
from multipool.supervision import Essential, Periodic, ServiceEnded, Supervisor


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

    Background services run under ``supervisor``: essential ones (the share writer)
    start before stratum and stop after it, and the engine stops if one ends;
    periodic ones never stop it (supervision.py). ``background`` is a shorthand for
    essential services given as coroutine functions.
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
        supervisor: Supervisor | None = None,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        hash_pool: WorkerPool | None = None,
        logger: logging.Logger | None = None,
        sync_interval: float = 5.0,
        sync_timeout: float = 30.0,
        max_header_lag: int = MAX_HEADER_LAG,
        close_after: int = CLOSE_AFTER,
    ):
        self.config = config
        self.daemon = daemon
        self.sink = sink if sink is not None else MemoryShareSink()
        self.logger = logger or logging.getLogger(f"multipool.engine.{config.coin.prefix}")
        self.supervisor = supervisor or Supervisor(logger=self.logger.getChild("services"))
        for run in background:
            self.supervisor.add(Essential(getattr(run, "__qualname__", repr(run)), run))
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
            hash_pool=hash_pool,
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
        # How late the loop that serves the miners runs what is due (looplag.py).
        self.loop_lag = LoopLagMonitor()

    def counters(self) -> dict[str, Any]:
        """Shares and blocks since the engine started, connections now and the loop's
        lateness: the ``counters`` of status.json."""
        server = self.server
        blocks = server.blocks
        return {"shares": {"accepted": server.shares_accepted,
                           "rejected": {reason: server.shares_rejected[reason]
                                        for reason in REASONS.values()}},
                "blocks": {"submitted": blocks.submitted, "accepted": blocks.accepted,
                           "refused": blocks.refused},
                "connections": len(server.sessions) + server.handshaking,
                "loop_lag": self.loop_lag.figures().to_json()}

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
        # A share whose hash check is still running when its session closes is still
        # credited, and submitted if it solves a block.
        reason = state.reason or "unknown"
        self.logger.warning("daemon behind (%s): closing stratum ports", reason)
        self.stratum_open = False
        self.sync_gate.closed()
        self._behind_logged = (reason, time.monotonic())
        await self.server.stop_listening(disconnect=f"daemon behind: {reason}")

    async def run(self) -> None:
        """Get jobs, open the stratum ports while the daemon is synced, serve until
        cancelled; raise ServiceEnded if an essential background service ends."""
        main = asyncio.current_task()
        assert main is not None
        self.logger.info("starting %s pool engine (%s, %s)", self.config.coin.name,
                         self.config.coin.algorithm, self.config.coin.network)
        # Background services start first and stop last: the stratum server's shutdown
        # still records shares and blocks in flight, which must reach the share writer
        # before its final flush.
        def stop_engine(_error: BaseException) -> None:
            main.cancel()

        self.supervisor.start(on_fatal=stop_engine)
        self.loop_lag.start()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.jobs.run())
                if self.config.daemon.zmq_hashblock:
                    listener = HashblockListener(
                        self.config.daemon.zmq_hashblock,
                        lambda _hash: self.jobs.new_block_signal(),
                        self.logger.getChild("zmq"))
                    group.create_task(listener.run())
                group.create_task(self.server.serve())
                group.create_task(self._gate_stratum())
        except asyncio.CancelledError:
            if self.supervisor.fatal is None:
                raise
            main.uncancel()  # our own cancel, for the fatal service: not a shutdown
        finally:
            self.loop_lag.stop()
            await self.supervisor.stop(self.SERVICE_STOP_TIMEOUT)
            self.logger.info("pool engine stopped")
        if self.supervisor.fatal is not None:
            raise ServiceEnded(f"pool engine stopped: {self.supervisor.fatal}") \
                from self.supervisor.fatal


@dataclass(frozen=True, slots=True)
class ServiceIntervals:
    """Seconds between rounds of the periodic services (payments: the coin's
    ``payment_interval``); a round running longer than ``stuck_after`` shows its service
    degraded."""

    blocks: float = 60.0
    stats: float = 60.0
    status: float = 30.0
    stuck_after: float = 600.0


async def run_pool(config: CoinConfig, *, intervals: ServiceIntervals = ServiceIntervals(),
                   logger: logging.Logger | None = None) -> None:
    """Run one coin's pool engine, composed from its config, until cancelled.

    Order: share-check workers first (a setup error there is found in a second, before
    anything else is touched), the database schema brought up to date, the daemon's
    wallet and the pool address, then the engine with its services. Cancelling (SIGTERM)
    shuts down cleanly: buffered shares are flushed.
    """
    logger = logger or logging.getLogger("multipool.pool")
    d = config.daemon
    hash_pool: WorkerPool | None = None
    if ALGORITHMS[config.coin.algorithm].slow:
        hash_pool = WorkerPool(ALGORITHMS[config.coin.algorithm].pow_hash,
                               os.cpu_count() or 2, logger=logger.getChild("hashing"))
        await hash_pool.start()
    database = create_engine(database_url(config))
    try:
        before, after = await upgrade(database)
        if before != after:
            logger.info("database schema upgraded from %s to %s", before or "empty", after)
        writer = ShareWriter(engine=database, spool_dir=spool_directory(config),
                             logger=logger.getChild("shares"))
        async with DaemonClient(d.rpc_url, user=d.rpc_user, password=d.rpc_password,
                                cookie_file=d.rpc_cookie, wallet=d.wallet) as daemon:
            config = await _pool_address(config, daemon, logger)
            engine = PoolEngine(config=config, daemon=daemon, sink=writer,
                                supervisor=_services(config, database, daemon, writer,
                                                     intervals, logger),
                                hash_pool=hash_pool)
            if config.pool.public_dir is not None:
                public = PublicStatusWriter(config=config, database=database, engine=engine,
                                            directory=Path(config.pool.public_dir),
                                            services=engine.supervisor.states,
                                            daemon=daemon, logger=logger.getChild("public"))
                engine.supervisor.add(Periodic("status", public.publish, intervals.status,
                                               stuck_after=4 * intervals.status))
            await engine.run()
    finally:
        await database.dispose()
        if hash_pool is not None:
            await hash_pool.close()


async def _pool_address(config: CoinConfig, daemon: DaemonClient,
                        logger: logging.Logger) -> CoinConfig:
    """Load the pool wallet, take the kept pool address when the config names none, and
    leave initial block download on an empty regtest chain."""
    d = config.daemon
    if d.wallet is not None:
        await ensure_wallet(daemon, d.wallet, logger)
    if config.pool.address is None:
        if d.wallet is None:
            raise ConfigError("needs [daemon] wallet to take an address from",
                              file=config.path, key="pool.address")
        address = await kept_address(daemon, state_directory(config), logger)
        config = with_pool_address(config, address)
    if config.coin.network == "regtest" and await daemon.getblockcount() == 0:
        # An empty regtest chain stays in initial block download, which gives no block
        # template and keeps the stratum ports closed.
        assert config.pool.address is not None
        await daemon.generatetoaddress(1, config.pool.address)
        logger.info("regtest chain was empty: mined block 1 to leave initial block "
                    "download")
    return config


def _services(config: CoinConfig, database: AsyncEngine, daemon: DaemonClient,
              writer: ShareWriter, intervals: ServiceIntervals,
              logger: logging.Logger) -> Supervisor:
    """The background services of a pool engine, under one supervisor."""
    tracker = BlockTracker(engine=database, daemon=daemon,
                           policy=RewardPolicy.from_config(config),
                           maturity=config.network.coinbase_maturity,
                           pool_tag=config.stratum.pool_tag.encode(),
                           payout_script=config.payout_script,
                           spool_pending=writer.spool.files,
                           logger=logger.getChild("blocks"))
    writer.on_block = tracker.wake  # a found block's snapshot is written at once
    payer = PaymentProcessor.from_config(config, engine=database, wallet=daemon,
                                         logger=logger.getChild("payments"))
    stats = StatsRoller(database, logger=logger.getChild("stats"))

    held: list[str | None] = [None]  # why payments are paused, as the last run said

    async def pay() -> None:
        report = await payer.run_once()
        held[0] = report.message if report.status == "paused" else None
        if report.status not in ("nothing_due", "paused"):
            payer.logger.info("payment run: %s %s", report.status, report.message)

    async def roll() -> None:
        stats.logger.debug("rolled up %d shares", await stats.roll())

    supervisor = Supervisor(logger=logger.getChild("services"))
    supervisor.add(Essential("shares", writer.run, health=lambda: (
        None if writer.database_up else
        "database unreachable: shares are spooled to disk until it answers")))
    stuck_after = intervals.stuck_after
    supervisor.add(Periodic("blocks", tracker.check, intervals.blocks, wake=tracker.wakeup,
                            stuck_after=stuck_after))
    supervisor.add(Periodic("payments", pay, config.pool.payment_interval,
                            stuck_after=max(stuck_after, 2 * config.pool.payment_interval),
                            health=lambda: held[0]))
    supervisor.add(Periodic("stats", roll, intervals.stats, stuck_after=stuck_after))
    return supervisor
