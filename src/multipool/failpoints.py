"""Failpoints: named places where a test can have the process killed outright.

``failpoint("payment:after_send")`` does nothing unless the environment variable
``MULTIPOOL_FAILPOINT`` names that place; then the process sends itself SIGKILL, exactly
what ``kill -9`` or a power cut does to it: no cleanup, no ``finally``, no flush. The
crash-safety tests use it to stop the payment path at every step; in production the
variable is unset and a failpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

VARIABLE = "MULTIPOOL_FAILPOINT"


def failpoint(name: str) -> None:
    if os.environ.get(VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
