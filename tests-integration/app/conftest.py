"""Fixtures for the application tests: a unique Redis key prefix per test, cleaned up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest_asyncio
import redis.asyncio as aioredis


async def _delete_prefix(url: str, prefix: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        for pattern in (f"{{{prefix}:*", f"{prefix}:*", f"{{{prefix}}}*"):
            batch = [key async for key in client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(batch), 500):
                await client.delete(*batch[start : start + 500])
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def key_prefix(redis_url: str) -> AsyncIterator[str]:
    """A Redis key prefix no other test uses; its keys are deleted after the test."""
    prefix = f"lexigram-app-{uuid.uuid4().hex[:8]}"
    yield prefix
    await _delete_prefix(redis_url, prefix)
