"""`PersistentDeadLetterQueue`: the async DLQ over a pluggable `DLQBackendProtocol` storage."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from lexigram.contracts.tasks import (
    DLQBackendProtocol,
    FailureRecord,
    Job,
    ResultStoreProtocol,
    TaskQueueError,
    TaskQueueProtocol,
)
from lexigram.tasks.dlq._queue import (
    attempt_count,
    enqueue_again,
    reset_for_retry,
    undecodable,
    undecodable_message,
)

logger = logging.getLogger(__name__)


def _retriable(record: FailureRecord) -> FailureRecord:
    """`record`, unless it stands for an undecodable payload, which cannot be retried."""
    if undecodable(record):
        raise TaskQueueError(undecodable_message(record), details={"job_id": record.job.id})
    return record


class _UnservedQueueError(TaskQueueError):
    """A dead-lettered job came from a queue that no queue of this process serves."""

    def __init__(self, message: str, *, queue_name: str) -> None:
        super().__init__(message, queue_name=queue_name)
        self.queue_name = queue_name


DLQBackend = DLQBackendProtocol
"""The storage protocol of `PersistentDeadLetterQueue` (alias of `DLQBackendProtocol`)."""


class InMemoryDLQBackend:
    """Process-local `DLQBackendProtocol` storage (records lost on exit).

    Records are the dicts of `FailureRecord.to_dict`, kept in insertion order so that
    `list_all` returns them newest first.
    """

    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"InMemoryDLQBackend(size={len(self._records)})"

    async def add(self, record_id: str, record_data: Mapping[str, Any]) -> None:
        """Store (or replace, as the newest) a record."""
        self._records.pop(record_id, None)
        self._records[record_id] = dict(record_data)

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """Return a copy of a record, or None."""
        record = self._records.get(record_id)
        return None if record is None else dict(record)

    async def list_all(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return records newest first, at most `limit` of them."""
        found: list[dict[str, Any]] = []
        for record in reversed(self._records.values()):
            if limit is not None and len(found) >= limit:
                break
            found.append(dict(record))
        return found

    async def remove(self, record_id: str) -> bool:
        """Delete a record; True if it existed."""
        return self._records.pop(record_id, None) is not None

    async def clear(self) -> int:
        """Delete every record and return how many there were."""
        count = len(self._records)
        self._records.clear()
        return count

    async def size(self) -> int:
        """Return the number of records."""
        return len(self._records)


