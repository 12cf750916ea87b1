"""Proof of work: hash functions and target <-> difficulty math per algorithm.

Hashes come out of the hash functions in internal byte order (little-endian when read
as a number), as Bitcoin Core computes them; :func:`hash_to_int` turns one into the
integer compared against a target.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

# Difficulty 1 for sha256d is the target encoded by nBits 0x1d00ffff ("pool difficulty 1").
SHA256D_DIFF1_TARGET = 0x00000000FFFF0000000000000000000000000000000000000000000000000000
# Scrypt miners and pools define share difficulty 1 as 2^16 times the sha256d target.
SCRYPT_DIFF1_TARGET = SHA256D_DIFF1_TARGET << 16
MAX_TARGET = (1 << 256) - 1


def sha256d(data: bytes) -> bytes:
    """Given bytes, return their double SHA-256 in internal byte order."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def scrypt_1024_1_1_256(header: bytes) -> bytes:
    """Given an 80-byte header, return Litecoin's PoW hash: scrypt(N=1024, r=1, p=1)
    with the header as both password and salt (internal byte order)."""
    return hashlib.scrypt(header, salt=header, n=1024, r=1, p=1, dklen=32)


def hash_to_int(hash_le: bytes) -> int:
    """Given a hash in internal byte order, return it as the number compared to targets."""
    return int.from_bytes(hash_le, "little")


@dataclass(frozen=True, slots=True)
class Algorithm:
    """A proof-of-work algorithm: its hash and the target of share difficulty 1."""

    name: str
    pow_hash: Callable[[bytes], bytes]
    diff1_target: int
    # scrypt hashing is ~300x slower than sha256d: its checks go to worker processes.
    slow: bool

    def difficulty_to_target(self, difficulty: float) -> int:
        """Given a share difficulty, return the target a hash must not exceed.

        >>> ALGORITHMS["sha256d"].difficulty_to_target(1) == SHA256D_DIFF1_TARGET
        True
        """
        return difficulty_to_target(difficulty, self.diff1_target)

    def target_to_difficulty(self, target: int) -> float:
        return target_to_difficulty(target, self.diff1_target)


ALGORITHMS: dict[str, Algorithm] = {
    "sha256d": Algorithm("sha256d", sha256d, SHA256D_DIFF1_TARGET, slow=False),
    "scrypt": Algorithm("scrypt", scrypt_1024_1_1_256, SCRYPT_DIFF1_TARGET, slow=True),
}


@functools.lru_cache(maxsize=4096)
def difficulty_to_target(difficulty: float, diff1_target: int) -> int:
    """Given a difficulty (> 0) and the algorithm's difficulty-1 target, return the target,
    exact for any float (computed from the float's exact fraction, then floored).

    Cached: sessions ask again for the same few difficulties on every share.
    """
    if not difficulty > 0 or difficulty == float("inf"):
        raise ValueError(f"difficulty must be positive and finite, got {difficulty!r}")
    exact = Fraction(difficulty)
    return min(MAX_TARGET, diff1_target * exact.denominator // exact.numerator)


def target_to_difficulty(target: int, diff1_target: int) -> float:
    """Given a target (> 0), return its difficulty for the algorithm's difficulty-1 target."""
    if target <= 0:
        raise ValueError(f"target must be positive, got {target!r}")
    return diff1_target / target


def bits_to_target(bits: int) -> int:
    """Given a compact nBits value, return the target it encodes, as Bitcoin Core's
    SetCompact does: a zero mantissa is target 0; a negative or overflowing one is refused.

    >>> hex(bits_to_target(0x1D00FFFF))
    '0xffff0000000000000000000000000000000000000000000000000000'
    """
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if mantissa and bits & 0x00800000:
        raise ValueError(f"negative compact target {bits:#010x}")
    if mantissa and (exponent > 34 or (mantissa > 0xFF and exponent > 33)
                     or (mantissa > 0xFFFF and exponent > 32)):
        raise ValueError(f"compact target {bits:#010x} overflows 256 bits")
    if exponent <= 3:
        return mantissa >> (8 * (3 - exponent))
    return mantissa << (8 * (exponent - 3))


def target_to_bits(target: int) -> int:
    """Given a target, return its compact nBits encoding (the inverse of bits_to_target
    for targets that compact form can hold exactly)."""
    if target <= 0:
        raise ValueError(f"target must be positive, got {target!r}")
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        mantissa = target << (8 * (3 - size))
    else:
        mantissa = target >> (8 * (size - 3))
    if mantissa & 0x00800000:
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa
