"""Batched writes of `PostgresTaskQueue`: enqueue validation and INSERTs, batched acks.

Jobs without an idempotency key go in one statement (a single-row INSERT for one job,
an ``unnest`` INSERT for many); each keyed job claims its key and inserts in one
statement. All of them ``pg_notify`` the queue's channel in that same statement. Acks
issued while another ack statement is in flight are sent together in the next one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

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
from lexigram.tasks.backends.postgres._config import PostgresTaskConfig
from lexigram.tasks.backends.postgres._connection import Conn, Database, connection_error
from lexigram.tasks.backends.postgres._sql import QueueSQL

_KEY_PURGE_INTERVAL = 60.0
_ACK_BATCH = 1000

Prepared = tuple[Job, bytes]


class Enqueuer:
    """Turns jobs into rows of one queue (shared by every enqueue of a queue object)."""

    def __init__(self, config: PostgresTaskConfig, sql: QueueSQL, channel: str) -> None:
        self._config = config
        self._sql = sql
        self._channel = channel
        self._keys_purged_at = -_KEY_PURGE_INTERVAL

    def prepare(self, task: Any) -> Prepared:
        """Validate and encode `task` (status PENDING unless RETRYING, queue name set).

        Raises:
            TaskValidationError: Not a `Job`, or invalid / not JSON-serializable.
        """
        if not isinstance(task, Job):
            msg = (
                f"PostgresTaskQueue.enqueue got {type(task).__name__}, not a Job. Build a "
                "lexigram.tasks.Job (or JobProtocol) and enqueue that."
            )
            raise TaskValidationError(msg)
        if task.status is not JobStatus.RETRYING:
            task.status = JobStatus.PENDING
        if task.queue_name is None:
            task.queue_name = self._config.queue_name
        return task, encode_job(task)

    def split(
        self, tasks: Sequence[Any]
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
            await conn.execute(
                self._sql.insert_many,
                self._config.queue_name,
                [job.id for job, _ in plain],
                [job.priority for job, _ in plain],
                [job.scheduled_at for job, _ in plain],
                [job.retry_count for job, _ in plain],
                [None] * len(plain),
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


class AckBatcher:
    """Coalesces acks: one ``DELETE ... WHERE id = ANY($1)`` per batch.

    An ack waits for its batch's statement, so when `ack` returns the job is gone. Acks
    arriving while a statement is in flight form the next batch: no timer, no added
    latency when acks are rare.
    """

    def __init__(self, db: Database, sql: str) -> None:
        self._db = db
        self._sql = sql
        self._pending: list[tuple[str, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def ack(self, task_id: str) -> None:
        """Delete the leased job `task_id` (together with concurrent acks)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((task_id, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._flush())
        await future

    async def drain(self) -> None:
        """Wait for acks in flight (used by `close`)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:_ACK_BATCH], self._pending[_ACK_BATCH:]
            ids = [task_id for task_id, _ in batch]
            try:
                await self._db.run(self._statement(ids), "ack jobs")
            except BaseException as exc:  # every waiting ack must learn the outcome
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    def _statement(self, ids: list[str]) -> Callable[[Conn], Awaitable[str]]:
        async def _delete(conn: Conn) -> str:
            return await conn.execute(self._sql, ids)

        return _delete
