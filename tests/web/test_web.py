"""The web process: the index page, the JSON API and `multipool web serve`, each run under
a real uvicorn server on a free port and fetched over HTTP with aiohttp."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from typer.testing import CliRunner
from yarl import URL

from multipool.cli.main import app as cli_app
from multipool.devnet import free_port
from multipool.web.app import create_app
from multipool.web.display import format_age, format_coins, format_hashrate, format_number
from multipool.web.server import bind_sockets, make_server, parse_listen
from multipool.web.settings import WebSettings
from multipool.web.status import StatusError, StatusReader, parse_status
from tests.web.serving import RunningApps, serve_command

PUBLIC_HOST = "pool.example.org"
runner = CliRunner()


def iso(seconds_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def status_doc(prefix: str, **sections: dict[str, Any]) -> dict[str, Any]:
    """A status.json as the engine writes it, fresh and open; sections override parts."""
    doc: dict[str, Any] = {
        "version": 1,
        "updated": iso(2),
        "coin": {"prefix": prefix, "name": "litecoin", "symbol": "LTC",
                 "algorithm": "scrypt", "network": "regtest"},
        "stratum": {"open": True, "ports": [
            {"port": 3333, "difficulty": 16.0, "vardiff": True, "tls": False}]},
        "daemon": {"synced": True, "blocks": 123, "headers": 123, "peers": 8, "reason": None},
        "pool": {"scheme": "pplns", "fee_percent": 1.0, "min_payout": "0.10000000",
                 "hashrate": 12345.6, "miners": 3, "workers": 5},
        "blocks": {"last_height": 120, "last_time": iso(65), "last_status": "confirmed",
                   "found_24h": 12},
        "payments": {"last_time": None, "last_status": None},
    }
    for name, values in sections.items():
        if isinstance(doc.get(name), dict) and isinstance(values, dict):
            doc[name] = {**doc[name], **values}
        else:
            doc[name] = values
    return doc


def write_status(root: Path, prefix: str, doc: dict[str, Any] | bytes) -> Path:
    directory = root / "web" / prefix
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "status.json"
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return path


class Fetched:
    def __init__(self, status: int, headers: Any, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    @property
    def text(self) -> str:
        return self.body.decode()


async def fetch(url: str | URL) -> Fetched:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return Fetched(response.status, response.headers, await response.read())


Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Start]:
    """Start the real app under a real uvicorn server in this process (on a free port);
    returns its base URL. Every server is stopped the way SIGTERM stops it."""
    apps = RunningApps()

    async def start(root: Path, public_host: str = PUBLIC_HOST) -> str:
        return await apps.start(create_app(root=root,
                                           settings=WebSettings(public_host=public_host)))

    yield start
    await apps.stop()


def test_the_server_parses_http_with_httptools(tmp_path: Path):
    """uvicorn's C parser, not its pure-Python default (h11): uvicorn picks h11 when
    httptools is missing, so a lost dependency would slow pages without a word."""
    server = make_server(create_app(root=tmp_path, settings=WebSettings()))
    server.config.load()
    assert server.config.http_protocol_class.__module__ == (
        "uvicorn.protocols.http.httptools_impl")


class WellFormed(HTMLParser):
    """Checks that every element is closed, in order (void elements excepted)."""

    VOID = {"meta", "link", "br", "hr", "img", "input", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")


def assert_valid_html(page: str) -> None:
    checker = WellFormed()
    checker.feed(page)
    checker.close()
    assert checker.doctype, "no <!doctype html>"
    assert not checker.errors and not checker.stack, (checker.errors, checker.stack)


# -- the index page ------------------------------------------------------------------------

async def test_index_lists_every_pool_with_its_facts(tmp_path: Path, serve: Start):
    write_status(tmp_path, "ltc", status_doc("ltc", stratum={"ports": [
        {"port": 3333, "difficulty": 16.0, "vardiff": True, "tls": False},
        {"port": 3334, "difficulty": 0.05, "vardiff": False, "tls": True}]}))
    write_status(tmp_path, "btc", status_doc(
        "btc", coin={"name": "bitcoin", "symbol": "BTC", "algorithm": "sha256d"},
        stratum={"ports": [{"port": 4444, "difficulty": 65536, "vardiff": True,
                            "tls": False}]},
        pool={"hashrate": 2.5e15, "scheme": "prop", "fee_percent": 0.5,
              "min_payout": "0.01000000", "miners": 1, "workers": 1},
        blocks={"last_height": 800000, "last_time": iso(7200 + 65), "found_24h": 0}))
    page = await fetch(await serve(tmp_path))
    assert page.status == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert page.headers["Cache-Control"] == "no-store"
    html = page.text
    assert_valid_html(html)
    assert '<meta http-equiv="refresh" content="30">' in html
    # Both pools, sorted by prefix: btc first.
    assert html.index("bitcoin") < html.index("litecoin")
    assert '<span class="symbol">LTC</span>' in html and '<span class="symbol">BTC</span>' in html
    assert "stratum+tcp://pool.example.org:3333</code> difficulty 16 (vardiff)" in html
    assert "stratum+ssl://pool.example.org:3334</code> difficulty 0.05<" in html
    assert "stratum+tcp://pool.example.org:4444</code> difficulty 65,536 (vardiff)" in html
    assert "<dd>12.35 kH/s</dd>" in html
    assert "<dd>2.50 PH/s</dd>" in html
    assert "<dd>3 miners, 5 workers</dd>" in html
    assert "<dd>#120, 1 min ago, confirmed</dd>" in html
    assert "<dd>#800000, 2 h 1 min ago, confirmed</dd>" in html
    assert "<dd>PPLNS, 1% fee, minimum 0.1 LTC</dd>" in html
    assert "<dd>PROP, 0.5% fee, minimum 0.01 BTC</dd>" in html
    assert "<dd>12</dd>" in html and "<dd>0</dd>" in html  # blocks in 24 h
    assert html.count('<p class="state">online</p>') == 2
    # The stylesheet is local, and versioned by its content.
    assert '<link rel="stylesheet" href="/static/style.css?v=' in html
    assert "http://" not in html.split("<body>")[0] and "https://" not in html


async def test_index_states_stale_closed_unreadable_missing(tmp_path: Path, serve: Start,
                                                            caplog: pytest.LogCaptureFixture):
    write_status(tmp_path, "aaa", status_doc("aaa", updated=iso(600)))  # type: ignore[arg-type]
    write_status(tmp_path, "bbb", status_doc(
        "bbb", stratum={"open": False},
        daemon={"synced": False, "blocks": 10, "headers": 500, "reason": "loading block index"}))
    write_status(tmp_path, "ccc", b'{"version": 1, "updated": ')  # cut short
    write_status(tmp_path, "ddd", status_doc("ddd", coin={"name": "dogecoin", "symbol": "DOGE"}))
    (tmp_path / "coin" / "eee").mkdir(parents=True)  # added, engine never started
    url = await serve(tmp_path)
    with caplog.at_level(logging.WARNING, logger="multipool.web"):
        first = await fetch(url)
        second = await fetch(url)
    assert first.status == second.status == 200
    html = first.text
    assert_valid_html(html)
    states = {part.split('"', 1)[0]: part for part in html.split('id="pool-')[1:]}
    assert sorted(states) == ["aaa", "bbb", "ccc", "ddd", "eee"]
    assert '<p class="state">offline <small>(last update 10 min ago)</small></p>' \
        in states["aaa"]
    assert "<dd>-</dd>" in states["aaa"]  # a stale hashrate is not shown as current
    assert "12.35 kH/s" not in states["aaa"]
    assert '<p class="state">stratum closed: loading block index</p>' in states["bbb"]
    assert "<dd>syncing, block 10 of 500, 8 peers</dd>" in states["bbb"]
    assert '<p class="state">status unreadable</p>' in states["ccc"]
    assert '<p class="state">online</p>' in states["ddd"] and "dogecoin" in states["ddd"]
    assert '<p class="state">offline <small>(no status yet)</small></p>' in states["eee"]
    # One warning for the broken file, not one per request.
    warnings = [r for r in caplog.records if "ccc/status.json" in r.getMessage()]
    assert len(warnings) == 1 and "status unreadable: not JSON" in warnings[0].getMessage()


async def test_index_escapes_what_the_files_say(tmp_path: Path, serve: Start):
    write_status(tmp_path, "evil", status_doc(
        "evil", coin={"name": "<script>alert(1)</script>", "symbol": "\"'&"},
        stratum={"open": False}, daemon={"reason": "<img src=x onerror=alert(2)>"}))
    html = (await fetch(await serve(tmp_path))).text
    # The one script is the app's own refresh script; none comes from the file.
    assert html.count("<script") == 1 and "<img" not in html
    assert '<script src="/static/refresh.js?v=' in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "stratum closed: &lt;img src=x onerror=alert(2)&gt;" in html
    assert "&#34;&#39;&amp;" in html
    assert_valid_html(html)


async def test_index_without_pools(tmp_path: Path, serve: Start):
    page = await fetch(await serve(tmp_path))  # not even a web/ directory yet
    assert page.status == 200
    assert "No pools yet." in page.text and "<article" not in page.text
    assert_valid_html(page.text)


async def test_only_prefix_named_directories_and_no_symlinks(tmp_path: Path, serve: Start):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps(status_doc("sym", coin={"name": "TOPSECRET"})))
    (tmp_path / "web" / "sym").mkdir(parents=True)
    (tmp_path / "web" / "sym" / "status.json").symlink_to(secret)
    (tmp_path / "web" / "linked").symlink_to(tmp_path / "web" / "sym")
    for bad in ("Upper", "1ltc", "a" * 17, "dot.ted"):
        write_status(tmp_path, bad, status_doc(bad, coin={"name": f"name-{bad}"}))
    url = await serve(tmp_path)
    html, api = (await fetch(url)).text, json.loads((await fetch(url + "/api/pools")).body)
    assert [(p["prefix"], p["state"]) for p in api] == [("linked", "unreadable"),
                                                         ("sym", "unreadable")]
    assert "cannot open" in api[1]["reason"] and "symlink" in api[0]["reason"]
    assert "TOPSECRET" not in html and "name-" not in html


# -- the JSON API ----------------------------------------------------------------------------

async def test_api_pools_matches_the_files(tmp_path: Path, serve: Start):
    write_status(tmp_path, "ltc", status_doc("ltc", stratum={"ports": [
        {"port": 3333, "difficulty": 16.0, "vardiff": True, "tls": False},
        {"port": 3334, "difficulty": None, "vardiff": False, "tls": True}]},
        payments={"last_time": iso(30), "last_status": "paid"}))
    write_status(tmp_path, "old", status_doc("old", updated=iso(600)))  # type: ignore[arg-type]
    write_status(tmp_path, "shut", status_doc("shut", stratum={"open": False},
                                              daemon={"reason": "daemon down"}))
    write_status(tmp_path, "zzz", b"\xff\xfe not json")
    response = await fetch(await serve(tmp_path) + "/api/pools")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    pools = {p["prefix"]: p for p in json.loads(response.body)}
    assert list(pools) == ["ltc", "old", "shut", "zzz"]
    assert {k: p["state"] for k, p in pools.items()} == {
        "ltc": "online", "old": "offline", "shut": "closed", "zzz": "unreadable"}
    ltc = pools["ltc"]
    assert (ltc["name"], ltc["symbol"], ltc["algorithm"], ltc["network"]) == \
        ("litecoin", "LTC", "scrypt", "regtest")
    assert ltc["hashrate"] == 12345.6 and ltc["miners"] == 3 and ltc["workers"] == 5
    assert ltc["stratum"] == [
        {"url": "stratum+tcp://pool.example.org:3333", "port": 3333, "difficulty": 16.0,
         "vardiff": True, "tls": False},
        {"url": "stratum+ssl://pool.example.org:3334", "port": 3334, "difficulty": None,
         "vardiff": False, "tls": True}]
    assert ltc["daemon"] == {"synced": True, "blocks": 123, "headers": 123, "peers": 8}
    assert (ltc["scheme"], ltc["fee_percent"], ltc["min_payout"]) == ("pplns", 1.0,
                                                                      "0.10000000")
    assert ltc["last_block"]["height"] == 120 and ltc["last_block"]["status"] == "confirmed"
    assert 65 <= ltc["last_block"]["age"] < 75 and 2 <= ltc["updated_age"] < 12
    assert ltc["blocks_24h"] == 12
    assert ltc["last_payment"]["status"] == "paid" and 30 <= ltc["last_payment"]["age"] < 40
    assert ltc["reason"] is None
    assert 600 <= pools["old"]["updated_age"] < 610 and pools["old"]["hashrate"] is None
    assert pools["old"]["name"] == "litecoin" and pools["old"]["reason"] == "status is stale"
    assert pools["shut"]["reason"] == "daemon down" and pools["shut"]["hashrate"] == 12345.6
    assert pools["zzz"]["reason"] == "not UTF-8 text" and pools["zzz"]["name"] is None
    assert set(pools["zzz"]) == set(ltc)  # the same keys for every state


# -- health, static files, what is not served --------------------------------------------------

async def test_healthz(tmp_path: Path, serve: Start):
    response = await fetch(await serve(tmp_path) + "/healthz")
    assert (response.status, response.text) == (200, "ok")
    assert response.headers["Cache-Control"] == "no-store"


async def test_static_css_is_served_with_a_long_cache(tmp_path: Path, serve: Start):
    url = await serve(tmp_path)
    html = (await fetch(url)).text
    href = html.split('<link rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    response = await fetch(url + href)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/css")
    assert response.headers["Cache-Control"] == "public, max-age=604800"
    assert ".pool" in response.text
    assert (await fetch(url + "/static/nope.css")).status == 404


async def raw_get(url: str, path: str) -> bytes:
    """Send the request line as given: HTTP clients clean up '..' before sending."""
    host, port = URL(url).host, URL(url).port
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


@pytest.mark.parametrize("path", [
    "/static/../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static//etc/passwd",
    "/static/../web/ltc/status.json",
    "/web/ltc/status.json",
    "/ltc/status.json",
])
async def test_nothing_outside_the_static_dir_is_served(tmp_path: Path, serve: Start, path: str):
    write_status(tmp_path, "ltc", status_doc("ltc", coin={"name": "SEEKRIT"}))
    url = await serve(tmp_path)
    answer = await raw_get(url, path)
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:100]
    assert b"root:" not in answer and b"SEEKRIT" not in answer
    # And through aiohttp, with the path sent as written.
    response = await fetch(URL(url + path, encoded=True))
    assert response.status == 404 and b"root:" not in response.body


# -- pure parts: formatting and validation -----------------------------------------------------

@pytest.mark.parametrize(("rate", "expected"), [
    (None, "-"), (0, "0 H/s"), (1, "1.00 H/s"), (999.4, "999.40 H/s"), (999.999, "1.00 kH/s"),
    (12345.6, "12.35 kH/s"), (1_000_000, "1.00 MH/s"), (3.2e9, "3.20 GH/s"),
    (1.234e12, "1.23 TH/s"), (2.5e15, "2.50 PH/s"), (7e18, "7.00 EH/s"),
    (5e24, "5000.00 ZH/s"),
])
def test_format_hashrate(rate: float | None, expected: str):
    assert format_hashrate(rate) == expected


@pytest.mark.parametrize(("seconds", "expected"), [
    (None, "-"), (-3, "0 s ago"), (0, "0 s ago"), (59, "59 s ago"), (60, "1 min ago"),
    (3599, "59 min ago"), (3600, "1 h ago"), (3660, "1 h 1 min ago"), (86399, "23 h 59 min ago"),
    (86400, "1 d ago"), (3 * 86400 + 7200 + 59, "3 d 2 h ago"),
])
def test_format_age(seconds: float | None, expected: str):
    assert format_age(seconds) == expected


def test_format_number_and_coins():
    assert [format_number(v) for v in (16.0, 0.05, 65536, 1.5, 1e-05, None)] == \
        ["16", "0.05", "65,536", "1.5", "1e-05", "-"]
    assert [format_coins(Decimal(v)) for v in ("0.10000000", "10.00", "12", "0E-8")] == \
        ["0.1", "10", "12", "0"]


def test_parse_status_accepts_nulls_everywhere():
    status = parse_status(json.dumps({
        "version": 1, "updated": "2026-11-30T12:00:00+00:00", "coin": {"prefix": "ltc"},
        "stratum": None, "daemon": {"synced": None}, "pool": None, "blocks": None,
        "payments": None}).encode(), "ltc")
    assert status.updated == datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert status.ports == () and status.hashrate is None and status.name is None


@pytest.mark.parametrize(("change", "reason"), [
    ({"version": 2}, "version: must be 1, got 2"),
    ({"version": True}, "version: must be 1, got True"),
    ({"updated": None}, "updated: is required"),
    ({"updated": "2026-11-30T12:00:00"}, "updated: must be an ISO 8601 time with a UTC offset"),
    ({"coin": {"prefix": "btc"}}, "coin.prefix: is 'btc' in the directory of 'ltc'"),
    ({"coin": "ltc"}, "coin.: must be an object"),
    ({"pool": {"hashrate": "fast"}}, "pool.hashrate: must be a number >= 0, got 'fast'"),
    ({"pool": {"miners": True}}, "pool.miners: must be an integer from 0 to"),
    ({"pool": {"min_payout": 0.1}}, "pool.min_payout: must be an amount in coins"),
    ({"stratum": {"open": "yes"}}, "stratum.open: must be true or false, got 'yes'"),
    ({"stratum": {"ports": [{"port": 70000}]}}, "stratum.ports[0].port: must be an integer"),
    ({"stratum": {"ports": [{"difficulty": 1}]}}, "stratum.ports[0].port: is required"),
    ({"coin": {"prefix": "ltc", "name": "x" * 201}}, "coin.name: must be a string of at most"),
])
def test_parse_status_refuses(change: dict[str, Any], reason: str):
    doc = {"version": 1, "updated": "2026-11-30T12:00:00+00:00", "coin": {"prefix": "ltc"},
           **change}
    with pytest.raises(StatusError) as caught:
        parse_status(json.dumps(doc).encode(), "ltc")
    assert str(caught.value).startswith(reason), str(caught.value)


@pytest.mark.parametrize(("data", "reason"), [
    (b'{"version": 1, "updated": "2026-11-30T12:00:00+00:00", "pool": {"hashrate": NaN}}',
     "NaN is not a number a status may hold"),
    (b"[" * 100_000, "not JSON"),
    (b"[]", "must be an object"),
])
def test_parse_status_refuses_bytes(data: bytes, reason: str):
    with pytest.raises(StatusError, match=reason):
        parse_status(data, "ltc")


def test_reader_warns_once_a_minute_and_says_when_fixed(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture):
    path = write_status(tmp_path, "ltc", b"not json")
    reader = StatusReader(tmp_path)
    with caplog.at_level(logging.INFO, logger="multipool.web"):
        for _ in range(5):
            assert reader.views()[0].state == "unreadable"
        path.write_text(json.dumps(status_doc("ltc")))
        assert reader.views()[0].state == "online"
        assert reader.views()[0].state == "online"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].endswith("ltc/status.json: status unreadable: not JSON: Expecting "
                                "value at line 1 column 1")
    assert messages[1] == "web/ltc/status.json: readable again"


def test_reader_refuses_huge_files(tmp_path: Path):
    write_status(tmp_path, "ltc", b" " * (64 * 1024 + 1))
    view = StatusReader(tmp_path).views()[0]
    assert (view.state, view.reason) == ("unreadable", "larger than 65536 bytes")


# -- the command -------------------------------------------------------------------------------

@pytest.mark.parametrize("listen", ["x", "host:", ":8080", "h:0", "h:65536", "h:http",
                                    "a b:80", "[::1:80", "h:٣"])
def test_bad_listen_exits_2(tmp_path: Path, listen: str):
    result = runner.invoke(cli_app, ["web", "serve", "--allow-root", "--root", str(tmp_path),
                                     "--listen", listen])
    assert result.exit_code == 2, result.output
    assert result.output == f"error: --listen: must be HOST:PORT, got {listen!r}\n"


def test_parse_listen_accepts():
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::]:8080") == ("::", 8080)
    assert parse_listen("localhost:65535") == ("localhost", 65535)


@pytest.mark.parametrize(("args", "message"), [
    (["--public-host", "pool example"],
     "error: --public-host: must be a host name or IP address, got 'pool example'\n"),
    (["--public-host", "<b>"],
     "error: --public-host: must be a host name or IP address, got '<b>'\n"),
    (["--log-level", "loud"],
     "error: --log-level: must be debug, info, warning or error, got 'loud'\n"),
    (["--workers", "33"],
     "error: --workers: must be between 0 (one per core) and 32, got 33\n"),
    (["--workers", "-1"],
     "error: --workers: must be between 0 (one per core) and 32, got -1\n"),
])
def test_bad_options_exit_2(tmp_path: Path, args: list[str], message: str):
    result = runner.invoke(cli_app, ["web", "serve", "--allow-root", "--root", str(tmp_path),
                                     *args])
    assert (result.exit_code, result.output) == (2, message)


def test_missing_root_exits_2(tmp_path: Path):
    result = runner.invoke(cli_app, ["web", "serve", "--allow-root",
                                     "--root", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.output == f"error: --root: no such directory: {tmp_path / 'nope'}\n"


def test_port_in_use_exits_1(tmp_path: Path):
    port = free_port()
    taken = bind_sockets("127.0.0.1", port)
    taken[0].listen()
    try:
        result = runner.invoke(cli_app, ["web", "serve", "--allow-root", "--root",
                                         str(tmp_path), "--listen", f"127.0.0.1:{port}"])
    finally:
        taken[0].close()
    assert result.exit_code == 1
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in result.output


def test_refuses_root_without_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    result = runner.invoke(cli_app, ["web", "serve", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert "refusing to run as root" in result.output and "--allow-root" in result.output


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_serve_command_serves_and_stops_cleanly(tmp_path: Path, stop: signal.Signals):
    write_status(tmp_path, "ltc", status_doc("ltc"))
    port = free_port()
    with serve_command(tmp_path, "--listen", f"127.0.0.1:{port}", "--public-host",
                       "mine.example.net", "--metrics-listen", "", "--workers", "1"
                       ) as process:
        deadline = time.monotonic() + 30
        page = None
        while page is None:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "web serve did not answer"
            try:
                page = await fetch(f"http://127.0.0.1:{port}/")
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        assert page.status == 200
        assert "stratum+tcp://mine.example.net:3333" in page.text
        assert (await fetch(f"http://127.0.0.1:{port}/healthz")).text == "ok"
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    listening = [line for line in stderr.splitlines() if "listening on" in line]
    assert len(listening) == 1, stderr
    assert f"multipool.web: listening on http://127.0.0.1:{port} (pools from " \
           f"{tmp_path.resolve() / 'web'}, public host mine.example.net)" in listening[0]
    assert stderr.rstrip().endswith("multipool.web: stopped"), stderr
    assert "Traceback" not in stderr and "uvicorn" not in stderr.lower()


# -- the engine's services, names, counts ----------------------------------------------------

DEGRADED = {
    "shares": {"state": "ok", "reason": None, "since": None},
    "blocks": {"state": "ok", "reason": None, "since": None},
    "payments": {"state": "degraded", "reason": "daemon unreachable: connection refused",
                 "since": "2026-12-01T08:30:00+00:00"},
    "stats": {"state": "degraded", "reason": None, "since": None},
}


async def test_index_shows_degraded_services_with_their_reasons(tmp_path: Path, serve: Start):
    write_status(tmp_path, "aaa", status_doc("aaa", services=DEGRADED))
    write_status(tmp_path, "bbb", status_doc("bbb", services=DEGRADED, stratum={"open": False},
                                             daemon={"reason": "daemon down"}))
    write_status(tmp_path, "ccc", status_doc("ccc", services=DEGRADED,
                                             updated=iso(600)))  # type: ignore[arg-type]
    write_status(tmp_path, "ddd", status_doc("ddd", services={
        "shares": {"state": "ok", "reason": None, "since": None}}))
    html = (await fetch(await serve(tmp_path))).text
    assert_valid_html(html)
    pools = {part.split('"', 1)[0]: part for part in html.split('id="pool-')[1:]}
    degraded_list = ('<li><strong>payments</strong> degraded since 2026-12-01 08:30 UTC: '
                     'daemon unreachable: connection refused</li>\n'
                     '<li><strong>stats</strong> degraded</li>')
    assert '<article class="pool degraded"' in html.split('id="pool-aaa"')[0][-40:]
    assert '<p class="state">degraded</p>' in pools["aaa"]
    assert degraded_list in pools["aaa"]
    assert "shares" not in pools["aaa"] and "blocks</strong>" not in pools["aaa"]
    # Closed ports come first, the services are still named.
    assert '<p class="state">stratum closed: daemon down</p>' in pools["bbb"]
    assert degraded_list in pools["bbb"]
    # A stale status says nothing of now: offline, no services shown.
    assert "offline" in pools["ccc"] and "degraded" not in pools["ccc"]
    assert '<p class="state">online</p>' in pools["ddd"] and "degraded" not in pools["ddd"]


async def test_api_reports_services_and_the_degraded_state(tmp_path: Path, serve: Start):
    write_status(tmp_path, "aaa", status_doc("aaa", services=DEGRADED))
    write_status(tmp_path, "bbb", status_doc("bbb"))  # an engine without services
    write_status(tmp_path, "ccc", status_doc("ccc", services=DEGRADED,
                                             updated=iso(600)))  # type: ignore[arg-type]
    pools = {p["prefix"]: p for p in json.loads(
        (await fetch(await serve(tmp_path) + "/api/pools")).body)}
    assert pools["aaa"]["state"] == "degraded"
    assert pools["aaa"]["reason"] == ("payments degraded: daemon unreachable: connection "
                                      "refused; stats degraded")
    assert pools["aaa"]["services"] == DEGRADED
    assert pools["bbb"]["state"] == "online" and pools["bbb"]["services"] is None
    assert pools["ccc"]["state"] == "offline" and pools["ccc"]["services"] is None
    assert set(pools["aaa"]) == set(pools["bbb"])


@pytest.mark.parametrize(("services", "reason"), [
    ("ok", "services: must be an object of at most 32 services"),
    ({f"s{i}": {"state": "ok"} for i in range(33)}, "services: must be an object of at most"),
    ({"Shares": {"state": "ok"}}, "services: 'Shares' is not a service name"),
    ({"x" * 33: {"state": "ok"}}, "services: '" + "x" * 33 + "' is not a service name"),
    ({"shares": "ok"}, "services.shares: must be an object"),
    ({"shares": None}, "services.shares: must be an object"),
    ({"shares": {}}, "services.shares.state: must be 'ok' or 'degraded', got None"),
    ({"shares": {"state": "down"}}, "services.shares.state: must be 'ok' or 'degraded'"),
    ({"shares": {"state": True}}, "services.shares.state: must be a string"),
    ({"shares": {"state": "degraded", "reason": 5}}, "services.shares.reason: must be a "
                                                     "string"),
    ({"shares": {"state": "degraded", "reason": "x" * 201}}, "services.shares.reason: must "
                                                            "be a string of at most 200"),
    ({"shares": {"state": "ok", "since": "yesterday"}}, "services.shares.since: must be an "
                                                        "ISO 8601 time"),
    ({"shares": {"state": "ok", "since": "2026-12-01T08:30:00"}}, "services.shares.since: "
                                                                  "must be an ISO 8601 time"),
])
def test_parse_status_refuses_bad_services(services: Any, reason: str):
    doc = {"version": 1, "updated": "2026-11-30T12:00:00+00:00", "coin": {"prefix": "ltc"},
           "services": services}
    with pytest.raises(StatusError) as caught:
        parse_status(json.dumps(doc).encode(), "ltc")
    assert str(caught.value).startswith(reason), str(caught.value)


def test_parse_status_reads_services_sorted_and_absent_as_none():
    doc = {"version": 1, "updated": "2026-11-30T12:00:00+00:00", "services": {
        "stats": {"state": "ok"}, "payments": {"state": "degraded", "reason": "r",
                                               "since": "2026-11-30T11:00:00+00:00"}}}
    status = parse_status(json.dumps(doc).encode(), "ltc")
    assert status.services is not None
    assert [(h.name, h.state, h.reason) for h in status.services] == [
        ("payments", "degraded", "r"), ("stats", "ok", None)]
    assert status.services[0].since == datetime(2026, 11, 30, 11, tzinfo=UTC)
    assert [h.name for h in status.degraded] == ["payments"]
    del doc["services"]
    assert parse_status(json.dumps(doc).encode(), "ltc").services is None


async def test_index_names_each_pool_by_prefix_and_counts_in_words(tmp_path: Path,
                                                                   serve: Start):
    one = {"pool": {"miners": 1, "workers": 1}, "daemon": {"peers": 1}}
    write_status(tmp_path, "ltca", status_doc("ltca", **one))
    write_status(tmp_path, "ltcb", status_doc("ltcb", pool={"miners": 0, "workers": 0},
                                              daemon={"peers": 2}))
    html = (await fetch(await serve(tmp_path))).text
    assert_valid_html(html)
    pools = {part.split('"', 1)[0]: part for part in html.split('id="pool-')[1:]}
    # Two litecoin pools: told apart by their prefix.
    assert ('<h2>litecoin <span class="symbol">LTC</span> <span class="prefix">ltca</span>'
            '</h2>') in pools["ltca"]
    assert '<span class="prefix">ltcb</span>' in pools["ltcb"]
    assert "<dd>1 miner, 1 worker</dd>" in pools["ltca"]
    assert "<dd>synced, block 123, 1 peer</dd>" in pools["ltca"]
    assert "<dd>0 miners, 0 workers</dd>" in pools["ltcb"]
    assert "<dd>synced, block 123, 2 peers</dd>" in pools["ltcb"]
    assert "<dt>Hashrate <small>(10 min)</small></dt>" in pools["ltca"]


def test_plural_and_window_text():
    from multipool.web.display import plural, window_text
    assert [plural(n, "miner") for n in (0, 1, 2, 1000)] == [
        "0 miners", "1 miner", "2 miners", "1,000 miners"]
    assert [window_text(s) for s in (600, 3600, 90, 45)] == ["10 min", "1 h", "90 s", "45 s"]
