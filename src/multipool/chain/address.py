"""Payout addresses: turn an address string into the scriptPubKey a coinbase pays to.

Base58Check (P2PKH, P2SH) and segwit bech32 / bech32m (BIP173, BIP350) are decoded with
the standard library alone, so a pool refuses a mistyped or wrong-network address when it
loads its configuration instead of mining blocks that pay nobody it knows.
"""

from __future__ import annotations

import hashlib
from enum import Enum

from multipool.chain.networks import NETWORKS, NetworkParams
from multipool.errors import AddressError

__all__ = [
    "Bech32Variant",
    "address_to_script",
    "decode_base58check",
    "decode_bech32",
    "encode_segwit_address",
    "validate_address",
]

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_VALUES = {c: i for i, c in enumerate(_B58_ALPHABET)}
# Far above any real Base58Check string (an xpub is 111 characters); it bounds the
# quadratic big-integer work a junk value in a config file could cause.
_B58_MAX_LEN = 200

_BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_VALUES = {c: i for i, c in enumerate(_BECH32_CHARSET)}
_BECH32_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_BECH32_MAX_LEN = 90
_CHECKSUM_CHARS = 6

_HASH160_LEN = 20


class Bech32Variant(Enum):
    """The checksum a bech32 string satisfies; the value is the constant it XORs in."""

    BECH32 = 1
    BECH32M = 0x2BC830A3


def _reject(text: str, reason: str) -> AddressError:
    return AddressError(f"address {text!r} {reason}")


