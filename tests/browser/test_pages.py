"""The pages in a real headless Chromium, on a pool mined for real (conftest.py): what a
person would check on each page (the pool's name and prefix, the miner's address, a
worker's name, a hashrate with its window), with no console error or failed request, a
phone's width (390 px) without horizontal scrolling, dark mode, and a screenshot of each
kept under artifacts/screenshots/.

Expected figures come from the pool's SQLite database read with sqlite3 (shares, blocks,
payments) and from the daemon, not from the web process's code.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.browser.checks import (
    DESKTOP,
    PHONE,
    hashrates,
    page_colours,
    relative_luminance,
    watched_page,
)
from tests.browser.conftest import Site

# The pool behind the pages is mined on real litecoind nodes (conftest.py).
pytestmark = pytest.mark.functional

# What a hashrate's window is called on the pages (the contract: 10 min, 1 h, 24 h).
WINDOW_LABEL = re.compile(r"10\s*min")
SCRYPT_HASHES_PER_DIFFICULTY = 2**16
# Stratum reject codes as a miner reads them (20 other, 21 stale, 22 duplicate, 23 low
# difficulty).
REJECT_WORDS = {20: "other", 21: "stale", 22: "duplicate", 23: "low difficulty"}
PAGES = ("index", "pool", "miner")
# The pages refresh every 30 s (base.html); a little more for the refresh to load.
REFRESH_WITHIN = 40


def page_path(site: Site, page: str) -> str:
    return {"index": "/", "pool": f"/{site.prefix}/",
            "miner": f"/{site.prefix}/miners/{site.address}"}[page]


def window_hashrate(site: Site, end: datetime, address: str | None = None) -> float:
    """Hashes per second over the 10 minutes before ``end`` (a minute's start), from the
    accepted shares' difficulty: sum(difficulty) * 2**16 (scrypt) / 600 s."""
    start = end - timedelta(minutes=10)
    rows = site.query("SELECT time, difficulty, address FROM shares WHERE accepted = 1")
    total = 0.0
    for time_text, difficulty, share_address in rows:
        when = datetime.fromisoformat(time_text)
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        if start <= when < end and (address is None or share_address == address):
            total += difficulty
    return total * SCRYPT_HASHES_PER_DIFFICULTY / 600


def shows_hashrate_of_shares(site: Site, text: str, loaded: datetime,
                             address: str | None = None) -> None:
    """One hashrate on the page is the 10-minute figure of the shares table (within the
    two decimals the page rounds to), for the minute the page was loaded in, the next (a
    minute may have ended while the page loaded) or the one before (the index shows the
    status file's figure, written up to a second earlier)."""
    shown = hashrates(text)
    minute = loaded.replace(second=0, microsecond=0)
    expected = [window_hashrate(site, minute + timedelta(minutes=step), address)
                for step in (-1, 0, 1)]
    assert max(expected) > 0, "no shares in the window: the fixture mined nothing?"
    assert any(abs(value - want) <= rounding + 1e-9 * want
               for value, rounding in shown for want in expected), (
        f"no hashrate on the page matches the shares: shown {shown}, expected {expected}")


def latest_block(site: Site) -> int:
    (height,), = site.query("SELECT max(height) FROM blocks WHERE status != 'candidate'")
    return int(height)


def miner_txid(site: Site) -> str:
    rows = site.query("SELECT b.txid FROM payments p JOIN payment_batches b "
                      "ON b.id = p.batch_id WHERE p.address = ? AND b.txid IS NOT NULL",
                      site.address)
    assert rows, "the fixture's payment is missing"
    return str(rows[0][0])


def shows_txid(page: Any, text: str, txid: str) -> bool:
    """The txid is on the page, written out (perhaps shortened) or as a link's target."""
    if txid in text or txid[:10] in text:
        return True
    return page.locator(f"a[href*='{txid}']").count() > 0


# --- each page on a desktop ---------------------------------------------------------------


def test_index_page_lists_the_pool(browser: Any, site: Site):
    with watched_page(browser) as w:
        w.open(site.url("/"))
        loaded = datetime.now(UTC)
        text = w.text()
        w.screenshot("index")
        assert site.name in text.lower()
        assert re.search(rf"\b{site.prefix}\b", text), f"prefix {site.prefix} not shown"
        assert f"stratum+tcp://127.0.0.1:{site.stratum_port}" in text
        assert WINDOW_LABEL.search(text), "no hashrate window (10 min) on the index"
        shows_hashrate_of_shares(site, text, loaded)
        assert str(latest_block(site)) in text, "the last block's height is not shown"
        w.check_clean()


def test_index_links_to_the_pool_page(browser: Any, site: Site):
    with watched_page(browser) as w:
        w.open(site.url("/"))
        link = w.page.locator(f"a[href$='/{site.prefix}/']").first
        link.click()
        w.page.wait_for_url(site.url(f"/{site.prefix}/"))
        w.check_clean()


def test_pool_page(browser: Any, site: Site):
    with watched_page(browser) as w:
        w.open(site.url(f"/{site.prefix}/"))
        loaded = datetime.now(UTC)
        text = w.text()
        w.screenshot("pool")
        heading = w.page.locator("h1").first.inner_text()
        assert site.name in heading.lower() and site.prefix in heading, heading
        # How to connect: the URL of the port, and the username's form.
        assert f"stratum+tcp://127.0.0.1:{site.stratum_port}" in text
        assert "ADDRESS.WORKER" in text or "address.worker" in text.lower()
        assert WINDOW_LABEL.search(text), "no hashrate window (10 min) on the pool page"
        shows_hashrate_of_shares(site, text, loaded)
        # The 24-hour chart is a picture with a size, not an empty box.
        chart = w.page.locator("svg, img[src*='chart'], canvas").first
        box = chart.bounding_box()
        assert box is not None and box["width"] > 150 and box["height"] > 50, box
        # The latest block the pool found, and the payment with its transaction.
        assert str(latest_block(site)) in text, "the latest block is not listed"
        assert shows_txid(w.page, text, miner_txid(site)), "the payment's txid is missing"
        # Top miners lead to the miner's page.
        assert w.page.locator(
            f"a[href$='/{site.prefix}/miners/{site.address}']").count() > 0
        w.check_clean()


def test_miner_page(browser: Any, site: Site):
    with watched_page(browser) as w:
        w.open(site.url(f"/{site.prefix}/miners/{site.address}"))
        loaded = datetime.now(UTC)
        text = w.text()
        w.screenshot("miner")
        assert site.address in text, "the miner's address is not written out"
        for worker in site.workers:
            assert re.search(rf"\b{worker}\b", text), f"worker {worker} not shown"
        assert WINDOW_LABEL.search(text), "no hashrate window (10 min) on the miner page"
        shows_hashrate_of_shares(site, text, loaded, site.address)
        assert shows_txid(w.page, text, miner_txid(site)), "the miner's payment is missing"
        # Rejected shares by reason, as the shares table has them (one, conftest.py).
        rejects = site.query("SELECT reject_code, count(*) FROM shares WHERE address = ? "
                             "AND accepted = 0 GROUP BY reject_code", site.address)
        assert rejects, "the fixture's rejected share is missing"
        section = w.page.locator("#rejects").inner_text().lower()
        for code, count in rejects:
            assert re.search(rf"{REJECT_WORDS[code]}\s+{count}\b", section), (
                f"{count} x {REJECT_WORDS[code]} not in the rejects: {section!r}")
        w.check_clean()


def test_search_box_leads_to_the_miner_page(browser: Any, site: Site):
    with watched_page(browser) as w:
        w.open(site.url(f"/{site.prefix}/"))
        box = w.page.locator("form input[type=search], form[role=search] input, "
                             "form input[name=address]").first
        box.fill(site.address)
        box.press("Enter")
        w.page.wait_for_url(site.url(f"/{site.prefix}/miners/{site.address}"), timeout=10000)
        assert site.address in w.text()
        w.screenshot("search-result")
        w.check_clean()


def test_miner_without_history_gets_a_friendly_page(browser: Any, site: Site):
    fresh = site.new_address()
    with watched_page(browser) as w:
        w.open(site.url(f"/{site.prefix}/miners/{fresh}"))
        text = w.text()
        w.screenshot("miner-no-history")
        assert fresh in text
        assert all(value == 0 for value, _ in hashrates(text)), text
        # It says so in words, rather than showing empty figures.
        assert re.search(r"no shares|not seen|never", text, re.IGNORECASE), (
            f"the page does not say the address has no history:\n{text}")
        # No worker of it is shown online (the pool's own state may be).
        assert w.page.locator("td", has_text=re.compile(r"^\s*online\s*$")).count() == 0
        w.check_clean()


@pytest.mark.parametrize(("path", "status", "name"), [
    ("/{prefix}/miners/not-an-address", 400, "miner-malformed"),
    ("/nosuchpool/", 404, "pool-unknown"),
])
def test_error_pages_say_what_was_wrong(browser: Any, site: Site, path: str, status: int,
                                        name: str):
    with watched_page(browser, main_status=status) as w:
        w.open(site.url(path.format(prefix=site.prefix)), expect_status=status)
        text = w.text()
        w.screenshot(name)
        word = "address" if status == 400 else "pool"
        assert word in text.lower(), f"the {status} page does not say what was wrong: {text}"
        assert "Traceback" not in text
        w.check_clean()


# --- a phone, dark mode -------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_phone_width_without_horizontal_scroll(browser: Any, site: Site, page: str):
    with watched_page(browser, viewport=PHONE, mobile=True) as w:
        w.open(site.url(page_path(site, page)))
        w.screenshot(f"phone-{page}")
        width, viewport = w.scroll_width()
        assert viewport == PHONE["width"], f"laid out {viewport} px wide, not the phone's"
        assert width <= PHONE["width"], (
            f"{page} page is {width} px wide on a {PHONE['width']} px phone")
        w.check_clean()


@pytest.mark.parametrize("page", PAGES)
def test_dark_mode(browser: Any, site: Site, page: str):
    colours = {}
    for scheme in ("light", "dark"):
        with watched_page(browser, color_scheme=scheme) as w:
            w.open(site.url(page_path(site, page)))
            if scheme == "dark":
                w.screenshot(f"dark-{page}")
            colours[scheme] = page_colours(w.page)
            w.check_clean()
    background, text = colours["dark"]
    assert relative_luminance(background) < 0.05, f"dark mode background is {background}"
    assert relative_luminance(text) > 0.4, f"dark mode text is {text} on {background}"
    # The same page without the dark preference is light: the emulation took effect.
    assert relative_luminance(colours["light"][0]) > 0.6, colours["light"]


def test_auto_refresh_keeps_the_scroll_position(browser: Any, site: Site):
    """The pool page refreshes itself (the issue: auto-refresh that does not lose the
    scroll position): scrolled down on a phone, it is still there after a refresh."""
    with watched_page(browser, viewport=PHONE, mobile=True) as w:
        w.open(site.url(f"/{site.prefix}/"))
        room = w.page.evaluate("document.documentElement.scrollHeight - window.innerHeight")
        assert room > 300, "the pool page is too short on a phone to scroll"
        target = min(800, int(room))
        w.page.evaluate(f"window.scrollTo(0, {target})")
        w.page.wait_for_function(f"Math.abs(window.scrollY - {target}) <= 2")
        refreshed: list[str] = []
        w.page.on("response", lambda response: refreshed.append(response.url)
                  if response.url.startswith(site.base) and "/static/" not in response.url
                  else None)
        deadline = time.monotonic() + REFRESH_WITHIN
        while not refreshed and time.monotonic() < deadline:
            w.page.wait_for_timeout(500)
        assert refreshed, f"the pool page did not refresh within {REFRESH_WITHIN} s"
        w.page.wait_for_load_state("networkidle")
        w.page.wait_for_timeout(500)
        position = w.page.evaluate("window.scrollY")
        assert abs(position - target) <= 40, (
            f"scrolled to {target} px, at {position} px after the refresh "
            f"({refreshed[0]})")
        w.check_clean()


@pytest.mark.parametrize("page", ("pool", "miner"))
@pytest.mark.parametrize("viewport", ("desktop", "phone"))
def test_chart_labels_are_inside_the_chart(browser: Any, site: Site, page: str,
                                           viewport: str):
    """Every label of the hashrate chart (axis values, times, unit) is drawn whole
    inside the picture: a clipped '0.045' reads '.045'. (Whether a label is long enough
    to be clipped depends on the figures the mining run gave.)"""
    phone = viewport == "phone"
    with watched_page(browser, viewport=PHONE if phone else DESKTOP, mobile=phone) as w:
        w.open(site.url(page_path(site, page)))
        chart = w.page.locator("svg").filter(has=w.page.locator("text")).first
        outside = chart.evaluate("""svg => {
            const box = svg.getBoundingClientRect();
            return [...svg.querySelectorAll('text')].filter(t => t.textContent.trim())
                .map(t => [t.textContent.trim(), t.getBoundingClientRect()])
                // A text's box is as tall as its line (room above and below the
                // glyphs), as wide as its glyphs.
                .filter(([_, r]) => r.left < box.left - 0.5 || r.right > box.right + 0.5
                                    || r.top < box.top - 4 || r.bottom > box.bottom + 4)
                .map(([text, r]) => `${text} at ${Math.round(r.left)}..${Math.round(r.right)}`
                     + ` x ${Math.round(r.top)}..${Math.round(r.bottom)} (chart `
                     + `${Math.round(box.left)}..${Math.round(box.right)} x `
                     + `${Math.round(box.top)}..${Math.round(box.bottom)})`);
        }""")
        assert chart.evaluate("svg => svg.querySelectorAll('text').length") >= 3
        assert not outside, f"chart labels cut off on the {page} page ({viewport}): {outside}"
        w.check_clean()


@pytest.mark.parametrize("page", ("pool", "miner"))
def test_pages_without_javascript(browser: Any, site: Site, page: str):
    """Every table and the chart are in the page itself: with JavaScript off they are
    all there, with their rows."""
    with watched_page(browser, javascript=False) as w:
        w.open(site.url(page_path(site, page)))
        w.screenshot(f"nojs-{page}")
        text = w.text()
        assert w.page.locator("svg text").count() >= 3, "no chart without JavaScript"
        tables = w.page.locator("table")
        assert tables.count() >= 2
        for n in range(tables.count()):
            assert tables.nth(n).locator("tbody tr").count() >= 1, (
                f"table {n} has no rows without JavaScript")
        if page == "pool":
            assert str(latest_block(site)) in text
            assert f"stratum+tcp://127.0.0.1:{site.stratum_port}" in text
        else:
            assert site.address in text
            assert all(re.search(rf"\b{worker}\b", text) for worker in site.workers)
        w.check_clean()


def test_copy_button_copies_the_stratum_url(browser: Any, site: Site):
    with watched_page(browser, permissions=("clipboard-read", "clipboard-write")) as w:
        w.open(site.url(f"/{site.prefix}/"))
        url = f"stratum+tcp://127.0.0.1:{site.stratum_port}"
        code = w.page.locator("code", has_text=url).first
        button = code.locator("xpath=following-sibling::button[1]")
        button.click()
        copied = w.page.evaluate("navigator.clipboard.readText()")
        assert copied.strip() == url
        w.check_clean()
