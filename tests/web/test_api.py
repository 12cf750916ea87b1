"""The JSON API /api/v1: answers, paging, bad input, errors, CORS, rate limits, the
OpenAPI document and its page. The real app under a real uvicorn server; the database
readers are the hand-written stand-in of tests/web/fakes.py (canned figures)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from multipool.web import openapi
from multipool.web.api import ROUTES
from multipool.web.app import create_app
from multipool.web.data import MAX_PER_PAGE
from multipool.web.settings import WebSettings
from tests.web.fakes import ALICE, BOB, CAROL, EVIL_WORKER, FakeReader, FakeReaders, sample_reader
from tests.web.schema import errors
from tests.web.serving import Serve, get
from tests.web.test_web import assert_valid_html, status_doc, write_status

DOC = openapi.document()


def check(body: bytes, schema: str) -> Any:
    data = json.loads(body)
    problems = errors(data, {"$ref": f"#/components/schemas/{schema}"}, DOC)
    assert not problems, problems
    return data


def pools(root: Path) -> None:
    write_status(root, "ltc", status_doc("ltc"))
    write_status(root, "ltcb", status_doc("ltcb"))


@pytest.fixture
async def api(tmp_path: Path, serve_app: Serve) -> str:
    pools(tmp_path)
    return await serve_app(tmp_path, readers=FakeReaders({"ltc": sample_reader()}),
                           rate_limit=1000)


async def test_pools_and_pool(api: str):
    answer = await get(api + "/api/v1/pools")
    assert answer.status == 200 and answer.headers["Cache-Control"] == "no-store"
    data = check(answer.body, "PoolList")
    assert [p["prefix"] for p in data["pools"]] == ["ltc", "ltcb"]
    ltc, ltcb = data["pools"]
    assert ltc["stats"]["hashrate"] == [{"window": 600, "hashrate": 2_000_000.0},
                                        {"window": 3600, "hashrate": 1_900_000.0},
                                        {"window": 86400, "hashrate": 1_500_000.0}]
    assert ltc["stats"]["last_block"]["reward"] == 625_000_000
    assert ltc["stats"]["last_block"]["reward_coins"] == "6.25000000"
    assert ltc["page"] == "/ltc/" and ltc["hashrate"] == 12345.6
    assert (ltc["min_payout"], ltc["min_payout_coins"]) == (10_000_000, "0.10000000")
    assert ltcb["stats"] is None and ltcb["state"] == "online"
    one = check((await get(api + "/api/v1/pools/ltc")).body, "PoolDetail")
    assert one == ltc | {"updated_age": one["updated_age"]}


async def test_blocks_are_paged(api: str):
    first = check((await get(api + "/api/v1/pools/ltc/blocks")).body, "BlockPage")
    assert (first["page"], first["per_page"], first["total"], first["pages"]) == (1, 20, 43, 3)
    assert [b["height"] for b in first["items"][:3]] == [1300, 1290, 1280]
    pending = first["items"][0]
    assert (pending["status"], pending["confirmations"], pending["maturity"]) == \
        ("pending", 42, 101)
    assert first["items"][1]["worker"] == EVIL_WORKER  # JSON carries it as data
    assert first["items"][2]["effort"] is None
    last = check((await get(api + "/api/v1/pools/ltc/blocks?page=3&per_page=20")).body,
                 "BlockPage")
    assert len(last["items"]) == 3 and last["items"][-1]["height"] == 1000 - 39
    big = check((await get(api + f"/api/v1/pools/ltc/blocks?per_page={MAX_PER_PAGE}")).body,
                "BlockPage")
    assert len(big["items"]) == 43 and big["pages"] == 1
    beyond = check((await get(api + "/api/v1/pools/ltc/blocks?page=999")).body, "BlockPage")
    assert beyond["items"] == [] and beyond["total"] == 43


async def test_payments_miners_miner_workers(api: str):
    payments = check((await get(api + "/api/v1/pools/ltc/payments?per_page=2")).body,
                     "PaymentPage")
    assert payments["total"] == 25 and payments["pages"] == math.ceil(25 / 2)
    assert payments["items"][0]["txid"] is None
    assert payments["items"][1] | {"time": None} == {
        "batch_id": "99", "time": None, "txid": f"{1:064x}", "status": "broadcast",
        "amount": 1_234_500_000, "amount_coins": "12.34500000", "fee": 2250,
        "fee_coins": "0.00002250", "recipients": 3}
    miners = check((await get(api + "/api/v1/pools/ltc/miners?window=600")).body, "MinerPage")
    assert [m["address"] for m in miners["items"]] == [ALICE, BOB] and miners["window"] == 600
    miner = check((await get(api + f"/api/v1/pools/ltc/miners/{ALICE}")).body, "Miner")
    assert (miner["immature"], miner["immature_coins"]) == (312_500_000, "3.12500000")
    assert (miner["unpaid"], miner["paid_coins"]) == (5_000_000, "4.10000000")
    assert miner["round_share"] == 0.4 and miner["offline_after_minutes"] == 10
    assert [w["name"] for w in miner["workers"]] == ["rig1", EVIL_WORKER]
    assert miner["workers"][1]["online"] is False
    workers = check((await get(api + f"/api/v1/pools/ltc/miners/{ALICE}/workers")).body,
                    "WorkerList")
    assert workers["workers"] == miner["workers"]
    paid = check((await get(api + f"/api/v1/pools/ltc/miners/{ALICE}/payments")).body,
                 "MinerPaymentPage")
    assert paid["items"][0]["amount"] == 410_000_000 and paid["total"] == 1
    fresh = check((await get(api + f"/api/v1/pools/ltc/miners/{CAROL}")).body, "Miner")
    assert fresh["has_history"] is False and fresh["workers"] == []
    for path in ("/api/v1/pools/ltc/hashrate", f"/api/v1/pools/ltc/miners/{ALICE}/hashrate"):
        series = check((await get(api + path)).body, "Series")
        assert series["bucket_seconds"] == 600 and len(series["points"]) == 144


BAD_QUERIES = [
    ("page=-1", "page: must be a whole number from 1 to 1000000, got '-1'"),
    ("page=0", "page: must be a whole number"),
    ("page=abc", "page: must be a whole number"),
    ("page=1.5", "page: must be a whole number"),
    ("page=1e3", "page: must be a whole number"),
    ("page=1000001", "page: must be a whole number"),
    ("page=99999999999999999999999999999999", "page: must be a whole number"),
    ("page=%EF%BC%91", "page: must be a whole number"),  # a fullwidth digit one
    ("page=1%20OR%201=1", "page: must be a whole number"),
    ("page=1;DROP%20TABLE%20shares", "page: must be a whole number"),
    ("page=%00", "page: must be a whole number"),
    ("page=", "page: must be a whole number"),
    ("per_page=0", "per_page: must be a whole number from 1 to 100"),
    ("per_page=101", "per_page: must be a whole number from 1 to 100"),
    ("per_page=-5", "per_page: must be a whole number"),
    ("per_page=" + "9" * 5000, "per_page: must be a whole number"),
]


@pytest.mark.parametrize(("query", "message"), BAD_QUERIES)
@pytest.mark.parametrize("path", ["/api/v1/pools/ltc/blocks", "/api/v1/pools/ltc/payments",
                                  "/api/v1/pools/ltc/miners",
                                  f"/api/v1/pools/ltc/miners/{ALICE}/payments"])
async def test_bad_page_numbers_are_400(api: str, path: str, query: str, message: str):
    answer = await get(f"{api}{path}?{query}")
    assert answer.status == 400, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    data = check(answer.body, "Error")
    assert data["error"]["status"] == 400 and data["error"]["message"].startswith(message)
    assert len(data["error"]["message"]) < 200


@pytest.mark.parametrize(("path", "status", "message"), [
    ("/api/v1/pools/nope", 404, "no pool 'nope'"),
    ("/api/v1/pools/nope/blocks", 404, "no pool 'nope'"),
    ("/api/v1/pools/LTC/blocks", 404, "no pool"),
    ("/api/v1/pools/ltc'%20OR%20'1'='1/blocks", 404, "no pool"),
    ("/api/v1/pools/%3Cscript%3E", 404, "no pool"),
    ("/api/v1/pools/ltc/miners/abc", 400, "not a litecoin regtest address"),
    ("/api/v1/pools/ltc/miners/1'%20OR%20'1'='1", 400, "not a litecoin regtest address"),
    ("/api/v1/pools/ltc/miners/" + "a" * 1000 + "/workers", 400, "address: is not an address"),
    ("/api/v1/pools/ltc/miners/bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq/payments", 400,
     "is for another network"),
    ("/api/v1/pools/ltc/miners?window=5", 400, "window: must be one of 600, 3600, 86400"),
    ("/api/v1/pools/ltc/miners?window=600;--", 400, "window: must be one of"),
    ("/api/v1/nothing", 404, "nothing at /api/v1/nothing"),
    ("/api/v1/pools/ltc/blocks/extra", 404, "nothing at"),
    ("/api/v1/pools/ltcb/blocks", 503, "statistics of 'ltcb' are unavailable"),
    ("/api/v1/pools/ltcb/miners/" + ALICE, 503, "statistics of 'ltcb' are unavailable"),
    ("/api/v1/pools/ltcb/miners/abc", 400, "not a litecoin regtest address"),
])
async def test_bad_paths_are_clean_json_errors(api: str, path: str, status: int, message: str):
    answer = await get(api + path)
    assert answer.status == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    data = check(answer.body, "Error")
    assert data["error"]["status"] == status and message in data["error"]["message"]


async def test_post_is_refused_as_json(api: str):
    answer = await get(api + "/api/v1/pools", method="POST")
    assert answer.status == 405 and check(answer.body, "Error")["error"]["status"] == 405


async def test_failing_database_is_503_not_500(tmp_path: Path, serve_app: Serve):
    pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({"ltc": FakeReader(fail=True)}))
    answer = await get(url + "/api/v1/pools/ltc/blocks")
    assert answer.status == 503
    assert "did not answer (OSError)" in check(answer.body, "Error")["error"]["message"]
    listing = check((await get(url + "/api/v1/pools")).body, "PoolList")
    assert listing["pools"][0]["stats"] is None  # the list itself still answers


# -- CORS --------------------------------------------------------------------------------

async def test_cors_for_configured_origins(tmp_path: Path, serve_app: Serve):
    pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({}),
                          cors_origins=("https://stats.example.net",))
    allowed = await get(url + "/api/v1/pools", headers={"Origin": "https://stats.example.net"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://stats.example.net"
    assert allowed.headers["Vary"] == "Origin"
    other = await get(url + "/api/v1/pools", headers={"Origin": "https://evil.example"})
    assert other.status == 200 and "Access-Control-Allow-Origin" not in other.headers
    preflight = await get(url + "/api/v1/pools", method="OPTIONS", headers={
        "Origin": "https://stats.example.net", "Access-Control-Request-Method": "GET"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, OPTIONS"
    # Pages are never readable cross-origin.
    page = await get(url + "/", headers={"Origin": "https://stats.example.net"})
    assert "Access-Control-Allow-Origin" not in page.headers


async def test_cors_any_origin_and_none(tmp_path: Path, serve_app: Serve):
    pools(tmp_path)
    anyone = await serve_app(tmp_path, readers=FakeReaders({}), cors_origins=("*",))
    answer = await get(anyone + "/api/v1/pools", headers={"Origin": "https://x.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    nobody = await serve_app(tmp_path, readers=FakeReaders({}))
    answer = await get(nobody + "/api/v1/pools", headers={"Origin": "https://x.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers


# -- rate limits and forwarded addresses ---------------------------------------------------

async def test_rate_limit_per_client_address(tmp_path: Path, serve_app: Serve):
    """1 request/s, bursts of 10: the 11th at once is refused with Retry-After; another
    client (forwarded by the trusted proxy, here the test itself on 127.0.0.1) is not."""
    pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({}), rate_limit=1)
    statuses = [(await get(url + "/api/v1/pools")).status for _ in range(10)]
    assert statuses == [200] * 10
    refused = await get(url + "/api/v1/pools")
    assert refused.status == 429 and refused.headers["Retry-After"] == "1"
    assert "at most 1 per second" in check(refused.body, "Error")["error"]["message"]
    other = await get(url + "/api/v1/pools", headers={"X-Forwarded-For": "203.0.113.5"})
    assert other.status == 200
    # Pages and the health check are not counted.
    assert (await get(url + "/healthz")).status == 200
    assert (await get(url + "/")).status == 200


async def test_forwarded_for_believed_only_from_trusted_proxies(tmp_path: Path,
                                                                serve_app: Serve):
    """The test connects from 127.0.0.1, which is not a trusted proxy here: a made-up
    X-Forwarded-For must not give it a fresh bucket."""
    pools(tmp_path)
    url = await serve_app(tmp_path, readers=FakeReaders({}), rate_limit=1,
                          trusted_proxies=("10.0.0.1",))
    statuses = [(await get(url + "/api/v1/pools", headers={
        "X-Forwarded-For": f"198.51.100.{i}"})).status for i in range(12)]
    assert statuses == [200] * 10 + [429] * 2


# -- the OpenAPI document and its page ------------------------------------------------------

# The routes that answer HTML for people (and the static files): not API endpoints.
PAGES = {"/", "/api/docs", "/static", "/favicon.ico", "/{prefix}", "/{prefix}/",
         "/{prefix}/miners/", "/{prefix}/miners/{address:path}"}


def test_every_route_of_the_app_is_documented_or_a_page():
    app = create_app(root=Path("/nonexistent"), settings=WebSettings())
    served = {getattr(route, "path", "") for route in app.routes}
    assert served - PAGES == set(DOC["paths"])
    assert {r.path for r in ROUTES} | {"/api/pools", "/healthz", "/openapi.json"} \
        == set(DOC["paths"])
    for path, item in DOC["paths"].items():
        parameters = {p["name"] for p in item["get"]["parameters"] if p["in"] == "path"}
        assert parameters == {part[1:-1] for part in path.split("/") if part.startswith("{")}


def test_every_example_validates_against_its_schema():
    checked = 0
    for path, item in DOC["paths"].items():
        for code, response in item["get"]["responses"].items():
            for content in response["content"].values():
                if "example" in content:
                    assert not errors(content["example"], content["schema"], DOC), \
                        (path, code)
                    checked += 1
    assert checked == len(ROUTES) + 2  # every /api/v1 route, /api/pools, /healthz
    assert not errors(openapi.EXAMPLES["Error"], {"$ref": "#/components/schemas/Error"}, DOC)


@pytest.mark.parametrize(("value", "schema"), [
    ({"error": {"status": "400", "message": "x"}}, "Error"),
    ({"error": {"status": 400}}, "Error"),
    ({"error": {"status": 400, "message": "x"}, "extra": 1}, "Error"),
    ({**openapi.EXAMPLES["BlockPage"], "items": [{"height": -1}]}, "BlockPage"),
    ({**openapi.EXAMPLES["Miner"], "round_share": 1.5}, "Miner"),
    ({**openapi.EXAMPLES["Miner"], "paid_coins": 4.1}, "Miner"),
])
def test_the_schema_checker_refuses(value: Any, schema: str):
    assert errors(value, {"$ref": f"#/components/schemas/{schema}"}, DOC)


async def test_openapi_json_and_docs_page(api: str):
    served = await get(api + "/openapi.json")
    assert served.status == 200 and served.headers["Content-Type"] == "application/json"
    doc = json.loads(served.body)
    assert doc["openapi"] == "3.1.0" and set(doc["paths"]) == set(DOC["paths"])
    page = await get(api + "/api/docs")
    assert page.status == 200
    assert_valid_html(page.text)
    for path in DOC["paths"]:
        assert f"<code>GET {path}</code>" in page.text
    status = await get(api + "/api/pools")
    assert not errors(json.loads(status.body), {"$ref": "#/components/schemas/StatusList"},
                      DOC)
    assert '<h3 id="schema-Miner">Miner</h3>' in page.text
    assert "cdn" not in page.text.lower() and "swagger" not in page.text.lower()


NASTY = ["'", "' OR '1'='1", "1; DROP TABLE shares; --", "<script>alert(1)</script>",
         "%00", "../../etc/passwd", "${jndi:ldap://x}", "{{7*7}}", "9" * 400, "-0", "1e309",
         "NaN", "%F0%9F%92%A9", "%C0%AE%C0%AE", "a%0d%0aSet-Cookie:%20x=1"]


@pytest.mark.parametrize("nasty", NASTY)
async def test_injection_in_every_parameter_is_a_clean_4xx(api: str, nasty: str):
    """Each value in each path part and each query parameter of every /api/v1 route:
    a JSON answer, never a 500, never the value echoed unescaped into a header."""
    for route in ROUTES:
        templates = [route.path.replace("{prefix}", nasty).replace("{address}", ALICE),
                     route.path.replace("{prefix}", "ltc").replace("{address}", nasty)]
        query = "&".join(f"{name}={nasty}" for name in ("page", "per_page", "window"))
        for path in {*templates, route.path.replace("{prefix}", "ltc")
                     .replace("{address}", ALICE) + "?" + query}:
            answer = await get(api + path)
            assert answer.status in (200, 400, 404), (path, answer.status, answer.text)
            assert answer.headers["Content-Type"] == "application/json", path
            assert "Set-Cookie" not in answer.headers
            if answer.status != 200:
                check(answer.body, "Error")
