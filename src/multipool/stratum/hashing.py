"""Slow proof-of-work checks (scrypt) off the event loop, in batches.

Handing each share to a thread pool on its own costs a future, a thread wake-up and a
loop wake-up per share: at thousands of shares a second that overhead eats a core.
Shares that arrive in the same loop iteration are hashed as one batch per worker thread
instead; hashlib.scrypt releases the GIL, so the threads use every core.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor

HashDone = Callable[[bytes | None], None]


class HashBatcher:
    """Collects headers during one loop iteration and hashes them in ``workers`` chunks."""

    def __init__(self, pow_hash: Callable[[bytes], bytes], executor: Executor, workers: int):
        self.pow_hash = pow_hash
        self.executor = executor
        self.workers = max(1, workers)
        self.pending: list[tuple[bytes, HashDone]] = []
        self.scheduled = False

    def submit(self, header: bytes, done: HashDone) -> None:
        """Hash ``header`` soon; ``done`` gets the hash, or None if the pool shut down."""
        self.pending.append((header, done))
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _hash_many(self, headers: list[bytes]) -> list[bytes]:
        pow_hash = self.pow_hash
        return [pow_hash(header) for header in headers]

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
                future = loop.run_in_executor(self.executor, self._hash_many,
                                              [header for header, _ in chunk])
            except RuntimeError:  # executor shut down: the server is closing
                for _, done in chunk:
                    done(None)
                continue
            future.add_done_callback(lambda fut, chunk=chunk: self._deliver(fut, chunk))

    @staticmethod
    def _deliver(future: asyncio.Future[list[bytes]],
                 chunk: list[tuple[bytes, HashDone]]) -> None:
        results = None if future.cancelled() or future.exception() else future.result()
        for i, (_, done) in enumerate(chunk):
            done(results[i] if results is not None else None)
