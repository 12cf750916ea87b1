"""The pages and the API served from a real pool database (SQLite, opened read-only as
the web process does; PostgreSQL, as the read-only web role), filled the way the engine
fills it (shares, blocks, rewards, balances, payments; statistics rolled up by
StatsRoller), through the real readers (web/data.py PoolReaders, found via status.json).
Every figure is computed here, by hand, from the rows the test inserted."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.engine import make_url

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import (
    balances,
    block_rewards,
    blocks,
    payment_batches,
    payments,
    shares,
)
from multipool.accounting.stats import StatsRoller
from multipool.web.display import format_hashrate
from tests.databases.test_coin_databases import (
    WEB_PASSWORD,
    generate_password,
    new_prefix,
    set_up,
)
from tests.web.fakes import ALICE, BOB, CAROL
from tests.web.schema import errors
from tests.web.serving import Serve, get
from tests.web.test_api import DOC
from tests.web.test_web import assert_valid_html, status_doc, write_status

# Hashes per unit of scrypt share difficulty: 2**256 / (0xffff * 2**224), by hand.
SCRYPT_HASHES = 2**32 / 0xFFFF
NETWORK_DIFFICULTY = 0.004  # in sha256d units; x 65536 in scrypt share units
TIP = 150
MATURITY = 101


@dataclass
class Share:
    minutes_ago: float
    address: str
    worker: str
    difficulty: float
    accepted: bool = True
    reject_code: int | None = None


# Time order, oldest first (ids follow it). The block was found with the share 3 h ago.
SHARES = [
    Share(26 * 60, ALICE, "rig1", 64.0),              # older than 24 h: in no window
    Share(3 * 60 + 5, BOB, "w1", 8.0),                # 24 h only
    Share(3 * 60, ALICE, "rig1", 16.0),               # the block's last share
    Share(50, BOB, "w1", 4.0, False, 23),             # rejected: low difficulty
    Share(25, ALICE, "rig2", 4.0),                    # 1 h; rig2 is offline after it
    Share(8, BOB, "w1", 1.0),
    Share(6, ALICE, "rig1", 2.0),
    Share(5, ALICE, "rig1", 2.0, False, 21),          # rejected: stale
    Share(4, ALICE, "rig1", 2.0),
    Share(3, BOB, "w1", 1.0),
]
BLOCK_SHARE = 2  # index in SHARES of the block's last share


def in_window(share: Share, now: datetime, seconds: int) -> bool:
    """The figures' windows end where the current minute starts."""
    end = now.replace(second=0, microsecond=0)
    time = now - timedelta(minutes=share.minutes_ago)
    return end - timedelta(seconds=seconds) <= time < end


def hashrate(now: datetime, seconds: int, address: str | None = None,
             worker: str | None = None) -> float:
    return sum(s.difficulty for s in SHARES if s.accepted and in_window(s, now, seconds)
               and address in (None, s.address) and worker in (None, s.worker)
               ) * SCRYPT_HASHES / seconds


@dataclass
class Filled:
    root: str
    prefix: str
    now: datetime


