"""Cancelling jobs on Redis: the kit's cancellation theme, with the Redis result store.

Every ``make_queue`` call is another handle (its own connection pool) on the same
queue, as another process would have: the cancel goes through one handle and reaches
the worker on the other through the queue's pub/sub channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import ResultStoreProtocol
from lexigram.tasks.backends.redis import RedisResultStore, RedisTaskQueue
from lexigram.tasks.testing import QueueCancellationConformance, QueueFactory

pytestmark = pytest.mark.redis


@pytest.fixture
def make_queue(
    make_redis_queue: Callable[..., RedisTaskQueue], lease_seconds: float
) -> QueueFactory:
    async def factory() -> RedisTaskQueue:
        return make_redis_queue("cancel", visibility_timeout=lease_seconds)

    return factory


class TestRedisCancellation(QueueCancellationConformance):
    # An async fixture with arguments replaces the kit's plain one (mypy sees two types).
    @pytest_asyncio.fixture
    async def result_store(  # type: ignore[override]
        self, redis_url: str, key_prefix: str
    ) -> AsyncIterator[ResultStoreProtocol]:
        # The test's key prefix: make_redis_queue deletes its keys afterwards.
        store = RedisResultStore(redis_url, key_prefix=key_prefix)
        yield store
        await store.close()
