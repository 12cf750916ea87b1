"""The API's description: an OpenAPI 3.1 document built from the route table
(:data:`multipool.web.api.ROUTES`), with a JSON Schema and an example for every answer.

Served as ``/openapi.json`` and rendered as the page ``/api/docs`` (server-side, no
script), so the description a program reads and the one a person reads are the same.
"""

from __future__ import annotations

from typing import Any

from multipool.web.api import ROUTES, ApiRoute
from multipool.web.data import MAX_PER_PAGE, WINDOWS
from multipool.web.params import DEFAULT_PER_PAGE, MAX_PAGE

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"

Schema = dict[str, Any]


def _obj(properties: dict[str, Schema], *, description: str = "") -> Schema:
    schema: Schema = {"type": "object", "required": list(properties),
                      "properties": properties}
    if description:
        schema["description"] = description
    return schema


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    kind = schema["type"]
    return {**schema, "type": [*(kind if isinstance(kind, list) else [kind]), "null"]}


def _list(item: Schema) -> Schema:
    return {"type": "array", "items": item}


INT: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
NUM: Schema = {"type": "number"}
STR: Schema = {"type": "string"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": "string", "format": "date-time"}
COINS: Schema = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$",
                 "description": "the amount in coins, exact, as a decimal string"}
UNITS: Schema = {"type": "integer", "description": "the amount in the coin's smallest unit"}
HASHRATE: Schema = {"type": "number", "minimum": 0, "description": "hashes per second"}
REJECTS: Schema = {"type": "object", "additionalProperties": COUNT,
                   "description": "rejected shares in 24 h by reason"}


def _money(name: str) -> dict[str, Schema]:
    return {name: UNITS, f"{name}_coins": COINS}


def _page_of(item: str) -> Schema:
    return _obj({"items": _list(_ref(item)), "page": COUNT, "per_page": COUNT,
                 "total": COUNT, "pages": COUNT})


SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": _obj({"status": INT, "message": STR})}),
    "Hashrate": _obj({"window": {"type": "integer", "enum": list(WINDOWS),
                                 "description": "seconds the figure is averaged over"},
                      "hashrate": HASHRATE}),
    "Block": _obj({"height": COUNT, "hash": STR, "time": TIME,
                   "status": {"type": "string",
                              "enum": ["candidate", "pending", "confirmed", "orphaned"]},
                   "confirmations": _nullable(INT), "maturity": COUNT, **_money("reward"),
                   "effort": _nullable({**NUM, "description": "round difficulty / network "
                                        "difficulty (1.0 = 100 %)"}),
                   "finder": STR, "worker": STR}),
    "Payment": _obj({"batch_id": STR, "time": TIME, "txid": _nullable(STR), "status": STR,
                     **_money("amount"), **_money("fee"), "recipients": COUNT}),
    "MinerPayment": _obj({"batch_id": STR, "time": TIME, "txid": _nullable(STR),
                          "status": STR, **_money("amount")}),
    "MinerRow": _obj({"address": STR, "hashrate": HASHRATE, "window": COUNT,
                      "workers": COUNT, "accepted": COUNT, "rejected": COUNT}),
    "Worker": _obj({"name": STR, "hashrate": HASHRATE, "window": COUNT,
                    "accepted_24h": COUNT, "rejected_24h": COUNT,
                    "last_share": _nullable(TIME), "online": BOOL}),
    "Port": _obj({"url": STR, "port": COUNT, "difficulty": _nullable(NUM), "vardiff": BOOL,
                  "tls": BOOL}),
    "Figures": _obj({
        "hashrate": _list(_ref("Hashrate")), "miners": COUNT, "workers": COUNT,
        "activity_window": {**COUNT, "description": "seconds miners and workers count over"},
        "blocks_24h": COUNT, "last_block": _nullable(_ref("Block")),
        "round_effort": _nullable(NUM), "accepted_24h": COUNT, "rejects_24h": REJECTS},
        description="figures from the pool's database"),
    "Pool": _obj({
        "prefix": STR,
        "state": {"type": "string",
                  "enum": ["online", "degraded", "closed", "offline", "unreadable"]},
        "reason": _nullable(STR), "name": _nullable(STR), "symbol": _nullable(STR),
        "algorithm": _nullable(STR), "network": _nullable(STR), "updated": _nullable(TIME),
        "updated_age": _nullable(COUNT), "stratum": _list(_ref("Port")),
        "daemon": _nullable({"type": "object"}), "hashrate": _nullable(HASHRATE),
        "miners": _nullable(COUNT), "workers": _nullable(COUNT), "scheme": _nullable(STR),
        "fee_percent": _nullable(NUM), "min_payout": _nullable(UNITS),
        "min_payout_coins": _nullable(COINS),
        "last_block": _nullable({"type": "object"}), "blocks_24h": _nullable(COUNT),
        "last_payment": _nullable({"type": "object"}),
        "services": _nullable({"type": "object"}),
        "stats": _nullable(_ref("Figures")),
        "page": {**STR, "description": "the pool's web page"}},
        description="a pool as its status file says (hashrate, miners and workers over "
                    "10 min), with the figures of its database in stats (null when the "
                    "database cannot be read)"),
    "PoolList": _obj({"pools": _list(_ref("Pool"))}),
    "StatusList": {"type": "array", "items": {"type": "object"},
                   "description": "every pool as its status file says: the Pool schema "
                                  "without stats and page, min_payout in coins as a "
                                  "decimal string"},
    "PoolDetail": _ref("Pool"),
    "Series": _obj({"bucket_seconds": COUNT, "hours": COUNT,
                    "points": _list(_obj({"time": TIME, "hashrate": HASHRATE}))}),
    "BlockPage": _page_of("Block"),
    "PaymentPage": _page_of("Payment"),
    "MinerPage": {**_page_of("MinerRow"),
                  "required": [*_page_of("MinerRow")["required"], "window"],
                  "properties": {**_page_of("MinerRow")["properties"], "window": COUNT}},
    "Miner": _obj({"address": STR, "has_history": BOOL, "hashrate": _list(_ref("Hashrate")),
                   **_money("immature"), **_money("unpaid"), **_money("paid"),
                   "workers": _list(_ref("Worker")), "offline_after_minutes": COUNT,
                   "rejects_24h": REJECTS,
                   "round_share": _nullable({**NUM, "minimum": 0, "maximum": 1}),
                   "round_difficulty": NUM}),
    "WorkerList": _obj({"offline_after_minutes": COUNT, "workers": _list(_ref("Worker"))}),
    "MinerPaymentPage": _page_of("MinerPayment"),
}

