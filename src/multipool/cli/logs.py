"""Logging set-up shared by the commands: Rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import logging
import sys

from rich.logging import RichHandler


def setup_logging(level: str = "info") -> None:
    """Given a level name, send multipool's logs to stderr in a form fit for the reader."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler: logging.Handler
    if sys.stderr.isatty():
        handler = RichHandler(show_path=False, rich_tracebacks=True)
        fmt = "%(name)s: %(message)s"
    else:
        handler = logging.StreamHandler()
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # aiohttp's access chatter and alembic's step-by-step say nothing an operator needs;
    # multipool logs the schema change itself.
    logging.getLogger("aiohttp").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
