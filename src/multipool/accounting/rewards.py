"""Reward split: who gets how much of a block reward, in the coin's smallest unit.

Pure functions, no I/O. Weights are share difficulties (floats, never money); every
amount is an integer, computed with exact fractions so the split is the same on every
machine. Credits plus the pool fee equal the reward exactly: each miner's amount is
rounded down and what rounding leaves goes to the pool fee.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fractions import Fraction

# The key the pool fee is booked under when the coin has no fee address.
POOL_FEE = ""


# Every finite double is an integer multiple of 2**-1074, so difficulties scaled by 2**1074
# are exact integers: the window arithmetic is exact and as fast as int arithmetic.
_SCALE_BITS = 1074


def _scaled(value: float) -> int:
    numerator, denominator = float(value).as_integer_ratio()
    return numerator << (_SCALE_BITS - (denominator.bit_length() - 1))


class PplnsWindow:
    """Accumulates shares newest first into the last-N window, exactly.

    :meth:`add` returns False once the window is full, so a caller reading shares from a
    database page by page knows when to stop.
    """

    def __init__(self, window: float):
        if not window > 0:
            raise ValueError(f"PPLNS window must be positive, got {window!r}")
        self.room = _scaled(window)
        self._weights: dict[str, int] = {}
        self._scaled_cache: dict[float, int] = {}

    def add(self, address: str, difficulty: float) -> bool:
        if self.room <= 0:
            return False
        scaled = self._scaled_cache.get(difficulty)
        if scaled is None:
            if not difficulty >= 0:
                raise ValueError(f"share difficulty must not be negative, got {difficulty!r}")
            scaled = self._scaled_cache[difficulty] = _scaled(difficulty)
        counted = min(scaled, self.room)
        self._weights[address] = self._weights.get(address, 0) + counted
        self.room -= counted
        return self.room > 0

    def weights(self) -> dict[str, Fraction]:
        return {address: Fraction(w, 1 << _SCALE_BITS) for address, w in self._weights.items()}


def pplns_weights(shares_newest_first: Iterable[tuple[str, float]],
                  window: float) -> dict[str, Fraction]:
    """Given accepted shares as (address, difficulty), newest first, and the window N
    (in difficulty, e.g. 2 x network difficulty), return each address's weight: the
    difficulty of its shares among the last N, the oldest share counted only in part if
    it straddles the window's edge.

    >>> pplns_weights([("a", 3.0), ("b", 2.0), ("a", 4.0)], 6.0)
    {'a': Fraction(4, 1), 'b': Fraction(2, 1)}
    """
    accumulator = PplnsWindow(window)
    for address, difficulty in shares_newest_first:
        if not accumulator.add(address, difficulty):
            break
    return accumulator.weights()


def prop_weights(round_shares: Iterable[tuple[str, float]]) -> dict[str, Fraction]:
    """Given the accepted shares of the round (since the previous pool block), return
    each address's summed difficulty."""
    weights: dict[str, Fraction] = {}
    for address, difficulty in round_shares:
        weights[address] = weights.get(address, Fraction(0)) + Fraction(difficulty)
    return weights


def split_reward(reward: int, weights: Mapping[str, Fraction | float], *,
                 fee_percent: float, fee_address: str | None = None) -> dict[str, int]:
    """Given a block reward (smallest unit), the miners' weights and the pool fee, return
    the amount for each address, the fee under ``fee_address`` (or :data:`POOL_FEE`).

    The fee is ``floor(reward x fee_percent / 100)``, the percent read as the decimal
    number it is written as; the rest is divided in proportion to
    the weights, each share rounded down; the rounding remainder joins the fee. With no
    weight at all (a block whose round is empty), everything is fee.

    >>> split_reward(1000, {"a": 1, "b": 2}, fee_percent=1.0)
    {'a': 330, 'b': 660, '': 10}
    """
    if reward < 0:
        raise ValueError(f"reward must not be negative, got {reward}")
    if not 0 <= fee_percent < 100:
        raise ValueError(f"fee_percent must be in [0, 100), got {fee_percent!r}")
    if any(w < 0 for w in weights.values()):
        raise ValueError("weights must not be negative")
    fee_key = fee_address if fee_address is not None else POOL_FEE
    # The percent as the operator wrote it (0.29, not the binary 0.28999999999999998).
    fee = int(reward * Fraction(str(fee_percent)) / 100)
    to_miners = reward - fee
    total = sum((Fraction(w) for w in weights.values()), Fraction(0))
    amounts: dict[str, int] = {}
    if total > 0:
        for address, weight in weights.items():
            amount = int(to_miners * Fraction(weight) / total)
            if amount:
                amounts[address] = amount
    remainder = to_miners - sum(amounts.values())
    amounts[fee_key] = amounts.get(fee_key, 0) + fee + remainder
    return amounts
