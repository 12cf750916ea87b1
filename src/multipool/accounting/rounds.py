"""From a found block to balances: the reward snapshot and the credit on confirmation.

When the pool finds a block, its reward is split once among the miners by the coin's
scheme and written as ``block_rewards`` rows (the snapshot); when the block confirms,
those rows are credited to balances with ledger rows, in the same transaction that marks
it confirmed. An orphaned block is never credited. The split depends only on rows that
never change afterwards (the block and the shares up to its ``last_share_id``), so it is
the same whenever it is computed.

Schemes:

* ``pplns``: the last N difficulty of accepted shares up to the block's last share,
  N = ``pplns_factor`` x network difficulty (in share difficulty units). Shares of an
  orphaned block stay in the window of later blocks.
* ``prop``: the accepted shares since the previous pool block that was not orphaned when
  this block's split was written (the tracker refreshes statuses before it splits, so an
  orphan's round rolls into the next block's).
* ``solo``: the finder takes everything but the pool fee.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from multipool.accounting import bookkeeping
from multipool.accounting.rewards import POOL_FEE, PplnsWindow, prop_weights, split_reward
from multipool.accounting.schema import block_rewards, blocks, ledger, shares
from multipool.chain.pow import ALGORITHMS, SHA256D_DIFF1_TARGET

if TYPE_CHECKING:
    from multipool.config import CoinConfig

SCHEMES = ("pplns", "prop", "solo")
# Blocks that end a round: pool blocks on the chain (or once were: orphaned). A candidate
# (stored before its submission, verdict unknown) is not a block yet.
ROUND_ENDS = ("pending", "confirmed", "orphaned")
# Shares read per query while filling a PPLNS window: small enough that one page holds
# the event loop (and the stratum server in it) for well under 50 ms.
PAGE = 5_000


@dataclass(frozen=True, slots=True)
class RewardPolicy:
    """How a coin splits its block rewards."""

    scheme: str
    fee_percent: float
    fee_address: str | None = None
    pplns_factor: float = 2.0
    # Network difficulty as daemons report it (SHA256d difficulty-1 units) times this is
    # the same difficulty in the units of share difficulty: 1 for sha256d, 65536 for
    # scrypt, whose difficulty-1 target is 2^16 times larger.
    share_units: float = 1.0

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise ValueError(f"unknown reward scheme {self.scheme!r}; known: {SCHEMES}")

    @classmethod
    def from_config(cls, config: CoinConfig) -> RewardPolicy:
        algorithm = ALGORITHMS[config.coin.algorithm]
        return cls(scheme=config.pool.scheme, fee_percent=config.pool.fee_percent,
                   fee_address=config.pool.fee_address,
                   pplns_factor=config.pool.pplns_factor,
                   share_units=algorithm.diff1_target / SHA256D_DIFF1_TARGET)

    @property
    def fee_key(self) -> str:
        return self.fee_address if self.fee_address is not None else POOL_FEE


async def _previous_last_share(connection: AsyncConnection, block: Any, *,
                               skip_orphans: bool) -> int:
    """The last share id of the pool block before ``block`` (0 when there is none)."""
    query = select(func.max(blocks.c.last_share_id)).where(
        blocks.c.last_share_id < block.last_share_id, blocks.c.id != block.id,
        blocks.c.status.in_(ROUND_ENDS))
    if skip_orphans:
        query = query.where(blocks.c.status != "orphaned")
    return int((await connection.execute(query)).scalar() or 0)


async def _pplns(connection: AsyncConnection, block: Any, window: float) -> dict[str, Fraction]:
    accumulator = PplnsWindow(window)
    below = block.last_share_id + 1
    while True:
        page = (await connection.execute(
            select(shares.c.id, shares.c.address, shares.c.difficulty)
            .where(shares.c.id < below, shares.c.accepted.is_(True))
            .order_by(shares.c.id.desc()).limit(PAGE))).all()
        for _, address, difficulty in page:
            if not accumulator.add(address, difficulty):
                return accumulator.weights()
        if len(page) < PAGE:
            return accumulator.weights()
        below = page[-1][0]


async def round_weights(connection: AsyncConnection, block: Any,
                        policy: RewardPolicy) -> dict[str, Fraction]:
    """Given a ``blocks`` row, return the miners' weights under ``policy``."""
    if policy.scheme == "solo":
        return {block.address: Fraction(1)}
    if block.last_share_id is None:
        return {}
    if policy.scheme == "pplns":
        window = policy.pplns_factor * block.network_difficulty * policy.share_units
        return await _pplns(connection, block, window)
    start = await _previous_last_share(connection, block, skip_orphans=True)
    rows = (await connection.execute(
        select(shares.c.address, shares.c.difficulty)
        .where(shares.c.id > start, shares.c.id <= block.last_share_id,
               shares.c.accepted.is_(True)))).all()
    return prop_weights((address, difficulty) for address, difficulty in rows)


