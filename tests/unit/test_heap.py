"""The collector's policy for long-lived processes (multipool.heap) and the chart series
the web caches in a form the collector does not scan (web/data.py HashrateSeries)."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta

import pytest

from multipool.heap import freeze_start_up
from multipool.web.data import HashratePoint, HashrateSeries


def test_objects_alive_at_start_up_are_left_out_of_later_collections():
    built = [[n] for n in range(1000)]  # lists: objects the collector tracks
    try:
        frozen = freeze_start_up()
        assert frozen >= len(built) and gc.get_freeze_count() == frozen
        scanned = {id(o) for o in gc.get_objects()}
        assert not any(id(item) in scanned for item in built)
        later = [[0]]
        assert id(later[0]) in {id(o) for o in gc.get_objects()}
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_a_series_is_its_points_and_is_one_object_to_scan():
    start = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    rates = [float(n * n) for n in range(144)]
    series = HashrateSeries.of(
        [(start + timedelta(minutes=10 * n), rate) for n, rate in enumerate(rates)], 600)
    points = [HashratePoint(start + timedelta(minutes=10 * n), rate)
              for n, rate in enumerate(rates)]
    assert len(series) == 144 and list(series) == points
    assert series[0] == points[0] and series[-1] == points[-1] and series[5] == points[5]
    assert series[2:5] == tuple(points[2:5])
    with pytest.raises(IndexError):
        series[144]
    with pytest.raises(IndexError):
        series[-145]
    gc.collect()  # tuples of floats are untracked by the collector's first pass
    assert not gc.is_tracked(series.rates)
    assert len(HashrateSeries.of([], 600)) == 0 and list(HashrateSeries.of([], 600)) == []
