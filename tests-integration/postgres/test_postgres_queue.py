"""PostgresTaskQueue behaviour specific to PostgreSQL (the shared contract is the kit's).

Migrations under concurrency, index use of the dequeue query, the transactional outbox,
LISTEN/NOTIFY wake-ups (and their recovery), lease tokens, poison rows, connection loss.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    Err,
    Job,
    JobStatus,
    Ok,
    TaskBackendSpec,
    TaskQueueProtocol,
    TaskValidationError,
)
from lexigram.tasks import load_backend
from lexigram.tasks.backends.postgres import PostgresTaskConfig, PostgresTaskQueue, migrate

pytestmark = pytest.mark.postgres

QueueFactory = Callable[..., PostgresTaskQueue]


async def test_migrate_concurrent_starters_apply_each_migration_once(postgres_dsn, pg_conn):
    schema = f"lexigram_test_{uuid.uuid4().hex[:8]}"
    try:
        results = await asyncio.gather(*(migrate(postgres_dsn, schema) for _ in range(6)))
        applied = [names for names in results if names]
        assert len(applied) == 1
        assert len(applied[0]) == 12  # the store tables (v1 to v9) and the jobs table (v1 to v3)
        rows = await pg_conn.fetch(f'SELECT scope, version FROM "{schema}".schema_migrations')  # noqa: S608
        assert sorted((r["scope"], r["version"]) for r in rows) == [
            ("queue:tasks", 1),
            ("queue:tasks", 2),
            ("queue:tasks", 3),
            ("stores", 1),
            ("stores", 2),
            ("stores", 3),
            ("stores", 4),
            ("stores", 5),
            ("stores", 6),
            ("stores", 7),
            ("stores", 8),
            ("stores", 9),
        ]
        assert await migrate(postgres_dsn, schema) == []
        # A second jobs table in the same schema is its own migration scope.
        assert await migrate(postgres_dsn, schema, table="emails") == [
            "queue:emails v1 jobs table, indexes, keys",
            "queue:emails v2 no timed index (the dequeue index answers its reads)",
            "queue:emails v3 identifiers compare as bytes (COLLATE C)",
        ]
    finally:
        await pg_conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_queue_creates_its_schema_on_first_use(postgres_dsn, pg_conn):
    schema = f"lexigram_test_{uuid.uuid4().hex[:8]}"
    queue = PostgresTaskQueue(dsn=postgres_dsn, schema=schema, table="jobs")
    try:
        assert (await queue.enqueue(Job(name="first"))).is_ok()
        assert await queue.get_task_count() == 1
    finally:
        await queue.close()
        await pg_conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def test_dequeue_plan_uses_the_dequeue_index_not_a_table_scan(pg_queue, pg_conn, pg_schema):
    # Enough rows that a scan is not the cheapest plan anyway: a fresh job's row is about
    # 200 bytes, and 5,000 of them fit in so few pages that the planner hashes them.
    jobs = [Job(name="bulk", priority=i % 3) for i in range(20000)]
    await pg_queue.enqueue_many(jobs)
    await pg_queue.enqueue_many([Job(name="later", scheduled_at=time.time() + 3600)] * 1)
    await pg_conn.execute(f'ANALYZE "{pg_schema}".tasks')
    plan = await pg_queue.explain_dequeue(50)
    assert "Index Scan using tasks_dequeue_idx" in plan
    assert "Seq Scan" not in plan
    # The whole leasing statement, and the idle "next due" probe, avoid table scans too.
    sql = pg_queue._sql
    update_plan = "\n".join(
        r[0] for r in await pg_conn.fetch("EXPLAIN " + sql.dequeue, pg_queue.queue_name, 50, 30.0)
    )
    assert "Seq Scan" not in update_plan
    # The idle "next due" probe and the count of running jobs read the dequeue index one
    # priority level at a time; no index of their own is written by every dequeue.
    for statement in (sql.next_due, sql.count_running):
        plan = "\n".join(r[0] for r in await pg_conn.fetch("EXPLAIN " + statement, "x"))
        assert "tasks_dequeue_idx" in plan
        assert "Seq Scan" not in plan
    indexes = {
        row["indexname"]
        for row in await pg_conn.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'tasks'",
            pg_schema,
        )
    }
    assert indexes == {"tasks_pkey", "tasks_dequeue_idx"}


async def test_due_times_and_leases_are_found_on_every_priority_level(pg_queue, pg_conn):
    """`next_due`, the running count and `requeue_stalled` walk the levels one by one."""
    now = time.time()
    await pg_queue.enqueue(Job(name="ready-top", priority=20))
    await pg_queue.enqueue(Job(name="ready-low", priority=0))
    await pg_queue.enqueue(Job(name="later", priority=10, scheduled_at=now + 60))
    await pg_queue.enqueue(Job(name="soon", priority=3, scheduled_at=now + 2))
    (leased,) = await pg_queue.dequeue_batch(1)
    assert leased.name == "ready-top"
    assert await pg_queue.count(pg_queue.queue_name, JobStatus.RUNNING) == 1

    due = await pg_conn.fetchval(pg_queue._sql.next_due, pg_queue.queue_name)
    assert 0 < due <= 2  # the level-3 job, before the lease (30 s) and the level-10 job

    assert await pg_queue.requeue_stalled(visibility_timeout_seconds=0) == 1
    assert await pg_queue.count(pg_queue.queue_name, JobStatus.RUNNING) == 0
    names = [job.name for job in await pg_queue.dequeue_batch(10)]
    assert names == ["ready-top", "ready-low"]


async def test_vacuum_runs_on_the_jobs_table(pg_queue: PostgresTaskQueue, pg_conn):
    stats = (
        "SELECT vacuum_count, last_vacuum FROM pg_stat_user_tables "
        "WHERE schemaname = $1 AND relname = 'tasks'"
    )
    await pg_queue.enqueue_many([Job(name="v") for _ in range(50)])
    for job in await pg_queue.dequeue_batch(50):
        await pg_queue.ack(job.id)
    before = await pg_conn.fetchrow(stats, pg_queue.config.schema)
    await pg_queue.vacuum()
    after = await pg_conn.fetchrow(stats, pg_queue.config.schema)
    assert after["vacuum_count"] == before["vacuum_count"] + 1
    assert after["last_vacuum"] is not None


async def test_enqueue_in_rolled_back_transaction_leaves_no_job(pg_queue, pg_conn):
    job = Job(name="outbox")

    transaction = pg_conn.transaction()
    await transaction.start()
    result = await pg_queue.enqueue(job, connection=pg_conn)
    assert result == Ok(job.id)
    await transaction.rollback()
    assert await pg_queue.get_job(job.id) is None
    assert await pg_queue.count(pg_queue.queue_name) == 0
    assert await pg_queue.dequeue_batch(1, timeout=0.3) == []


async def test_enqueue_in_committed_transaction_is_delivered_after_commit(
    make_pg_queue: QueueFactory, pg_conn
):
    producer = make_pg_queue()
    consumer = make_pg_queue(poll_interval=60.0)  # only NOTIFY can wake it in time
    await consumer.connect()
    waiting = asyncio.create_task(consumer.dequeue_batch(1, timeout=20.0))
    job = Job(name="outbox", args=(42,))
    async with pg_conn.transaction():
        await pg_conn.execute("SELECT 1")  # the application's own writes go here
        assert (await producer.enqueue_in_transaction(pg_conn, job)) == Ok(job.id)
        # Not visible to anyone before the commit.
        assert await producer.get_job(job.id) is None
        assert not waiting.done()
    started = time.monotonic()
    delivered = await waiting
    assert [j.id for j in delivered] == [job.id]
    assert delivered[0].args == (42,)
    assert time.monotonic() - started < 5.0  # woken by the commit's NOTIFY, not the poll


async def test_idle_consumer_is_woken_by_notify(make_pg_queue: QueueFactory):
    producer = make_pg_queue()
    consumer = make_pg_queue(poll_interval=60.0)
    await consumer.connect()
    waiting = asyncio.create_task(consumer.dequeue_batch(5, timeout=20.0))
    await asyncio.sleep(0)  # let the consumer start its wait
    job = Job(name="wake")
    await producer.enqueue(job)
    delivered = await asyncio.wait_for(waiting, 5.0)
    assert [j.id for j in delivered] == [job.id]


async def test_delayed_job_wakes_consumer_at_its_due_time(make_pg_queue: QueueFactory):
    queue = make_pg_queue(poll_interval=60.0)
    await queue.enqueue(Job(name="delayed", scheduled_at=time.time() + 0.4))
    assert await queue.dequeue() is None
    delivered = await asyncio.wait_for(queue.dequeue_batch(1, timeout=20.0), 5.0)
    assert [j.name for j in delivered] == ["delayed"]


async def _listener_pids(conn: asyncpg.Connection, channel: str) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'lexigram-tasks' "
        "AND query LIKE 'LISTEN%' AND query LIKE '%' || $1 || '%'",
        channel,
    )
    return [r["pid"] for r in rows]


async def test_listener_reconnects_after_its_connection_is_killed(
    make_pg_queue: QueueFactory, pg_conn
):
    consumer = make_pg_queue(poll_interval=60.0)
    producer = make_pg_queue()
    await consumer.connect()
    pids = await _listener_pids(pg_conn, consumer.channel)
    assert pids
    for pid in pids:
        await pg_conn.execute("SELECT pg_terminate_backend($1)", pid)
    # The next wait goes on LISTEN again once the listener has reconnected.
    job = Job(name="after-reconnect")
    waiting = asyncio.create_task(consumer.dequeue_batch(1, timeout=20.0))
    await asyncio.sleep(0)
    await producer.enqueue(job)
    delivered = await asyncio.wait_for(waiting, 10.0)
    assert [j.id for j in delivered] == [job.id]
    for _ in range(100):
        if await _listener_pids(pg_conn, consumer.channel):
            break
        await asyncio.sleep(0.05)  # polling the server's view of the reconnect
    assert await _listener_pids(pg_conn, consumer.channel)


@pytest.mark.exclusive  # terminates every lexigram-tasks connection to the database
async def test_operations_survive_killed_pool_connections(pg_queue: PostgresTaskQueue, pg_conn):
    await pg_queue.enqueue(Job(name="before"))
    killed = await pg_conn.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = 'lexigram-tasks' AND pid <> pg_backend_pid() "
        "AND datname = current_database() AND query NOT LIKE 'LISTEN%'"
    )
    assert killed >= 1
    assert (await pg_queue.enqueue(Job(name="after"))).is_ok()
    names = []
    while (job := await pg_queue.dequeue()) is not None:
        names.append(job.name)
        await pg_queue.ack(job.id)
    assert sorted(names) == ["after", "before"]


async def test_undecodable_row_is_leased_as_a_poison_job(pg_queue: PostgresTaskQueue, pg_conn):
    await pg_queue.connect()
    table = f'"{pg_queue.config.schema}".tasks'
    await pg_conn.execute(
        f"INSERT INTO {table} (id, queue, payload) VALUES ('bad-1', $1, $2)",  # noqa: S608
        pg_queue.queue_name,
        b"\xff\xfenot json",
    )
    job = await pg_queue.dequeue()
    assert job is not None
    assert job.id == "bad-1"
    assert job.name == POISON_JOB_NAME
    assert job.queue_name == pg_queue.queue_name
    assert job.status is JobStatus.RUNNING
    assert job.delivery_count == 1
    assert "not valid JSON" in (job.last_error or "")
    await pg_queue.ack(job.id)
    assert await pg_queue.count(pg_queue.queue_name) == 0


async def test_enqueue_many_reports_each_job_and_deduplicates_keys(pg_queue: PostgresTaskQueue):
    first = Job(name="a", idempotency_key="k1")
    results = await pg_queue.enqueue_many(
        [
            Job(name="plain"),
            first,
            Job(name="bad", args=(object(),)),
            Job(name="a-again", idempotency_key="k1"),
        ]
    )
    assert results[0].is_ok()
    assert results[1] == Ok(first.id)
    assert isinstance(results[2], Err)
    assert isinstance(results[2].error, TaskValidationError)
    assert results[3] == Ok(first.id)
    assert await pg_queue.get_task_count() == 2


async def test_enqueue_many_stores_each_jobs_priority_schedule_and_retry_count(
    pg_queue: PostgresTaskQueue, pg_conn, pg_schema
):
    # Alike jobs go in with those three values sent once; mixed ones as arrays.
    later = time.time() + 3600
    alike = [Job(name="alike", priority=7, scheduled_at=later, retry_count=2) for _ in range(3)]
    mixed = [Job(name="mixed", priority=p, scheduled_at=s) for p, s in ((1, None), (9, later))]
    mixed.append(Job(name="mixed", priority=4, retry_count=1))
    for batch in (alike, mixed):
        assert all(r.is_ok() for r in await pg_queue.enqueue_many(batch))
    table = f'"{pg_schema}".tasks'
    later_sql = "available_at > now() + interval '50 minutes'"
    query = f"SELECT id, priority, status, retry_count, {later_sql} AS later FROM {table} WHERE queue = $1"  # noqa: S608, E501 - test schema
    rows = await pg_conn.fetch(query, pg_queue.queue_name)
    stored = {r["id"]: (r["priority"], r["status"], r["retry_count"], r["later"]) for r in rows}
    expected = {job.id: (7, "scheduled", 2, True) for job in alike}
    expected[mixed[0].id] = (1, "pending", 0, False)
    expected[mixed[1].id] = (9, "scheduled", 0, True)
    expected[mixed[2].id] = (4, "pending", 1, False)
    assert stored == expected
    leased = await pg_queue.dequeue_batch(10)
    assert [job.id for job in leased] == [mixed[2].id, mixed[0].id]


async def test_idempotency_key_is_held_while_its_job_exists_past_the_ttl(
    make_pg_queue: QueueFactory,
):
    queue = make_pg_queue(idempotency_ttl=0.0)
    first = Job(name="once", idempotency_key="report-1")
    assert await queue.enqueue(first) == Ok(first.id)
    # The TTL has run out, but the first job is still queued: the key stays held.
    assert await queue.enqueue(Job(name="once", idempotency_key="report-1")) == Ok(first.id)
    leased = await queue.dequeue()
    assert leased is not None
    await queue.ack(leased.id)
    again = Job(name="once", idempotency_key="report-1")
    assert await queue.enqueue(again) == Ok(again.id)


async def test_stale_holder_is_refused_on_all_four_calls(make_pg_queue: QueueFactory):
    """After redelivery the first holder's token settles and keeps nothing."""
    first = make_pg_queue(visibility_timeout=0.3)
    second = make_pg_queue(visibility_timeout=30.0)
    job = Job(name="slow", args=("payload",))
    await first.enqueue(job)
    stale = await first.dequeue()
    assert stale is not None
    redelivered = await second.dequeue_batch(1, timeout=5.0)  # after the short lease ends
    assert [j.delivery_count for j in redelivered] == [2]
    current = redelivered[0]
    assert current.lease_token is not None
    assert current.lease_token != stale.lease_token
    token = stale.lease_token
    assert await first.extend_lease(job.id, lease_token=token) is False
    assert await first.ack(job.id, lease_token=token) is False
    assert await first.nack(job.id, lease_token=token) is False
    assert await first.nack(job.id, requeue=False, lease_token=token) is False
    stale.mark_retrying()
    stale.last_error = "stale"
    assert await first.retry_later(stale, delay=0.0) is False
    # Nothing changed: the second holder still holds the same delivery, unmodified.
    assert await second.count(second.queue_name, JobStatus.RUNNING) == 1
    held = await second.get_job(job.id)
    assert held is not None
    assert (held.delivery_count, held.retry_count, held.last_error) == (2, 0, None)
    assert await second.extend_lease(job.id, lease_token=current.lease_token) is True
    assert await second.ack(job.id, lease_token=current.lease_token) is True
    assert await second.count(second.queue_name) == 0


