"""The pages people read: every pool (``/``), one pool (``/<prefix>/``), one miner
(``/<prefix>/miners/<address>``), the search box's target, and the API's description
(``/api/docs``). Every table renders without JavaScript; charts are inline SVG.

The status file gives what a pool says of itself; the figures come from its database
through :class:`multipool.web.data.PoolReader`. When the database cannot be read, a page
still shows the status and says the statistics are unavailable.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from multipool.web import openapi
from multipool.web.api import SERIES_BUCKET_MINUTES, SERIES_HOURS, WORKER_WINDOW
from multipool.web.cache import AnswerCache
from multipool.web.charts import hashrate_chart
from multipool.web.data import WINDOWS, Paged, PoolFigures
from multipool.web.display import (
    format_age,
    format_coins,
    format_hashrate,
    format_number,
    format_percent,
    format_units,
    format_utc,
    plural,
    shorten,
    window_text,
)
from multipool.web.links import Links
from multipool.web.params import MAX_PAGE, BadInput, address, integer
from multipool.web.site import STATS_ERRORS, Site
from multipool.web.status import HASHRATE_WINDOW, STALE_AFTER, PoolView, stratum_url

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
# Seconds between two refreshes of a page (by the script, or by <meta> without it).
REFRESH_SECONDS = 30
# Rows of each table on a pool's page (the API has them all, page by page).
POOL_BLOCKS = 20
POOL_PAYMENTS = 10
TOP_MINERS = 10
MINER_PAYMENTS = 20
# The window the top miners are ranked over.
TOP_MINERS_WINDOW = 3600
# A rendered page is served again for this long (seconds; then for as long again while
# one fresh rendering runs): many clients loading one page cost one rendering. The
# figures under it are cached for a few seconds anyway (web/data.py).
PAGE_CACHE_SECONDS = 1.0
# Rendered pages kept (least recently used go first): every miner page of a busy pool.
PAGE_CACHE_ENTRIES = 2048

LIVE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# The page's own stylesheet and script and nothing else; the search form submits to the
# app itself; the refresh script fetches the same page again (connect-src).
PAGE_HEADERS = {
    **LIVE_HEADERS,
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "script-src 'self'; connect-src 'self'; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def asset_versions() -> dict[str, str]:
    """Each static file's name -> a short hash of its content, for cache-busting URLs."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            for path in STATIC.iterdir() if path.is_file()}


def _ago(time: datetime | None) -> str:
    if time is None:
        return "-"
    if time.tzinfo is None:
        time = time.replace(tzinfo=UTC)
    return format_age((datetime.now(UTC) - time).total_seconds())


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(hashrate=format_hashrate, age=format_age, number=format_number,
                       coins=format_coins, plural=plural, utc=format_utc, units=format_units,
                       percent=format_percent, shorten=shorten, ago=_ago, window=window_text)
    env.globals.update(page_query=page_query, last_page=last_page)
    return env


def page_query(pages: Mapping[str, int], key: str, page: int) -> str:
    """The query string of the same page with table ``key`` at ``page`` (first pages
    left out, so the plain URL is the first page of every table).

    >>> page_query({"blocks_page": 2, "payments_page": 1}, "payments_page", 3)
    'blocks_page=2&payments_page=3'
    >>> page_query({"blocks_page": 2}, "blocks_page", 1)
    ''
    """
    chosen = {**pages, key: page}
    return urlencode({name: value for name, value in chosen.items() if value > 1})


