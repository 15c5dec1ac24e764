"""Bulk publishing with pipelined confirms: many publishes per socket write.

aiormq's `basic_publish` costs each message a coroutine, a lock round, a write-queue
hand-off and a socket send; at ~90 µs per message that, not the broker, bounded
`enqueue_many`. Here a chunk of messages is packed into one buffer (`PublishEncoder`)
and handed to the connection's writer at once, under the channel lock, after
registering one confirm future per delivery tag exactly as `basic_publish` does. The
broker's confirms (usually ``multiple=True`` acks) resolve them through aiormq's own
frame handling, so a returned or nacked message and a closed channel behave as they do
for a single publish.

This uses a few aiormq `Channel` attributes that are public in practice but not in
its documented API (``lock``, ``delivery_tag``, ``confirmations``,
``message_id_delivery_tag``, ``write_queue``, ``max_content_size``). `supports_bulk`
checks them; when a future aiormq lacks one, `enqueue_many` falls back to one
`basic_publish` per message.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiormq
from aiormq.abc import ChannelFrame
from pamqp.commands import Basic

from lexigram.tasks.backends.rabbitmq._frames import Outgoing, PublishEncoder

_REQUIRED = (
    "lock",
    "delivery_tag",
    "confirmations",
    "message_id_delivery_tag",
    "write_queue",
    "max_content_size",
    "create_future",
    "number",
)
_FRAME_OVERHEAD = 8
_CHUNK_MAX = 512  # messages per socket write; bounds the buffer a chunk builds


class Published(enum.Enum):
    """What the broker answered to a confirmed publish."""

    ACK = "ack"
    NACK = "nack"
    RETURNED = "returned"
    UNKNOWN = "unknown"
    """Bulk publishes only: no answer because the channel or connection went away. The
    message may or may not be on the broker; the caller publishes it again (after the
    reconnect)."""
    UNCONFIRMED = "unconfirmed"
    """Bulk publishes only: no answer within the timeout while the connection stayed up
    (a slow or blocked broker, e.g. a memory alarm). The message may still arrive, so
    publishing it again would only queue a copy behind it; the caller reports it."""


def supports_bulk(channel: Any) -> bool:
    """True if `channel` is an aiormq channel with confirms this module can drive."""
    return bool(getattr(channel, "publisher_confirms", False)) and all(
        hasattr(channel, name) for name in _REQUIRED
    )


@dataclass(slots=True)
class _Chunk:
    first: int
    messages: Sequence[Outgoing]
    tags: list[int]
    futures: list[asyncio.Future[Any]]
    drained: asyncio.Future[None]


class BulkPublisher:
    """Publishes messages on one aiormq confirm channel with a window of confirms.

    Args:
        channel: An open aiormq channel in confirm mode (see `supports_bulk`).
        window: Most messages unconfirmed at once.
        mandatory: Ask the broker to return unroutable messages.
        delivery_mode: 2 for persistent messages, 1 for transient ones.
    """

    def __init__(
        self,
        channel: Any,
        *,
        window: int,
        mandatory: bool = True,
        delivery_mode: int = 2,
    ) -> None:
        self.channel = channel
        self._window = max(1, window)
        self._chunk_size = max(1, min(_CHUNK_MAX, self._window // 2))
        self._encoder = PublishEncoder(
            channel.number,
            int(channel.max_content_size) + _FRAME_OVERHEAD,
            mandatory=mandatory,
            content_type="application/json",
            delivery_mode=delivery_mode,
        )

    async def publish(self, messages: Sequence[Outgoing], deadline: float) -> list[Published]:
        """Publish `messages` in order; return one `Published` value per message.

        Args:
            messages: What to publish.
            deadline: `time.monotonic()` by which every confirm must have come; what has
                none by then is UNCONFIRMED (or UNKNOWN if the channel closed).
        """
        outcomes = [Published.UNKNOWN] * len(messages)
        pending: deque[_Chunk] = deque()
        in_flight = 0
        for first in range(0, len(messages), self._chunk_size):
            part = messages[first : first + self._chunk_size]
            while pending and in_flight + len(part) > self._window:
                done = pending.popleft()
                in_flight -= len(done.messages)
                await self._settle(done, outcomes, deadline)
            try:
                chunk = await self._write(first, part, deadline)
            except (aiormq.exceptions.AMQPError, RuntimeError, ConnectionError):
                break  # the channel is gone: this chunk and the rest stay UNKNOWN
            except TimeoutError:
                break  # the writer is stuck on a blocked socket: the rest is UNCONFIRMED
            pending.append(chunk)
            in_flight += len(part)
            # Waiting for the socket to take the bytes gives TCP backpressure to a huge
            # batch. Not drained by the deadline (a blocked connection, e.g. a broker
            # memory alarm): stop writing; the rest is UNCONFIRMED.
            remaining = max(deadline - time.monotonic(), 0.0)
            if remaining == 0 or not (await asyncio.wait([chunk.drained], timeout=remaining))[0]:
                break
        while pending:
            await self._settle(pending.popleft(), outcomes, deadline)
        if not self.channel.is_closed:  # timed out on a live connection: not a lost one
            outcomes = [
                Published.UNCONFIRMED if outcome is Published.UNKNOWN else outcome
                for outcome in outcomes
            ]
        return outcomes

    async def _write(self, first: int, part: Sequence[Outgoing], deadline: float) -> _Chunk:
        channel = self.channel
        payload = b"".join(self._encoder.encode(message) for message in part)
        tags: list[int] = []
        futures: list[asyncio.Future[Any]] = []
        drained: asyncio.Future[None] = channel.create_future()
        # A broker that blocks publishers stops reading the socket: aiormq's writer then
        # waits on it forever, its frame queue fills, and the lock's holder waits behind
        # it. Both waits end at the deadline (TimeoutError), before anything was queued.
        async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)), channel.lock:
            base = channel.delivery_tag
            for offset, message in enumerate(part, start=1):
                future = channel.create_future()
                channel.confirmations[base + offset] = future
                channel.message_id_delivery_tag[message.message_id] = base + offset
                tags.append(base + offset)
                futures.append(future)
            channel.delivery_tag = base + len(part)
            try:
                frame = ChannelFrame(payload=payload, should_close=False, drain_future=drained)
                await channel.write_queue.put(frame)
            except BaseException:
                # The broker has not seen these publishes: give their tags back.
                channel.delivery_tag = base
                for tag, future, message in zip(tags, futures, part, strict=True):
                    channel.confirmations.pop(tag, None)
                    if channel.message_id_delivery_tag.get(message.message_id) == tag:
                        del channel.message_id_delivery_tag[message.message_id]
                    future.cancel()
                drained.cancel()
                raise
        return _Chunk(first, part, tags, futures, drained)

    async def _settle(self, chunk: _Chunk, outcomes: list[Published], deadline: float) -> None:
        remaining = max(deadline - time.monotonic(), 0.0)
        if remaining > 0:
            await asyncio.wait(chunk.futures, timeout=remaining)
        ids = self.channel.message_id_delivery_tag
        for offset, (future, tag, message) in enumerate(
            zip(chunk.futures, chunk.tags, chunk.messages, strict=True)
        ):
            if ids.get(message.message_id) == tag:
                del ids[message.message_id]
            outcomes[chunk.first + offset] = _outcome(future)


def _outcome(future: asyncio.Future[Any]) -> Published:
    if not future.done() or future.cancelled():
        return Published.UNKNOWN
    error = future.exception()
    if error is not None:
        if isinstance(error, aiormq.exceptions.PublishError):
            return Published.RETURNED
        if isinstance(error, aiormq.exceptions.DeliveryError):
            return Published.NACK
        return Published.UNKNOWN
    answer = future.result()
    if isinstance(answer, Basic.Ack) or answer is None:
        return Published.ACK
    # aio-pika's channels answer a returned message with the message itself.
    return Published.NACK if isinstance(answer, Basic.Nack | Basic.Reject) else Published.RETURNED
