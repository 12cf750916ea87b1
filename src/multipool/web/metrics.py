"""Prometheus ``/metrics``: every pool's status file as metrics, on a listener of its own.

The figures are those the engines publish in ``web/<prefix>/status.json`` (read through
:class:`~multipool.web.status.StatusReader`, so a hostile file is refused the same way),
turned into metrics at each scrape by a custom collector: nothing is kept between
scrapes. Every series carries ``pool`` (the prefix: two Litecoin pools are told apart)
and ``coin`` (the coin's name).

Counters (``*_total``) are the engine's own since it started: they start again from zero
when it restarts, which Prometheus's ``rate()`` and ``increase()`` take as a reset. The
figures of a pool whose status is stale or unreadable are left out (the engine is not
running, or not as this version knows it): only ``multipool_pool_state`` and
``multipool_status_age_seconds`` are given for it, so an alert on the state catches it.

The app serves ``/metrics`` only; it runs on ``[web] metrics_listen`` (loopback by
default), never behind the public proxy, and the main app has no ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from multipool.web.status import HASHRATE_WINDOW, STATES, StatusReader

LABELS = ("pool", "coin")
_WINDOW = f"{HASHRATE_WINDOW / 60:g} minutes"


def _gauge(name: str, documentation: str, *extra: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=(*LABELS, *extra))


def _counter(name: str, documentation: str, *extra: str) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, labels=(*LABELS, *extra))


class PoolCollector(Collector):
    """Given a status reader, yields every pool's metrics at each scrape."""

    def __init__(self, reader: StatusReader):
        self.reader = reader

    def collect(self) -> Iterator[Metric]:
        state = _gauge("multipool_pool_state", "1 for the pool's state now (online, "
                       "degraded, closed: stratum ports closed, offline: no fresh status, "
                       "unreadable), 0 for the others", "state")
        age = _gauge("multipool_status_age_seconds",
                     "Seconds since the engine last wrote its status file")
        stratum = _gauge("multipool_stratum_open", "1 when the stratum ports are open")
        synced = _gauge("multipool_daemon_synced", "1 when the coin daemon is synced")
        height = _gauge("multipool_daemon_blocks", "Blocks of the daemon's best chain")
        headers = _gauge("multipool_daemon_headers", "Headers the daemon knows")
        lag = _gauge("multipool_daemon_lag_blocks",
                     "Headers minus blocks: how far the daemon is behind the headers")
        peers = _gauge("multipool_daemon_peers", "Peers of the coin daemon")
        hashrate = _gauge("multipool_hashrate_hashes_per_second",
                          f"Pool hashrate over the last {_WINDOW} (accepted share "
                          "difficulty x 2^32 for sha256d, 2^16 for scrypt, per second)")
        network = _gauge("multipool_network_hashrate_hashes_per_second",
                         "The coin network's hashrate, as the daemon estimates it")
        miners = _gauge("multipool_miners",
                        f"Addresses with an accepted share in the last {_WINDOW}")
        workers = _gauge("multipool_workers",
                         f"Workers with an accepted share in the last {_WINDOW}")
        connections = _gauge("multipool_connections", "Open stratum connections")
        shares = _counter("multipool_shares", "Shares since the engine started, by result "
                          "(accepted, rejected) and reject reason (other: unknown job or "
                          "malformed, stale, duplicate, low_difficulty, unauthorized, "
                          "not_subscribed; empty when accepted)", "result", "reason")
        submitted = _counter("multipool_blocks_submitted",
                             "Solved blocks handed to the daemon since the engine started")
        verdicts = _counter("multipool_block_verdicts", "The daemon's verdicts on the "
                            "submitted blocks since the engine started (accepted, refused)",
                            "verdict")
        blocks = _gauge("multipool_blocks", "Blocks recorded in the pool's database by "
                        "status (candidate, pending, confirmed, orphaned)", "status")
        batches = _gauge("multipool_payment_batches",
                         "Payment batches in the database by state", "state")
        amount = _gauge("multipool_payment_amount_coins", "What the payment batches in "
                        "each state pay, in coins (not the smallest unit)", "state")
        degraded = _gauge("multipool_service_degraded", "1 when the engine's background "
                          "service (shares, blocks, payments, stats, status) is degraded",
                          "service")
        lag_p99 = _gauge("multipool_loop_lag_p99_seconds", "99th percentile of how late the "
                         "stratum event loop ran what was due, over the last minute")
        lag_max = _gauge("multipool_loop_lag_max_seconds", "Longest stall of the stratum "
                         "event loop over the last minute")
        for view in self.reader.views():
            status = view.status
            labels = [view.prefix, (status.name if status else None) or ""]
            for name in STATES:
                state.add_metric([*labels, name], 1.0 if view.state == name else 0.0)
            if view.updated_age is not None:
                age.add_metric(labels, view.updated_age)
            if status is None or not view.live:
                continue
            _add(stratum, labels, status.stratum_open)
            _add(synced, labels, status.synced)
            _add(height, labels, status.blocks)
            _add(headers, labels, status.headers)
            if status.blocks is not None and status.headers is not None:
                lag.add_metric(labels, max(0, status.headers - status.blocks))
            _add(peers, labels, status.peers)
            _add(hashrate, labels, status.hashrate)
            _add(network, labels, status.network_hashrate)
            _add(miners, labels, status.miners)
            _add(workers, labels, status.workers)
            for service in status.services or ():
                degraded.add_metric([*labels, service.name], float(service.degraded))
            counted = status.counters
            if counted is not None:
                _add(connections, labels, counted.connections)
                _add(shares, [*labels, "accepted", ""], counted.shares_accepted)
                for reason, count in counted.shares_rejected:
                    shares.add_metric([*labels, "rejected", reason], count)
                _add(submitted, labels, counted.blocks_submitted)
                _add(verdicts, [*labels, "accepted"], counted.blocks_accepted)
                _add(verdicts, [*labels, "refused"], counted.blocks_refused)
                if counted.loop_lag_p99_ms is not None:
                    lag_p99.add_metric(labels, counted.loop_lag_p99_ms / 1000)
                if counted.loop_lag_max_ms is not None:
                    lag_max.add_metric(labels, counted.loop_lag_max_ms / 1000)
            totals = status.totals
            if totals is not None:
                for name, count in totals.blocks:
                    blocks.add_metric([*labels, name], count)
                for paid in totals.payments:
                    batches.add_metric([*labels, paid.state], paid.batches)
                    amount.add_metric([*labels, paid.state], float(paid.amount))
        yield from (state, age, stratum, synced, height, headers, lag, peers, hashrate,
                    network, miners, workers, connections, shares, submitted, verdicts, blocks,
                    batches, amount, degraded, lag_p99, lag_max)


def _add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str],
         value: float | bool | None) -> None:
    """One sample, unless the status does not know the value."""
    if value is not None:
        family.add_metric(labels, float(value))


def registry_for(reader: StatusReader) -> CollectorRegistry:
    """A registry holding only the pools' collector (no process metrics of the web
    process itself: they say nothing about the pools)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(reader))
    return registry


def create_metrics_app(reader: StatusReader) -> Starlette:
    """The ASGI app of the metrics listener: ``GET /metrics``, and 404 for anything else."""
    registry = registry_for(reader)

    async def metrics(_request: Request) -> Response:
        # The status files are read in a worker thread: a slow disk must not hold the loop
        # the pages are served from.
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])
