"""Batched writes of `PostgresTaskQueue`: enqueue validation and INSERTs, batched acks.

Jobs without an idempotency key go in one statement (a single-row INSERT for one job,
an ``unnest`` INSERT for many, with the priority, schedule and retry count sent once
when every job shares them); each keyed job claims its key and inserts in one
statement. All of them ``pg_notify`` the queue's channel in that same statement. Acks
issued while another ack statement is in flight are sent together in the next one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from lexigram.contracts.tasks import (
    Err,
    Job,
    JobStatus,
    Ok,
    Result,
    TaskQueueError,
    TaskValidationError,
    encode_job,
)
from lexigram.tasks.backends.postgres._batch import StatementBatcher
from lexigram.tasks.backends.postgres._connection import Conn, Database
from lexigram.tasks.backends.postgres._diagnose import connection_error
from lexigram.tasks.backends.postgres._options import PostgresTaskConfig
from lexigram.tasks.backends.postgres._sql import QueueSQL

_KEY_PURGE_INTERVAL = 60.0
_ACK_BATCH = 1000

Prepared = tuple[Job, bytes]
_PENDING = JobStatus.PENDING
_RETRYING = JobStatus.RETRYING


def _has_nul(value: object) -> bool:
    return isinstance(value, str) and "\x00" in value


class Enqueuer:
    """Turns jobs into rows of one queue (shared by every enqueue of a queue object)."""

    def __init__(self, config: PostgresTaskConfig, sql: QueueSQL, channel: str) -> None:
        self._config = config
        self._sql = sql
        self._channel = channel
        self._keys_purged_at = -_KEY_PURGE_INTERVAL

    def prepare(self, task: object) -> Prepared:
        """Validate and encode `task` (status PENDING unless RETRYING, queue name set).

        Raises:
            TaskValidationError: Not a `Job`, invalid / not JSON-serializable, or an id
                or idempotency key holding U+0000 (which a text column cannot store).
        """
        if not isinstance(task, Job):
            msg = (
                f"PostgresTaskQueue.enqueue got {type(task).__name__}, not a Job. Build a "
                "lexigram.tasks.Job and enqueue that."
            )
            raise TaskValidationError(msg)
        # Typed as declared, yet a caller may have put anything there.
        job_id: object = task.id
        key: object = task.idempotency_key
        # Inline for the common case (a str id, no key): this runs once per job.
        if (isinstance(job_id, str) and "\x00" in job_id) or (key is not None and _has_nul(key)):
            field, value = ("id", job_id) if _has_nul(job_id) else ("idempotency_key", key)
            msg = (
                f"Job {field} {value!r} contains U+0000 (NUL), which PostgreSQL cannot "
                f"store in a text column. Remove the NUL character from the {field}."
            )
            raise TaskValidationError(msg)
        if task.status is not _RETRYING:
            task.status = _PENDING
        if task.queue_name is None:
            task.queue_name = self._config.queue_name
        return task, encode_job(task)

    def split(
        self, tasks: Sequence[object]
    ) -> tuple[list[Result[str, TaskQueueError]], list[Prepared], list[tuple[int, Job, bytes]]]:
        """Prepare `tasks`: per-job results so far, plain jobs, and keyed jobs by index."""
        results: list[Result[str, TaskQueueError]] = []
        plain: list[Prepared] = []
        keyed: list[tuple[int, Job, bytes]] = []
        for index, task in enumerate(tasks):
            try:
                job, payload = self.prepare(task)
            except TaskValidationError as exc:
                results.append(Err(exc))
                continue
            results.append(Ok(job.id))
            if job.idempotency_key is None:
                plain.append((job, payload))
            else:
                keyed.append((index, job, payload))
        return results, plain, keyed

    async def insert(
        self, conn: Conn, plain: list[Prepared], keyed: list[tuple[int, Job, bytes]]
    ) -> list[tuple[int, str]]:
        """Insert the jobs; return (index, id holding the key) for each keyed job."""
        if len(plain) == 1:
            job, payload = plain[0]
            await conn.execute(
                self._sql.insert_one,
                self._config.queue_name,
                job.id,
                job.priority,
                job.scheduled_at,
                job.retry_count,
                payload,
                self._channel,
            )
        elif plain:
            jobs = [job for job, _ in plain]
            priorities = [job.priority for job in jobs]
            schedules = [job.scheduled_at for job in jobs]
            retries = [job.retry_count for job in jobs]
            count = len(jobs)
            alike = (
                priorities.count(priorities[0]) == count
                and schedules.count(schedules[0]) == count
                and retries.count(retries[0]) == count
            )
            await conn.execute(
                self._sql.insert_alike if alike else self._sql.insert_many,
                self._config.queue_name,
                [job.id for job in jobs],
                priorities[0] if alike else priorities,
                schedules[0] if alike else schedules,
                retries[0] if alike else retries,
                [payload for _, payload in plain],
                self._channel,
            )
        return [
            (index, await self._insert_keyed(conn, job, payload)) for index, job, payload in keyed
        ]

    async def _insert_keyed(self, conn: Conn, job: Job, payload: bytes) -> str:
        """Insert a job with an idempotency key; return the id now holding the key."""
        key = job.idempotency_key
        queue = self._config.queue_name
        await self._maybe_purge_keys(conn)
        for _ in range(3):
            row = await conn.fetchrow(
                self._sql.insert_keyed,
                queue,
                key,
                job.id,
                self._config.idempotency_ttl,
                job.priority,
                job.scheduled_at,
                job.retry_count,
                payload,
                self._channel,
            )
            if row is not None and row["claimed"] is not None:
                return str(row["claimed"])
            holder = await conn.fetchval(self._sql.held_key, queue, key)
            if holder is not None:
                return str(holder)
            # The holder vanished between the two statements (purged): claim again.
        msg = f"Idempotency key {key!r} of queue {queue!r} kept changing hands; retry the enqueue."
        raise connection_error(self._config.dsn, "claim an idempotency key", RuntimeError(msg))

    async def _maybe_purge_keys(self, conn: Conn) -> None:
        now = time.monotonic()
        if now - self._keys_purged_at < _KEY_PURGE_INTERVAL:
            return
        self._keys_purged_at = now
        await conn.execute(self._sql.purge_keys, self._config.queue_name)


Token = tuple[int, int]
"""A parsed lease token: (row seq, delivery count)."""


def parse_token(token: str | None) -> Token | None:
    """Parse a lease token ``"<seq>:<delivery_count>"``; None for a malformed one."""
    if token is None:
        return None
    seq, sep, count = token.partition(":")
    try:
        return (int(seq), int(count)) if sep else None
    except ValueError:
        return None


def make_token(seq: int, delivery_count: int) -> str:
    """The lease token of one delivery: the row's seq and its delivery count."""
    return f"{seq}:{delivery_count}"


