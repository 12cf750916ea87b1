"""The pool and miner pages, the search box, error pages and subdomain routing: the real
app under a real uvicorn server, its database readers replaced by the hand-written
stand-in of tests/web/fakes.py (canned figures; figures computed from real shares are
checked in test_web_database.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from multipool.devnet import free_port
from multipool.web.app import create_app
from multipool.web.pages import PAGE_HEADERS
from multipool.web.server import bind_sockets, make_server
from multipool.web.settings import WebSettings
from tests.web.fakes import ALICE, BOB, CAROL, EVIL_WORKER, FakeReader, FakeReaders, sample_reader
from tests.web.serving import Serve, get
from tests.web.test_web import assert_valid_html, iso, status_doc, write_status


def two_pools(root: Path) -> None:
    write_status(root, "ltc", status_doc("ltc", stratum={"ports": [
        {"port": 3333, "difficulty": 16.0, "vardiff": True, "tls": False},
        {"port": 3334, "difficulty": 512.0, "vardiff": False, "tls": False}]},
        network={"hashrate": 3.5e12, "difficulty": 12345.0}))
    write_status(root, "ltcb", status_doc("ltcb", coin={"name": "litecoin", "symbol": "LTC"}))


def section(html: str, ident: str) -> str:
    """The <section id=ident> of a page."""
    start = html.index(f'id="{ident}"')
    return html[start:html.index("</section>", start)]


async def test_pool_page_shows_what_a_miner_needs(tmp_path: Path, serve_app: Serve):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    page = await get(url + "/ltc/")
    assert page.status == 200
    for name, value in PAGE_HEADERS.items():
        assert page.headers[name] == value
    assert "form-action 'self'" in page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    html = page.text
    assert_valid_html(html)
    # Hashrate in three windows, each named, and the 24 h chart with its axes.
    hashrate = section(html, "hashrate")
    assert "<dt>Pool <small>(10 min)</small></dt>\n<dd>2.00 MH/s</dd>" in hashrate
    assert "<dt>Pool <small>(1 h)</small></dt>\n<dd>1.90 MH/s</dd>" in hashrate
    assert "<dt>Pool <small>(24 h)</small></dt>\n<dd>1.50 MH/s</dd>" in hashrate
    assert "<dd>25.0 % <small>" in hashrate  # round effort
    assert "<dd>16,200 accepted, 30 stale</dd>" in hashrate
    # The network's figures, from the daemon through status.json.
    assert ("<dt>Network <small>(the daemon's estimate)</small></dt>\n"
            "<dd>3.50 TH/s, difficulty 12,345</dd>") in html
    assert '<svg class="chart" id="pool-hashrate"' in hashrate
    assert "<title id=\"pool-hashrate-title\">Pool hashrate, last 24 h</title>" in hashrate
    assert ">MH/s</text>" in hashrate and ">time (UTC)</text>" in hashrate
    # How to connect: each port's URL, the username and password forms.
    connect = section(html, "connect")
    assert '<code class="copy">stratum+tcp://pool.example.org:3333</code>' in connect
    assert '<code class="copy">stratum+tcp://pool.example.org:3334</code>' in connect
    assert "512 (fixed)" in connect and "16 (vardiff" in connect
    assert "<code>ADDRESS.WORKER</code>" in connect and "<code>d=N</code>" in connect
    assert "<code>x</code>" in connect
    # Blocks: a pending one with its progress, confirmed, orphaned; reward, effort,
    # the finder shortened and linked to its miner page.
    blocks = section(html, "blocks")
    assert "(43 in all, page 1 of 3, newest first)" in blocks
    rows = blocks.split('<tr class="block ')[1:]
    assert len(rows) == 20
    assert rows[0].startswith("pending")
    assert '<progress value="42" max="101">42/101</progress>' in rows[0]
    assert "42/101 confirmations" in rows[0]
    assert '<span class="amount">6.25 LTC</span>' in rows[0] and "87.0 %" in rows[0]
    assert f'<a href="/ltc/miners/{ALICE}" title="{ALICE}.rig1">{ALICE[:8]}…' in rows[0]
    assert rows[1].startswith("confirmed") and "150.0 %" in rows[1]
    assert "&lt;img src=x onerror=alert(1)&gt;" in rows[1]  # the worker, in the title
    assert rows[2].startswith("orphaned") and "<progress" not in rows[2]
    # Payments: amounts, fees, the txid shortened with the whole in its title.
    payments = section(html, "payments")
    assert "(25 in all, page 1 of 3, newest first)" in payments
    assert "not sent yet" in payments  # the newest has no txid yet
    txid = f"{1:064x}"
    assert f'<code class="txid" title="{txid}">{txid[:10]}…' in payments
    assert '<span class="amount">12.345 LTC</span>' in payments
    assert '<span class="amount">0.0000225 LTC</span>' in payments
    # Top miners of the last hour.
    miners = section(html, "miners")
    assert "Top miners <small>(1 h)</small>" in miners
    assert miners.index(ALICE) < miners.index(BOB)
    assert "<td>1.50 MH/s</td>" in miners and "<td>500.00 kH/s</td>" in miners
    # The other pools of the server, and the search box leading to a miner page.
    others = section(html, "others")
    assert '<a href="/ltcb/">litecoin <span class="symbol">LTC</span>' in others
    assert 'href="/ltc/"' not in others
    assert '<form class="search" method="get" action="/ltc/miners/"' in html
    assert '<input id="address" name="address"' in html


async def test_pool_page_without_a_readable_database(tmp_path: Path, serve_app: Serve):
    two_pools(tmp_path)
    failing = FakeReader(fail=True)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltcb": failing}))
    for path in ("/ltc/", "/ltcb/"):  # no reader at all; a reader whose queries fail
        page = await get(url + path)
        assert page.status == 200
        html = page.text
        assert_valid_html(html)
        assert "Statistics are unavailable right now" in html
        # What the status file says is still there.
        assert "<dd>12.35 kH/s</dd>" in html and "<dd>3 miners, 5 workers</dd>" in html
        assert "stratum+tcp://pool.example.org:3333" in html
        assert 'id="blocks"' not in html
    assert failing.calls, "the failing reader was asked"


async def test_index_adds_database_figures_and_links_each_pool(tmp_path: Path,
                                                               serve_app: Serve):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    html = (await get(url + "/")).text
    assert_valid_html(html)
    pools = {part.split('"', 1)[0]: part for part in html.split('id="pool-')[1:]}
    assert "<dt>Hashrate <small>(1 h · 24 h)</small></dt>\n<dd>1.90 MH/s · 1.50 MH/s</dd>" \
        in pools["ltc"]
    assert '<a href="/ltc/">ltc: blocks, payments, miners' in pools["ltc"]
    assert "statistics unavailable" not in pools["ltc"]
    assert '<a href="/ltcb/">' in pools["ltcb"] and "statistics unavailable" in pools["ltcb"]


async def test_miner_page(tmp_path: Path, serve_app: Serve):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}),
                          offline_after=15)
    page = await get(f"{url}/ltc/miners/{ALICE}")
    assert page.status == 200
    html = page.text
    assert_valid_html(html)
    assert f'<code class="copy">{ALICE}</code>' in html
    balance = section(html, "balance")
    assert "Immature" in balance and '<span class="amount">3.125 LTC</span>' in balance
    assert '<span class="amount">0.05 LTC</span> <small>(paid from 0.1 LTC)</small>' in balance
    assert '<span class="amount">4.1 LTC</span>' in balance
    assert "40.00 % of the round's shares" in balance
    hashrate = section(html, "hashrate")
    assert "<dt>Hashrate <small>(10 min)</small></dt>\n<dd>1.50 MH/s</dd>" in hashrate
    assert "<dt>Hashrate <small>(24 h)</small></dt>\n<dd>1.00 MH/s</dd>" in hashrate
    assert '<svg class="chart" id="miner-hashrate"' in hashrate
    assert f"Hashrate of {ALICE}, last 24 h</title>" in hashrate
    workers = section(html, "workers")
    assert "offline after 15 min without a share" in workers
    rows = workers.split('<tr class="worker ')[1:]
    assert rows[0].startswith("online") and "<td>rig1</td>" in rows[0]
    assert re.search(r"<td>\d+ s ago</td>", rows[0]) and "<td>1.00 MH/s</td>" in rows[0]
    assert rows[1].startswith("offline") and re.search(r"<td>4\d min ago</td>", rows[1])
    # The worker name is the miner's: escaped.
    assert "<td>&lt;img src=x onerror=alert(1)&gt;&#34;&#39;&amp;</td>" in rows[1]
    assert "<img" not in html
    rejects = section(html, "rejects")
    assert rejects.index("&lt;b&gt;dup&lt;/b&gt;") < rejects.index("low difficulty") \
        < rejects.index("stale")
    assert "<tr><td>stale</td><td>9</td></tr>" in rejects
    payments = section(html, "payments")
    assert f'title="{"ab" * 32}"' in payments and "(latest 1 of 1)" in payments


async def test_valid_address_without_history_gets_a_friendly_page(tmp_path: Path,
                                                                  serve_app: Serve):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    page = await get(f"{url}/ltc/miners/{CAROL}")
    assert page.status == 200
    assert_valid_html(page.text)
    assert "No shares from this address yet" in page.text
    assert f"<code>{CAROL}.rig1</code>" in page.text
    assert 'id="workers"' not in page.text


@pytest.mark.parametrize(("address", "reason"), [
    ("abc", "not a litecoin regtest address: address 'abc' is too short"),
    ("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "is for another network"),
    (ALICE[:-1] + ("q" if ALICE[-1] != "q" else "p"), "bad checksum"),
    ("<script>alert(1)</script>", "not a litecoin regtest address"),
    ("x" * 500, "is not an address (longer than 100 characters)"),
    ("' OR 1=1 --", "not a litecoin regtest address"),
])
async def test_malformed_address_is_a_400_page(tmp_path: Path, serve_app: Serve,
                                               address: str, reason: str):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    page = await get(f"{url}/ltc/miners/{quote(address, safe='')}")
    assert page.status == 400
    assert_valid_html(page.text)
    assert "<h1>Not an address</h1>" in page.text
    assert reason in page.text.replace("&#39;", "'")
    assert "<script>" not in page.text


async def test_search_box_leads_to_the_miner_page(tmp_path: Path, serve_app: Serve):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    answer = await get(f"{url}/ltc/miners/?address=+{ALICE}+")
    assert answer.status == 303
    assert answer.headers["Location"] == f"/ltc/miners/{ALICE}"
    followed = await get(f"{url}/ltc/miners/?address={ALICE}", redirects=True)
    assert followed.status == 200 and "Balance" in followed.text
    odd = await get(f"{url}/ltc/miners/?address=a/../../b%3F%3Cx%3E")
    assert odd.headers["Location"] == "/ltc/miners/a%2F..%2F..%2Fb%3F%3Cx%3E"
    assert (await get(url + odd.headers["Location"])).status == 400
    empty = await get(f"{url}/ltc/miners/?address=")
    assert empty.status == 400 and "Enter a payout address" in empty.text


@pytest.mark.parametrize("path", ["/nope/", "/nope/miners/" + ALICE, "/Ltc/", "/ltc1/",
                                  "/%3Cscript%3E/", "/ltc/nothing", "/a/b/c/d"])
async def test_unknown_pool_or_page_is_a_404_page(tmp_path: Path, serve_app: Serve,
                                                  path: str):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    page = await get(url + path)
    assert page.status == 404
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert_valid_html(page.text)
    assert "<h1>No such pool</h1>" in page.text or "<h1>Not found</h1>" in page.text
    assert "<script>" not in page.text
    assert 'href="/"' in page.text  # the way back to every pool


async def test_pool_without_trailing_slash_redirects(tmp_path: Path, serve_app: Serve):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({}))
    answer = await get(url + "/ltc")
    assert answer.status == 308 and answer.headers["Location"] == "/ltc/"
    # Not a pool: not found at once, not redirected first.
    for path in ("/metrics", "/nope", "/api", "/api/v1/pools/"):
        assert (await get(url + path)).status == 404, path


async def test_subdomain_routing_serves_each_pool_on_its_host(tmp_path: Path,
                                                              serve_app: Serve):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}),
                          routing="subdomain")
    on_pool = {"Host": "ltc.pool.example.org"}
    page = await get(url + "/", headers=on_pool)
    assert page.status == 200
    html = page.text
    assert_valid_html(html)
    assert "<h1>Litecoin pool ltc</h1>" in html
    # Links for this host: miners under /miners/, other pools on their own hosts.
    assert f'<a href="/miners/{ALICE}"' in html
    assert '<a href="//ltcb.pool.example.org/">' in html
    assert '<a href="//pool.example.org/">All pools</a>' in html
    assert '<form class="search" method="get" action="/miners/"' in html
    miner = await get(f"{url}/miners/{ALICE}", headers=on_pool)
    assert miner.status == 200 and "Balance" in miner.text
    search = await get(f"{url}/miners/?address={ALICE}", headers={"Host": "ltc.pool.example.org"})
    assert search.headers["Location"] == f"/miners/{ALICE}"
    # The index on the main host links to the pools' hosts.
    index = (await get(url + "/", headers={"Host": "pool.example.org"})).text
    assert '<a href="//ltc.pool.example.org/">ltc: blocks' in index
    # An unknown pool's host name: 404; the API and static files are the same everywhere.
    assert (await get(url + "/", headers={"Host": "zzz.pool.example.org"})).status == 404
    api = await get(url + "/api/v1/pools/ltc", headers=on_pool)
    assert api.status == 200 and api.headers["Content-Type"] == "application/json"
    assert (await get(url + "/healthz", headers=on_pool)).text == "ok"


async def test_path_routing_ignores_pool_host_names(tmp_path: Path, serve_app: Serve):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    page = await get(url + "/", headers={"Host": "ltc.pool.example.org"})
    assert 'id="pool-ltcb"' in page.text  # the index, not the pool page


async def test_refresh_keeps_the_scroll_position(tmp_path: Path, serve_app: Serve):
    """The pages refresh by a script of the app's own that swaps the content in place
    (scroll position kept); without scripts, a <noscript> meta refresh reloads."""
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    html = (await get(url + "/ltc/")).text
    src = re.search(r'<script src="([^"]+)" defer></script>', html)
    assert src and src.group(1).startswith("/static/refresh.js?v=")
    assert '<noscript><meta http-equiv="refresh" content="30"></noscript>' in html
    assert '<body data-refresh="30">' in html and '<main id="content">' in html
    script = await get(url + src.group(1))
    assert script.status == 200
    assert script.headers["Content-Type"].startswith(("text/javascript",
                                                      "application/javascript"))
    assert "scrollTo(x, y)" in script.text and "getElementById(\"content\")" in script.text
    # An error page does not refresh itself.
    error = (await get(url + "/nope/")).text
    assert 'http-equiv="refresh"' not in error and '<body data-refresh="0">' in error


async def test_stylesheet_has_dark_mode_and_phone_rules(tmp_path: Path, serve_app: Serve):
    url = await serve_app(tmp_path, readers=FakeReaders({}))
    html = (await get(url + "/")).text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    href = re.search(r'<link rel="stylesheet" href="([^"]+)">', html)
    assert href
    css = (await get(url + href.group(1))).text
    assert "@media (prefers-color-scheme: dark)" in css
    assert "@media (max-width: 480px)" in css
    assert ".table { overflow-x: auto; }" in css  # wide tables scroll, not the page


async def test_page_escapes_worker_names_in_block_titles(tmp_path: Path, serve_app: Serve):
    two_pools(tmp_path)
    reader = sample_reader()
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": reader}))
    html = (await get(url + "/ltc/")).text
    assert EVIL_WORKER not in html
    assert "onerror=alert(1)&gt;&#34;&#39;&amp;" in html


async def test_stale_status_and_database_figures(tmp_path: Path, serve_app: Serve):
    write_status(tmp_path, "ltc", status_doc("ltc", updated=iso(900)))  # type: ignore[arg-type]
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    html = (await get(url + "/ltc/")).text
    assert "offline <small>(last update 15 min ago)</small>" in html
    assert 'id="blocks"' in html  # the history is still there


async def test_stopping_the_server_closes_the_readers(tmp_path: Path):
    """The app's lifespan closes every pool's database reader when uvicorn stops."""
    two_pools(tmp_path)
    readers = FakeReaders({"ltc": sample_reader()})
    server = make_server(create_app(root=tmp_path, settings=WebSettings(), readers=readers))
    port = free_port()
    task = asyncio.create_task(server.serve(sockets=bind_sockets("127.0.0.1", port)))
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    assert (await get(f"http://127.0.0.1:{port}/ltc/")).status == 200
    assert not readers.closed
    server.should_exit = True
    await asyncio.wait_for(task, 10)
    assert readers.closed


@pytest.mark.parametrize("nasty", ["'", "' OR '1'='1", "<script>alert(1)</script>", "%00",
                                   "..%2F..%2Fetc%2Fpasswd", "{{7*7}}", "9" * 400,
                                   "%F0%9F%92%A9", "a%0d%0aSet-Cookie:%20x=1"])
async def test_injection_in_page_urls_is_a_clean_4xx(tmp_path: Path, serve_app: Serve,
                                                     nasty: str):
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    for path in (f"/{nasty}/", f"/{nasty}/miners/{ALICE}", f"/ltc/miners/{nasty}",
                 f"/ltc/miners/?address={nasty}", f"/?x={nasty}", f"/ltc/?page={nasty}"):
        answer = await get(url + path)
        assert answer.status in (200, 303, 400, 404), (path, answer.status)
        assert "Set-Cookie" not in answer.headers
        if answer.status != 303:
            assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
            assert "<script>alert" not in answer.text


async def test_many_clients_on_one_page_cost_one_rendering(tmp_path: Path, serve_app: Serve):
    two_pools(tmp_path)
    reader = sample_reader()
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": reader}),
                          page_cache_seconds=30)
    pages = await asyncio.gather(*(get(url + "/ltc/") for _ in range(20)))
    assert {p.status for p in pages} == {200} and len({p.text for p in pages}) == 1
    assert sum(1 for call in reader.calls if call[0] == "blocks") == 1
    for name, value in PAGE_HEADERS.items():
        assert pages[0].headers[name] == value
    # Another URL (or query) is another page; an unknown pool is never cached.
    await get(url + "/ltc/?x=1")
    assert sum(1 for call in reader.calls if call[0] == "blocks") == 2
    assert (await get(url + "/new/")).status == 404
    write_status(tmp_path, "new", status_doc("new"))
    assert (await get(url + "/new/")).status == 200


async def test_without_the_page_cache_every_request_renders(tmp_path: Path,
                                                            serve_app: Serve):
    two_pools(tmp_path)
    reader = sample_reader()
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": reader}),
                          page_cache_seconds=0)
    for _ in range(3):
        assert (await get(url + "/ltc/")).status == 200
    assert sum(1 for call in reader.calls if call[0] == "blocks") == 3


async def test_pool_without_a_status_yet(tmp_path: Path, serve_app: Serve):
    """A coin added whose engine never ran: its page says so; its miner pages check the
    address's letters only (the network is not known without a status)."""
    (tmp_path / "coin" / "eee").mkdir(parents=True)
    url = await serve_app(tmp_path, readers=FakeReaders({}))
    page = await get(url + "/eee/")
    assert page.status == 200
    assert_valid_html(page.text)
    assert "offline <small>(no status yet)</small>" in page.text
    assert "Statistics are unavailable right now" in page.text
    assert 'id="connect"' not in page.text
    miner = await get(f"{url}/eee/miners/{ALICE}")
    assert miner.status == 200 and "Statistics are unavailable right now" in miner.text
    bad = await get(url + "/eee/miners/not-an-address!")
    assert bad.status == 400 and "is not an address" in bad.text


