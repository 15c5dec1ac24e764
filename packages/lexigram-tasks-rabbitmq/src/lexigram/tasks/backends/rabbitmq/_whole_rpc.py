"""Synchronous AMQP calls that a cancellation of their caller does not cut in half.

aiormq closes a channel, with a WARNING of its own, when the caller of a synchronous
method (``basic.qos``, ``basic.consume``, ``basic.cancel``...) is cancelled before the
reply came: it can no longer tell which reply belongs to which call. The consumer's
background work (going idle, resizing the prefetch, consuming again after a reconnect)
is cancelled whenever the queue closes, often mid-call, and the channel is about to be
closed cleanly anyway. Each such call runs to its reply instead: the caller stops
waiting at once, and the channel's close, which queues behind the call on aiormq's
channel lock, follows it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def whole_rpc(call: Awaitable[T]) -> T:
    """Await `call`; if the caller is cancelled, let the call finish on its own.

    Raises:
        asyncio.CancelledError: The caller was cancelled (the call goes on).
        Exception: What the call raised, when the caller was still waiting for it.
    """
    running = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        # Nobody reads the outcome now: retrieve it, so a call failing on a closed
        # connection is not reported as an exception that was never retrieved.
        running.add_done_callback(_forget)
        raise


def _forget(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()
