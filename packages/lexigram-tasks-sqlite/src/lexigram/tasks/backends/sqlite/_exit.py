"""At process exit: commit the write-behind calls of every open `Database`.

A write-behind call (`Database.submit`) waits a moment to share a commit, and calls handed
to a database thread wait for it; the thread is a daemon, which the interpreter stops
with calls still queued. The hook here runs `flush_now` on every database still open.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Protocol


class Flushable(Protocol):
    """What the exit hook asks of a database."""

    def flush_now(self) -> None:
        """Commit what is waiting, on the calling thread or the database's own."""


_OPEN: weakref.WeakSet[Flushable] = weakref.WeakSet()


def flush_at_exit(db: Flushable) -> None:
    """Have `db` flushed when the process exits, unless it was collected before."""
    _OPEN.add(db)


@atexit.register
def _flush_at_exit() -> None:
    """Commit write-behind calls still waiting for their turn when the process exits.

    A program that ends its event loop without closing its stores would otherwise drop
    a result or progress write made in its last two milliseconds.
    """
    for db in list(_OPEN):
        db.flush_now()
