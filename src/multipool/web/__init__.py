"""The web process: one ASGI app for every pool of the server (the index, pool and miner
pages, the JSON API and its description).

It reads the status files the pool engines write (``<root>/web/<prefix>/status.json``)
and each pool's database read-only, and never writes; see :func:`multipool.web.app.create_app`.
"""

from multipool.web.app import create_app

__all__ = ["create_app"]
