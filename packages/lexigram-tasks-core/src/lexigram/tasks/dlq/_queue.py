"""`DeadLetterQueue`: the in-process, synchronous dead-letter queue of the published API."""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from typing import Any

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    FailureRecord,
    Job,
    JobStatus,
    ResultStoreProtocol,
    TaskConfigurationError,
    TaskQueueError,
    TaskQueueProtocol,
)


def attempt_count(job: Job, metadata: dict[str, Any]) -> int:
    """The attempts a dead-lettered job had: the worker's ``attempts``, else its retry count.

    The worker passes ``attempts`` (runs of the handler, the number its log line shows;
    0 for a job that could not run at all); a caller that passes none gets the job's
    retry count, as before.
    """
    attempts = metadata.get("attempts")
    if isinstance(attempts, int) and not isinstance(attempts, bool) and attempts >= 0:
        return attempts
    return job.retry_count


def undecodable(record: FailureRecord) -> bool:
    """Whether `record` stands for a payload that could not be decoded (reason ``poison``).

    Its job is the stand-in `make_poison_job` built: no arguments, only a preview of the
    payload. Put back on a queue, it could only be dead-lettered again.
    """
    # The worker's reason, named here: the worker's module imports this package.
    return record.job.name == POISON_JOB_NAME or record.metadata.get("reason") == "poison"


def undecodable_message(record: FailureRecord) -> str:
    """Why the dead letter of an undecodable payload cannot be retried, and what to do."""
    queue = f" of queue {record.job.queue_name!r}" if record.job.queue_name else ""
    return (
        f"Job {record.job.id}{queue} was dead-lettered because its payload could not be "
        "decoded (reason 'poison'); only a preview of the payload was kept, so it cannot be "
        "retried. Fix the producer that wrote it and enqueue the job again, then delete "
        f"this record (`lexigram-tasks dlq delete {record.job.id}`, or Delete on the "
        "dashboard's dead-letter page)."
    )


def reset_for_retry(job: Job) -> Job:
    """Reset a dead-lettered job so that it runs again from scratch (returns the same job)."""
    job.status = JobStatus.PENDING
    job.retry_count = 0
    job.delivery_count = 0
    job.last_error = None
    job.started_at = None
    job.completed_at = None
    job.result = None
    job.scheduled_at = None
    return job


async def enqueue_again(
    queue: TaskQueueProtocol, job: Job, *, result_store: ResultStoreProtocol | None = None
) -> str:
    """Enqueue a job taken out of a DLQ; raise the queue's error if it refuses it.

    The failure its last run stored is deleted first, from `result_store` or else the
    store registered for `queue` (`register_job_stores`): left there, it would answer
    the job's status, ``result`` and ``wait`` for the new run. First, because a worker
    may finish the new run before a deletion made after the enqueue. The job is enqueued
    as the core enqueues every job (`submit_job`): within the enqueue timeout, and
    reported as "queued" to the producer's observers.
    """
    # Imported here: the handles and the producer import the worker, which imports this
    # package.
    from lexigram.tasks._producer import submit_job  # noqa: PLC0415
    from lexigram.tasks.handles import job_stores_for  # noqa: PLC0415

    if result_store is None:
        result_store = job_stores_for(queue).result_store
    if result_store is not None:
        await result_store.delete(job.id)
    result = await submit_job(queue, job)
    if result.is_err():
        error = result.unwrap_err()
        msg = f"Could not put dead-lettered job {job.id!r} ({job.name!r}) back: {error}"
        raise TaskQueueError(msg) from error
    return result.unwrap()


