"""A small CPU miner speaking Stratum V1: the client side used by tests, benchmarks and
the demo.

It is honest but slow: every share it submits really meets the share target, hashed
with the same :mod:`multipool.chain` helpers the pool uses. Hashing runs in a worker
thread in batches that end early at the first share (as cpuminer's scanhash does), so
the event loop reads the pool between batches and a new job replaces the current one
within one batch.

Protocol notes (what the server side must match):

* newline-delimited JSON-RPC 1.0 over TCP; requests carry integer ids from 1 up;
* ``mining.configure`` (only with ``version_rolling``) comes first, then
  ``mining.subscribe``, ``mining.authorize``, then ``mining.extranonce.subscribe``
  (sent without waiting for its result, which may be true, false or an error);
* ``mining.set_difficulty`` and ``mining.set_extranonce`` apply to the next
  ``mining.notify``, not to the job being mined (difficulty 1 until told otherwise);
* a ``clean_jobs`` notify makes shares of every earlier job stale: they are dropped,
  never submitted; any new job, clean or not, is mined at once;
* after a share that also meets the network target (nbits) the miner waits up to
  ``BLOCK_WAIT`` seconds for a new job before going on with the old one, so a pool
  should send the next job (clean) once its block is in; at regtest difficulty almost
  every share is a block, and without the pause the miner would flood the pool with
  sibling blocks and then stale shares;
* ``mining.submit`` is ``[username, job_id, extranonce2, ntime, nonce(, version_bits)]``
  with the job's own ntime (no ntime rolling); version bits hold only bits of the
  granted mask, and are sent on every share once rolling is granted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from multipool.chain.header import (
    build_header,
    prevhash_from_stratum,
    u32_from_stratum,
    u32_to_stratum,
)
from multipool.chain.merkle import root_from_branch
from multipool.chain.pow import (
    ALGORITHMS,
    Algorithm,
    bits_to_target,
    hash_to_int,
    sha256d,
)
from multipool.errors import ConfigError, PoolError, SerializationError

USER_AGENT = "multipool-miner/0.1"
# BIP310: the mask a miner asks for (the 16 bits BIP320 leaves free) and the fewest
# bits it can work with.
REQUESTED_VERSION_MASK = 0x1FFFE000
MIN_VERSION_BITS = 2
NONCE_SPACE = 1 << 32
# Stratum error code for a refusal that carries no usable code (and for ``false``).
OTHER_ERROR = 20


class MinerError(PoolError):
    """The pool refused the miner's handshake or broke the protocol."""


class RequestRefused(MinerError):
    """The pool answered a request with an error (or ``false``)."""

    def __init__(self, method: str, code: int, message: str):
        super().__init__(f"{method} refused: [{code}] {message}")
        self.method = method
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the pool granted during :meth:`StratumMiner.connect`."""

    extranonce1: bytes
    extranonce2_size: int
    subscriptions: list[Any]
    # The granted version-rolling mask, or None when rolling was not asked or refused.
    version_mask: int | None


@dataclass(frozen=True, slots=True)
class MinerJob:
    """One mining.notify, with what was in force when it came (difficulty, extranonce1)."""

    seq: int
    job_id: str
    prev_hash_le: bytes
    coinb1: bytes
    coinb2: bytes
    merkle_branch: tuple[bytes, ...]
    version: int
    bits: int
    ntime: int
    clean: bool
    difficulty: float
    extranonce1: bytes
    extranonce2_size: int
    version_mask: int
    share_target: int
    network_target: int

    def merkle_root_le(self, extranonce2: bytes) -> bytes:
        """Given an extranonce2, return the merkle root of the job's block."""
        coinbase = self.coinb1 + self.extranonce1 + extranonce2 + self.coinb2
        return root_from_branch(sha256d(coinbase), self.merkle_branch)


