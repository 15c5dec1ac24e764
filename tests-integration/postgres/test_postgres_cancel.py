"""Cancelling jobs on PostgreSQL: the kit's cancellation theme, with the PostgreSQL stores.

Every ``make_queue`` call is another handle (its own pool) on the same queue, as another
process would have: the cancel goes through one handle and reaches the worker on the
other through the queue's NOTIFY channel for cancellations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import ResultStoreProtocol, TaskBackendSpec
from lexigram.tasks.backends.postgres import PostgresTaskQueue, backend
from lexigram.tasks.testing import QueueCancellationConformance, QueueFactory

pytestmark = pytest.mark.postgres


@pytest.fixture
def make_queue(
    make_pg_queue: Callable[..., PostgresTaskQueue], lease_seconds: float
) -> QueueFactory:
    async def factory() -> PostgresTaskQueue:
        return make_pg_queue(visibility_timeout=lease_seconds)

    return factory


class TestPostgresCancellation(QueueCancellationConformance):
    # An async fixture with arguments replaces the kit's plain one (mypy sees two types).
    @pytest_asyncio.fixture
    async def result_store(  # type: ignore[override]
        self, postgres_dsn: str, pg_schema: str, unique_name: str
    ) -> AsyncIterator[ResultStoreProtocol]:
        spec = TaskBackendSpec(
            name="pg",
            type="postgres",
            url=postgres_dsn,
            options={"schema": pg_schema, "namespace": f"cancel-{unique_name}"},
        )
        store = backend.create_result_store(spec)
        yield store
        await store.close()
