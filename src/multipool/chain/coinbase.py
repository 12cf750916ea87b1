"""The coinbase transaction a pool builds, split around the miner's extranonce.

Stratum V1 hands miners ``coinb1`` and ``coinb2``; the miner puts
``extranonce1 + extranonce2`` between them to get the coinbase in its non-witness
serialization (the form whose hash is the txid). The full block carries the same
transaction with its witness (the 32-byte witness reserved value) when the block
commits to witnesses.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from multipool.chain.serialize import compact_size, push_data, push_int

# BIP34 and consensus: the coinbase scriptSig is 2 to 100 bytes.
MAX_SCRIPT_SIG = 100
WITNESS_RESERVED_VALUE = bytes(32)
_NULL_PREVOUT = bytes(32) + b"\xff\xff\xff\xff"
_SEQUENCE_FINAL = b"\xff\xff\xff\xff"


@dataclass(frozen=True, slots=True)
class TxOut:
    value: int
    script: bytes

    def serialize(self) -> bytes:
        return struct.pack("<q", self.value) + compact_size(len(self.script)) + self.script


@dataclass(frozen=True, slots=True)
class CoinbaseParts:
    """A coinbase split for stratum, and what is needed to rebuild it with its witness."""

    coinb1: bytes
    coinb2: bytes
    extranonce_size: int
    has_witness: bool

    def non_witness(self, extranonce: bytes) -> bytes:
        """Given extranonce1 + extranonce2, return the coinbase as hashed for its txid."""
        if len(extranonce) != self.extranonce_size:
            raise ValueError(f"extranonce is {len(extranonce)} bytes, "
                             f"expected {self.extranonce_size}")
        return self.coinb1 + extranonce + self.coinb2

    def with_witness(self, extranonce: bytes) -> bytes:
        """Given extranonce1 + extranonce2, return the coinbase as it goes into the block."""
        plain = self.non_witness(extranonce)
        if not self.has_witness:
            return plain
        # version | marker 0x00 flag 0x01 | inputs+outputs | witness | locktime
        witness = b"\x01" + compact_size(len(WITNESS_RESERVED_VALUE)) + WITNESS_RESERVED_VALUE
        return plain[:4] + b"\x00\x01" + plain[4:-4] + witness + plain[-4:]


def build_coinbase(
    *,
    height: int,
    outputs: list[TxOut],
    extranonce_size: int,
    pool_tag: bytes,
    witness_commitment: bytes | None,
) -> CoinbaseParts:
    """Given the block height, the payout outputs, the total extranonce size and an
    optional witness commitment script, return the coinbase split around the extranonce.

    The scriptSig is ``<height> <extranonce push> <pool tag push>``: the height first as
    BIP34 requires, OP_1..OP_16 for heights 1 to 16.
    """
    height_push = push_int(height)
    # A one-byte length opcode followed by the extranonce bytes the miner fills in.
    if not 1 <= extranonce_size < 0x4C:
        raise ValueError(f"extranonce size {extranonce_size} out of range")
    extranonce_opcode = bytes((extranonce_size,))
    tag_push = push_data(pool_tag) if pool_tag else b""
    script_len = len(height_push) + 1 + extranonce_size + len(tag_push)
    if not 2 <= script_len <= MAX_SCRIPT_SIG:
        raise ValueError(f"coinbase scriptSig would be {script_len} bytes; must be 2-100")

    all_outputs = list(outputs)
    if witness_commitment is not None:
        all_outputs.append(TxOut(0, witness_commitment))
    coinb1 = (
        struct.pack("<i", 2)  # version 2: nothing in the coinbase needs more
        + b"\x01"
        + _NULL_PREVOUT
        + compact_size(script_len)
        + height_push
        + extranonce_opcode
    )
    coinb2 = (
        tag_push
        + _SEQUENCE_FINAL
        + compact_size(len(all_outputs))
        + b"".join(out.serialize() for out in all_outputs)
        + struct.pack("<I", 0)
    )
    return CoinbaseParts(coinb1, coinb2, extranonce_size, witness_commitment is not None)
