"""`CancelNotices`: a memory queue's announcements of jobs cancelled while in flight.

What a networked backend publishes on a channel, a memory queue hands to every iterator
its `cancellations()` has open: each gets an inbox of its own, from its first step until
it is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator


class CancelNotices:
    """The inboxes of the open `cancellations()` iterators of one queue object."""

    __slots__ = ("_inboxes",)

    def __init__(self) -> None:
        self._inboxes: set[asyncio.Queue[str]] = set()

    def announce(self, job_id: str) -> None:
        """Tell every open iterator that the job `job_id` was cancelled while in flight."""
        for inbox in self._inboxes:
            inbox.put_nowait(job_id)

    async def listen(self) -> AsyncIterator[str]:
        """Yield the id of every job announced from the first step on, until closed."""
        inbox: asyncio.Queue[str] = asyncio.Queue()
        self._inboxes.add(inbox)
        try:
            while True:
                yield await inbox.get()
        finally:
            self._inboxes.discard(inbox)
