"""How the bulk path reads each confirm future, and when it refuses to drive a channel."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import aiormq
from pamqp.commands import Basic

from lexigram.tasks.backends.rabbitmq._bulk import Published, _outcome, supports_bulk


async def settled(value: Any = None, error: BaseException | None = None) -> asyncio.Future[Any]:
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
    return future


async def test_each_broker_answer_maps_to_its_outcome() -> None:
    assert _outcome(await settled(Basic.Ack(delivery_tag=1))) is Published.ACK
    assert _outcome(await settled(Basic.Nack(delivery_tag=1))) is Published.NACK
    returned = object()  # aio-pika's channels answer a returned message with the message
    assert _outcome(await settled(returned)) is Published.RETURNED
    nack = aiormq.exceptions.DeliveryError(None, Basic.Nack(delivery_tag=1))
    assert _outcome(await settled(error=nack)) is Published.NACK
    message: Any = SimpleNamespace(delivery=Basic.Return())
    publish_error = aiormq.exceptions.PublishError(message, Basic.Return())
    assert _outcome(await settled(error=publish_error)) is Published.RETURNED


async def test_no_answer_is_unknown_so_the_job_is_published_again() -> None:
    pending: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    assert _outcome(pending) is Published.UNKNOWN
    closed = aiormq.exceptions.ChannelInvalidStateError("channel closed")
    assert _outcome(await settled(error=closed)) is Published.UNKNOWN
    cancelled: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    cancelled.cancel()
    assert _outcome(cancelled) is Published.UNKNOWN


def test_a_channel_without_confirms_or_the_internals_is_not_driven_in_bulk() -> None:
    class Channel:
        publisher_confirms = True
        lock = delivery_tag = confirmations = message_id_delivery_tag = None
        write_queue = max_content_size = create_future = number = None

    assert supports_bulk(Channel())
    no_confirms = Channel()
    no_confirms.publisher_confirms = False
    assert not supports_bulk(no_confirms)

    class Older:
        publisher_confirms = True
        lock = delivery_tag = confirmations = None

    assert not supports_bulk(Older())
