"""Merkle trees as Bitcoin builds them (the last hash of an odd level is paired with itself).

All hashes are in internal byte order (``_le``).
"""

from __future__ import annotations

from collections.abc import Sequence

from multipool.chain.pow import sha256d


def merkle_root(hashes_le: Sequence[bytes]) -> bytes:
    """Given the txids of a block in order, return its merkle root."""
    if not hashes_le:
        raise ValueError("a merkle tree needs at least one hash")
    level = list(hashes_le)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def coinbase_merkle_branch(other_txids_le: Sequence[bytes]) -> list[bytes]:
    """Given the txids of every transaction after the coinbase, return the branch that
    turns the coinbase txid into the merkle root (what stratum sends as merkle_branch).

    Stratum miners fold it as ``root = sha256d(root + step)`` for each step.
    """
    branch: list[bytes] = []
    # Index 0 stands for the coinbase, whose hash is unknown until the miner fills in
    # its extranonce; it is always the left node, so only its siblings are needed.
    level: list[bytes | None] = [None, *other_txids_le]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        sibling = level[1]
        assert sibling is not None
        branch.append(sibling)
        next_level: list[bytes | None] = [None]
        for i in range(2, len(level), 2):
            left, right = level[i], level[i + 1]
            assert left is not None and right is not None
            next_level.append(sha256d(left + right))
        level = next_level
    return branch


def root_from_branch(coinbase_txid_le: bytes, branch: Sequence[bytes]) -> bytes:
    """Given the coinbase txid and the stratum merkle branch, return the merkle root."""
    root = coinbase_txid_le
    for step in branch:
        root = sha256d(root + step)
    return root
