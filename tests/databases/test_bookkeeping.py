"""Balances and the ledger on every backend: many entries at once agree with one by one."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import func, select

from multipool.accounting import bookkeeping
from multipool.accounting.schema import balances, ledger


async def test_post_many_equals_posting_one_by_one(engine):
    rng = random.Random(7)
    # More addresses than one IN (...) list holds, half of them with a balance already.
    addresses = [f"addr{i:05d}" for i in range(1_200)]
    before = {a: rng.randrange(1, 10**8) for a in addresses[::2]}
    changes = [(a, rng.randrange(-10**6, 10**9)) for a in addresses]
    async with engine.begin() as connection:
        for address, amount in before.items():
            await bookkeeping.post(connection, address=address, amount=amount,
                                   kind=bookkeeping.ADJUSTMENT)
        await bookkeeping.post_many(connection, changes, kind=bookkeeping.BLOCK_CREDIT,
                                    block_id=None, note="many")
    async with engine.connect() as connection:
        held = dict((await connection.execute(
            select(balances.c.address, balances.c.amount))).all())
        rows = (await connection.execute(
            select(func.count()).select_from(ledger)
            .where(ledger.c.kind == bookkeeping.BLOCK_CREDIT, ledger.c.note == "many"))).scalar()
        assert await bookkeeping.ledger_mismatches(connection) == []
        some = await bookkeeping.balances_of(connection, [addresses[0], addresses[1], "none"])
    expected = {a: before.get(a, 0) + v for a, v in changes}
    assert held == expected
    assert rows == len(changes)
    assert some == {addresses[0]: expected[addresses[0]], addresses[1]: expected[addresses[1]],
                    "none": 0}


async def test_post_many_refuses_repeats_and_floats(engine):
    async with engine.begin() as connection:
        with pytest.raises(ValueError, match="each address once"):
            await bookkeeping.post_many(connection, [("a", 1), ("a", 2)], kind="adjustment")
        with pytest.raises(TypeError, match="integers"):
            await bookkeeping.post_many(connection, [("a", 1.5)],  # type: ignore[list-item]
                                        kind="adjustment")
    async with engine.connect() as connection:
        assert (await connection.execute(select(func.count()).select_from(ledger))).scalar() == 0
