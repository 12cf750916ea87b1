"""The coinbase transaction a pool builds, split around the miner's extranonce.

Stratum V1 hands miners ``coinb1`` and ``coinb2``; the miner puts
``extranonce1 + extranonce2`` between them to get the coinbase in its non-witness
serialization (the form whose hash is the txid). The full block carries the same
transaction with its witness (the 32-byte witness reserved value) when the block
commits to witnesses. :func:`read_coinbase` reads a block's coinbase back, to tell the
pool's blocks on the chain from others.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from multipool.chain.serialize import compact_size, push_data, push_int, read_compact_size
from multipool.errors import SerializationError

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


@dataclass(frozen=True, slots=True)
class CoinbaseView:
    """What a block's coinbase says about who made the block: its scriptSig (height,
    extranonce, the pool's tag) and its outputs."""

    script_sig: bytes
    outputs: tuple[TxOut, ...]

    def carries(self, pool_tag: bytes) -> bool:
        """True when the scriptSig holds the push of ``pool_tag`` (as the pool writes it)."""
        return bool(pool_tag) and push_data(pool_tag) in self.script_sig

    def paid_to(self, script: bytes) -> int:
        """The coinbase value, in the smallest unit, paid to ``script``."""
        return sum(out.value for out in self.outputs if out.script == script)


def read_coinbase(block: bytes) -> CoinbaseView:
    """Given a serialized block (header, transaction count, transactions), return its
    coinbase's scriptSig and outputs; the rest of the block is not read.

    Raises SerializationError for a block that ends early or whose first transaction is
    not a coinbase.
    """
    def take(offset: int, size: int) -> tuple[bytes, int]:
        if offset + size > len(block):
            raise SerializationError(f"block ends at {len(block)} bytes, inside its coinbase")
        return block[offset:offset + size], offset + size

    if len(block) < 81:
        raise SerializationError(f"a block is a header and transactions, got {len(block)} "
                                 "bytes")
    count, offset = read_compact_size(block, 80)
    if count < 1:
        raise SerializationError("block without transactions")
    offset += 4  # version
    marker, _ = take(offset, 2)
    if marker[0] == 0:  # segwit (and MWEB) serialization: marker 0x00, then a flag byte
        offset += 2
    inputs, offset = read_compact_size(block, offset)
    prevout, offset = take(offset, 36)
    if inputs != 1 or prevout != _NULL_PREVOUT:
        raise SerializationError("the first transaction of the block is not a coinbase")
    length, offset = read_compact_size(block, offset)
    script_sig, offset = take(offset, length)
    offset += 4  # sequence
    outputs = []
    out_count, offset = read_compact_size(block, offset)
    for _ in range(out_count):
        value_bytes, offset = take(offset, 8)
        length, offset = read_compact_size(block, offset)
        script, offset = take(offset, length)
        outputs.append(TxOut(struct.unpack("<q", value_bytes)[0], script))
    return CoinbaseView(script_sig, tuple(outputs))