async def round_effort(connection: AsyncConnection, block: Any,
                       policy: RewardPolicy) -> float | None:
    """Accepted share difficulty since the previous pool block (orphaned or not) divided
    by the network difficulty: 1.0 means the block took as long as expected."""
    if block.last_share_id is None or not block.network_difficulty > 0:
        return None
    start = await _previous_last_share(connection, block, skip_orphans=False)
    done = (await connection.execute(
        select(func.sum(shares.c.difficulty))
        .where(shares.c.id > start, shares.c.id <= block.last_share_id,
               shares.c.accepted.is_(True)))).scalar()
    return float(done or 0.0) / (block.network_difficulty * policy.share_units)


async def split_block(connection: AsyncConnection, block_id: int,
                      policy: RewardPolicy) -> dict[str, int] | None:
    """Write the reward snapshot of one block, in the caller's transaction; return the
    amounts, or None when the block was split already."""
    block = (await connection.execute(
        select(blocks).where(blocks.c.id == block_id))).one()
    if block.rewards_split:
        return None
    weights = await round_weights(connection, block, policy)
    amounts = split_reward(block.reward, weights, fee_percent=policy.fee_percent,
                           fee_address=policy.fee_address)
    await connection.execute(insert(block_rewards), [
        {"block_id": block_id, "address": address, "amount": amount}
        for address, amount in sorted(amounts.items())])
    await connection.execute(
        update(blocks).where(blocks.c.id == block_id)
        .values(rewards_split=True, scheme=policy.scheme,
                effort=await round_effort(connection, block, policy)))
    return amounts


async def split_new_blocks(engine: AsyncEngine, policy: RewardPolicy) -> int:
    """Snapshot the rewards of every block not split yet, in the order they were
    recorded, each in its own transaction; return how many were split. A candidate
    (verdict unknown) is not split, nor anything recorded after it: whether it ends a
    round decides the PROP round of the blocks that follow it."""
    async with engine.connect() as connection:
        waiting = (await connection.execute(
            select(blocks.c.id, blocks.c.status).where(blocks.c.rewards_split.is_(False))
            .order_by(blocks.c.id))).all()
    split = 0
    for block_id, status in waiting:
        if status not in ROUND_ENDS:
            break
        async with engine.begin() as connection:
            await split_block(connection, block_id, policy)
        split += 1
    return split


async def credit_block(connection: AsyncConnection, block_id: int) -> int:
    """Credit a confirmed block's snapshot to balances, in the caller's transaction (the
    one that marks it confirmed); return the total credited. Crediting twice is refused."""
    credited = (await connection.execute(select(exists().where(
        ledger.c.block_id == block_id,
        ledger.c.kind.in_((bookkeeping.BLOCK_CREDIT, bookkeeping.POOL_FEE_CREDIT)))))).scalar()
    if credited:
        raise RuntimeError(f"block {block_id} was credited already")
    split = (await connection.execute(
        select(blocks.c.rewards_split).where(blocks.c.id == block_id))).scalar()
    if not split:
        raise RuntimeError(f"block {block_id} has no reward snapshot to credit")
    rows = (await connection.execute(
        select(block_rewards.c.address, block_rewards.c.amount)
        .where(block_rewards.c.block_id == block_id)
        .order_by(block_rewards.c.address))).all()
    miners = [(str(a), int(v)) for a, v in rows if a != POOL_FEE]
    fee = [(str(a), int(v)) for a, v in rows if a == POOL_FEE]
    await bookkeeping.post_many(connection, miners, kind=bookkeeping.BLOCK_CREDIT,
                                block_id=block_id)
    await bookkeeping.post_many(connection, fee, kind=bookkeeping.POOL_FEE_CREDIT,
                                block_id=block_id)
    return sum(int(amount) for _, amount in rows)
