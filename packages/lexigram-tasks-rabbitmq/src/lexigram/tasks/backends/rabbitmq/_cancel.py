"""Cancellation announcements of a queue: a fanout exchange, ``<queue>.cancel``.

`announce` publishes a cancelled running job's id to the exchange; every subscriber
(`follow_cancellations`, one per worker) has an exclusive, auto-deleted queue bound to
it, so each one gets every announcement while its channel is open and nothing piles up
on the broker when it is gone. The announcement is a notice, not the cancellation:
`RabbitMQTaskQueue.cancel` tombstones the job first, so a worker that missed the
notice still drops the job at its next heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiormq.abc import AbstractChannel, DeliveredMessage

from lexigram.contracts.tasks import BackendConnectionError
from lexigram.tasks.backends.rabbitmq._connection import CONNECTION_ERRORS, AMQPLink
from lexigram.tasks.backends.rabbitmq._existing import exists
from lexigram.tasks.backends.rabbitmq._options import cancel_exchange_name
from lexigram.tasks.backends.rabbitmq._whole_rpc import whole_rpc


async def _declare(channel: AbstractChannel, exchange: str, *, passive: bool = False) -> None:
    # Not durable: announcements matter only to subscribers connected now, and each
    # subscriber declares it again when it subscribes. Passive: under must_exist.
    await channel.exchange_declare(exchange, exchange_type="fanout", durable=False, passive=passive)


async def announce(link: AMQPLink, job_id: str) -> None:
    """Tell every subscribed worker of the queue that `job_id` was cancelled.

    Raises:
        BackendConnectionError: The broker cannot be reached.
    """
    exchange = cancel_exchange_name(link.queue_name)
    action = "announce a cancellation"

    async def send(channel: AbstractChannel) -> None:
        if not link.options.must_exist:
            await _declare(channel, exchange)
        elif not await exists(channel, "exchange", exchange):
            return  # no worker ever subscribed, so none is listening: nobody to tell
        await channel.basic_publish(job_id.encode(), exchange=exchange)

    try:
        await link.with_channel(action, send)
    except CONNECTION_ERRORS as exc:
        raise link.connection_error(action, exc) from exc


async def follow_cancellations(link: AMQPLink) -> AsyncIterator[str]:
    """Yield the id of every job of the queue announced as cancelled, until cancelled.

    Raises:
        BackendConnectionError: The subscription's channel or connection closed (the
            worker subscribes again).
    """
    exchange = cancel_exchange_name(link.queue_name)
    action = "subscribe to cancellations"
    channel = await link.open_channel(action)
    inbox: asyncio.Queue[str] = asyncio.Queue()

    async def received(message: DeliveredMessage) -> None:
        inbox.put_nowait(message.body.decode())

    async def subscribe() -> None:
        await _declare(channel, exchange, passive=link.options.must_exist)
        declared = await channel.queue_declare("", exclusive=True, auto_delete=True)
        name = str(declared.queue)  # the server-named queue
        await channel.queue_bind(name, exchange)
        await channel.basic_consume(name, received, no_ack=True)

    try:
        try:
            # A worker stopping mid-subscribe lets the calls finish (the close below
            # waits for them) rather than have aiormq close the channel with a WARNING.
            await whole_rpc(subscribe())
        except CONNECTION_ERRORS as exc:
            raise link.connection_error(action, exc) from exc
        while True:
            getter = asyncio.ensure_future(inbox.get())
            try:
                await asyncio.wait({getter, channel.closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not getter.done():
                    getter.cancel()
            if not getter.done() or getter.cancelled():
                msg = (
                    f"The subscription to job cancellations of queue {link.queue_name!r} at "
                    f"{link.masked_url} lost its channel. Workers subscribe again by themselves."
                )
                raise BackendConnectionError(msg)
            yield getter.result()
    finally:
        if not channel.is_closed:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await channel.close()
