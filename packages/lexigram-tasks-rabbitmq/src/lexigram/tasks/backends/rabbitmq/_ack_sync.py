"""Make the acks of a classic queue durable soon after they are sent.

A classic queue of RabbitMQ 3.10 (index v1 or v2, lazy or not) keeps the acks it receives
in the queue process's memory and writes them to disk only when the queue syncs its
index: when a persistent message it holds must be confirmed to a publisher, when the
queue has been idle long enough to hibernate, or when its journal fills up (tens of
thousands of entries). A queue that only delivers and takes acks, as under a steady run
of workers, does not sync at all, so a broker crash (kill -9, OOM killer, power loss)
forgets every ack since the last sync, and the jobs they settled run again after the
restart, however long ago they finished.

So a consumer that acked something publishes a small persistent "sync" message to the
queue with a publisher confirm, at most every `SYNC_INTERVAL` seconds: the broker
confirms it only after the sync that also writes the acks before it. The sync message
has the queue's highest priority, so the next free consumer takes it at once, and every
consumer acks and drops it on sight (it is never a job). A consumer whose prefetch is
full (every slot running a job) cannot take it, so it waits in the queue, counted as a
waiting job by `count`, until a job ends. (Making room for it at once, one more prefetch
slot, was tried and reverted: the slot drew jobs into the buffers of consumers that were
not taking them, and a job woke a waiting consumer 0.1 s late.) Only a subscribed consumer
sends them (it takes its own back before it unsubscribes), and only on a priority queue
(the default): without priorities a sync message would wait behind every waiting job.
Quorum queues write acks to their log before applying them and need none of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiormq.abc import DeliveredMessage
from pamqp.commands import Basic

from lexigram.contracts.tasks import TaskQueueError
from lexigram.tasks.backends.rabbitmq._connection import CONNECTION_ERRORS, AMQPLink

logger = logging.getLogger(__name__)

SYNC_MESSAGE_TYPE = "lexigram.ack-sync"
"""AMQP ``type`` property of the sync messages (consumers drop them)."""
SYNC_INTERVAL = 0.25
"""Longest time acks stay unsynced while a consumer keeps acking."""
_PUBLISH_ERRORS: tuple[type[Exception], ...] = (*CONNECTION_ERRORS, TaskQueueError)
SETTLE_WITHIN = 0.05
"""How long a consumer about to unsubscribe waits to take back its own sync message."""


def is_sync_message(message: DeliveredMessage) -> bool:
    """True for a sync message (ack it and drop it: it carries no job)."""
    return bool(message.header.properties.message_type == SYNC_MESSAGE_TYPE)


class AckSync:
    """Publishes the sync messages of one queue object (see the module docstring)."""

    def __init__(self, link: AMQPLink, make_room: Callable[[], Awaitable[None]]) -> None:
        self._link = link
        # One more prefetch slot for the consumer, so the broker can push a sync message.
        self._make_room = make_room
        options = link.options
        # Only a priority queue puts the sync message before the waiting jobs; without
        # priorities it would wait behind the backlog and count as a job until taken.
        self.enabled = options.queue_type == "classic" and options.durable
        self.enabled = self.enabled and options.max_priority > 0
        self._priority = options.max_priority
        self._id = f"ack-sync-{secrets.token_hex(6)}"
        self._due = False  # acks were sent since the last sync message went out
        self._last = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._unseen = 0  # our sync messages no consumer of ours has taken back yet
        self._back = asyncio.Event()

    def acked(self) -> None:
        """Acks went out: make sure a sync message follows within `SYNC_INTERVAL`."""
        if not self.enabled or self._link.closed:
            return
        self._due = True
        self._arm()

    def taken(self, message: DeliveredMessage) -> None:
        """A consumer of this queue object took (and acks) a sync message."""
        if message.header.properties.message_id == self._id and self._unseen:
            self._unseen -= 1
            if not self._unseen:
                self._back.set()

    async def settle(self) -> None:
        """Before the consumer unsubscribes: sync what is unsynced, take our message back.

        A sync message left in the queue after every consumer went away would be counted
        as a waiting job; the consumer stays subscribed (up to `SETTLE_WITHIN`, with
        `make_room` giving it a free prefetch slot) until it has taken its own back, or
        another consumer has (then the wait runs out).
        """
        if not self.enabled:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._fire()
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._unseen:
            self._back.clear()
            await self._make_room()
            await self._wait_back()
            self._unseen = 0  # not back: another consumer took it

    async def _wait_back(self) -> bool:
        """Wait up to `SETTLE_WITHIN` for our sync messages to come back; True if they did."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SETTLE_WITHIN):
                await self._back.wait()
        return self._back.is_set()

    def close(self) -> None:
        """Stop publishing (the connection closes next)."""
        self.enabled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._task is not None:
            self._task.cancel()

    def _arm(self) -> None:
        if self._timer is not None or self._task is not None:
            return
        delay = max(0.0, self._last + SYNC_INTERVAL - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._task = asyncio.ensure_future(self._publish())

    async def _publish(self) -> None:
        self._due = False
        self._last = time.monotonic()
        self._unseen += 1
        properties = Basic.Properties(
            delivery_mode=2,
            priority=self._priority,
            message_type=SYNC_MESSAGE_TYPE,
            message_id=self._id,
        )
        try:
            await self._link.publish(
                b"", routing_key=self._link.queue_name, properties=properties, mandatory=False
            )
        except _PUBLISH_ERRORS as exc:
            # The connection is gone; acks on its channels died with it (their jobs go
            # back to the queue anyway), and a sync message may or may not be queued.
            logger.debug("Sync message to %r not confirmed: %s", self._link.queue_name, exc)
        finally:
            self._task = None
            if self._due and self.enabled:
                self._arm()
