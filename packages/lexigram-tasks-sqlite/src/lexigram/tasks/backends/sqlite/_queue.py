"""`SQLiteTaskQueue`: the `TaskQueueProtocol` on one table of a SQLite file.

The statements of the take and of enqueue are in `_sql`.

- enqueue: one INSERT per job (``executemany`` for a batch), all of `enqueue_many` in
  one transaction; an idempotency key is claimed in ``lexigram_job_keys`` in the same
  transaction.
- dequeue: one transaction selects up to n ready rows in delivery order (one priority
  level at a time, reading only rows that are due) and leases them: a new random lease
  token, ``delivery_count + 1``, and ``available_at`` moved to the lease expiry. An
  expired lease is simply a row whose ``available_at`` has passed, so the same
  statements redeliver it.
- fencing: ack, nack, retry_later and extend_lease with a token match on
  ``lease_token = ? AND available_at > now``: a token whose lease ran out (even if no
  one took the job yet), was replaced by a redelivery, or whose row is gone changes
  nothing.
- the lease and the ack run at once on the event loop and commit together two loop
  turns later (`Database.run_now`): a worker pays one commit per round of jobs.
- waiting: an idle consumer waits for a wake-up datagram (see `_notify`), bounded by
  the next delayed job or lease expiry and by `poll_interval`, at which it checks
  ``PRAGMA data_version`` before querying again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from lexigram.contracts.tasks import (
    CancelOutcome,
    Err,
    Job,
    JobStatus,
    Ok,
    Result,
    TaskQueueError,
    TaskValidationError,
    decode_or_poison,
    encode_job,
    make_renamed_poison_job,
    require_number,
)
from lexigram.tasks.backends.sqlite._calls import Missed
from lexigram.tasks.backends.sqlite._cancel import (
    RAN,
    WAITED,
    cancel_in,
    cancel_topic,
    follow_cancellations,
)
from lexigram.tasks.backends.sqlite._database import Database
from lexigram.tasks.backends.sqlite._lease_keeper import SQLiteLeaseRenewer
from lexigram.tasks.backends.sqlite._lookup import queued_ids
from lexigram.tasks.backends.sqlite._notify import TopicWaiter, data_version
from lexigram.tasks.backends.sqlite._options import SQLiteOptions, database_path
from lexigram.tasks.backends.sqlite._sql import (
    ANY_HOLDER,
    HELD,
    LEASED,
    insert_rows,
    lease_rows,
    pick,
)
from lexigram.tasks.backends.sqlite._unnamed import rename_unnamed, undecodable_text

logger = logging.getLogger(__name__)

# Lease tokens only need to be unique per delivery (they fence, they do not
# authenticate): a per-process generator seeded from the OS, no syscall per lease.
_random = random.Random()  # noqa: S311 - not a secret
# A forked child must not replay its parent's sequence (it could redeliver the same job
# under the token its parent used).
os.register_at_fork(after_in_child=_random.seed)


def queue_topic(queue_name: str) -> str:
    """The wake-up topic of a queue."""
    return f"q:{queue_name}"


@dataclass(slots=True)
class _Taken:
    rows: list[tuple[str, bytes, int]]
    token: str
    next_due: float | None
    version: int


class SQLiteTaskQueue:
    """A durable task queue in a SQLite file, shared by every process on the machine.

    Delivery is at-least-once with leases: priority high to low, FIFO within a
    priority, delayed jobs never block ready ones, idempotency keys and job ids are
    unique, and a job whose consumer died is delivered again once its lease expires.

    Args:
        path: The database file, or a ``sqlite:///`` URL (default: see `default_path`).
            Ignored with `database`.
        queue_name: The queue this object serves ("tasks" by default, as on every backend).
        visibility_timeout: Lease length in seconds.
        url: A ``sqlite:///`` URL instead of `path`.
        options: `SQLiteOptions` for everything else (synchronous, busy timeout...).
        database: A shared `Database` (the backend object passes one per file), which
            `close` leaves open unless `close_database` (the backend object passes a
            reference taken with `Database.retain` for each object it builds).

    Example:
        queue = SQLiteTaskQueue("tasks.db", queue_name="emails")
        job_id = (await queue.enqueue(Job(name="send_email", args=("a@b.c",)))).unwrap()
        job = await queue.dequeue()
        await queue.ack(job.id, lease_token=job.lease_token)
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        queue_name: str = "tasks",
        visibility_timeout: float | None = None,
        url: str | None = None,
        options: SQLiteOptions | None = None,
        database: Database | None = None,
        close_database: bool = False,
    ) -> None:
        opts = options or SQLiteOptions()
        self.options = opts
        self._queue_name = queue_name
        lease = visibility_timeout if visibility_timeout is not None else opts.visibility_timeout
        require_number(type(self).__name__, "visibility_timeout", lease)
        self._lease = float(lease)
        if self._lease <= 0:
            msg = f"SQLiteTaskQueue visibility_timeout={self._lease!r}. Use a positive number."
            raise ValueError(msg)
        self._owns_db = database is None or close_database
        if database is None:
            database = Database(
                database_path(path, url, type(self).__name__),
                synchronous=opts.synchronous,
                busy_timeout=opts.busy_timeout,
                allow_network_filesystem=opts.allow_network_filesystem,
                open_timeout=opts.open_timeout,
            )
        self._db = database
        self._topic = queue_topic(queue_name)
        self._topics = (self._topic,)
        self._waiter = TopicWaiter(database.notifier, self._topic)
        self._background: set[asyncio.Future[None]] = set()
        self._closed = False
        # Jobs a take renamed (their stored id was not UTF-8): new id -> stored id.
        self._unnamed: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return f"SQLiteTaskQueue(path={self._db.path!r}, queue_name={self._queue_name!r})"

    @property
    def queue_name(self) -> str:
        """Name of the queue this object serves."""
        return self._queue_name

    @property
    def lease_seconds(self) -> float:
        """Lease length in seconds given to every delivery."""
        return self._lease

    @property
    def visibility_timeout(self) -> float:
        """Lease length in seconds (the older name of `lease_seconds`)."""
        return self._lease

    @property
    def database(self) -> Database:
        """The `Database` this queue runs on."""
        return self._db

    @property
    def path(self) -> str:
        """The database file."""
        return self._db.path

    # -- producing --------------------------------------------------------------------

    async def enqueue(self, task: Job) -> Result[str, TaskQueueError]:
        """Add a job; a job id or idempotency key already held returns Ok(existing id).

        Returns:
            Ok(job_id), or Err(TaskValidationError) for an invalid or non-JSON job.

        Raises:
            BackendConnectionError: The database cannot be written.
        """
        return (await self.enqueue_many([task]))[0]

    async def enqueue_many(self, tasks: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        """Add several jobs in one transaction; one result per job, in order."""
        results: list[Result[str, TaskQueueError] | None] = [None] * len(tasks)
        rows: list[tuple[int, tuple[Any, ...]]] = []
        now = time.time()
        for index, job in enumerate(tasks):
            if job.status is not JobStatus.RETRYING:
                job.status = JobStatus.PENDING
            if job.queue_name is None:
                job.queue_name = self._queue_name
            try:
                payload = encode_job(job)
            except TaskValidationError as exc:
                results[index] = Err(exc)
                continue
            due = now if job.scheduled_at is None else max(now, job.scheduled_at)
            rows.append(
                (
                    index,
                    (
                        job.id,
                        self._queue_name,
                        job.priority,
                        due,
                        job.retry_count,
                        job.idempotency_key,
                        payload,
                    ),
                )
            )
        if rows:
            queue, ttl = self._queue_name, self.options.idempotency_ttl

            def insert(conn: sqlite3.Connection) -> list[str]:
                return insert_rows(conn, queue, ttl, [row for _, row in rows])

            ids = await self._db.call(insert, topics=self._topics, what="enqueue jobs")
            for (index, _), job_id in zip(rows, ids, strict=True):
                results[index] = Ok(job_id)
        return [result for result in results if result is not None]

    # -- consuming --------------------------------------------------------------------

    async def dequeue(self) -> Job | None:
        """Lease and return the next ready job, or None when none is ready (no waiting)."""
        jobs = await self.dequeue_batch(1)
        return jobs[0] if jobs else None

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        """Lease up to `max_jobs` ready jobs, waiting up to `timeout` seconds for the first.

        The wait ends on a wake-up from any process (a new or returned job), when a
        delayed job or a lease falls due, on `close`, or at `timeout`.
        """
        if max_jobs < 1 or self._closed:
            return []
        if timeout <= 0:
            return self._jobs(await self._take(max_jobs))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        waiter = self._waiter
        waiter.subscribe(loop)
        skip_take = False
        version = -1
        next_due: float | None = None
        while True:
            generation = waiter.generation
            if not skip_take:
                taken = await self._take(max_jobs)
                if taken.rows:
                    return self._jobs(taken)
                version, next_due = taken.version, taken.next_due
            skip_take = False
            now = loop.time()
            if now >= deadline or self._closed:
                return []
            if waiter.generation != generation:
                continue  # woken while querying
            wait = min(deadline - now, self.options.poll_interval)
            due_in = None if next_due is None else max(0.0, next_due - time.time())
            if due_in is not None and due_in <= wait:
                wait, polling = due_in, False
            else:
                polling = wait < deadline - now
            woke = await waiter.wait(wait)
            if not woke and polling:
                # Nothing woke us: take again only if another connection committed.
                current = await self._db.call(data_version, write=False, what="poll")
                skip_take = current == version

    async def _take(self, max_jobs: int) -> _Taken:
        queue, lease, unnamed = self._queue_name, self._lease, self._unnamed

        def take(conn: sqlite3.Connection) -> _Taken:
            version = data_version(conn)
            now = time.time()
            try:
                picked, due = pick(conn, queue, now, max_jobs)
            except sqlite3.OperationalError as exc:
                if not undecodable_text(exc):
                    raise
                unnamed.update(rename_unnamed(conn, queue))
                picked, due = pick(conn, queue, now, max_jobs)
            token = f"{_random.getrandbits(64):016x}"
            if not picked:
                return _Taken([], token, due, version)
            expiry = now + lease
            lease_rows(conn, token, expiry, [row[0] for row in picked])
            return _Taken([(row[1], row[2], row[3] + 1) for row in picked], token, None, version)

        taken = self._db.run_now(take, what="lease jobs", replay=False)
        if not isinstance(taken, Missed):
            if taken.rows:
                await self._committed(taken)
            return taken
        task = asyncio.ensure_future(self._db.call(take, what="lease jobs"))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The consumer went away while the lease was being taken: hand the jobs back
            # now rather than after the lease expires.
            task.add_done_callback(self._give_back)
            raise

    async def _committed(self, taken: _Taken) -> None:
        """Wait until the lease `taken` is committed, before its jobs start.

        A job's delivery count is raised with its lease: left uncommitted, a handler that
        kills its process at once (a crash in a C extension, an OOM kill) would come back
        with its count unchanged, for ever, and never be dead-lettered as a crash loop.
        The wait joins the commit the lease rides anyway (one turn later).
        """
        barrier = asyncio.ensure_future(self._db.call(_nothing, what="commit the lease"))
        try:
            await asyncio.shield(barrier)
        except asyncio.CancelledError:
            # The consumer went away meanwhile: hand the jobs back now, not after the lease
            # (the release is written after the lease, in its commit or the next).
            self._release(taken)
            raise

    def _give_back(self, task: asyncio.Future[_Taken]) -> None:
        """The lease a cancelled consumer was taking, once taken: release it."""
        if not task.cancelled() and task.exception() is None:
            self._release(task.result())

    def _release(self, taken: _Taken) -> None:
        """Hand the jobs of `taken` back to the queue now, their delivery undone."""
        if taken.rows and not self._closed:
            queue, token = self._queue_name, taken.token

            def release(conn: sqlite3.Connection) -> None:
                now = time.time()
                conn.executemany(
                    "UPDATE lexigram_jobs SET lease_token = NULL, available_at = ?, "  # noqa: S608 - constant text
                    f"delivery_count = max(0, delivery_count - 1) WHERE {HELD}",
                    [(now, row[0], queue, token, now) for row in taken.rows],
                )

            released = asyncio.ensure_future(
                self._db.call(release, topics=self._topics, what="release")
            )
            self._background.add(released)
            released.add_done_callback(self._background.discard)

    def _jobs(self, taken: _Taken) -> list[Job]:
        jobs: list[Job] = []
        queue, unnamed = self._queue_name, self._unnamed
        for job_id, payload, delivery_count in taken.rows:
            raw_id = unnamed.pop(job_id, None) if unnamed else None
            if raw_id is None:
                # Never raises for a bad payload, so it cannot fail the rest of the batch.
                job = decode_or_poison(job_id, payload, queue_name=queue)
            else:
                job = make_renamed_poison_job(job_id, raw_id, payload, queue_name=queue)
            job.status = JobStatus.RUNNING
            job.delivery_count = delivery_count
            job.lease_token = taken.token
            jobs.append(job)
        return jobs

    # -- settling ---------------------------------------------------------------------

    def _where(self, task_id: str, token: str | None) -> tuple[str, tuple[Any, ...]]:
        if token is None:
            return ANY_HOLDER, (task_id, self._queue_name)
        return HELD, (task_id, self._queue_name, token, time.time())

    async def _change(
        self, sql: str, params: tuple[Any, ...], *, wake: bool = False, what: str
    ) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount > 0

        topics = self._topics if wake else ()
        return await self._db.call(run, topics=topics, what=what)

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        """Acknowledge a delivery; the queue forgets the job.

        With ``synchronous=NORMAL`` it returns before its commit, which follows within
        two loop turns together with every write of this process issued meanwhile (and
        before any later awaited call returns): a crash in between delivers the job
        again. With FULL it returns after its commit.

        Returns:
            True if the delivery was held and is now settled; False (and no change) for
            a stale token or a job not in flight.
        """
        where, params = self._where(task_id, lease_token)
        sql = f"DELETE FROM lexigram_jobs WHERE {where}"  # noqa: S608 - constant text

        def run(conn: sqlite3.Connection) -> bool:
            return conn.execute(sql, params).rowcount > 0

        held = self._db.run_now(run, what="ack a job")
        if isinstance(held, Missed):
            return await self._db.call(run, what="ack a job")
        return held

    async def nack(
        self, task_id: str, requeue: bool = True, *, lease_token: str | None = None
    ) -> bool:
        """Return a leased job to the queue now (`requeue`), or discard it."""
        where, params = self._where(task_id, lease_token)
        if not requeue:
            return await self._change(
                f"DELETE FROM lexigram_jobs WHERE {where}",  # noqa: S608 - constant text
                params,
                what="discard a job",
            )
        return await self._change(
            f"UPDATE lexigram_jobs SET lease_token = NULL, available_at = ? WHERE {where}",  # noqa: S608 - constant text
            (time.time(), *params),
            wake=True,
            what="requeue a job",
        )

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        """End the lease on `task` and make it available after `delay` s, with its new state.

        Fenced by `task.lease_token` like `ack`.
        """
        task.status = JobStatus.RETRYING
        try:
            payload = encode_job(task)
        except TaskValidationError:
            logger.exception("Job %s cannot be re-encoded for its retry; it is discarded.", task.id)
            return await self.nack(task.id, requeue=False, lease_token=task.lease_token)
        where, params = self._where(task.id, task.lease_token)
        due = time.time() + max(0.0, delay)
        return await self._change(
            "UPDATE lexigram_jobs SET lease_token = NULL, available_at = ?, retry_count = ?, "  # noqa: S608 - constant text
            f"payload = ? WHERE {where}",
            (due, task.retry_count, payload, *params),
            wake=True,
            what="schedule a retry",
        )

    async def extend_lease(
        self, task_id: str, seconds: float | None = None, *, lease_token: str | None = None
    ) -> bool:
        """Extend an unexpired lease to `seconds` (default `lease_seconds`) from now.

        Returns:
            False when the job is not leased under that token any more (acked, deleted,
            or the lease expired).
        """
        length = self._lease if seconds is None else max(0.0, seconds)
        now = time.time()
        if lease_token is None:
            where = f"{ANY_HOLDER} AND available_at > ?"
            params: tuple[Any, ...] = (task_id, self._queue_name, now)
        else:
            where, params = HELD, (task_id, self._queue_name, lease_token, now)
        return await self._change(
            f"UPDATE lexigram_jobs SET available_at = ? WHERE {where}",  # noqa: S608 - constant text
            (now + length, *params),
            what="extend a lease",
        )

    def open_lease_renewer(self) -> SQLiteLeaseRenewer:
        """A renewer with a connection of its own (`LeaseRenewingQueueProtocol`)."""
        return SQLiteLeaseRenewer(self._db.path, self._queue_name, self._db.busy_timeout)

    # -- inspecting -------------------------------------------------------------------

    async def get_task_count(self) -> int:
        """Return the number of jobs waiting (ready or delayed, not in flight)."""
        return await self.count(self._queue_name, JobStatus.PENDING)

    async def find_job_ids(self, prefix: str, limit: int) -> list[str]:
        """Return up to `limit` ids of held jobs starting with `prefix` (`JobLookupProtocol`)."""
        return await queued_ids(self._db, self._queue_name, prefix, limit)

    async def get_job(self, job_id: str) -> Job | None:
        """Return a job the queue holds (waiting or in flight), or None."""
        queue = self._queue_name

        def read(conn: sqlite3.Connection) -> tuple[bytes, int, bool, int] | None:
            now = time.time()
            row = conn.execute(
                "SELECT payload, delivery_count, lease_token IS NOT NULL AND available_at > ?, "
                "retry_count FROM lexigram_jobs WHERE id = ? AND queue = ?",
                (now, job_id, queue),
            ).fetchone()
            return None if row is None else (row[0], row[1], bool(row[2]), row[3])

        row = await self._db.call(read, write=False, what="read a job")
        if row is None:
            return None
        payload, delivery_count, leased, _ = row
        job = decode_or_poison(job_id, payload, queue_name=queue)
        job.delivery_count = delivery_count
        if leased:
            job.status = JobStatus.RUNNING
        elif job.status not in (JobStatus.PENDING, JobStatus.RETRYING):
            job.status = JobStatus.RETRYING if job.retry_count > 0 else JobStatus.PENDING
        return job

    async def get_task_status(self, job_id: str) -> str | None:
        """Return the status value of a job the queue holds ('pending', ...), or None."""
        job = await self.get_job(job_id)
        return None if job is None else job.status.value

    async def delete_job(self, job_id: str) -> bool:
        """Delete a waiting or in-flight job; an in-flight one is never redelivered."""
        return await self._change(
            "DELETE FROM lexigram_jobs WHERE id = ? AND queue = ?",
            (job_id, self._queue_name),
            what="delete a job",
        )

    async def cancel(self, job_id: str) -> CancelOutcome:
        """Remove a waiting job (REMOVED), or remove a running one and announce it (STOPPING).

        One transaction deletes the row and, when a live lease held it, records the
        announcement that wakes the workers of every process; NOT_FOUND for a job the
        queue does not hold.
        """
        queue = self._queue_name
        found = await self._db.call(
            lambda conn: cancel_in(conn, queue, job_id),
            topics=(cancel_topic(queue),),
            what="cancel a job",
        )
        if found == RAN:
            return CancelOutcome.STOPPING
        return CancelOutcome.REMOVED if found == WAITED else CancelOutcome.NOT_FOUND

    def cancellations(self) -> AsyncIterator[str]:
        """Yield the id of every job of this queue cancelled in flight (any process)."""
        return follow_cancellations(self._db, self._queue_name, self.options.poll_interval)

    async def count(self, queue_name: str, status: JobStatus | None = None) -> int:
        """Count jobs of `queue_name` in this file.

        None counts waiting and in-flight jobs; PENDING the waiting ones (an expired
        lease counts as waiting); RETRYING the waiting ones with retry_count > 0;
        RUNNING the unexpired leases. Terminal statuses count 0.
        """
        base = "SELECT count(*) FROM lexigram_jobs WHERE queue = ?"
        params: tuple[Any, ...]
        if status is None:
            sql, params = base, (queue_name,)
        else:
            try:
                wanted = JobStatus(status)
            except ValueError:
                return 0
            now = time.time()
            if wanted is JobStatus.PENDING:
                sql, params = f"{base} AND NOT ({LEASED})", (queue_name, now)
            elif wanted is JobStatus.RETRYING:
                sql = f"{base} AND retry_count > 0 AND NOT ({LEASED})"
                params = (queue_name, now)
            elif wanted is JobStatus.RUNNING:
                sql, params = f"{base} AND {LEASED}", (queue_name, now)
            else:
                return 0

        def run(conn: sqlite3.Connection) -> int:
            return int(conn.execute(sql, params).fetchone()[0])

        # It reads every row of the queue: apart, so a large one never stalls the loop.
        return await self._db.read_apart(run, what="count jobs")

    async def check_connection(self) -> None:
        """Open the file (creating its tables on first use) and read one page of it.

        `count` would read every row of the queue: on a file of a million jobs a third
        of a second, and the pages it touches stay in the process's memory map.
        """

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("SELECT 1 FROM lexigram_jobs LIMIT 1").fetchall()

        await self._db.call(run, write=False, what="check the connection")

    async def clear(self) -> None:
        """Remove every job of this queue, waiting or in flight, and its idempotency keys."""
        queue = self._queue_name

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM lexigram_jobs WHERE queue = ?", (queue,))
            conn.execute("DELETE FROM lexigram_job_keys WHERE queue = ?", (queue,))

        await self._db.call(run, what="clear the queue")

    async def close(self) -> None:
        """Stop waiting, and close the database if this queue opened it; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._waiter.close()
        if self._owns_db:
            await self._db.close()


def _nothing(conn: sqlite3.Connection) -> None:
    """A write that writes nothing: awaited, it returns once the open transaction commits."""
