"""Variable share difficulty: aim each miner at one share every ``target_share_time``.

After at least ``retarget_interval`` seconds (or sooner, once a handful of shares came
in far too fast), the average time between the miner's recent shares is compared with
the target; outside the ``variance`` band the difficulty is scaled by target/average,
at most 4x per step (a burst of luck should not throw a miner far off), and clamped to
the port's floor and ceiling.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VardiffPolicy:
    target_share_time: float
    retarget_interval: float
    variance_percent: float
    floor: float
    ceiling: float

    # The most the difficulty moves in one step, up or down.
    MAX_STEP = 4.0
    # Shares kept to average over (Miningcore and ckpool use about ten).
    WINDOW = 16
    # Retarget early when this many shares arrived in under a tenth of the target time.
    FAST_SHARES = 8


class Vardiff:
    """One session's vardiff state."""

    __slots__ = ("last_retarget", "policy", "times")

    def __init__(self, policy: VardiffPolicy, now: float):
        self.policy = policy
        self.times: deque[float] = deque(maxlen=policy.WINDOW)
        self.last_retarget = now

    def on_share(self, now: float, difficulty: float) -> float | None:
        """Given the time of an accepted share and the current difficulty, return a new
        difficulty when it is time to change, else None."""
        p = self.policy
        self.times.append(now)
        since = now - self.last_retarget
        fast = (len(self.times) >= p.FAST_SHARES
                and now - self.times[-p.FAST_SHARES] < p.target_share_time * p.FAST_SHARES / 10)
        if since < p.retarget_interval and not fast:
            return None
        return self._retarget(now, difficulty)

    def on_idle(self, now: float, difficulty: float) -> float | None:
        """Called now and then without a share: lower the difficulty of a miner that has
        gone quiet for much longer than the target time."""
        p = self.policy
        last = self.times[-1] if self.times else self.last_retarget
        if now - last < max(p.retarget_interval, p.target_share_time * 4):
            return None
        return self._retarget(now, difficulty)

    def _retarget(self, now: float, difficulty: float) -> float | None:
        p = self.policy
        if len(self.times) >= 2:
            average = (self.times[-1] - self.times[0]) / (len(self.times) - 1)
            # A miner that stopped sending since its last share counts the silence too.
            average = max(average, (now - self.times[-1]) / 2)
        else:
            average = now - self.last_retarget
        self.last_retarget = now
        band = p.target_share_time * p.variance_percent / 100
        if abs(average - p.target_share_time) <= band:
            return None
        factor = p.target_share_time / max(average, 1e-6)
        factor = min(p.MAX_STEP, max(1 / p.MAX_STEP, factor))
        new = min(p.ceiling, max(p.floor, difficulty * factor))
        if new == difficulty:
            return None
        self.times.clear()
        self.times.append(now)
        return new
