"""What a supervised worker child shares with its `Supervisor`: environment, ready signal.

Apart from `_supervisor` so that a worker that is not a supervisor (every child, and
``worker`` without ``--workers``/``--reload``) does not import the supervisor at start-up.
"""

from __future__ import annotations

import os

SUPERVISED_ENV = "LEXIGRAM_TASKS_SUPERVISED"
"""Set in each child's environment to its slot number (1-based)."""

READY_FD_ENV = "LEXIGRAM_TASKS_READY_FD"
"""Set in each child's environment to the pipe it writes one byte to once it consumes."""


def signal_ready() -> None:
    """In a supervised child: tell the supervisor this process is consuming jobs."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"1")
        os.close(int(fd))
    except (OSError, ValueError):
        return  # the supervisor is gone; the stdin watch takes care of that