_ADDRESS = "rltc1qw508d6qejxtdg4y5r3zarvary0c5xw7kgmn4n9"
_BLOCK = {"height": 1234, "hash": "4f" * 32, "time": "2026-12-03T12:00:00+00:00",
          "status": "pending", "confirmations": 42, "maturity": 101,
          "reward": 625000000, "reward_coins": "6.25000000", "effort": 0.87,
          "finder": _ADDRESS, "worker": "rig1"}
_WORKER = {"name": "rig1", "hashrate": 123456.7, "window": 600, "accepted_24h": 5400,
           "rejected_24h": 12, "last_share": "2026-12-03T12:04:10+00:00", "online": True}
_HASHRATES = [{"window": 600, "hashrate": 123456.7}, {"window": 3600, "hashrate": 120000.0},
              {"window": 86400, "hashrate": 98000.5}]
_POOL = {
    "prefix": "ltc", "state": "online", "reason": None, "name": "litecoin", "symbol": "LTC",
    "algorithm": "scrypt", "network": "regtest", "updated": "2026-12-03T12:05:00+00:00",
    "updated_age": 4,
    "stratum": [{"url": "stratum+tcp://pool.example.org:3333", "port": 3333,
                 "difficulty": 16.0, "vardiff": True, "tls": False}],
    "daemon": {"synced": True, "blocks": 1300, "headers": 1300, "peers": 8},
    "hashrate": 123456.7, "miners": 3, "workers": 5, "scheme": "pplns", "fee_percent": 1.0,
    "min_payout": 10000000, "min_payout_coins": "0.10000000",
    "last_block": {"height": 1234, "time": "2026-12-03T12:00:00+00:00", "age": 304,
                   "status": "pending"},
    "blocks_24h": 12, "last_payment": None, "services": None,
    "stats": {"hashrate": _HASHRATES, "miners": 3, "workers": 5, "activity_window": 600,
              "blocks_24h": 12, "last_block": _BLOCK, "round_effort": 0.25,
              "accepted_24h": 16200, "rejects_24h": {"stale": 30, "low difficulty": 2}},
    "page": "/ltc/"}
_PAYMENT = {"batch_id": "42", "time": "2026-12-03T11:50:00+00:00", "txid": "9a" * 32,
            "status": "confirmed", "amount": 1234500000, "amount_coins": "12.34500000",
            "fee": 2250, "fee_coins": "0.00002250", "recipients": 3}
_MINER_PAYMENT = {"batch_id": "42", "time": "2026-12-03T11:50:00+00:00", "txid": "9a" * 32,
                  "status": "confirmed", "amount": 410000000, "amount_coins": "4.10000000"}


def _paged(item: dict[str, Any]) -> dict[str, Any]:
    return {"items": [item], "page": 1, "per_page": 20, "total": 1, "pages": 1}