async def test_expired_lease_refuses_its_token_even_if_nobody_took_the_job(
    pg_queue: PostgresTaskQueue,
):
    queue = pg_queue
    await queue.enqueue(Job(name="late"))
    leased = await queue.dequeue()
    assert leased is not None
    await queue.extend_lease(leased.id, 0.2, lease_token=leased.lease_token)
    await asyncio.sleep(0.4)
    assert await queue.count(queue.queue_name, JobStatus.RUNNING) == 0
    assert await queue.count(queue.queue_name, JobStatus.PENDING) == 1
    for settle in (
        queue.extend_lease(leased.id, lease_token=leased.lease_token),
        queue.ack(leased.id, lease_token=leased.lease_token),
        queue.nack(leased.id, lease_token=leased.lease_token),
        queue.retry_later(leased, delay=5.0),
    ):
        assert await settle is False
    again = await queue.dequeue()
    assert again is not None
    assert again.delivery_count == 2


async def test_a_token_does_not_outlive_an_ack_and_re_enqueue_under_the_same_id(
    pg_queue: PostgresTaskQueue,
):
    """The token names the row as well as the delivery count: a new row is a new lease."""
    queue = pg_queue
    job = Job(name="again")
    await queue.enqueue(job)
    old = await queue.dequeue()
    assert old is not None
    assert await queue.ack(old.id, lease_token=old.lease_token) is True
    await queue.enqueue(Job(name="again", id=job.id))
    new = await queue.dequeue()
    assert new is not None
    assert new.delivery_count == old.delivery_count == 1
    assert new.lease_token != old.lease_token
    assert await queue.ack(job.id, lease_token=old.lease_token) is False
    assert await queue.ack(job.id, lease_token=new.lease_token) is True


