"""Slow proof-of-work checks (scrypt) off the event loop, in batches, in worker processes.

Handing each share to a pool on its own costs a future and two wake-ups per share: at
thousands of shares a second that overhead eats a core. Shares that arrive in the same
loop iteration are hashed as one batch per worker instead.

The workers are processes, not threads. hashlib.scrypt releases the GIL, but each hash
still needs the GIL to start and to return, and the event loop holds it for most of its
own work: measured here (bench/shares_per_second.py, 2 cores), threads reached 70 % of
the raw two-thread scrypt rate and left a third of a core idle, processes 81 %.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor

HashDone = Callable[[bytes | None], None]


def hash_many(pow_hash: Callable[[bytes], bytes], headers: list[bytes]) -> list[bytes]:
    """Given a module-level hash function and headers, return their hashes (runs in a
    worker process: both arguments travel by pickle)."""
    return [pow_hash(header) for header in headers]


# linux/prctl.h
PR_SET_PDEATHSIG = 1


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: die with the engine, even when it is killed with -9.

    A worker otherwise outlives a killed engine: it waits on a queue whose write end it
    holds itself, so it never sees end-of-file, and it keeps the engine's stdout/stderr
    open. On Linux the kernel kills it when its parent goes (PR_SET_PDEATHSIG); the
    parent check covers a parent that died before that was set.
    """
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:
        os._exit(1)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool for share checks. 'spawn' because forking a process that runs an
    event loop and threads copies their state half-way. Workers are started from the
    calling thread (the event loop's), which lives as long as the engine: the kernel's
    parent-death signal follows the thread that created a process."""
    return ProcessPoolExecutor(max_workers=workers,
                               mp_context=multiprocessing.get_context("spawn"),
                               initializer=exit_with_parent, initargs=(os.getpid(),))


class HashBatcher:
    """Collects headers during one loop iteration and hashes them in ``workers`` chunks."""

    def __init__(self, pow_hash: Callable[[bytes], bytes], executor: Executor, workers: int):
        self.pow_hash = pow_hash
        self.executor = executor
        self.workers = max(1, workers)
        self.pending: list[tuple[bytes, HashDone]] = []
        self.scheduled = False

    async def warm_up(self) -> None:
        """Start the workers now, so the first miners' shares wait for no process start."""
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self.executor, hash_many, self.pow_hash,
                                                    [bytes(80)])
                               for _ in range(self.workers)))

    def submit(self, header: bytes, done: HashDone) -> None:
        """Hash ``header`` soon; ``done`` gets the hash, or None if the pool shut down."""
        self.pending.append((header, done))
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)


    def _flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, []
        if not pending:
            return
        loop = asyncio.get_running_loop()
        size = -(-len(pending) // self.workers)
        for i in range(0, len(pending), size):
            chunk = pending[i : i + size]
            try:
                future = loop.run_in_executor(self.executor, hash_many, self.pow_hash,
                                              [header for header, _ in chunk])
            except RuntimeError:  # pool shut down: the server is closing
                for _, done in chunk:
                    done(None)
                continue
            future.add_done_callback(functools.partial(self._deliver, chunk=chunk))

    @staticmethod
    def _deliver(future: asyncio.Future[list[bytes]],
                 chunk: list[tuple[bytes, HashDone]]) -> None:
        # A broken pool (a worker killed) fails the chunk: those shares get no answer
        # rather than a wrong one, and the miner resubmits nothing (it just goes on).
        results = None if future.cancelled() or future.exception() else future.result()
        for i, (_, done) in enumerate(chunk):
            done(results[i] if results is not None else None)
