"""What the web process shows of a pool, published by its engine.

Every ``interval`` seconds the engine writes ``status.json`` into the coin's public
directory (``web/<prefix>/``, group-readable by the web user): the coin, its stratum ports
and whether they are open, the daemon's sync state, hashrate and miners of the last ten
minutes, the last block, blocks in 24 hours, the last payment, and where the pool's
database is (``database``: the SQLite file, or host, port and name; never a credential)
with ``coin.maturity``, the confirmations a block needs to be confirmed, and the
network's hashrate and difficulty (``network``, from the daemon). The index page
needs only this file; the pool and miner pages read the database it names, read-only
(web/data.py).

The file is replaced atomically (a temporary file renamed over it), so a reader never
sees half of it; its ``updated`` time tells the reader whether the engine still runs.

``services`` tells whether each background service works (see supervision.py):
``{"<name>": {"state": "ok" | "degraded", "reason": str | null, "since": ISO time |
null}}`` for ``shares`` (the share writer), ``blocks`` (the block tracker),
``payments``, ``stats`` (the roll-up) and ``status`` (this file). When the database does
not answer, the file is still written, without the figures that come from it (null),
so the web shows the pool as up but degraded rather than offline.

``counters`` is what the engine counted since it started (the Prometheus metrics take
them as counters, which start again from zero when the engine restarts):
``{"shares": {"accepted": n, "rejected": {"other" | "stale" | "duplicate" |
"low_difficulty" | "unauthorized" | "not_subscribed": n}}, "blocks": {"submitted",
"accepted", "refused"}, "connections": n (now), "loop_lag": {"p99_ms", "max_ms",
"samples", "window_seconds"}}`` (looplag.py: how late the stratum loop ran what was due,
over the last minute). ``totals`` comes from the database (null when it does not answer):
``{"blocks": {status: n}, "payments": {state: {"batches": n, "amount": coins as a
decimal string}}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from multipool.accounting.database import database_url, public_location
from multipool.accounting.history import blocks_since
from multipool.accounting.payments import BROADCAST, CONFIRMED, FAILED, INTENT, VOIDING
from multipool.accounting.schema import CANDIDATE, blocks, payment_batches
from multipool.accounting.stats import pool_activity
from multipool.accounting.tracker import BlockTracker
from multipool.atomicfile import write_atomically
from multipool.chain.rpc import DaemonClient, DaemonError
from multipool.chain.sync import SyncState
from multipool.config import CoinConfig, format_coins, to_units
from multipool.supervision import Health

STATUS_FILE = "status.json"
FORMAT_VERSION = 1
# The window of hashrate and miners, as on `multipool status`.
WINDOW_SECONDS = 600.0
# Seconds the status waits for the daemon's network figures.
NETWORK_TIMEOUT = 5.0
# Shown in ``totals`` even at zero, so a metric exists before its first block or batch.
BLOCK_STATUSES = (CANDIDATE, "pending", "confirmed", "orphaned")
BATCH_STATES = (INTENT, BROADCAST, CONFIRMED, VOIDING, FAILED)


def _iso(time: datetime | None) -> str | None:
    if time is None:
        return None
    if time.tzinfo is None:  # SQLite and MariaDB hand back naive UTC
        time = time.replace(tzinfo=UTC)
    return time.isoformat()


class EngineView(Protocol):
    """What the status shows of the running engine (PoolEngine has it)."""

    @property
    def sync_state(self) -> SyncState | None: ...

    @property
    def stratum_open(self) -> bool: ...

    def counters(self) -> dict[str, Any]: ...


class MiningInfoSource(Protocol):
    """Where the network's figures come from (the daemon client has it)."""

    async def getmininginfo(self) -> dict[str, Any]: ...


