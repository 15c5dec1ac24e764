"""The store tables' indexes: expired rows leave by index, and listings read theirs.

Every stored result is also written into ``results_expiry_idx``. The sweep
(`cleanup_expired`) compared ``expires_at`` with ``clock_timestamp()``, which is volatile:
PostgreSQL cannot use a volatile bound as an index condition, so every sweep read the
whole results table while the index was paid for on every write and never read. And
nothing in a worker called it: expired results stayed forever. Progress entries had no
expiry at all (Redis and SQLite keep them `progress_ttl` seconds). Here the sweep's plan
must be a scan of the expiry index, it must delete exactly the expired rows, and a write
(a result stored by the store or by the queue's ack, a progress entry saved) must start
it by itself.

Every result was also written into an index on (namespace, success, stored_at) that only
the listings read; ``stores v5`` keeps an index of the failed results alone
(``results_failed_idx``), so a job that succeeds writes one index entry fewer. Listing
the failed results must still read it, and both listings return the newest first.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import asyncpg
import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job, JobResult, ProgressInfo, TaskBackendSpec
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
    """A migrated schema of this test's own."""
    name = f"lexigram_expiry_{uuid.uuid4().hex[:8]}"
    await migrate(postgres_dsn, name)
    try:
        yield name
    finally:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f'DROP SCHEMA "{name}" CASCADE')
        finally:
            await conn.close()


async def _sql(dsn: str, statement: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(statement)
    finally:
        await conn.close()


async def _add_rows(dsn: str, schema: str, table: str, count: int, *, expired: bool) -> None:
    prefix, when = (
        ("old", "now() - interval '1 minute'") if expired else ("live", "now() + '1 day'")
    )
    extra = ", complete, updated_at" if table == "progress" else ", success"
    values = ", false, now()" if table == "progress" else ", true"
    await _sql(
        dsn,
        f'INSERT INTO "{schema}".{table} (namespace, job_id, data, expires_at{extra}) '  # noqa: S608 - a test's own schema
        f"SELECT 'sweep', '{prefix}-' || g, '{{}}'::json, {when}{values} "
        f"FROM generate_series(1, {count}) AS g",
    )
    await _sql(dsn, f'ANALYZE "{schema}".{table}')


async def _expired_left(dsn: str, schema: str, table: str) -> int:
    return int(
        await _sql(dsn, f'SELECT count(*) FROM "{schema}".{table} WHERE expires_at <= now()')  # noqa: S608 - a test's own schema
    )


async def _until_swept(dsn: str, schema: str, table: str) -> None:
    for _ in range(100):
        if await _expired_left(dsn, schema, table) == 0:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"expired rows of {table} are still there 5 s after a write")


def _spec(dsn: str, schema: str, **options: Any) -> TaskBackendSpec:
    return TaskBackendSpec(url=dsn, options={"schema": schema, "namespace": "sweep", **options})


async def test_the_sweep_reads_the_expiry_index_and_deletes_only_the_expired(
    postgres_dsn: str, schema: str
) -> None:
    await _add_rows(postgres_dsn, schema, "results", LIVE_ROWS, expired=False)
    await _add_rows(postgres_dsn, schema, "results", EXPIRED_ROWS, expired=True)
    store = backend.create_result_store(_spec(postgres_dsn, schema))
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
    await _add_rows(postgres_dsn, schema, "results", 300, expired=True)
    store = backend.create_result_store(_spec(postgres_dsn, schema))
    try:
        result = JobResult.ok(1)
        await store.store("fresh", result)
        await _until_swept(postgres_dsn, schema, "results")
        assert await store.get("fresh") == result
    finally:
        await store.close()


async def test_the_ack_that_stores_a_result_sweeps_the_expired_ones(
    postgres_dsn: str, schema: str
) -> None:
    await _add_rows(postgres_dsn, schema, "results", 300, expired=True)
    store = backend.create_result_store(_spec(postgres_dsn, schema))
    queue = PostgresTaskQueue(dsn=postgres_dsn, schema=schema, queue_name="sweep")
    try:
        acker = queue.result_acker(store)
        assert acker is not None  # the store is on the queue's database
        await queue.enqueue(Job(name="noop"))
        (job,) = await queue.dequeue_batch(1)
        result = JobResult.ok(2)
        assert await acker(job.id, result, job.lease_token)
        await _until_swept(postgres_dsn, schema, "results")
        assert await store.get(job.id) == result
    finally:
        await queue.close()
        await store.close()


async def _set_idempotency(store: Any) -> None:
    assert await store.set_if_absent("fresh", {"n": 1}, 60) is None


async def _set_cache(store: Any) -> None:
    await store.set("fresh", "value", 60)


async def _take_lock(store: Any) -> None:
    assert await store.acquire("fresh", timeout=60).try_acquire()


class _KeyedTable(NamedTuple):
    factory: str
    table: str
    column: str  # the value column
    value: str  # a value of it, in SQL
    index: str
    write: Callable[[Any], Awaitable[None]]


@pytest.mark.parametrize(
    "kind",
    [
        _KeyedTable(
            "create_idempotency_store",
            "idempotency",
            "record",
            "'{}'::json",
            "idempotency_expiry_idx",
            _set_idempotency,
        ),
        _KeyedTable(
            "create_cache_backend",
            "cache",
            "value",
            "'\\x00'::bytea",
            "cache_expiry_idx",
            _set_cache,
        ),
        _KeyedTable("create_lock_manager", "locks", "token", "'t'", "locks_expiry_idx", _take_lock),
    ],
    ids=["idempotency", "cache", "locks"],
)
async def test_idempotency_records_cache_entries_and_locks_are_swept_through_their_index(
    postgres_dsn: str, pg_conn: asyncpg.Connection, schema: str, kind: _KeyedTable
) -> None:
    """Expired rows leave through the table's expiry index, a write starting the sweep.

    Idempotency records and cache entries were deleted once a minute by one statement
    reading the whole table; the lock of a holder killed before its release stayed until
    the same key was acquired again.
    """
    factory, table, column, value, index, write = kind
    for prefix, count, when in (
        ("live", 50_000, "now() + interval '1 day'"),
        ("old", 300, "now() - interval '1 minute'"),
    ):
        await pg_conn.execute(
            f'INSERT INTO "{schema}".{table} (key, {column}, expires_at) '  # noqa: S608 - a test's own schema
            f"SELECT '{prefix}-' || g, {value}, {when} FROM generate_series(1, {count}) AS g"
        )
    await pg_conn.execute(f'ANALYZE "{schema}".{table}')
    store = getattr(backend, factory)(_spec(postgres_dsn, schema))
    try:
        raw = await pg_conn.fetchval(f"EXPLAIN (FORMAT JSON) {store.expiry.sql}", SWEEP_CHUNK)
        plan = json.loads(raw)[0]["Plan"]
        assert index in _index_names(plan), plan
        await write(store)
        await _until_swept(postgres_dsn, schema, table)
        assert await pg_conn.fetchval(f'SELECT count(*) FROM "{schema}".{table}') == 50_001  # noqa: S608
    finally:
        await store.close()


async def test_progress_is_forgotten_after_its_ttl(postgres_dsn: str, schema: str) -> None:
    store = backend.create_progress_store(_spec(postgres_dsn, schema, progress_ttl=0.2))
    try:
        await store.save(ProgressInfo(job_id="short", current=1, total=3))
        assert await store.get("short") is not None
        assert [info.job_id for info in await store.list_active()] == ["short"]
        await asyncio.sleep(0.3)
        assert await store.get("short") is None
        assert await store.list_active() == []
    finally:
        await store.close()


async def test_saving_progress_sweeps_the_expired_entries(postgres_dsn: str, schema: str) -> None:
    await _add_rows(postgres_dsn, schema, "progress", 300, expired=True)
    store = backend.create_progress_store(_spec(postgres_dsn, schema))
    try:
        await store.save(ProgressInfo(job_id="fresh", current=1, total=2))
        await _until_swept(postgres_dsn, schema, "progress")
        saved = await store.get("fresh")
        assert saved is not None
        assert saved.current == 1
    finally:
        await store.close()


async def test_stores_v4_gives_earlier_progress_entries_a_day(
    postgres_dsn: str, pg_conn: asyncpg.Connection, stores_schema_at: Any
) -> None:
    """Entries written before progress expired are kept one day from their last change."""
    schema = await stores_schema_at(3)
    await pg_conn.execute(
        f'INSERT INTO "{schema}".progress (namespace, job_id, complete, data, updated_at) '  # noqa: S608 - a test's own schema
        """VALUES ('sweep', 'before', false, '{"job_id": "before"}'::json, """
        "now() - interval '1 hour')"
    )
    applied = await migrate(postgres_dsn, schema)
    assert applied[0] == "stores v4 progress entries expire"
    kept = await pg_conn.fetchval(
        f'SELECT expires_at - updated_at FROM "{schema}".progress'  # noqa: S608 - a test's own schema
    )
    assert kept.total_seconds() == 86400


async def test_failed_results_are_listed_through_their_index(
    postgres_dsn: str, pg_conn: asyncpg.Connection, schema: str
) -> None:
    for prefix, count, success in (("ok", 50_000, "true"), ("bad", 20, "false")):
        await pg_conn.execute(
            f'INSERT INTO "{schema}".results '  # noqa: S608 - a test's own schema
            "(namespace, job_id, success, data, stored_at, expires_at) "
            f"SELECT 'sweep', '{prefix}-' || g, {success}, "
            f"json_build_object('success', {success}, 'data', g), "
            "now() - make_interval(secs => 1000000 - g), now() + interval '1 day' "
            f"FROM generate_series(1, {count}) AS g"
        )
    await pg_conn.execute(f'ANALYZE "{schema}".results')
    indexes = {
        row["indexname"]
        for row in await pg_conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'results'",
            schema,
        )
    }
    assert indexes == {"results_pkey", "results_expiry_idx", "results_failed_idx"}
    store = backend.create_result_store(_spec(postgres_dsn, schema))
    try:
        raw = await pg_conn.fetchval(
            f"EXPLAIN (FORMAT JSON) {store._listing_sql(success=False)}", "sweep", 5
        )
        plan = json.loads(raw)[0]["Plan"]
        assert "results_failed_idx" in _index_names(plan), plan

        failed = await store.get_failed(limit=5)
        assert [result.data for result in failed] == [20, 19, 18, 17, 16]
        succeeded = await store.get_completed(limit=3)
        assert [result.data for result in succeeded] == [50_000, 49_999, 49_998]
    finally:
        await store.close()
