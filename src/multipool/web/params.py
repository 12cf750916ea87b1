"""What a request may ask for: query parameters and path parts checked before any query
runs. Every refusal is a :class:`BadInput` whose message names the parameter and what it
must be; the app turns it into a 400 (JSON for the API, a page for people)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from multipool.chain.address import validate_address
from multipool.chain.networks import NETWORKS, NetworkParams
from multipool.errors import AddressError, PoolError
from multipool.web.data import MAX_PER_PAGE, WINDOWS

# The highest page number asked for: with MAX_PER_PAGE rows a page, far past any list a
# pool holds, and it keeps the offset a query computes small.
MAX_PAGE = 1_000_000
DEFAULT_PER_PAGE = 20
# An address is at most 90 characters (bech32); anything longer is refused unread.
MAX_ADDRESS = 100
# Characters shown of a refused value in an error message.
SHOWN = 40


class BadInput(PoolError, ValueError):
    """A request parameter that is not what the endpoint takes."""


def _shown(value: str) -> str:
    return repr(value if len(value) <= SHOWN else value[:SHOWN - 3] + "...")


def integer(query: Mapping[str, str], name: str, *, default: int, minimum: int,
            maximum: int) -> int:
    """Given the query string, return parameter ``name`` as an integer from ``minimum``
    to ``maximum`` (``default`` when absent); only ASCII digits are taken.

    >>> integer({"page": "3"}, "page", default=1, minimum=1, maximum=10)
    3
    >>> integer({"page": "-1"}, "page", default=1, minimum=1, maximum=10)
    Traceback (most recent call last):
    ...
    multipool.web.params.BadInput: page: must be a whole number from 1 to 10, got '-1'
    """
    raw = query.get(name)
    if raw is None:
        return default
    digits = raw.isascii() and raw.isdigit() and len(raw) <= len(str(maximum))
    if not digits or not minimum <= int(raw) <= maximum:
        raise BadInput(f"{name}: must be a whole number from {minimum} to {maximum}, "
                       f"got {_shown(raw)}")
    return int(raw)


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int
    per_page: int


def page_request(query: Mapping[str, str]) -> PageRequest:
    """``?page=`` (from 1) and ``?per_page=`` (1 to MAX_PER_PAGE) of a list.

    >>> page_request({"page": "2", "per_page": "50"})
    PageRequest(page=2, per_page=50)
    """
    return PageRequest(
        page=integer(query, "page", default=1, minimum=1, maximum=MAX_PAGE),
        per_page=integer(query, "per_page", default=DEFAULT_PER_PAGE, minimum=1,
                         maximum=MAX_PER_PAGE))


def window(query: Mapping[str, str], default: int = 3600) -> int:
    """``?window=`` in seconds: one of the windows the figures are kept for.

    >>> window({"window": "600"}), window({})
    (600, 3600)
    """
    raw = query.get("window")
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6 and int(raw) in WINDOWS):
        raise BadInput(f"window: must be one of {', '.join(map(str, WINDOWS))} (seconds), "
                       f"got {_shown(raw)}")
    return int(raw)


def network_of(coin: str | None, network: str | None) -> NetworkParams | None:
    """The address rules of a pool's coin and network, None when unknown (no status)."""
    if coin is None or network is None:
        return None
    return NETWORKS.get((coin, network))


def address(text: str, params: NetworkParams | None) -> str:
    """Given an address from a URL and the pool's network (None when unknown), return it
    if a miner of that pool could use it, else raise BadInput saying why.

    Without the network, only the alphabet and length of the address are checked (the
    letters of Base58 and bech32), which is enough to keep junk out of queries."""
    if not text:
        raise BadInput("address: is empty")
    if len(text) > MAX_ADDRESS:
        raise BadInput(f"address: is not an address (longer than {MAX_ADDRESS} characters)")
    if params is None:
        if not (text.isascii() and text.isalnum() and len(text) >= 20):
            raise BadInput(f"address: {_shown(text)} is not an address")
        return text
    try:
        validate_address(text, params)
    except AddressError as exc:
        raise BadInput(f"not a {params.name} address: {exc}") from None
    return text
