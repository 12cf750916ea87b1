"""Fixtures of the web tests (see serving.py)."""

from tests.web.serving import serve_app

__all__ = ["serve_app"]
