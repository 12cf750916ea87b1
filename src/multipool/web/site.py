"""What the pages and the API share: the pools of this server (their status files, read
in a worker thread), their database readers, and the rules of each pool's coin.

A pool is known when it has a directory under ``web/`` or ``coin/`` (see
:class:`multipool.web.status.StatusReader`); anything else in a URL is an unknown pool.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import SQLAlchemyError

from multipool.chain.networks import NetworkParams
from multipool.errors import PoolError
from multipool.web.data import PoolReader, PoolReaders
from multipool.web.params import network_of
from multipool.web.settings import WebSettings
from multipool.web.status import PREFIX_RE, PoolView, StatusReader, pool_view

# Decimals of a coin whose status does not say (every coin of the catalogue but peercoin).
DEFAULT_DECIMALS = 8
# What a reader's query may raise when the database is gone or refuses: the page then
# says the statistics are unavailable (TimeoutError: a query past its deadline).
STATS_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


class UnknownPool(PoolError, LookupError):
    """A URL names a pool this server does not have."""


class StatsUnavailable(PoolError, RuntimeError):
    """The pool's database cannot be read now."""


@dataclass(frozen=True, slots=True)
class Pool:
    """One pool for one request: what its status file says and its database reader
    (None when the database cannot be opened)."""

    view: PoolView
    reader: PoolReader | None

    @property
    def prefix(self) -> str:
        return self.view.prefix

    @property
    def network(self) -> NetworkParams | None:
        s = self.view.status
        return None if s is None else network_of(s.name, s.network)

    @property
    def decimals(self) -> int:
        network = self.network
        return DEFAULT_DECIMALS if network is None else network.decimals

    @property
    def symbol(self) -> str:
        s = self.view.status
        return (s.symbol if s is not None and s.symbol else "") or self.prefix.upper()


class Site:
    """The pools of this server, for the pages and the API."""

    def __init__(self, *, status: StatusReader, readers: PoolReaders, settings: WebSettings):
        self.status = status
        self.readers = readers
        self.settings = settings

    async def views(self) -> list[PoolView]:
        """Every pool's status, sorted by prefix (files read off the event loop)."""
        return await asyncio.to_thread(self.status.views)

    async def view(self, prefix: str) -> PoolView:
        """One pool's status; UnknownPool when the server has no such pool."""
        if not PREFIX_RE.fullmatch(prefix):
            raise UnknownPool(f"no pool {prefix[:40]!r} on this server")

        def read() -> PoolView | None:
            if prefix not in self.status.prefixes():
                return None
            return pool_view(prefix, self.status.read(prefix), datetime.now(UTC))

        view = await asyncio.to_thread(read)
        if view is None:
            raise UnknownPool(f"no pool {prefix!r} on this server")
        return view

    async def reader(self, view: PoolView) -> PoolReader | None:
        """The pool's database reader; None without a valid status (it says where the
        database is), or when the database cannot be opened."""
        if view.status is None:
            return None
        return await self.readers.get(view.prefix, view.status)

    async def pool(self, prefix: str) -> Pool:
        """One pool and its reader; UnknownPool when there is no such pool."""
        view = await self.view(prefix)
        return Pool(view, await self.reader(view))
