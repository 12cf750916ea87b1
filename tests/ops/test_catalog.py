"""The shipped coin catalogue and the validation of coin definition files: every shipped
file loads, and every kind of bad input is refused with a message naming the file, the key
and the reason."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from multipool.catalog import (
    CoinDefinition,
    NetworkPorts,
    catalog_names,
    load_definition,
)
from multipool.chain.networks import NETWORKS
from multipool.devnet import REAL_BINARY, write_coin_file
from multipool.errors import ConfigError

CATALOGUE = ["bitcoin", "dogecoin", "litecoin", "peercoin"]

# The daemons' own defaults (chainparamsbase.cpp / chainparams.cpp of each coin).
DAEMON_PORTS = {
    "bitcoin": {"main": (8332, 8333), "test": (18332, 18333), "regtest": (18443, 18444)},
    "litecoin": {"main": (9332, 9333), "test": (19332, 19335), "regtest": (19443, 19444)},
    "dogecoin": {"main": (22555, 22556), "test": (44555, 44556), "regtest": (18332, 18444)},
    "peercoin": {"main": (9902, 9901), "test": (9904, 9903), "regtest": (18443, 9903)},
}

VALID: dict[str, Any] = {
    "coin": {"name": "litecoin", "prefix": "ltc", "symbol": "LTC", "algorithm": "scrypt"},
    "daemon": {"source": "package", "package": "litecoind",
               "binary": "/usr/lib/litecoin/litecoind",
               "git": "https://github.com/litecoin-project/litecoin", "ref": "v0.21.4",
               "build": ["./autogen.sh", "./configure", "make -j2"],
               "conf": "litecoin.conf", "zmq": False},
    "ports": {"main": {"rpc": 9332, "p2p": 9333, "stratum": 3333},
              "regtest": {"rpc": 19443, "p2p": 19444, "stratum": 23333}},
    "stratum": {"difficulty": 16},
    "pool": {"scheme": "pplns", "fee_percent": 1.0, "min_payout": 0.1,
             "payment_interval": 600},
}


def test_catalogue_lists_the_shipped_coins() -> None:
    assert catalog_names() == CATALOGUE


@pytest.mark.parametrize("name", CATALOGUE)
def test_every_shipped_definition_loads(name: str) -> None:
    definition = load_definition(name)
    assert isinstance(definition, CoinDefinition)
    assert definition.name == name
    assert Path(definition.file).name == f"{name}.toml"
    assert definition.conf == f"{name}.conf"
    assert definition.networks == ("main", "test", "regtest")
    for network in definition.networks:
        assert (definition.name, network) in NETWORKS
        ports = definition.ports_for(network)
        assert (ports.rpc, ports.p2p) == DAEMON_PORTS[name][network]
        assert len(set(ports.as_list())) == 3
    assert definition.regtest_difficulty < definition.difficulty
    assert definition.difficulty_for("regtest") == definition.regtest_difficulty
    assert definition.difficulty_for("main") == definition.difficulty


def test_shipped_stratum_ports_do_not_collide_between_coins() -> None:
    """Two coins added with their defaults both keep their stratum port."""
    for network in ("main", "test", "regtest"):
        stratum = [load_definition(n).ports_for(network).stratum for n in CATALOGUE]
        assert len(set(stratum)) == len(stratum)


def test_shipped_sources() -> None:
    ltc = load_definition("litecoin")
    assert (ltc.source, ltc.package, ltc.binary) == ("package", "litecoind", REAL_BINARY)
    assert ltc.template_rules == ("mweb", "segwit")
    assert ltc.zmq is False  # the Debian build has no ZMQ
    for name in ("bitcoin", "dogecoin", "peercoin"):
        definition = load_definition(name)
        assert definition.source == "git"
        assert definition.git and definition.ref and definition.build
        assert not definition.binary.startswith("/")
        assert definition.zmq is True
    # Dogecoin 1.14 predates config file sections (Core 0.17).
    assert [load_definition(n).conf_sections for n in CATALOGUE] == [True, False, True, True]


@pytest.mark.skipif(not os.path.exists(REAL_BINARY), reason="litecoind is not installed")
def test_litecoin_package_binary_is_the_real_daemon() -> None:
    assert os.access(load_definition("litecoin").binary, os.X_OK)


def test_a_path_loads_an_operators_file(tmp_path: Path) -> None:
    path = write_coin_file(tmp_path / "mycoin", VALID)  # no ".toml": the "/" makes it a path
    definition = load_definition(str(path))
    assert definition.file == str(path)
    assert definition.ports == {"main": NetworkPorts(9332, 9333, 3333),
                                "regtest": NetworkPorts(19443, 19444, 23333)}
    assert definition.template_rules is None  # the engine's default for the coin
    assert definition.regtest_difficulty == definition.difficulty == 16.0
    assert definition.conf_sections is True
    with pytest.raises(ConfigError) as exc:
        definition.ports_for("test")
    assert str(exc.value) == (f"{path}: ports.test: no default ports for network 'test'; "
                              "this definition has: main, regtest")


def test_pool_section_is_optional(tmp_path: Path) -> None:
    data = copy.deepcopy(VALID)
    del data["pool"]
    definition = load_definition(str(write_coin_file(tmp_path / "c.toml", data)))
    assert (definition.scheme, definition.fee_percent, definition.min_payout,
            definition.payment_interval) == ("pplns", 1.0, 0.1, 600.0)


def test_unknown_catalogue_name() -> None:
    with pytest.raises(ConfigError) as exc:
        load_definition("ltc")
    assert str(exc.value) == ("unknown coin 'ltc'; the catalogue has: bitcoin, dogecoin, "
                              "litecoin, peercoin (or give the path of a coin definition file "
                              "ending in .toml)")


def test_a_name_ending_in_toml_is_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_definition("litecoin.toml")
    assert str(exc.value) == "litecoin.toml: cannot read: No such file or directory"


def test_invalid_toml(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[coin\n")
    with pytest.raises(ConfigError) as exc:
        load_definition(str(path))
    assert str(exc.value).startswith(f"{path}: not valid TOML: ")


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    if value is _DELETE:
        del data[last]
    else:
        data[last] = value


_DELETE = object()

BAD: list[tuple[str, dict[str, Any], str, str]] = [
    # (case, changes, key, reason)
    ("unknown key", {"daemon.colour": "red"}, "daemon.colour", "unknown key"),
    ("unknown key in ports", {"ports.main.zmq": 28332}, "ports.main.zmq", "unknown key"),
    ("unknown section", {"extra.x": 1}, "extra", "unknown section"),
    ("missing section", {"stratum": _DELETE}, "stratum", "section is required"),
    ("port as string", {"ports.main.rpc": "9332"}, "ports.main.rpc",
     "must be an integer, got '9332'"),
    ("bool as number", {"stratum.difficulty": True}, "stratum.difficulty",
     "must be a number, got True"),
    ("string as bool", {"daemon.zmq": "no"}, "daemon.zmq", "must be true or false, got 'no'"),
    ("build not a list", {"daemon.build": "make"}, "daemon.build",
     "must be a list of strings, got 'make'"),
    ("network not a table", {"ports.main": 9332}, "ports.main", "must be a table"),
    ("unknown source", {"daemon.source": "docker"}, "daemon.source",
     "must be one of package, git, binary; got 'docker'"),
    ("unknown algorithm", {"coin.algorithm": "x11"}, "coin.algorithm",
     "must be one of sha256d, scrypt; got 'x11'"),
    ("missing name", {"coin.name": _DELETE}, "coin.name", "is required"),
    ("missing binary", {"daemon.binary": _DELETE}, "daemon.binary", "is required"),
    ("missing conf", {"daemon.conf": _DELETE}, "daemon.conf", "is required"),
    ("conf with a path", {"daemon.conf": "../x.conf"}, "daemon.conf",
     "must be a file name without \"/\", got '../x.conf'"),
    ("package without package", {"daemon.package": _DELETE}, "daemon.package",
     'is required when source = "package"'),
    ("package with relative binary", {"daemon.binary": "litecoind"}, "daemon.binary",
     "must be an absolute path when source = \"package\", got 'litecoind'"),
    ("binary with relative binary", {"daemon.source": "binary", "daemon.binary": "bin/x"},
     "daemon.binary", "must be an absolute path when source = \"binary\", got 'bin/x'"),
    ("git without git", {"daemon.source": "git", "daemon.git": _DELETE,
                         "daemon.binary": "src/litecoind"},
     "daemon.git", 'is required when source = "git"'),
    ("git without ref", {"daemon.source": "git", "daemon.ref": _DELETE,
                         "daemon.binary": "src/litecoind"},
     "daemon.ref", 'is required when source = "git"'),
    ("git without build", {"daemon.source": "git", "daemon.build": [],
                           "daemon.binary": "src/litecoind"},
     "daemon.build", 'needs at least one command when source = "git", got []'),
    ("git with absolute binary", {"daemon.source": "git"}, "daemon.binary",
     'must be a path inside the built tree (relative, without "..") when source = "git", '
     "got '/usr/lib/litecoin/litecoind'"),
    ("git with binary outside the tree", {"daemon.source": "git",
                                          "daemon.binary": "src/../../x"}, "daemon.binary",
     'must be a path inside the built tree (relative, without "..") when source = "git", '
     "got 'src/../../x'"),
    ("port 0", {"ports.main.p2p": 0}, "ports.main.p2p", "must be between 1 and 65535, got 0"),
    ("port too big", {"ports.regtest.stratum": 65536}, "ports.regtest.stratum",
     "must be between 1 and 65535, got 65536"),
    ("missing port", {"ports.main.stratum": _DELETE}, "ports.main.stratum", "is required"),
    ("duplicate port", {"ports.main.stratum": 9332}, "ports.main.stratum",
     "repeats port 9332 of ports.main.rpc"),
    ("duplicate port p2p", {"ports.regtest.p2p": 19443}, "ports.regtest.p2p",
     "repeats port 19443 of ports.regtest.rpc"),
    ("no networks", {"ports": {}}, "ports",
     "needs at least one network table: [ports.main], [ports.test] or [ports.regtest]"),
    ("unknown network", {"ports.signet": {"rpc": 1, "p2p": 2, "stratum": 3}}, "ports.signet",
     "unknown network 'signet' for litecoin; known networks: main, regtest, test"),
    ("unknown coin", {"coin.name": "litecoincash"}, "coin.name",
     "unknown coin 'litecoincash'; known coins: bitcoin, dogecoin, litecoin, peercoin"),
    ("bad prefix", {"coin.prefix": "LTC"}, "coin.prefix",
     "must be 1-16 lowercase letters and digits starting with a letter, got 'LTC'"),
    ("bad symbol", {"coin.symbol": ""}, "coin.symbol", "must be 1-10 letters and digits, got ''"),
    ("zero difficulty", {"stratum.difficulty": 0}, "stratum.difficulty",
     "must be greater than 0, got 0"),
    ("bad regtest difficulty", {"stratum.regtest_difficulty": -1}, "stratum.regtest_difficulty",
     "must be greater than 0, got -1"),
    ("bad rules", {"daemon.template_rules": ["segwit", 1]}, "daemon.template_rules",
     "must be a list of non-empty strings"),
    ("unknown scheme", {"pool.scheme": "pps"}, "pool.scheme",
     "must be one of pplns, prop, solo; got 'pps'"),
    ("fee of 100", {"pool.fee_percent": 100}, "pool.fee_percent", "must be below 100, got 100.0"),
    ("zero min payout", {"pool.min_payout": 0}, "pool.min_payout",
     "must be greater than 0, got 0"),
]


@pytest.mark.parametrize(("changes", "key", "reason"), [case[1:] for case in BAD],
                         ids=[case[0] for case in BAD])
def test_bad_definition_is_refused(tmp_path: Path, changes: dict[str, Any], key: str,
                                   reason: str) -> None:
    data = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        _set(data, dotted, value)
    path = write_coin_file(tmp_path / "coin.toml", data)
    with pytest.raises(ConfigError) as exc:
        load_definition(str(path))
    assert (exc.value.file, exc.value.key, exc.value.reason) == (str(path), key, reason)
    assert str(exc.value) == f"{path}: {key}: {reason}"


def test_the_valid_base_case_loads(tmp_path: Path) -> None:
    """The bad cases above differ from this one only by their changes."""
    load_definition(str(write_coin_file(tmp_path / "coin.toml", VALID)))
