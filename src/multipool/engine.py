"""One coin's pool engine: daemon client, job manager and stratum server in one task tree."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from multipool.chain.address import address_to_script
from multipool.chain.pow import ALGORITHMS
from multipool.chain.rpc import DaemonClient, DaemonError
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
    """Wires one coin's parts together and runs them until cancelled."""

    # Longer than the share writer's own final-flush timeout.
    SERVICE_STOP_TIMEOUT = 20.0

    def __init__(
        self,
        *,
        config: CoinConfig,
        daemon: DaemonClient,
        sink: ShareSink | None = None,
        limits: SessionLimits | None = None,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        logger: logging.Logger | None = None,
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

    async def run(self) -> None:
        """Get the first job, open the stratum ports, serve until cancelled."""
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
                await self.jobs.first_job.wait()
                await self.server.start()
                group.create_task(self.server.serve())
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
