"""Turning jobs into enqueue-script arguments, and script answers into results."""

from __future__ import annotations

import math
from typing import Any

from lexigram.contracts.tasks import (
    Err,
    Job,
    JobStatus,
    Ok,
    QueueFullError,
    Result,
    TaskQueueError,
    TaskValidationError,
    encode_job,
)

Entry = tuple[str, bytes, int, int, str, int, int, str]
"""One job's enqueue-script arguments (see `_scripts.ENQUEUE`)."""


def entry_for(job: Job, queue_name: str, idempotency_ttl_ms: int) -> Entry:
    """Validate and encode `job` (status PENDING unless RETRYING, queue name defaulted).

    Raises:
        TaskValidationError: The job is invalid or not JSON-serializable.
    """
    if job.status is not JobStatus.RETRYING:
        job.status = JobStatus.PENDING
    if job.queue_name is None:
        job.queue_name = queue_name
    payload = encode_job(job)
    at = 0 if job.scheduled_at is None else math.ceil(job.scheduled_at * 1000)
    return (
        job.id,
        payload,
        job.priority,
        at,
        job.idempotency_key or "",
        idempotency_ttl_ms,
        job.delivery_count,
        "1" if job.retry_count > 0 else "0",
    )


def outcome(
    job: Job, status: int, job_id: str, queue_name: str, max_size: int
) -> Result[str, TaskQueueError]:
    """Ok(id) for an added or existing job, Err(QueueFullError) when the queue was full."""
    if status >= 0:
        return Ok(job_id)
    msg = (
        f"Queue {queue_name!r} is full ({max_size} jobs waiting); job "
        f"{job.name!r} was not enqueued. Retry later, add workers, or raise max_size."
    )
    return Err(QueueFullError(msg, queue_name=queue_name, capacity=max_size))


def not_a_job(task: Any) -> Err[TaskQueueError]:
    """The Err for something that is not a `Job`."""
    msg = (
        f"RedisTaskQueue.enqueue got {type(task).__name__}, not a Job. "
        "Build a lexigram.tasks.Job (or JobProtocol) and enqueue that."
    )
    return Err(TaskValidationError(msg))
