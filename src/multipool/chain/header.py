"""The 80-byte block header and its Stratum V1 field encodings.

Stratum V1 sends header fields as hex of big-endian 32-bit words (the way the first
GPU miners swapped the whole header before hashing). These helpers are the one place
that knows the mapping, used by the pool and by the test miner alike.
"""

from __future__ import annotations

import struct

from multipool.errors import SerializationError

HEADER_SIZE = 80
_HEADER = struct.Struct("<I32s32sIII")
assert _HEADER.size == HEADER_SIZE


def build_header(
    version: int, prev_hash_le: bytes, merkle_root_le: bytes, ntime: int, bits: int, nonce: int
) -> bytes:
    """Given the header fields (hashes in internal byte order), return the 80 header bytes."""
    return _HEADER.pack(version, prev_hash_le, merkle_root_le, ntime, bits, nonce)


def parse_header(header: bytes) -> tuple[int, bytes, bytes, int, int, int]:
    """Given 80 header bytes, return (version, prev_hash_le, merkle_root_le, ntime, bits,
    nonce)."""
    if len(header) != HEADER_SIZE:
        raise SerializationError(f"a header is {HEADER_SIZE} bytes, got {len(header)}")
    version, prev, root, ntime, bits, nonce = _HEADER.unpack(header)
    return version, prev, root, ntime, bits, nonce


def swap_words(data: bytes) -> bytes:
    """Given bytes whose length is a multiple of 4, return them with each 4-byte word
    reversed."""
    if len(data) % 4:
        raise SerializationError(f"length {len(data)} is not a multiple of 4")
    return b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))


def prevhash_to_stratum(prev_hash_le: bytes) -> str:
    """Given the previous block hash in internal order, return mining.notify's prevhash."""
    return swap_words(prev_hash_le).hex()


def prevhash_from_stratum(prevhash: str) -> bytes:
    """Given mining.notify's prevhash, return the previous block hash in internal order."""
    return swap_words(bytes.fromhex(prevhash))


def u32_to_stratum(value: int) -> str:
    """Given a 32-bit field (version, nbits, ntime, nonce), return its stratum hex."""
    return f"{value:08x}"


def u32_from_stratum(value: str, what: str) -> int:
    """Given a stratum hex field of exactly 8 digits, return its value or raise naming it."""
    if not isinstance(value, str) or len(value) != 8:
        raise SerializationError(f"{what} must be 8 hex digits")
    try:
        return int(value, 16)
    except ValueError:
        raise SerializationError(f"{what} is not hex") from None
