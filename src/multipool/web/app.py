"""The web app: the pages (every pool, one pool, one miner), the JSON API (``/api/v1``,
described by ``/openapi.json`` and ``/api/docs``), the health check and static files.

It reads ``<root>/web/<prefix>/status.json`` (see :mod:`multipool.web.status`), each
pool's database read-only (:mod:`multipool.web.data`) and its own static directory; it
holds no secret and writes nothing. Endpoints are async and never block the event loop:
the status files are read in a worker thread, the databases through async drivers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from multipool.web import openapi
from multipool.web.api import LIVE_HEADERS, ROUTES, Api
from multipool.web.data import PoolReaders
from multipool.web.http import ApiGuard, RateLimiter
from multipool.web.links import SubdomainRouting
from multipool.web.pages import PAGE_CACHE_SECONDS, STATIC, Pages
from multipool.web.params import BadInput
from multipool.web.settings import WebSettings
from multipool.web.site import Site, StatsUnavailable, UnknownPool
from multipool.web.status import StatusReader

# Static URLs carry a hash of the file (?v=...), so a long cache never serves old files.
STATIC_MAX_AGE = 7 * 24 * 3600


class _StaticFiles(StaticFiles):
    """Starlette's static files (which refuse paths outside the directory and do not
    follow symlinks out of it) with a long public cache."""

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _wants_json(request: Request) -> bool:
    path = request.url.path
    return path.startswith("/api/") or path == "/openapi.json"


def create_app(*, root: Path, settings: WebSettings, readers: PoolReaders | None = None,
               page_cache_seconds: float = PAGE_CACHE_SECONDS) -> Starlette:
    """Given the server's root directory and the web settings (the public host name
    miners connect to, routing, proxies, CORS, rate limit, ...), return the web app.
    ``readers`` replaces the pools' database readers (tests); ``page_cache_seconds``
    is how long a rendered page is served again (0: never).

    >>> create_app(root=Path("/opt/multipool"),
    ...            settings=WebSettings(public_host="pool.example.org")).routes[0].path
    '/'
    """
    status = StatusReader(root)
    pool_readers = readers or PoolReaders(root, offline_after=settings.offline_after)
    site = Site(status=status, readers=pool_readers, settings=settings)
    pages, api = Pages(site, cache_seconds=page_cache_seconds), Api(site)
    handlers = api.handlers()

    async def api_pools(request: Request) -> Response:
        views = await site.views()
        return JSONResponse([view.as_json(settings.public_host) for view in views],
                            headers=LIVE_HEADERS)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(openapi.document(f"{request.scope.get('root_path', '')}/"),
                            headers=LIVE_HEADERS)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok", headers=LIVE_HEADERS)

    def error(request: Request, status: int, title: str, message: str,
              prefix: str | None = None) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": {"status": status, "message": message}},
                                status_code=status, headers=LIVE_HEADERS)
        return pages.error(request, status, title, message, prefix)

    async def bad_input(request: Request, exc: Exception) -> Response:
        return error(request, 400, "Bad request", str(exc),
                     request.path_params.get("prefix"))

    async def unknown_pool(request: Request, exc: Exception) -> Response:
        return error(request, 404, "No such pool",
                     f"{exc}. The pools of this server are listed on the front page.")

    async def unavailable(request: Request, exc: Exception) -> Response:
        return error(request, 503, "Statistics unavailable", str(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            return error(request, 404, "Not found", f"nothing at {request.url.path[:200]}")
        response = error(request, exc.status_code, "Request refused", str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    async def favicon(request: Request) -> Response:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": f"public, max-age={STATIC_MAX_AGE}",
                                     "X-Content-Type-Options": "nosniff"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            # The database connections end with the process, cleanly.
            await asyncio.shield(pages.close())
            await asyncio.shield(pool_readers.close())

    routes: list[BaseRoute] = [
        Route("/", pages.index),
        Route("/api/pools", api_pools),
        Route("/openapi.json", openapi_json),
        Route("/api/docs", pages.api_docs),
        Route("/healthz", healthz),
        # Asked for by browsers and tools that do not read the page's <link rel="icon">.
        Route("/favicon.ico", favicon),
        *(Route(r.path, handlers[r.name], name=f"api-{r.name}") for r in ROUTES),
        Mount("/static", _StaticFiles(directory=STATIC), name="static"),
        Route("/{prefix}", pages.pool_without_slash),
        Route("/{prefix}/", pages.pool, name="pool"),
        Route("/{prefix}/miners/", pages.search, name="search"),
        Route("/{prefix}/miners/{address:path}", pages.miner, name="miner"),
    ]
    middleware = [
        Middleware(SubdomainRouting, public_host=settings.public_host)
        if settings.routing == "subdomain" else None,
        Middleware(ApiGuard, trusted_proxies=settings.trusted_proxies,
                   cors_origins=settings.cors_origins,
                   limiter=RateLimiter(settings.rate_limit)),
    ]
    app = Starlette(routes=routes, middleware=[m for m in middleware if m is not None],
                    exception_handlers={BadInput: bad_input, UnknownPool: unknown_pool,
                                        StatsUnavailable: unavailable,
                                        HTTPException: http_error},
                    lifespan=lifespan)
    # Every path a slash away from a route would be redirected (/metrics to /metrics/,
    # then not found): the one redirect wanted is /<prefix>, routed above.
    app.router.redirect_slashes = False
    app.state.readers = pool_readers
    return app