async def fill(url: str, now: datetime) -> None:
    engine = create_engine(url)
    try:
        await upgrade(engine)
        rows = [{"time": now - timedelta(minutes=s.minutes_ago), "height": TIP,
                 "address": s.address, "worker": s.worker, "ip": "192.0.2.7",
                 "difficulty": s.difficulty, "share_difficulty": s.difficulty * 2,
                 "accepted": s.accepted, "reject_code": s.reject_code} for s in SHARES]
        async with engine.begin() as connection:
            await connection.execute(insert(shares), rows)
            ids = (await connection.execute(select(shares.c.id).order_by(shares.c.id))
                   ).scalars().all()
            pending = await connection.execute(insert(blocks).values(
                height=110, hash="ab" * 32, time=now - timedelta(hours=3), address=ALICE,
                worker="rig1", reward=625_000_000, network_difficulty=NETWORK_DIFFICULTY,
                effort=0.5, last_share_id=ids[BLOCK_SHARE], status="pending",
                confirmations=0))
            block_id = pending.inserted_primary_key[0]
            await connection.execute(insert(block_rewards), [
                {"block_id": block_id, "address": ALICE, "amount": 400_000_000},
                {"block_id": block_id, "address": BOB, "amount": 218_750_000}])
            await connection.execute(insert(balances), [{"address": ALICE, "amount": 1234},
                                                        {"address": BOB, "amount": 99}])
            for n, (status, amount) in enumerate([("confirmed", 50_000_000),
                                                  ("broadcast", 7_000_000),
                                                  ("failed", 1_000_000)]):
                batch = str(uuid.UUID(int=n + 1))
                await connection.execute(insert(payment_batches).values(
                    id=batch, created=now - timedelta(hours=10 - n), status=status,
                    txid=f"{n + 1:064x}", total=amount + 5, fee=300 + n))
                await connection.execute(insert(payments), [
                    {"batch_id": batch, "address": ALICE, "amount": amount, "fee": 0},
                    {"batch_id": batch, "address": BOB, "amount": 5, "fee": 0}])
        await StatsRoller(engine).roll()
    finally:
        await engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def filled(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Filled]:
    """A pool's database on each backend, filled; status.json says where it is."""
    now = datetime.now(UTC)
    if now.second > 50:  # keep the whole test inside one minute's windows
        await asyncio.sleep(61 - now.second)
        now = datetime.now(UTC)
    prefix = new_prefix()
    root = tmp_path / "root"
    if request.param == "sqlite":
        path = tmp_path / "pool.db"
        url = f"sqlite:///{path}"
        location: dict[str, Any] = {"backend": "sqlite", "path": str(path)}
    else:
        server = request.getfixturevalue("postgresql_passwords")
        admin = f"postgresql://{server.user}@{server.host}:{server.port}/postgres"
        url = await asyncio.to_thread(set_up, admin, prefix, generate_password())
        parsed = make_url(url)
        location = {"backend": "postgresql", "host": parsed.host, "port": parsed.port,
                    "name": parsed.database}
        root.mkdir(parents=True)
        (root / "web-database.secret").write_text(WEB_PASSWORD + "\n")
    await fill(url, now)
    write_status(root, prefix, status_doc(
        prefix, coin={"maturity": MATURITY}, database=location,
        daemon={"blocks": TIP, "headers": TIP}))
    yield Filled(str(root), prefix, now)


def check(body: bytes, schema: str) -> Any:
    data = json.loads(body)
    assert not errors(data, {"$ref": f"#/components/schemas/{schema}"}, DOC)
    return data


def approx(value: float) -> Any:
    return pytest.approx(value, rel=1e-9)