def parse_notify(params: list[Any]) -> tuple[str, bytes, bytes, bytes, tuple[bytes, ...],
                                              int, int, int, bool]:
    """Given mining.notify params, return (job_id, prev_hash_le, coinb1, coinb2, branch,
    version, bits, ntime, clean_jobs) or raise SerializationError naming the bad field."""
    if not isinstance(params, list) or len(params) < 9:
        raise SerializationError("mining.notify takes 9 params")
    job_id, prevhash, coinb1, coinb2, branch, version, nbits, ntime, clean = params[:9]
    if not isinstance(job_id, str) or not job_id:
        raise SerializationError("job_id must be a non-empty string")
    if not isinstance(prevhash, str) or len(prevhash) != 64:
        raise SerializationError("prevhash must be 64 hex digits")
    if not isinstance(branch, list) or not all(isinstance(s, str) and len(s) == 64
                                               for s in branch):
        raise SerializationError("merkle_branch must be a list of 32-byte hex hashes")
    if not isinstance(coinb1, str) or not isinstance(coinb2, str):
        raise SerializationError("coinb1 and coinb2 must be hex strings")
    try:
        prev_le = prevhash_from_stratum(prevhash)
        parts = bytes.fromhex(coinb1), bytes.fromhex(coinb2)
        steps = tuple(bytes.fromhex(step) for step in branch)
    except ValueError:
        raise SerializationError("prevhash, coinb1, coinb2 or the branch is not hex") from None
    return (job_id, prev_le, parts[0], parts[1], steps,
            u32_from_stratum(version, "version"), u32_from_stratum(nbits, "nbits"),
            u32_from_stratum(ntime, "ntime"), bool(clean))


def deposit_bits(counter: int, mask: int) -> int:
    """Given a counter and a bit mask, return the counter's bits spread over the mask's
    set bits, lowest first (a software PDEP): how the miner walks a version mask.

    >>> hex(deposit_bits(0b101, 0x1FFFE000))
    '0xa000'
    """
    out = 0
    bit = 0
    while mask and counter >> bit:
        lowest = mask & -mask
        if (counter >> bit) & 1:
            out |= lowest
        mask ^= lowest
        bit += 1
    return out


def find_nonce(algorithm: Algorithm, header76: bytes, first_nonce: int, count: int,
               target: int) -> tuple[int, bytes] | None:
    """Given the first 76 header bytes, a nonce range and a target, return the first
    (nonce, pow hash) of the range whose hash does not exceed the target, or None.

    Blocking and CPU-bound: run it in a worker thread. Like cpuminer's scanhash it returns
    at the first hit, so the caller submits it and looks at the pool before going on. For
    sha256d the SHA-256 state of the first 64 header bytes is computed once and copied.

    >>> find_nonce(ALGORITHMS["sha256d"], bytes(76), 0, 4, 0) is None
    True
    """
    if len(header76) != 76:
        raise ValueError(f"a header without its nonce is 76 bytes, got {len(header76)}")
    last = min(first_nonce + count, NONCE_SPACE)
    if algorithm.name == "sha256d":
        midstate = hashlib.sha256(header76[:64])
        tail = header76[64:]
        sha256 = hashlib.sha256
        top = target >> 248
        for nonce in range(first_nonce, last):
            inner = midstate.copy()
            inner.update(tail + nonce.to_bytes(4, "little"))
            digest = sha256(inner.digest()).digest()
            # Cheap test of the top byte before building the big integer.
            if digest[31] <= top and hash_to_int(digest) <= target:
                return nonce, digest
        return None
    pow_hash = algorithm.pow_hash
    for nonce in range(first_nonce, last):
        digest = pow_hash(header76 + nonce.to_bytes(4, "little"))
        if hash_to_int(digest) <= target:
            return nonce, digest
    return None


class _WorkerPrefix(logging.LoggerAdapter):  # type: ignore[type-arg]
    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        assert self.extra is not None
        return f"[{self.extra['worker']}] {msg}", kwargs


