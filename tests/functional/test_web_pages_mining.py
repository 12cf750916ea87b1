"""The pages and the JSON API after real mining through the stratum port, on SQLite and
PostgreSQL: the mining run of test_web_figures.py (two regtest litecoind nodes, the CPU
miner through the pool engine, blocks paid, credited and pending, rejected shares by
hand), then the real web app under uvicorn, fetched over HTTP.

Each figure is computed here from the tables (shares, blocks, block_rewards, balances,
payments, payment_batches) and compared with what the API answers and the pages show.
On SQLite the app finds the database through the status.json the engine wrote, as in
production; on PostgreSQL the reader is opened on the coin's URL (the web role's login
through status.json is tested in tests/web/test_web_database.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from multipool.accounting.database import create_engine
from multipool.web.data import PoolReader, PoolReaders
from multipool.web.display import format_hashrate, format_units
from multipool.web.status import PoolStatus
from tests.functional.test_web_figures import (  # noqa: F401 - fixtures
    OFFLINE_AFTER,
    SCRYPT_HASHES,
    mined,
    regtest,
    rows,
    url,
    utc,
)
from tests.web.schema import errors
from tests.web.serving import Serve, get, serve_app  # noqa: F401 - a fixture
from tests.web.test_api import DOC
from tests.web.test_web import assert_valid_html


class CoinUrlReaders(PoolReaders):
    """The real reader opened on the coin's own URL (PostgreSQL here, where the test
    database has no web role); everything else as PoolReaders."""

    def __init__(self, root: Path, coin_url: str, tip: int):
        super().__init__(root, offline_after=OFFLINE_AFTER, cache_seconds=0)
        self.reader = PoolReader(create_engine(coin_url), algorithm="scrypt", maturity=101,
                                 tip=tip, offline_after=OFFLINE_AFTER, cache_seconds=0)

    async def get(self, prefix: str, status: PoolStatus | None = None) -> PoolReader | None:
        return self.reader if prefix == "ltc" else None

    async def close(self) -> None:
        await self.reader.close()


def check(body: bytes, schema: str) -> Any:
    data = json.loads(body)
    assert not errors(data, {"$ref": f"#/components/schemas/{schema}"}, DOC)
    return data


async def test_pages_and_api_after_real_mining(mined: dict[str, Any],  # noqa: F811
                                               serve_app: Serve):  # noqa: F811
    database, a = mined["database"], mined["a"]
    readers = None
    if not mined["url"].startswith("sqlite"):
        readers = CoinUrlReaders(mined["root"], mined["url"], mined["tip"])
    base = await serve_app(mined["root"], readers=readers, offline_after=OFFLINE_AFTER)
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    shares = [(utc(r[0]), r[1], r[2], float(r[3]), bool(r[4]))
              for r in await rows(database, "SELECT time, address, worker, difficulty,"
                                  " accepted FROM shares ORDER BY id")]

    def hashrate(seconds: int, address: str | None = None) -> float:
        return sum(d for t, addr, _, d, ok in shares
                   if ok and minute - timedelta(seconds=seconds) <= t < minute
                   and address in (None, addr)) * SCRYPT_HASHES / seconds

    api = f"{base}/api/v1/pools/ltc"
    pool = check((await get(api)).body, "PoolDetail")
    stats = pool["stats"]
    assert stats is not None, pool
    for entry in stats["hashrate"]:
        assert entry["hashrate"] == pytest.approx(hashrate(entry["window"]), rel=1e-9)
    assert stats["hashrate"][0]["hashrate"] > 0

    miner = check((await get(f"{api}/miners/{a}")).body, "Miner")
    immature = (await rows(database, "SELECT coalesce(sum(r.amount), 0) FROM block_rewards r"
                           " JOIN blocks k ON k.id = r.block_id WHERE k.status = 'pending'"
                           " AND r.address = :a", a=a))[0][0]
    unpaid = (await rows(database, "SELECT coalesce(sum(amount), 0) FROM balances"
                         " WHERE address = :a", a=a))[0][0]
    paid = (await rows(database, "SELECT coalesce(sum(p.amount), 0) FROM payments p JOIN"
                       " payment_batches k ON k.id = p.batch_id WHERE p.address = :a AND"
                       " k.status IN ('broadcast', 'confirmed')", a=a))[0][0]
    # SUM is a numeric on PostgreSQL: whole units all the same.
    immature, unpaid, paid = int(immature), int(unpaid), int(paid)
    assert immature > 0 and unpaid > 0 and paid > 0
    assert (miner["immature"], miner["unpaid"], miner["paid"]) == (immature, unpaid, paid)
    assert miner["paid_coins"] == f"{paid // 10**8}.{paid % 10**8:08d}"
    workers = {w["name"]: w for w in miner["workers"]}
    assert set(workers) == {"rig1", "rig2", "hand"}
    assert not workers["rig2"]["online"] and workers["hand"]["online"]

    blocks = check((await get(f"{api}/blocks?per_page=100")).body, "BlockPage")
    table = await rows(database, "SELECT height, status, reward FROM blocks WHERE status"
                       " <> 'candidate' ORDER BY height DESC")
    assert [(b["height"], b["status"], b["reward"]) for b in blocks["items"]] == \
        [tuple(t) for t in table]
    assert blocks["total"] == len(table)
    batches = await rows(database, "SELECT txid FROM payment_batches WHERE txid IS NOT NULL")
    listed = check((await get(f"{api}/payments")).body, "PaymentPage")
    assert {p["txid"] for p in listed["items"]} == {t[0] for t in batches} != set()

    # The pages show the same, formatted for people.
    page = await get(f"{base}/ltc/")
    assert page.status == 200
    assert_valid_html(page.text)
    assert "Statistics are unavailable" not in page.text
    assert (f"<dt>Pool <small>(1 h)</small></dt>\n<dd>{format_hashrate(hashrate(3600))}</dd>"
            in page.text)
    pending = [t for t in table if t[1] == "pending"]
    assert pending and f"{mined['tip'] - pending[0][0] + 1}/101 confirmations" in page.text
    assert f'title="{batches[0][0]}"' in page.text
    mine = await get(f"{base}/ltc/miners/{a}")
    assert mine.status == 200
    assert_valid_html(mine.text)
    for amount in (immature, unpaid, paid):
        assert f'<span class="amount">{format_units(amount, 8)} LTC</span>' in mine.text
    assert '<tr class="worker offline">\n<td>rig2</td>' in mine.text
    assert '<tr class="worker online">\n<td>hand</td>' in mine.text
    assert f"<dd>{format_hashrate(hashrate(600, a))}</dd>" in mine.text
