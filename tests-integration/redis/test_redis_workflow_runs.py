"""The shipped workflow run-store kit against `RedisWorkflowStateStore` (real Redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from lexigram.tasks.backends.redis import RedisConnector, RedisWorkflowStateStore
from lexigram.tasks.testing import (
    RunStoreFactory,
    WorkflowRunJobsConformance,
    WorkflowRunListingConformance,
    WorkflowRunStoreConformance,
)

pytestmark = pytest.mark.redis


@pytest_asyncio.fixture
async def make_run_store(
    redis_url: str, key_prefix: str, connector: RedisConnector
) -> AsyncIterator[RunStoreFactory]:
    """Stores with connections of their own, as worker processes have.

    The `connector` fixture deletes the test's keys afterwards.
    """
    made: list[RedisWorkflowStateStore] = []

    async def factory() -> Any:
        store = RedisWorkflowStateStore(redis_url, key_prefix=key_prefix)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


class TestRedisRunStoreConformance(
    WorkflowRunStoreConformance, WorkflowRunJobsConformance, WorkflowRunListingConformance
):
    pass
