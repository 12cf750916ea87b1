"""`multipool init` and `coin add|remove|list` in local mode through the CLI: what they
write, that a second run changes nothing, that an operator's edit of coin.toml is kept,
and that bad input is refused with file, key and reason before anything changes."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from typer.testing import CliRunner

import multipool.catalog
from multipool.cli.main import app
from multipool.config import CoinConfig, load_coin_config
from multipool.ops.daemon_conf import port_free

runner = CliRunner()


def cli(*args: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.output


def changes(*args: str) -> list[dict[str, str]]:
    return json.loads(cli(*args, "--json"))["changes"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "server"
    cli("init", "--root", str(root), "--mode", "local")
    return root


def add(root: Path, *extra: str) -> list[dict[str, str]]:
    return changes("coin", "add", "litecoin", "--network", "regtest", "--root", str(root),
                   *extra)


def test_two_coins_get_distinct_ports_and_their_own_tree(root: Path):
    add(root, "--prefix", "ltca")
    add(root, "--prefix", "ltcb")
    a = load_coin_config(root / "coin" / "ltca" / "coin.toml")
    b = load_coin_config(root / "coin" / "ltcb" / "coin.toml")

    def ports(c: CoinConfig) -> set[int | None]:
        return {urlsplit(c.daemon.rpc_url).port, c.daemon.p2p_port, c.daemon.onion_port,
                c.daemon.peer_rpc_port, c.stratum.ports[0].port}

    assert len(ports(a)) == len(ports(b)) == 5 and None not in ports(a) | ports(b)
    assert not ports(a) & ports(b)
    assert a.daemon.peer_p2p_port is None  # the companion listens nowhere
    assert a.daemon.rpc_password != b.daemon.rpc_password
    assert a.pool.state_dir == str(root / "pool" / "ltca")
    assert a.pool.database == f"sqlite:///{root / 'pool' / 'ltca' / 'pool.db'}"
    assert (root / "coin" / "ltca" / "litecoin.conf").resolve() == (
        root / "wallet" / "ltca" / "litecoin.conf")
    # Every listener pinned to the coin's own ports; the daemon and its companion meet
    # only each other (the daemon connects out to no one).
    conf = (root / "wallet" / "ltca" / "litecoin.conf").read_text().splitlines()
    assert {f"bind=127.0.0.1:{a.daemon.p2p_port}",
            f"bind=127.0.0.1:{a.daemon.onion_port}=onion", "listen=1", "listenonion=0",
            "connect=0", "dnsseed=0", "discover=0"} <= set(conf)
    assert [line for line in conf if line.startswith("bind=")] == [
        f"bind=127.0.0.1:{a.daemon.p2p_port}", f"bind=127.0.0.1:{a.daemon.onion_port}=onion"]
    peer_conf = (root / "wallet" / "ltca" / "peer" / "litecoin.conf").read_text().splitlines()
    assert {f"connect=127.0.0.1:{a.daemon.p2p_port}", "listen=0", "listenonion=0",
            "dnsseed=0", "discover=0"} <= set(peer_conf)
    assert not any(line.startswith(("bind=", "port=", "addnode=")) for line in peer_conf)
    listed = json.loads(cli("coin", "list", "--root", str(root), "--json"))
    assert [c["prefix"] for c in listed] == ["ltca", "ltcb"]


def test_a_port_in_use_is_skipped(root: Path):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert not port_free(port)
        result = runner.invoke(app, ["coin", "add", "litecoin", "--network", "regtest",
                                     "--root", str(root), "--stratum-port", str(port)])
        assert result.exit_code == 2
        assert f"error: --stratum-port: port {port} is in use" in result.output
        assert not (root / "coin" / "ltc").exists()  # nothing half-applied


def test_an_edit_of_coin_toml_is_kept_and_applied(root: Path):
    add(root, "--prefix", "ltc")
    coin_file = root / "coin" / "ltc" / "coin.toml"
    text = coin_file.read_text().replace("fee_percent = 1.0", "fee_percent = 2.5")
    config = load_coin_config(coin_file)
    old_p2p = config.daemon.p2p_port
    text = text.replace(f"p2p_port = {old_p2p}", "p2p_port = 45678")
    coin_file.write_text(text)
    # `coin add PREFIX` applies the edited coin.toml again (as its header says).
    again = changes("coin", "add", "ltc", "--root", str(root))
    # coin.toml is the source of truth: only the daemon config follows the edit.
    assert [c["target"] for c in again] == [str(root / "wallet" / "ltc" / "litecoin.conf"),
                                            str(root / "wallet" / "ltc" / "peer" /
                                                "litecoin.conf")]
    assert "fee_percent = 2.5" in coin_file.read_text()
    assert "port=45678" in (root / "wallet" / "ltc" / "litecoin.conf").read_text()
    assert add(root, "--prefix", "ltc") == []


def test_dry_run_changes_nothing(root: Path):
    output = json.loads(cli("coin", "add", "litecoin", "--network", "regtest", "--root",
                            str(root), "--dry-run", "--json"))
    assert output["dry_run"] and output["applied"] == 0 and output["changes"]
    assert not (root / "coin" / "ltc").exists()
    assert "dry run, nothing applied" in cli("coin", "add", "litecoin", "--network",
                                             "regtest", "--root", str(root), "--dry-run")


def test_dogecoin_daemon_config_has_no_sections(root: Path, tmp_path: Path):
    # The catalogue builds dogecoind from git, which a local install run as root refuses;
    # the operator's own copy of the definition takes an existing binary instead.
    text = (Path(multipool.catalog.__file__).parent / "dogecoin.toml").read_text()
    own = tmp_path / "dogecoin.toml"
    own.write_text(text.replace('source = "git"', 'source = "binary"')
                   .replace('binary = "src/dogecoind"', 'binary = "/bin/true"'))
    assert changes("coin", "add", str(own), "--network", "regtest", "--root", str(root))
    assert (root / "bin" / "doge" / "true").is_file()
    conf = (root / "wallet" / "doge" / "dogecoin.conf").read_text()
    assert "[regtest]" not in conf and "regtest=1" in conf and "rpcport=" in conf


def test_remove_keeps_the_wallet_unless_told(root: Path):
    add(root, "--prefix", "ltc")
    (root / "wallet" / "ltc" / "wallet.dat").write_text("keys")
    output = cli("coin", "remove", "ltc", "--root", str(root))
    assert f"kept {root / 'wallet' / 'ltc'} and {root / 'pool' / 'ltc'}" in " ".join(
        output.split())
    assert (root / "wallet" / "ltc" / "wallet.dat").read_text() == "keys"
    assert not (root / "coin" / "ltc").exists() and not (root / "bin" / "ltc").exists()
    add(root, "--prefix", "ltc")
    cli("coin", "remove", "ltc", "--root", str(root), "--delete-wallet")
    assert not (root / "wallet" / "ltc").exists() and not (root / "pool" / "ltc").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("coin", "add", "nocoin"),
     "error: unknown coin 'nocoin'; the catalogue has: bitcoin, dogecoin, litecoin, peercoin "
     "(or give the path of a coin definition file ending in .toml)"),
    (("coin", "add", "litecoin", "--prefix", "LTC!"),
     "error: --prefix: must be 1-16 lowercase letters and digits starting with a letter, "
     "got 'LTC!'"),
    (("coin", "add", "litecoin", "--network", "moon"),
     "error: --network: must be main, test or regtest, got 'moon'"),
    (("coin", "remove", "xyz"), "error: PREFIX: no coin with prefix 'xyz' (coins: none)"),
    (("run", "xyz"), "error: PREFIX: no coin 'xyz' on this server (coins: none)"),
    (("init", "--mode", "cloud"), "error: --mode: must be system or local, got 'cloud'"),
    (("start",), "error: start: systemd is not running on this host: use `multipool run`"),
])
def test_bad_input_is_refused_with_its_reason(root: Path, args: tuple[str, ...], message: str):
    if args == ("start",) and Path("/run/systemd/system").exists():
        pytest.skip("this host runs systemd: start would work")
    result = runner.invoke(app, [*args, "--root", str(root)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_bad_coin_file_names_file_key_and_reason(root: Path, tmp_path: Path):
    bad = tmp_path / "mycoin.toml"
    text = (Path(multipool.catalog.__file__).parent / "litecoin.toml").read_text()
    bad.write_text(text.replace('symbol = "LTC"', 'symbol = "LTC"\ncolour = "red"'))
    result = runner.invoke(app, ["coin", "add", str(bad), "--root", str(root)])
    assert result.exit_code == 2
    assert f"error: {bad}: coin.colour: unknown key" in " ".join(result.output.split())
    bad.write_text("[coin\n")
    result = runner.invoke(app, ["coin", "add", str(bad), "--root", str(root)])
    assert f"error: {bad}: not valid TOML" in " ".join(result.output.split())


def test_prefix_taken_by_another_coin_is_refused(root: Path):
    add(root, "--prefix", "x1")
    result = runner.invoke(app, ["coin", "add", "dogecoin", "--prefix", "x1", "--network",
                                 "regtest", "--root", str(root)])
    assert result.exit_code == 2
    assert ("coin.prefix: prefix 'x1' is taken by litecoin: choose another with --prefix"
            in " ".join(result.output.split()))


def test_commands_on_a_root_without_init(tmp_path: Path):
    result = runner.invoke(app, ["status", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert (f"no multipool.toml in {tmp_path}: run `multipool init --root {tmp_path}` first"
            in " ".join(result.output.split()))


def test_init_refuses_to_switch_mode(root: Path):
    result = runner.invoke(app, ["init", "--root", str(root), "--mode", "system"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    if "run as root" in text:  # not root: system mode is refused first
        assert "--mode: system mode creates users and installs packages" in text
    else:
        assert "server.mode: says mode 'local'; `init --mode system` would change it" in text


def test_a_failure_half_way_is_resumed_by_the_same_command(root: Path, monkeypatch):
    """The link step fails (as a full disk would): the changes before it stay, the error
    names the cause, and running the same command again does only what is left."""
    real_symlink_to = Path.symlink_to

    def failing_symlink_to(self, target, target_is_directory=False):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "symlink_to", failing_symlink_to)
    result = runner.invoke(app, ["coin", "add", "litecoin", "--network", "regtest",
                                 "--root", str(root)])
    assert result.exit_code == 1
    assert "No space left on device" in result.output
    coin_file = root / "coin" / "ltc" / "coin.toml"
    assert coin_file.exists()  # written before the failing step
    written = coin_file.read_text()
    monkeypatch.setattr(Path, "symlink_to", real_symlink_to)
    rest = add(root)
    assert rest and all(c["target"] != str(coin_file) for c in rest)
    assert coin_file.read_text() == written  # same ports and password as the first try
    assert add(root) == []


def test_an_existing_coin_keeps_its_network(root: Path):
    add(root, "--prefix", "ltc")
    result = runner.invoke(app, ["coin", "add", "litecoin", "--prefix", "ltc", "--network",
                                 "main", "--root", str(root)])
    assert result.exit_code == 2
    assert (f"error: {root / 'coin' / 'ltc' / 'coin.toml'}: coin.network: ltc was added for "
            "regtest, not main: edit this file or remove the coin first"
            in " ".join(result.output.split()))
    assert changes("coin", "add", "litecoin", "--prefix", "ltc", "--root", str(root)) == []


def test_a_missing_unit_directory_is_refused_before_any_change(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("system mode needs root")
    root = tmp_path / "server"
    result = runner.invoke(app, ["init", "--root", str(root), "--unit-dir",
                                 str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert (f"error: --unit-dir: {tmp_path / 'nowhere'} is not a directory"
            in " ".join(result.output.split()))
    assert not root.exists()


def test_status_reads_a_stopped_pools_database_without_creating_files(root: Path):
    """status may run as root: a -wal or -shm it left beside pool.db would belong to
    root and lock the pool user out."""
    import asyncio

    from sqlalchemy import insert, select

    from multipool.accounting.database import create_engine
    from multipool.accounting.migrate import upgrade
    from multipool.accounting.schema import balances
    from multipool.ops.status import read_only_sqlite_url

    add(root, "--prefix", "ltc")
    database = root / "pool" / "ltc" / "pool.db"

    async def prepare() -> None:
        engine = create_engine(f"sqlite:///{database}")
        try:
            await upgrade(engine)
            async with engine.begin() as connection:
                await connection.execute(insert(balances).values(address="m1", amount=1234))
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    before = sorted(p.name for p in database.parent.iterdir())
    assert before == ["pool.db"]  # the engine is stopped: no -wal, no -shm
    coins = json.loads(cli("status", "--root", str(root), "--json"))
    assert coins[0]["unpaid"] == 1234 and coins[0]["database_error"] is None
    assert sorted(p.name for p in database.parent.iterdir()) == before

    async def files_while_reading(url: str) -> list[str]:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.execute(select(balances.c.amount))
                return sorted(p.name for p in database.parent.iterdir())
        finally:
            await engine.dispose()

    # While status reads, nothing appears beside the database (a plain connection, the
    # control, makes its -wal and -shm at once).
    assert asyncio.run(files_while_reading(read_only_sqlite_url(database))) == before
    assert asyncio.run(files_while_reading(f"sqlite:///{database}")) != before


# --- options of `coin add`: checked, never ignored ---------------------------------------

def one_line(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.parametrize("port", ["99999", "65536", "-5", "0"])
def test_a_stratum_port_out_of_range_is_refused_with_a_message(root: Path, port: str):
    result = runner.invoke(app, ["coin", "add", "litecoin", "--network", "regtest", "--root",
                                 str(root), f"--stratum-port={port}"])
    assert result.exit_code == 2, result.output
    assert (f"error: --stratum-port: must be a port number from 1 to 65535, got {int(port)}"
            in one_line(result.output))
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert not (root / "coin" / "ltc").exists()


def test_a_privileged_stratum_port_is_refused_where_the_engine_runs_unprivileged(tmp_path: Path):
    """System mode: the engine runs as its pool user without capabilities (checked on the
    function: a system install needs users, see test_system_mode)."""
    from multipool.errors import ConfigError
    from multipool.ops.coins import check_stratum_port, unprivileged_port_start
    from multipool.ops.layout import Layout

    lowest = unprivileged_port_start()
    if lowest <= 1:
        pytest.skip("this host lets anyone listen on any port")
    with pytest.raises(ConfigError, match=f"port {lowest - 1} is below {lowest}: the pool "
                                          "engine runs as its pool user"):
        check_stratum_port(Layout(tmp_path, "system"), lowest - 1)
    check_stratum_port(Layout(tmp_path, "system"), lowest)  # no error


def test_options_that_disagree_with_an_existing_coin_are_refused_saying_what_to_edit(
        root: Path):
    add(root, "--prefix", "ltc")
    coin_file = root / "coin" / "ltc" / "coin.toml"
    port = load_coin_config(coin_file).stratum.ports[0].port
    before = coin_file.read_text()
    cases = {
        ("--stratum-port", "4444"): (f"{coin_file}: --stratum-port: ltc exists, with stratum "
                                     f"port {port} (the options of `coin add` only shape a "
                                     "new coin): to change it, set the port in [stratum] "
                                     "ports (port = 4444) in this file, then run "
                                     "`multipool coin add ltc`"),
        ("--address", "rltc1qexample"): (f"{coin_file}: --address: ltc exists, with no "
                                         "address, so that the engine takes one from the "
                                         "pool wallet (the options of `coin add` only shape "
                                         'a new coin): to change it, set address = '
                                         '"rltc1qexample" under [pool] in this file'),
    }
    for (option, value), message in cases.items():
        for coin in ("litecoin", "ltc"):  # by catalogue name or by prefix
            result = runner.invoke(app, ["coin", "add", coin, option, value, "--root",
                                         str(root)])
            assert result.exit_code == 2, result.output
            assert f"error: {message}" in one_line(result.output)
    assert coin_file.read_text() == before
    # The same values as coin.toml's are no change at all.
    assert changes("coin", "add", "ltc", "--stratum-port", str(port), "--network", "regtest",
                   "--root", str(root)) == []


def test_a_definition_given_for_an_existing_coin_is_said_to_be_unused(root: Path):
    add(root, "--prefix", "ltc")
    output = one_line(cli("coin", "add", "litecoin", "--root", str(root)))
    assert "nothing to change" in output
    assert (f"note: ltc was added before: its {root / 'coin' / 'ltc' / 'coin.toml'} was "
            "applied; the definition 'litecoin' only shapes a new coin") in output
    assert "note:" not in cli("coin", "add", "ltc", "--root", str(root))


@pytest.mark.parametrize("edit", ["repeat", "other coin"])
def test_an_edit_that_shares_a_port_is_refused(root: Path, edit: str):
    add(root, "--prefix", "ltca")
    add(root, "--prefix", "ltcb")
    a = load_coin_config(root / "coin" / "ltca" / "coin.toml")
    b_file = root / "coin" / "ltcb" / "coin.toml"
    b = load_coin_config(b_file)
    if edit == "repeat":
        wanted, message = b.daemon.p2p_port, (
            f"{b_file}: daemon.onion_port: port {b.daemon.p2p_port} is also "
            "daemon.p2p_port: every listener needs a port of its own")
    else:
        wanted, message = a.daemon.p2p_port, (
            f"{b_file}: daemon.onion_port: port {a.daemon.p2p_port} is daemon.p2p_port of "
            f"coin 'ltca'")
    b_file.write_text(b_file.read_text().replace(f"onion_port = {b.daemon.onion_port}",
                                                 f"onion_port = {wanted}"))
    result = runner.invoke(app, ["coin", "add", "ltcb", "--root", str(root)])
    assert result.exit_code == 2, result.output
    assert f"error: {message}" in one_line(result.output)
