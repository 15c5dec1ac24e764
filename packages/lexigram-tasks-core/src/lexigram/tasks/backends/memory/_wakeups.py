"""`Wakeups`: the consumers waiting in a `MemoryTaskQueue` for work, and their waking.

A `dequeue_batch` that finds no job ready waits on a future of its own, until the queue
wakes every waiter (a job was enqueued or came back, a delayed job fell due, a lease ran
out, the queue was closed) or its own timer ends (at its timeout, or when the next
delayed job or lease is due).
"""

from __future__ import annotations

import asyncio


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Wakeups:
    """The futures of the consumers waiting now (`waiters`; test it before `wake_all`)."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: set[asyncio.Future[None]] = set()

    async def wait(self, delay: float) -> None:
        """Wait until `wake_all` is called, or at most `delay` seconds."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.add(waiter)
        handle = loop.call_later(max(delay, 0.0), _wake, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self.waiters.discard(waiter)

    def wake_all(self) -> None:
        """Wake every consumer waiting now."""
        waiters = self.waiters
        self.waiters = set()
        for waiter in waiters:
            _wake(waiter)
