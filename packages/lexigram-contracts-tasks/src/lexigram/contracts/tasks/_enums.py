"""Enumerations shared by every part of lexigram-tasks."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Priority(IntEnum):
    """Task priority levels for queue ordering (higher number = higher priority).

    Workers dequeue higher-priority jobs before lower-priority ones; any integer in
    `PRIORITY_MIN`..`PRIORITY_MAX` (0-255) is accepted, and these are the named points.
    The scale is separate from the kernel's `ProviderPriority` (0-100).
    """

    LOW = 0
    NORMAL = 5
    HIGH = 10
    CRITICAL = 20


PRIORITY_MIN = 0
"""Lowest priority a job may carry."""
PRIORITY_MAX = 255
"""Highest priority a job may carry (AMQP's `x-max-priority` ceiling)."""


class JobStatus(StrEnum):
    """Job execution status."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    CANCELLED = "cancelled"


class CancelOutcome(StrEnum):
    """What cancelling a job did (`CancellableQueueProtocol.cancel`, `JobHandle.cancel`).

    Attributes:
        REMOVED: The job was waiting (ready, delayed or awaiting a retry) and is gone
            from its queue: it never runs.
        STOPPING: The job was running. It is gone from its queue (no worker can settle
            or redeliver it) and its worker was told to cancel the handler.
        FINISHED: The job had already finished (completed, failed or cancelled):
            nothing was cancelled. `JobHandle.cancel` answers this from the result store.
        NOT_FOUND: Neither the queue nor the result store knows the job.
        UNSUPPORTED: The job is running on a backend that cannot reach its worker
            (the queue does not implement `CancellableQueueProtocol`); it was left alone.
    """

    REMOVED = "removed"
    STOPPING = "stopping"
    FINISHED = "finished"
    NOT_FOUND = "not_found"
    UNSUPPORTED = "unsupported"

    @property
    def cancelled(self) -> bool:
        """True when the job will not run (again): REMOVED or STOPPING."""
        return self in (CancelOutcome.REMOVED, CancelOutcome.STOPPING)


class ProgressStatus(StrEnum):
    """Lifecycle states for a tracked task; lowercase values round-trip through JSON."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"


class OnErrorPolicy(StrEnum):
    """Controls what happens when `ScheduledWorker.run_cycle` raises.

    Attributes:
        LOG_AND_CONTINUE: Log the error, then resume the normal schedule.
        BACKOFF: Log the error and double the sleep before the next cycle
            (up to 10 * interval_seconds).
        STOP: Log the error and stop the worker permanently.
    """

    LOG_AND_CONTINUE = "LOG_AND_CONTINUE"
    BACKOFF = "BACKOFF"
    STOP = "STOP"


class WorkflowStatus(StrEnum):
    """Enumeration of possible workflow execution states."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    PARTIALLY_COMPLETED = "partially_completed"


class IdempotencyResultStatus(StrEnum):
    """Outcome of submitting a job under an idempotency key."""

    SUBMITTED = "submitted"
    DUPLICATE = "duplicate"
    COMPLETED = "completed"
