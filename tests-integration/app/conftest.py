"""Fixtures for the application tests: a unique Redis key prefix per test, cleaned up."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
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


SucceededBy = Callable[[dict[str, int]], Awaitable[dict[str, Any]]]


@pytest.fixture
def succeeded_by() -> Callable[[Any], SucceededBy]:
    """`(await succeeded_by(provider)({"pool": n, ...}))`: the stats once each pool counts n.

    A job is counted once its settle call held (its ack returned), which comes after the
    handler's own effects a test waits for: the counts are awaited, not read at once.
    """

    def of(provider: Any) -> SucceededBy:
        async def wait(expected: dict[str, int]) -> dict[str, Any]:
            deadline = time.monotonic() + 10.0
            while True:
                stats = provider.get_worker_stats()
                assert stats is not None
                pools = stats["pools"]
                counted = {name: pools[name]["total_jobs_succeeded"] for name in expected}
                if counted == expected or time.monotonic() > deadline:
                    assert counted == expected
                    return dict(stats)
                await asyncio.sleep(0.01)

        return wait

    return of
