"""The shipped conformance kit against RabbitMQTaskQueue on a real broker.

Every theme runs, the poison theme included (`plant_raw_payload` publishes raw bytes
straight to the queue). AMQP has no lease of its own while a consumer lives, so the
queue keeps one per delivery (`visibility_timeout`): a job neither acked nor extended
in time is given back to the broker, and its old lease token is refused from then on.

The kit runs twice: with the default in-process job-state store (every ``make_queue``
handle has its own; idempotency keys are claimed on the broker), and with a shared
Redis state store (all handles share one), the setting for producers and workers in
separate processes.

One rule differs by design with keys claimed on the broker (the first class): such a
key is held for `idempotency_ttl` only, not for as long as its job still waits
(docs/backends/rabbitmq.md); that class pins this in place of the kit's test. With the
shared store the kit's test runs as written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiormq
import pytest
import pytest_asyncio
from pamqp.commands import Basic

from lexigram.contracts.tasks import Job, Ok, TaskQueueProtocol
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.testing import (
    KeyTTLQueueFactory,
    QueueConformance,
    QueueFactory,
    QueuePoisonConformance,
)

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
    """Keys claimed on the broker (no shared state store, `broker_idempotency` on)."""

    # An async fixture with arguments replaces the kit's plain one (mypy sees two types).
    @pytest_asyncio.fixture
    async def make_queue_with_idempotency_ttl(  # type: ignore[override]
        self, amqp_url: str, lease_seconds: float
    ) -> AsyncIterator[KeyTTLQueueFactory]:
        name = f"conformance-{uuid.uuid4().hex[:8]}"
        made: list[RabbitMQTaskQueue] = []

        async def factory(ttl: float) -> RabbitMQTaskQueue:
            queue = RabbitMQTaskQueue(
                amqp_url, name, visibility_timeout=lease_seconds, idempotency_ttl=ttl
            )
            await queue.connect()
            made.append(queue)
            return queue

        yield factory
        for queue in made:
            await queue.close()
        await _remove(amqp_url, name)

    async def test_idempotency_key_held_while_its_job_outlives_the_ttl(
        self, make_queue_with_idempotency_ttl: KeyTTLQueueFactory
    ) -> None:
        """The documented deviation: a key claimed on the broker is held for its TTL only.

        The broker cannot tell whether the key's job still waits (docs/backends/rabbitmq.md,
        `idempotency_ttl`), so once the TTL passed a job with the key is a new job even
        while the first one is still in the queue.
        """
        ttl = self.key_ttl
        queue = await make_queue_with_idempotency_ttl(ttl)
        first = Job(name="conformance.noop", idempotency_key="slow-lane")
        assert await queue.enqueue(first) == Ok(first.id)
        assert await queue.enqueue(Job(name="conformance.noop", idempotency_key="slow-lane")) == (
            Ok(first.id)
        )
        await asyncio.sleep(ttl / 2)
        assert await queue.enqueue(Job(name="conformance.noop", idempotency_key="slow-lane")) == (
            Ok(first.id)
        ), "a key was given to a new job before its TTL passed"
        await asyncio.sleep(ttl / 2 + 0.5)  # the first job still waits
        second = Job(name="conformance.noop", idempotency_key="slow-lane")
        assert await queue.enqueue(second) == Ok(second.id), (
            "a key claimed on the broker was held past its TTL"
        )
        assert await queue.get_task_count() == 2


class TestRabbitMQSharedStateConformance(_RabbitMQKit):
    """Keys in a shared (Redis) job-state store: the kit's idempotency rules as written."""

    @pytest_asyncio.fixture
    async def shared_queues(
        self, amqp_url: str, redis_url: str
    ) -> AsyncIterator[Callable[..., Awaitable[RabbitMQTaskQueue]]]:
        """Connected handles on the test's queue, all on one Redis state store."""
        from lexigram.tasks.backends.redis import RedisCacheBackend

        name = f"conformance-{uuid.uuid4().hex[:8]}"
        store = RedisCacheBackend(redis_url, key_prefix=f"lexigram-test-{name}")
        made: list[RabbitMQTaskQueue] = []

        async def make(**options: Any) -> RabbitMQTaskQueue:
            queue = RabbitMQTaskQueue(amqp_url, name, state_store=store, **options)
            await queue.connect()
            made.append(queue)
            return queue

        yield make
        for queue in made:
            await queue.close()
        for key in await store.keys(""):
            await store.delete(key)
        await store.close()
        await _remove(amqp_url, name)

    @pytest.fixture
    def make_queue(
        self, shared_queues: Callable[..., Awaitable[RabbitMQTaskQueue]], lease_seconds: float
    ) -> QueueFactory:
        async def factory() -> RabbitMQTaskQueue:
            return await shared_queues(visibility_timeout=lease_seconds)

        return factory

    @pytest.fixture
    def make_queue_with_idempotency_ttl(
        self, shared_queues: Callable[..., Awaitable[RabbitMQTaskQueue]], lease_seconds: float
    ) -> KeyTTLQueueFactory:
        async def factory(ttl: float) -> RabbitMQTaskQueue:
            return await shared_queues(visibility_timeout=lease_seconds, idempotency_ttl=ttl)

        return factory
