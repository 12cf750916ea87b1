"""The reward snapshot of a found block and its credit on confirmation (rounds.py and
bookkeeping.py), on SQLite, PostgreSQL and MariaDB.

Shares and blocks are written straight into the tables; every expected amount is
re-derived here from the share list in plain Python with exact fractions (the last N
difficulty walked newest first, the oldest share counted in part; each miner's amount
rounded down and the remainder added to the pool fee), never by calling the code under
test.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from multipool.accounting import rounds
from multipool.accounting.bookkeeping import Mismatch, balance_of, ledger_mismatches
from multipool.accounting.rounds import (
    RewardPolicy,
    credit_block,
    round_effort,
    round_weights,
    split_block,
    split_new_blocks,
)
from multipool.accounting.schema import balances, block_rewards, blocks, ledger, shares

ALICE, BOB, CAROL, DAVE = "ltc1qalice", "ltc1qbob", "ltc1qcarol", "ltc1qdave"
REJECTED_ONLY = "ltc1qrejectedonly"
OPERATOR = "ltc1qoperator"
# Difficulties with and without an exact short binary form (7.3 is not dyadic).
DIFFICULTIES = [0.5, 1.0, 2.0, 3.25, 4.0, 6.125, 7.3, 8.0, 16.0]


@dataclass(frozen=True)
class Share:
    id: int
    address: str
    difficulty: float
    accepted: bool


async def add_shares(engine: AsyncEngine, rows: list[tuple[str, float, bool]]) -> list[Share]:
    """Insert shares in this order and return every share of the table, oldest first.

    ``share_difficulty`` (what the hash achieved) differs from ``difficulty`` (what the
    share was worth) so that a split reading the wrong column is caught."""
    async with engine.begin() as connection:
        first = int((await connection.execute(select(func.count()).select_from(shares)))
                    .scalar() or 0)
        for offset, (address, difficulty, accepted) in enumerate(rows):
            await connection.execute(insert(shares).values(
                time=datetime.now(UTC), height=first + offset, address=address, worker="rig",
                ip="127.0.0.1", difficulty=difficulty, share_difficulty=difficulty * 3 + 1,
                accepted=accepted, reject_code=None if accepted else 23))
    async with engine.connect() as connection:
        found = (await connection.execute(
            select(shares.c.id, shares.c.height, shares.c.address, shares.c.difficulty,
                   shares.c.accepted).order_by(shares.c.id))).all()
    # Ids only grow in insertion order (the heights carry that order here).
    assert [row.height for row in found] == list(range(len(found)))
    return [Share(int(row.id), row.address, float(row.difficulty), bool(row.accepted))
            for row in found]


_heights = iter(range(1000, 10**6))


async def add_block(engine: AsyncEngine, *, last_share_id: int | None, reward: int,
                    network_difficulty: float, address: str = ALICE,
                    status: str = "pending") -> int:
    height = next(_heights)
    async with engine.begin() as connection:
        result = await connection.execute(insert(blocks).values(
            height=height, hash=f"{height:064x}", time=datetime.now(UTC), address=address,
            worker="rig", reward=reward, network_difficulty=network_difficulty,
            last_share_id=last_share_id, status=status, confirmations=0,
            rewards_split=False))
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])


def random_shares(seed: int, count: int) -> list[tuple[str, float, bool]]:
    """Four miners with mixed difficulties; about one share in six rejected, those with a
    large difficulty so that counting them would show; one address only ever rejected."""
    rng = random.Random(seed)
    rows: list[tuple[str, float, bool]] = []
    for _ in range(count):
        if rng.random() < 1 / 6:
            rows.append((rng.choice([ALICE, BOB, CAROL, DAVE, REJECTED_ONLY]), 64.0, False))
        else:
            rows.append((rng.choice([ALICE, BOB, CAROL, DAVE]), rng.choice(DIFFICULTIES), True))
    return rows


def expected_pplns(all_shares: list[Share], last_share_id: int,
                   window: Fraction) -> tuple[dict[str, Fraction], bool]:
    """The last ``window`` difficulty of accepted shares up to ``last_share_id``, newest
    first; return the weights and whether the oldest counted share was cut."""
    room = window
    weights: dict[str, Fraction] = {}
    cut = False
    for share in reversed(all_shares):
        if share.id > last_share_id or not share.accepted:
            continue
        if room <= 0:
            break
        worth = Fraction(share.difficulty)
        counted = min(worth, room)
        cut = counted < worth
        weights[share.address] = weights.get(share.address, Fraction(0)) + counted
        room -= counted
    return weights, cut


def expected_round(all_shares: list[Share], after: int, upto: int) -> dict[str, Fraction]:
    """Summed difficulty of the accepted shares with after < id <= upto."""
    weights: dict[str, Fraction] = {}
    for share in all_shares:
        if after < share.id <= upto and share.accepted:
            weights[share.address] = weights.get(share.address, Fraction(0)) + Fraction(
                share.difficulty)
    return weights


def expected_split(reward: int, weights: dict[str, Fraction], fee_percent: str,
                   fee_key: str) -> dict[str, int]:
    """fee = floor(reward x percent / 100); each miner floor(rest x weight / total); the
    pool fee entry takes the fee and every unit that rounding left over."""
    fee = math.floor(reward * Fraction(str(fee_percent)) / 100)
    rest = reward - fee
    total = sum(weights.values(), Fraction(0))
    amounts: dict[str, int] = {}
    if total > 0:
        for address, weight in weights.items():
            amount = math.floor(rest * weight / total)
            if amount > 0:
                amounts[address] = amount
    amounts[fee_key] = amounts.get(fee_key, 0) + reward - sum(amounts.values())
    return amounts


async def snapshot(engine: AsyncEngine, block_id: int) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = (await connection.execute(
            select(block_rewards.c.address, block_rewards.c.amount)
            .where(block_rewards.c.block_id == block_id))).all()
    return {str(address): int(amount) for address, amount in rows}


async def block_row(engine: AsyncEngine, block_id: int):
    async with engine.connect() as connection:
        return (await connection.execute(select(blocks).where(blocks.c.id == block_id))).one()


async def split(engine: AsyncEngine, block_id: int, policy: RewardPolicy) -> dict[str, int] | None:
    async with engine.begin() as connection:
        return await split_block(connection, block_id, policy)


# (share_units, network difficulty, factor, fee percent, fee address): every window
# product is exact in binary, so the float window the code computes equals the exact one.
PPLNS_CASES = [
    pytest.param(65536.0, 2.0**-10, 2.0, "1.0", None, id="scrypt-units-fee-unset"),
    pytest.param(1.0, 96.0, 1.5, "2.5", OPERATOR, id="sha256-units-fee-address"),
]


@pytest.mark.parametrize(("units", "network_difficulty", "factor", "fee", "fee_address"),
                         PPLNS_CASES)
async def test_pplns_snapshot_matches_last_n_walk(engine: AsyncEngine, units: float,
                                                 network_difficulty: float, factor: float,
                                                 fee: str, fee_address: str | None):
    all_shares = await add_shares(engine, random_shares(seed=7, count=300))
    last = all_shares[249].id  # the 50 shares after the block are not its business
    reward = 1_234_567_891
    block_id = await add_block(engine, last_share_id=last, reward=reward,
                               network_difficulty=network_difficulty)
    policy = RewardPolicy(scheme="pplns", fee_percent=float(fee), fee_address=fee_address,
                          pplns_factor=factor, share_units=units)

    window = Fraction(factor) * Fraction(network_difficulty) * Fraction(units)
    weights, cut = expected_pplns(all_shares, last, window)
    assert cut, "test data: the window's oldest share should be counted in part"
    assert sum(weights.values()) == window
    fee_key = fee_address if fee_address is not None else ""
    expected = expected_split(reward, weights, fee, fee_key)

    amounts = await split(engine, block_id, policy)
    assert amounts == expected
    assert await snapshot(engine, block_id) == expected
    assert sum(expected.values()) == reward
    assert REJECTED_ONLY not in expected
    assert ("" in expected) == (fee_address is None)
    row = await block_row(engine, block_id)
    assert row.rewards_split and row.scheme == "pplns"


async def test_pplns_window_bigger_than_all_shares_counts_each_share_whole(
        engine: AsyncEngine):
    rows = [(ALICE, 4.0, True), (BOB, 2.0, True), (ALICE, 64.0, False), (CAROL, 1.0, True),
            (BOB, 1.0, True)]
    all_shares = await add_shares(engine, rows)
    block_id = await add_block(engine, last_share_id=all_shares[-1].id, reward=800,
                               network_difficulty=1000.0)
    amounts = await split(engine, block_id, RewardPolicy(scheme="pplns", fee_percent=0.0))
    # weights 4, 3, 1 of 8: exact eighths of 800, no fee, nothing left over.
    assert amounts == {ALICE: 400, BOB: 300, CAROL: 100, "": 0}
    assert await snapshot(engine, block_id) == amounts


async def test_pplns_window_over_several_pages_gives_the_same_answer(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch):
    all_shares = await add_shares(engine, random_shares(seed=11, count=200))
    last = all_shares[-1].id
    block_id = await add_block(engine, last_share_id=last, reward=625_000_000,
                               network_difficulty=2.0**-9)
    policy = RewardPolicy(scheme="pplns", fee_percent=1.0, share_units=65536.0)
    window = Fraction(2) * Fraction(2.0**-9) * 65536  # 256 difficulty
    weights, cut = expected_pplns(all_shares, last, window)
    assert cut
    in_window = 0
    room = window
    for share in reversed(all_shares):
        if room <= 0:
            break
        in_window += 1
        if share.accepted:
            room -= min(Fraction(share.difficulty), room)
    assert in_window > 3 * 7, "test data: the window should span several pages of 7"

    row = await block_row(engine, block_id)
    async with engine.connect() as connection:
        one_page = await round_weights(connection, row, policy)
    monkeypatch.setattr(rounds, "PAGE", 7)
    async with engine.connect() as connection:
        paged = await round_weights(connection, row, policy)
    assert one_page == paged == weights
    amounts = await split(engine, block_id, policy)
    assert amounts == expected_split(625_000_000, weights, "1.0", "")
    assert await snapshot(engine, block_id) == amounts


async def test_prop_round_starts_after_previous_kept_block(engine: AsyncEngine):
    all_shares = await add_shares(engine, random_shares(seed=3, count=40))
    ids = [share.id for share in all_shares]
    kept = await add_block(engine, last_share_id=ids[9], reward=10**9, network_difficulty=0.01,
                           status="confirmed")
    orphan = await add_block(engine, last_share_id=ids[19], reward=10**9,
                             network_difficulty=0.01, status="orphaned")
    found = await add_block(engine, last_share_id=ids[29], reward=999_999_937,
                            network_difficulty=0.01)
    policy = RewardPolicy(scheme="prop", fee_percent=0.5)
    assert await split_new_blocks(engine, policy) == 3

    # The orphaned block's shares roll into the next round: the round of `found` starts
    # after `kept`, not after `orphan`.
    assert await snapshot(engine, kept) == expected_split(
        10**9, expected_round(all_shares, 0, ids[9]), "0.5", "")
    assert await snapshot(engine, orphan) == expected_split(
        10**9, expected_round(all_shares, ids[9], ids[19]), "0.5", "")
    found_weights = expected_round(all_shares, ids[9], ids[29])
    assert found_weights != expected_round(all_shares, ids[19], ids[29])
    expected = expected_split(999_999_937, found_weights, "0.5", "")
    assert await snapshot(engine, found) == expected
    assert sum(expected.values()) == 999_999_937
    assert REJECTED_ONLY not in expected
    assert await split_new_blocks(engine, policy) == 0


async def test_prop_and_effort_by_hand(engine: AsyncEngine):
    rows = [(ALICE, 4.0, True), (BOB, 100.0, False), (BOB, 8.0, True),     # block A
            (CAROL, 2.0, True), (ALICE, 6.0, True),                        # block B, orphaned
            (BOB, 1.0, True), (DAVE, 50.0, False), (CAROL, 3.0, True)]     # block C
    s = [share.id for share in await add_shares(engine, rows)]
    units = 65536.0
    a = await add_block(engine, last_share_id=s[2], reward=1200, network_difficulty=8 / units)
    b = await add_block(engine, last_share_id=s[4], reward=1200, network_difficulty=4 / units,
                        status="orphaned")
    c = await add_block(engine, last_share_id=s[7], reward=1200, network_difficulty=4 / units)
    policy = RewardPolicy(scheme="prop", fee_percent=0.0, share_units=units)

    async with engine.connect() as connection:
        efforts = [await round_effort(connection, await block_row(engine, block), policy)
                   for block in (a, b, c)]
    # A: (4 + 8) / 8; B: (2 + 6) / 4; C counts from B although B was orphaned: (1 + 3) / 4.
    assert efforts == [1.5, 2.0, 1.0]

    assert await split_new_blocks(engine, policy) == 3
    assert await snapshot(engine, a) == {ALICE: 400, BOB: 800, "": 0}
    # C's PROP round starts after A (B is orphaned): 2 + 6 + 1 + 3 = 12.
    assert await snapshot(engine, c) == {CAROL: 500, ALICE: 600, BOB: 100, "": 0}
    assert [(await block_row(engine, block)).effort for block in (a, b, c)] == [1.5, 2.0, 1.0]


@pytest.mark.parametrize(("fee", "fee_address"), [("2.5", None), ("1.0", OPERATOR),
                                                  ("0", None)])
async def test_solo_finder_takes_all_but_the_fee(engine: AsyncEngine, fee: str,
                                                 fee_address: str | None):
    all_shares = await add_shares(engine, random_shares(seed=5, count=30))
    reward = 312_500_001
    block_id = await add_block(engine, last_share_id=all_shares[-1].id, reward=reward,
                               network_difficulty=0.5, address=DAVE)
    amounts = await split(engine, block_id, RewardPolicy(
        scheme="solo", fee_percent=float(fee), fee_address=fee_address))
    fee_units = reward * Fraction(str(fee)) // 100
    fee_key = fee_address if fee_address is not None else ""
    assert amounts == {DAVE: reward - fee_units, fee_key: fee_units}
    assert await snapshot(engine, block_id) == amounts


@pytest.mark.parametrize("scheme", ["pplns", "prop"])
async def test_block_with_empty_round_is_all_fee(engine: AsyncEngine, scheme: str):
    s = [share.id for share in await add_shares(engine, [
        (BOB, 8.0, False), (ALICE, 4.0, True), (CAROL, 16.0, False)])]
    policy = RewardPolicy(scheme=scheme, fee_percent=1.0, fee_address=OPERATOR)
    # No share at all before it, or only rejected ones.
    no_shares = await add_block(engine, last_share_id=None, reward=5000,
                                network_difficulty=1.0)
    only_rejected = await add_block(engine, last_share_id=s[0], reward=5000,
                                    network_difficulty=1.0)
    for block_id in (no_shares, only_rejected):
        assert await split(engine, block_id, policy) == {OPERATOR: 5000}
        assert await snapshot(engine, block_id) == {OPERATOR: 5000}
    # Only rejected shares since the previous block: an empty PROP round, while the PPLNS
    # window (2 difficulty) reaches back to the accepted share before that block.
    previous = await add_block(engine, last_share_id=s[1], reward=5000, network_difficulty=1.0)
    since_previous = await add_block(engine, last_share_id=s[2], reward=5000,
                                     network_difficulty=1.0)
    await split(engine, previous, policy)
    expected = {OPERATOR: 5000} if scheme == "prop" else {ALICE: 4950, OPERATOR: 50}
    assert await split(engine, since_previous, policy) == expected
    assert await snapshot(engine, since_previous) == expected


async def test_split_twice_writes_nothing_more(engine: AsyncEngine):
    all_shares = await add_shares(engine, random_shares(seed=9, count=20))
    block_id = await add_block(engine, last_share_id=all_shares[-1].id, reward=10**8,
                               network_difficulty=1.0)
    policy = RewardPolicy(scheme="pplns", fee_percent=1.0)
    first = await split(engine, block_id, policy)
    assert first is not None and sum(first.values()) == 10**8
    assert await split(engine, block_id, policy) is None
    # Even under another policy the snapshot written first stays.
    assert await split(engine, block_id, RewardPolicy(scheme="solo", fee_percent=50.0)) is None
    assert await snapshot(engine, block_id) == first
    async with engine.connect() as connection:
        count = (await connection.execute(select(func.count()).select_from(block_rewards)))
        assert count.scalar() == len(first)
    assert (await block_row(engine, block_id)).scheme == "pplns"


async def ledger_rows(engine: AsyncEngine, block_id: int) -> list[tuple[str, int, str]]:
    async with engine.connect() as connection:
        rows = (await connection.execute(
            select(ledger.c.address, ledger.c.amount, ledger.c.kind)
            .where(ledger.c.block_id == block_id))).all()
    return sorted((str(a), int(m), str(k)) for a, m, k in rows)


async def all_balances(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        rows = (await connection.execute(select(balances.c.address, balances.c.amount))).all()
    return {str(address): int(amount) for address, amount in rows}


async def confirm_and_credit(engine: AsyncEngine, block_id: int) -> int:
    async with engine.begin() as connection:
        await connection.execute(update(blocks).where(blocks.c.id == block_id)
                                 .values(status="confirmed", confirmations=6))
        return await credit_block(connection, block_id)


@pytest.mark.parametrize("fee_address", [None, OPERATOR])
async def test_credit_block_once_and_ledger_explains_balances(engine: AsyncEngine,
                                                              fee_address: str | None):
    all_shares = await add_shares(engine, random_shares(seed=13, count=120))
    first = await add_block(engine, last_share_id=all_shares[59].id, reward=625_000_000,
                            network_difficulty=2.0**-12)
    second = await add_block(engine, last_share_id=all_shares[119].id, reward=625_000_007,
                             network_difficulty=2.0**-12)
    policy = RewardPolicy(scheme="pplns", fee_percent=1.0, fee_address=fee_address,
                          share_units=65536.0)
    assert await split_new_blocks(engine, policy) == 2
    snap_first, snap_second = await snapshot(engine, first), await snapshot(engine, second)
    fee_key = fee_address if fee_address is not None else ""

    assert await confirm_and_credit(engine, first) == 625_000_000
    assert await all_balances(engine) == dict(snap_first)
    fee_kind = "pool_fee" if fee_address is None else "block_credit"
    assert await ledger_rows(engine, first) == sorted(
        (a, v, fee_kind if a == fee_key else "block_credit") for a, v in snap_first.items())

    with pytest.raises(RuntimeError, match="credited already"):
        await confirm_and_credit(engine, first)
    assert await confirm_and_credit(engine, second) == 625_000_007
    expected = {a: snap_first.get(a, 0) + snap_second.get(a, 0)
                for a in set(snap_first) | set(snap_second)}
    assert await all_balances(engine) == expected
    assert sum(expected.values()) == 625_000_000 + 625_000_007
    with pytest.raises(RuntimeError, match="credited already"):
        await confirm_and_credit(engine, second)
    assert await all_balances(engine) == expected  # the refused credit was rolled back
    assert len(await ledger_rows(engine, second)) == len(snap_second)

    async with engine.connect() as connection:
        assert await ledger_mismatches(connection) == []
        some_miner = next(a for a in expected if a != fee_key)
        assert await balance_of(connection, some_miner) == expected[some_miner]
    async with engine.begin() as connection:
        await connection.execute(update(balances).where(balances.c.address == some_miner)
                                 .values(amount=balances.c.amount + 1))
    async with engine.connect() as connection:
        assert await ledger_mismatches(connection) == [
            Mismatch(some_miner, expected[some_miner] + 1, expected[some_miner])]


async def test_credit_refuses_a_block_without_snapshot(engine: AsyncEngine):
    all_shares = await add_shares(engine, random_shares(seed=17, count=10))
    block_id = await add_block(engine, last_share_id=all_shares[-1].id, reward=10**8,
                               network_difficulty=1.0)
    with pytest.raises(RuntimeError, match="no reward snapshot"):
        await confirm_and_credit(engine, block_id)
    assert await all_balances(engine) == {}
    assert await ledger_rows(engine, block_id) == []
    assert (await block_row(engine, block_id)).status == "pending"  # rolled back
