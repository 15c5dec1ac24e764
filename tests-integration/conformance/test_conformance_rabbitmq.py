"""The shipped conformance kit against RabbitMQTaskQueue on a real broker.

Every theme runs, the poison theme included (`plant_raw_payload` publishes raw bytes
straight to the queue). AMQP has no lease of its own while a consumer lives, so the
queue keeps one per delivery (`visibility_timeout`): a job neither acked nor extended
in time is given back to the broker, and its old lease token is refused from then on.

The kit runs twice: with the default in-process job-state store (every ``make_queue``
handle has its own; idempotency keys are claimed on the broker), and with a shared
Redis state store (all handles share one), the setting for producers and workers in
separate processes.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiormq
import pytest
import pytest_asyncio
from pamqp.commands import Basic

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.testing import QueueConformance, QueueFactory, QueuePoisonConformance

pytestmark = pytest.mark.rabbitmq


async def _remove(amqp_url: str, name: str) -> None:
    """Delete every broker object the queue made (its claims included)."""
    queue = RabbitMQTaskQueue(amqp_url, name)
    try:
        await queue.delete_queues(if_empty=False)
    finally:
        await queue.close()


class _RabbitMQKit(QueueConformance, QueuePoisonConformance):
    """Every theme of the kit, plus the poison theme."""

    amqp_url = ""

    @pytest.fixture(autouse=True)
    def _remember_url(self, amqp_url: str) -> None:
        self.amqp_url = amqp_url

    async def plant_raw_payload(self, queue: TaskQueueProtocol, raw: bytes) -> str:
        """Publish `raw` to the queue as a producer that does not speak our envelope."""
        job_id = f"raw-{uuid.uuid4().hex[:12]}"
        connection = await aiormq.connect(self.amqp_url)
        try:
            channel = await connection.channel()
            await channel.basic_publish(
                raw,
                routing_key=queue.queue_name,
                properties=Basic.Properties(message_id=job_id, delivery_mode=2),
            )
        finally:
            await connection.close()
        return job_id


@pytest_asyncio.fixture
async def make_queue(amqp_url: str, lease_seconds: float) -> AsyncIterator[QueueFactory]:
    name = f"conformance-{uuid.uuid4().hex[:8]}"
    made: list[RabbitMQTaskQueue] = []

    async def factory() -> RabbitMQTaskQueue:
        queue = RabbitMQTaskQueue(amqp_url, name, visibility_timeout=lease_seconds)
        await queue.connect()  # declares the queue, so a raw publish finds it
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    await _remove(amqp_url, name)


class TestRabbitMQQueueConformance(_RabbitMQKit):
    pass


class TestRabbitMQSharedStateConformance(_RabbitMQKit):
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
            await queue.connect()
            made.append(queue)
            return queue

        yield factory
        for queue in made:
            await queue.close()
        for key in await store.keys(""):
            await store.delete(key)
        await store.close()
        await _remove(amqp_url, name)