async def test_batched_acks_report_each_outcome(pg_queue: PostgresTaskQueue):
    """Acks sent together in one statement each learn whether they held the lease."""
    queue = pg_queue
    await queue.enqueue_many([Job(name="n", args=(i,)) for i in range(50)])
    jobs = await queue.dequeue_batch(50)
    assert len(jobs) == 50
    outcomes = await asyncio.gather(
        *(queue.ack(j.id, lease_token=j.lease_token) for j in jobs[:25]),
        *(queue.ack(j.id, lease_token=f"0:{j.delivery_count}") for j in jobs[25:]),
        queue.ack(jobs[0].id, lease_token=jobs[0].lease_token),  # the same ack twice
    )
    assert outcomes[:25] == [True] * 25
    assert outcomes[25:50] == [False] * 25
    assert outcomes[50] is False
    assert await queue.count(queue.queue_name, JobStatus.RUNNING) == 25
    assert all(await asyncio.gather(*(queue.ack(j.id) for j in jobs[25:])))


async def test_requeue_stalled_releases_jobs_without_heartbeat(pg_queue: PostgresTaskQueue):
    await pg_queue.enqueue(Job(name="stalled"))
    leased = await pg_queue.dequeue()
    assert leased is not None
    assert await pg_queue.requeue_stalled(3600) == 0
    assert await pg_queue.requeue_stalled(0) == 1
    assert await pg_queue.get_task_status(leased.id) == "pending"
    again = await pg_queue.dequeue()
    assert again is not None
    assert again.delivery_count == 2


async def test_batched_acks_delete_every_job(pg_queue: PostgresTaskQueue):
    await pg_queue.enqueue_many([Job(name="n", args=(i,)) for i in range(300)])
    jobs = await pg_queue.dequeue_batch(300)
    assert len(jobs) == 300
    await asyncio.gather(*(pg_queue.ack(job.id) for job in jobs))
    assert await pg_queue.count(pg_queue.queue_name) == 0


async def test_ping_and_status_helpers(pg_queue: PostgresTaskQueue):
    assert await pg_queue.ping() is True
    job = Job(name="s")
    await pg_queue.enqueue(job)
    assert await pg_queue.get_task_status(job.id) == "pending"
    await pg_queue.dequeue()
    assert await pg_queue.get_task_status(job.id) == "running"
    assert await pg_queue.get_task_status("missing") is None


async def test_unreachable_server_raises_backend_connection_error_with_masked_dsn():
    from lexigram.contracts.tasks import BackendConnectionError

    config = PostgresTaskConfig(
        "postgresql://user:hunter2@127.0.0.1:1/none", max_attempts=2, connect_timeout=1.0
    )
    queue = PostgresTaskQueue(config)
    try:
        with pytest.raises(BackendConnectionError) as info:
            await queue.enqueue(Job(name="x"))
        assert "hunter2" not in str(info.value)
        assert "***" in str(info.value)
    finally:
        await queue.close()