def _positive(value: object) -> float | None:
    """A daemon's number (a Decimal, as the client parses them) as a float, or None when
    it is not a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


class PublicStatusWriter:
    """Writes the pool's public status file, one round per :meth:`publish`."""

    def __init__(self, *, config: CoinConfig, database: AsyncEngine, engine: EngineView,
                 directory: Path, services: Callable[[], Mapping[str, Health]],
                 daemon: MiningInfoSource | None = None,
                 logger: logging.Logger | None = None):
        self.config = config
        self.database = database
        self.engine = engine
        self.daemon = daemon
        self.services = services
        self.path = directory / STATUS_FILE
        self.logger = logger or logging.getLogger("multipool.public")
        self.database_url = database_url(config)

    async def publish(self) -> None:
        """Write the status file once. When the database fails, the file is written
        without its figures and the error is raised (the status service is then shown
        degraded, in the next file). A file that cannot be written raises OSError."""
        now = datetime.now(UTC)
        document = self.document(now)
        await self.add_network(document)
        try:
            await self.add_activity(document, now)
        except (SQLAlchemyError, OSError):  # OSError: a driver's refused connection
            self.write(document)
            raise
        self.write(document)

    async def add_network(self, document: dict[str, Any]) -> None:
        """Fill in the network's hashrate and difficulty from the daemon's getmininginfo,
        asked once, for at most NETWORK_TIMEOUT seconds: a daemon that does not answer
        leaves them null (the sync gate reports the daemon itself) and never holds up the
        status."""
        if self.daemon is None:
            return
        try:
            async with asyncio.timeout(NETWORK_TIMEOUT):
                with DaemonClient.retry_until(time.monotonic() + NETWORK_TIMEOUT):
                    info = await self.daemon.getmininginfo()
        except (DaemonError, OSError, TimeoutError) as exc:
            self.logger.debug("network figures left out: %s", exc)
            return
        document["network"] = {"hashrate": _positive(info.get("networkhashps")),
                               "difficulty": _positive(info.get("difficulty"))}

    async def status(self, now: datetime | None = None) -> dict[str, Any]:
        """The status document (the contract of web/<prefix>/status.json)."""
        now = now or datetime.now(UTC)
        document = self.document(now)
        await self.add_activity(document, now)
        return document

    def document(self, now: datetime) -> dict[str, Any]:
        """The document with what the engine knows itself; the database's figures null."""
        config, engine = self.config, self.engine
        state = engine.sync_state
        document: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "updated": now.isoformat(),
            "coin": {"prefix": config.coin.prefix, "name": config.coin.name,
                     "symbol": config.coin.symbol, "algorithm": config.coin.algorithm,
                     "network": config.coin.network,
                     "maturity": config.network.coinbase_maturity + BlockTracker.MARGIN},
            # Where the web process reads the pool's history (never a credential).
            "database": public_location(self.database_url),
            "stratum": {"open": engine.stratum_open,
                        "ports": [{"port": p.port, "difficulty": p.difficulty,
                                   "vardiff": p.vardiff, "tls": p.tls}
                                  for p in config.stratum.ports]},
            "daemon": None if state is None else {
                "synced": state.synced, "blocks": state.blocks, "headers": state.headers,
                "peers": state.peers, "reason": state.reason},
            "pool": {"scheme": config.pool.scheme, "fee_percent": config.pool.fee_percent,
                     "min_payout": format_coins(
                         to_units(config.pool.min_payout, config.network.decimals),
                         config.network.decimals),
                     "hashrate": None, "miners": None, "workers": None},
            "blocks": {"last_height": None, "last_time": None, "last_status": None,
                       "found_24h": None},
            "payments": {"last_time": None, "last_status": None},
            "services": {name: health.to_json() for name, health in self.services().items()},
            # The network's hashrate (hashes per second, the daemon's estimate over its
            # recent blocks) and difficulty; null when the daemon did not say.
            "network": {"hashrate": None, "difficulty": None},
            "counters": engine.counters(),
            "totals": None,
        }
        return document

    async def add_activity(self, document: dict[str, Any], now: datetime) -> None:
        """Fill in hashrate, miners, blocks and payments from the database."""
        config = self.config
        async with self.database.connect() as connection:
            activity = await pool_activity(connection, algorithm=config.coin.algorithm,
                                           window_seconds=WINDOW_SECONDS, now=now)
            found = await connection.run_sync(blocks_since, now - timedelta(days=1))
            document["totals"] = await self.totals(connection)
        document["pool"].update(hashrate=activity.hashrate, miners=activity.miners,
                                workers=activity.workers)
        document["blocks"] = {"last_height": activity.last_block_height,
                              "last_time": _iso(activity.last_block_time),
                              "last_status": activity.last_block_status,
                              "found_24h": int(found)}
        document["payments"] = {"last_time": _iso(activity.last_payment_time),
                                "last_status": activity.last_payment_status}

    async def totals(self, connection: AsyncConnection) -> dict[str, Any]:
        """Every block row by status, every payment batch by state with the amount it
        pays (coins, as a decimal string): the ``totals`` of status.json. Two grouped
        counts, so they cost the same whatever the pool's age."""
        by_status = (await connection.execute(
            select(blocks.c.status, func.count()).group_by(blocks.c.status))).all()
        by_state = (await connection.execute(
            select(payment_batches.c.status, func.count(),
                   func.coalesce(func.sum(payment_batches.c.total), 0))
            .group_by(payment_batches.c.status))).all()
        decimals = self.config.network.decimals
        return {"blocks": {**dict.fromkeys(BLOCK_STATUSES, 0),
                           **{str(status): int(count) for status, count in by_status}},
                "payments": {**{state: {"batches": 0, "amount": format_coins(0, decimals)}
                                for state in BATCH_STATES},
                             **{str(state): {"batches": int(count),
                                             "amount": format_coins(int(total), decimals)}
                                for state, count, total in by_state}}}

    def write(self, document: dict[str, Any]) -> None:
        """Replace the status file atomically; readable by the directory's group. Not
        fsynced: it is rewritten every ``interval`` seconds anyway."""
        write_atomically(self.path, json.dumps(document, indent=1).encode(), mode=0o640,
                         durable=False)
