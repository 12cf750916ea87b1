"""`multipool status`: what an operator checks first, for every coin of the server."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select

from multipool.accounting.database import create_engine, database_url
from multipool.accounting.rewards import POOL_FEE
from multipool.accounting.schema import balances
from multipool.accounting.stats import pool_activity
from multipool.chain.rpc import DaemonClient, DaemonError
from multipool.chain.sync import SyncState
from multipool.config import CoinConfig
from multipool.errors import PoolError
from multipool.ops.layout import Layout
from multipool.web.status import (
    HASHRATE_WINDOW,
    STATUS_FILE,
    StatusError,
    parse_status,
    pool_view,
    read_status_bytes,
)

# Hashrate and miners over the last 10 minutes of the stats roll-ups (the web page's
# window too).
WINDOW_SECONDS = HASHRATE_WINDOW


@dataclass
class CoinStatus:
    prefix: str
    name: str
    network: str
    daemon_up: bool = False
    daemon_error: str | None = None
    blocks: int | None = None
    headers: int | None = None
    peers: int | None = None
    initial_download: bool | None = None
    synced: bool = False
    stratum_ports: tuple[int, ...] = ()
    stratum_listening: bool = False
    miners: int | None = None
    workers: int | None = None
    hashrate: float | None = None
    last_block_height: int | None = None
    last_block_time: str | None = None
    last_block_status: str | None = None
    unpaid: int | None = None  # smallest units owed to miners
    last_payment_time: str | None = None
    last_payment_status: str | None = None
    database_error: str | None = None
    hashrate_window: float = WINDOW_SECONDS  # seconds the hashrate and miners cover
    # The engine's background services as its status.json reports them (name -> state,
    # reason, since); None when it has published none lately.
    services: dict[str, dict[str, str | None]] | None = None
    status_error: str | None = None  # why there are no services to show

    @property
    def degraded(self) -> dict[str, dict[str, str | None]]:
        return {name: s for name, s in (self.services or {}).items()
                if s["state"] == "degraded"}

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"degraded": sorted(self.degraded)}


async def port_listening(host: str, port: int) -> bool:
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host  # noqa: S104
    try:
        async with asyncio.timeout(2):
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _daemon_status(status: CoinStatus, config: CoinConfig) -> None:
    d = config.daemon
    try:
        async with DaemonClient(d.rpc_url, user=d.rpc_user, password=d.rpc_password,
                                cookie_file=d.rpc_cookie, timeout=5.0, retry_for=0.0) as daemon:
            info = await daemon.getblockchaininfo()
            status.peers = await daemon.getconnectioncount()
    except DaemonError as exc:
        status.daemon_error = str(exc)
        return
    status.daemon_up = True
    status.blocks, status.headers = info.get("blocks"), info.get("headers")
    status.initial_download = bool(info.get("initialblockdownload"))
    # The engine's own test of sync, with no header lag allowed: status shows the
    # daemon as it is this instant, where the engine tolerates a block in flight.
    status.synced = SyncState.from_rpc(info, status.peers, max_header_lag=0).synced


def read_only_sqlite_url(path: Path) -> str:
    """A URL that reads the pool's SQLite database without creating a file beside it:
    status may run as root, and a root-owned -wal or -shm would lock the pool user out.
    With the engine running its -wal exists and is read through; with the engine stopped
    the file alone is the database, read as immutable."""
    immutable = "" if path.with_name(path.name + "-wal").exists() else "&immutable=1"
    return f"sqlite:///file:{quote(str(path))}?mode=ro{immutable}&uri=true"


def _seconds(time: datetime | None) -> str | None:
    """A time as the table shows it: to the second, no zone."""
    return None if time is None else str(time)[:19]


async def _database_status(status: CoinStatus, config: CoinConfig) -> None:
    url = database_url(config)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists():
            # Opening it would create it, owned by whoever runs status.
            status.database_error = "no database yet: the pool engine has not run"
            return
        url = read_only_sqlite_url(path)
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            activity = await pool_activity(connection, algorithm=config.coin.algorithm,
                                           window_seconds=WINDOW_SECONDS)
            status.unpaid = int((await connection.execute(
                select(func.coalesce(func.sum(balances.c.amount), 0))
                .where(balances.c.address != POOL_FEE, balances.c.amount > 0))).scalar_one())
        status.hashrate = activity.hashrate
        status.miners, status.workers = activity.miners, activity.workers
        status.last_block_height = activity.last_block_height
        status.last_block_time = _seconds(activity.last_block_time)
        status.last_block_status = activity.last_block_status
        status.last_payment_time = _seconds(activity.last_payment_time)
        status.last_payment_status = activity.last_payment_status
    except (PoolError, OSError) as exc:
        status.database_error = str(exc)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy's errors: a missing or new database
        status.database_error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    finally:
        await engine.dispose()


def _published_status(status: CoinStatus, config: CoinConfig,
                      now: datetime | None = None) -> None:
    """The services' health from the engine's status.json in the coin's public
    directory, read as the web reads it (hostile input: no symlink, size cap, types)."""
    if config.pool.public_dir is None:
        status.status_error = "coin.toml names no [pool] public_dir to read the status from"
        return
    path = Path(config.pool.public_dir) / STATUS_FILE
    try:
        published = parse_status(read_status_bytes(path), config.coin.prefix)
    except FileNotFoundError:
        status.status_error = f"no {path} yet: the pool engine has not published its status"
        return
    except StatusError as exc:
        status.status_error = f"{path}: unreadable: {exc}"
        return
    view = pool_view(config.coin.prefix, published, now or datetime.now(UTC))
    if not view.live:
        status.status_error = (f"{path} was written {view.updated_age} s ago: the pool "
                               "engine is not running, or not publishing")
        return
    if published.services is None:
        status.status_error = "the pool engine reports no services (an older version)"
        return
    status.services = {h.name: {"state": h.state, "reason": h.reason,
                                "since": None if h.since is None else h.since.isoformat()}
                       for h in published.services}


async def coin_status(config: CoinConfig) -> CoinStatus:
    status = CoinStatus(prefix=config.coin.prefix, name=config.coin.name,
                        network=config.coin.network,
                        stratum_ports=tuple(p.port for p in config.stratum.ports))
    _published_status(status, config)
    listening = [port_listening(config.stratum.host, port) for port in status.stratum_ports]
    results = await asyncio.gather(_daemon_status(status, config),
                                   _database_status(status, config), *listening)
    status.stratum_listening = any(results[2:])
    return status


async def server_status(layout: Layout, configs: list[CoinConfig]) -> list[CoinStatus]:
    return list(await asyncio.gather(*(coin_status(config) for config in configs)))
