"""Slow proof-of-work checks (scrypt) off the event loop, in batches, in supervised
worker processes.

Handing each share to a pool on its own costs a future and two wake-ups per share: at
thousands of shares a second that overhead eats a core. Shares that arrive in the same
loop iteration are hashed as one batch per worker instead (:class:`HashBatcher`).

The workers are processes, not threads. hashlib.scrypt releases the GIL, but each hash
still needs the GIL to start and to return, and the event loop holds it for most of its
own work: measured here (bench/shares_per_second.py, 2 cores), threads reached 70 % of
the raw two-thread scrypt rate and left a third of a core idle, processes 81 %.

The workers are supervised (:class:`WorkerPool`), not a ``ProcessPoolExecutor``: one
dead worker (SIGKILL, the OOM killer) breaks an executor for good, and every share after
it would go unanswered. Here a worker that dies is replaced at once (then after 1, 2, 5,
10, 30 s while replacements keep dying young), the batch it held is hashed again by
another worker, and both are logged. A batch that took ``MAX_ATTEMPTS`` workers down with
it, or that finds no worker alive while none can be started, is hashed in a thread: a
share is always answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import logging
import multiprocessing
import os
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.spawn import get_executable
from typing import Any

from multipool.errors import PoolError
from multipool.supervision import describe_exit

HashDone = Callable[[bytes], None]
HEADER_SIZE = 80
HASH_SIZE = 32
READY = b"R"


class WorkerStartError(PoolError):
    """A share-check worker process could not be started."""


def hash_many(pow_hash: Callable[[bytes], bytes], headers: list[bytes]) -> list[bytes]:
    """Given a hash function and headers, return their hashes."""
    return [pow_hash(header) for header in headers]


# linux/prctl.h
PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int) -> None:
    """Die with the engine, even when it is killed with -9.

    A worker otherwise outlives a killed engine: it keeps the engine's stdout/stderr
    open. On Linux the kernel kills it when its parent goes (PR_SET_PDEATHSIG); the
    parent check covers a parent that died before that was set.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def worker_main(sock: socket.socket, pow_hash: Callable[[bytes], bytes],
                parent_pid: int) -> None:
    """A worker process: read ``count`` (4 bytes LE) and ``count`` 80-byte headers,
    answer their hashes (32 bytes each, in order), until the engine hangs up."""
    exit_with_parent(parent_pid)
    with sock, sock.makefile("rb") as stream:
        sock.sendall(READY)
        while True:
            head = stream.read(4)
            if len(head) < 4:
                return
            (count,) = struct.unpack("<I", head)
            data = stream.read(HEADER_SIZE * count)
            if len(data) < HEADER_SIZE * count:
                return
            sock.sendall(b"".join(pow_hash(data[i:i + HEADER_SIZE])
                                  for i in range(0, len(data), HEADER_SIZE)))


@dataclass(eq=False, slots=True)
class _Batch:
    headers: list[bytes]
    future: asyncio.Future[list[bytes]]
    attempts: int = 0


@dataclass(eq=False, slots=True)
class _Worker:
    slot: int
    process: BaseProcess
    pid: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    started: float
    dead: asyncio.Future[None]
    batch: _Batch | None = None


@dataclass(slots=True)
class PoolCounters:
    deaths: int = 0
    restarts: int = 0
    rechecked: int = 0  # shares hashed again after their worker died
    in_thread: int = 0  # shares hashed in a thread (no worker could take them)
    start_failures: int = 0


