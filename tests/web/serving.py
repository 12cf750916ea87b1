"""Serving the real app under a real uvicorn server on a free loopback port, with the
settings and readers a test chooses; fetching with the headers it chooses; and the
`multipool web serve` command itself as a process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from multipool.devnet import free_port
from multipool.web.app import create_app
from multipool.web.data import PoolReaders
from multipool.web.pages import PAGE_CACHE_SECONDS
from multipool.web.server import bind_sockets, make_server
from multipool.web.settings import WebSettings

PUBLIC_HOST = "pool.example.org"


@contextmanager
def serve_command(root: Path, *options: str) -> Iterator[subprocess.Popen[str]]:
    """`multipool web serve --root ROOT OPTIONS...` as a process whose output the test
    reads (``communicate()`` after the stop signal it sends); killed if still running
    when the block ends, however it ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "multipool.cli", "web", "serve", "--allow-root",
         "--root", str(root), *options],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


class Got:
    def __init__(self, status: int, headers: Any, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode()


async def get(url: str, *, headers: dict[str, str] | None = None,
              method: str = "GET", redirects: bool = False) -> Got:
    """One request, redirects not followed, the answer read whole."""
    async with aiohttp.ClientSession() as session, session.request(
            method, url, headers=headers or {}, allow_redirects=redirects) as response:
        return Got(response.status, response.headers, await response.read())


Serve = Callable[..., Awaitable[str]]


class RunningApps:
    """ASGI apps under real uvicorn servers in this process, each on a free loopback
    port; :meth:`stop` stops them all the way SIGTERM stops one (lifespan run)."""

    def __init__(self) -> None:
        self.running: list[tuple[Any, asyncio.Task[None]]] = []

    async def start(self, app: Any) -> str:
        """Serve ``app``; return its base URL once it listens."""
        port = free_port()
        server = make_server(app)
        task = asyncio.create_task(server.serve(sockets=bind_sockets("127.0.0.1", port)))
        self.running.append((server, task))
        deadline = time.monotonic() + 10
        while not server.started:
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, "server did not start"
            await asyncio.sleep(0.01)
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for server, task in self.running:
            server.should_exit = True
            await asyncio.wait_for(task, 10)


@pytest.fixture
async def serve_app() -> AsyncIterator[Serve]:
    """Start create_app(root, settings, readers) under uvicorn; return its base URL.
    Every server is stopped (and its lifespan run) at the end of the test."""
    apps = RunningApps()

    async def start(root: Path, *, readers: PoolReaders | None = None,
                    page_cache_seconds: float = PAGE_CACHE_SECONDS, **settings: Any) -> str:
        settings.setdefault("public_host", PUBLIC_HOST)
        return await apps.start(create_app(root=root, settings=WebSettings(**settings),
                                           readers=readers,
                                           page_cache_seconds=page_cache_seconds))

    yield start
    await apps.stop()
