"""``dequeue()`` finds a job its own idle consumer is handing back to the queue.

A consumer nobody takes jobs from for a moment unsubscribes and re-publishes what the
broker pushed it (a copy, confirmed, then the original acked). Until that copy is
confirmed the job is in neither the queue nor the local buffer, and ``dequeue()`` found
nothing: under load the conformance kit's idempotency test read ``[]`` for the job it
had just enqueued. Here the hand-back is slowed down so that the window is wide.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.rabbitmq._delivery import Delivery

pytestmark = pytest.mark.rabbitmq

SLOW_CONFIRM = 0.3
"""Seconds every hand-back waits before it publishes its copy (a slow broker)."""


async def test_dequeue_waits_for_the_jobs_its_consumer_is_handing_back(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue],
) -> None:
    queue = make_rabbitmq_queue()
    republisher = queue._republisher
    send_back = republisher.send_back
    handed_back: list[str] = []

    async def slowly(delivery: Delivery) -> None:
        handed_back.append(delivery.job.id)
        await asyncio.sleep(SLOW_CONFIRM)
        await send_back(delivery)

    republisher.send_back = slowly  # type: ignore[method-assign]
    await queue.enqueue(Job(name="first"))
    [first] = await queue.dequeue_batch(1, timeout=5.0)  # subscribes the consumer
    assert await queue.ack(first.id, lease_token=first.lease_token) is True
    second = Job(name="second")
    await queue.enqueue(second)
    # The broker pushes it into the free prefetch slot; nobody asks for jobs, so the
    # consumer goes idle and starts handing it back.
    deadline = asyncio.get_running_loop().time() + 5.0
    while not handed_back:
        assert asyncio.get_running_loop().time() < deadline, "the consumer never went idle"
        await asyncio.sleep(0.01)
    got = await queue.dequeue()
    assert got is not None, "dequeue() missed a job its consumer was putting back"
    assert got.id == second.id
    assert await queue.ack(got.id, lease_token=got.lease_token) is True
    assert await queue.dequeue() is None
