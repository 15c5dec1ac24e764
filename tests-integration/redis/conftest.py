"""Fixtures for the Redis integration tests: a unique key prefix per test, cleaned up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.tasks.backends.redis import RedisConnector, RedisTaskQueue


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key whose hash tag or name starts with `prefix` (SCAN, not KEYS)."""
    client = aioredis.Redis.from_url(url)
    try:
        for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
            batch = [key async for key in client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(batch), 500):
                await client.delete(*batch[start : start + 500])
    finally:
        await client.aclose()


@pytest.fixture
def key_prefix() -> str:
    """A key prefix no other test uses (every key this test makes starts with it)."""
    return f"lexigram-test-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def connector(redis_url: str, key_prefix: str) -> AsyncIterator[RedisConnector]:
    """A connector to the test Redis; the test's keys are deleted afterwards."""
    conn = RedisConnector(redis_url)
    yield conn
    await conn.close()
    await delete_prefix(redis_url, key_prefix)


@pytest_asyncio.fixture
async def make_redis_queue(
    redis_url: str, key_prefix: str
) -> AsyncIterator[Callable[..., RedisTaskQueue]]:
    """Factory of queues under the test's key prefix; all closed and deleted afterwards."""
    made: list[RedisTaskQueue] = []

    def factory(queue_name: str = "tasks", **options: object) -> RedisTaskQueue:
        queue = RedisTaskQueue(redis_url, queue_name, key_prefix=key_prefix, **options)  # type: ignore[arg-type]
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    await delete_prefix(redis_url, key_prefix)


@pytest_asyncio.fixture
async def redis_queue(make_redis_queue: Callable[..., RedisTaskQueue]) -> RedisTaskQueue:
    """A fresh queue with a 1 s visibility timeout."""
    return make_redis_queue(visibility_timeout=1.0)
