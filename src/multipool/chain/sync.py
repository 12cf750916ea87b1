"""Is the coin daemon in step with its network? The stratum ports depend on the answer.

A daemon in initial block download, one whose headers run ahead of its blocks, or one
without peers hands out work on an old tip: every share on it is wasted and a block
found on it is an orphan (and a daemon without peers cannot relay it anyway). The pool
engine opens its stratum ports only while the daemon is synced and closes them when it
falls behind, so miners go to their backup pools instead.

:class:`SyncState` is one reading of the daemon; :class:`SyncGate` turns successive
readings into open/close decisions, with some tolerance against flapping;
:class:`SyncWatcher` takes the readings.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from multipool.chain.rpc import DaemonError

# Headers may run this far ahead of blocks without the daemon counting as behind: while
# a new block is downloaded and connected, headers == blocks + 1 for a moment.
MAX_HEADER_LAG = 2
# Without an initialblockdownload field, a daemon counts as synced from this progress.
OLD_DAEMON_SYNCED_PROGRESS = 0.9999
# Consecutive readings that must find the daemon behind before open ports close.
CLOSE_AFTER = 2


class SyncSourceAPI(Protocol):
    """What the sync watcher needs from a coin daemon (DaemonClient has it)."""

    async def getblockchaininfo(self) -> dict[str, Any]: ...

    async def getconnectioncount(self) -> int: ...


@dataclass(frozen=True, slots=True)
class SyncState:
    """One reading of the daemon's sync state.

    ``error`` is set when the daemon gave no usable answer (the numbers are then zero);
    ``best_hash`` is the hash of its best block ("" when unknown).
    """

    blocks: int
    headers: int
    peers: int
    initial_download: bool
    verification_progress: float
    best_hash: str = ""
    error: str | None = None
    max_header_lag: int = MAX_HEADER_LAG

    @classmethod
    def from_rpc(cls, chain_info: dict[str, Any], peers: int, *,
                 max_header_lag: int = MAX_HEADER_LAG) -> SyncState:
        """Given getblockchaininfo's answer and getconnectioncount's, return the state.

        Daemons forked before Bitcoin Core 0.16 have no ``initialblockdownload``: their
        verification progress stands in for it (and blocks for headers before 0.10)."""
        try:
            blocks = int(chain_info["blocks"])
            progress = float(chain_info.get("verificationprogress", 1.0))
            initial_download = chain_info.get("initialblockdownload")
            if initial_download is None:
                initial_download = progress < OLD_DAEMON_SYNCED_PROGRESS
            return cls(blocks=blocks, headers=int(chain_info.get("headers", blocks)),
                       peers=int(peers), initial_download=bool(initial_download),
                       verification_progress=progress,
                       best_hash=str(chain_info.get("bestblockhash", "")),
                       max_header_lag=max_header_lag)
        except (KeyError, TypeError, ValueError) as exc:
            return cls.unknown(f"unexpected getblockchaininfo answer: {exc!r}")

    @classmethod
    def unknown(cls, error: str) -> SyncState:
        """A reading that failed: the daemon did not answer, or not as expected."""
        return cls(blocks=0, headers=0, peers=0, initial_download=True,
                   verification_progress=0.0, error=error)

    @property
    def synced(self) -> bool:
        return self.reason is None

    @property
    def reason(self) -> str | None:
        """Why the daemon is behind, for people; None when it is synced."""
        if self.error is not None:
            return self.error
        if self.initial_download:
            return f"initial block download {self.verification_progress:.0%}"
        if self.headers - self.blocks > self.max_header_lag:
            return f"headers {self.headers} > blocks {self.blocks}"
        if self.peers <= 0:
            return "no peers"
        return None

    def __str__(self) -> str:
        if self.error is not None:
            return self.error
        return (f"blocks {self.blocks}, headers {self.headers}, peers {self.peers}"
                + (f", initial block download {self.verification_progress:.0%}"
                   if self.initial_download else ""))


class Gate(enum.Enum):
    OPEN = "open"
    CLOSE = "close"


class SyncGate:
    """Decides from successive :class:`SyncState` readings when the stratum ports open
    and close (the caller does the opening and closing, then calls :meth:`opened` or
    :meth:`closed`).

    Open ports close only after ``close_after`` readings in a row found the daemon
    behind, so one odd reading does not throw every miner off; closed ports open on the
    first synced reading, once the caller says its work is ready.
    """

    def __init__(self, *, close_after: int = CLOSE_AFTER):
        if close_after < 1:
            raise ValueError("close_after must be at least 1")
        self.close_after = close_after
        self.is_open = False
        self.behind_count = 0

    def update(self, state: SyncState, *, ready: bool = True) -> Gate | None:
        """Given a reading and whether there is current work to hand out, return OPEN or
        CLOSE when the ports should change, else None."""
        if state.synced:
            self.behind_count = 0
            return Gate.OPEN if not self.is_open and ready else None
        self.behind_count += 1
        if self.is_open and self.behind_count >= self.close_after:
            return Gate.CLOSE
        return None

    def opened(self) -> None:
        self.is_open = True

    def closed(self) -> None:
        self.is_open = False
        self.behind_count = 0


class SyncWatcher:
    """Reads the daemon's sync state every ``interval`` seconds (sooner after
    :meth:`wake`). A reading that takes longer than ``answer_timeout`` (the client keeps
    retrying an unreachable daemon) or fails counts as a reading of a daemon behind."""

    def __init__(self, daemon: SyncSourceAPI, *, interval: float = 5.0,
                 answer_timeout: float = 30.0, max_header_lag: int = MAX_HEADER_LAG,
                 logger: logging.Logger | None = None):
        if interval <= 0 or answer_timeout <= 0:
            raise ValueError("interval and answer_timeout must be positive")
        self.daemon = daemon
        self.interval = interval
        self.answer_timeout = answer_timeout
        self.max_header_lag = max_header_lag
        self.logger = logger or logging.getLogger(__name__)
        self._wake = asyncio.Event()

    async def read(self) -> SyncState:
        """Return the daemon's state now; a failure is a state with ``error`` set."""
        self._wake.clear()  # a wake() from now on calls for a newer reading
        try:
            async with asyncio.timeout(self.answer_timeout):
                chain_info = await self.daemon.getblockchaininfo()
                peers = await self.daemon.getconnectioncount()
        except TimeoutError:
            return SyncState.unknown(f"daemon gave no answer in {self.answer_timeout:g}s")
        except DaemonError as exc:
            return SyncState.unknown(f"daemon error: {exc}")
        if not isinstance(chain_info, dict):
            return SyncState.unknown(f"unexpected getblockchaininfo answer: {chain_info!r}")
        state = SyncState.from_rpc(chain_info, peers, max_header_lag=self.max_header_lag)
        self.logger.debug("daemon sync state: %s", state)
        return state

    def wake(self) -> None:
        """End the current :meth:`sleep` (or the next one) at once."""
        self._wake.set()

    async def sleep(self) -> None:
        """Wait ``interval`` seconds, or less if :meth:`wake` is called."""
        # asyncio.timeout, not wait_for (see JobManager._refresh_loop).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval):
                await self._wake.wait()