EXAMPLES: dict[str, Any] = {
    "PoolList": {"pools": [_POOL]},
    "PoolDetail": _POOL,
    "Series": {"bucket_seconds": 600, "hours": 24,
               "points": [{"time": "2026-12-03T11:50:00+00:00", "hashrate": 120000.0},
                          {"time": "2026-12-03T12:00:00+00:00", "hashrate": 0.0}]},
    "BlockPage": _paged(_BLOCK),
    "PaymentPage": _paged(_PAYMENT),
    "MinerPage": {**_paged({"address": _ADDRESS, "hashrate": 123456.7, "window": 3600,
                            "workers": 2, "accepted": 600, "rejected": 3}),
                  "window": 3600},
    "Miner": {"address": _ADDRESS, "has_history": True, "hashrate": _HASHRATES,
              "immature": 312500000, "immature_coins": "3.12500000", "unpaid": 5000000,
              "unpaid_coins": "0.05000000", "paid": 410000000, "paid_coins": "4.10000000",
              "workers": [_WORKER], "offline_after_minutes": 10,
              "rejects_24h": {"stale": 3}, "round_share": 0.4, "round_difficulty": 5120.0},
    "WorkerList": {"offline_after_minutes": 10, "workers": [_WORKER]},
    "MinerPaymentPage": _paged(_MINER_PAYMENT),
    "Error": {"error": {"status": 400, "message": "page: must be a whole number from 1 to "
                                                  f"{MAX_PAGE}, got '-1'"}},
}

_PARAMETERS: dict[str, Schema] = {
    "prefix": {"name": "prefix", "in": "path", "required": True,
               "description": "the pool's prefix (its id on this server)",
               "schema": {"type": "string", "pattern": "^[a-z][a-z0-9]{0,15}$"}},
    "address": {"name": "address", "in": "path", "required": True,
                "description": "a payout address of the pool's coin and network",
                "schema": {"type": "string", "maxLength": 100}},
    "page": {"name": "page", "in": "query", "required": False,
             "description": "the page, from 1",
             "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}},
    "per_page": {"name": "per_page", "in": "query", "required": False,
                 "description": f"rows a page, at most {MAX_PER_PAGE}",
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE,
                            "default": DEFAULT_PER_PAGE}},
    "window": {"name": "window", "in": "query", "required": False,
               "description": "seconds the hashrate is averaged over",
               "schema": {"type": "integer", "enum": list(WINDOWS), "default": 3600}},
}

_ERRORS = {
    "400": "a parameter is not what the endpoint takes (the message names it)",
    "404": "no such pool",
    "429": "too many requests from this address; see Retry-After",
    "503": "the pool's database cannot be read now",
}


def _parameters(route: ApiRoute) -> list[Schema]:
    names = [part[1:-1] for part in route.path.split("/") if part.startswith("{")]
    if route.paged:
        names += ["page", "per_page"]
    names += list(route.query)
    return [_PARAMETERS[name] for name in names]


def _operation(route: ApiRoute) -> Schema:
    applies = {"400": route.paged or bool(route.query) or "{address}" in route.path,
               "404": "{prefix}" in route.path,
               "429": True,
               # The pool and the list of pools answer with stats null instead.
               "503": route.name not in ("pools", "pool")}
    errors = {code: {"description": text,
                     "content": {"application/json": {"schema": _ref("Error")}}}
              for code, text in _ERRORS.items() if applies[code]}
    return {"get": {
        "operationId": route.name, "summary": route.summary,
        "parameters": _parameters(route),
        "responses": {
            "200": {"description": route.summary,
                    "content": {"application/json": {"schema": _ref(route.schema),
                                                     "example": EXAMPLES[route.schema]}}},
            **errors}}}


def _plain_paths() -> dict[str, Any]:
    """The endpoints outside /api/v1: the first API, the health check, this document."""
    status_example = [{**{k: v for k, v in _POOL.items()
                          if k not in ("stats", "page", "min_payout_coins")},
                       "min_payout": _POOL["min_payout_coins"]}]
    return {
        "/api/pools": {"get": {
            "operationId": "status_list",
            "summary": "Every pool as its status file says (the first API, kept as it was)",
            "parameters": [],
            "responses": {"200": {"description": "the pools, sorted by prefix", "content": {
                "application/json": {"schema": _ref("StatusList"),
                                     "example": status_example}}}}}},
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "The process answers", "parameters": [],
            "responses": {"200": {"description": "ok", "content": {
                "text/plain": {"schema": {"type": "string", "enum": ["ok"]},
                               "example": "ok"}}}}}},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document", "parameters": [],
            "responses": {"200": {"description": "the OpenAPI 3.1 document", "content": {
                "application/json": {"schema": {"type": "object"}}}}}}},
    }


def document(server_url: str = "/") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API.

    >>> sorted(document()["paths"])[0]
    '/api/v1/pools'
    """
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "multipool API", "version": API_VERSION,
                 "description": "Every pool of this server, its blocks, payments and "
                                "miners. Money: integers in the coin's smallest unit and "
                                "a decimal string in coins (*_coins). Lists: ?page= and "
                                f"?per_page= (at most {MAX_PER_PAGE}). Rate limited per "
                                "client address (429 with Retry-After)."},
        "servers": [{"url": server_url}],
        "paths": {**{route.path: _operation(route) for route in ROUTES}, **_plain_paths()},
        "components": {"schemas": SCHEMAS},
    }
