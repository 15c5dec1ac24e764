"""Queue-driven workflow runs on SQLite: the shipped run-store kit, two stores on one file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_asyncio

from lexigram.contracts.tasks import TaskBackendSpec
from lexigram.tasks.backends.sqlite import SQLiteBackend
from lexigram.tasks.testing import (
    RunStoreFactory,
    WorkflowRunJobsConformance,
    WorkflowRunListingConformance,
    WorkflowRunStoreConformance,
)


@pytest_asyncio.fixture
async def make_run_store(tmp_path: Path) -> AsyncIterator[RunStoreFactory]:
    """Stores on one database file, each as another worker process would open it."""
    spec = TaskBackendSpec(name="default", type="sqlite", url=f"sqlite:///{tmp_path}/wf.db")
    made: list[Any] = []

    async def factory() -> Any:
        store = SQLiteBackend().create_workflow_state_store(spec)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


class TestSQLiteRunStoreConformance(
    WorkflowRunStoreConformance, WorkflowRunJobsConformance, WorkflowRunListingConformance
):
    pass