class WorkerPool:
    """``workers`` supervised processes hashing batches of 80-byte headers."""

    # Back-off between replacements of a worker that keeps dying young (seconds).
    RESTART_DELAYS = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0)
    # A worker that lived this long counts as healthy: its death restarts the back-off.
    STABLE_AFTER = 60.0
    # Seconds a new worker has to say it is ready (a spawn imports the package).
    START_TIMEOUT = 60.0
    # A batch (at most MAX_BATCH headers, well under a second of work) not answered in
    # this time means a hung worker: it is killed and replaced.
    BATCH_TIMEOUT = 30.0
    # Workers that may die with one batch before it is hashed in a thread instead.
    MAX_ATTEMPTS = 3
    # Headers per request: 40 KB, so a write to an idle worker never blocks.
    MAX_BATCH = 512

    def __init__(self, pow_hash: Callable[[bytes], bytes], workers: int, *,
                 logger: logging.Logger | None = None):
        self.pow_hash = pow_hash
        self.size = max(1, workers)
        self.logger = logger or logging.getLogger("multipool.stratum.hashing")
        self.context = multiprocessing.get_context("spawn")
        self.counters = PoolCounters()
        self.workers: dict[int, _Worker] = {}
        self._queue: deque[_Batch] = deque()
        self._has_work = asyncio.Event()
        self._slots: list[asyncio.Task[None]] = []
        self._threads: set[asyncio.Task[None]] = set()
        self._failing_slots: set[int] = set()
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------

    @property
    def started(self) -> bool:
        return bool(self._slots)

    async def start(self) -> None:
        """Start every worker and wait until each is ready; raise WorkerStartError,
        with the reason, if one cannot be started (a setup error: say so at once)."""
        if self._slots:
            return
        self._check_executable()
        first = await asyncio.gather(*(self._spawn(slot) for slot in range(self.size)),
                                     return_exceptions=True)
        errors = [result for result in first if isinstance(result, BaseException)]
        if errors:
            for result in first:
                if isinstance(result, _Worker):
                    await self._kill(result)
            raise errors[0]
        for worker in first:
            assert isinstance(worker, _Worker)
            self.workers[worker.slot] = worker
        self._slots = [asyncio.create_task(self._serve_slot(slot), name=f"hash-worker-{slot}")
                       for slot in range(self.size)]
        self.logger.info("%d share-check worker processes started (pids %s)", self.size,
                         ", ".join(str(w.pid) for w in self.workers.values()))

    @staticmethod
    def _check_executable() -> None:
        """A spawned worker execs the interpreter again, as the engine's own user:
        refuse early and clearly when that user cannot (a Python inside a home
        directory closed to it, e.g. /root)."""
        executable = os.fsdecode(get_executable())
        if os.access(executable, os.X_OK):
            return
        try:
            os.stat(executable)
        except FileNotFoundError:
            why = "does not exist"
        except PermissionError:
            why = ("cannot be reached: a directory on its path is closed to this user "
                   "(as a Python installed under /root is)")
        else:
            why = "is not executable"
        raise WorkerStartError(
            f"cannot start share-check worker processes: the interpreter {executable} "
            f"{why} (uid {os.getuid()}); run the pool with an interpreter every service "
            "user can execute")

    async def close(self) -> None:
        """Stop the workers; batches still waiting get no answer (shutdown)."""
        self._closed = True
        for task in [*self._slots, *self._threads]:
            task.cancel()
        await asyncio.gather(*self._slots, *self._threads, return_exceptions=True)
        self._slots = []
        for worker in list(self.workers.values()):
            await self._kill(worker)
        self.workers.clear()
        while self._queue:
            self._queue.popleft().future.cancel()

    # -- work ----------------------------------------------------------------------

    def hash(self, headers: list[bytes]) -> asyncio.Future[list[bytes]]:
        """Hash ``headers`` (80 bytes each, at most MAX_BATCH) in a worker; the future
        gets their hashes in order (cancelled if the pool is closed first)."""
        if len(headers) > self.MAX_BATCH:
            raise ValueError(f"at most {self.MAX_BATCH} headers per batch, "
                             f"got {len(headers)}")
        future: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.cancel()
            return future
        self._queue.append(_Batch(headers, future))
        self._has_work.set()
        return future

    async def _take(self) -> _Batch:
        while not self._queue:
            self._has_work.clear()
            await self._has_work.wait()
        return self._queue.popleft()

    def _requeue(self, batch: _Batch) -> None:
        self._queue.appendleft(batch)
        self._has_work.set()

    # -- one worker slot -----------------------------------------------------------

    async def _serve_slot(self, slot: int) -> None:
        """Keep one worker alive in ``slot`` and feed it batches, forever."""
        while True:
            try:
                await self._keep_slot(slot)
            except asyncio.CancelledError:
                raise
            except Exception:  # the supervision top level of a slot
                self.logger.critical("share-check worker slot %d failed; restarting it "
                                     "in 1 s", slot, exc_info=True)
                worker = self.workers.pop(slot, None)
                if worker is not None:
                    await self._kill(worker)
                    if worker.batch is not None and not worker.batch.future.done():
                        self._requeue(worker.batch)
                await asyncio.sleep(1.0)

    async def _keep_slot(self, slot: int) -> None:
        quick_deaths = 0
        while True:
            worker = self.workers.get(slot)
            if worker is None:
                delay = self.RESTART_DELAYS[min(quick_deaths, len(self.RESTART_DELAYS) - 1)]
                worker = await self._restart(slot, delay)
                if worker is None:
                    quick_deaths += 1
                    continue
                self.workers[slot] = worker
                self._failing_slots.discard(slot)
            reason = await self._feed(worker)
            del self.workers[slot]
            lived = time.monotonic() - worker.started
            quick_deaths = 0 if lived >= self.STABLE_AFTER else quick_deaths + 1
            self._buried(worker, reason)

    async def _restart(self, slot: int, delay: float) -> _Worker | None:
        """Wait ``delay`` seconds (serving the queue in a thread if no worker is
        alive), then start a worker; None if it could not be started."""
        if delay:
            await self._wait_serving_in_thread(delay)
        began = time.monotonic()
        try:
            worker = await self._spawn(slot)
        except WorkerStartError as exc:
            self.counters.start_failures += 1
            if slot not in self._failing_slots:
                self.logger.error("cannot replace share-check worker %d: %s", slot, exc)
            self._failing_slots.add(slot)
            return None
        self.counters.restarts += 1
        self.logger.warning("share-check worker %d replaced: pid %d, ready in %.2f s",
                            slot, worker.pid, time.monotonic() - began)
        return worker

    async def _wait_serving_in_thread(self, delay: float) -> None:
        """Sleep ``delay`` seconds; meanwhile, while no worker at all is alive, hash
        waiting batches in a thread so that no miner waits for a worker that may never
        come back."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            if self.workers or not self._queue:
                await asyncio.sleep(min(left, 0.5))
                continue
            batch = self._queue.popleft()
            await self._hash_in_thread(batch)

    async def _hash_in_thread(self, batch: _Batch) -> None:
        self.counters.in_thread += len(batch.headers)
        try:
            hashes = await asyncio.to_thread(hash_many, self.pow_hash, batch.headers)
        except asyncio.CancelledError:
            self._requeue(batch)
            raise
        if not batch.future.done():
            batch.future.set_result(hashes)

    async def _feed(self, worker: _Worker) -> str:
        """Hand batches to ``worker`` until it dies; return why it died. Its batch in
        flight, if any, goes back to the front of the queue."""
        while True:
            take = asyncio.ensure_future(self._take())
            waiting: set[asyncio.Future[Any]] = {take, worker.dead}
            try:
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not take.done():
                    take.cancel()
            if worker.dead.done():
                if take.done() and not take.cancelled():
                    self._requeue(take.result())
                return await self._death_reason(worker)
            batch = take.result()
            if batch.future.done():  # cancelled by shutdown
                continue
            batch.attempts += 1
            worker.batch = batch
            try:
                worker.writer.write(struct.pack("<I", len(batch.headers))
                                    + b"".join(batch.headers))
                async with asyncio.timeout(self.BATCH_TIMEOUT):
                    data = await worker.reader.readexactly(HASH_SIZE * len(batch.headers))
            except TimeoutError:
                self.logger.error("share-check worker %d (pid %d) did not answer a batch "
                                  "of %d in %g s: killing it", worker.slot,
                                  worker.pid, len(batch.headers),
                                  self.BATCH_TIMEOUT)
                await self._kill(worker)
                return f"hung, killed ({await self._death_reason(worker)})"
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return await self._death_reason(worker)
            worker.batch = None
            if not batch.future.done():
                batch.future.set_result([data[i:i + HASH_SIZE]
                                         for i in range(0, len(data), HASH_SIZE)])

    async def _death_reason(self, worker: _Worker) -> str:
        process = worker.process
        deadline = time.monotonic() + 5.0
        while process.exitcode is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return describe_exit(process.exitcode)

    def _buried(self, worker: _Worker, reason: str) -> None:
        """Log a dead worker and give its batch in flight to another."""
        self.counters.deaths += 1
        self._close_streams(worker)
        with contextlib.suppress(ValueError):  # still running: closed at shutdown
            worker.process.close()
        batch, worker.batch = worker.batch, None
        if batch is None or batch.future.done():
            self.logger.error("share-check worker %d (pid %d) died (%s) while idle; "
                              "replacing it", worker.slot, worker.pid, reason)
            return
        self.counters.rechecked += len(batch.headers)
        if batch.attempts >= self.MAX_ATTEMPTS:
            self.logger.error("share-check worker %d (pid %d) died (%s), the %d worker(s) "
                              "died with this batch: its %d shares are checked in a "
                              "thread; replacing the worker", worker.slot, worker.pid,
                              reason, batch.attempts, len(batch.headers))
            task = asyncio.create_task(self._hash_in_thread(batch))
            self._threads.add(task)
            task.add_done_callback(self._threads.discard)
        else:
            self.logger.error("share-check worker %d (pid %d) died (%s) with a batch of "
                              "%d shares: they are checked again; replacing the worker",
                              worker.slot, worker.pid, reason, len(batch.headers))
            self._requeue(batch)

    # -- processes -----------------------------------------------------------------

    async def _spawn(self, slot: int) -> _Worker:
        """Start one worker process and wait for its ready byte."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        process = self.context.Process(target=worker_main, name=f"multipool-hash-{slot}",
                                       args=(theirs, self.pow_hash, os.getpid()),
                                       daemon=True)
        try:
            try:
                process.start()
            finally:
                theirs.close()
            reader, writer = await asyncio.open_unix_connection(sock=ours)
        except OSError as exc:
            ours.close()
            code = (await asyncio.to_thread(_join, process)
                    if process.pid is not None else None)
            raise WorkerStartError(f"{os.fsdecode(get_executable())} did not start ({exc}; "
                                   f"{describe_exit(code)})") from exc
        dead: asyncio.Future[None] = loop.create_future()
        assert process.pid is not None
        worker = _Worker(slot, process, process.pid, reader, writer, time.monotonic(), dead)
        sentinel = process.sentinel
        loop.add_reader(sentinel, self._on_exit, worker)
        try:
            async with asyncio.timeout(self.START_TIMEOUT):
                ready = await reader.read(1)
        except TimeoutError:
            ready = b""
        if ready != READY:
            await self._kill(worker)
            code = process.exitcode
            # 255 with nothing logged: the spawn's exec of the interpreter failed.
            hint = (f"; the interpreter may not be executable by uid {os.getuid()}"
                    if code == 255 else "")
            raise WorkerStartError(
                f"{os.fsdecode(get_executable())} exited before it was ready "
                f"({describe_exit(code)}{hint}); its own error, if it had one, is above")
        return worker

    def _on_exit(self, worker: _Worker) -> None:
        asyncio.get_running_loop().remove_reader(worker.process.sentinel)
        if not worker.dead.done():
            worker.dead.set_result(None)

    @staticmethod
    def _close_streams(worker: _Worker) -> None:
        worker.writer.close()

    async def _kill(self, worker: _Worker) -> None:
        if worker.process.exitcode is None:
            worker.process.kill()
            await asyncio.to_thread(_join, worker.process)
        if not worker.dead.done():
            asyncio.get_running_loop().remove_reader(worker.process.sentinel)
            worker.dead.set_result(None)
        self._close_streams(worker)


