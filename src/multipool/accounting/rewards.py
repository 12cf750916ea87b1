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


def pplns_weights(shares_newest_first: Iterable[tuple[str, float]],
                  window: float) -> dict[str, Fraction]:
    """Given accepted shares as (address, difficulty), newest first, and the window N
    (in difficulty, e.g. 2 x network difficulty), return each address's weight: the
    difficulty of its shares among the last N, the oldest share counted only in part if
    it straddles the window's edge.

    >>> pplns_weights([("a", 3.0), ("b", 2.0), ("a", 4.0)], 6.0)
    {'a': Fraction(4, 1), 'b': Fraction(2, 1)}
    """
    if not window > 0:
        raise ValueError(f"PPLNS window must be positive, got {window!r}")
    room = Fraction(window)
    weights: dict[str, Fraction] = {}
    for address, difficulty in shares_newest_first:
        if room <= 0:
            break
        counted = min(Fraction(difficulty), room)
        weights[address] = weights.get(address, Fraction(0)) + counted
        room -= counted
    return weights


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

    The fee is ``floor(reward x fee_percent / 100)``; the rest is divided in proportion to
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
    fee = int(reward * Fraction(fee_percent) / 100)
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
