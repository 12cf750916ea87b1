"""The JSON API, ``/api/v1/...``: everything the pages show, as data.

Money is an integer in the coin's smallest unit plus the same amount in coins as an
exact decimal string (``reward`` and ``reward_coins``). Times are ISO 8601 in UTC.
Hashrates are hashes per second, each with the window (seconds) it is averaged over.
Lists are pages: ``?page=`` (from 1) and ``?per_page=`` (at most ``MAX_PER_PAGE``).

:data:`ROUTES` is the route table: the app serves it and :mod:`multipool.web.openapi`
describes it, so the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from multipool.config import to_units
from multipool.web.data import (
    WINDOWS,
    BlockRow,
    HashratePoint,
    MinerFigures,
    MinerPayment,
    MinerRow,
    Paged,
    PaymentRow,
    PoolFigures,
    PoolReader,
    WorkerRow,
)
from multipool.web.display import units_text
from multipool.web.links import Links
from multipool.web.params import address, page_request, window
from multipool.web.site import STATS_ERRORS, Pool, Site, StatsUnavailable
from multipool.web.status import PoolView

T = TypeVar("T")
LIVE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# Buckets of the hashrate series the API and the charts give: 24 h in 10-min buckets.
SERIES_HOURS = 24
SERIES_BUCKET_MINUTES = 10
# The window of a worker's hashrate (WorkerRow.hashrate).
WORKER_WINDOW = 600


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat()


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: an undefined figure is null."""
    return None if value is None or not math.isfinite(value) else value


def money(name: str, amount: int, decimals: int) -> dict[str, Any]:
    """``{name: amount, name_coins: "1.23456789"}``.

    >>> money("reward", 625000000, 8)
    {'reward': 625000000, 'reward_coins': '6.25000000'}
    """
    return {name: amount, f"{name}_coins": units_text(amount, decimals)}


def hashrates(rates: dict[int, float]) -> list[dict[str, Any]]:
    return [{"window": w, "hashrate": _finite(rates.get(w, 0.0)) or 0.0} for w in WINDOWS
            if w in rates]


def block_json(row: BlockRow, decimals: int) -> dict[str, Any]:
    return {"height": row.height, "hash": row.hash, "time": _time(row.time),
            "status": row.status, "confirmations": row.confirmations,
            "maturity": row.maturity, **money("reward", row.reward, decimals),
            "effort": _finite(row.effort), "finder": row.finder, "worker": row.worker}


def payment_json(row: PaymentRow, decimals: int) -> dict[str, Any]:
    return {"batch_id": row.batch_id, "time": _time(row.time), "txid": row.txid,
            "status": row.status, **money("amount", row.amount, decimals),
            **money("fee", row.fee, decimals), "recipients": row.recipients}


def miner_payment_json(row: MinerPayment, decimals: int) -> dict[str, Any]:
    return {"batch_id": row.batch_id, "time": _time(row.time), "txid": row.txid,
            "status": row.status, **money("amount", row.amount, decimals)}


def miner_row_json(row: MinerRow, decimals: int) -> dict[str, Any]:
    return {"address": row.address, "hashrate": _finite(row.hashrate) or 0.0,
            "window": row.window, "workers": row.workers, "accepted": row.accepted,
            "rejected": row.rejected}


def worker_json(row: WorkerRow, decimals: int = 0) -> dict[str, Any]:
    return {"name": row.name, "hashrate": _finite(row.hashrate) or 0.0,
            "window": WORKER_WINDOW, "accepted_24h": row.accepted,
            "rejected_24h": row.rejected, "last_share": _time(row.last_share),
            "online": row.online}


def series_json(points: Sequence[HashratePoint]) -> list[dict[str, Any]]:
    return [{"time": _time(p.time), "hashrate": _finite(p.hashrate) or 0.0} for p in points]


def figures_json(figures: PoolFigures, decimals: int) -> dict[str, Any]:
    last = figures.last_block
    return {"hashrate": hashrates(figures.hashrate), "miners": figures.miners,
            "workers": figures.workers, "activity_window": WINDOWS[0],
            "blocks_24h": figures.blocks_24h,
            "last_block": None if last is None else block_json(last, decimals),
            "round_effort": _finite(figures.round_effort),
            "accepted_24h": figures.accepted_24h, "rejects_24h": dict(figures.rejects_24h)}


