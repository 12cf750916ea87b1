"""DaemonClient against a scripted local HTTP server that answers like bitcoind."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from multipool.chain.rpc import DaemonAuthError, DaemonClient, DaemonError, DaemonUnavailable
from multipool.devnet import free_port
from multipool.errors import ConfigError

Reply = tuple[int, Any] | Callable[[web.Request], Awaitable[web.StreamResponse]]
WARMUP = {"result": None, "error": {"code": -28, "message": "Loading block index..."}, "id": 1}


def ok(result: Any) -> tuple[int, Any]:
    return 200, {"result": result, "error": None, "id": 1}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Seen:
    path: str
    authorization: str | None
    payload: dict[str, Any]


@dataclass
class ScriptedDaemon:
    """Answers with ``replies`` in order, then with ``default``; records every request.
    With ``required_auth`` set, a request without that Authorization gets bitcoind's
    empty 401."""

    port: int
    replies: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=lambda: ok(0))
    required_auth: str | None = None
    seen: list[Seen] = field(default_factory=list)
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        authorization = request.headers.get("Authorization")
        self.seen.append(Seen(request.path, authorization, json.loads(await request.read())))
        if self.required_auth is not None and authorization != self.required_auth:
            return web.Response(status=401)
        reply = self.replies.pop(0) if self.replies else self.default
        if callable(reply):
            return await reply(request)
        status, body = reply
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return web.Response(status=status, body=data, content_type="application/json")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedDaemon]:
    daemon = ScriptedDaemon(free_port())
    await daemon.start()
    yield daemon
    await daemon.stop()


def client(server: ScriptedDaemon, **kwargs: Any) -> DaemonClient:
    kwargs.setdefault("user", "pool")
    kwargs.setdefault("password", "s3cret")
    return DaemonClient(server.url, **kwargs)


def warnings_in(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


async def test_warmup_is_retried_until_the_daemon_answers(server, caplog):
    caplog.set_level(logging.INFO, logger="multipool.daemon")
    server.replies = [(500, WARMUP), (500, WARMUP), ok(7)]
    async with client(server) as daemon:
        assert await daemon.getblockcount() == 7
    assert len(server.seen) == 3
    assert len(warnings_in(caplog)) == 1 and "warming up" in warnings_in(caplog)[0]
    assert sum("connection to daemon restored" in m for m in caplog.messages) == 1


async def test_rpc_error_in_http_500_is_raised_at_once(server):
    server.replies = [(500, {"result": None, "id": 1,
                             "error": {"code": -8, "message": "Block height out of range"}})]
    async with client(server) as daemon:
        with pytest.raises(DaemonError) as caught:
            await daemon.getblockhash(10**6)
    assert (caught.value.code, caught.value.message) == (-8, "Block height out of range")
    assert str(caught.value) == "getblockhash: Block height out of range (code -8)"
    assert len(server.seen) == 1


async def test_401_with_empty_body_is_an_auth_error(server, caplog):
    server.replies = [(401, b"")]
    async with client(server, password="hunter2") as daemon:
        with pytest.raises(DaemonAuthError) as caught:
            await daemon.getblockcount()
        assert "hunter2" not in repr(daemon)
    assert "HTTP 401" in str(caught.value) and "rpc_user/rpc_password" in str(caught.value)
    assert "hunter2" not in str(caught.value) and "hunter2" not in caplog.text
    assert len(server.seen) == 1


async def test_403_names_rpcallowip(server):
    server.replies = [(403, b"")]
    async with client(server) as daemon:
        with pytest.raises(DaemonAuthError, match="rpcallowip"):
            await daemon.getblockcount()


@pytest.mark.parametrize("body", [b"<html>proxy error</html>", b'{"id": 1}', b"[1, 2]", b""])
async def test_malformed_reply_names_the_method(server, body):
    server.replies = [(200, body)]
    async with client(server) as daemon:
        with pytest.raises(DaemonError) as caught:
            await daemon.getmininginfo()
    assert caught.value.method == "getmininginfo"
    assert "getmininginfo" in str(caught.value) and "not a JSON-RPC reply" in str(caught.value)
    assert not isinstance(caught.value, DaemonUnavailable)


async def test_cookie_auth_and_reread_after_401(server, tmp_path: Path):
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:first")
    server.required_auth = basic("__cookie__", "first")
    async with DaemonClient(server.url, cookie_file=cookie) as daemon:
        assert await daemon.getblockcount() == 0
        assert server.seen[-1].authorization == basic("__cookie__", "first")
        # The daemon restarted with a new cookie: one 401, re-read, then success.
        cookie.write_text("__cookie__:second")
        server.required_auth = basic("__cookie__", "second")
        assert await daemon.getblockcount() == 0
        assert [s.authorization for s in server.seen[1:]] == [
            basic("__cookie__", "first"), basic("__cookie__", "second")]
        # A 401 with an unchanged cookie is final, not a loop.
        server.required_auth = basic("__cookie__", "third")
        with pytest.raises(DaemonAuthError, match=r"cookie file .*\.cookie"):
            await daemon.getblockcount()
        assert len(server.seen) == 4


async def test_missing_cookie_file_waits_for_the_daemon(server, tmp_path: Path):
    cookie = tmp_path / ".cookie"
    async with DaemonClient(server.url, cookie_file=cookie) as daemon:
        call = asyncio.create_task(daemon.getblockcount())
        await asyncio.sleep(0.3)
        assert not call.done() and server.seen == []
        cookie.write_text("__cookie__:abc\n")
        assert await asyncio.wait_for(call, 5) == 0
    assert server.seen[0].authorization == basic("__cookie__", "abc")


async def test_outgoing_requests(server):
    async with client(server, wallet="pool") as daemon:
        await daemon.getblocktemplate(["mweb", "segwit"])
        await daemon.getblocktemplate(["mweb", "segwit"], longpollid="abc123")
        await daemon.submitblock("00ff")
        await daemon.getblockheader("aa" * 32)
        await daemon.getblock("bb" * 32)
        await daemon.getnewaddress()
        await daemon.getnewaddress("", "mweb")
        await daemon.sendtoaddress("rltc1qxyz", Decimal("1.50000000"))
        await daemon.generatetoaddress(3, "rltc1qxyz")
        await daemon.addnode("127.0.0.1:1234", "onetry")
    calls = [(s.path, s.payload["method"], s.payload["params"]) for s in server.seen]
    assert calls == [
        ("/", "getblocktemplate", [{"rules": ["mweb", "segwit"]}]),
        ("/", "getblocktemplate", [{"rules": ["mweb", "segwit"], "longpollid": "abc123"}]),
        ("/", "submitblock", ["00ff"]),
        ("/", "getblockheader", ["aa" * 32, True]),
        ("/", "getblock", ["bb" * 32, 1]),
        ("/wallet/pool", "getnewaddress", [""]),
        ("/wallet/pool", "getnewaddress", ["", "mweb"]),
        ("/wallet/pool", "sendtoaddress", ["rltc1qxyz", "1.50000000"]),  # exact, not a float
        ("/", "generatetoaddress", [3, "rltc1qxyz"]),
        ("/", "addnode", ["127.0.0.1:1234", "onetry"]),
    ]
    assert all(s.payload["jsonrpc"] == "1.0" for s in server.seen)
    ids = [s.payload["id"] for s in server.seen]
    assert ids == sorted(set(ids))
    assert server.seen[0].authorization == basic("pool", "s3cret")


async def test_longpoll_outlives_the_normal_timeout(server):
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.8)
        return web.json_response({"result": {"height": 5}, "error": None, "id": 1})

    server.default = slow
    async with client(server, timeout=0.3, retry_for=0.5) as daemon:
        assert await daemon.getblocktemplate(["segwit"], longpollid="x") == {"height": 5}
        with pytest.raises(DaemonUnavailable, match=r"no answer within 0\.3s"):
            await daemon.getblocktemplate(["segwit"])


async def test_semaphore_limits_concurrent_requests_but_not_long_polls(server):
    in_flight = peak = 0
    release_longpoll = asyncio.Event()

    async def tracked(request: web.Request) -> web.Response:
        nonlocal in_flight, peak
        payload = json.loads(await request.read())
        if payload["method"] == "getblocktemplate":
            await release_longpoll.wait()
            return web.json_response({"result": {}, "error": None, "id": 1})
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return web.json_response({"result": 1, "error": None, "id": 1})

    server.default = tracked
    async with client(server, max_concurrency=2) as daemon:
        polls = [asyncio.create_task(daemon.getblocktemplate(["segwit"], longpollid="x"))
                 for _ in range(2)]
        assert await asyncio.gather(*(daemon.getblockcount() for _ in range(6))) == [1] * 6
        release_longpoll.set()
        await asyncio.gather(*polls)
    assert peak == 2


async def test_work_queue_full_is_retried(server):
    server.replies = [(503, b"Work queue depth exceeded"), ok("ab" * 32)]
    async with client(server) as daemon:
        assert await daemon.getbestblockhash() == "ab" * 32
    assert len(server.seen) == 2


async def test_refused_connection_is_retried_until_the_daemon_is_up(caplog):
    caplog.set_level(logging.INFO, logger="multipool.daemon")
    late = ScriptedDaemon(free_port(), default=ok(42))
    async with DaemonClient(late.url, user="u", password="topsecret") as daemon:
        call = asyncio.create_task(daemon.getblockcount())
        await asyncio.sleep(0.8)  # several attempts: 0.1, 0.2, 0.4 s apart
        assert not call.done()
        await late.start()
        try:
            assert await asyncio.wait_for(call, 5) == 42
            assert await daemon.getblockcount() == 42
        finally:
            await late.stop()
    assert len(warnings_in(caplog)) == 1 and "cannot connect" in warnings_in(caplog)[0]
    assert sum("connection to daemon restored" in m for m in caplog.messages) == 1
    assert "topsecret" not in caplog.text


async def test_unreachable_daemon_gives_up_after_retry_for(caplog):
    url = f"http://127.0.0.1:{free_port()}/"
    async with DaemonClient(url, retry_for=0.5) as daemon:
        with pytest.raises(DaemonUnavailable) as caught:
            await daemon.getblockcount()
        assert isinstance(caught.value, DaemonError)
    assert url in str(caught.value) and "cannot connect" in str(caught.value)
    assert len(warnings_in(caplog)) == 1  # not one per attempt


@pytest.fixture
async def hang_up() -> AsyncIterator[tuple[str, list[bytes]]]:
    """A server that reads each request and closes the connection without answering."""
    requests: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.close()

    tcp = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/", requests
    tcp.close()
    await tcp.wait_closed()


async def test_lost_connection_is_retried_for_reads_but_not_for_payments(hang_up):
    url, requests = hang_up
    async with DaemonClient(url, user="u", password="p", retry_for=0.3) as daemon:
        with pytest.raises(DaemonUnavailable, match="connection lost"):
            await daemon.getblockcount()
        assert len(requests) > 1
        requests.clear()
        with pytest.raises(DaemonError, match="may have executed") as caught:
            await daemon.sendtoaddress("rltc1qxyz", 1.0)
        assert not isinstance(caught.value, DaemonUnavailable)
        assert len(requests) == 1


async def test_credentials_in_the_url_are_used_but_never_shown(server):
    url = f"http://pool:urlsecret@127.0.0.1:{server.port}/"
    async with DaemonClient(url) as daemon:
        await daemon.getblockcount()
        assert "urlsecret" not in daemon.url and "urlsecret" not in repr(daemon)
    assert server.seen[0].authorization == basic("pool", "urlsecret")


@pytest.mark.parametrize(("url", "kwargs", "key"), [
    ("ftp://127.0.0.1:9332/", {}, "rpc_url"),
    ("127.0.0.1:9332", {}, "rpc_url"),
    ("http://127.0.0.1:9332/", {"user": "pool"}, "rpc_user"),
])
def test_bad_settings_fail_fast(url, kwargs, key):
    with pytest.raises(ConfigError) as caught:
        DaemonClient(url, **kwargs)
    assert caught.value.key == key


def test_ipv6_url_keeps_its_brackets():
    assert DaemonClient("http://[::1]:9332", user="u", password="p").url == "http://[::1]:9332/"


async def test_calls_outside_async_with_are_refused():
    daemon = DaemonClient("http://127.0.0.1:1/")
    with pytest.raises(RuntimeError, match="async with"):
        await daemon.getblockcount()


async def test_amounts_are_exact_both_ways(server):
    """Replies are parsed with parse_float=Decimal: 0.1 + 0.2 stays exact, a fee of
    0.0000226 is 2260 units; Decimals in the params go out as strings."""
    server.replies = [ok({"mine": {"trusted": 0.1, "immature": 0.2}}), ok("0" * 64)]
    async with client(server, wallet="pool") as daemon:
        balances = await daemon.getbalances()
        await daemon.createrawtransaction([], [{"rltc1qxyz": Decimal("0.30000000")}])
    trusted, immature = balances["mine"]["trusted"], balances["mine"]["immature"]
    assert isinstance(trusted, Decimal) and trusted + immature == Decimal("0.3")
    assert server.seen[1].payload["params"][1] == [{"rltc1qxyz": "0.30000000"}]


async def test_bytes_sent_keep_the_decimal_digits(server):
    async def raw(request: web.Request) -> web.Response:
        body = await request.read()
        assert b'"0.00002260"' in body and b"2.26e-05" not in body
        return web.json_response({"result": None, "error": None, "id": 1})
    server.replies = [raw]
    async with client(server) as daemon:
        await daemon._call("test", [Decimal("0.00002260")])


async def test_retry_deadline_stops_retries_and_cuts_the_timeout(caplog):
    """Within retry_until, a refused connection is retried only up to the deadline, a
    call that would wait past it is cut short, and none starts after it."""
    url = f"http://127.0.0.1:{free_port()}/"
    async with DaemonClient(url) as daemon:  # no retry_for: it would retry forever
        began = asyncio.get_running_loop().time()
        with DaemonClient.retry_until(time.monotonic() + 0.5), \
                pytest.raises(DaemonUnavailable, match="cannot connect"):
            await daemon.sendrawtransaction("00")
        assert 0.4 < asyncio.get_running_loop().time() - began < 2.0
        with DaemonClient.retry_until(time.monotonic() - 1), \
                pytest.raises(DaemonUnavailable, match="deadline has passed"):
            await daemon.getblockcount()


async def test_retry_deadline_bounds_an_unanswered_call(hang_up):
    """sendrawtransaction (safe to repeat) is retried after a lost answer, but never
    past the deadline; the deadline binds only the task that set it."""
    url, requests = hang_up
    async with DaemonClient(url, user="u", password="p") as daemon:
        began = time.monotonic()
        with DaemonClient.retry_until(began + 0.6), pytest.raises(DaemonUnavailable):
            await daemon.sendrawtransaction("00")
        assert len(requests) > 1 and time.monotonic() - began < 2.0
        with DaemonClient.retry_until(began + 0.1):
            inner = DaemonClient.retry_until(began + 100)
            with inner:  # an earlier deadline in force stays
                with pytest.raises(DaemonUnavailable):
                    await daemon.getblockcount()

        async def other_task() -> None:
            with pytest.raises(DaemonUnavailable, match="deadline has passed"):
                await daemon.getblockcount()
        with DaemonClient.retry_until(time.monotonic() - 1):
            task = asyncio.create_task(other_task())  # copies the context: bound too
        await task
