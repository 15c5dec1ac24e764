"""Synchronous AMQP calls that a cancellation of their caller does not cut in half.

aiormq closes a channel, with a WARNING of its own, when the caller of a synchronous
method (``basic.qos``, ``basic.consume``, ``basic.cancel``...) is cancelled before the
reply came: it can no longer tell which reply belongs to which call. The consumer's
background work (going idle, resizing the prefetch) and a worker's subscription to
cancellations are cancelled whenever the queue or the worker stops, often mid-call, and
their channel is about to be closed cleanly anyway. Such a call runs on to its reply
instead: the caller stops waiting at once, and the channel's close, which queues behind
the call on aiormq's channel lock, follows it. A broker that does not answer within
`FINISH_WITHIN` (paused, or gone without the connection noticing yet) gets the cancel
after all, so a close never waits on it for longer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

FINISH_WITHIN = 1.0
"""Seconds an abandoned call may still take before it is cancelled (a live broker
answers in well under a millisecond)."""


async def whole_rpc(call: Awaitable[T], finish_within: float = FINISH_WITHIN) -> T:
    """Await `call`; if the caller is cancelled, let the call finish on its own.

    Args:
        call: The AMQP call (or a coroutine of several, made on one channel).
        finish_within: Seconds the call may run on after its caller was cancelled.

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
        if not running.done():
            give_up = asyncio.get_running_loop().call_later(finish_within, running.cancel)
            running.add_done_callback(lambda _: give_up.cancel())
        raise


def _forget(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()
