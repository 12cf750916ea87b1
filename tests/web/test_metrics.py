"""Prometheus /metrics: the status files this test writes, as metrics on their own
listener (parsed with prometheus_client's own parser); the main app has no /metrics;
`multipool web serve` runs both listeners and stops both on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from multipool.devnet import free_port
from multipool.web.app import create_app
from multipool.web.metrics import create_metrics_app
from multipool.web.server import bind_sockets, make_server
from multipool.web.settings import WebSettings
from multipool.web.status import StatusError, StatusReader, parse_status
from tests.web.serving import RunningApps, serve_command
from tests.web.test_web import fetch, status_doc, write_status

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

COUNTERS = {
    "shares": {"accepted": 1234,
               "rejected": {"other": 1, "stale": 7, "duplicate": 2, "low_difficulty": 5,
                            "unauthorized": 3, "not_subscribed": 4}},
    "blocks": {"submitted": 9, "accepted": 8, "refused": 1},
    "connections": 42,
    "loop_lag": {"p99_ms": 1.5, "max_ms": 12.25, "samples": 11000, "window_seconds": 60},
}
TOTALS = {
    "blocks": {"candidate": 1, "pending": 3, "confirmed": 20, "orphaned": 2},
    "payments": {"confirmed": {"batches": 4, "amount": "12.50000000"},
                 "failed": {"batches": 1, "amount": "0.00000000"},
                 "broadcast": {"batches": 0, "amount": "0.00000000"}},
}
SERVICES = {"shares": {"state": "ok", "reason": None, "since": None},
            "payments": {"state": "degraded", "reason": "daemon unreachable", "since": None}}


def parse(text: str) -> Samples:
    """Every sample of an exposition, by (name, labels); the parser must accept it all."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, f"duplicate series {key}"
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


MetricsStart = Callable[[Path], Awaitable[str]]


@pytest.fixture
async def serve_metrics() -> AsyncIterator[MetricsStart]:
    """The metrics app under a real uvicorn server on a free port; stopped at the end."""
    apps = RunningApps()

    async def start(root: Path) -> str:
        return await apps.start(create_metrics_app(StatusReader(root)))

    yield start
    await apps.stop()