def last_page(paged: Paged[Any]) -> int:
    """The number of the last page of a list (1 for an empty one)."""
    return max(1, -(-paged.total // paged.per_page)) if paged.per_page else 1


class Pages:
    """The HTML endpoints over the site's pools."""

    def __init__(self, site: Site, *, cache_seconds: float = PAGE_CACHE_SECONDS):
        self.site = site
        self.env = environment()
        self.versions = asset_versions()
        self.cache = AnswerCache(cache_seconds, max_entries=PAGE_CACHE_ENTRIES)

    async def close(self) -> None:
        await self.cache.close()

    async def cached(self, request: Request,
                     render: Callable[[Request], Awaitable[Response]]) -> Response:
        """The page ``render`` makes for this request, rendered at most once per
        PAGE_CACHE_SECONDS for every client asking for the same URL on the same host
        name's routing. Errors (404, 400) are raised again, never cached."""
        key = (render.__name__, request.url.path, request.url.query,
               request.scope.get("root_path", ""),
               request.scope.get("state", {}).get("pool_host"))

        async def compute() -> tuple[int, bytes]:
            response = await render(request)
            return response.status_code, bytes(response.body)

        status, body = await self.cache.get(key, compute)
        return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)

    async def index(self, request: Request) -> Response:
        return await self.cached(request, self._index)

    async def pool(self, request: Request) -> Response:
        return await self.cached(request, self._pool)

    async def miner(self, request: Request) -> Response:
        return await self.cached(request, self._miner)

    async def api_docs(self, request: Request) -> Response:
        return await self.cached(request, self._api_docs)

    # -- shared ---------------------------------------------------------------------------

    def links(self, request: Request) -> Links:
        settings = self.site.settings
        state = request.scope.get("state", {})
        return Links(root=request.scope.get("root_path", ""),
                     subdomain=settings.routing == "subdomain",
                     public_host=settings.public_host, on_pool=state.get("pool_host"))

    def render(self, request: Request, template: str, status: int = 200,
               **context: Any) -> HTMLResponse:
        links = self.links(request)
        values: dict[str, Any] = {
            "links": links, "public_host": self.site.settings.public_host,
            "stylesheet": links.static("style.css", self.versions["style.css"]),
            "favicon": links.static("favicon.svg", self.versions["favicon.svg"]),
            "script": links.static("refresh.js", self.versions["refresh.js"]),
            "refresh": REFRESH_SECONDS, "stratum_url": stratum_url,
            "now": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "search": None, "api_url": links.api("/api/v1/pools")}
        html = self.env.get_template(template).render({**values, **context})
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def error(self, request: Request, status: int, title: str, message: str,
              prefix: str | None = None) -> HTMLResponse:
        # An error page is not refreshed: what was wrong stays wrong.
        return self.render(request, "error.html", status=status, title=title,
                           message=message, search=prefix, refresh=0)

    # -- pages ----------------------------------------------------------------------------

    async def _index(self, request: Request) -> Response:
        views = await self.site.views()
        figures = await asyncio.gather(*(self._figures(v) for v in views))
        return self.render(request, "index.html", pools=list(zip(views, figures, strict=True)),
                           stale_after=int(STALE_AFTER),
                           hashrate_window=window_text(HASHRATE_WINDOW),
                           api_url=links_api(self.links(request)))

    async def _figures(self, view: PoolView) -> PoolFigures | None:
        reader = await self.site.reader(view)
        if reader is None:
            return None
        try:
            return await reader.pool()
        except STATS_ERRORS:
            return None

    async def _pool(self, request: Request) -> Response:
        pool = await self.site.pool(request.path_params["prefix"])
        # The blocks and payments tables page on their own (?blocks_page=, ?payments_page=).
        blocks_page = integer(request.query_params, "blocks_page", default=1, minimum=1,
                              maximum=MAX_PAGE)
        payments_page = integer(request.query_params, "payments_page", default=1,
                                minimum=1, maximum=MAX_PAGE)
        others = [v for v in await self.site.views() if v.prefix != pool.prefix]
        context: dict[str, Any] = {"stats": None}
        if pool.reader is not None:
            reader = pool.reader
            try:
                figures, series, blocks, payments, miners = await asyncio.gather(
                    reader.pool(),
                    reader.hashrate_series(None, hours=SERIES_HOURS,
                                           bucket_minutes=SERIES_BUCKET_MINUTES),
                    reader.blocks(blocks_page, POOL_BLOCKS),
                    reader.payments(payments_page, POOL_PAYMENTS),
                    reader.miners(1, TOP_MINERS, window=TOP_MINERS_WINDOW))
            except STATS_ERRORS:
                pass
            else:
                context["stats"] = {
                    "figures": figures, "blocks": blocks, "payments": payments,
                    "miners": miners,
                    "chart": hashrate_chart(
                        series, title=f"Pool hashrate, last {SERIES_HOURS} h",
                        chart_id="pool-hashrate", bucket_seconds=SERIES_BUCKET_MINUTES * 60)}
        return self.render(request, "pool.html", pool=pool, view=pool.view, others=others,
                           search=pool.prefix, windows=WINDOWS, top_window=TOP_MINERS_WINDOW,
                           chart_hours=SERIES_HOURS, decimals=pool.decimals,
                           symbol=pool.symbol,
                           pages={"blocks_page": blocks_page, "payments_page": payments_page},
                           api_url=self.links(request).api(f"/api/v1/pools/{pool.prefix}"),
                           **context)

    async def _miner(self, request: Request) -> Response:
        pool = await self.site.pool(request.path_params["prefix"])
        try:
            miner = address(request.path_params["address"], pool.network)
        except BadInput as exc:
            return self.error(request, 400, "Not an address", str(exc), pool.prefix)
        context: dict[str, Any] = {"stats": None}
        if pool.reader is not None:
            reader = pool.reader
            try:
                found = await reader.miner_page(miner, hours=SERIES_HOURS,
                                                bucket_minutes=SERIES_BUCKET_MINUTES,
                                                per_page=MINER_PAYMENTS)
            except STATS_ERRORS:
                pass
            else:
                context["stats"] = {
                    "figures": found.figures, "payments": found.payments,
                    "chart": hashrate_chart(
                        found.series, title=f"Hashrate of {miner}, last {SERIES_HOURS} h",
                        chart_id="miner-hashrate", bucket_seconds=SERIES_BUCKET_MINUTES * 60)}
        return self.render(request, "miner.html", pool=pool, view=pool.view, address=miner,
                           search=pool.prefix, windows=WINDOWS, chart_hours=SERIES_HOURS,
                           decimals=pool.decimals, symbol=pool.symbol,
                           worker_window=WORKER_WINDOW,
                           offline_after=self.site.settings.offline_after,
                           api_url=self.links(request).api(
                               f"/api/v1/pools/{pool.prefix}/miners/{miner}"), **context)

    async def pool_without_slash(self, request: Request) -> Response:
        """``/<prefix>`` -> ``/<prefix>/`` for a pool of this server; anything else is
        not found (no redirect to a page that does not exist, e.g. ``/metrics``)."""
        view = await self.site.view(request.path_params["prefix"])
        return RedirectResponse(self.links(request).pool(view.prefix), status_code=308,
                                headers=LIVE_HEADERS)

    async def search(self, request: Request) -> Response:
        """The search box: ``/<prefix>/miners/?address=...`` -> the miner's page."""
        pool = await self.site.pool(request.path_params["prefix"])
        text = request.query_params.get("address", "").strip()
        if not text:
            return self.error(request, 400, "No address given",
                              "Enter a payout address to see its miner page.", pool.prefix)
        return RedirectResponse(self.links(request).miner(pool.prefix, text), status_code=303,
                                headers=LIVE_HEADERS)

    async def _api_docs(self, request: Request) -> Response:
        doc = openapi.document(self.links(request).api("/"))
        return self.render(request, "api_docs.html", doc=doc, title="multipool API",
                           api_url=self.links(request).api("/openapi.json"))


def links_api(links: Links) -> str:
    """The API link in the index page's footer."""
    return links.api("/api/pools")

