"""Several web processes on one listening socket.

The parent binds the sockets, forks the workers (each runs its own app and event loop
on the inherited sockets; the kernel hands each new connection to one of them) and
waits. A worker that dies is replaced after a second; one that dies more than
MAX_DEATHS times in a minute is a broken start-up rather than bad luck, and the parent
stops every worker and exits 1 so that systemd reports the failure. SIGTERM or SIGINT to
the parent stops every worker gracefully; the parent exits 0 once they have.

Why processes: one Python process runs its pages on one core (the GIL); a miner page
costs milliseconds of CPU, so a busy pool's pages need more than one core.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
RESTART_DELAY = 1.0  # seconds
MAX_DEATHS = 5  # in a minute
MAX_AUTO_WORKERS = 4


def auto_workers(cores: int | None = None) -> int:
    """The workers ``--workers 0`` means: one per core, up to MAX_AUTO_WORKERS (the pool
    engines and daemons need cores and memory too: a worker starts with some 15 MB of its
    own, forked from the parent).

    >>> auto_workers(1), auto_workers(2), auto_workers(64)
    (1, 2, 4)
    """
    return max(1, min(cores or os.cpu_count() or 1, MAX_AUTO_WORKERS))


def run_workers(count: int, worker: Callable[[int], int],
                logger: logging.Logger) -> int:
    """Run ``worker(number)`` (returning an exit status) in ``count`` forked processes,
    numbered from 0, until a stop signal; return the parent's exit status."""
    children: dict[int, int] = {}  # pid -> worker number
    deaths: deque[float] = deque()
    stopping = False
    failed = False

    def start(number: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker: its server handles the stop signals itself
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            status = 1
            try:
                status = worker(number)
            except BaseException:  # the worker's own error, logged before it exits
                logger.exception("web worker %d failed", number)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children[pid] = number

    def stop(sig: int | None = None, _frame: FrameType | None = None) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    try:
        for number in range(count):
            start(number)
        logger.info("%d web workers started (pids %s)", count,
                    ", ".join(str(pid) for pid in children))
        while children:
            try:
                pid, wait_status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            number = children.pop(pid, -1)
            if number < 0 or stopping:
                continue
            logger.warning("web worker %d (pid %d) %s; starting another", number, pid,
                           _describe(wait_status))
            now = time.monotonic()
            deaths.append(now)
            while deaths and now - deaths[0] > 60:
                deaths.popleft()
            if len(deaths) > MAX_DEATHS:
                logger.error("web workers died %d times in a minute: stopping them all",
                             len(deaths))
                failed = True
                stop()
                continue
            time.sleep(RESTART_DELAY)
            if not stopping:
                start(number)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if failed else 0


def _describe(wait_status: int) -> str:
    code = os.waitstatus_to_exitcode(wait_status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