class PersistentDeadLetterQueue:
    """Dead-letter queue whose records live in a `DLQBackendProtocol` storage.

    Same operations as `DeadLetterQueue`, but async, so a backend (Redis, Postgres) can
    keep failures across restarts and share them between processes. Give it the queue
    the jobs came from and `retry` puts a job straight back on it.

    A backend keeps the dead letters of every queue it serves in one storage (under one
    Redis key prefix, in one PostgreSQL schema), so this DLQ lists them all, as
    ``lexigram-tasks dlq list`` does, and `retry` puts each job back on its own queue, as
    ``lexigram-tasks dlq retry`` does: `queue` for its jobs, and for a job of another
    queue the one of that name this process consumes (a tasks provider's or a worker
    command's queues).

    Args:
        backend: Record storage; an `InMemoryDLQBackend` when omitted.
        retention_hours: Default age limit of `purge`.
        queue: Queue that `retry`/`retry_all` enqueue retried jobs on (optional).
        result_store: Where a retried job's failed result is deleted before it goes
            back (default: the store registered for its queue, `register_job_stores`),
            so that its status and result answer for the new run.

    Example:
        dlq = PersistentDeadLetterQueue(backend=redis_backend.create_dlq_backend(spec))
        await dlq.add(job, "ValueError: bad input", traceback=tb)
        job = await dlq.retry(job.id)
    """

    def __init__(
        self,
        *,
        backend: DLQBackendProtocol | None = None,
        retention_hours: float = 168,
        queue: TaskQueueProtocol | None = None,
        result_store: ResultStoreProtocol | None = None,
    ) -> None:
        self.backend: DLQBackendProtocol = backend if backend is not None else InMemoryDLQBackend()
        self.retention_hours = retention_hours
        self.queue = queue
        self.result_store = result_store
        self._total_added = 0
        self._total_retried = 0
        self._total_purged = 0

    def __repr__(self) -> str:
        return f"PersistentDeadLetterQueue(backend={self.backend!r})"

    async def add(
        self, job: Job, error: str, traceback: str | None = None, **metadata: Any
    ) -> None:
        """Add a failed job to the DLQ.

        Args:
            job: The failed job.
            error: Error message.
            traceback: Full traceback string.
            **metadata: Additional metadata (reason, worker id, ``attempts``,
                ``max_retries``, ...). ``attempts`` becomes the record's
                ``attempt_count`` (default: the job's retry count).
        """
        record = FailureRecord(
            job=job,
            error=error,
            traceback=traceback,
            attempt_count=attempt_count(job, metadata),
            metadata=dict(metadata),
        )
        await self.backend.add(job.id, record.to_dict())
        self._total_added += 1

    async def get(self, job_id: str) -> FailureRecord | None:
        """Get a specific failure record."""
        data = await self.backend.get(job_id)
        return None if data is None else FailureRecord.from_dict(data)

    async def list_failed(
        self, *, limit: int = 50, job_name: str | None = None
    ) -> list[FailureRecord]:
        """List failed jobs, newest first, optionally filtered by job name."""
        records = [FailureRecord.from_dict(d) for d in await self.backend.list_all()]
        if job_name is not None:
            records = [r for r in records if r.job.name == job_name]
        return records[:limit]

    async def retry(self, job_id: str) -> Job | None:
        """Remove a job from the DLQ, reset it, and enqueue it when a queue is set.

        The job goes back on its own queue: `queue` when it came from there, else the
        queue of its name that this process consumes.

        Returns:
            The job reset to PENDING, or None if no record has that id.

        Raises:
            TaskQueueError: The queue refused the job, it came from a queue that no queue
                of this process serves, or its payload could not be decoded (the record
                is kept in each case).
        """
        data = await self.backend.get(job_id)
        if data is None:
            return None
        job = reset_for_retry(_retriable(FailureRecord.from_dict(data)).job)
        home = self._home_of(job)
        if home is not None:
            await enqueue_again(home, job, result_store=self.result_store)
        await self.backend.remove(job_id)
        self._total_retried += 1
        return job

    def _home_of(self, job: Job) -> TaskQueueProtocol | None:
        """The queue a retried job goes back on (None: this DLQ enqueues nothing)."""
        if self.queue is None:
            return None
        own = job.queue_name
        if own is None or own == self.queue.queue_name:
            return self.queue
        # Imported here: the producer imports the worker, which imports this module.
        from lexigram.tasks._producer import queue_serving  # noqa: PLC0415

        home = queue_serving(own)
        if home is None:
            msg = (
                f"Dead-lettered job {job.id!r} ({job.name!r}) came from queue {own!r}, "
                f"which no queue of this process serves (this DLQ's is "
                f"{self.queue.queue_name!r}); it stays in the DLQ. Put it back with "
                f"requeue({job.id!r}, <the {own!r} queue>) or `lexigram-tasks dlq retry "
                f"{job.id}`."
            )
            raise _UnservedQueueError(msg, queue_name=own)
        return home

    async def requeue(self, job_id: str, queue: TaskQueueProtocol) -> str | None:
        """Take a job out of the DLQ and enqueue it on `queue`; its id, or None if absent.

        Raises:
            TaskQueueError: The queue refused the job, or its payload could not be decoded
                (the record is kept).
        """
        data = await self.backend.get(job_id)
        if data is None:
            return None
        job = reset_for_retry(_retriable(FailureRecord.from_dict(data)).job)
        new_id = await enqueue_again(queue, job, result_store=self.result_store)
        await self.backend.remove(job_id)
        self._total_retried += 1
        return new_id

    async def retry_all(self) -> list[Job]:
        """Retry every failed job (see `retry`); returns the retried jobs.

        A job of a queue that no queue of this process serves stays in the DLQ, and so
        does the stand-in of a payload that could not be decoded; a warning names how many.
        """
        jobs: list[Job] = []
        homeless: Counter[str] = Counter()
        poison = 0
        for data in await self.backend.list_all():
            if undecodable(FailureRecord.from_dict(data)):
                poison += 1
                continue
            try:
                job = await self.retry(str(data["job_id"]))
            except _UnservedQueueError as exc:
                homeless[exc.queue_name] += 1
                continue
            if job is not None:
                jobs.append(job)
        if homeless:
            logger.warning(
                "retry_all left %d dead-lettered job(s) in the DLQ: they came from queues "
                "no queue of this process serves (%s). Retry them where those queues are "
                "consumed, or with `lexigram-tasks dlq retry-all`.",
                homeless.total(),
                ", ".join(f"{name!r}: {count}" for name, count in sorted(homeless.items())),
            )
        if poison:
            logger.warning(
                "retry_all left %d dead-lettered job(s) in the DLQ whose payloads could not "
                "be decoded (reason 'poison'): they cannot be retried; `lexigram-tasks dlq "
                "show ID` has each one's error.",
                poison,
            )
        return jobs

    async def remove(self, job_id: str) -> bool:
        """Permanently remove a failure; True if it was there."""
        return await self.backend.remove(job_id)

    async def purge(self, *, older_than_hours: float | None = None) -> int:
        """Remove records older than `older_than_hours` (default: `retention_hours`)."""
        hours = self.retention_hours if older_than_hours is None else older_than_hours
        cutoff = time.time() - hours * 3600.0
        purged = 0
        for data in await self.backend.list_all():
            if float(data.get("failed_at") or 0.0) < cutoff and await self.backend.remove(
                str(data["job_id"])
            ):
                purged += 1
        self._total_purged += purged
        return purged

    async def clear(self) -> int:
        """Clear all DLQ entries and return how many there were."""
        return await self.backend.clear()

    async def size(self) -> int:
        """Return the number of stored failure records."""
        return await self.backend.size()

    def get_stats(self) -> dict[str, Any]:
        """Get this object's DLQ counters (the backend's size needs `await size()`)."""
        return {
            "total_added": self._total_added,
            "total_retried": self._total_retried,
            "total_purged": self._total_purged,
            "retention_hours": self.retention_hours,
        }
