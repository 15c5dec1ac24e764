"""The shipped workflow run-store kit against `PostgresWorkflowStateStore` (real PostgreSQL).

`list_runs` must read its page through an index (``stores v9``): before it, each call
read and sorted every run of its namespace, and runs stay until deleted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from lexigram.contracts.tasks import TaskBackendSpec, WorkflowStatus
from lexigram.tasks.backends.postgres import backend, migrate
from lexigram.tasks.backends.postgres._schema import QUEUE_MIGRATIONS
from lexigram.tasks.testing import (
    RunStoreFactory,
    WorkflowRunJobsConformance,
    WorkflowRunListingConformance,
    WorkflowRunStoreConformance,
)

pytestmark = pytest.mark.postgres

DropSchema = Callable[[str, str], Awaitable[None]]  # the top conftest's drop_pg_schema


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


# -- listing through the indexes of stores v9 ---------------------------------------------

RUNS = 20_000  # per namespace, two namespaces: enough that a sort would be the planner's loss
FAILED_EVERY = 100  # one run in a hundred failed


def _plan_nodes(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    """Every node of a JSON plan: its type and the index it reads (if any)."""
    nodes = [(str(plan["Node Type"]), plan.get("Index Name"))]
    for child in plan.get("Plans", ()):
        nodes.extend(_plan_nodes(child))
    return nodes


@pytest_asyncio.fixture
async def many_runs(
    postgres_dsn: str, pg_conn: asyncpg.Connection, drop_pg_schema: DropSchema
) -> AsyncIterator[str]:
    """A migrated schema of its own holding `RUNS` runs in each of two namespaces."""
    schema = f"lexigram_runs_{uuid.uuid4().hex[:8]}"
    await migrate(postgres_dsn, schema)
    try:
        for namespace in ("listed", "other"):
            await pg_conn.execute(
                f'INSERT INTO "{schema}".workflow_runs '  # noqa: S608 - a test's own schema
                "(namespace, workflow_id, status, definition, created_at, updated_at) "
                "SELECT $1, 'run-' || lpad(g::text, 6, '0'), "
                f"CASE WHEN g % {FAILED_EVERY} = 0 THEN 'failed' ELSE 'completed' END, "
                "'{}'::json, timestamptz '2024-01-01' + make_interval(secs => g), "
                "timestamptz '2024-01-01' + make_interval(secs => g) "
                f"FROM generate_series(1, {RUNS}) AS g",
                namespace,
            )
        await pg_conn.execute(f'ANALYZE "{schema}".workflow_runs')
        yield schema
    finally:
        await drop_pg_schema(postgres_dsn, schema)


@pytest.mark.parametrize("filtered", [False, True], ids=["every-run", "one-status"])
@pytest.mark.parametrize("plan_mode", ["auto", "force_generic_plan"])
async def test_list_runs_walks_an_index_instead_of_sorting_the_namespace(
    postgres_dsn: str,
    pg_conn: asyncpg.Connection,
    many_runs: str,
    filtered: bool,
    plan_mode: str,
) -> None:
    """The page comes from a backward index walk, also under a prepared statement's
    generic plan (asyncpg prepares every statement), and in the listing's order."""
    spec = TaskBackendSpec(
        name="pg", type="postgres", url=postgres_dsn,
        options={"schema": many_runs, "namespace": "listed"},
    )  # fmt: skip
    store = backend.create_workflow_state_store(spec)
    try:
        sql = store._listing_sql(filtered=filtered)
        args = ("listed", 10, *(("failed",) if filtered else ()))
        await pg_conn.execute(f"SET plan_cache_mode = {plan_mode}")
        raw = await pg_conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
        nodes = _plan_nodes(json.loads(raw)[0]["Plan"])
        index = "workflow_runs_status_idx" if filtered else "workflow_runs_created_idx"
        assert ("Index Scan", index) in nodes, nodes
        assert not any(node == "Sort" for node, _ in nodes), nodes

        status = WorkflowStatus.FAILED if filtered else None
        listed = await store.list_runs(status=status, limit=3)
    finally:
        await pg_conn.execute("RESET plan_cache_mode")
        await store.close()
    step = FAILED_EVERY if filtered else 1
    newest = [RUNS - n * step for n in range(3)]
    assert [run["workflow_id"] for run in listed] == [f"run-{g:06d}" for g in newest]


async def test_stores_v9_indexes_the_runs_an_earlier_version_wrote(
    postgres_dsn: str, pg_conn: asyncpg.Connection, stores_schema_at: Any
) -> None:
    schema = await stores_schema_at(8, queue=len(QUEUE_MIGRATIONS))  # the release before
    await pg_conn.execute(
        f'INSERT INTO "{schema}".workflow_runs (namespace, workflow_id, status, definition) '  # noqa: S608 - a test's own schema
        "SELECT 'old', 'old-' || g, 'running', '{}'::json FROM generate_series(1, 3) AS g"
    )
    assert await migrate(postgres_dsn, schema) == ["stores v9 workflow runs indexed for listing"]
    indexes = {
        row["indexname"]
        for row in await pg_conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2",
            schema,
            "workflow_runs",
        )
    }
    assert {"workflow_runs_created_idx", "workflow_runs_status_idx"} <= indexes
    spec = TaskBackendSpec(
        name="pg", type="postgres", url=postgres_dsn,
        options={"schema": schema, "namespace": "old"},
    )  # fmt: skip
    store = backend.create_workflow_state_store(spec)
    try:
        listed = await store.list_runs(status=WorkflowStatus.RUNNING)
    finally:
        await store.close()
    assert sorted(run["workflow_id"] for run in listed) == ["old-1", "old-2", "old-3"]
