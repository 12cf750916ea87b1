"""The command line: refusals and messages people see."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from multipool.accounting import bookkeeping
from multipool.accounting.database import create_engine
from multipool.accounting.migrate import upgrade
from multipool.accounting.schema import wallet_sends
from multipool.cli.main import app
from tests.unit.test_config import VALID

runner = CliRunner()


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("multipool ")


def test_pool_serve_refuses_root_without_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    coin = tmp_path / "coin.toml"
    coin.write_text(VALID)
    result = runner.invoke(app, ["pool", "serve", "--coin", str(coin)])
    assert result.exit_code == 2
    assert "refusing to run as root" in result.output
    assert "--allow-root" in result.output


def test_pool_serve_reports_bad_config_with_file_and_key(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    coin = tmp_path / "coin.toml"
    coin.write_text(VALID.replace('algorithm = "scrypt"', 'algorithm = "x11"'))
    result = runner.invoke(app, ["pool", "serve", "--coin", str(coin)])
    assert result.exit_code == 2
    assert f"error: {coin}: coin.algorithm: must be one of sha256d, scrypt; got 'x11'" \
        in result.output


def test_pool_serve_missing_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    result = runner.invoke(app, ["pool", "serve", "--coin", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "nope.toml: cannot read: No such file or directory" in result.output


def test_db_upgrade_creates_then_reports_nothing_to_do(tmp_path: Path):
    coin = tmp_path / "coin.toml"
    coin.write_text(VALID)
    first = runner.invoke(app, ["db", "upgrade", "--coin", str(coin), "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["before"] is None and report["changed"] is True
    assert (tmp_path / "pool.db").is_file()
    second = runner.invoke(app, ["db", "upgrade", "--coin", str(coin)])
    assert second.exit_code == 0
    assert "nothing to do" in second.output


def test_db_upgrade_refuses_unknown_database(tmp_path: Path):
    coin = tmp_path / "coin.toml"
    coin.write_text(VALID.replace('fee_address =', 'database = "oracle://x/y"\nfee_address ='))
    result = runner.invoke(app, ["db", "upgrade", "--coin", str(coin)])
    assert result.exit_code == 2
    assert "unsupported database 'oracle'" in result.output


def test_payments_pause_resume_and_status(tmp_path: Path):
    coin = tmp_path / "coin.toml"
    coin.write_text(VALID)
    status = runner.invoke(app, ["payments", "status", "--coin", str(coin), "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["paused"] is False
    paused = runner.invoke(app, ["payments", "pause", "--coin", str(coin)])
    assert paused.exit_code == 0 and "payments paused" in paused.output
    report = json.loads(runner.invoke(
        app, ["payments", "status", "--coin", str(coin), "--json"]).stdout)
    assert report["paused"] is True
    assert report["owed"] == 0 and report["batches"] == []
    assert report["min_payout"] == 10_000_000  # the default 0.1 coin, in the smallest unit
    human = runner.invoke(app, ["payments", "status", "--coin", str(coin)])
    assert "paused" in human.output and "min_payout 0.10000000" in human.output
    resumed = runner.invoke(app, ["payments", "resume", "--coin", str(coin)])
    assert resumed.exit_code == 0
    assert json.loads(runner.invoke(
        app, ["payments", "status", "--coin", str(coin), "--json"]).stdout)["paused"] is False


def test_payments_bad_config_names_file_and_key(tmp_path: Path):
    coin = tmp_path / "coin.toml"
    coin.write_text(VALID.replace('fee_address = ', 'min_payout = -1\nfee_address = '))
    result = runner.invoke(app, ["payments", "run", "--coin", str(coin)])
    assert result.exit_code == 2
    assert "pool.min_payout" in result.output and "greater than 0" in result.output


def test_payments_status_shows_unknown_sends_negative_accounts_and_ignore_tx(tmp_path: Path):
    """A send the database does not know pauses payments with the txid and what to do;
    a negative account is listed; ignore-tx refuses a malformed txid and resumes them."""
    coin = tmp_path / "coin.toml"
    coin.write_text(VALID)
    txid = "ab" * 32

    async def prepare() -> None:
        engine = create_engine(f"sqlite:///{tmp_path / 'pool.db'}")
        await upgrade(engine)
        async with engine.begin() as connection:
            await bookkeeping.post(connection, address="", amount=-2260, kind="tx_fee")
            await connection.execute(wallet_sends.insert().values(
                txid=txid, seen=datetime(2026, 1, 1, tzinfo=UTC), amount=10**8,
                status="unknown"))
        await engine.dispose()
    asyncio.run(prepare())
    report = json.loads(runner.invoke(
        app, ["payments", "status", "--coin", str(coin), "--json"]).stdout)
    assert report["paused"] is True
    assert txid in report["pause_reason"] and "adopt-tx" in report["pause_reason"]
    assert report["unknown_sends"] == [{"txid": txid, "amount": 10**8,
                                        "seen": "2026-01-01 00:00:00"}]
    assert report["negative_accounts"] == [{"address": "", "amount": -2260}]
    human = runner.invoke(app, ["payments", "status", "--coin", str(coin)]).output
    assert "unknown wallet send" in human and "negative account" in human
    bad = runner.invoke(app, ["payments", "ignore-tx", "--coin", str(coin), "xyz"])
    assert bad.exit_code == 2 and "64 hex digits" in bad.output
    ignored = runner.invoke(app, ["payments", "ignore-tx", "--coin", str(coin), txid.upper()])
    assert ignored.exit_code == 0 and "ignored" in ignored.output
    report = json.loads(runner.invoke(
        app, ["payments", "status", "--coin", str(coin), "--json"]).stdout)
    assert report["paused"] is False and report["unknown_sends"] == []


def test_demo_progress_lines_count_in_words_and_say_each_change_once(monkeypatch):
    """The lines the demo prints when its output is not a terminal, fed the states of a
    run (a stand-in supervisor and pool database reads: the real run is in
    tests/functional/test_demo.py, where blocks come too fast to see one at a time)."""
    from types import SimpleNamespace

    from multipool.cli import demo

    written: list[str] = []
    lines = demo.ProgressLines(written.append)
    config = SimpleNamespace(coin=SimpleNamespace(prefix="ltca"), stratum=SimpleNamespace(
        ports=[SimpleNamespace(port=23333)]))
    states = {"multipool-ltca-daemon": SimpleNamespace(status="ready"),
              "multipool-ltca-pool": SimpleNamespace(status="starting")}
    supervisor = SimpleNamespace(states=states)
    recorded = iter([0, 1, 1, 2])
    monkeypatch.setattr(demo, "recorded_blocks", lambda config: next(recorded))
    miner = SimpleNamespace(username="rltc1qminer.rig1")
    for miners in ({}, {"ltca": miner}, {"ltca": miner}, {"ltca": miner}):
        lines.update(supervisor, [config], miners, "127.0.0.1:8080")
    assert [line.split("] ", 1)[1] for line in written] == [
        "ltca: 1/2 services ready",
        "ltca: stratum 127.0.0.1:23333 open, a test miner mines on it; pool page "
        "http://127.0.0.1:8080/ltca/, miner page http://127.0.0.1:8080/ltca/miners/rltc1qminer",
        "ltca: 1 block recorded",
        "ltca: 2 blocks recorded",
    ]
