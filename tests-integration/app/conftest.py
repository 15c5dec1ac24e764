"""Fixtures for the application tests: a unique Redis key prefix per test, cleaned up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

Delete = Callable[[str, str], Awaitable[None]]  # the top conftest's delete_* fixtures


@pytest_asyncio.fixture
async def key_prefix(redis_url: str, delete_redis_prefix: Delete) -> AsyncIterator[str]:
    """A Redis key prefix no other test uses; its keys are deleted after the test."""
    prefix = f"lexigram-app-{uuid.uuid4().hex[:8]}"
    yield prefix
    await delete_redis_prefix(redis_url, prefix)


@pytest_asyncio.fixture
async def amqp_queue_name(amqp_url: str, delete_rabbitmq_family: Delete) -> AsyncIterator[str]:
    """A RabbitMQ queue name no other test uses; its queues are deleted after the test."""
    name = f"lexigram-app-{uuid.uuid4().hex[:8]}"
    yield name
    await delete_rabbitmq_family(amqp_url, name)
