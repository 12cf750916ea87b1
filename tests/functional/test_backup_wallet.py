"""`multipool backup` against a real litecoind: the wallet in the archive is the pool's
wallet (loaded into the other node, it owns an address of the original), next to the
coin's config and a SQLite copy with the shares written before the run.

Local mode (the daemon runs as the caller): the daemon writes its copy into a staging
directory under backup/, deleted with it. System mode: into its own datadir
(wallet/<prefix>/), where the copy stays, owned by the daemon's user."""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path

from multipool.devnet import RegtestNetwork, RegtestNode, free_port, regtest_coin_data
from multipool.ops.backup import WALLET_COPY, backup_server
from multipool.ops.layout import Layout
from tests.ops.test_backup import (
    add_coin,
    local_server,
    members,
    multipool,
    pool_database,
    sqlite_count,
)


def _wallets_dir(node: RegtestNode) -> Path:
    chain = node.datadir / "regtest"
    return chain / "wallets" if (chain / "wallets").is_dir() else chain


def assert_is_the_pool_wallet(node: RegtestNode, wallet_bytes: bytes, address: str) -> None:
    """Load the backed-up wallet into ``node`` (another daemon than the pool's) and check
    that it owns ``address``, made by the pool's wallet before the backup."""
    name = "restored-" + secrets.token_hex(4)
    directory = _wallets_dir(node) / name
    directory.mkdir()
    (directory / "wallet.dat").write_bytes(wallet_bytes)
    node.rpc("loadwallet", name)
    try:
        info = node.rpc("getaddressinfo", address, wallet=name)
        assert info["ismine"] is True
        assert node.rpc("getwalletinfo", wallet=name)["walletname"] == name
    finally:
        node.rpc("unloadwallet", name)


def _coin(regtest: RegtestNetwork, layout: Layout) -> tuple[str, str]:
    """A coin.toml for the regtest pool on node 0 with its SQLite database in
    pool/ltc/; return the database URL and a fresh address of the pool wallet."""
    node = regtest.nodes[0]
    address = node.rpc("getnewaddress", wallet=regtest.wallet)
    pool_dir = layout.pool_dir("ltc")
    url = f"sqlite:///{pool_dir / 'pool.db'}"
    data = regtest_coin_data(node, address=address, port=free_port(), difficulty=0.05,
                             state_dir=str(pool_dir), database=url)
    add_coin(layout, "ltc", data=data)
    return url, address


def test_local_backup_has_a_loadable_wallet_and_the_shares(regtest: RegtestNetwork,
                                                           tmp_path: Path):
    layout = local_server(tmp_path)
    url, address = _coin(regtest, layout)
    pool_database(url, 12)
    # The daemon config, where `coin add` puts it (here: a copy of the node's).
    conf = layout.wallet_dir("ltc") / "litecoin.conf"
    conf.parent.mkdir(parents=True, mode=0o700)
    conf.write_bytes((regtest.nodes[0].datadir / "litecoin.conf").read_bytes())
    pool_files = sorted(p.name for p in layout.pool_dir("ltc").iterdir())

    result = multipool("backup", "--root", str(layout.root), "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["errors"] == []
    archive = Path(report["archive"])
    assert archive.stat().st_size == report["size"]
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    found = members(archive)
    assert set(found) == {"multipool.toml", "manifest.json", "ltc/coin.toml",
                          "ltc/litecoin.conf", "ltc/wallet.dat", "ltc/database.sqlite"}
    assert found["ltc/coin.toml"] == layout.coin_file("ltc").read_bytes()
    assert found["ltc/litecoin.conf"] == conf.read_bytes()
    [coin] = report["coins"]
    assert {p["name"]: p["size"] for p in coin["parts"]}["ltc/wallet.dat"] == len(
        found["ltc/wallet.dat"])
    assert_is_the_pool_wallet(regtest.nodes[1], found["ltc/wallet.dat"], address)
    assert sqlite_count(found["ltc/database.sqlite"], tmp_path) == 12
    # Nothing left behind: no wallet copy, no staging directory, no file beside the db.
    assert sorted(p.name for p in layout.backup.iterdir()) == [".lock", archive.name]
    assert not (layout.wallet_dir("ltc") / WALLET_COPY).exists()
    assert sorted(p.name for p in layout.pool_dir("ltc").iterdir()) == pool_files


def test_system_mode_wallet_copy_goes_to_the_daemons_datadir(regtest: RegtestNetwork,
                                                             tmp_path: Path):
    """In system mode the daemon may write only its datadir, wallet/<prefix>/: here a
    link to the node's datadir stands in for it."""
    local = local_server(tmp_path)
    layout = Layout(local.root, "system")
    url, address = _coin(regtest, layout)
    pool_database(url, 3)
    node = regtest.nodes[0]
    layout.wallet_dir("ltc").parent.mkdir(parents=True, exist_ok=True)
    layout.wallet_dir("ltc").symlink_to(node.datadir)
    copy = node.datadir / WALLET_COPY
    copy.unlink(missing_ok=True)
    try:
        report = backup_server(layout)
        assert report.ok, report.errors
        found = members(report.archive)
        assert copy.is_file(), "the copy stays in the datadir, owned by the daemon's user"
        assert found["ltc/wallet.dat"] == copy.read_bytes()
        assert_is_the_pool_wallet(regtest.nodes[1], found["ltc/wallet.dat"], address)
        assert sqlite_count(found["ltc/database.sqlite"], tmp_path) == 3
    finally:
        copy.unlink(missing_ok=True)
