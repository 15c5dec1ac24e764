"""The shipped conformance kit against RabbitMQTaskQueue on a real broker.

Every theme runs except `QueueLeaseConformance`: AMQP has no lease that expires while
its consumer lives (a job stays with its consumer until acked or until the connection
drops), so "a lease that runs out redelivers the job" cannot hold. The reason is listed
in docs/backends/rabbitmq.md; tests-integration/rabbitmq/test_rabbitmq_leases.py covers
what AMQP does instead (redelivery on connection loss, heartbeats that report a lost
delivery).

The kit runs twice: with the default in-process job-state store (every ``make_queue``
handle has its own), and with a shared Redis state store (all handles share one), the
setting for producers and workers in separate processes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiormq
import pytest
import pytest_asyncio

from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.testing import (
    QueueAcknowledgementConformance,
    QueueConcurrencyConformance,
    QueueFactory,
    QueueIdempotencyConformance,
    QueueJobManagementConformance,
    QueueOrderingConformance,
    QueueRoundTripConformance,
    QueueWaitConformance,
)

pytestmark = pytest.mark.rabbitmq


async def _delete_family(amqp_url: str, name: str) -> None:
    # The helper lives in the rabbitmq/ conftest; importing conftests is not allowed,
    # so the few lines are repeated here.
    connection = await aiormq.connect(amqp_url)
    try:
        channel = await connection.channel()
        names = [name, f"{name}.dlx"] + [f"{name}.delay.{1 << exp}ms" for exp in range(5, 32)]
        for queue in names:
            try:
                await channel.queue_delete(queue)
            except aiormq.exceptions.AMQPError:
                channel = await connection.channel()
        for exchange in (f"{name}.dlx", f"{name}.delayed"):
            try:
                await channel.exchange_delete(exchange)
            except aiormq.exceptions.AMQPError:
                channel = await connection.channel()
    finally:
        await connection.close()


class _RabbitMQThemes(
    QueueRoundTripConformance,
    QueueIdempotencyConformance,
    QueueOrderingConformance,
    QueueWaitConformance,
    QueueAcknowledgementConformance,
    QueueJobManagementConformance,
    QueueConcurrencyConformance,
):
    """Every theme of the kit except leases (see the module docstring)."""


@pytest_asyncio.fixture
async def make_queue(amqp_url: str, lease_seconds: float) -> AsyncIterator[QueueFactory]:
    name = f"conformance-{uuid.uuid4().hex[:8]}"
    made: list[RabbitMQTaskQueue] = []

    async def factory() -> RabbitMQTaskQueue:
        queue = RabbitMQTaskQueue(amqp_url, name, visibility_timeout=lease_seconds)
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    await _delete_family(amqp_url, name)


class TestRabbitMQQueueConformance(_RabbitMQThemes):
    pass


class TestRabbitMQSharedStateConformance(_RabbitMQThemes):
    @pytest_asyncio.fixture
    async def make_queue(
        self, amqp_url: str, redis_url: str, lease_seconds: float
    ) -> AsyncIterator[QueueFactory]:
        from lexigram.tasks.backends.redis import RedisCacheBackend

        name = f"conformance-{uuid.uuid4().hex[:8]}"
        store = RedisCacheBackend(redis_url, key_prefix=f"lexigram-test-{name}")
        made: list[RabbitMQTaskQueue] = []

        async def factory() -> RabbitMQTaskQueue:
            queue = RabbitMQTaskQueue(
                amqp_url, name, visibility_timeout=lease_seconds, state_store=store
            )
            made.append(queue)
            return queue

        yield factory
        for queue in made:
            await queue.close()
        for key in await store.keys(""):
            await store.delete(key)
        await store.close()
        await _delete_family(amqp_url, name)
