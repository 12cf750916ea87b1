"""The one way multipool runs another program: argv lists only (never a shell string),
logged with secrets masked, failures raised as :class:`CommandError` with the output."""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from multipool.errors import PoolError

logger = logging.getLogger("multipool.ops.commands")

MASK = "******"


class CommandError(PoolError, RuntimeError):
    """A program multipool ran failed; the message has its argv (masked) and output."""

    def __init__(self, argv: str, returncode: int, output: str):
        self.argv = argv
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-20:])
        super().__init__(f"`{argv}` failed with exit code {returncode}"
                         + (f":\n{tail}" if tail else ""))


def masked(argv: Sequence[str], secrets: Sequence[str] = ()) -> str:
    """Given argv and the secrets in it, return it as one line fit for a log.

    >>> masked(["tool", "--password=hunter2", "x"], ["hunter2"])
    'tool --password=****** x'
    """
    line = " ".join(argv)
    for secret in secrets:
        if secret:
            line = line.replace(secret, MASK)
    return line


def as_user_argv(user: str, argv: Sequence[str], *, reset_env: bool = True) -> list[str]:
    """Given a user name and argv, return argv that runs it as that user with the user's
    groups only (setpriv, from util-linux), by default with a clean environment."""
    entry = pwd.getpwnam(user)
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
            # No setuid program may raise the privileges of what runs (a hostile build).
            "--init-groups", "--no-new-privs", *(["--reset-env"] if reset_env else []),
            "--", *argv]


def run_command(argv: Sequence[str], *, user: str | None = None, cwd: str | Path | None = None,
                env: Mapping[str, str] | None = None, secrets: Sequence[str] = (),
                timeout: float | None = None, check: bool = True,
                input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv (as ``user`` when given and not already that user), capture its output
    and raise :class:`CommandError` on a non-zero exit when ``check``."""
    final = list(argv)
    if user is not None and pwd.getpwuid(os.geteuid()).pw_name != user:
        final = as_user_argv(user, final)
    line = masked(final, secrets)
    logger.debug("running %s", line)
    try:
        # The chokepoint itself: argv lists only, never a shell.
        result = subprocess.run(  # noqa: S603
            final, cwd=cwd, env=dict(env) if env is not None else None, capture_output=True,
            text=True, timeout=timeout, check=False, input=input_text)
    except FileNotFoundError:
        raise CommandError(line, 127, f"{final[0]}: command not found") from None
    except subprocess.TimeoutExpired as exc:
        raise CommandError(line, -1, f"timed out after {timeout} s") from exc
    if check and result.returncode != 0:
        output = (result.stdout or "") + (result.stderr or "")
        for secret in secrets:
            if secret:
                output = output.replace(secret, MASK)
        raise CommandError(line, result.returncode, output)
    return result
