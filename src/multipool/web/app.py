"""The web app: the index page of every pool, the JSON API, the health check.

It reads only ``<root>/web/<prefix>/status.json`` (see :mod:`multipool.web.status`) and
its own static directory, holds no secret, and writes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from multipool.web.display import (
    format_age,
    format_coins,
    format_hashrate,
    format_number,
    format_utc,
    plural,
    window_text,
)
from multipool.web.settings import WebSettings
from multipool.web.status import HASHRATE_WINDOW, STALE_AFTER, StatusReader, stratum_url

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
# Static URLs carry a hash of the file (?v=...), so a long cache never serves old CSS.
STATIC_MAX_AGE = 7 * 24 * 3600

# Pages and API answers are live: never from a cache.
LIVE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
# The page uses its own stylesheet and nothing else: no script, no frame, no form.
PAGE_HEADERS = {
    **LIVE_HEADERS,
    "Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class _StaticFiles(StaticFiles):
    """Starlette's static files (which refuse paths outside the directory and do not
    follow symlinks out of it) with a long public cache."""

    def file_response(self, full_path: Any, stat_result: Any, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = f"public, max-age={STATIC_MAX_AGE}"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _asset_versions() -> dict[str, str]:
    """Each static file's name -> a short hash of its content, for cache-busting URLs."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            for path in STATIC.iterdir() if path.is_file()}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True)
    env.filters.update(hashrate=format_hashrate, age=format_age, number=format_number,
                       coins=format_coins, plural=plural, utc=format_utc)
    return env


def create_app(*, root: Path, settings: WebSettings) -> Starlette:
    """Given the server's root directory and the web settings (the public host name
    miners connect to, ...), return the web app.

    >>> create_app(root=Path("/opt/multipool"),
    ...            settings=WebSettings(public_host="pool.example.org")).routes[0].path
    '/'
    """
    public_host = settings.public_host
    reader = StatusReader(root)
    env = _environment()
    versions = _asset_versions()

    def static_url(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}/static/{name}?v={versions[name]}"

    def index(request: Request) -> Response:
        views = reader.views()
        html = env.get_template("index.html").render(
            pools=views, public_host=public_host, stale_after=int(STALE_AFTER),
            hashrate_window=window_text(HASHRATE_WINDOW),
            stylesheet=static_url(request, "style.css"), stratum_url=stratum_url,
            api_url=f"{request.scope.get('root_path', '')}/api/pools",
            now=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
        return HTMLResponse(html, headers=PAGE_HEADERS)

    def api_pools(request: Request) -> Response:
        return JSONResponse([view.as_json(public_host) for view in reader.views()],
                            headers=LIVE_HEADERS)

    def healthz(request: Request) -> Response:
        return PlainTextResponse("ok", headers=LIVE_HEADERS)

    # Plain (def) endpoints run in Starlette's thread pool: the file reads and the
    # rendering never hold up the event loop.
    return Starlette(routes=[
        Route("/", index),
        Route("/api/pools", api_pools),
        Route("/healthz", healthz),
        Mount("/static", _StaticFiles(directory=STATIC), name="static"),
    ])
