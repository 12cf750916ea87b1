"""Functional tests run against real litecoind regtest nodes.

Every test in this directory gets the ``functional`` marker. Without litecoind they are
skipped with the reason shown, except under CI=true, where a missing daemon must fail the
run rather than let it pass with nothing tested.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from multipool.chain.rpc import DaemonError
from multipool.devnet import REAL_BINARY, RegtestNetwork, find_litecoind

HERE = Path(__file__).resolve().parent
MISSING = (f"litecoind not found at {REAL_BINARY} (install the litecoind package, or set "
           "MULTIPOOL_LITECOIND to the real binary)")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    missing = find_litecoind() is None and not _in_ci()
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.functional)
            if missing:
                item.add_marker(pytest.mark.skip(reason=MISSING))


@pytest.fixture(scope="session")
def regtest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegtestNetwork]:
    """Two started regtest nodes, joined, with a loaded wallet "pool" on node 0.

    Shared by the whole session: tests may mine and restart nodes, but must leave both
    nodes running and connected (call ``regtest.connect()`` after a restart). The nodes
    are stopped at the end of the session, whatever the tests did.
    """
    if find_litecoind() is None:
        pytest.fail(f"CI=true and {MISSING}")  # only reached in CI: otherwise skipped
    with RegtestNetwork(tmp_path_factory.mktemp("regtest"), nodes=2) as network:
        yield network


def add_miners_wallet(network: RegtestNetwork) -> str:
    """Create (or load) a wallet "miners" on node 0, apart from the pool's, that miners'
    payout addresses come from; return its name."""
    node = network.nodes[0]
    if "miners" not in node.rpc("listwallets"):
        try:
            node.rpc("loadwallet", "miners")
        except DaemonError:  # not created yet
            node.rpc("createwallet", "miners")
    return "miners"