def miner_json(figures: MinerFigures, decimals: int, offline_after: int) -> dict[str, Any]:
    return {"address": figures.address, "has_history": figures.has_history,
            "hashrate": hashrates(figures.hashrate),
            **money("immature", figures.immature, decimals),
            **money("unpaid", figures.unpaid, decimals),
            **money("paid", figures.paid, decimals),
            "workers": [worker_json(w) for w in figures.workers],
            "offline_after_minutes": offline_after,
            "rejects_24h": dict(figures.rejects_24h),
            "round_share": _finite(figures.round_share),
            "round_difficulty": _finite(figures.round_difficulty) or 0.0}


def paged_json(paged: Paged[T], convert: Callable[[T, int], dict[str, Any]],
               decimals: int) -> dict[str, Any]:
    return {"items": [convert(item, decimals) for item in paged.items], "page": paged.page,
            "per_page": paged.per_page, "total": paged.total,
            "pages": max(1, math.ceil(paged.total / paged.per_page)) if paged.per_page else 1}


def json_response(data: Any, status: int = 200) -> Response:
    return JSONResponse(data, status_code=status, headers=LIVE_HEADERS)


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One endpoint: its path (Starlette syntax), what it answers (a schema name of
    :mod:`multipool.web.openapi`), the query parameters it takes."""

    path: str
    name: str
    summary: str
    schema: str
    paged: bool = False
    query: tuple[str, ...] = ()


ROUTES = (
    ApiRoute("/api/v1/pools", "pools", "Every pool of this server", "PoolList"),
    ApiRoute("/api/v1/pools/{prefix}", "pool", "One pool: status and figures", "PoolDetail"),
    ApiRoute("/api/v1/pools/{prefix}/hashrate", "pool_hashrate",
             "The pool's hashrate over the last 24 h, in 10-minute buckets", "Series"),
    ApiRoute("/api/v1/pools/{prefix}/blocks", "blocks", "The pool's blocks, newest first",
             "BlockPage", paged=True),
    ApiRoute("/api/v1/pools/{prefix}/payments", "payments",
             "The pool's payment transactions, newest first", "PaymentPage", paged=True),
    ApiRoute("/api/v1/pools/{prefix}/miners", "miners",
             "Miners with shares in the window, highest hashrate first", "MinerPage",
             paged=True, query=("window",)),
    ApiRoute("/api/v1/pools/{prefix}/miners/{address}", "miner",
             "One miner: hashrate, balances, workers, rejects, round share", "Miner"),
    ApiRoute("/api/v1/pools/{prefix}/miners/{address}/workers", "workers",
             "The miner's workers seen in the last 24 h", "WorkerList"),
    ApiRoute("/api/v1/pools/{prefix}/miners/{address}/payments", "miner_payments",
             "What each payment paid the miner, newest first", "MinerPaymentPage",
             paged=True),
    ApiRoute("/api/v1/pools/{prefix}/miners/{address}/hashrate", "miner_hashrate",
             "The miner's hashrate over the last 24 h, in 10-minute buckets", "Series"),
)


class Api:
    """The endpoints of :data:`ROUTES`, over the site's pools."""

    def __init__(self, site: Site):
        self.site = site

    def handlers(self) -> dict[str, Handler]:
        return {"pools": self.pools, "pool": self.pool, "pool_hashrate": self.pool_hashrate,
                "blocks": self.blocks, "payments": self.payments, "miners": self.miners,
                "miner": self.miner, "workers": self.workers,
                "miner_payments": self.miner_payments, "miner_hashrate": self.miner_hashrate}

    def _links(self, request: Request) -> Links:
        settings = self.site.settings
        return Links(root=request.scope.get("root_path", ""),
                     subdomain=settings.routing == "subdomain",
                     public_host=settings.public_host)

    async def _stats(self, request: Request) -> tuple[Pool, PoolReader]:
        pool = await self.site.pool(request.path_params["prefix"])
        return pool, self._reader(pool)

    async def _miner_stats(self, request: Request) -> tuple[Pool, PoolReader, str]:
        """The pool, its reader and the address of the URL: an unknown pool is 404, a
        malformed address 400, and only then an unreadable database 503."""
        pool = await self.site.pool(request.path_params["prefix"])
        miner = address(request.path_params["address"], pool.network)
        return pool, self._reader(pool), miner

    @staticmethod
    def _reader(pool: Pool) -> PoolReader:
        if pool.reader is None:
            raise StatsUnavailable(f"statistics of {pool.prefix!r} are unavailable: its "
                                   "database cannot be read now")
        return pool.reader

    async def _pool_json(self, pool: Pool, links: Links) -> dict[str, Any]:
        stats = None
        if pool.reader is not None:
            try:
                stats = figures_json(await pool.reader.pool(), pool.decimals)
            except STATS_ERRORS:
                stats = None
        data = pool.view.as_json(self.site.settings.public_host)
        # Money as everywhere in /api/v1: smallest units and the exact amount in coins.
        status = pool.view.status
        if status is not None and status.min_payout is not None:
            data.update(money("min_payout", to_units(status.min_payout, pool.decimals),
                              pool.decimals))
        else:
            data.update(min_payout=None, min_payout_coins=None)
        return {**data, "stats": stats, "page": links.pool(pool.prefix)}

    async def pools(self, request: Request) -> Response:
        links = self._links(request)

        async def one(view: PoolView) -> dict[str, Any]:
            return await self._pool_json(Pool(view, await self.site.reader(view)), links)

        items = await asyncio.gather(*(one(view) for view in await self.site.views()))
        return json_response({"pools": list(items)})

    async def pool(self, request: Request) -> Response:
        pool = await self.site.pool(request.path_params["prefix"])
        return json_response(await self._pool_json(pool, self._links(request)))

    async def pool_hashrate(self, request: Request) -> Response:
        _, reader = await self._stats(request)
        points = await self._query(reader.hashrate_series(
            None, hours=SERIES_HOURS, bucket_minutes=SERIES_BUCKET_MINUTES))
        return json_response({"bucket_seconds": SERIES_BUCKET_MINUTES * 60,
                              "hours": SERIES_HOURS, "points": series_json(points)})

    async def blocks(self, request: Request) -> Response:
        wanted = page_request(request.query_params)
        pool, reader = await self._stats(request)
        paged = await self._query(reader.blocks(wanted.page, wanted.per_page))
        return json_response(paged_json(paged, block_json, pool.decimals))

    async def payments(self, request: Request) -> Response:
        wanted = page_request(request.query_params)
        pool, reader = await self._stats(request)
        paged = await self._query(reader.payments(wanted.page, wanted.per_page))
        return json_response(paged_json(paged, payment_json, pool.decimals))

    async def miners(self, request: Request) -> Response:
        wanted = page_request(request.query_params)
        seconds = window(request.query_params)
        pool, reader = await self._stats(request)
        paged = await self._query(reader.miners(wanted.page, wanted.per_page, window=seconds))
        return json_response({**paged_json(paged, miner_row_json, pool.decimals),
                              "window": seconds})

    async def miner(self, request: Request) -> Response:
        pool, reader, miner = await self._miner_stats(request)
        figures = await self._query(reader.miner(miner))
        return json_response(miner_json(figures, pool.decimals,
                                         self.site.settings.offline_after))

    async def workers(self, request: Request) -> Response:
        _, reader, miner = await self._miner_stats(request)
        rows = await self._query(reader.workers(miner))
        return json_response({"offline_after_minutes": self.site.settings.offline_after,
                              "workers": [worker_json(w) for w in rows]})

    async def miner_payments(self, request: Request) -> Response:
        wanted = page_request(request.query_params)
        pool, reader, miner = await self._miner_stats(request)
        paged = await self._query(reader.miner_payments(miner, wanted.page, wanted.per_page))
        return json_response(paged_json(paged, miner_payment_json, pool.decimals))

    async def miner_hashrate(self, request: Request) -> Response:
        _, reader, miner = await self._miner_stats(request)
        points = await self._query(reader.hashrate_series(
            miner, hours=SERIES_HOURS, bucket_minutes=SERIES_BUCKET_MINUTES))
        return json_response({"bucket_seconds": SERIES_BUCKET_MINUTES * 60,
                              "hours": SERIES_HOURS, "points": series_json(points)})

    @staticmethod
    async def _query(call: Awaitable[T]) -> T:
        try:
            return await call
        except STATS_ERRORS as exc:
            raise StatsUnavailable("statistics are unavailable: the pool's database did "
                                   f"not answer ({type(exc).__name__})") from exc
