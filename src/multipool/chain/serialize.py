"""Bitcoin wire serialization primitives: compact sizes, pushes, byte-order helpers.

Naming follows the byte-order convention of the whole chain package: ``_hex`` is the
display order a daemon prints (reversed), ``_le`` is internal order as hashed.
"""

from __future__ import annotations

import struct

from multipool.errors import SerializationError


def compact_size(n: int) -> bytes:
    """Given a count, return its CompactSize (varint) encoding.

    >>> compact_size(252).hex(), compact_size(253).hex()
    ('fc', 'fdfd00')
    """
    if n < 0:
        raise ValueError(f"compact size must be non-negative, got {n}")
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


def read_compact_size(data: bytes, offset: int) -> tuple[int, int]:
    """Given bytes and an offset, return (value, new offset) of the CompactSize there."""
    try:
        first = data[offset]
        if first < 0xFD:
            return first, offset + 1
        size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        if offset + 1 + size > len(data):
            raise IndexError
        value = int.from_bytes(data[offset + 1 : offset + 1 + size], "little")
    except IndexError:
        raise SerializationError(f"truncated compact size at offset {offset}") from None
    return value, offset + 1 + size


def push_data(data: bytes) -> bytes:
    """Given bytes, return the script opcode sequence that pushes them."""
    n = len(data)
    if n < 0x4C:
        return bytes((n,)) + data
    if n <= 0xFF:
        return b"\x4c" + bytes((n,)) + data
    if n <= 0xFFFF:
        return b"\x4d" + struct.pack("<H", n) + data
    return b"\x4e" + struct.pack("<I", n) + data


def push_int(n: int) -> bytes:
    """Given a non-negative script number, return its minimal push (OP_0, OP_1..OP_16, or
    a little-endian sign-magnitude push), as BIP34 requires for the coinbase height.

    >>> push_int(0).hex(), push_int(16).hex(), push_int(17).hex(), push_int(128).hex()
    ('00', '60', '0111', '028000')
    """
    if n < 0:
        raise ValueError(f"script number must be non-negative here, got {n}")
    if n == 0:
        return b"\x00"
    if n <= 16:
        return bytes((0x50 + n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "little")
    if body[-1] & 0x80:
        body += b"\x00"
    return push_data(body)


def hex_to_bytes(value: object, what: str) -> bytes:
    """Given a hex string from outside, return its bytes or raise naming what it was."""
    if not isinstance(value, str):
        raise SerializationError(f"{what}: expected a hex string, got {type(value).__name__}")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise SerializationError(f"{what}: not valid hex: {value[:40]!r}") from None


def hex_to_le(value_hex: object, what: str = "hash") -> bytes:
    """Given a 32-byte hash in display hex, return it in internal byte order."""
    raw = hex_to_bytes(value_hex, what)
    if len(raw) != 32:
        raise SerializationError(f"{what}: expected 32 bytes, got {len(raw)}")
    return raw[::-1]


def le_to_hex(hash_le: bytes) -> str:
    """Given a hash in internal byte order, return its display hex."""
    return hash_le[::-1].hex()
