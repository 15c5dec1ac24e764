"""The shipped workflow run-store kit against `PostgresWorkflowStateStore` (real PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks.backends.postgres import backend
from lexigram.tasks.testing import (
    RunStoreFactory,
    WorkflowRunJobsConformance,
    WorkflowRunListingConformance,
    WorkflowRunStoreConformance,
)

pytestmark = pytest.mark.postgres


@pytest_asyncio.fixture
async def make_run_store(
    postgres_dsn: str, pg_schema: str, unique_name: str
) -> AsyncIterator[RunStoreFactory]:
    """Stores on this test's namespace; the pool lets the kit's joins really overlap."""
    spec = TaskBackendSpec(
        name="pg",
        type="postgres",
        url=postgres_dsn,
        options={"schema": pg_schema, "namespace": f"ns-{unique_name}", "pool_max_size": 6},
    )
    made: list[Any] = []

    async def factory() -> Any:
        store = backend.create_workflow_state_store(spec)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


class TestPostgresRunStoreConformance(
    WorkflowRunStoreConformance, WorkflowRunJobsConformance, WorkflowRunListingConformance
):
    pass
