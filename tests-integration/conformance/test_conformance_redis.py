"""The shipped conformance kit, run in full against RedisTaskQueue on a real server.

Each test gets its own key prefix; every call of ``make_queue`` is another handle (with
its own connection pool) on the same queue, as a second worker process would have.
The kit's default margins hold unwidened. The Redis Cluster run is in
``tests-integration/redis/test_redis_cluster.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.contracts.tasks import TaskQueueProtocol
from lexigram.tasks.backends.redis import RedisTaskQueue
from lexigram.tasks.testing import (
    QueueConformance,
    QueueFactory,
    QueueLeaseRenewerConformance,
    QueuePoisonConformance,
)

pytestmark = pytest.mark.redis


async def _delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{{{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def plant_raw(queue: TaskQueueProtocol, raw: bytes) -> str:
    """Store `raw` as a waiting job's payload through the queue's own enqueue script.

    The script stores the payload bytes as given, exactly where `enqueue` puts an
    encoded job, and makes the id ready (and wakes a blocked consumer).
    """
    assert isinstance(queue, RedisTaskQueue)
    job_id = f"poison-{uuid.uuid4().hex[:12]}"
    # One enqueue-script entry: id, payload, priority, ready-at (0 = now), idempotency
    # key and ttl, delivery count, retrying flag.
    entry = (job_id, raw, 0, 0, "", 0, 0, "0")
    [(status, stored)] = await queue._enqueue_entries([entry])
    assert (status, stored) == (1, job_id)
    return job_id


@pytest_asyncio.fixture
async def make_queue(redis_url: str, lease_seconds: float) -> AsyncIterator[QueueFactory]:
    prefix = f"lexigram-conformance-{uuid.uuid4().hex[:8]}"
    made: list[RedisTaskQueue] = []

    async def factory() -> RedisTaskQueue:
        queue = RedisTaskQueue(
            redis_url,
            "conformance",
            key_prefix=prefix,
            visibility_timeout=lease_seconds,
        )
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    await _delete_prefix(redis_url, prefix)


class TestRedisQueueConformance(QueueConformance):
    pass


class TestRedisQueuePoisonConformance(QueuePoisonConformance):
    async def plant_raw_payload(self, queue: TaskQueueProtocol, raw: bytes) -> str:
        return await plant_raw(queue, raw)


class TestRedisLeaseRenewerConformance(QueueLeaseRenewerConformance):
    """Leases renewed from the worker's lease keeper thread (its own connection)."""