_NO_TOKEN: tuple[None, None] = (None, None)


def token_args(lease_token: str | None) -> Token | tuple[None, None] | None:
    """SQL arguments (seq, delivery count) for a token; None for a malformed token.

    No token gives (NULL, NULL): the statement then acts on the current delivery.
    """
    if lease_token is None:
        return _NO_TOKEN
    return parse_token(lease_token)


class AckBatcher:
    """Coalesces acks: one ``DELETE ... USING unnest(...)`` per batch.

    An ack waits for its batch's statement, so when `ack` returns the job is gone. Acks
    arriving while a statement is in flight form the next batch (`StatementBatcher`).
    Each ack learns whether it deleted its job (its token still held the lease).
    """

    def __init__(self, db: Database, sql: str) -> None:
        self._db = db
        self._sql = sql
        self._batcher: StatementBatcher[tuple[str, Token | None], bool] = StatementBatcher(
            self._delete, _ACK_BATCH
        )

    async def ack(self, task_id: str, token: Token | None) -> bool:
        """Delete the leased job `task_id` (together with concurrent acks).

        Returns:
            True if the job was leased (under `token`, when given) and is now deleted.
        """
        return await self._batcher.submit((task_id, token))

    async def drain(self) -> None:
        """Wait for acks in flight (used by `close`)."""
        await self._batcher.drain()

    async def _delete(self, batch: list[tuple[str, Token | None]]) -> list[bool]:
        ids = [task_id for task_id, _ in batch]
        seqs = [None if token is None else token[0] for _, token in batch]
        counts = [None if token is None else token[1] for _, token in batch]

        async def delete(conn: Conn) -> set[int]:
            rows = await conn.fetch(self._sql, ids, seqs, counts)
            return {int(row[0]) for row in rows}

        done = await self._db.run(delete, "ack jobs")
        return [position in done for position in range(1, len(batch) + 1)]