async def test_metrics_are_the_status_files(tmp_path: Path, serve_metrics: MetricsStart):
    write_status(tmp_path, "ltc", status_doc(
        "ltc", daemon={"synced": True, "blocks": 500, "headers": 503, "peers": 6},
        counters=COUNTERS, totals=TOTALS, services=SERVICES))
    # A second Litecoin pool: told apart by its prefix.
    write_status(tmp_path, "ltcb", status_doc(
        "ltcb", stratum={"open": False}, pool={"hashrate": 0, "miners": 0, "workers": 0}))
    base = await serve_metrics(tmp_path)
    response = await fetch(f"{base}/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = parse(response.text)
    ltc = {"pool": "ltc", "coin": "litecoin"}
    assert value(samples, "multipool_pool_state", **ltc, state="degraded") == 1
    assert value(samples, "multipool_pool_state", **ltc, state="online") == 0
    assert value(samples, "multipool_pool_state", pool="ltcb", coin="litecoin",
                 state="closed") == 1
    assert value(samples, "multipool_stratum_open", **ltc) == 1
    assert value(samples, "multipool_stratum_open", pool="ltcb", coin="litecoin") == 0
    assert value(samples, "multipool_hashrate_hashes_per_second", **ltc) == 12345.6
    assert value(samples, "multipool_miners", **ltc) == 3
    assert value(samples, "multipool_workers", **ltc) == 5
    assert value(samples, "multipool_connections", **ltc) == 42
    assert value(samples, "multipool_daemon_blocks", **ltc) == 500
    assert value(samples, "multipool_daemon_headers", **ltc) == 503
    assert value(samples, "multipool_daemon_lag_blocks", **ltc) == 3
    assert value(samples, "multipool_daemon_peers", **ltc) == 6
    assert value(samples, "multipool_daemon_synced", **ltc) == 1
    # status_doc writes the file as updated 2 s ago.
    age = value(samples, "multipool_status_age_seconds", **ltc)
    assert age is not None and 2 <= age <= 30
    assert value(samples, "multipool_shares_total", **ltc, result="accepted", reason="") \
        == 1234
    for reason, count in COUNTERS["shares"]["rejected"].items():  # type: ignore[index]
        assert value(samples, "multipool_shares_total", **ltc, result="rejected",
                     reason=reason) == count
    assert value(samples, "multipool_blocks_submitted_total", **ltc) == 9
    assert value(samples, "multipool_block_verdicts_total", **ltc, verdict="accepted") == 8
    assert value(samples, "multipool_block_verdicts_total", **ltc, verdict="refused") == 1
    for status, count in TOTALS["blocks"].items():
        assert value(samples, "multipool_blocks", **ltc, status=status) == count
    assert value(samples, "multipool_payment_batches", **ltc, state="confirmed") == 4
    assert value(samples, "multipool_payment_amount_coins", **ltc, state="confirmed") == 12.5
    assert value(samples, "multipool_payment_batches", **ltc, state="failed") == 1
    assert value(samples, "multipool_service_degraded", **ltc, service="payments") == 1
    assert value(samples, "multipool_service_degraded", **ltc, service="shares") == 0
    assert value(samples, "multipool_loop_lag_p99_seconds", **ltc) == 0.0015
    assert value(samples, "multipool_loop_lag_max_seconds", **ltc) == 0.01225
    # An engine without counters or totals (an older one): those series are absent.
    ltcb = {"pool": "ltcb", "coin": "litecoin"}
    assert value(samples, "multipool_connections", **ltcb) is None
    assert not [key for key in samples if key[0] == "multipool_blocks"
                and ("pool", "ltcb") in key[1]]
    assert value(samples, "multipool_miners", **ltcb) == 0


async def test_stale_missing_and_unreadable_pools_give_only_their_state(
        tmp_path: Path, serve_metrics: MetricsStart):
    from tests.web.test_web import iso
    write_status(tmp_path, "old", status_doc("old", updated=iso(3600), counters=COUNTERS))
    write_status(tmp_path, "bad", b"{not json")
    (tmp_path / "coin" / "none").mkdir(parents=True)
    samples = parse((await fetch(f"{await serve_metrics(tmp_path)}/metrics")).text)
    assert value(samples, "multipool_pool_state", pool="old", coin="litecoin",
                 state="offline") == 1
    age = value(samples, "multipool_status_age_seconds", pool="old", coin="litecoin")
    assert age is not None and 3600 <= age < 3700
    assert value(samples, "multipool_pool_state", pool="bad", coin="", state="unreadable") == 1
    assert value(samples, "multipool_pool_state", pool="none", coin="", state="offline") == 1
    # No figure of a stopped engine is passed off as current.
    pools = {dict(labels)["pool"] for name, labels in samples
             if name not in ("multipool_pool_state", "multipool_status_age_seconds")}
    assert pools == set(), pools


async def test_metrics_listener_serves_nothing_else(tmp_path: Path, serve_metrics: MetricsStart):
    base = await serve_metrics(tmp_path)
    for path in ("/", "/api/pools", "/healthz", "/static/style.css", "/metrics/x"):
        assert (await fetch(base + path)).status == 404, path
    async with aiohttp.ClientSession() as session, \
            session.post(f"{base}/metrics") as response:
        assert response.status == 405


async def test_main_app_has_no_metrics(tmp_path: Path):
    write_status(tmp_path, "ltc", status_doc("ltc", counters=COUNTERS))
    port = free_port()
    server = make_server(create_app(root=tmp_path, settings=WebSettings()))
    task = asyncio.create_task(server.serve(sockets=bind_sockets("127.0.0.1", port)))
    try:
        while not server.started:
            assert not task.done(), task.exception()
            await asyncio.sleep(0.01)
        assert (await fetch(f"http://127.0.0.1:{port}/metrics")).status == 404
        assert (await fetch(f"http://127.0.0.1:{port}/")).status == 200
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def test_parse_status_reads_counters_and_totals():
    import json
    status = parse_status(json.dumps(status_doc("ltc", counters=COUNTERS, totals=TOTALS))
                          .encode(), "ltc")
    assert status.counters is not None and status.totals is not None
    assert status.counters.shares_accepted == 1234
    assert dict(status.counters.shares_rejected) == COUNTERS["shares"]["rejected"]  # type: ignore[index]
    assert status.counters.connections == 42
    assert dict(status.totals.blocks) == TOTALS["blocks"]
    assert {p.state: (p.batches, format(p.amount, "f")) for p in status.totals.payments} == {
        "confirmed": (4, "12.50000000"), "failed": (1, "0.00000000"),
        "broadcast": (0, "0.00000000")}
    older = parse_status(json.dumps(status_doc("ltc")).encode(), "ltc")
    assert older.counters is None and older.totals is None


@pytest.mark.parametrize(("change", "reason"), [
    ({"counters": []}, "counters.: must be an object"),
    ({"counters": {"connections": -1}}, "counters.connections: must be an integer"),
    ({"counters": {"shares": {"rejected": {"Bad Reason": 1}}}}, "is not a name"),
    ({"counters": {"shares": {"rejected": {"stale": "7"}}}},
     "counters.shares.rejected.stale: must be an integer"),
    ({"counters": {"loop_lag": {"p99_ms": "fast"}}}, "counters.loop_lag.p99_ms: must be"),
    ({"totals": {"blocks": {"pending": 1.5}}}, "totals.blocks.pending: must be an integer"),
    ({"totals": {"payments": {"sent": {"amount": 12.5}}}},
     "totals.payments.sent.amount: must be an amount in coins"),
    ({"totals": {"payments": {"sent": 3}}}, "totals.payments.sent.: must be an object"),
])
def test_parse_status_refuses_bad_counters(change: dict[str, Any], reason: str):
    import json
    with pytest.raises(StatusError, match=None) as caught:
        parse_status(json.dumps(status_doc("ltc", **change)).encode(), "ltc")
    assert reason in str(caught.value), str(caught.value)


async def wait_answering(url: str, process: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{url} did not answer"
        try:
            return (await fetch(url)).status
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
async def test_serve_command_runs_both_listeners_and_stops_both(tmp_path: Path,
                                                               stop: signal.Signals):
    write_status(tmp_path, "ltc", status_doc("ltc", counters=COUNTERS))
    port, metrics_port = free_port(), free_port()
    with serve_command(tmp_path, "--listen", f"127.0.0.1:{port}", "--metrics-listen",
                       f"127.0.0.1:{metrics_port}", "--workers", "1") as process:
        assert await wait_answering(f"http://127.0.0.1:{port}/", process) == 200
        assert await wait_answering(f"http://127.0.0.1:{metrics_port}/metrics", process) == 200
        samples = parse((await fetch(f"http://127.0.0.1:{metrics_port}/metrics")).text)
        assert value(samples, "multipool_connections", pool="ltc", coin="litecoin") == 42
        assert (await fetch(f"http://127.0.0.1:{port}/metrics")).status == 404
        process.send_signal(stop)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    listening = [line for line in stderr.splitlines() if "listening on" in line]
    assert len(listening) == 2, stderr
    assert any(f"listening on http://127.0.0.1:{metrics_port} (Prometheus /metrics)" in line
               for line in listening), stderr
    assert stderr.rstrip().endswith("multipool.web: stopped"), stderr
    assert "Traceback" not in stderr
    for closed in (port, metrics_port):
        with pytest.raises(aiohttp.ClientConnectionError):
            await fetch(f"http://127.0.0.1:{closed}/")


def test_metrics_listen_must_differ_from_listen(tmp_path: Path):
    from tests.web.test_web import cli_app, runner
    result = runner.invoke(cli_app, ["web", "serve", "--allow-root", "--root", str(tmp_path),
                                     "--listen", "127.0.0.1:8181",
                                     "--metrics-listen", "127.0.0.1:8181"])
    assert result.exit_code == 2, result.output
    assert "--metrics-listen: must differ from --listen" in result.output


def test_metrics_port_in_use_exits_1_and_frees_the_main_port(tmp_path: Path):
    from tests.web.test_web import cli_app, runner
    port, metrics_port = free_port(), free_port()
    taken = bind_sockets("127.0.0.1", metrics_port)
    taken[0].listen()
    try:
        result = runner.invoke(cli_app, ["web", "serve", "--allow-root", "--root",
                                         str(tmp_path), "--listen", f"127.0.0.1:{port}",
                                         "--metrics-listen", f"127.0.0.1:{metrics_port}"])
    finally:
        taken[0].close()
    assert result.exit_code == 1, result.output
    assert f"cannot listen on 127.0.0.1:{metrics_port}: Address already in use" \
        in result.output
    # The main port's socket was closed again: it can be bound at once.
    for sock in bind_sockets("127.0.0.1", port):
        sock.close()
