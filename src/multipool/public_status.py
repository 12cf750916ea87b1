"""What the web process shows of a pool, published by its engine.

Every ``interval`` seconds the engine writes ``status.json`` into the coin's public
directory (``web/<prefix>/``, group-readable by the web user): the coin, its stratum ports
and whether they are open, the daemon's sync state, hashrate and miners of the last ten
minutes, the last block, blocks in 24 hours, the last payment, and where the pool's
database is (``database``: the SQLite file, or host, port and name; never a credential)
with ``coin.maturity``, the confirmations a block needs to be confirmed. The index page
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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.database import database_url, public_location
from multipool.accounting.schema import CANDIDATE, blocks
from multipool.accounting.stats import pool_activity
from multipool.accounting.tracker import BlockTracker
from multipool.atomicfile import write_atomically
from multipool.chain.sync import SyncState
from multipool.config import CoinConfig, format_coins, to_units
from multipool.supervision import Health

STATUS_FILE = "status.json"
FORMAT_VERSION = 1
# The window of hashrate and miners, as on `multipool status`.
WINDOW_SECONDS = 600.0


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


class PublicStatusWriter:
    """Writes the pool's public status file, one round per :meth:`publish`."""

    def __init__(self, *, config: CoinConfig, database: AsyncEngine, engine: EngineView,
                 directory: Path, services: Callable[[], Mapping[str, Health]],
                 logger: logging.Logger | None = None):
        self.config = config
        self.database = database
        self.engine = engine
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
        try:
            await self.add_activity(document, now)
        except (SQLAlchemyError, OSError):  # OSError: a driver's refused connection
            self.write(document)
            raise
        self.write(document)

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
        }
        return document

    async def add_activity(self, document: dict[str, Any], now: datetime) -> None:
        """Fill in hashrate, miners, blocks and payments from the database."""
        config = self.config
        async with self.database.connect() as connection:
            activity = await pool_activity(connection, algorithm=config.coin.algorithm,
                                           window_seconds=WINDOW_SECONDS, now=now)
            found = (await connection.execute(
                select(func.count()).select_from(blocks)
                .where(blocks.c.time >= now - timedelta(days=1),
                       blocks.c.status.not_in(("orphaned", CANDIDATE))))).scalar_one()
        document["pool"].update(hashrate=activity.hashrate, miners=activity.miners,
                                workers=activity.workers)
        document["blocks"] = {"last_height": activity.last_block_height,
                              "last_time": _iso(activity.last_block_time),
                              "last_status": activity.last_block_status,
                              "found_24h": int(found)}
        document["payments"] = {"last_time": _iso(activity.last_payment_time),
                                "last_status": activity.last_payment_status}

    def write(self, document: dict[str, Any]) -> None:
        """Replace the status file atomically; readable by the directory's group. Not
        fsynced: it is rewritten every ``interval`` seconds anyway."""
        write_atomically(self.path, json.dumps(document, indent=1).encode(), mode=0o640,
                         durable=False)