async def test_pool_page_tables_page_on_their_own(tmp_path: Path, serve_app: Serve):
    """The blocks and payments tables of a pool page go page by page, each with its own
    query parameter, the other table's page kept in the links."""
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    page = await get(url + "/ltc/?blocks_page=3&payments_page=2")
    assert page.status == 200
    blocks = section(page.text, "blocks")
    # 43 blocks, 20 a page: page 3 holds the last 3, the oldest heights of the list.
    assert "(43 in all, page 3 of 3, newest first)" in blocks
    heights = re.findall(r'<tr class="block [a-z]+">\n<td><span title="[0-9a-f]+">(\d+)<',
                         blocks)
    assert heights == ["963", "962", "961"]
    assert '<a href="?blocks_page=2&amp;payments_page=2#blocks" rel="prev">' in blocks
    assert 'rel="next"' not in blocks
    payments = section(page.text, "payments")
    assert "(25 in all, page 2 of 3, newest first)" in payments
    assert '<a href="?blocks_page=3#payments" rel="prev">' in payments
    assert '<a href="?blocks_page=3&amp;payments_page=3#payments" rel="next">' in payments
    # Past the end: said in words, with the way back; a bad number is a 400 page.
    past = await get(url + "/ltc/?blocks_page=9")
    assert past.status == 200
    assert "No blocks on page 9: the list ends on page 3." in section(past.text, "blocks")
    assert '<a href="?blocks_page=3#blocks" rel="prev">' in section(past.text, "blocks")
    for bad in ("0", "-1", "x", "1e3", "99999999999"):
        refused = await get(url + f"/ltc/?blocks_page={bad}")
        assert refused.status == 400 and "blocks_page: must be a whole number" in \
            refused.text, bad


async def test_miner_without_shares_in_this_round_is_told_so(tmp_path: Path,
                                                             serve_app: Serve):
    """Right after a block the round is empty: the page says so in words, not "-"."""
    two_pools(tmp_path)
    reader = sample_reader()
    reader.miner_figures[ALICE] = dataclasses.replace(
        reader.miner_figures[ALICE], round_share=None, round_difficulty=0.0)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": reader}))
    balance = section((await get(f"{url}/ltc/miners/{ALICE}")).text, "balance")
    assert "no shares in this round yet" in balance
    assert "of the round's shares" not in balance


async def test_favicon_from_the_page_and_at_favicon_ico(tmp_path: Path, serve_app: Serve):
    """Browsers ask for an icon: the page names the app's own, and /favicon.ico (what
    tools ask for without reading the page) is the same picture, never a 404."""
    two_pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}))
    html = (await get(url + "/ltc/")).text
    found = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', html)
    assert found, html[:500]
    linked = await get(url + found.group(1).replace("&amp;", "&"))
    direct = await get(url + "/favicon.ico")
    for answer in (linked, direct):
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("image/svg+xml")
        assert answer.text.startswith("<svg") and "max-age" in answer.headers["Cache-Control"]
    assert linked.text == direct.text
