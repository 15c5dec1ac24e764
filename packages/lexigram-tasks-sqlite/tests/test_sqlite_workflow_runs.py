"""Queue-driven workflow runs on SQLite: the shipped run-store kit, two stores on one file.

`list_runs` must read its page through an index (schema version 7): before it, each
call read and sorted every run in the file, and runs stay until deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import (
    ListingWorkflowRunStoreProtocol,
    TaskBackendSpec,
    WorkflowStatus,
)
from lexigram.tasks.backends.sqlite import SQLiteBackend
from lexigram.tasks.backends.sqlite._runs import listing_sql
from lexigram.tasks.backends.sqlite._schema import MIGRATIONS, SCHEMA_VERSION
from lexigram.tasks.testing import (
    RunStoreFactory,
    WorkflowRunJobsConformance,
    WorkflowRunListingConformance,
    WorkflowRunStoreConformance,
)

_LISTING_INDEXES = {"lexigram_workflow_runs_created", "lexigram_workflow_runs_status"}


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


def _plan(conn: sqlite3.Connection, *, filtered: bool) -> list[str]:
    params = (WorkflowStatus.FAILED.value, 10) if filtered else (10,)
    return [
        str(row[3])
        for row in conn.execute(f"EXPLAIN QUERY PLAN {listing_sql(filtered=filtered)}", params)
    ]


def _listing_indexes(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?",
        ("lexigram_workflow_runs",),
    )
    return {str(row[0]) for row in rows} & _LISTING_INDEXES


@pytest.mark.parametrize("filtered", [False, True], ids=["every-run", "one-status"])
async def test_list_runs_walks_an_index_instead_of_sorting_the_runs(
    make_run_store: RunStoreFactory, tmp_path: Path, filtered: bool
) -> None:
    store = await make_run_store()
    assert isinstance(store, ListingWorkflowRunStoreProtocol)
    assert await store.list_runs() == []  # opens and migrates the file
    index = "lexigram_workflow_runs_status" if filtered else "lexigram_workflow_runs_created"
    with closing(sqlite3.connect(tmp_path / "wf.db")) as conn:
        plan = _plan(conn, filtered=filtered)
    assert any(index in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan


async def test_a_file_of_the_previous_version_gets_the_indexes_and_keeps_its_runs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("CREATE TABLE lexigram_schema (version INTEGER NOT NULL)")
        for version, statements in enumerate(MIGRATIONS[:-1], start=1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO lexigram_schema VALUES (?)", (version,))
        for n in range(3):
            conn.execute(
                "INSERT INTO lexigram_workflow_runs (workflow_id, status, definition, "
                "created_at, updated_at) VALUES (?, ?, '{}', ?, ?)",
                (f"old-{n}", WorkflowStatus.RUNNING.value, 1000.0 + n, 1000.0 + n),
            )
        # Without the indexes, the listing sorts the table (the plan this change removes).
        assert any("TEMP B-TREE" in step for step in _plan(conn, filtered=False))
    spec = TaskBackendSpec(name="default", type="sqlite", url=f"sqlite:///{path}")
    store = SQLiteBackend().create_workflow_state_store(spec)
    try:
        listed = await store.list_runs(status=WorkflowStatus.RUNNING, limit=2)
    finally:
        await store.close()
    assert [run["workflow_id"] for run in listed] == ["old-2", "old-1"]
    with closing(sqlite3.connect(path)) as conn:
        assert _listing_indexes(conn) == _LISTING_INDEXES
        versions = [row[0] for row in conn.execute("SELECT version FROM lexigram_schema")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
