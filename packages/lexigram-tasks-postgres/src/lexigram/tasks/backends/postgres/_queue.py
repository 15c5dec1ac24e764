"""`PostgresTaskQueue`: the `TaskQueueProtocol` on one PostgreSQL table (asyncpg).

How the pieces fit (the SQL itself is in `_sql`, the tables in `_schema`, taking jobs in
`_leasing`, the wake-ups of idle consumers in `_wakeups`):

- enqueue: one INSERT ... ON CONFLICT (id) DO NOTHING that also calls ``pg_notify`` in
  the same statement. With ``connection=`` it runs on the caller's connection inside
  the caller's transaction (the outbox pattern): a rollback leaves neither job nor
  notification behind.
- dequeue: one UPDATE over a ``SELECT ... FOR UPDATE SKIP LOCKED LIMIT n`` leases up to
  n jobs per round trip; expired leases are picked up by the same statement.
- idle consumers wait on LISTEN (one shared connection per process), bounded by the
  next delayed job or lease expiry and a slow safety-net poll.
- acks issued while another ack is in flight are sent together in one DELETE.
- every delivery carries the lease token ``"<seq>:<delivery_count>"`` (`seq` is unique
  per inserted row, the count rises with each delivery); ack, nack, extend_lease and
  retry_later check it in the same statement that acts, so a consumer whose lease
  expired can neither settle nor keep a job: they return False and change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from lexigram.contracts.tasks import (
    CancelOutcome,
    Job,
    JobStatus,
    Ok,
    Result,
    ResultAcker,
    ResultStoreProtocol,
    TaskConfigurationError,
    TaskQueueError,
    encode_job,
)
from lexigram.tasks.backends.postgres._cancel import follow_cancellations
from lexigram.tasks.backends.postgres._connection import (
    TRANSIENT_ERRORS,
    Conn,
    Database,
    pool_of,
)
from lexigram.tasks.backends.postgres._enqueue import (
    AckBatcher,
    Enqueuer,
    parse_token,
    token_args,
)
from lexigram.tasks.backends.postgres._lease_keeper import PostgresLeaseRenewer, extend_many_sql
from lexigram.tasks.backends.postgres._leasing import JobLeaser, held_job
from lexigram.tasks.backends.postgres._lookup import find_ids, queued_ids_sql
from lexigram.tasks.backends.postgres._options import PostgresTaskConfig, channel_name, quote_ident
from lexigram.tasks.backends.postgres._schema import ensure_schema
from lexigram.tasks.backends.postgres._settling import AckAndStore
from lexigram.tasks.backends.postgres._sql import QueueSQL
from lexigram.tasks.backends.postgres._stores import PostgresResultStore
from lexigram.tasks.backends.postgres._wakeups import Wakeups

T = TypeVar("T")

_STATUS_COUNTS = {
    JobStatus.PENDING: "count_waiting",
    JobStatus.RETRYING: "count_retrying",
    JobStatus.RUNNING: "count_running",
}


async def _in_transaction(conn: Conn, fn: Callable[[Conn], Awaitable[T]]) -> T:
    async with conn.transaction():
        return await fn(conn)


class PostgresTaskQueue:
    """PostgreSQL task queue implementing the whole `TaskQueueProtocol`.

    Delivery is at-least-once with leases: priority high to low, FIFO within a
    priority, delayed jobs never block ready ones, idempotency keys and job ids are
    unique per queue, and a job whose consumer died is delivered again once its lease
    expires. Every delivery carries a lease token (`Job.lease_token`) that fences
    `ack`, `nack`, `extend_lease` and `retry_later`. Tables are created on first use
    (see `migrate`), unless the config's `must_exist` is set: then a schema that holds
    none of them is refused with a `BackendConnectionError`.

    Args:
        config: A `PostgresTaskConfig`, a dict of its fields, the DSN, or None for the
            defaults.
        provider: An asyncpg pool to use (or an object with one in ``.pool``) instead of
            the queue's own shared pool; it is not closed by `close`. LISTEN still needs a
            DSN (``dsn=``); without one, idle consumers poll every `poll_interval`.
        dsn: Overrides ``config.dsn``.
        queue_name: Overrides ``config.queue_name``.
        schema: Overrides ``config.schema``.
        table: Overrides ``config.table``.
        visibility_timeout: Overrides ``config.visibility_timeout`` (lease seconds).
        poll_interval: Overrides ``config.poll_interval`` (safety-net poll seconds).
        idempotency_ttl: Overrides ``config.idempotency_ttl``.

    Example:
        queue = PostgresTaskQueue(dsn="postgresql://app@db/app", queue_name="emails")
        job_id = (await queue.enqueue(Job(name="send_email", args=("a@b.c",)))).unwrap()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO orders ...")
            await queue.enqueue(Job(name="ship", args=(42,)), connection=conn)
    """

    def __init__(
        self,
        config: PostgresTaskConfig | Mapping[str, Any] | str | None = None,
        provider: Any = None,
        *,
        dsn: str | None = None,
        queue_name: str | None = None,
        schema: str | None = None,
        table: str | None = None,
        visibility_timeout: float | None = None,
        poll_interval: float | None = None,
        idempotency_ttl: float | None = None,
    ) -> None:
        if isinstance(config, str):  # the DSN, as the other backends take their URL first
            if dsn is not None:
                msg = (
                    "PostgresTaskQueue got a DSN both as its first argument and as dsn=. "
                    "Pass it once."
                )
                raise TaskConfigurationError(msg)
            config, dsn = None, config
        if config is None:
            config = PostgresTaskConfig()
        elif not isinstance(config, PostgresTaskConfig):
            config = PostgresTaskConfig.from_mapping(config, source="PostgresTaskQueue")
        self.config: PostgresTaskConfig = config.replace(
            dsn=dsn,
            queue_name=queue_name,
            schema=schema,
            table=table,
            visibility_timeout=visibility_timeout,
            poll_interval=poll_interval,
            idempotency_ttl=idempotency_ttl,
        )
        cfg = self.config
        self._db = Database(
            cfg.dsn,
            min_size=cfg.pool_min_size,
            max_size=cfg.pool_max_size,
            command_timeout=cfg.command_timeout,
            connect_timeout=cfg.connect_timeout,
            max_attempts=cfg.max_attempts,
            pool=pool_of(provider),
        )
        # Without a DSN next to an external pool there is nothing to LISTEN with.
        self._can_listen = provider is None or cfg.dsn is not None
        self._sql = QueueSQL.build(cfg.schema, cfg.table)
        self._channel = channel_name(cfg.schema, cfg.table, cfg.queue_name)
        self._cancel_channel = channel_name(cfg.schema, cfg.table, cfg.queue_name, "cancel")
        self._enqueuer = Enqueuer(cfg, self._sql, self._channel)
        self._ready = False
        self._ready_lock = asyncio.Lock()
        self._acks = AckBatcher(self._db, self._sql.ack_many)
        self._result_acks: AckAndStore | None = None
        self._wakeups = Wakeups(
            self._db, self._sql, cfg, self._channel, can_listen=self._can_listen
        )
        self._leaser = JobLeaser(self._db, self._sql, cfg, self._wakeups)
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"PostgresTaskQueue(queue_name={self.config.queue_name!r}, "
            f"schema={self.config.schema!r}, table={self.config.table!r}, "
            f"dsn={self._db.masked_dsn!r})"
        )

    @property
    def queue_name(self) -> str:
        """Name of the queue this object serves."""
        return self.config.queue_name

    @property
    def lease_seconds(self) -> float:
        """Lease length in seconds given to every dequeued job (the protocol's name)."""
        return self.visibility_timeout

    @property
    def visibility_timeout(self) -> float:
        """Lease length in seconds given to every dequeued job."""
        return self.config.visibility_timeout

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this queue."""
        return self._channel

    # -- lifecycle ------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the pool, apply pending migrations and start listening (else lazy)."""
        await self._ensure_ready()
        await self._wakeups.ensure_listening()

    def _is_ready(self) -> bool:
        return self._ready

    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._ready_lock:
            if self._is_ready():  # another task migrated while this one waited
                return
            cfg = self.config

            async def _migrate(conn: Conn) -> list[str]:
                return await ensure_schema(
                    conn, cfg.schema, cfg.table, must_exist=cfg.must_exist, dsn=cfg.dsn
                )

            await self._db.run(_migrate, "apply the schema migrations")
            self._ready = True

    async def ping(self) -> bool:
        """Return True if the database answers a trivial query."""
        try:
            value = await self._db.run(lambda conn: conn.fetchval("SELECT 1"), "answer a ping")
        except TaskQueueError:
            return False
        return bool(value == 1)

    async def close(self) -> None:
        """Stop listening, wake waiting consumers, release the pool; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._wakeups.close()
        await self._acks.drain()
        if self._result_acks is not None:
            await self._result_acks.drain()
        await self._wakeups.stop_listening()
        await self._db.close()

    # -- producing ------------------------------------------------------------------

    async def enqueue(
        self, task: Job, *, connection: Conn | None = None
    ) -> Result[str, TaskQueueError]:
        """Add a job to the queue.

        A job id already in the queue, or an idempotency key already held, returns Ok
        with the existing job's id and adds nothing.

        Args:
            task: The `Job` to enqueue.
            connection: An asyncpg connection to enqueue on, normally inside the caller's
                transaction: the job (and its wake-up notification) then commits or rolls
                back with the caller's own writes. It must reach the same database.

        Returns:
            Ok(job_id), or Err(TaskValidationError) for an invalid or non-JSON job.

        Raises:
            BackendConnectionError: The database could not be reached.
        """
        results = await self.enqueue_many([task], connection=connection)
        return results[0]

    async def enqueue_in_transaction(
        self, connection: Conn, task: Job
    ) -> Result[str, TaskQueueError]:
        """Enqueue `task` on `connection` (the caller's transaction); see `enqueue`."""
        return await self.enqueue(task, connection=connection)

    async def enqueue_many(
        self, tasks: Sequence[Job], *, connection: Conn | None = None
    ) -> list[Result[str, TaskQueueError]]:
        """Add several jobs: the ones without an idempotency key in one statement.

        Args:
            tasks: The jobs, in order.
            connection: As for `enqueue`: the caller's connection and transaction.

        Returns:
            One result per job, in order (see `enqueue`).
        """
        results, plain, keyed = self._enqueuer.split(tasks)
        if plain or keyed:
            await self._ensure_ready()
            insert = self._enqueuer.insert
            if connection is not None:
                held = await insert(connection, plain, keyed)
            elif len(keyed) + bool(plain) > 1:
                # Several statements (one claim per keyed job): in one transaction, so a
                # connection lost midway leaves nothing behind for the retry to repeat.
                # Committed one by one, the retry would insert again, under its own id
                # and key, a job a worker had meanwhile run and acked: it ran twice.
                held = await self._db.run(
                    lambda c: _in_transaction(c, lambda t: insert(t, plain, keyed)), "enqueue jobs"
                )
            else:
                held = await self._db.run(lambda c: insert(c, plain, keyed), "enqueue jobs")
            for index, job_id in held:
                results[index] = Ok(job_id)
        return results

    # -- consuming ------------------------------------------------------------------

    async def dequeue(self) -> Job | None:
        """Lease and return the next ready job, or None when none is ready (no waiting)."""
        jobs = await self.dequeue_batch(1)
        return jobs[0] if jobs else None

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        """Lease up to `max_jobs` ready jobs in one statement, waiting up to `timeout` s.

        The wait ends on a NOTIFY for this queue (a new or requeued job), when a delayed
        job or a lease is due, at the safety-net poll, on `close`, or at `timeout`.

        Returns:
            Between 0 and `max_jobs` leased jobs, in delivery order.
        """
        if max_jobs < 1 or self._closed:
            return []
        await self._ensure_ready()
        if timeout > 0:
            await self._wakeups.ensure_listening()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # A blocking call right after a take that found nothing (the worker's usual
        # "try, then wait" pair) goes straight to waiting when no NOTIFY arrived since:
        # any new job would have sent one. Saves a round trip per idle cycle.
        wakeups = self._wakeups
        skip_take = (
            timeout > 0 and wakeups.listening and wakeups.empty_generation == wakeups.generation
        )
        while True:
            generation, wake = wakeups.generation, wakeups.wake
            jobs = [] if skip_take else await self._leaser.take(max_jobs, generation)
            skip_take = False
            now = loop.time()
            if jobs or now >= deadline or self._closed:
                return jobs
            if wakeups.generation != generation:
                continue  # a notification arrived while we were querying
            wait = await wakeups.idle_wait(deadline - now, now)
            if wakeups.generation != generation:
                continue
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), wait)
            if wakeups.due_at is not None and wakeups.due_at <= loop.time():
                wakeups.due_at = None
                wakeups.probe_at = 0.0  # look for the next due job at the next idle wait

    async def extend_lease(
        self, task_id: str, seconds: float | None = None, *, lease_token: str | None = None
    ) -> bool:
        """Extend the lease of an in-flight job (the worker's heartbeat).

        Args:
            task_id: The leased job's id.
            seconds: New lease length from now; None means `visibility_timeout`.
            lease_token: The delivery's token (`Job.lease_token`); None extends the
                current delivery's lease, whoever holds it.

        Returns:
            False when the lease is not held any more (acked, deleted, expired, or
            another delivery's), and then nothing changed.
        """
        token = token_args(lease_token)
        if token is None:
            return False
        length = self.config.visibility_timeout if seconds is None else float(seconds)
        await self._ensure_ready()
        row = await self._db.run(
            lambda conn: conn.fetchval(self._sql.extend, task_id, *token, length),
            "extend a lease",
        )
        return row is not None

    def open_lease_renewer(self) -> PostgresLeaseRenewer | None:
        """A renewer with a connection of its own (`LeaseRenewingQueueProtocol`).

        Returns:
            None when the queue was given a pool and no DSN (nothing to connect with).
        """
        if not self._can_listen:
            return None
        cfg = self.config
        return PostgresLeaseRenewer(
            cfg.dsn,
            extend_many_sql(cfg.schema, cfg.table),
            connect_timeout=cfg.connect_timeout,
            command_timeout=min(cfg.command_timeout, max(1.0, cfg.visibility_timeout / 3)),
        )

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        """Acknowledge successful processing: the job is deleted.

        Acks issued while another is in flight are sent together in one statement.

        Returns:
            True if the delivery was held (under `lease_token`, when given) and the job
            is now deleted; False, and no change, otherwise.
        """
        token = None if lease_token is None else parse_token(lease_token)
        if lease_token is not None and token is None:
            return False
        await self._ensure_ready()
        return await self._acks.ack(task_id, token)

    def result_acker(self, store: ResultStoreProtocol) -> ResultAcker | None:
        """Ack and store in one statement when `store` writes to this queue's database.

        None for any other store (see `_settling`).
        """
        if not isinstance(store, PostgresResultStore) or store.dsn != self._db.dsn:
            return None
        acks = self._result_acks
        if acks is None or acks.store is not store:
            acks = self._result_acks = AckAndStore(self._db, self._sql.ack_many, store)
        return acks

    async def nack(
        self, task_id: str, requeue: bool = True, *, lease_token: str | None = None
    ) -> bool:
        """Negative-acknowledge a leased job: requeue it now, or discard it.

        Returns:
            True if the delivery was held and is now settled; False, and no change,
            otherwise (as for `ack`).
        """
        token = token_args(lease_token)
        if token is None:
            return False
        await self._ensure_ready()
        if requeue:
            sql, args = self._sql.requeue, (task_id, *token, self._channel)
        else:
            sql, args = self._sql.discard, (task_id, *token)
        rows = await self._db.run(lambda conn: conn.fetch(sql, *args), "nack a job")
        return bool(rows)

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        """End the lease on `task` and make it available again after `delay` seconds.

        The job's current fields (`retry_count`, `last_error`...) are stored, so the
        next delivery sees them; its status becomes RETRYING. `task.lease_token` fences
        the call like the token of `ack`.

        Returns:
            True if the delivery was held and the job is scheduled again; False, and no
            change (neither in the table nor to `task`), otherwise.
        """
        token = token_args(task.lease_token)
        if token is None:
            return False
        await self._ensure_ready()
        delay = max(float(delay), 0.0)
        status, scheduled_at = task.status, task.scheduled_at
        task.status = JobStatus.RETRYING
        task.scheduled_at = time.time() + delay if delay > 0 else None
        payload = encode_job(task)
        rows = await self._db.run(
            lambda conn: conn.fetch(
                self._sql.retry_later,
                task.id,
                *token,
                delay,
                task.retry_count,
                payload,
                self._channel,
            ),
            "schedule a retry",
        )
        if not rows:
            task.status, task.scheduled_at = status, scheduled_at
        return bool(rows)

    async def requeue_stalled(self, visibility_timeout_seconds: float = 60) -> int:
        """Make in-flight jobs without a heartbeat for that many seconds available now.

        Expired leases are reclaimed by `dequeue` anyway; this is an operator's tool to
        release jobs of a consumer known to be dead before their lease runs out.

        Returns:
            How many jobs were requeued.
        """
        await self._ensure_ready()
        row = await self._db.run(
            lambda conn: conn.fetchrow(
                self._sql.requeue_stalled,
                self.config.queue_name,
                float(visibility_timeout_seconds),
                self._channel,
            ),
            "requeue stalled jobs",
        )
        return int(row[0]) if row is not None else 0

    # -- inspecting -----------------------------------------------------------------

    async def get_task_count(self) -> int:
        """Return the number of jobs waiting (ready or delayed, not in flight)."""
        return await self._count(self._sql.count_waiting, self.config.queue_name)

    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` ids of held jobs starting with `prefix` (`JobLookupProtocol`)."""
        await self._ensure_ready()
        sql = queued_ids_sql(self.config.schema, self.config.table)
        return await find_ids(self._db, sql, self.config.queue_name, prefix, limit)

    async def get_job(self, job_id: str) -> Job | None:
        """Return a job the queue holds (waiting or in flight), or None.

        Its status is RUNNING while leased, else RETRYING (after a failed attempt) or
        PENDING; `delivery_count` is the database's.
        """
        await self._ensure_ready()
        row = await self._db.run(
            lambda conn: conn.fetchrow(self._sql.get_job, job_id, self.config.queue_name),
            "read a job",
        )
        return None if row is None else held_job(job_id, row, self.config.queue_name)

    async def get_task_status(self, job_id: str) -> str | None:
        """Return the status value of a job the queue holds ('pending', ...), or None."""
        job = await self.get_job(job_id)
        return None if job is None else job.status.value

    async def delete_job(self, job_id: str) -> bool:
        """Delete a waiting or in-flight job; an in-flight one is never re-delivered.

        Returns:
            True if the job existed and was deleted.
        """
        await self._ensure_ready()
        row = await self._db.run(
            lambda conn: conn.fetchval(self._sql.delete_job, job_id, self.config.queue_name),
            "delete a job",
        )
        return row is not None

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Remove a waiting job (REMOVED), or remove a running one and announce it (STOPPING).

        One statement deletes the row and, when a live lease held it, NOTIFYs the
        queue's cancel channel with the id; NOT_FOUND for a job the queue does not hold.
        """
        await self._ensure_ready()
        row = await self._db.run(
            lambda conn: conn.fetchrow(
                self._sql.cancel, job_id, self.config.queue_name, self._cancel_channel
            ),
            "cancel a job",
        )
        if row is None:
            return CancelOutcome.NOT_FOUND
        return CancelOutcome.STOPPING if row["leased"] else CancelOutcome.REMOVED

    def cancellations(self) -> AsyncIterator[str]:
        """Yield the id of every job of this queue cancelled in flight (any process)."""
        cfg = self.config
        return follow_cancellations(
            cfg.dsn, cfg.connect_timeout, self._cancel_channel, can_listen=self._can_listen
        )

    async def count(self, queue_name: str, status: JobStatus | None = None) -> int:
        """Count jobs of `queue_name` in this table.

        `status` None counts waiting and in-flight jobs; PENDING the waiting ones (ready,
        delayed or awaiting a retry, or leased with an expired lease); RETRYING those
        waiting with retry_count > 0; RUNNING the in-flight ones whose lease has not
        expired. Terminal statuses count 0.
        """
        if status is None:
            return await self._count(self._sql.count_all, queue_name)
        try:
            name = _STATUS_COUNTS.get(JobStatus(status))
        except ValueError:
            return 0
        if name is None:
            return 0
        return await self._count(getattr(self._sql, name), queue_name)

    async def check_connection(self) -> None:
        """Run ``SELECT 1`` (after the schema check, as every call does); raise what it raises.

        `count` would read every row of the queue: seconds on a table of a million jobs.
        """
        await self._ensure_ready()
        await self._db.run(lambda conn: conn.fetchval("SELECT 1"), "answer a connection check")

    async def _count(self, sql: str, queue_name: str) -> int:
        await self._ensure_ready()
        value = await self._db.run(lambda conn: conn.fetchval(sql, queue_name), "count jobs")
        return int(value or 0)

    async def clear(self) -> None:
        """Remove every job of this queue, waiting or in flight, and its idempotency keys."""
        await self._ensure_ready()
        queue = self.config.queue_name

        async def _clear(conn: Conn) -> None:
            async with conn.transaction():
                await conn.execute(self._sql.clear_jobs, queue)
                await conn.execute(self._sql.clear_keys, queue)

        await self._db.run(_clear, "clear the queue")

    async def vacuum(self) -> None:
        """VACUUM (ANALYZE) the jobs table: for servers that run with autovacuum off.

        The dequeue index is in time order, so the dead entries of finished jobs sit at
        the front of every scan until a VACUUM removes them (see docs/backends/postgres.md).
        """
        await self._ensure_ready()
        cfg = self.config
        table = f"{quote_ident(cfg.schema)}.{quote_ident(cfg.table)}"
        await self._db.run(lambda conn: conn.execute(f"VACUUM (ANALYZE) {table}"), "vacuum")

    async def explain_dequeue(self, max_jobs: int = 10) -> str:
        """Return PostgreSQL's plan for the dequeue scan (to check it uses the index)."""
        await self._ensure_ready()
        rows = await self._db.run(
            lambda conn: conn.fetch(self._sql.explain_dequeue, self.config.queue_name, max_jobs),
            "explain the dequeue query",
        )
        return "\n".join(str(row[0]) for row in rows)


__all__ = ["TRANSIENT_ERRORS", "PostgresTaskQueue"]
