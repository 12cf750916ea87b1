"""No service process ends without saying why: the exception and the exit code, logged.

The long-running commands (`pool serve`, `web serve`, `run`) wrap their body in
:func:`exit_logged`. Beyond saying why, this keeps Click from hiding an error: Click
takes any OSError with EPIPE for "stdout was closed" (as in `multipool ... | head`) and
exits with code 1 without a word, but in a service a broken pipe is a real failure (a
worker process that could not start, a daemon's connection), and it ended a pool engine
silently, again and again, in the field.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import click
import typer


@contextmanager
def exit_logged(what: str, logger: logging.Logger) -> Iterator[None]:
    """Run a process's body; when an exception ends it, log the exception with its
    traceback and the exit code (1), then exit with that code. An exit the body chose
    (typer.Exit, after printing its own error line) and a clean stop ("pool engine
    stopped") are the body's to report."""
    try:
        yield
    except (typer.Exit, click.exceptions.Exit, SystemExit):
        raise
    except KeyboardInterrupt:
        logger.info("%s interrupted (exit code 130)", what)
        raise typer.Exit(130) from None
    except Exception as exc:  # the top level of the process: whatever ends it is logged
        logger.critical("%s stopped by an error (exit code 1): %s", what, exc, exc_info=exc)
        raise typer.Exit(1) from None
