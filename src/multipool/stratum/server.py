"""The stratum server of one coin: listeners, the session table, share checks, blocks.

Share checks follow a fixed order, each failure with its standard code: 25 not
subscribed, 24 unauthorized worker, 21 "job not found (stale)" for a job the pool issued
and retired in the last five minutes, 20 "unknown job id" for any other id (the pool
never issued it, or retired it long ago), 20 bad extranonce2 / ntime / nonce / version
bits, 22 duplicate, 23 low difficulty. Every rejection but a stale share counts toward
the IP's invalid-share ban: a stale share is the network's doing, an unknown job id the
miner's. Scrypt hashing runs in supervised worker processes, in batches
(stratum/hashing.py), so every core checks shares. A share whose check finishes after
its connection closed (the miner left, the ports closed) is still credited, and a block
it solves is still submitted.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import ssl
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from multipool.chain.pow import Algorithm, hash_to_int
from multipool.config import PortConfig, StratumSection
from multipool.stratum import protocol as p
from multipool.stratum.bans import IpGuard
from multipool.stratum.blocks import BlockSubmissions, BlockSubmitterAPI
from multipool.stratum.hashing import HashBatcher, WorkerPool
from multipool.stratum.jobs import Job, JobManager
from multipool.stratum.protocol import StratumError
from multipool.stratum.session import (
    MAX_NTIME_AHEAD,
    SessionLimits,
    StratumSession,
    Worker,
    parse_submit,
)
from multipool.stratum.sink import ShareRecord, ShareSink
from multipool.stratum.tls import TlsAcceptor
from multipool.stratum.vardiff import VardiffPolicy


class StratumServer:
    """Listens on the coin's stratum ports and checks every share against the job manager."""

    # How often idle and unsubscribed sessions are swept, and vardiff idle checks run.
    SWEEP_INTERVAL = 5.0
    # On shutdown, seconds the share checks in flight get to finish (their blocks).
    DRAIN_TIMEOUT = 10.0

    def __init__(
        self,
        *,
        config: StratumSection,
        algorithm: Algorithm,
        jobs: JobManager,
        sink: ShareSink,
        submitter: BlockSubmitterAPI,
        check_address: Callable[[str], object],
        limits: SessionLimits | None = None,
        hash_pool: WorkerPool | None = None,
        hash_workers: int | None = None,
        node_id: int = 0,
        logger: logging.Logger | None = None,
    ):
        self.config = config
        self.algorithm = algorithm
        self.jobs = jobs
        self.sink = sink
        self.submitter = submitter
        self.check_address = check_address
        self.limits = limits or SessionLimits()
        self.logger = logger or logging.getLogger("multipool.stratum")
        self.extranonce2_size = config.extranonce2_size
        self.sessions: dict[int, StratumSession] = {}
        self.guard = IpGuard(max_per_ip=config.max_connections_per_ip,
                             ban_seconds=config.ban_seconds,
                             invalid_percent=config.ban_invalid_percent,
                             min_shares=config.ban_min_shares)
        # Only slow algorithms need workers. A given pool is the caller's to start and
        # close; our own (``hash_workers`` processes, default one per core) starts with
        # the ports and stops in close().
        self._own_pool = hash_pool is None
        self.hash_pool = hash_pool or WorkerPool(
            algorithm.pow_hash, hash_workers or os.cpu_count() or 2,
            logger=self.logger.getChild("hashing"))
        self.hasher = HashBatcher(self.hash_pool)
        # Connections on a TLS port still in their handshake (counted under the caps).
        self.handshakes: set[TlsAcceptor] = set()
        self._handshaking = 0
        self._servers: list[asyncio.Server] = []
        self._next_session = 0
        # Extranonce1 is 4 bytes: the top byte names the node (for several engines on
        # one database), the rest counts sessions; wrap-around reuses only long-gone ids.
        self._node_prefix = (node_id & 0xFF) << 24
        self._extranonce_counter = int.from_bytes(os.urandom(3), "big")
        self.blocks = BlockSubmissions(submitter=submitter, sink=sink,
                                       on_submitted=jobs.new_block_signal,
                                       logger=self.logger.getChild("blocks"))
        self.listening = asyncio.Event()
        # Share decisions since the start (monotonic: the metrics take them as counters).
        self.shares_accepted = 0
        self.shares_rejected: Counter[str] = Counter()  # by protocol.REASONS word

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        """Open every configured port (worker processes for slow hashes start first);
        after :meth:`stop_listening`, open them again. A port that cannot be opened
        raises OSError, with none of them left open."""
        if self._servers:
            return
        if self.algorithm.slow and not self.hash_pool.started:
            await self.hash_pool.start()
        loop = asyncio.get_running_loop()
        for port in self.config.ports:
            context = self._tls_context(port)
            factory: Callable[[], asyncio.Protocol]
            if context is None:
                factory = functools.partial(self.new_session, port)
            else:
                factory = functools.partial(TlsAcceptor, self, port, context)
            try:
                server = await loop.create_server(
                    factory, self.config.host, port.port, reuse_address=True,
                    backlog=1024)
            except BaseException:
                await self.stop_listening()
                raise
            self._servers.append(server)
            self.logger.info("stratum listening on %s:%d (difficulty %g%s%s)",
                             self.config.host, port.port, port.difficulty,
                             ", vardiff" if port.vardiff else "", ", TLS" if port.tls else "")
        self.listening.set()

    @staticmethod
    def _tls_context(port: PortConfig) -> ssl.SSLContext | None:
        if not port.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        assert port.tls_cert and port.tls_key
        context.load_cert_chain(port.tls_cert, port.tls_key)
        return context

    def bound_ports(self) -> list[int]:
        """The port numbers actually bound (useful when a config asked for port 0)."""
        return [sock.getsockname()[1] for server in self._servers
                for sock in server.sockets]

    async def serve(self) -> None:
        """Run the sweeper until cancelled; close everything on the way out."""
        try:
            while True:
                await asyncio.sleep(self.SWEEP_INTERVAL)
                self.sweep(time.monotonic())
        finally:
            await self.close()

    async def stop_listening(self, disconnect: str | None = None) -> None:
        """Close the listening ports, so new connections are refused; with a
        ``disconnect`` reason, also close every session (:meth:`start` listens again).
        Blocks already found are still submitted."""
        servers, self._servers = self._servers, []
        self.listening.clear()
        for server in servers:
            server.close()
        if disconnect is not None:
            for acceptor in list(self.handshakes):
                acceptor.abort()
            for session in list(self.sessions.values()):
                session.close(disconnect)
        for server in servers:
            await server.wait_closed()

    async def close(self) -> None:
        """Disconnect everyone, let the share checks in flight finish (a block among
        them is still submitted), wait for block submissions, stop our workers."""
        await self.stop_listening("server shutting down")
        if not await self.hasher.drain(self.DRAIN_TIMEOUT):
            self.logger.error("%d share checks still unanswered after %g s at shutdown",
                              self.hasher.in_flight, self.DRAIN_TIMEOUT)
        await self.blocks.wait()
        if self._own_pool:
            await self.hash_pool.close()

    def sweep(self, now: float) -> None:
        """Close sessions that never subscribed or went quiet; lower vardiff of quiet ones;
        forget expired bans."""
        self.guard.prune()
        for session in list(self.sessions.values()):
            if not session.ready and now - session.connected_at > self.config.subscribe_timeout:
                session.close("did not subscribe and authorize in time")
            elif now - session.last_activity > self.config.idle_timeout:
                session.close("idle for too long")
            elif session.vardiff is not None and session.ready:
                new = session.vardiff.on_idle(now, session.difficulty)
                if new is not None:
                    session.set_difficulty(new, "vardiff, no shares")

    # -- sessions ------------------------------------------------------------------

    def new_session(self, port: PortConfig, *, reserved: bool = False) -> StratumSession:
        self._next_session += 1
        return StratumSession(self, port, self._next_session, reserved=reserved)

    def reserve(self, ip: str, *, handshake: bool = False) -> str | None:
        """Count a new connection from ``ip`` under the global and per-IP caps; return
        why it is refused, or None. ``handshake``: a TLS connection not yet through its
        handshake (see :meth:`handshake_done`)."""
        if len(self.sessions) + self._handshaking >= self.config.max_connections:
            return "server is at its connection limit"
        refusal = self.guard.admit(ip)
        if refusal is None and handshake:
            self._handshaking += 1
        return refusal

    def release(self, ip: str, *, handshake: bool = False) -> None:
        """Free a slot taken by :meth:`reserve` that never became a session."""
        if handshake:
            self._handshaking -= 1
        self.guard.release(ip)

    @property
    def handshaking(self) -> int:
        """TLS connections in their handshake (counted under the caps)."""
        return self._handshaking

    def handshake_done(self) -> None:
        """A TLS connection's slot passes from its handshake to its session."""
        self._handshaking -= 1

    def admit(self, session: StratumSession) -> str | None:
        """Take a new session into the table (counting it, unless it was counted
        already); return why it is refused, or None."""
        if not session.reserved:
            refusal = self.reserve(session.ip)
            if refusal is not None:
                return refusal
        self.sessions[session.session_id] = session
        return None

    def forget(self, session: StratumSession) -> None:
        if self.sessions.pop(session.session_id, None) is not None:
            self.guard.release(session.ip)

    def allocate_extranonce1(self) -> bytes:
        self._extranonce_counter = (self._extranonce_counter + 1) & 0xFFFFFF
        return (self._node_prefix | self._extranonce_counter).to_bytes(4, "big")

    def vardiff_policy(self, port: PortConfig) -> VardiffPolicy:
        return VardiffPolicy(port.target_share_time, port.retarget_interval,
                             port.variance_percent, port.floor, port.ceiling)

    # -- jobs ----------------------------------------------------------------------

    def notify_line(self, job: Job, clean: bool) -> bytes:
        message = {"id": None, "method": "mining.notify", "params": [*job.notify_params, clean]}
        return json.dumps(message, separators=(",", ":")).encode() + b"\n"

    def broadcast(self, job: Job) -> None:
        """Send a new job to every ready session (the notify line is encoded once)."""
        line = self.notify_line(job, job.clean)
        for session in list(self.sessions.values()):
            if session.ready and session.sent_difficulty is not None:
                session.send_job(job, clean=job.clean, line=line)

    # -- shares --------------------------------------------------------------------

    def submit(self, session: StratumSession, msg_id: Any, params: list[Any]) -> None:
        """Check one mining.submit and reply; scrypt hashing finishes asynchronously."""
        now = time.monotonic()
        try:
            worker, job, extranonce, ntime, nonce, version = self._precheck(session, params)
        except StratumError as exc:
            self._reject(session, msg_id, exc, params, now)
            return
        header = job.work.header(extranonce, ntime, nonce, version)
        if not self.algorithm.slow:
            self._finish(session, msg_id, worker, job, extranonce, header,
                         self.algorithm.pow_hash(header), now)
            return
        session.pending_checks += 1

        def done(pow_hash: bytes) -> None:
            # Finished even when the session closed meanwhile: the share is real work,
            # and it may be a block (replies to a closed session go nowhere).
            session.pending_checks -= 1
            self._finish(session, msg_id, worker, job, extranonce, header, pow_hash, now)
            session.checks_done()

        self.hasher.submit(header, done)

    def _precheck(self, session: StratumSession, params: list[Any]
                  ) -> tuple[Worker, Job, bytes, int, int, int]:
        if not session.subscribed:
            raise StratumError(p.NOT_SUBSCRIBED, "not subscribed")
        name, job_id, extranonce2, ntime, nonce, version_bits = parse_submit(
            params, self.extranonce2_size)
        worker = session.workers.get(name)
        if worker is None:
            raise StratumError(p.UNAUTHORIZED, "unauthorized worker")
        job = self.jobs.get(job_id)
        if job is None:
            if self.jobs.retired_recently(job_id):
                raise StratumError(p.JOB_NOT_FOUND, "job not found (stale)")
            raise StratumError(p.OTHER, "unknown job id")
        template = job.template
        pool_now = template.curtime + (time.monotonic() - job.created)
        if ntime < template.mintime or ntime > pool_now + MAX_NTIME_AHEAD:
            raise StratumError(p.OTHER, "ntime out of range")
        version = template.version
        if version_bits is not None:
            if version_bits & ~session.version_mask:
                raise StratumError(p.OTHER, "version bits outside the negotiated mask")
            version = (version & ~session.version_mask) | version_bits
        extranonce = session.extranonce1 + extranonce2
        key = (extranonce, ntime, nonce, version)
        if key in job.seen:
            raise StratumError(p.DUPLICATE, "duplicate share")
        job.seen.add(key)
        return worker, job, extranonce, ntime, nonce, version

    def _finish(self, session: StratumSession, msg_id: Any, worker: Worker, job: Job,
                extranonce: bytes, header: bytes, pow_hash: bytes, now: float) -> None:
        hash_value = hash_to_int(pow_hash)
        required = session.required_difficulty(job.job_id)
        share_difficulty = self.algorithm.diff1_target / max(hash_value, 1)
        is_block = hash_value <= job.template.target
        # A hash that solves the block is never refused, whatever the share target.
        if not is_block and hash_value > self.algorithm.difficulty_to_target(required):
            self._reject(session, msg_id,
                         StratumError(p.LOW_DIFFICULTY, "low difficulty share"),
                         None, now, worker=worker, job=job, share_difficulty=share_difficulty)
            return
        session.reply(msg_id, True)
        self.shares_accepted += 1
        self.guard.share(session.ip, True)
        self.sink.record_share(ShareRecord(
            time=time.time(), address=worker.address, worker=worker.worker, ip=session.ip,
            job_id=job.job_id, height=job.template.height, difficulty=required,
            share_difficulty=share_difficulty, accepted=True))
        if is_block:
            self.blocks.found(job, header, extranonce, worker.address, worker.worker)
        session.share_result(True, now)

    def _reject(self, session: StratumSession, msg_id: Any, error: StratumError,
                params: list[Any] | None, now: float, *, worker: Worker | None = None,
                job: Job | None = None, share_difficulty: float = 0.0) -> None:
        session.send_error(msg_id, error)
        self.shares_rejected[p.REASONS.get(error.code, "other")] += 1
        session.share_result(False, now)
        if worker is None and params and isinstance(params[0], str):
            worker = session.workers.get(params[0])
        self.sink.record_share(ShareRecord(
            time=time.time(), address=worker.address if worker else "",
            worker=worker.worker if worker else "", ip=session.ip,
            job_id=job.job_id if job else "", height=job.template.height if job else 0,
            difficulty=0.0, share_difficulty=share_difficulty, accepted=False,
            reject_code=error.code, reject_reason=error.message))
        # A stale share is the network's doing, not the miner's: no ban for those.
        if error.code != p.JOB_NOT_FOUND and self.guard.share(session.ip, False):
            self.logger.warning("banning %s for %gs: too many invalid shares",
                                session.ip, self.config.ban_seconds)
            for other in list(self.sessions.values()):
                if other.ip == session.ip:
                    other.close("address banned for invalid shares")
