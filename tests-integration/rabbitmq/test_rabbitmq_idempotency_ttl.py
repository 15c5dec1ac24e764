"""Idempotency keys on RabbitMQ against the rule every backend follows, on a real broker.

A key is held for `idempotency_ttl` from its enqueue and for as long as its job waits or
runs. With a job-state store (a shared one, or the in-process one with
``broker_idempotency=False``) the queue follows the rule: the kit's idempotency theme
runs with a short TTL. Keys claimed on the broker (the default without a shared store)
are held for the TTL only, as docs/backends/rabbitmq.md says; the last test pins that.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job, Ok
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.testing import (
    KeyTTLQueueFactory,
    QueueFactory,
    QueueIdempotencyConformance,
)

pytestmark = pytest.mark.rabbitmq


async def _remove(amqp_url: str, name: str) -> None:
    queue = RabbitMQTaskQueue(amqp_url, name)
    try:
        await queue.delete_queues(if_empty=False)
    finally:
        await queue.close()


class _Handles:
    """Queue objects on one queue name, all with the same options; removed at the end."""

    def __init__(self, amqp_url: str, **options: Any) -> None:
        self.amqp_url = amqp_url
        self.name = f"idem-ttl-{uuid.uuid4().hex[:8]}"
        self.options = options
        self.made: list[RabbitMQTaskQueue] = []

    async def make(self, **extra: Any) -> RabbitMQTaskQueue:
        queue = RabbitMQTaskQueue(self.amqp_url, self.name, **self.options, **extra)
        await queue.connect()
        self.made.append(queue)
        return queue

    async def close(self) -> None:
        for queue in self.made:
            await queue.close()
        await _remove(self.amqp_url, self.name)


class TestSharedStateKeysFollowTheRule(QueueIdempotencyConformance):
    """Keys in a shared (Redis) state store: held past the TTL while the job is queued."""

    @pytest_asyncio.fixture
    async def handles(self, amqp_url: str, redis_url: str) -> AsyncIterator[_Handles]:
        from lexigram.tasks.backends.redis import RedisCacheBackend

        prefix = f"lexigram-test-idem-{uuid.uuid4().hex[:8]}"
        store = RedisCacheBackend(redis_url, key_prefix=prefix)
        handles = _Handles(amqp_url, state_store=store)
        yield handles
        await handles.close()
        for key in await store.keys(""):
            await store.delete(key)
        await store.close()

    @pytest.fixture
    def make_queue(self, handles: _Handles, lease_seconds: float) -> QueueFactory:
        async def factory() -> RabbitMQTaskQueue:
            return await handles.make(visibility_timeout=lease_seconds)

        return factory

    @pytest.fixture
    def make_queue_with_idempotency_ttl(
        self, handles: _Handles, lease_seconds: float
    ) -> KeyTTLQueueFactory:
        async def factory(ttl: float) -> RabbitMQTaskQueue:
            return await handles.make(visibility_timeout=lease_seconds, idempotency_ttl=ttl)

        return factory


class TestInProcessKeysFollowTheRule(TestSharedStateKeysFollowTheRule):
    """Keys in the in-process store (``broker_idempotency=False``): the same rule."""

    @pytest_asyncio.fixture
    async def handles(self, amqp_url: str) -> AsyncIterator[_Handles]:  # type: ignore[override]
        handles = _Handles(amqp_url, broker_idempotency=False)
        yield handles
        await handles.close()


async def test_broker_claimed_key_is_held_for_its_ttl_only(amqp_url: str) -> None:
    """The documented deviation of keys claimed on the broker: the TTL alone holds them."""
    handles = _Handles(amqp_url, idempotency_ttl=1.0)
    try:
        queue = await handles.make()
        first = Job(name="slow", idempotency_key="cron-0800")
        assert await queue.enqueue(first) == Ok(first.id)
        assert await queue.enqueue(Job(name="slow", idempotency_key="cron-0800")) == Ok(first.id)
        await asyncio.sleep(1.5)  # the first job still waits
        second = Job(name="slow", idempotency_key="cron-0800")
        assert await queue.enqueue(second) == Ok(second.id)
        assert await queue.get_task_count() == 2
    finally:
        await handles.close()