class DeadLetterQueue:
    """Manages failed jobs for inspection, retry, and cleanup (in this process).

    Workers add a `FailureRecord` (error, traceback, attempt count) for every job that
    exhausted its retries or could not run at all (unknown task, poison payload).
    `retry` takes a record out and hands back the job reset to PENDING; `requeue` does
    the same and enqueues it. For a DLQ that survives restarts use
    `PersistentDeadLetterQueue` over a backend's `DLQBackendProtocol`.

    Args:
        max_size: Most records kept; adding beyond it evicts the oldest.
        retention_hours: Default age limit of `purge`.

    Example:
        dlq = DeadLetterQueue()
        for record in dlq.list_failed(limit=10):
            print(record.job.name, record.error)
        job = dlq.retry(record.job.id)
        await queue.enqueue(job)
    """

    def __init__(self, *, max_size: int = 10000, retention_hours: float = 168) -> None:
        if max_size < 1 or retention_hours < 0:
            msg = (
                f"DeadLetterQueue got max_size={max_size!r}, retention_hours="
                f"{retention_hours!r}. Use max_size >= 1 and retention_hours >= 0."
            )
            raise TaskConfigurationError(msg)
        self.max_size = max_size
        self.retention_hours = retention_hours
        self._records: OrderedDict[str, FailureRecord] = OrderedDict()
        self._total_added = 0
        self._total_retried = 0
        self._total_purged = 0

    def __repr__(self) -> str:
        return f"DeadLetterQueue(size={len(self._records)}, max_size={self.max_size})"

    def add(self, job: Job, error: str, traceback: str | None = None, **metadata: Any) -> None:
        """Add a failed job to the DLQ.

        Args:
            job: The failed job.
            error: Error message.
            traceback: Full traceback string.
            **metadata: Additional metadata (reason, worker id, ``attempts``,
                ``max_retries``, ...). ``attempts`` becomes the record's
                ``attempt_count`` (default: the job's retry count).
        """
        records = self._records
        records.pop(job.id, None)
        records[job.id] = FailureRecord(
            job=job,
            error=error,
            traceback=traceback,
            attempt_count=attempt_count(job, metadata),
            metadata=dict(metadata),
        )
        self._total_added += 1
        while len(records) > self.max_size:
            records.popitem(last=False)

    def get(self, job_id: str) -> FailureRecord | None:
        """Get a specific failure record."""
        return self._records.get(job_id)

    def list_failed(self, *, limit: int = 50, job_name: str | None = None) -> list[FailureRecord]:
        """List failed jobs, newest first, optionally filtered by job name.

        Args:
            limit: Maximum records to return.
            job_name: Filter by job type name.

        Returns:
            Failure records, newest first.
        """
        found: list[FailureRecord] = []
        for record in reversed(self._records.values()):
            if len(found) >= limit:
                break
            if job_name is None or record.job.name == job_name:
                found.append(record)
        return found

    def retry(self, job_id: str) -> Job | None:
        """Remove a job from the DLQ and prepare it for retry.

        Returns:
            The job with status reset to PENDING and retry state cleared, or None if
            no record has that id. Enqueue it (or use `requeue`) to run it again.
        """
        record = self._records.pop(job_id, None)
        if record is None:
            return None
        self._total_retried += 1
        return reset_for_retry(record.job)

    async def requeue(self, job_id: str, queue: TaskQueueProtocol) -> str | None:
        """Take a job out of the DLQ and enqueue it on `queue`.

        Returns:
            The enqueued job's id, or None if no record has that id.

        Raises:
            TaskQueueError: The queue refused the job (the record is put back).
        """
        record = self._records.get(job_id)
        job = self.retry(job_id)
        if job is None or record is None:
            return None
        try:
            return await enqueue_again(queue, job)
        except TaskQueueError:
            self._records[job_id] = record
            raise

    def retry_all(self) -> list[Job]:
        """Retry all failed jobs; returns the jobs to re-enqueue."""
        return [job for job_id in list(self._records) if (job := self.retry(job_id)) is not None]

    def remove(self, job_id: str) -> bool:
        """Permanently remove a failure from the DLQ; True if it was there."""
        return self._records.pop(job_id, None) is not None

    def purge(self, *, older_than_hours: float | None = None) -> int:
        """Purge old failures.

        Args:
            older_than_hours: Remove records older than this; defaults to `retention_hours`.

        Returns:
            Number of records purged.
        """
        hours = self.retention_hours if older_than_hours is None else older_than_hours
        cutoff = time.time() - hours * 3600.0
        old = [job_id for job_id, rec in self._records.items() if rec.failed_at < cutoff]
        for job_id in old:
            del self._records[job_id]
        self._total_purged += len(old)
        return len(old)

    def clear(self) -> int:
        """Clear all DLQ entries and return how many there were."""
        count = len(self._records)
        self._records.clear()
        return count

    @property
    def size(self) -> int:
        """Return the number of currently tracked failure records."""
        return len(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def get_stats(self) -> dict[str, Any]:
        """Get DLQ statistics (sizes, totals, and records per job type)."""
        return {
            "current_size": len(self._records),
            "max_size": self.max_size,
            "total_added": self._total_added,
            "total_retried": self._total_retried,
            "total_purged": self._total_purged,
            "by_job_type": dict(Counter(rec.job.name for rec in self._records.values())),
        }