async def test_entry_point_backend_builds_queue_from_spec(postgres_dsn, pg_schema, unique_name):
    backend = load_backend("postgres")
    spec = TaskBackendSpec(
        name="pg",
        type="postgres",
        url=postgres_dsn,
        queue_name=f"ep-{unique_name}",
        options={"schema": pg_schema, "visibility_timeout": 12.5},
    )
    queue = backend.create_queue(spec)
    try:
        assert isinstance(queue, TaskQueueProtocol)
        assert queue.visibility_timeout == 12.5
        job = Job(name="via-entry-point")
        assert (await queue.enqueue(job)) == Ok(job.id)
        assert (await queue.get_job(job.id)) is not None
        await queue.clear()
    finally:
        await queue.close()


async def test_settling_calls_on_a_fresh_schema_return_false(postgres_dsn: str, pg_conn):
    """A process whose first call is an ack (no table yet) gets False, not a server error."""
    schema = f"lexigram_test_{uuid.uuid4().hex[:8]}"
    queue = PostgresTaskQueue(dsn=postgres_dsn, schema=schema, queue_name="fresh")
    try:
        assert await queue.ack("nope") is False
        assert await queue.nack("nope", lease_token="1:1") is False  # noqa: S106 - not a secret
        assert await queue.extend_lease("nope") is False
        assert await queue.retry_later(Job(name="nope")) is False
    finally:
        await queue.close()
        await pg_conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
