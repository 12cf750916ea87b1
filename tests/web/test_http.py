"""Pure parts of the web process: client addresses behind proxies, the token bucket,
query parameters, links by routing, the SVG chart, money as text."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree

import pytest

from multipool.web.charts import axis_unit, hashrate_chart, nice_ceiling
from multipool.web.data import HashratePoint
from multipool.web.display import format_units, shorten, units_text
from multipool.web.http import RateLimiter, client_address, parse_networks
from multipool.web.links import Links, pool_of_host
from multipool.web.params import BadInput, address, network_of, page_request, window

LOOPBACK = parse_networks(["127.0.0.1", "::1"])
PROXIES = parse_networks(["127.0.0.1", "10.0.0.0/8"])


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "client"), [
    ("127.0.0.1", [], LOOPBACK, "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.9"], LOOPBACK, "203.0.113.9"),
    # A client may send its own X-Forwarded-For; the proxy appends the real peer.
    ("127.0.0.1", ["6.6.6.6, 203.0.113.9"], LOOPBACK, "203.0.113.9"),
    ("127.0.0.1", ["6.6.6.6", "203.0.113.9"], LOOPBACK, "203.0.113.9"),
    # Two trusted hops.
    ("127.0.0.1", ["203.0.113.9, 10.1.2.3"], PROXIES, "203.0.113.9"),
    ("127.0.0.1", ["203.0.113.9, 10.1.2.3"], LOOPBACK, "10.1.2.3"),
    # An untrusted peer is the client, whatever it says.
    ("198.51.100.7", ["203.0.113.9"], LOOPBACK, "198.51.100.7"),
    # Junk stops the walk at the last trusted hop.
    ("127.0.0.1", ["not-an-ip"], LOOPBACK, "127.0.0.1"),
    ("127.0.0.1", ["203.0.113.9, <script>"], LOOPBACK, "127.0.0.1"),
    ("127.0.0.1", [""], LOOPBACK, "127.0.0.1"),
    ("::1", ["2001:db8::7"], LOOPBACK, "2001:db8::7"),
    ("::ffff:127.0.0.1", ["203.0.113.9"], LOOPBACK, "203.0.113.9"),
    (None, ["203.0.113.9"], LOOPBACK, "unknown"),
])
def test_client_address(peer, forwarded, trusted, client):
    assert client_address(peer, forwarded, trusted) == client


def test_client_address_walks_a_bounded_chain():
    chain = ", ".join(["10.0.0.1"] * 10_000)
    assert client_address("127.0.0.1", [chain], PROXIES) == "10.0.0.1"


def test_token_bucket():
    now = [0.0]
    limiter = RateLimiter(2.0, clock=lambda: now[0])
    assert limiter.burst == 20
    assert [limiter.take("a") for _ in range(20)] == [0.0] * 20
    assert limiter.take("a") == pytest.approx(0.5)  # one token comes in 1/2 s
    assert limiter.take("b") == 0.0  # each client its own bucket
    now[0] += 0.5
    assert limiter.take("a") == 0.0 and limiter.take("a") > 0
    now[0] += 100
    assert [limiter.take("a") for _ in range(20)] == [0.0] * 20  # refilled, capped at 20
    assert limiter.take("a") > 0


def test_token_bucket_memory_is_bounded():
    now = [0.0]
    limiter = RateLimiter(1.0, clock=lambda: now[0], max_buckets=100)
    for i in range(1000):
        limiter.take(f"10.0.{i // 256}.{i % 256}")
        now[0] += 0.001
    assert len(limiter) <= 100
    with pytest.raises(ValueError, match="rate must be greater than 0"):
        RateLimiter(0)


def test_page_request_and_window():
    assert page_request({}) == page_request({"page": "1", "per_page": "20"})
    assert page_request({"page": "1000000", "per_page": "100"}).page == 1_000_000
    with pytest.raises(BadInput, match=r"^per_page: must be a whole number from 1 to 100, "
                                       r"got '0'$"):
        page_request({"per_page": "0"})
    with pytest.raises(BadInput, match=r"got 'xxxxxxxxx"):
        page_request({"page": "x" * 1000})
    assert window({"window": "86400"}) == 86400
    with pytest.raises(BadInput, match="window: must be one of 600, 3600, 86400"):
        window({"window": "7200"})


def test_address_checks():
    ltc = network_of("litecoin", "regtest")
    assert ltc is not None and network_of("nocoin", "main") is None
    good = "rltc1qqqqsyqcyq5rqwzqfpg9scrgwpugpzysnrwhxws"
    assert address(good, ltc) == good
    # Without a known network, only the alphabet and length are checked.
    assert address(good, None) == good
    for bad in ("", "x" * 101, "short", "has space in it 1234567890", "<script>alert(1)</>"):
        with pytest.raises(BadInput):
            address(bad, None)


def test_links_by_routing():
    path = Links(root="/pools")
    assert (path.index(), path.pool("ltc"), path.miner("ltc", "a/b?c")) == \
        ("/pools/", "/pools/ltc/", "/pools/ltc/miners/a%2Fb%3Fc")
    sub = Links(subdomain=True, public_host="example.org")
    assert (sub.index(), sub.pool("ltc"), sub.search("ltc")) == \
        ("/", "//ltc.example.org/", "//ltc.example.org/miners/")
    on = Links(subdomain=True, public_host="example.org", on_pool="ltc")
    assert (on.index(), on.pool("ltc"), on.pool("btc"), on.miner("ltc", "A")) == \
        ("//example.org/", "/", "//btc.example.org/", "/miners/A")
    assert pool_of_host("LTC.Example.org:8443", "example.org") == "ltc"
    for host in ("example.org", "evil.com", "x.y.example.org", "1ltc.example.org",
                 "ltc.example.org.evil.com", "[::1]:80", "", None, "-.example.org"):
        assert pool_of_host(host, "example.org") is None, host


def test_money_text():
    assert units_text(1, 8) == "0.00000001" and units_text(2_100_000_000_000_000, 8) == \
        "21000000.00000000"
    assert units_text(1_000_001, 6) == "1.000001" and format_units(1_000_001, 6) == "1.000001"
    assert format_units(0, 8) == "0"
    assert shorten("a" * 17) == "a" * 17 and shorten("a" * 18) == "aaaaaaaa…aaaaaaa"


def _points(values: list[float]) -> list[HashratePoint]:
    start = datetime(2026, 12, 1, 0, 0, tzinfo=UTC)
    return [HashratePoint(start + timedelta(minutes=10 * i), v) for i, v in enumerate(values)]


def test_chart_is_well_formed_svg_with_axes_and_labels():
    svg = hashrate_chart(_points([0.0] * 72 + [25_000.0] * 72), title="Pool, last 24 h",
                         chart_id="c1", bucket_seconds=600)
    tree = ElementTree.fromstring(str(svg))
    ns = "{http://www.w3.org/2000/svg}"
    texts = [t.text for t in tree.iter(f"{ns}text")]
    # Axis top: 25 kH/s rounds up to 40 on a 1-2-4-6-8 scale; five ticks of it.
    assert texts[:5] == ["0", "10", "20", "30", "40"]
    assert "kH/s" in texts and "time (UTC)" in texts
    # 24 h from 00:00 UTC: labels every 6 hours; the last hour, at the right end of the
    # plot, has its grid line but no label (it would run off a phone's picture).
    assert [t for t in texts if t and re.fullmatch(r"\d\d:\d\d", t)] == \
        ["00:00", "06:00", "12:00", "18:00"]
    assert tree.find(f"{ns}title").text == "Pool, last 24 h"
    assert "Average 12.50 kH/s, peak 25.00 kH/s" in tree.find(f"{ns}desc").text
    line = tree.find(f"{ns}polyline").get("points").split()
    assert len(line) == 144
    # The line is at the bottom for the first half and at half height for the second.
    ys = [float(p.split(",")[1]) for p in line]
    assert ys[0] == ys[71] > ys[72] == ys[143]
    bottom, top = ys[0], float(tree.findall(f"{ns}line")[4].get("y1"))  # 0 and 40 kH/s
    assert ys[72] == pytest.approx(bottom + (top - bottom) * 25 / 40, abs=0.1)
    assert "no shares" not in str(svg)


@pytest.mark.parametrize("minutes_after", [0, 10, 20, 30, 40, 50])
def test_time_labels_stay_inside_the_picture_at_phone_size(minutes_after: int):
    """However far past an hour the chart ends, no time label centred on an hour runs
    past the picture's right edge at a phone's letters (16 units a digit, style.css),
    and every hour inside the plot keeps its grid line."""
    end = datetime(2026, 12, 3, 18, minutes_after, tzinfo=UTC)
    start = end - timedelta(hours=24)
    points = [HashratePoint(start + timedelta(minutes=10 * i), 1.0) for i in range(144)]
    tree = ElementTree.fromstring(str(hashrate_chart(points, title="t", chart_id="c",
                                                     bucket_seconds=600)))
    ns = "{http://www.w3.org/2000/svg}"
    width = float(tree.get("viewBox").split()[2])
    labels = [t for t in tree.iter(f"{ns}text") if re.fullmatch(r"\d\d:\d\d", t.text or "")]
    assert labels
    half = (4 * 16 + 8) / 2  # "18:00": four digits and a colon, centred
    for label in labels:
        assert float(label.get("x")) + half <= width, label.text
    hours = [line for line in tree.iter(f"{ns}line")
             if line.get("x1") == line.get("x2") and line.get("class") == "chart-grid"]
    assert len(hours) == 4 + (minutes_after == 0)  # 00, 06, 12, 18 (and 18:00 at the end)


def test_chart_of_nothing_says_so_and_escapes_its_title():
    svg = str(hashrate_chart(_points([0.0] * 6), title='<script>"x"</script>',
                             chart_id='a"b', bucket_seconds=600))
    assert "no shares in this window" in svg
    assert "<script>" not in svg and "&lt;script&gt;&#34;x&#34;&lt;/script&gt;" in svg
    assert 'id="a&#34;b"' in svg
    ElementTree.fromstring(svg)
    empty = str(hashrate_chart([], title="t", chart_id="e", bucket_seconds=600))
    assert "no shares in this window" in empty and "<polyline" not in empty


@pytest.mark.parametrize(("value", "top"), [(0, 1.0), (1, 1.0), (1.01, 2.0), (2.2, 4.0),
                                            (5, 6.0), (999, 1000.0), (1e15, 1e15)])
def test_nice_ceiling(value, top):
    assert nice_ceiling(value) == pytest.approx(top)


def test_axis_unit():
    assert axis_unit(2.5e15) == ("PH/s", 1e15)
    assert axis_unit(999.0) == ("H/s", 1.0)


@pytest.mark.parametrize("peak", [0.045, 0.0017, 25_000.0, 999.0])
def test_chart_value_labels_fit_left_of_the_axis_at_phone_letter_size(peak: float):
    """On a phone the labels are drawn at 26 px (style.css). A digit there is about 0.6
    em wide: every value label, right-aligned at its x, must start inside the picture."""
    svg = hashrate_chart(_points([peak] * 144), title="t", chart_id="c",
                         bucket_seconds=600)
    tree = ElementTree.fromstring(str(svg))
    ns = "{http://www.w3.org/2000/svg}"
    labels = [t for t in tree.iter(f"{ns}text") if t.get("text-anchor") == "end"
              and t.text and re.fullmatch(r"[\d.,]+", t.text)]
    assert len(labels) == 5
    for label in labels:
        assert float(label.get("x")) - len(label.text) * 26 * 0.6 >= 0, label.text
    axis_x = float(tree.findall(f"{ns}line")[-2].get("x1"))
    assert all(float(label.get("x")) < axis_x for label in labels)
