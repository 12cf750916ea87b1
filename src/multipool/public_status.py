"""What the web process shows of a pool, published by its engine.

Every ``interval`` seconds the engine writes ``status.json`` into the coin's public
directory (``web/<prefix>/``, group-readable by the web user): the coin, its stratum ports
and whether they are open, the daemon's sync state, hashrate and miners of the last ten
minutes, the last block, blocks in 24 hours, the last payment. The web process reads these
files and nothing else of the pool: it needs no secret and no access to the pool's
database, which on SQLite only the pool user may open.

The file is replaced atomically (a temporary file renamed over it), so a reader never
sees half of it; its ``updated`` time tells the reader whether the engine still runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting.schema import blocks
from multipool.accounting.stats import pool_activity
from multipool.atomicfile import write_atomically
from multipool.config import CoinConfig, format_coins, to_units
from multipool.engine import PoolEngine

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


class PublicStatusWriter:
    """Writes the pool's public status file until cancelled."""

    def __init__(self, *, config: CoinConfig, database: AsyncEngine, engine: PoolEngine,
                 directory: Path, interval: float = 30.0,
                 logger: logging.Logger | None = None):
        self.config = config
        self.database = database
        self.engine = engine
        self.path = directory / STATUS_FILE
        self.interval = interval
        self.logger = logger or logging.getLogger("multipool.public")

    async def run(self) -> None:
        while True:
            try:
                self.write(await self.status())
            except (OSError, SQLAlchemyError) as exc:
                # The web shows the pool as offline once the file is stale: say why here.
                self.logger.warning("cannot publish the pool status to %s: %s", self.path,
                                    exc)
            await asyncio.sleep(self.interval)

    async def status(self, now: datetime | None = None) -> dict[str, Any]:
        """The status document (the contract of web/<prefix>/status.json)."""
        now = now or datetime.now(UTC)
        config, engine = self.config, self.engine
        state = engine.sync_state
        document: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "updated": now.isoformat(),
            "coin": {"prefix": config.coin.prefix, "name": config.coin.name,
                     "symbol": config.coin.symbol, "algorithm": config.coin.algorithm,
                     "network": config.coin.network},
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
        }
        async with self.database.connect() as connection:
            activity = await pool_activity(connection, algorithm=config.coin.algorithm,
                                           window_seconds=WINDOW_SECONDS, now=now)
            found = (await connection.execute(
                select(func.count()).select_from(blocks)
                .where(blocks.c.time >= now - timedelta(days=1),
                       blocks.c.status != "orphaned"))).scalar_one()
        document["pool"].update(hashrate=activity.hashrate, miners=activity.miners,
                                workers=activity.workers)
        document["blocks"] = {"last_height": activity.last_block_height,
                              "last_time": _iso(activity.last_block_time),
                              "last_status": activity.last_block_status,
                              "found_24h": int(found)}
        document["payments"] = {"last_time": _iso(activity.last_payment_time),
                                "last_status": activity.last_payment_status}
        return document

    def write(self, document: dict[str, Any]) -> None:
        """Replace the status file atomically; readable by the directory's group. Not
        fsynced: it is rewritten every ``interval`` seconds anyway."""
        write_atomically(self.path, json.dumps(document, indent=1).encode(), mode=0o640,
                         durable=False)
