"""multipool.toml's [web] table: defaults, each key's checks, errors naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from multipool.config import parse_server_config
from multipool.errors import ConfigError


def _parse(web: dict[str, Any]) -> Any:
    return parse_server_config({"server": {"root": "/opt/multipool"}, "web": web},
                               "multipool.toml")


def test_web_defaults() -> None:
    config = _parse({})
    assert (config.web_server, config.web_metrics_listen) == ("nginx", "127.0.0.1:9108")
    assert config.web_trusted_proxies == ("127.0.0.1", "::1")
    assert (config.web_cors_origins, config.web_rate_limit, config.web_offline_after) == \
        ((), 10.0, 10)
    assert config.web_workers == 0  # one per core


def test_web_keys_read() -> None:
    config = _parse({"server": "apache", "metrics_listen": "", "routing": "subdomain",
                     "trusted_proxies": ["10.0.0.0/8"], "cors_origins": ["*"],
                     "rate_limit": 2, "offline_after": 30, "workers": 3})
    assert (config.web_server, config.web_metrics_listen, config.web_routing) == \
        ("apache", "", "subdomain")
    assert (config.web_trusted_proxies, config.web_cors_origins) == (("10.0.0.0/8",), ("*",))
    assert (config.web_rate_limit, config.web_offline_after, config.web_workers) == \
        (2.0, 30, 3)


@pytest.mark.parametrize(("web", "key", "words"), [
    ({"server": "lighttpd"}, "web.server", "must be one of nginx, apache"),
    ({"metrics_listen": "9108"}, "web.metrics_listen", "must be HOST:PORT"),
    ({"trusted_proxies": ["proxy.example"]}, "web.trusted_proxies", "IP addresses"),
    ({"cors_origins": ["example.org"]}, "web.cors_origins", "origins like"),
    ({"cors_origins": ["https://example.org/path"]}, "web.cors_origins", "origins like"),
    ({"rate_limit": 0}, "web.rate_limit", "greater than 0"),
    ({"offline_after": 0}, "web.offline_after", "between 1 and 1440"),
    ({"workers": 33}, "web.workers", "between 0 and 32"),
    ({"workers": "many"}, "web.workers", "an integer"),
    ({"colour": "blue"}, "web.colour", "unknown key"),
])
def test_web_bad_values_name_the_key(web: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(web)
    assert key in str(caught.value) and words in str(caught.value)
