"""The URLs the pages link to, by routing: ``/ltc/`` (path routing) or
``//ltc.example.org/`` (subdomain routing, where each pool has its own host name).

:class:`SubdomainRouting` is the ASGI middleware that serves ``ltc.example.org/`` as the
pool page of ``ltc`` (and ``/miners/<address>`` as its miner pages); every other path
(static files, the API, the health check) is the same on every host name.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from multipool.web.status import PREFIX_RE


def _host_name(host_header: str | None) -> str:
    """The name of a Host header, lowercase, without the port."""
    if not host_header:
        return ""
    host = host_header.strip().lower()
    if host.startswith("["):  # an IPv6 literal: never a pool's subdomain
        return host
    return host.rsplit(":", 1)[0] if ":" in host else host


def pool_of_host(host_header: str | None, public_host: str) -> str | None:
    """Given a request's Host header and the server's public host name, return the pool
    prefix the host names (``ltc.pool.example.org`` -> ``ltc``), or None.

    >>> pool_of_host("ltc.pool.example.org:443", "pool.example.org")
    'ltc'
    >>> pool_of_host("pool.example.org", "pool.example.org"), pool_of_host("a.b.pool.example.org", "pool.example.org")
    (None, None)
    """  # noqa: E501
    host = _host_name(host_header)
    suffix = "." + public_host.lower()
    if not host.endswith(suffix):
        return None
    prefix = host[:-len(suffix)]
    return prefix if PREFIX_RE.fullmatch(prefix) else None


class SubdomainRouting:
    """ASGI middleware: on ``<prefix>.<public_host>``, ``/`` and ``/miners/...`` are
    served as ``/<prefix>/`` and ``/<prefix>/miners/...``; ``scope["state"]["pool_host"]``
    names the pool so links are made for its host."""

    def __init__(self, app: ASGIApp, *, public_host: str):
        self.app = app
        self.public_host = public_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix = pool_of_host(Headers(scope=scope).get("host"), self.public_host)
            path: str = scope["path"]
            if prefix is not None and (path == "/" or path.startswith("/miners/")
                                       or path == "/miners"):
                scope = dict(scope)
                scope["path"] = f"/{prefix}{path}"
                scope["raw_path"] = f"/{prefix}".encode() + scope.get("raw_path", b"/")
                scope["state"] = {**scope.get("state", {}), "pool_host": prefix}
        await self.app(scope, receive, send)


@dataclass(frozen=True, slots=True)
class Links:
    """Where things are, for one request: ``root`` is the app's mount point (nginx may
    serve it under a path), ``subdomain`` whether each pool has its own host name,
    ``on_pool`` the pool whose host name this request came to (subdomain routing)."""

    root: str = ""
    subdomain: bool = False
    public_host: str = "localhost"
    on_pool: str | None = None

    def index(self) -> str:
        """The page of every pool."""
        if self.on_pool is not None:
            return f"//{self.public_host}{self.root}/"
        return f"{self.root}/"

    def pool(self, prefix: str) -> str:
        """A pool's page.

        >>> Links().pool("ltc"), Links(subdomain=True, public_host="x.org").pool("ltc")
        ('/ltc/', '//ltc.x.org/')
        >>> Links(subdomain=True, public_host="x.org", on_pool="ltc").pool("ltc")
        '/'
        """
        if self.subdomain:
            if prefix == self.on_pool:
                return f"{self.root}/"
            return f"//{prefix}.{self.public_host}{self.root}/"
        return f"{self.root}/{prefix}/"

    def miner(self, prefix: str, address: str) -> str:
        """A miner's page; the address is quoted (it may come from a search box)."""
        return f"{self.pool(prefix)}miners/{quote(address, safe='')}"

    def search(self, prefix: str) -> str:
        """Where a pool page's search form goes (GET ?address=)."""
        return f"{self.pool(prefix)}miners/"

    def api(self, path: str) -> str:
        """An API URL on this host, e.g. ``api("/api/v1/pools")``."""
        return f"{self.root}{path}"

    def static(self, name: str, version: str) -> str:
        return f"{self.root}/static/{name}?v={version}"
