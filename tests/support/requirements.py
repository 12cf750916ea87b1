"""The rule for what a test needs from the machine: skip with the reason when it is
missing, but fail under CI=true, where `make setup` installed everything and a skip
would let the run pass with nothing tested."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str, fix: str = "run `make setup`") -> None:
    """Skip (or in CI fail) the test: ``what`` is not installed."""
    reason = f"{what} is not installed: {fix}"
    if in_ci():
        pytest.fail(f"{reason} (CI must not skip this test)")
    pytest.skip(reason)
