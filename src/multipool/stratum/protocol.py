"""Stratum V1 error codes, the protocol error type and argument checkers."""

from __future__ import annotations

from typing import Any

# The codes every stratum miner understands.
OTHER = 20
JOB_NOT_FOUND = 21
DUPLICATE = 22
LOW_DIFFICULTY = 23
UNAUTHORIZED = 24
NOT_SUBSCRIBED = 25

# Each code as one word, for counters and metrics labels.
REASONS = {OTHER: "other", JOB_NOT_FOUND: "stale", DUPLICATE: "duplicate",
           LOW_DIFFICULTY: "low_difficulty", UNAUTHORIZED: "unauthorized",
           NOT_SUBSCRIBED: "not_subscribed"}


class StratumError(Exception):
    """A request refused with a stratum error code; sent back as [code, message, null]."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def to_json(self) -> list[Any]:
        return [self.code, self.message, None]


def hex_bytes(value: object, name: str, *, size: int | None = None) -> bytes:
    """Given a submitted field, return its bytes if it is a hex string of ``size`` bytes."""
    if not isinstance(value, str):
        raise StratumError(OTHER, f"{name} must be a hex string")
    if size is not None and len(value) != 2 * size:
        raise StratumError(OTHER, f"incorrect size of {name}: expected {size} bytes")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise StratumError(OTHER, f"{name} is not hex") from None


def string_param(params: list[Any], index: int, name: str, *, max_len: int = 256) -> str:
    """Given request params, return the string at ``index`` or raise naming it."""
    if index >= len(params) or not isinstance(params[index], str):
        raise StratumError(OTHER, f"{name} must be a string")
    value: str = params[index]
    if len(value) > max_len:
        raise StratumError(OTHER, f"{name} is longer than {max_len} characters")
    return value


def positive_number(value: object, name: str) -> float:
    """Given a client-supplied number, return it as float if finite and > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StratumError(OTHER, f"{name} must be a number")
    number = float(value)
    if not 0 < number < float("inf"):
        raise StratumError(OTHER, f"{name} must be a positive number")
    return number
