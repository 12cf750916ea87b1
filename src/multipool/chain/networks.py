"""Address parameters of each supported coin and network, copied from the daemons'
chainparams.cpp: the Base58Check version bytes and the bech32 human-readable part.
"""

from __future__ import annotations

from dataclasses import dataclass

from multipool.errors import ConfigError


@dataclass(frozen=True)
class NetworkParams:
    """How one coin on one network spells its addresses.

    The first prefix of each tuple is the one the daemon writes today; any further ones
    are legacy version bytes it still accepts (Litecoin's old P2SH byte 5 on main, 196 on
    test and regtest). ``bech32_hrp`` is None where the coin has no segwit addresses.
    """

    coin: str
    network: str
    p2pkh_prefixes: tuple[int, ...]
    p2sh_prefixes: tuple[int, ...]
    bech32_hrp: str | None
    # Digits after the point: amounts are integers of 10**-decimals coins.
    decimals: int = 8
    # Confirmations before a coinbase output may be spent.
    coinbase_maturity: int = 100

    def __post_init__(self) -> None:
        for prefixes in (self.p2pkh_prefixes, self.p2sh_prefixes):
            if not prefixes or not all(0 <= p <= 0xFF for p in prefixes):
                raise ValueError(f"{self.name}: version bytes must be 0..255, got {prefixes}")

    @property
    def name(self) -> str:
        """Given the params, return "coin network" as messages print it."""
        return f"{self.coin} {self.network}"


def _params(
    coin: str, network: str, p2pkh: tuple[int, ...], p2sh: tuple[int, ...], hrp: str | None,
    *, decimals: int = 8, maturity: int = 100,
) -> tuple[tuple[str, str], NetworkParams]:
    return (coin, network), NetworkParams(coin, network, p2pkh, p2sh, hrp, decimals, maturity)


NETWORKS: dict[tuple[str, str], NetworkParams] = dict(
    [
        _params("bitcoin", "main", (0,), (5,), "bc"),
        _params("bitcoin", "test", (111,), (196,), "tb"),
        _params("bitcoin", "regtest", (111,), (196,), "bcrt"),
        # Litecoin moved P2SH from 5 (Bitcoin's "3...") to 50 ("M...") and 196 to 58 ("Q...");
        # its key_io.cpp still decodes the old bytes, so old payout addresses keep working.
        _params("litecoin", "main", (48,), (50, 5), "ltc"),
        _params("litecoin", "test", (111,), (58, 196), "tltc"),
        _params("litecoin", "regtest", (111,), (58, 196), "rltc"),
        # Dogecoin 1.14 never activated segwit, so it has no bech32 prefix.
        # Dogecoin's coinbase matures after 240 blocks since height 145,000 (60 before).
        _params("dogecoin", "main", (30,), (22,), None, maturity=240),
        _params("dogecoin", "test", (113,), (196,), None, maturity=240),
        _params("dogecoin", "regtest", (111,), (196,), None, maturity=60),
        # Peercoin activated segwit (main height 455470); its chainparams set these prefixes.
        # Peercoin counts in micro-coins (COIN = 1,000,000) and matures coinbases at 500.
        _params("peercoin", "main", (55,), (117,), "pc", decimals=6, maturity=500),
        _params("peercoin", "test", (111,), (196,), "tpc", decimals=6, maturity=500),
        _params("peercoin", "regtest", (111,), (196,), "pcrt", decimals=6, maturity=500),
    ]
)


def get_network(coin: str, network: str) -> NetworkParams:
    """Given a coin and a network name, return its NetworkParams or raise ConfigError
    naming the known choices."""
    coins = sorted({c for c, _ in NETWORKS})
    if coin not in coins:
        raise ConfigError(f"unknown coin {coin!r}; known coins: {', '.join(coins)}")
    params = NETWORKS.get((coin, network))
    if params is None:
        networks = sorted(n for c, n in NETWORKS if c == coin)
        raise ConfigError(
            f"unknown network {network!r} for {coin}; known networks: {', '.join(networks)}"
        )
    return params
