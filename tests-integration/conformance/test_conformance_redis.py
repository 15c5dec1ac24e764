"""The shipped conformance kit, run in full against RedisTaskQueue on a real server.

Each test gets its own key prefix; every call of ``make_queue`` is another handle (with
its own connection pool) on the same queue, as a second worker process would have.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.tasks.backends.redis import RedisTaskQueue
from lexigram.tasks.testing import QueueConformance, QueueFactory

pytestmark = pytest.mark.redis


async def _delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{{{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


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
