"""Value types that cross the boundary between the core and a backend.

They hold values only and do no I/O. `Job` and `JobResult` are mutable on purpose: a
worker records the outcome on the job it runs, and a backend persists the job again
when it schedules a retry. Every type round-trips through `to_dict`/`from_dict`
without loss, which is what backends rely on to store them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks._enums import (
    IdempotencyResultStatus,
    JobStatus,
    Priority,
    ProgressStatus,
    WorkflowStatus,
)
from lexigram.contracts.tasks._ids import new_job_id
from lexigram.contracts.tasks._job_record import job_from_record
from lexigram.contracts.tasks._job_record import opt_float as _opt_float
from lexigram.contracts.tasks._job_record import opt_int as _opt_int
from lexigram.contracts.tasks._job_result import JobResult

if TYPE_CHECKING:
    from lexigram.contracts.tasks._protocols import BackendLookupProtocol

# Retries a job gets when neither its producer nor its task definition says otherwise.
DEFAULT_MAX_RETRIES = 3

# `ProgressInfo.metadata["status"]` values that end an entry (a tuple: compared, not hashed,
# so that an odd value read from a store cannot raise).
_FINISHED_PROGRESS = (ProgressStatus.COMPLETE, ProgressStatus.FAILED)


@dataclass(slots=True)
class Job:
    """A background job: a named unit of work with arguments, priority and retry state.

    Attributes:
        id: Unique job identifier (`new_job_id()`, a time-ordered UUID, when left empty).
        name: Task name; selects the handler.
        args: Positional arguments for the handler.
        kwargs: Keyword arguments for the handler.
        priority: Execution priority (higher = more important); `Priority.NORMAL` by
            default, as for a task's ``.delay()`` and the ``enqueue`` command.
        max_retries: Maximum retry attempts on failure; None (the default) lets the task's
            definition decide (`@task(max_retries=...)`, else `DEFAULT_MAX_RETRIES`).
        timeout: Execution timeout in seconds; None lets the task's definition decide
            (else the worker's default).
        depends_on: Ids of jobs this job depends on.
        idempotency_key: Jobs enqueued with the same key run once.
        correlation_id: Id shared by every job of one logical operation.
        causation_id: Id of the job or event that caused this job.
        status: Current job status.
        created_at: When the job was created (epoch seconds).
        started_at: When the job last started executing.
        completed_at: When the job finished.
        retry_count: Failed attempts so far.
        last_error: Most recent error message.
        result: Execution result, once there is one.
        scheduled_at: Earliest time the job may run (delays and retry backoff).
        cron_expression: Cron expression of the schedule that produced the job.
        queue_name: Queue the job was enqueued on.
        delivery_count: How many times a queue has handed the job to a consumer.
        metadata: Free-form JSON-serializable metadata.
        lease_token: The fencing token of the delivery this object came from, set by the
            backend on every `dequeue`/`dequeue_batch` (None on a job that was not leased).
            Pass it to `ack`/`nack`/`extend_lease` (and keep it on the job for
            `retry_later`): once another consumer may hold the job, the backend refuses
            calls made with an older token. It is delivery state, not part of the job:
            `to_dict` leaves it out.
    """

    id: str = ""
    name: str = ""
    args: tuple[Any, ...] = field(default_factory=tuple)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = int(Priority.NORMAL)
    max_retries: int | None = None
    timeout: float | None = None
    depends_on: list[str] = field(default_factory=list)
    idempotency_key: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    status: JobStatus = JobStatus.PENDING
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    completed_at: float | None = None
    retry_count: int = 0
    last_error: str | None = None
    result: JobResult | None = None
    scheduled_at: float | None = None
    cron_expression: str | None = None
    queue_name: str | None = None
    delivery_count: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    lease_token: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            self.id = new_job_id()
        # Callers pass lists too (and JSON decoding yields lists); tuple() of a tuple is free.
        self.args = tuple(self.args)

    @property
    def is_pending(self) -> bool:
        """Check if the job is pending execution."""
        return self.status in (JobStatus.PENDING, JobStatus.RETRYING)

    @property
    def is_running(self) -> bool:
        """Check if the job is currently running."""
        return self.status is JobStatus.RUNNING

    @property
    def is_completed(self) -> bool:
        """Check if the job completed successfully."""
        return self.status is JobStatus.COMPLETED

    @property
    def is_failed(self) -> bool:
        """Check if the job failed."""
        return self.status is JobStatus.FAILED

    @property
    def can_retry(self) -> bool:
        """Check if the job can be retried (has not exceeded `max_retries`).

        A job whose `max_retries` is None is judged by `DEFAULT_MAX_RETRIES`; the worker
        judges it by the task's definition instead.
        """
        limit = DEFAULT_MAX_RETRIES if self.max_retries is None else self.max_retries
        return self.retry_count < limit

    @property
    def duration_ms(self) -> float | None:
        """Execution duration in milliseconds, once started and finished."""
        if self.started_at is None or self.completed_at is None:
            return None
        return (self.completed_at - self.started_at) * 1000.0

    def mark_running(self) -> None:
        """Mark the job as running and record the start time."""
        self.status = JobStatus.RUNNING
        self.started_at = time.time()

    def mark_completed(self, result: JobResult) -> None:
        """Mark the job as completed with `result`."""
        self.status = JobStatus.COMPLETED
        self.completed_at = time.time()
        self.result = result

    def mark_failed(self, error: str) -> None:
        """Mark the job as failed with an error message."""
        self.status = JobStatus.FAILED
        self.completed_at = time.time()
        self.last_error = error

    def mark_retrying(self) -> None:
        """Mark the job as retrying and increment its retry count."""
        self.status = JobStatus.RETRYING
        self.retry_count += 1

    def mark_cancelled(self) -> None:
        """Mark the job as cancelled."""
        self.status = JobStatus.CANCELLED
        self.completed_at = time.time()

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Job):
            return NotImplemented
        return (-self.priority, self.created_at) < (-other.priority, other.created_at)

    def to_dict(self) -> dict[str, Any]:
        """Convert the job to a dictionary for serialization (lossless)."""
        return {
            "id": self.id,
            "name": self.name,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "priority": self.priority,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "depends_on": list(self.depends_on),
            "idempotency_key": self.idempotency_key,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
            "status": self.status.value,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "retry_count": self.retry_count,
            "last_error": self.last_error,
            "result": self.result.to_dict() if self.result is not None else None,
            "scheduled_at": self.scheduled_at,
            "cron_expression": self.cron_expression,
            "queue_name": self.queue_name,
            "delivery_count": self.delivery_count,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Job:
        """Create a job from a dictionary produced by `to_dict` (or an envelope's record)."""
        job: Job = object.__new__(Job)
        job_from_record(job, data)
        if cls is not Job:  # a subclass gets its own __init__ (and defaults for its fields)
            return cls(**{name: getattr(job, name) for name in _JOB_FIELDS})
        return job


_JOB_FIELDS = tuple(f.name for f in fields(Job))


@dataclass(slots=True)
class JobTemplate:
    """Template for creating scheduled jobs (exported as `JobTemplateProtocol` too).

    Attributes:
        name: Job name/type.
        args: Positional arguments.
        kwargs: Keyword arguments.
        priority: Execution priority (`Priority.NORMAL` by default, as a `Job`'s).
        max_retries: Maximum retry attempts (None: as the task's definition says).
        timeout: Execution timeout (None: as the task's definition says).
        depends_on: Job dependencies template.
        queue_name: The queue the jobs are for, by name (a task's ``@task(queue=...)``);
            None: the queue of whoever enqueues them (a scheduler's own).
    """

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = int(Priority.NORMAL)
    max_retries: int | None = None
    timeout: float | None = None
    depends_on: list[str] = field(default_factory=list)
    queue_name: str | None = None

    def create_job(self, job_id: str = "") -> Job:
        """Create a `Job` instance from this template (id generated when empty)."""
        return Job(
            id=job_id,
            name=self.name,
            args=tuple(self.args),
            kwargs=dict(self.kwargs),
            priority=self.priority,
            max_retries=self.max_retries,
            timeout=self.timeout,
            depends_on=list(self.depends_on),
            queue_name=self.queue_name,
        )

    @classmethod
    def from_job(cls, job: Job) -> JobTemplate:
        """Create a template from an existing job."""
        return cls(
            name=job.name,
            args=tuple(job.args),
            kwargs=dict(job.kwargs),
            priority=job.priority,
            max_retries=job.max_retries,
            timeout=job.timeout,
            depends_on=list(job.depends_on),
            queue_name=job.queue_name,
        )

    def to_dict(self) -> dict[str, Any]:
        """Convert the template to a dictionary for serialization.

        ``queue_name`` is written only when set, so a record stays what older versions
        wrote and read.
        """
        data: dict[str, Any] = {
            "name": self.name,
            "args": list(self.args),
            "kwargs": dict(self.kwargs),
            "priority": self.priority,
            "max_retries": self.max_retries,
            "timeout": self.timeout,
            "depends_on": list(self.depends_on),
        }
        if self.queue_name is not None:
            data["queue_name"] = self.queue_name
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobTemplate:
        """Create a template from a dictionary produced by `to_dict`."""
        return cls(
            name=str(data["name"]),
            args=tuple(data.get("args") or ()),
            kwargs=dict(data.get("kwargs") or {}),
            # `to_dict` always writes it; a record written by hand may leave it out.
            priority=int(data.get("priority", Priority.NORMAL) or 0),
            max_retries=_opt_int(data.get("max_retries")),
            timeout=_opt_float(data.get("timeout")),
            depends_on=list(data.get("depends_on") or []),
            queue_name=str(data["queue_name"]) if data.get("queue_name") else None,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgressSnapshot:
    """Immutable point-in-time view of a task's progress.

    Attributes:
        task_id: Unique identifier for the tracked task.
        current: Number of units completed so far.
        total: Total number of units to complete (0 means unknown).
        status: Current lifecycle state.
        message: Human-readable status message.
        error: Error description when `status` is FAILED; empty otherwise.
    """

    task_id: str
    current: int
    total: int
    status: ProgressStatus
    message: str = ""
    error: str = ""

    @property
    def percent(self) -> float:
        """Completion percentage: 0.0 when total is unknown, capped at 100.0."""
        if self.total <= 0:
            return 0.0
        return min(100.0, self.current / self.total * 100.0)

    def to_dict(self) -> dict[str, Any]:
        """Convert the snapshot to a dictionary for serialization."""
        return {
            "task_id": self.task_id,
            "current": self.current,
            "total": self.total,
            "status": self.status.value,
            "message": self.message,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProgressSnapshot:
        """Create a snapshot from a dictionary produced by `to_dict`."""
        return cls(
            task_id=str(data["task_id"]),
            current=int(data.get("current") or 0),
            total=int(data.get("total") or 0),
            status=ProgressStatus(data.get("status") or ProgressStatus.PENDING.value),
            message=str(data.get("message") or ""),
            error=str(data.get("error") or ""),
        )


@dataclass(slots=True)
class ProgressInfo:
    """Current progress state of a job, as kept by a progress store."""

    job_id: str
    current: int = 0
    total: int = 0
    percentage: float = 0.0
    message: str = ""
    started_at: float = 0.0
    updated_at: float = 0.0
    estimated_remaining_seconds: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def is_complete(self) -> bool:
        """Return True when the current count has reached the total."""
        return self.total > 0 and self.current >= self.total

    @property
    def is_active(self) -> bool:
        """Return True while the job is still going: what `list_active` of a store lists.

        An entry is finished once its count reaches the total (`is_complete`) or once
        ``metadata["status"]`` says it ended, ``"complete"`` or ``"failed"`` (a failed
        or cancelled job's progress is marked ``"failed"``, whatever its count).
        """
        return not self.is_complete and self.metadata.get("status") not in _FINISHED_PROGRESS

    @property
    def elapsed_seconds(self) -> float:
        """Return seconds elapsed since the job started, or 0 if not started."""
        if not self.started_at:
            return 0.0
        end = self.updated_at or time.time()
        return max(0.0, end - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        """Convert the progress entry to a dictionary for serialization."""
        return {
            "job_id": self.job_id,
            "current": self.current,
            "total": self.total,
            "percentage": self.percentage,
            "message": self.message,
            "started_at": self.started_at,
            "updated_at": self.updated_at,
            "estimated_remaining_seconds": self.estimated_remaining_seconds,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProgressInfo:
        """Create a progress entry from a dictionary produced by `to_dict`."""
        return cls(
            job_id=str(data["job_id"]),
            current=int(data.get("current") or 0),
            total=int(data.get("total") or 0),
            percentage=float(data.get("percentage") or 0.0),
            message=str(data.get("message") or ""),
            started_at=float(data.get("started_at") or 0.0),
            updated_at=float(data.get("updated_at") or 0.0),
            estimated_remaining_seconds=_opt_float(data.get("estimated_remaining_seconds")),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(slots=True)
class FailureRecord:
    """Record of a failed job in the dead-letter queue."""

    job: Job
    error: str
    traceback: str | None = None
    failed_at: float = field(default_factory=time.time)
    attempt_count: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Serialize the failure record to a plain dictionary (the whole job included)."""
        return {
            "job_id": self.job.id,
            "job_name": self.job.name,
            "job_args": list(self.job.args),
            "job_kwargs": dict(self.job.kwargs),
            "job_priority": self.job.priority,
            "job_max_retries": self.job.max_retries,
            "job_timeout": self.job.timeout,
            "job": self.job.to_dict(),
            "error": self.error,
            "traceback": self.traceback,
            "failed_at": self.failed_at,
            "attempt_count": self.attempt_count,
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FailureRecord:
        """Deserialize a failure record from a dictionary produced by `to_dict`."""
        job_data = data.get("job")
        if job_data:
            job = Job.from_dict(job_data)
        else:
            job = Job(
                id=str(data["job_id"]),
                name=str(data["job_name"]),
                args=tuple(data.get("job_args") or ()),
                kwargs=dict(data.get("job_kwargs") or {}),
                priority=int(data.get("job_priority") or 0),
                max_retries=_opt_int(data.get("job_max_retries")),
                timeout=_opt_float(data.get("job_timeout")),
            )
        return cls(
            job=job,
            error=str(data["error"]),
            traceback=data.get("traceback"),
            failed_at=float(data.get("failed_at") or time.time()),
            attempt_count=int(data.get("attempt_count") or 0),
            metadata=dict(data.get("metadata") or {}),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyResult:
    """Outcome of submitting a job under an idempotency key."""

    task_id: str
    idempotency_key: str
    status: IdempotencyResultStatus
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    result: Any | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskBackendSpec:
    """Everything a backend factory needs to build its queue and stores.

    Core builds it from the pydantic `NamedTaskConfig`, so a backend depends on no
    config model. `url` is the connection URL with any secret already unwrapped:
    never log it (use `masked_url`).

    Attributes:
        name: The backend's name in config (also its `Named()` DI key).
        type: The backend type (the entry-point name), e.g. "redis".
        url: Connection URL or DSN, or None for the backend's default.
        queue_name: Queue this backend instance serves.
        options: Backend-specific settings (e.g. `visibility_timeout`, `key_prefix`).
        backends: How this backend finds another one by type or URL scheme (the
            core's registry, set by the core on every spec it hands a backend); None
            when the spec was built outside the core. Not part of equality.
    """

    name: str = "default"
    type: str = "memory"
    url: str | None = None
    queue_name: str = "tasks"
    options: Mapping[str, object] = field(default_factory=dict)
    backends: BackendLookupProtocol | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return (
            f"TaskBackendSpec(name={self.name!r}, type={self.type!r}, "
            f"url={self.masked_url!r}, queue_name={self.queue_name!r}, "
            f"options={dict(self.options)!r})"
        )

    @property
    def masked_url(self) -> str | None:
        """The URL with any password replaced by `***`, safe for logs."""
        from lexigram.contracts.tasks._codec import mask_url  # noqa: PLC0415 - avoid a cycle

        return None if self.url is None else mask_url(self.url)


@dataclass(slots=True)
class StepResult:
    """Result from a single workflow step."""

    step_name: str
    success: bool
    data: Any = None
    error: str | None = None
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Convert the step result to a dictionary for serialization."""
        return {
            "step_name": self.step_name,
            "success": self.success,
            "data": self.data,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StepResult:
        """Create a step result from a dictionary produced by `to_dict`."""
        return cls(
            step_name=str(data["step_name"]),
            success=bool(data["success"]),
            data=data.get("data"),
            error=data.get("error"),
            duration_ms=float(data.get("duration_ms") or 0.0),
        )


@dataclass(slots=True)
class WorkflowResult:
    """Result from a complete workflow execution."""

    workflow_id: str
    status: WorkflowStatus
    steps: list[StepResult] = field(default_factory=list)
    final_result: Any = None
    total_duration_ms: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Convert the workflow result to a dictionary for serialization."""
        return {
            "workflow_id": self.workflow_id,
            "status": self.status.value,
            "steps": [step.to_dict() for step in self.steps],
            "final_result": self.final_result,
            "total_duration_ms": self.total_duration_ms,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowResult:
        """Create a workflow result from a dictionary produced by `to_dict`."""
        return cls(
            workflow_id=str(data["workflow_id"]),
            status=WorkflowStatus(data["status"]),
            steps=[StepResult.from_dict(step) for step in data.get("steps") or []],
            final_result=data.get("final_result"),
            total_duration_ms=float(data.get("total_duration_ms") or 0.0),
            error=data.get("error"),
        )


@dataclass(slots=True)
class WorkflowSummary:
    """Summary of a persisted workflow's state, as listed by a workflow state store."""

    workflow_id: str
    status: WorkflowStatus
    completed_steps: list[str]
    created_at: datetime
    last_updated: datetime
