"""Cancellation announcements of a queue: a NOTIFY channel of its own.

The queue's ``cancel`` statement deletes the job and, when a live lease held it,
calls ``pg_notify(<queue's cancel channel>, <job id>)`` in the same statement, so the
announcement is sent exactly when the deletion commits. Workers LISTEN on the process's
shared listener connection; one that missed an announcement (its connection was down)
still loses the job at its next heartbeat, because the row is gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from lexigram.tasks.backends.postgres._connection import Listener

logger = logging.getLogger(__name__)


async def follow_cancellations(
    dsn: str | None, connect_timeout: float, channel: str, *, can_listen: bool
) -> AsyncIterator[str]:
    """Yield every job id NOTIFYed on `channel`, until cancelled.

    A queue built on an external pool without a DSN has nothing to LISTEN with: then
    nothing is yielded, and a cancelled running job stops at its worker's next
    heartbeat instead (it no longer holds a lease).
    """
    if not can_listen:
        logger.warning(
            "This PostgreSQL queue has no DSN to LISTEN with, so its workers hear of a "
            "cancelled running job only at their next heartbeat. Pass dsn= as well as the pool."
        )
        await asyncio.Event().wait()  # never set: the worker cancels this wait on stop
    inbox: asyncio.Queue[str] = asyncio.Queue()

    def received(payload: str | None) -> None:
        if payload:  # None: the connection came back (a missed announcement is lost)
            inbox.put_nowait(payload)

    listener = await Listener.acquire(dsn, connect_timeout)
    try:
        await listener.subscribe(channel, received)
        while True:
            yield await inbox.get()
    finally:
        await listener.unsubscribe(channel, received)
        await listener.release()
