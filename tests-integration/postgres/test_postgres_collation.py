"""Identifiers compare as bytes (``COLLATE "C"``), whatever the database's collation.

Under a linguistic collation every comparison of a job id or queue name in an index goes
through the locale (the W2 drain ran 8-10 % faster with "C" than under ICU's en-US), and
a prefix lookup, a range of the primary key, missed ids when the prefix ended in
punctuation such as a UUID's ``-``. ``queue v3`` and ``stores v7`` give every text column
that an index holds the "C" collation; here on a fresh schema, on a schema of the earlier
versions with rows in it, and on ids whose collation ignored punctuation at its first
level, as glibc's en_US does.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from lexigram.contracts.tasks import (
    Job,
    JobResult,
    TaskBackendSpec,
    encode_job,
    id_prefix_upper_bound,
)
from lexigram.tasks.backends.postgres import PostgresTaskQueue, backend, migrate
from lexigram.tasks.backends.postgres._lookup import queued_ids_sql

pytestmark = pytest.mark.postgres

# Every text column some index of the schema's tables holds, with its collation (the
# migrations' own bookkeeping aside).
_INDEXED_TEXT_COLUMNS = """
SELECT DISTINCT c.relname AS table_name, a.attname AS column_name,
       coalesce(k.collname, 'default') AS collation
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
LEFT JOIN pg_collation AS k ON k.oid = a.attcollation AND a.attcollation <> 100
WHERE n.nspname = $1 AND a.atttypid = 'text'::regtype AND c.relname <> 'schema_migrations'
ORDER BY 1, 2
"""


async def _indexed_text_columns(conn: asyncpg.Connection, schema: str) -> dict[str, str]:
    rows = await conn.fetch(_INDEXED_TEXT_COLUMNS, schema)
    return {f"{row['table_name']}.{row['column_name']}": row["collation"] for row in rows}


def _spec(dsn: str, schema: str) -> TaskBackendSpec:
    return TaskBackendSpec(type="postgres", url=dsn, options={"schema": schema})


async def test_a_fresh_schema_indexes_every_identifier_as_bytes(
    postgres_dsn: str, pg_conn: asyncpg.Connection, stores_schema_at: Any
) -> None:
    schema = await stores_schema_at(0)
    await migrate(postgres_dsn, schema)
    columns = await _indexed_text_columns(pg_conn, schema)
    assert {"tasks.id", "tasks.queue", "tasks_keys.key", "results.job_id"} <= set(columns)
    assert {name: collation for name, collation in columns.items() if collation != "C"} == {}


async def test_the_upgrade_keeps_the_rows_and_the_jobs_run(
    postgres_dsn: str, pg_conn: asyncpg.Connection, stores_schema_at: Any
) -> None:
    schema = await stores_schema_at(6, queue=2)  # as the release before this change left it
    before = await _indexed_text_columns(pg_conn, schema)
    assert before["tasks.id"] == "default"
    # Jobs and a result as the earlier version wrote them.
    for n in range(3):
        await pg_conn.execute(
            f'INSERT INTO "{schema}".tasks (id, queue, payload) VALUES ($1, $2, $3)',  # noqa: S608 - a test's own schema
            f"old-{n}",
            "tasks",
            encode_job(Job(id=f"old-{n}", name="old")),
        )
    await pg_conn.execute(
        f'INSERT INTO "{schema}".results (namespace, job_id, success, data) '  # noqa: S608 - a test's own schema
        "VALUES ('default', 'old-done', true, $1::json)",
        JobResult.ok(7).to_json(of="old-done"),
    )

    applied = await migrate(postgres_dsn, schema)

    assert applied == [
        "stores v7 identifiers compare as bytes (COLLATE C)",
        "stores v8 locks indexed by expiry",
        "stores v9 workflow runs indexed for listing",
        "queue:tasks v3 identifiers compare as bytes (COLLATE C)",
    ]
    after = await _indexed_text_columns(pg_conn, schema)
    # stores v9 indexes the runs' status (for `list_runs`), as bytes too.
    assert set(after) == set(before) | {"workflow_runs.status"}
    assert {name: collation for name, collation in after.items() if collation != "C"} == {}
    queue = PostgresTaskQueue(dsn=postgres_dsn, schema=schema)
    store = backend.create_result_store(_spec(postgres_dsn, schema))
    try:
        taken = await queue.dequeue_batch(10, timeout=1.0)
        assert sorted(job.id for job in taken) == ["old-0", "old-1", "old-2"]
        for job in taken:
            assert await queue.ack(job.id, lease_token=job.lease_token)
        assert await queue.get_task_count() == 0
        kept = await store.get("old-done")
        assert kept is not None
        assert kept.data == 7
    finally:
        await queue.close()
        await store.close()


async def test_a_prefix_ending_in_a_dash_finds_the_ids_a_linguistic_collation_hid(
    postgres_dsn: str, pg_conn: asyncpg.Connection, stores_schema_at: Any
) -> None:
    """Ids under a collation ignoring punctuation at its first level, as glibc's en_US.

    Before the upgrade, the key range a prefix lookup reads ("0192abcd-" <= id <
    "0192abcd.") holds none of the ids that start with the prefix; after it, all of them.
    """
    schema = await stores_schema_at(6, queue=2)
    # The columns as a database whose collation is that one made them (any server with
    # ICU, from PostgreSQL 10 on; a database-wide ICU locale needs 15).
    await pg_conn.execute(
        f'CREATE COLLATION "{schema}".punctuation_ignored '
        "(provider = icu, locale = 'en-US-u-ka-shifted')"
    )
    for table, column in (("tasks", "id"), ("results", "job_id")):
        await pg_conn.execute(
            f'ALTER TABLE "{schema}".{table} ALTER COLUMN {column} '
            f'TYPE text COLLATE "{schema}".punctuation_ignored'
        )
    ids = [f"0192abcd-7{n:03d}-8000-9000-000000000000" for n in range(3)]
    finished = "0192abcd-6fff-8000-9000-000000000000"
    for job_id in ids:
        await pg_conn.execute(
            f'INSERT INTO "{schema}".tasks (id, queue, payload) VALUES ($1, $2, $3)',  # noqa: S608 - a test's own schema
            job_id,
            "tasks",
            encode_job(Job(id=job_id, name="lookup")),
        )
    await pg_conn.execute(
        f'INSERT INTO "{schema}".results (namespace, job_id, success, data) '  # noqa: S608 - a test's own schema
        "VALUES ('default', $1, true, $2::json)",
        finished,
        JobResult.ok(None).to_json(of=finished),
    )
    hidden = await pg_conn.fetch(
        queued_ids_sql(schema, "tasks"),
        "0192abcd-",
        id_prefix_upper_bound("0192abcd-"),
        "tasks",
        10,
    )
    assert hidden == []

    await migrate(postgres_dsn, schema)

    queue = PostgresTaskQueue(dsn=postgres_dsn, schema=schema)
    store = backend.create_result_store(_spec(postgres_dsn, schema))
    try:
        assert sorted(await queue.find_job_ids("0192abcd-", 10)) == ids
        assert await store.find_job_ids("0192abcd-6", 10) == [finished]
    finally:
        await queue.close()
        await store.close()
