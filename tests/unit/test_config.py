"""Coin config loading: every rule refuses bad input with file, key and reason."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from multipool.config import load_coin_config, to_coins, to_units
from multipool.devnet import write_coin_file
from multipool.errors import ConfigError

# Addresses and scripts as printed by litecoind 0.21.2 (getnewaddress / validateaddress);
# the mainnet address is the same witness program encoded with the BIP173 reference code.
REGTEST_BECH32 = "rltc1q6hnhkmvc0ls0vcjahd9wcau8x37s03mnaez28g"
REGTEST_BECH32_SCRIPT = "0014d5e77b6d987fe0f6625dbb4aec7787347d07c773"
REGTEST_LEGACY = "n44g6KER7Cx8gNPoLjBUDnXg8qUV37rXhG"

VALID = f"""
[coin]
name = "litecoin"
prefix = "ltc"
symbol = "LTC"
algorithm = "scrypt"
network = "regtest"

[daemon]
rpc_url = "http://127.0.0.1:19443"
rpc_user = "pool"
rpc_password = "secret"
wallet = "pool"

[stratum]
host = "127.0.0.1"
ports = [ {{ port = 3333, difficulty = 0.05, vardiff = true }},
          {{ port = 3334, difficulty = 4, vardiff = false }} ]

[pool]
address = "{REGTEST_BECH32}"
fee_address = "{REGTEST_LEGACY}"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "coin.toml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_defaults(tmp_path: Path):
    config = load_coin_config(write(tmp_path, VALID))
    assert config.coin.prefix == "ltc" and config.coin.algorithm == "scrypt"
    assert config.payout_script.hex() == REGTEST_BECH32_SCRIPT
    assert [p.port for p in config.stratum.ports] == [3333, 3334]
    assert config.stratum.ports[1].vardiff is False
    assert config.daemon.template_rules == ("mweb", "segwit")
    assert config.pool.scheme == "pplns" and config.pool.fee_percent == 1.0
    assert "secret" not in repr(config)


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        ('algorithm = "scrypt"', 'algorithm = "x11"', "coin.algorithm", "must be one of"),
        ('prefix = "ltc"', 'prefix = "LTC!"', "coin.prefix", "lowercase"),
        ('network = "regtest"', 'network = "moon"', "coin.network", "must be one of"),
        ('name = "litecoin"', 'name = "nocoin"', "coin.name", "nocoin"),
        ('rpc_url = "http://127.0.0.1:19443"', 'rpc_url = "ftp://x"', "daemon.rpc_url",
         "http://"),
        ('rpc_password = "secret"', "", "daemon.rpc_user", "rpc_cookie"),
        ("difficulty = 0.05", "difficulty = -1", "stratum.ports[0].difficulty",
         "greater than 0"),
        ("port = 3334", "port = 3333", "stratum.ports", "repeat"),
        ("port = 3334", "port = 70000", "stratum.ports[1].port", "between"),
        ("vardiff = true", 'vardiff = "yes"', "stratum.ports[0].vardiff", "true or false"),
        (f'address = "{REGTEST_BECH32}"', 'address = "ltc1q6hnhkmvc0ls0vcjahd9wcau8x37s03mn08qeyu"',
         "pool.address", "network"),
        (f'fee_address = "{REGTEST_LEGACY}"', 'fee_address = "n44g6KER7Cx8gNPoLjBUDnXg8qUV37rXhH"',
         "pool.fee_address", "checksum"),
        ('wallet = "pool"', 'wallet = "pool"\nrpc_port = 5', "daemon.rpc_port", "unknown key"),
        ("[pool]", "[pools]", "pools", "unknown section"),
        ('fee_address = ', 'min_payout = 0.000000001\nfee_address = ', "pool.min_payout",
         "smallest unit"),
        ('fee_address = ', 'pplns_factor = 0\nfee_address = ', "pool.pplns_factor",
         "greater than 0"),
        ('fee_address = ', 'payment_max_recipients = 0\nfee_address = ',
         "pool.payment_max_recipients", "between 1 and 5000"),
        ('fee_address = ', 'scheme = "pps"\nfee_address = ', "pool.scheme", "must be one of"),
    ],
)
def test_bad_values_are_refused_naming_file_key_reason(tmp_path: Path, old: str, new: str,
                                                       key: str, reason: str):
    assert old in VALID
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_coin_config(path)
    assert info.value.file == str(path)
    assert info.value.key == key
    assert reason.lower() in str(info.value).lower()
    assert str(path) in str(info.value)


def test_invalid_toml_and_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_coin_config(write(tmp_path, "[coin\nname="))
    with pytest.raises(ConfigError, match="cannot read"):
        load_coin_config(tmp_path / "missing.toml")


def test_missing_section(tmp_path: Path):
    text = VALID.split("[stratum]")[0]
    with pytest.raises(ConfigError) as info:
        load_coin_config(write(tmp_path, text))
    assert info.value.key == "stratum" and "required" in str(info.value)


@pytest.mark.parametrize(("coins", "decimals", "units"), [
    (0.1, 8, 10_000_000),            # 0.1 is not exact in binary: must not become 9999999
    (0.29, 8, 29_000_000),
    ("1.23456789", 8, 123_456_789),
    ("0.000000019", 8, 1),           # more digits than the coin has: rounded down
    (21_000_000, 8, 2_100_000_000_000_000),
    (2, 6, 2_000_000),               # peercoin counts in micro-coins
    (Decimal("0.00000001"), 8, 1),
])
def test_coins_to_smallest_unit_is_exact(coins, decimals: int, units: int):
    assert to_units(coins, decimals) == units


def test_smallest_unit_back_to_coins_is_exact():
    assert to_coins(10_000_000, 8) == Decimal("0.1")
    assert format(to_coins(1, 8), "f") == "0.00000001"
    assert format(to_coins(123_456_789_012, 8), "f") == "1234.56789012"
    assert all(to_units(to_coins(n, 8), 8) == n for n in (0, 1, 99, 10**8 - 1, 7 * 10**15))


def test_coin_file_writer_round_trips(tmp_path: Path):
    data = {"coin": {"name": "litecoin", "prefix": "ltc"},
            "stratum": {"host": "127.0.0.1", "ports": [{"port": 1, "difficulty": 1e-6,
                                                        "vardiff": False}]},
            "pool": {"address": 'a"b\\c', "fee_percent": 1.5, "min_payout": 0.0001}}
    path = write_coin_file(tmp_path / "c.toml", data)
    assert tomllib.loads(path.read_text()) == data


def test_pool_keys_and_network_units(tmp_path: Path):
    config = load_coin_config(write(tmp_path, VALID.replace(
        "fee_address = ", "pplns_factor = 3\nmin_payout = 0.5\nfee_address = ")))
    assert config.pool.pplns_factor == 3.0
    assert to_units(config.pool.min_payout, config.network.decimals) == 50_000_000
    assert config.network.coinbase_maturity == 100
