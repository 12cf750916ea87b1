"""Reward split properties (hypothesis) and PPLNS against an independent computation."""

from __future__ import annotations

from fractions import Fraction
from itertools import accumulate

import pytest
from hypothesis import given
from hypothesis import strategies as st

from multipool.accounting.rewards import POOL_FEE, pplns_weights, prop_weights, split_reward

addresses = st.sampled_from(["a", "b", "c", "d", "e"])
difficulties = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)
shares = st.lists(st.tuples(addresses, difficulties), max_size=200)
rewards = st.integers(min_value=0, max_value=21_000_000 * 10**8)
fees = st.floats(min_value=0, max_value=99.99, allow_nan=False)


def reference_pplns(shares_newest_first, window):
    """Interval overlap: share i covers [before_i, after_i) on the newest-first difficulty
    axis; its weight is the length of that interval inside [0, window)."""
    ends = list(accumulate(Fraction(d) for _, d in shares_newest_first))
    starts = [Fraction(0), *ends][: len(ends)]
    weights: dict[str, Fraction] = {}
    for (address, _), start, end in zip(shares_newest_first, starts, ends, strict=True):
        overlap = max(Fraction(0), min(end, Fraction(window)) - start)
        if overlap > 0:
            weights[address] = weights.get(address, Fraction(0)) + overlap
    return weights


@given(shares, st.floats(min_value=1e-3, max_value=1e7, allow_nan=False))
def test_pplns_matches_interval_reference(share_list, window):
    assert pplns_weights(share_list, window) == reference_pplns(share_list, window)


@given(shares, st.floats(min_value=1e-3, max_value=1e7, allow_nan=False))
def test_pplns_window_total(share_list, window):
    total = sum((Fraction(d) for _, d in share_list), Fraction(0))
    assert sum(pplns_weights(share_list, window).values(), Fraction(0)) == min(
        total, Fraction(window))


@given(rewards, shares, fees, st.sampled_from([None, "fee", "a"]))
def test_split_sums_exactly_and_nobody_goes_negative(reward, share_list, fee, fee_address):
    weights = prop_weights(share_list)
    amounts = split_reward(reward, weights, fee_percent=fee, fee_address=fee_address)
    assert sum(amounts.values()) == reward
    assert all(isinstance(v, int) and v >= 0 for v in amounts.values())
    total = sum(weights.values(), Fraction(0))
    fee_key = fee_address if fee_address is not None else POOL_FEE
    to_miners = reward - int(reward * Fraction(str(fee)) / 100)
    for address, weight in weights.items():
        if total == 0 or address == fee_key:
            continue
        exact = to_miners * weight / total
        # each miner gets its exact share rounded down: never more, less by under 1 unit
        assert exact - 1 < amounts.get(address, 0) <= exact


def test_split_examples_by_hand():
    # 1 % of 5 LTC is 0.05 LTC; 4.95 LTC split 1:2 -> 1.65 / 3.30
    assert split_reward(500_000_000, {"a": 1.0, "b": 2.0}, fee_percent=1.0,
                        fee_address="pool") == {"a": 165_000_000, "b": 330_000_000,
                                                "pool": 5_000_000}
    # 10 split three ways at 0 % fee: 3 each, the 1 left over goes to the fee
    assert split_reward(10, {"a": 1, "b": 1, "c": 1}, fee_percent=0) == {
        "a": 3, "b": 3, "c": 3, POOL_FEE: 1}
    # an empty round: all to the fee
    assert split_reward(7, {}, fee_percent=1.0) == {POOL_FEE: 7}


def test_solo_is_the_finder_with_weight_one():
    assert split_reward(1000, {"finder": 1}, fee_percent=2.5, fee_address="op") == {
        "finder": 975, "op": 25}


@pytest.mark.parametrize(("reward", "fee"), [(-1, 1.0), (10, 100.0), (10, -0.1)])
def test_bad_arguments_are_refused(reward, fee):
    with pytest.raises(ValueError):
        split_reward(reward, {"a": 1}, fee_percent=fee)


@pytest.mark.parametrize(("reward", "percent", "fee"), [
    (10_000, 0.29, 29),      # binary 0.29 is 0.28999...: the fee must still be 29
    (100, 0.29, 0),          # floor(0.29)
    (5_000_000_000, 1.1, 55_000_000),
    (12_345, 2.5, 308),      # floor(308.625)
])
def test_fee_uses_the_percent_as_written(reward: int, percent: float, fee: int):
    amounts = split_reward(reward, {"a": Fraction(1)}, fee_percent=percent)
    assert amounts[POOL_FEE] == fee
    assert amounts["a"] == reward - fee
