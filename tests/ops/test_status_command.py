"""`multipool status` on a local server with no daemon running: the pool's figures come
from its real SQLite database, the health of the engine's services from the status.json
it publishes in the coin's public directory (written here as the engine writes it, and
read as hostile input, as the web reads it). Counts read in words that count right, the
hashrate says its window, and every degraded service is named with its reason."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import stats_minute
from multipool.accounting.stats import minute_of
from multipool.cli.main import app
from multipool.ops.status import WINDOW_SECONDS
from multipool.public_status import WINDOW_SECONDS as ENGINE_WINDOW

runner = CliRunner()


def cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide terminal: the table's cells on one line each."""
    from multipool.cli import common
    monkeypatch.setattr(common.console, "width", 400)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "server"
    cli("init", "--root", str(root), "--mode", "local")
    for prefix in ("ltca", "ltcb"):
        cli("coin", "add", "litecoin", "--prefix", prefix, "--network", "regtest",
            "--root", str(root))
    return root


def publish(root: Path, prefix: str, services: Any, age: float = 2) -> None:
    """status.json as the engine writes it, with its services."""
    updated = datetime.now(UTC) - timedelta(seconds=age)
    document = {"version": 1, "updated": updated.isoformat(),
                "coin": {"prefix": prefix, "name": "litecoin"},
                "stratum": {"open": True, "ports": []}, "services": services}
    (root / "web" / prefix / "status.json").write_text(json.dumps(document))


def one_miner(root: Path, prefix: str) -> None:
    """One miner with one worker in the last minutes of the pool's real database."""
    database = root / "pool" / prefix / "pool.db"

    async def write() -> None:
        engine = create_engine(f"sqlite:///{database}")
        try:
            await upgrade(engine)
            async with engine.begin() as connection:
                await connection.execute(insert(stats_minute).values(
                    minute=minute_of(datetime.now(UTC)) - timedelta(minutes=2),
                    address="rltc1qminer", worker="rig1", accepted=3,
                    accepted_difficulty=0.5, rejected=0))
        finally:
            await engine.dispose()

    asyncio.run(write())


def test_the_hashrate_window_is_the_engines():
    assert WINDOW_SECONDS == ENGINE_WINDOW == 600


def test_status_names_degraded_services_with_their_reasons(root: Path):
    since = "2026-12-01T08:30:00+00:00"
    publish(root, "ltca", {
        "shares": {"state": "ok", "reason": None, "since": None},
        "payments": {"state": "degraded", "reason": "daemon refused sendrawtransaction: -26",
                     "since": since},
        "stats": {"state": "degraded", "reason": None, "since": None}})
    publish(root, "ltcb", {"shares": {"state": "ok", "reason": None, "since": None}})
    one_miner(root, "ltca")
    coins = {c["prefix"]: c for c in json.loads(cli("status", "--root", str(root), "--json"))}
    a, b = coins["ltca"], coins["ltcb"]
    assert a["services"] == {
        "payments": {"state": "degraded", "reason": "daemon refused sendrawtransaction: -26",
                     "since": since},
        "shares": {"state": "ok", "reason": None, "since": None},
        "stats": {"state": "degraded", "reason": None, "since": None}}
    assert a["degraded"] == ["payments", "stats"] and b["degraded"] == []
    assert a["hashrate_window"] == 600 and a["miners"] == 1 and a["workers"] == 1
    table = cli("status", "--root", str(root))
    assert "hashrate (10 min)" in table
    assert "payments, stats degraded" in table
    assert table.split("ltcb (")[1].split("\n")[0].rstrip(" │").endswith("ok")
    assert "1 miner, 1 worker" in table
    assert ("ltca: payments degraded since 2026-12-01T08:30:00: daemon refused "
            "sendrawtransaction: -26") in table
    assert "ltca: stats degraded" in table
    below = table.split("┘")[-1].splitlines()
    assert not [line for line in below if line.startswith("ltcb:") and "degraded" in line]


@pytest.mark.parametrize(("services", "age", "said"), [
    ({"payments": {"state": "broken"}}, 2, "services.payments.state: must be 'ok' or "
                                           "'degraded', got 'broken'"),
    ({"Payments!": {"state": "ok"}}, 2, "services: 'Payments!' is not a service name"),
    ([1, 2], 2, "services: must be an object of at most 32 services"),
    ({"payments": {"state": "degraded"}}, 600, "was written 600 s ago: the pool engine is "
                                               "not running, or not publishing"),
    (None, 2, "the pool engine reports no services (an older version)"),
])
def test_status_says_why_it_shows_no_services(root: Path, services: Any, age: float,
                                              said: str):
    publish(root, "ltca", services, age=age)
    coin = json.loads(cli("status", "--root", str(root), "--json"))[0]
    assert coin["services"] is None and coin["degraded"] == []
    assert said in coin["status_error"], coin["status_error"]
    assert said in " ".join(cli("status", "--root", str(root)).split())


def test_status_refuses_a_symlinked_status_file(root: Path, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text("{}")
    (root / "web" / "ltca" / "status.json").symlink_to(elsewhere)
    coin = json.loads(cli("status", "--root", str(root), "--json"))[0]
    assert "unreadable: cannot open" in coin["status_error"]
