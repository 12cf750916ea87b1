"""Fixtures of the web server tests (tests/ops/proxies.py holds the helpers)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ops.proxies import Upstream, serve_upstream


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """A tiny HTTP server standing in for the web process, recording what it is told."""
    with serve_upstream() as record:
        yield record
