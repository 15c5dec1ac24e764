"""The batch ack's plan on a large jobs table: each entry finds its row by primary key.

asyncpg runs a prepared statement thousands of times, so PostgreSQL ends up running the
statement's generic plan, made without the arrays' contents. When the batch ack also
filtered on ``id = ANY($1)``, that plan turned, once the table held about a million rows,
into a nested loop that read the batch's entries again for every row it found: 100 x 100
per batch of 100, ten times the time of the plan that probes the primary key once per
entry. The table here gets a million narrow rows of another queue (enough for the
planner's size estimate), and the test reads the generic plan's actual loops.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.postgres import PostgresTaskQueue, migrate

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

FILLER_ROWS = 1_000_000
BATCH = 100


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", ()):
        found.extend(_nodes(child))
    return found


def _array(values: list[Any], sql_type: str) -> str:
    items = ", ".join(
        "NULL" if v is None else "'" + str(v).replace("'", "''") + "'" for v in values
    )
    return f"ARRAY[{items}]::{sql_type}[]"


async def test_the_batch_ack_reads_each_entry_once_on_a_million_rows(postgres_dsn: str) -> None:
    schema = f"lexigram_plans_{uuid.uuid4().hex[:8]}"
    await migrate(postgres_dsn, schema)
    conn = await asyncpg.connect(postgres_dsn)
    queue = PostgresTaskQueue(dsn=postgres_dsn, schema=schema, queue_name="plans")
    try:
        await conn.execute(
            f'INSERT INTO "{schema}".tasks (id, queue, payload) '  # noqa: S608 - a test's own schema
            "SELECT 'filler-' || g, 'filler', '\\x00'::bytea "
            f"FROM generate_series(1, {FILLER_ROWS}) AS g"
        )
        await queue.connect()
        await queue.enqueue_many([Job(name="noop", args=(n,)) for n in range(BATCH)])
        jobs = await queue.dequeue_batch(BATCH)
        assert len(jobs) == BATCH
        tokens = [str(job.lease_token).partition(":") for job in jobs]
        arguments = ", ".join(
            (
                _array([job.id for job in jobs], "text"),
                _array([seq for seq, _, _ in tokens], "bigint"),
                _array([count for _, _, count in tokens], "int"),
            )
        )
        ack_many = queue._sql.ack_many  # the statement the queue prepares for its acks

        explain = conn.transaction()
        await explain.start()
        try:  # EXPLAIN ANALYZE runs the DELETE: rolled back below
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE batch_ack(text[], bigint[], int[]) AS {ack_many}")
            raw = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE batch_ack({arguments})"
            )
            await conn.execute("DEALLOCATE batch_ack")
        finally:
            await explain.rollback()

        plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
        assert plan["Actual Rows"] == BATCH, "the generic plan did not delete the batch's rows"
        entry_scans = [node for node in _nodes(plan) if node["Node Type"] == "Function Scan"]
        assert entry_scans, "no scan of the batch's entries in the plan"
        loops = [node["Actual Loops"] for node in entry_scans]
        assert loops == [1] * len(entry_scans), (
            f"the batch's entries were read {loops} times: the generic plan joins every row "
            "against every entry on a large table"
        )
        # The queue's own acks settle the batch once each.
        acked = await asyncio.gather(
            *(queue.ack(job.id, lease_token=job.lease_token) for job in jobs)
        )
        assert acked == [True] * BATCH
    finally:
        await queue.close()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
