"""The ``totals`` of status.json (blocks by status, payment batches by state with what
they pay) on SQLite, PostgreSQL and MariaDB: rows this test inserts, counted by hand.

The engine is a stub (no daemon, no stratum): only the database's figures are checked
here; tests/functional/test_engine_counters.py checks the engine's counters on a real one.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool import public_status
from multipool.accounting.database import create_engine
from multipool.accounting.schema import blocks, payment_batches
from multipool.chain.rpc import DaemonClient
from multipool.chain.sync import SyncState
from multipool.config import parse_coin_config
from multipool.devnet import free_port
from multipool.public_status import PublicStatusWriter
from multipool.supervision import Health
from multipool.web.status import parse_status

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
COUNTERS = {"shares": {"accepted": 5, "rejected": {"stale": 1}}, "connections": 2}


class StubEngine:
    sync_state: SyncState | None = None
    stratum_open = False

    def counters(self) -> dict[str, Any]:
        return COUNTERS


def config(tmp_path: Path) -> Any:
    return parse_coin_config({
        "coin": {"name": "litecoin", "prefix": "ltc", "symbol": "LTC",
                 "algorithm": "scrypt", "network": "regtest"},
        "daemon": {"rpc_url": "http://127.0.0.1:1", "rpc_user": "u", "rpc_password": "p"},
        "stratum": {"host": "127.0.0.1", "ports": [{"port": 3333, "difficulty": 1.0}]},
        "pool": {"address": "rltc1q6hnhkmvc0ls0vcjahd9wcau8x37s03mnaez28g"},
    }, str(tmp_path / "ltc.toml"))


def block(height: int, status: str) -> dict[str, Any]:
    return {"height": height, "hash": f"{height:064x}", "time": T0 + timedelta(minutes=height),
            "address": "addr", "worker": "rig", "reward": 50 * 10**8,
            "network_difficulty": 1.0, "status": status, "confirmations": 0}


def batch(number: int, status: str, total: int) -> dict[str, Any]:
    return {"id": f"batch-{number}", "created": T0 + timedelta(hours=number),
            "status": status, "total": total}


async def test_totals_count_every_block_and_batch(engine: AsyncEngine, tmp_path: Path):
    statuses = ["candidate"] + ["pending"] * 3 + ["confirmed"] * 5 + ["orphaned"] * 2
    paid = [("confirmed", 150_000_000), ("confirmed", 25_000_001), ("broadcast", 7),
            ("failed", 300_000_000)]
    async with engine.begin() as connection:
        await connection.execute(insert(blocks), [block(100 + i, status)
                                                  for i, status in enumerate(statuses)])
        await connection.execute(insert(payment_batches),
                                 [batch(i, state, total) for i, (state, total) in
                                  enumerate(paid)])
    writer = PublicStatusWriter(config=config(tmp_path), database=engine,
                                engine=StubEngine(), directory=tmp_path,
                                services=lambda: {"status": Health("ok", None, None)})
    await writer.publish()
    document = json.loads((tmp_path / "status.json").read_text())
    assert document["counters"] == COUNTERS
    assert document["totals"]["blocks"] == {"candidate": 1, "pending": 3, "confirmed": 5,
                                            "orphaned": 2}
    # Amounts in coins (8 decimals), summed by hand: 1.5 + 0.25000001.
    assert document["totals"]["payments"] == {
        "intent": {"batches": 0, "amount": "0.00000000"},
        "broadcast": {"batches": 1, "amount": "0.00000007"},
        "confirmed": {"batches": 2, "amount": "1.75000001"},
        "voiding": {"batches": 0, "amount": "0.00000000"},
        "failed": {"batches": 1, "amount": "3.00000000"},
    }
    # The web's reader takes what the engine wrote.
    status = parse_status((tmp_path / "status.json").read_bytes(), "ltc")
    assert status.totals is not None
    assert dict(status.totals.blocks)["confirmed"] == 5
    assert {p.state: str(p.amount) for p in status.totals.payments}["confirmed"] \
        == "1.75000001"


async def test_an_empty_database_gives_zeros(engine: AsyncEngine, tmp_path: Path):
    writer = PublicStatusWriter(config=config(tmp_path), database=engine,
                                engine=StubEngine(), directory=tmp_path, services=dict)
    document = await writer.status()
    assert document["totals"]["blocks"] == dict.fromkeys(
        ("candidate", "pending", "confirmed", "orphaned"), 0)
    assert all(v == {"batches": 0, "amount": "0.00000000"}
               for v in document["totals"]["payments"].values())


async def test_without_the_database_totals_are_null(tmp_path: Path):
    # A PostgreSQL URL on a port nobody listens on: the database does not answer.
    database = create_engine(f"postgresql://pool@127.0.0.1:{free_port()}/none")
    writer = PublicStatusWriter(config=config(tmp_path), database=database,
                                engine=StubEngine(), directory=tmp_path, services=dict)
    try:
        with pytest.raises((OSError, SQLAlchemyError)):
            await writer.publish()
    finally:
        await database.dispose()
    document = json.loads((tmp_path / "status.json").read_text())
    assert document["totals"] is None
    assert document["counters"] == COUNTERS


async def test_a_daemon_that_never_answers_leaves_the_network_figures_null(
        engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A daemon whose RPC port accepts and then says nothing (a hung litecoind): the
    status is still written, within the network timeout, with null network figures."""
    monkeypatch.setattr(public_status, "NETWORK_TIMEOUT", 0.5)
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with DaemonClient(f"http://127.0.0.1:{port}", user="u", password="p",
                                timeout=30.0) as daemon:
            writer = PublicStatusWriter(config=config(tmp_path), database=engine,
                                        engine=StubEngine(), directory=tmp_path,
                                        services=dict, daemon=daemon)
            started = time.monotonic()
            await writer.publish()
            took = time.monotonic() - started
    finally:
        for connection in held:
            connection.close()
        server.close()
        await server.wait_closed()
    document = json.loads((tmp_path / "status.json").read_text())
    assert held, "the status never asked the daemon"
    assert document["network"] == {"hashrate": None, "difficulty": None}
    assert document["totals"] is not None
    assert took < 5, f"the status waited {took:.1f} s for a silent daemon"
