"""Vardiff retargeting and per-IP bans, driven by explicit clocks."""

from __future__ import annotations

import pytest

from multipool.stratum.bans import IpGuard
from multipool.stratum.vardiff import Vardiff, VardiffPolicy

POLICY = VardiffPolicy(target_share_time=15, retarget_interval=90, variance_percent=30,
                       floor=0.01, ceiling=1000)


def feed(vardiff: Vardiff, start: float, interval: float, count: int, diff: float):
    """Send shares at a fixed interval; return the difficulty after each change."""
    now = start
    for _ in range(count):
        now += interval
        new = vardiff.on_share(now, diff)
        if new is not None:
            diff = new
    return diff, now


def test_fast_miner_converges_up_to_target_rate():
    # A miner 64x too fast: at difficulty 1 it finds a share every 15/64 s.
    vd = Vardiff(POLICY, 0.0)
    diff, now = 1.0, 0.0
    for _ in range(20):
        interval = 15 / 64 * diff  # share time grows with difficulty
        diff, now = feed(vd, now, interval, 10, diff)
    assert diff == pytest.approx(64, rel=0.35)


def test_slow_miner_goes_down_and_steps_are_capped():
    vd = Vardiff(POLICY, 0.0)
    new = vd.on_share(100.0, 1.0)  # one share in 100 s, 6.7x slower than target
    assert new == pytest.approx(0.25)  # at most 4x per step


def test_within_variance_band_no_change():
    vd = Vardiff(POLICY, 0.0)
    diff, _ = feed(vd, 0.0, 16.0, 12, 1.0)  # 16 s vs 15 s target: inside 30 %
    assert diff == 1.0


def test_clamped_to_floor_and_ceiling():
    vd = Vardiff(POLICY, 0.0)
    assert vd.on_share(1000.0, 0.011) == 0.01
    vd = Vardiff(POLICY, 0.0)
    diff, _ = feed(vd, 0.0, 0.001, 200, 900.0)
    assert diff == 1000


def test_idle_miner_is_lowered():
    vd = Vardiff(POLICY, 0.0)
    assert vd.on_idle(30.0, 8.0) is None
    lowered = vd.on_idle(400.0, 8.0)
    assert lowered is not None and lowered < 8.0


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_ban_after_mostly_invalid_shares_and_expiry():
    clock = Clock()
    guard = IpGuard(max_per_ip=5, ban_seconds=60, invalid_percent=50, min_shares=10,
                    clock=clock)
    assert guard.admit("1.2.3.4") is None
    results = [guard.share("1.2.3.4", valid=i % 3 == 0) for i in range(10)]
    assert results[-1] is True and not any(results[:-1])
    assert guard.admit("1.2.3.4") == "banned"
    clock.now = 61
    assert guard.admit("1.2.3.4") is None


def test_good_miner_is_never_banned():
    guard = IpGuard(max_per_ip=5, ban_seconds=60, invalid_percent=50, min_shares=10)
    guard.admit("5.6.7.8")
    assert not any(guard.share("5.6.7.8", valid=i % 10 != 0) for i in range(10_000))


def test_per_ip_cap_and_table_shrinks():
    guard = IpGuard(max_per_ip=2, ban_seconds=60, invalid_percent=50, min_shares=10)
    assert guard.admit("9.9.9.9") is None and guard.admit("9.9.9.9") is None
    assert guard.admit("9.9.9.9") == "too many connections from this address"
    guard.release("9.9.9.9")
    guard.release("9.9.9.9")
    assert guard.stats == {}


def test_expired_bans_are_pruned():
    clock = Clock()
    guard = IpGuard(max_per_ip=5, ban_seconds=60, invalid_percent=50, min_shares=1,
                    clock=clock)
    for i in range(100):
        ip = f"10.0.0.{i}"
        guard.admit(ip)
        guard.share(ip, valid=False)
        guard.release(ip)
    assert len(guard.banned_until) == 100 and guard.stats == {}
    clock.now = 61
    guard.prune()
    assert guard.banned_until == {}
