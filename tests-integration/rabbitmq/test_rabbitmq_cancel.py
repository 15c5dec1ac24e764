"""Cancelling jobs on RabbitMQ: the kit's cancellation theme on a real broker.

Every ``make_queue`` call is another handle (its own connection) on the same queue: the
cancel goes through one handle and reaches the worker on the other through the
queue's ``<queue>.cancel`` fanout exchange. It runs with the in-process job-state
store (handles of one process share it) and with a shared Redis state store, the
setting for producers and workers in separate processes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import CancelOutcome, Job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.redis import RedisCacheBackend
from lexigram.tasks.testing import QueueCancellationConformance, QueueFactory

pytestmark = pytest.mark.rabbitmq

Broker = Any  # the `broker` fixture's class lives in conftest (not importable by rule)


@pytest.fixture
def make_queue(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue], lease_seconds: float
) -> QueueFactory:
    async def factory() -> RabbitMQTaskQueue:
        queue = make_rabbitmq_queue(visibility_timeout=lease_seconds)
        await queue.connect()
        return queue

    return factory


class TestRabbitMQCancellation(QueueCancellationConformance):
    pass


class TestRabbitMQSharedStateCancellation(QueueCancellationConformance):
    @pytest_asyncio.fixture
    async def make_queue(
        self,
        make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue],
        redis_url: str,
        lease_seconds: float,
    ) -> AsyncIterator[QueueFactory]:
        store = RedisCacheBackend(redis_url, key_prefix=f"lexigram-test-{uuid.uuid4().hex[:8]}")

        async def factory() -> RabbitMQTaskQueue:
            queue = make_rabbitmq_queue(visibility_timeout=lease_seconds, state_store=store)
            await queue.connect()
            return queue

        yield factory
        for key in await store.keys(""):
            await store.delete(key)
        await store.close()


async def test_a_cancelled_running_job_leaves_nothing_on_the_broker(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue], queue_name: str, broker: Broker
) -> None:
    # What the worker does after the notice: it acks the delivery it held. The broker
    # must then hold the job nowhere: not waiting, and not dead-lettered to <queue>.dlx.
    holder = make_rabbitmq_queue(visibility_timeout=5.0)
    canceller = make_rabbitmq_queue(visibility_timeout=5.0)
    job_id = (await canceller.enqueue(Job(name="cancel.me"))).unwrap()
    [job] = await holder.dequeue_batch(1, timeout=5.0)
    assert await canceller.cancel(job_id) is CancelOutcome.STOPPING
    await holder.ack(job.id, lease_token=job.lease_token)
    await holder.close()
    await asyncio.sleep(0.2)  # the close returns unacked messages; there must be none
    assert await broker.depth(queue_name) == 0
    assert await broker.depth(f"{queue_name}.dlx") == 0
    assert await canceller.get_job(job_id) is None