class StratumMiner:
    """A Stratum V1 CPU miner for one username on one connection (one connect() per
    instance; make a new miner to reconnect).

    ``max_shares`` stops mining once that many shares were submitted (run() then waits
    up to DRAIN_TIMEOUT for their results); ``hashrate_limit`` caps hashes per second.

    Counters (read them any time): ``hashes``, ``submitted``, ``accepted``,
    ``rejected``, ``reject_reasons`` (stratum error code -> count; ``false`` results
    and code-less errors count as 20) and ``blocks_candidates`` (submitted shares whose
    hash also met the network target of the job's nbits).
    """

    # Nonces per worker-thread batch; between batches the miner looks for a new job.
    # About 6 ms of sha256d and 120 ms of scrypt on one core of a 2020s CPU.
    BATCH = {"sha256d": 4096, "scrypt": 256}
    # With a hashrate cap, batches last about this long (so the cap is smooth).
    THROTTLE_SLICE = 0.05
    # Seconds to wait for a new job after a share that is also a block candidate.
    BLOCK_WAIT = 2.0
    # Seconds close() waits for the connection to wind down before cutting it.
    CLOSE_TIMEOUT = 5.0
    CONNECT_TIMEOUT = 10.0
    # A handshake request unanswered this long means the pool is not a stratum pool.
    REQUEST_TIMEOUT = 30.0
    # BIP310 asks pools to answer mining.configure, but some old ones stay silent.
    CONFIGURE_TIMEOUT = 5.0
    # How long run() waits for the results of shares already sent when it stops.
    DRAIN_TIMEOUT = 5.0
    # Longest line accepted from the pool (a notify with a long branch is a few KB).
    MAX_LINE = 1 << 20

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str,
        # A stratum password is an options field ("x", "d=8"), not a secret.
        password: str = "x",  # noqa: S107
        algorithm: str = "sha256d",
        version_rolling: bool = False,
        max_shares: int | None = None,
        hashrate_limit: float | None = None,
        logger: logging.Logger | logging.LoggerAdapter | None = None,  # type: ignore[type-arg]
    ):
        if algorithm not in ALGORITHMS:
            raise ConfigError(f"must be one of {', '.join(ALGORITHMS)}; got {algorithm!r}",
                              key="algorithm")
        if max_shares is not None and max_shares < 1:
            raise ConfigError(f"must be at least 1; got {max_shares}", key="max_shares")
        if hashrate_limit is not None and not 0 < hashrate_limit < math.inf:
            raise ConfigError(f"must be a positive number; got {hashrate_limit}",
                              key="hashrate_limit")
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.algorithm = ALGORITHMS[algorithm]
        self.version_rolling = version_rolling
        self.max_shares = max_shares
        self.hashrate_limit = hashrate_limit
        self.logger = _WorkerPrefix(logger or logging.getLogger(__name__),
                                    {"worker": username})
        batch = self.BATCH[algorithm]
        if hashrate_limit is not None:
            batch = max(1, min(batch, int(hashrate_limit * self.THROTTLE_SLICE)))
        self.batch_size = batch

        self.hashes = 0
        self.submitted = 0
        self.accepted = 0
        self.rejected = 0
        self.reject_reasons: dict[int, int] = {}
        self.blocks_candidates = 0
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.handshake: Handshake | None = None

        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._next_id = 0
        self._pending: dict[int, tuple[str, asyncio.Future[Any],
                                       Callable[[Any], None] | None]] = {}
        self._submits: set[asyncio.Future[Any]] = set()
        self._stop_requested = False
        self._lost = False
        # The pool closed the connection (rather than us).
        self._dropped = False
        self._closing = False
        self._wake = asyncio.Event()

        # State for the next job: set_difficulty and set_extranonce apply to it.
        self._difficulty = 1.0
        self._extranonce1: bytes | None = None
        self._extranonce2_size = 0
        self._version_mask = 0
        self._job: MinerJob | None = None
        self._job_seq = 0
        # Jobs numbered below this are stale (a clean_jobs notify came after them).
        self._fresh_from = 0
        self._extranonce2 = 0
        self._throttle_clock = 0.0

    # -- public API --------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._lost and not self._closing

    @property
    def job(self) -> MinerJob | None:
        """The job being mined (the last one the pool sent)."""
        return self._job

    def hashrate(self) -> float:
        """Return the average hashes per second since mining started."""
        if self.started_at is None:
            return 0.0
        end = self.stopped_at if self.stopped_at is not None else time.monotonic()
        return self.hashes / max(end - self.started_at, 1e-9)

    def summary(self) -> dict[str, Any]:
        """Return the counters as a JSON-ready dict."""
        return {
            "username": self.username,
            "algorithm": self.algorithm.name,
            "hashes": self.hashes,
            "hashrate": self.hashrate(),
            "submitted": self.submitted,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "reject_reasons": {str(code): n for code, n in sorted(self.reject_reasons.items())},
            "blocks_candidates": self.blocks_candidates,
        }

    async def connect(self) -> Handshake:
        """Connect and shake hands: configure (when rolling), subscribe, authorize, then
        ask for extranonce changes. Return what the pool granted; raise RequestRefused
        when it refuses, MinerError when it answers nonsense, OSError/TimeoutError when it
        cannot be reached. The connection stays open (close() or run() ends it)."""
        if self._writer is not None:
            raise MinerError("already connected")
        reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, limit=self.MAX_LINE),
            self.CONNECT_TIMEOUT)
        self._reader_task = asyncio.create_task(self._read_loop(reader))
        self.logger.info("connected to %s:%s", self.host, self.port)
        try:
            granted: int | None = None
            if self.version_rolling:
                granted = await self._configure()
            subscribed = await self.call("mining.subscribe", [USER_AGENT],
                                         on_result=self._on_subscribed)
            authorized = await self.call("mining.authorize", [self.username, self.password])
            if authorized is not True:
                raise RequestRefused("mining.authorize", OTHER_ERROR,
                                     f"answered {authorized!r}")
            self.logger.info("authorized")
            await self._fire("mining.extranonce.subscribe", [])
        except BaseException:
            await self.close()
            raise
        assert self._extranonce1 is not None
        self.handshake = Handshake(self._extranonce1, self._extranonce2_size,
                                   subscribed[0], granted)
        return self.handshake

    async def run(self) -> None:
        """Connect unless connected, then mine until stop() or max_shares, wait briefly
        for the results of the shares sent, and close. Raise ConnectionError when the
        pool closes the connection first."""
        try:
            if self._writer is None:
                if self._stop_requested:
                    return
                await self.connect()
            await self._mine()
            await self._drain()
        finally:
            await self.close()
        if self._dropped and not self._stop_requested:
            raise ConnectionError(f"pool {self.host}:{self.port} closed the connection")

    def stop(self) -> None:
        """Ask run() to stop after the current batch."""
        self._stop_requested = True
        self._wake.set()

    async def close(self) -> None:
        """Close the connection (safe to call more than once)."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            self._writer.close()
            try:
                # A pool that stops reading would hold wait_closed() forever.
                await asyncio.wait_for(self._writer.wait_closed(), self.CLOSE_TIMEOUT)
            except TimeoutError:
                self._writer.transport.abort()
            except OSError:
                pass
        task, self._reader_task = self._reader_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def call(self, method: str, params: list[Any], *,
                   on_result: Callable[[Any], None] | None = None,
                   timeout: float | None = None) -> Any:
        """Send a request and return its result; raise RequestRefused on an error reply.

        ``on_result`` runs as soon as the reply is read, before any later message from
        the pool is handled (so a subscribe result is in force before the first job).
        """
        msg_id, future = await self._request(method, params, on_result)
        try:
            return await asyncio.wait_for(future, timeout or self.REQUEST_TIMEOUT)
        except TimeoutError:
            self._pending.pop(msg_id, None)
            raise

    # -- handshake ---------------------------------------------------------------------

    async def _configure(self) -> int | None:
        options = {"version-rolling.mask": f"{REQUESTED_VERSION_MASK:08x}",
                   "version-rolling.min-bit-count": MIN_VERSION_BITS}
        try:
            result = await self.call("mining.configure", [["version-rolling"], options],
                                     timeout=self.CONFIGURE_TIMEOUT)
        except (RequestRefused, TimeoutError) as exc:
            self.logger.info("pool does not support mining.configure: %s", exc)
            return None
        if not isinstance(result, dict) or result.get("version-rolling") is not True:
            self.logger.info("pool refused version rolling")
            return None
        try:
            mask = int(str(result.get("version-rolling.mask", "")), 16)
        except ValueError:
            raise MinerError(f"bad version-rolling.mask in {result!r}") from None
        # Never roll a bit the pool did not grant, nor one we did not ask for.
        mask &= REQUESTED_VERSION_MASK
        if not mask:
            self.logger.info("pool granted an empty version mask: not rolling")
            return None
        self._version_mask = mask
        self.logger.info("version rolling granted with mask %08x", mask)
        return mask

    def _on_subscribed(self, result: Any) -> None:
        try:
            _subscriptions, extranonce1, size = result
            extranonce1_bytes = bytes.fromhex(extranonce1)
        except (TypeError, ValueError):
            raise MinerError(f"bad mining.subscribe result {result!r}") from None
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 32:
            raise MinerError(f"bad extranonce2_size in mining.subscribe result {result!r}")
        self._extranonce1 = extranonce1_bytes
        self._extranonce2_size = size
        self.logger.info("subscribed: extranonce1 %s, extranonce2 size %d", extranonce1, size)

    # -- mining ------------------------------------------------------------------------

    def _running(self) -> bool:
        return not (self._stop_requested or self._lost or self._closing)

    async def _mine(self) -> None:
        self.started_at = time.monotonic()
        self._throttle_clock = self.started_at
        try:
            while self._running():
                job = self._job
                if job is None:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                await self._mine_job(job)
        finally:
            self.stopped_at = time.monotonic()

    def _current(self, job: MinerJob) -> bool:
        return self._job is job and self._running()

    async def _mine_job(self, job: MinerJob) -> None:
        """Mine one job until another replaces it or mining stops: the version mask walk
        is the inner loop, then nonce ranges, then extranonce2."""
        versions = 1 << bin(job.version_mask).count("1")
        en2_space = 1 << (8 * job.extranonce2_size)
        while True:
            extranonce2 = (self._extranonce2 % en2_space).to_bytes(job.extranonce2_size,
                                                                    "little")
            root = job.merkle_root_le(extranonce2)
            batch = self.batch_size
            for first_nonce in range(0, NONCE_SPACE, batch):
                end = min(first_nonce + batch, NONCE_SPACE)
                for index in range(versions):
                    version = job.version ^ deposit_bits(index, job.version_mask)
                    header76 = build_header(version, job.prev_hash_le, root, job.ntime,
                                            job.bits, 0)[:76]
                    nonce = first_nonce
                    while nonce < end:
                        if not self._current(job):
                            return
                        hit = await asyncio.to_thread(find_nonce, self.algorithm, header76,
                                                      nonce, end - nonce, job.share_target)
                        scanned = (hit[0] + 1 if hit else end) - nonce
                        self.hashes += scanned
                        await self._throttle(scanned)
                        if hit is None:
                            break
                        nonce = hit[0] + 1
                        # A clean job or stop() may have come while hashing.
                        if not self._running() or job.seq < self._fresh_from:
                            return
                        if await self._submit(job, extranonce2, hit[0], version, hit[1]):
                            await self._await_new_job(job)
            self._extranonce2 += 1

    async def _await_new_job(self, job: MinerJob) -> None:
        """After a block candidate, give the pool BLOCK_WAIT seconds to send the next job:
        more work on this one could only make sibling blocks, which would be orphaned."""
        deadline = time.monotonic() + self.BLOCK_WAIT
        while self._current(job):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.logger.debug("no new job %gs after a block candidate: going on",
                                  self.BLOCK_WAIT)
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    async def _throttle(self, hashes: int) -> None:
        if self.hashrate_limit is None:
            return
        # A virtual clock: each batch books hashes/limit seconds; idle time is not saved up.
        now = time.monotonic()
        self._throttle_clock = max(self._throttle_clock, now) + hashes / self.hashrate_limit
        if self._throttle_clock > now:
            await asyncio.sleep(self._throttle_clock - now)

    async def _submit(self, job: MinerJob, extranonce2: bytes, nonce: int, version: int,
                      digest: bytes) -> bool:
        """Send a share without waiting for the result; return whether it is also a block
        candidate."""
        params = [self.username, job.job_id, extranonce2.hex(), u32_to_stratum(job.ntime),
                  f"{nonce:08x}"]
        if job.version_mask:
            params.append(f"{version & job.version_mask:08x}")
        block = hash_to_int(digest) <= job.network_target
        if block:
            self.blocks_candidates += 1
            self.logger.info("share %s also meets the network target of job %s",
                             digest[::-1].hex(), job.job_id)
        self.submitted += 1
        _, future = await self._request("mining.submit", params, None)
        self._submits.add(future)
        future.add_done_callback(self._on_submit_result)
        if self.max_shares is not None and self.submitted >= self.max_shares:
            self.logger.info("submitted %d shares: stopping", self.submitted)
            self._stop_requested = True
        return block

    def _on_submit_result(self, future: asyncio.Future[Any]) -> None:
        self._submits.discard(future)
        if future.cancelled():
            return
        exc = future.exception()
        if isinstance(exc, RequestRefused):
            self._count_reject(exc.code, exc.message)
        elif exc is not None:
            return  # the connection went away; run() reports that
        elif future.result() is True:
            self.accepted += 1
        else:
            self._count_reject(OTHER_ERROR, f"result {future.result()!r}")

    def _count_reject(self, code: int, message: str) -> None:
        self.rejected += 1
        self.reject_reasons[code] = self.reject_reasons.get(code, 0) + 1
        self.logger.info("share rejected: [%d] %s", code, message)

    async def _drain(self) -> None:
        if self._submits and not self._lost:
            await asyncio.wait(set(self._submits), timeout=self.DRAIN_TIMEOUT)

    # -- wire --------------------------------------------------------------------------

    async def _request(self, method: str, params: list[Any],
                       on_result: Callable[[Any], None] | None
                       ) -> tuple[int, asyncio.Future[Any]]:
        if self._writer is None or self._lost:
            raise ConnectionError("not connected to the pool")
        self._next_id += 1
        msg_id = self._next_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = (method, future, on_result)
        await self._send({"id": msg_id, "method": method, "params": params})
        return msg_id, future

    async def _fire(self, method: str, params: list[Any]) -> None:
        """Send a request without waiting: its answer, whatever it is, only gets logged."""

        def done(future: asyncio.Future[Any]) -> None:
            if future.cancelled():
                return
            exc = future.exception()
            self.logger.debug("%s: %s", method, exc if exc is not None else future.result())

        _, future = await self._request(method, params, None)
        future.add_done_callback(done)

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._writer is not None
        self._writer.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        await self._writer.drain()

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                if line.strip():
                    await self._handle_line(line)
        except (OSError, ValueError) as exc:
            # ValueError: a line longer than MAX_LINE.
            if not self._closing:
                self.logger.warning("connection to the pool failed: %s", exc)
        finally:
            if not self._closing:
                self.logger.warning("pool closed the connection")
                self._dropped = True
            self._lost = True
            pending, self._pending = self._pending, {}
            for _, future, _ in pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection to the pool closed"))
            self._wake.set()

    async def _handle_line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            self.logger.warning("ignoring a line that is not JSON: %r", line[:200])
            return
        if not isinstance(message, dict):
            self.logger.warning("ignoring a message that is not an object: %r", line[:200])
            return
        method = message.get("method")
        if isinstance(method, str):
            await self._handle_request(message.get("id"), method, message.get("params"))
            return
        msg_id = message.get("id")
        entry = self._pending.pop(msg_id, None) if isinstance(msg_id, int) else None
        if entry is None:
            self.logger.debug("ignoring a reply to no request: %r", line[:200])
            return
        name, future, on_result = entry
        if future.done():
            return  # the caller gave up waiting
        error = message.get("error")
        if error is not None:
            code, text = _error_parts(error)
            future.set_exception(RequestRefused(name, code, text))
            return
        result = message.get("result")
        if on_result is not None:
            try:
                on_result(result)
            except MinerError as exc:
                future.set_exception(exc)
                return
        future.set_result(result)

    async def _handle_request(self, msg_id: Any, method: str, params: Any) -> None:
        params = params if isinstance(params, list) else []
        handler = self._HANDLERS.get(method)
        if handler is None:
            self.logger.debug("unknown method %r from the pool", method[:64])
            if msg_id is not None:
                await self._send({"id": msg_id, "result": None,
                                  "error": [OTHER_ERROR, "unknown method", None]})
            return
        try:
            result = handler(self, params)
        except (TypeError, ValueError, IndexError) as exc:  # incl. SerializationError
            self.logger.warning("ignoring a malformed %s: %s", method, exc)
            result = None
        if msg_id is not None:
            await self._send({"id": msg_id, "result": result, "error": None})

    # -- messages from the pool --------------------------------------------------------

    def _m_set_difficulty(self, params: list[Any]) -> None:
        value = params[0] if params else None
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not 0 < value < math.inf:
            raise ValueError(f"difficulty {value!r} is not a positive number")
        self._difficulty = float(value)
        self.logger.debug("difficulty %g for the next job", self._difficulty)

    def _m_notify(self, params: list[Any]) -> None:
        job_id, prev, coinb1, coinb2, branch, version, bits, ntime, clean = \
            parse_notify(params)
        if self._extranonce1 is None:
            raise ValueError("mining.notify before the subscribe result")
        try:
            network_target = bits_to_target(bits)
        except ValueError:
            network_target = 0
        self._job_seq += 1
        job = MinerJob(
            seq=self._job_seq, job_id=job_id, prev_hash_le=prev, coinb1=coinb1,
            coinb2=coinb2, merkle_branch=branch, version=version, bits=bits, ntime=ntime,
            clean=clean, difficulty=self._difficulty, extranonce1=self._extranonce1,
            extranonce2_size=self._extranonce2_size, version_mask=self._version_mask,
            share_target=self.algorithm.difficulty_to_target(self._difficulty),
            network_target=network_target)
        if clean:
            self._fresh_from = job.seq
        self._job = job
        self._wake.set()
        self.logger.debug("job %s (clean %s) at difficulty %g", job_id, clean, job.difficulty)

    def _m_set_extranonce(self, params: list[Any]) -> None:
        extranonce1, size = params[0], params[1]
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= 32:
            raise ValueError(f"extranonce2 size {size!r} is out of range")
        self._extranonce1 = bytes.fromhex(extranonce1)
        self._extranonce2_size = size
        self.logger.info("extranonce1 %s, extranonce2 size %d from the next job",
                         extranonce1, size)

    def _m_set_version_mask(self, params: list[Any]) -> None:
        if self.handshake is None or self.handshake.version_mask is None:
            return  # never asked to roll: nothing to narrow
        self._version_mask = int(params[0], 16) & self.handshake.version_mask
        self.logger.info("version mask %08x from the next job", self._version_mask)

    def _m_reconnect(self, params: list[Any]) -> None:
        self.logger.warning("pool asks to reconnect to %s (ignored)", params[:3])

    def _m_show_message(self, params: list[Any]) -> None:
        self.logger.warning("message from the pool: %s", str(params[0] if params else "")[:500])

    def _m_get_version(self, params: list[Any]) -> str:
        return USER_AGENT

    _HANDLERS: dict[str, Callable[[StratumMiner, list[Any]], Any]] = {
        "mining.set_difficulty": _m_set_difficulty,
        "mining.notify": _m_notify,
        "mining.set_extranonce": _m_set_extranonce,
        "mining.set_version_mask": _m_set_version_mask,
        "client.reconnect": _m_reconnect,
        "client.show_message": _m_show_message,
        "client.get_version": _m_get_version,
    }


def _error_parts(error: Any) -> tuple[int, str]:
    """Given a JSON-RPC error ([code, message, data], an object or a string), return
    (code, message); a missing or odd code becomes 20 (other)."""
    if isinstance(error, list) and error:
        code = error[0]
        text = error[1] if len(error) > 1 else ""
    elif isinstance(error, dict):
        code, text = error.get("code"), error.get("message", "")
    else:
        code, text = OTHER_ERROR, error
    if isinstance(code, bool) or not isinstance(code, int):
        code = OTHER_ERROR
    return code, str(text)[:200]