def _join(process: BaseProcess) -> int | None:
    process.join(5.0)
    return process.exitcode


@dataclass
class HashBatcher:
    """Collects headers during one loop iteration and hashes them in one chunk per
    worker of the pool; counts the checks not yet answered."""

    pool: WorkerPool
    pending: list[tuple[bytes, HashDone]] = field(default_factory=list)
    scheduled: bool = False
    in_flight: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def submit(self, header: bytes, done: HashDone) -> None:
        """Hash ``header`` soon; ``done`` gets the hash (never called if the pool is
        closed first: shutdown)."""
        self.pending.append((header, done))
        self.in_flight += 1
        self._idle.clear()
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    async def drain(self, timeout: float) -> bool:
        """Wait until every submitted header is answered (at most ``timeout`` seconds);
        True if none is left."""
        if self.in_flight == 0:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    def _flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, []
        if not pending:
            return
        size = min(-(-len(pending) // self.pool.size), WorkerPool.MAX_BATCH)
        for i in range(0, len(pending), size):
            chunk = pending[i:i + size]
            future = self.pool.hash([header for header, _ in chunk])
            future.add_done_callback(functools.partial(self._deliver, chunk=chunk))

    def _deliver(self, future: asyncio.Future[list[bytes]],
                 chunk: list[tuple[bytes, HashDone]]) -> None:
        self.in_flight -= len(chunk)
        if self.in_flight == 0:
            self._idle.set()
        if future.cancelled():
            return  # the pool was closed: shutdown
        for (_, done), pow_hash in zip(chunk, future.result(), strict=True):
            done(pow_hash)