async def test_api_figures_match_the_rows(filled: Filled, serve_app: Serve):
    url = await serve_app(Path(filled.root), offline_after=10)
    now, api = filled.now, f"{url}/api/v1/pools/{filled.prefix}"
    pool = check((await get(api)).body, "PoolDetail")
    stats = pool["stats"]
    assert stats is not None, pool
    assert stats["hashrate"] == [{"window": w, "hashrate": approx(hashrate(now, w))}
                                 for w in (600, 3600, 86400)]
    assert hashrate(now, 600) == approx((1 + 2 + 2 + 1) * SCRYPT_HASHES / 600)  # sanity
    assert (stats["miners"], stats["workers"]) == (2, 2)  # alice.rig1, bob.w1 in 10 min
    assert stats["accepted_24h"] == sum(1 for s in SHARES if s.accepted
                                        and in_window(s, now, 86400))
    assert stats["rejects_24h"] == {"stale": 1, "low difficulty": 1}
    assert stats["blocks_24h"] == 1
    # The round: accepted difficulty after the block's last share / network difficulty.
    round_difficulty = sum(s.difficulty for s in SHARES[BLOCK_SHARE + 1:] if s.accepted)
    assert stats["round_effort"] == approx(round_difficulty / (NETWORK_DIFFICULTY * 65536))
    block = stats["last_block"]
    assert (block["height"], block["status"], block["confirmations"], block["maturity"]) \
        == (110, "pending", TIP - 110 + 1, MATURITY)
    assert (block["reward"], block["reward_coins"]) == (625_000_000, "6.25000000")

    alice = check((await get(f"{api}/miners/{ALICE}")).body, "Miner")
    assert alice["has_history"] is True
    assert alice["hashrate"] == [{"window": w, "hashrate": approx(hashrate(now, w, ALICE))}
                                 for w in (600, 3600, 86400)]
    assert (alice["immature"], alice["unpaid"], alice["paid"]) == \
        (400_000_000, 1234, 50_000_000 + 7_000_000)  # the failed batch paid nothing
    assert alice["paid_coins"] == "0.57000000"
    alice_round = sum(s.difficulty for s in SHARES[BLOCK_SHARE + 1:]
                      if s.accepted and s.address == ALICE)
    assert alice["round_share"] == approx(alice_round / round_difficulty)
    assert alice["round_difficulty"] == approx(alice_round)
    assert alice["rejects_24h"] == {"stale": 1}
    workers = {w["name"]: w for w in alice["workers"]}
    assert sorted(workers) == ["rig1", "rig2"]
    assert workers["rig1"]["online"] is True and workers["rig2"]["online"] is False
    assert workers["rig1"]["hashrate"] == approx(hashrate(now, 600, ALICE, "rig1"))
    assert workers["rig2"]["hashrate"] == 0
    assert (workers["rig1"]["accepted_24h"], workers["rig1"]["rejected_24h"]) == (3, 1)

    miners = check((await get(f"{api}/miners?window=3600")).body, "MinerPage")
    assert [(m["address"], m["hashrate"]) for m in miners["items"]] == [
        (ALICE, approx(hashrate(now, 3600, ALICE))), (BOB, approx(hashrate(now, 3600, BOB)))]
    paid = check((await get(f"{api}/miners/{ALICE}/payments")).body, "MinerPaymentPage")
    assert [(p["txid"], p["amount"], p["status"]) for p in paid["items"]] == [
        (f"{3:064x}", 1_000_000, "failed"), (f"{2:064x}", 7_000_000, "broadcast"),
        (f"{1:064x}", 50_000_000, "confirmed")]
    batches = check((await get(f"{api}/payments?per_page=2")).body, "PaymentPage")
    assert (batches["total"], batches["pages"], len(batches["items"])) == (3, 2, 2)
    assert batches["items"][0]["fee"] == 302 and batches["items"][0]["recipients"] == 2
    fresh = check((await get(f"{api}/miners/{CAROL}")).body, "Miner")
    assert fresh["has_history"] is False and fresh["paid"] == 0
    series = check((await get(f"{api}/hashrate")).body, "Series")
    total = sum(p["hashrate"] for p in series["points"]) * 600  # back to difficulty
    assert total == approx(sum(s.difficulty for s in SHARES if s.accepted
                                and in_window(s, now, 86400)) * SCRYPT_HASHES)


async def test_pages_show_the_rows(filled: Filled, serve_app: Serve):
    url = await serve_app(Path(filled.root), offline_after=10)
    now, prefix = filled.now, filled.prefix
    pool = await get(f"{url}/{prefix}/")
    assert pool.status == 200
    html = pool.text
    assert_valid_html(html)
    assert "Statistics are unavailable" not in html
    assert f"<dt>Pool <small>(10 min)</small></dt>\n<dd>{format_hashrate(hashrate(now, 600))}" \
        in html
    assert f"{TIP - 110 + 1}/{MATURITY} confirmations" in html
    assert '<span class="amount">6.25 LTC</span>' in html
    assert f'title="{3:064x}"' in html  # a payment's txid
    assert html.index(f'title="{ALICE}"') < html.index(f'title="{BOB}"')  # top miners
    miner = await get(f"{url}/{prefix}/miners/{ALICE}")
    assert miner.status == 200
    page = miner.text
    assert_valid_html(page)
    assert '<span class="amount">4 LTC</span>' in page  # immature 400,000,000
    assert '<span class="amount">0.00001234 LTC</span>' in page  # unpaid
    assert '<span class="amount">0.57 LTC</span>' in page  # paid
    assert f"<dd>{format_hashrate(hashrate(now, 600, ALICE))}</dd>" in page
    assert '<tr class="worker online">\n<td>rig1</td>' in page
    assert '<tr class="worker offline">\n<td>rig2</td>' in page
    fresh = await get(f"{url}/{prefix}/miners/{CAROL}")
    assert fresh.status == 200 and "No shares from this address yet" in fresh.text