def decode_base58check(text: str) -> bytes:
    """Given a Base58Check string, return its payload (version byte and body) once the
    4-byte double-SHA256 checksum has been verified and stripped."""
    if len(text) > _B58_MAX_LEN:
        raise _reject(text[:20] + "...", f"is too long: {len(text)} characters")
    number = 0
    for i, char in enumerate(text):
        value = _B58_VALUES.get(char)
        if value is None:
            raise _reject(text, f"has {char!r} at position {i}, which is not a base58 character")
        number = number * 58 + value
    # Each leading '1' stands for a zero byte that the integer value cannot carry.
    zeros = len(text) - len(text.lstrip("1"))
    raw = bytes(zeros) + number.to_bytes((number.bit_length() + 7) // 8, "big")
    if len(raw) < 5:
        raise _reject(text, "is too short for a Base58Check string")
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise _reject(text, "has a bad checksum")
    return payload


def _polymod(values: list[int]) -> int:
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i, generator in enumerate(_BECH32_GENERATOR):
            if (top >> i) & 1:
                chk ^= generator
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def decode_bech32(text: str) -> tuple[str, list[int], Bech32Variant]:
    """Given a bech32 or bech32m string, return (lower-case hrp, 5-bit data values without
    the checksum, variant), refusing everything BIP173 and BIP350 refuse."""
    for i, char in enumerate(text):
        if not 33 <= ord(char) <= 126:
            raise _reject(text, f"has {char!r} at position {i}, outside printable ASCII")
    if len(text) > _BECH32_MAX_LEN:
        raise _reject(text, f"is too long: {len(text)} characters, at most {_BECH32_MAX_LEN}")
    # The checksum covers the lower-case form, so a mixed-case string has no single meaning.
    if text != text.lower() and text != text.upper():
        raise _reject(text, "has mixed case")
    lowered = text.lower()
    separator = lowered.rfind("1")
    if separator == -1:
        raise _reject(text, "has no '1' separator")
    if separator == 0:
        raise _reject(text, "has an empty human-readable part")
    if len(lowered) - separator - 1 < _CHECKSUM_CHARS:
        raise _reject(text, f"has a checksum shorter than {_CHECKSUM_CHARS} characters")
    hrp = lowered[:separator]
    data: list[int] = []
    for i in range(separator + 1, len(lowered)):
        value = _BECH32_VALUES.get(lowered[i])
        if value is None:
            raise _reject(text, f"has {text[i]!r} at position {i}, which is not a bech32 character")
        data.append(value)
    residue = _polymod(_hrp_expand(hrp) + data)
    for variant in Bech32Variant:
        if residue == variant.value:
            return hrp, data[:-_CHECKSUM_CHARS], variant
    raise _reject(text, "has a bad checksum")


def encode_segwit_address(hrp: str, version: int, program: bytes) -> str:
    """Given a bech32 prefix, a witness version and program, return the segwit address
    (bech32 for version 0, bech32m above: BIP173, BIP350). Used to make payout addresses
    for tests and benchmarks; the pool itself only ever reads addresses.

    >>> encode_segwit_address("bc", 0, bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6"))
    'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4'
    """
    if not 0 <= version <= 16:
        raise ValueError(f"witness version must be 0..16, got {version}")
    acc = bits = 0
    data = [version]
    for byte in program:
        acc = (acc << 8) | byte
        bits += 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    constant = (Bech32Variant.BECH32 if version == 0 else Bech32Variant.BECH32M).value
    checksum = _polymod(_hrp_expand(hrp) + data + [0] * _CHECKSUM_CHARS) ^ constant
    data += [(checksum >> 5 * (_CHECKSUM_CHARS - 1 - i)) & 31 for i in range(_CHECKSUM_CHARS)]
    return hrp + "1" + "".join(_BECH32_CHARSET[d] for d in data)


def _regroup_5_to_8(text: str, groups: list[int]) -> bytes:
    acc = 0
    bits = 0
    out = bytearray()
    for group in groups:
        acc = ((acc << 5) | group) & 0xFFF
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    # BIP173 allows at most 4 padding bits and they must be zero; anything else is a
    # corrupted or non-canonical encoding of some other program.
    if bits >= 5 or acc & ((1 << bits) - 1):
        raise _reject(text, "has invalid padding in its witness program")
    return bytes(out)


def _segwit_script(text: str, data: list[int], variant: Bech32Variant) -> bytes:
    if not data:
        raise _reject(text, "has an empty data part: no witness version")
    version = data[0]
    if version > 16:
        raise _reject(text, f"has witness version {version}, at most 16")
    program = _regroup_5_to_8(text, data[1:])
    if not 2 <= len(program) <= 40:
        raise _reject(text, f"has a witness program of {len(program)} bytes, expected 2 to 40")
    if version == 0 and len(program) not in (20, 32):
        raise _reject(
            text, f"has a version 0 witness program of {len(program)} bytes, expected 20 or 32"
        )
    # BIP350: v0 keeps bech32 while v1+ need bech32m, so old v0-only wallets cannot
    # silently send to a v1+ string with an insertion error.
    expected = Bech32Variant.BECH32 if version == 0 else Bech32Variant.BECH32M
    if variant is not expected:
        raise _reject(
            text,
            f"has the wrong checksum variant: witness version {version} needs "
            f"{expected.name.lower()}, got {variant.name.lower()}",
        )
    opcode = 0x50 + version if version else 0x00
    return bytes((opcode, len(program))) + program


def _wrong_hrp(hrp: str, params: NetworkParams) -> str:
    owners = [p.name for p in NETWORKS.values() if p.bech32_hrp == hrp]
    owned = f" ({', '.join(owners)})" if owners else ""
    if params.bech32_hrp is None:
        return f"is a segwit address{owned}, and {params.name} has no segwit addresses"
    return (
        f"is for another network: expected prefix {params.bech32_hrp!r}, got {hrp!r}{owned}"
    )


def _base58_script(text: str, payload: bytes, params: NetworkParams) -> bytes:
    if len(payload) != 1 + _HASH160_LEN:
        # Not echoed whole: a 33- or 34-byte payload is usually a WIF private key pasted
        # into the address field, and this message ends up in logs.
        raise AddressError(
            f"address {text[:4] + '...'!r} decodes to {len(payload)} bytes, not the 21 of a "
            "P2PKH or P2SH address (not shown in full: it may be a private key)"
        )
    version, body = payload[0], payload[1:]
    if version in params.p2pkh_prefixes:
        return b"\x76\xa9\x14" + body + b"\x88\xac"
    if version in params.p2sh_prefixes:
        return b"\xa9\x14" + body + b"\x87"
    reason = f"unknown version byte 0x{version:02x} for {params.name}"
    users = [
        f"{p.name} {kind}"
        for p in NETWORKS.values()
        for kind, prefixes in (("P2PKH", p.p2pkh_prefixes), ("P2SH", p.p2sh_prefixes))
        if version in prefixes
    ]
    if users:
        raise _reject(text, f"is for another network: {reason}, used by {', '.join(users)}")
    raise _reject(text, f"has {reason}")


def _choose_error(
    text: str, params: NetworkParams, base58_error: AddressError, bech32_error: AddressError
) -> AddressError:
    """Given a string that is neither valid Base58Check nor valid bech32, return the error
    that best explains what the operator typed."""
    separator = text.rfind("1")
    candidate_hrp = text[:separator].lower() if separator > 0 else None
    if candidate_hrp is not None and candidate_hrp == params.bech32_hrp:
        return bech32_error
    if candidate_hrp is not None and any(p.bech32_hrp == candidate_hrp for p in NETWORKS.values()):
        return _reject(text, _wrong_hrp(candidate_hrp, params))
    # bech32 strings are all one case; base58 addresses almost never are.
    single_case = text in (text.lower(), text.upper())
    return bech32_error if single_case and separator > 0 else base58_error


def address_to_script(address: str, params: NetworkParams) -> bytes:
    """Given an address and the network it must belong to, return its scriptPubKey:
    P2PKH, P2SH, or a witness program (P2WPKH, P2WSH, P2TR and later versions).

    Raise AddressError naming the address and the reason when it is malformed or belongs
    to another coin or network.
    """
    if not isinstance(address, str):
        raise AddressError(f"address must be a string, got {type(address).__name__}")
    if not address:
        raise AddressError("address is empty")
    # Same order as the daemons' DecodeDestination: Base58Check first, then bech32.
    try:
        payload = decode_base58check(address)
    except AddressError as err:
        base58_error = err
    else:
        return _base58_script(address, payload, params)
    try:
        hrp, data, variant = decode_bech32(address)
    except AddressError as err:
        raise _choose_error(address, params, base58_error, err) from None
    if hrp != params.bech32_hrp:
        raise _reject(address, _wrong_hrp(hrp, params))
    return _segwit_script(address, data, variant)


def validate_address(address: str, params: NetworkParams) -> None:
    """Given an address and a network, return None if a coinbase could pay it, else raise
    AddressError naming the reason."""
    address_to_script(address, params)
