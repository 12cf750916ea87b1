"""A whole pool engine and the web process, run for tests and benchmarks that look at
them from outside (a browser, a load generator).

:class:`LivePool` runs the engine as `multipool pool serve` composes it
(:func:`multipool.engine.run_pool`: share writer, block tracker, payments, stats, the
public status file) in a thread of its own with its own event loop, so that synchronous
callers (Playwright's sync API, a benchmark's main loop) can go on while it serves, and
runs test miners on its stratum port in that loop. :func:`web_process` starts a real
`multipool web serve` on a free loopback port and stops it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from multipool.config import CoinConfig
from multipool.devnet import free_port
from multipool.engine import ServiceIntervals, run_pool
from multipool.miner import StratumMiner

T = TypeVar("T")
# urllib would use a proxy from the environment; these requests go to loopback only.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class LivePool:
    """One coin's pool engine (``config``, with ``public_dir`` set) running in a thread.

    ``start()`` returns once the status file says the stratum port is open; ``stop()``
    stops the miners, then the engine (its final flush included), then the thread.
    """

    STOP_TIMEOUT = 60.0

    def __init__(self, config: CoinConfig, *, intervals: ServiceIntervals):
        assert config.pool.public_dir is not None, "the status file is how start() waits"
        self.config = config
        self.intervals = intervals
        self.status_file = Path(config.pool.public_dir) / "status.json"
        self.port = config.stratum.ports[0].port
        self.miners: list[StratumMiner] = []
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._miner_tasks: list[asyncio.Task[None]] = []
        self._thread = threading.Thread(target=self._run, name="live-pool", daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the thread that waits in start()
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        pool = asyncio.create_task(run_pool(self.config, intervals=self.intervals))
        self._ready.set()
        stop = asyncio.create_task(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({pool, stop}, return_when=asyncio.FIRST_COMPLETED)
            if pool in done:
                pool.result()  # an engine that ended by itself: its error, in the test
                raise RuntimeError("the pool engine stopped by itself")
        finally:
            stop.cancel()
            await self._stop_miners()
            pool.cancel()
            await asyncio.wait({pool}, timeout=self.STOP_TIMEOUT - 10)

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coroutine`` in the pool's event loop; return its result."""
        assert self._loop is not None, "not started"
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def start(self, timeout: float = 90) -> None:
        self._thread.start()
        self._ready.wait(30)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None or not self._thread.is_alive():
                raise RuntimeError(f"the pool engine stopped: {self.error!r}")
            status = self.status()
            if status is not None and status["stratum"]["open"]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"the stratum port did not open in {timeout} s; "
                           f"last status: {self.status()}")

    def status(self) -> dict[str, Any] | None:
        """The engine's status.json as last written (None before the first)."""
        try:
            return json.loads(self.status_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def add_miner(self, username: str, **options: Any) -> StratumMiner:
        """Start a scrypt test miner for ``username`` on the stratum port."""
        async def start() -> StratumMiner:
            miner = StratumMiner(host="127.0.0.1", port=self.port, username=username,
                                 algorithm="scrypt", **options)
            self._miner_tasks.append(asyncio.create_task(miner.run()))
            return miner
        miner = self.call(start())
        self.miners.append(miner)
        return miner

    def stop_miners(self) -> None:
        self.call(self._stop_miners())

    async def _stop_miners(self) -> None:
        for miner in self.miners:
            miner.stop()
        tasks, self._miner_tasks = self._miner_tasks, []
        if tasks:
            _, running = await asyncio.wait(tasks, timeout=30)
            for task in running:
                task.cancel()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(self.STOP_TIMEOUT)
        if self._thread.is_alive():
            raise RuntimeError(f"the pool engine did not stop in {self.STOP_TIMEOUT} s")

    def __enter__(self) -> LivePool:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    """GET ``url`` (loopback); return the status and the body, for any status."""
    try:
        with OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def web_process(root: Path, *, port: int | None = None, public_host: str = "127.0.0.1",
                options: tuple[str, ...] = (), log: Path | None = None, nice: int = 0
                ) -> Iterator[str]:
    """Run `multipool web serve` for ``root`` on 127.0.0.1 (a free port unless given),
    at the given nice value; yield its base URL (``http://127.0.0.1:PORT``) once /healthz
    answers. The process is stopped (SIGTERM, then SIGKILL) when the block ends, however
    it ends."""
    port = port or free_port()
    log = log or root / "web.log"
    argv = [sys.executable, "-m", "multipool.cli", "web", "serve", "--root", str(root),
            "--listen", f"127.0.0.1:{port}", "--public-host", public_host,
            "--metrics-listen", "", "--allow-root", "--log-level", "warning", *options]
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, stdout=output, stderr=subprocess.STDOUT,
                                   preexec_fn=(lambda: os.nice(nice)) if nice else None)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"multipool web serve exited with {process.returncode}:"
                                   f"\n{log.read_text()[-3000:]}")
            try:
                if get(f"{base}/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"multipool web serve did not answer in 30 s:\n"
                                   f"{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
