"""Expired results leave the results table: by index, in chunks, without anyone asking.

Every stored result is also written into ``results_expiry_idx``. The sweep
(`cleanup_expired`) compared ``expires_at`` with ``clock_timestamp()``, which is volatile:
PostgreSQL cannot use a volatile bound as an index condition, so every sweep read the
whole results table while the index was paid for on every write and never read. And
nothing in a worker called it: expired results stayed forever. Here the table holds many
live results and some expired ones; the sweep's plan must be a scan of that index, it
must delete exactly the expired rows, and a write of results (the store's own, or the
queue's ack that stores a result) must start it by itself.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job, JobResult, TaskBackendSpec
from lexigram.tasks.backends.postgres import PostgresTaskQueue, backend, migrate
from lexigram.tasks.backends.postgres._expiry import SWEEP_CHUNK

pytestmark = pytest.mark.postgres

LIVE_ROWS = 100_000
EXPIRED_ROWS = 2 * SWEEP_CHUNK + 500  # three statements: two full chunks and a rest


def _index_names(plan: dict[str, Any]) -> list[str]:
    names = [plan["Index Name"]] if "Index Name" in plan else []
    for child in plan.get("Plans", ()):
        names.extend(_index_names(child))
    return names


@pytest_asyncio.fixture
async def schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A migrated schema of this test's own, holding live results of namespace ``sweep``."""
    name = f"lexigram_expiry_{uuid.uuid4().hex[:8]}"
    await migrate(postgres_dsn, name)
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(
            f'INSERT INTO "{name}".results (namespace, job_id, success, data, expires_at) '  # noqa: S608 - a test's own schema
            "SELECT 'sweep', 'live-' || g, true, '{}'::json, now() + interval '1 day' "
            f"FROM generate_series(1, {LIVE_ROWS}) AS g"
        )
        yield name
    finally:
        await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        await conn.close()


async def _add_expired(dsn: str, schema: str, count: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f'INSERT INTO "{schema}".results (namespace, job_id, success, data, expires_at) '  # noqa: S608 - a test's own schema
            "SELECT 'sweep', 'old-' || g, true, '{}'::json, now() - interval '1 minute' "
            f"FROM generate_series(1, {count}) AS g"
        )
        await conn.execute(f'ANALYZE "{schema}".results')
    finally:
        await conn.close()


async def _expired_left(dsn: str, schema: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".results WHERE expires_at <= now()'  # noqa: S608 - a test's own schema
            )
        )
    finally:
        await conn.close()


async def _until_swept(dsn: str, schema: str) -> None:
    for _ in range(100):
        if await _expired_left(dsn, schema) == 0:
            return
        await asyncio.sleep(0.05)
    pytest.fail("expired results are still there 5 s after a write of results")


def _store(dsn: str, schema: str) -> Any:
    return backend.create_result_store(
        TaskBackendSpec(url=dsn, options={"schema": schema, "namespace": "sweep"})
    )


async def test_the_sweep_reads_the_expiry_index_and_deletes_only_the_expired(
    postgres_dsn: str, schema: str
) -> None:
    await _add_expired(postgres_dsn, schema, EXPIRED_ROWS)
    store = _store(postgres_dsn, schema)
    conn = await asyncpg.connect(postgres_dsn)
    try:
        raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {store.expiry.sql}", SWEEP_CHUNK)
        plan = json.loads(raw)[0]["Plan"]
        assert "results_expiry_idx" in _index_names(plan), plan

        assert await store.cleanup_expired() == EXPIRED_ROWS
        left = await conn.fetchval(f'SELECT count(*) FROM "{schema}".results')  # noqa: S608 - a test's own schema
        assert left == LIVE_ROWS
    finally:
        await store.close()
        await conn.close()


async def test_storing_a_result_sweeps_the_expired_ones(postgres_dsn: str, schema: str) -> None:
    await _add_expired(postgres_dsn, schema, 300)
    store = _store(postgres_dsn, schema)
    try:
        result = JobResult.ok(1)
        await store.store("fresh", result)
        await _until_swept(postgres_dsn, schema)
        assert await store.get("fresh") == result
    finally:
        await store.close()


async def test_the_ack_that_stores_a_result_sweeps_the_expired_ones(
    postgres_dsn: str, schema: str
) -> None:
    await _add_expired(postgres_dsn, schema, 300)
    store = _store(postgres_dsn, schema)
    queue = PostgresTaskQueue(dsn=postgres_dsn, schema=schema, queue_name="sweep")
    try:
        acker = queue.result_acker(store)
        assert acker is not None  # the store is on the queue's database
        await queue.enqueue(Job(name="noop"))
        (job,) = await queue.dequeue_batch(1)
        result = JobResult.ok(2)
        assert await acker(job.id, result, job.lease_token)
        await _until_swept(postgres_dsn, schema)
        assert await store.get(job.id) == result
    finally:
        await queue.close()
        await store.close()
