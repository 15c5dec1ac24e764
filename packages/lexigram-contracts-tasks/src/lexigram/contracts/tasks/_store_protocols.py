"""The store protocols: what a backend may offer beside its queue.

Each is optional; the core uses its in-memory version of any store a backend lacks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

from lexigram.contracts.tasks._enums import WorkflowStatus
from lexigram.contracts.tasks._job_result import JobResult
from lexigram.contracts.tasks._models import (
    FailureRecord,
    Job,
    ProgressInfo,
    WorkflowResult,
    WorkflowSummary,
)
from lexigram.contracts.tasks._protocols import TaskQueueProtocol


@runtime_checkable
class DLQProtocol(Protocol):
    """A dead-letter queue: where a worker puts a job it gives up on, and tools read it.

    Both shipped DLQs satisfy it: the in-process `DeadLetterQueue`, whose methods are
    plain calls, and `PersistentDeadLetterQueue` over a `DLQBackendProtocol` storage,
    whose methods are coroutines. So each method returns its value or an awaitable of
    it; a caller that accepts either awaits the result when `inspect.isawaitable` says
    so (the worker does). Records are `FailureRecord` objects keyed by job id.
    """

    def add(
        self, job: Job, error: str, traceback: str | None = None, **metadata: Any
    ) -> Awaitable[None] | None:
        """Store (or replace) the failure record of `job` with its error and traceback."""
        ...

    def get(self, job_id: str) -> FailureRecord | Awaitable[FailureRecord | None] | None:
        """Return the failure record of `job_id`, or None."""
        ...

    def list_failed(
        self, *, limit: int = 50, job_name: str | None = None
    ) -> list[FailureRecord] | Awaitable[list[FailureRecord]]:
        """Return failure records newest first, optionally only those of `job_name`."""
        ...

    def remove(self, job_id: str) -> bool | Awaitable[bool]:
        """Delete one record for good; True if it existed."""
        ...

    def clear(self) -> int | Awaitable[int]:
        """Delete every record and return how many there were."""
        ...

    async def requeue(self, job_id: str, queue: TaskQueueProtocol) -> str | None:
        """Take the job of `job_id` out, reset for a fresh run, and enqueue it on `queue`.

        Returns:
            The enqueued job's id, or None if no record has that id.
        """
        ...


@runtime_checkable
class DLQBackendProtocol(Protocol):
    """Storage for dead-letter records (the dicts of `FailureRecord.to_dict`)."""

    async def add(self, record_id: str, record_data: Mapping[str, Any]) -> None:
        """Store (or replace) a record."""
        ...

    async def get(self, record_id: str) -> dict[str, Any] | None:
        """Return a record, or None."""
        ...

    async def list_all(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Return records newest first, at most `limit` of them."""
        ...

    async def remove(self, record_id: str) -> bool:
        """Delete a record; True if it existed."""
        ...

    async def clear(self) -> int:
        """Delete every record and return how many there were."""
        ...

    async def size(self) -> int:
        """Return the number of records."""
        ...


@runtime_checkable
class ResultStoreProtocol(Protocol):
    """Stores job results with a TTL; `wait` is woken by the store, not by polling."""

    async def store(self, job_id: str, result: JobResult) -> None:
        """Store a job result."""
        ...

    async def get(self, job_id: str) -> JobResult | None:
        """Return a result, or None if absent or expired."""
        ...

    async def delete(self, job_id: str) -> bool:
        """Delete a result; True if it existed."""
        ...

    async def wait(
        self, job_id: str, *, timeout: float = 30.0, poll_interval: float = 0.5
    ) -> JobResult | None:
        """Wait up to `timeout` seconds for a result to appear."""
        ...

    async def cleanup_expired(self) -> int:
        """Remove expired results and return how many were removed."""
        ...

    async def get_completed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored successful results, newest first."""
        ...

    async def get_failed(self, limit: int | None = None) -> list[JobResult]:
        """Return stored failed results, newest first."""
        ...


ResultAcker = Callable[[str, JobResult, "str | None"], Awaitable[bool]]
"""Acks a delivery and stores its job's result at once: ``(job id, result, lease token)``
-> what `TaskQueueProtocol.ack` returns (see `ResultAckingQueueProtocol`)."""


@runtime_checkable
class ResultAckingQueueProtocol(TaskQueueProtocol, Protocol):
    """A queue that can ack a delivery and store its job's result in one call (optional).

    A worker settles a succeeded job with `ack`, then a write to its result store: two
    round trips to the backend, and two awaits per job in the worker. A queue that can
    do both in one call, for a given store, returns a function doing so from
    `result_acker`; the worker asks once, when it is built, and then uses it for every
    succeeded job whose task keeps its result. The function keeps the promise of the
    two steps: the result is stored only if the ack held (the delivery still held its
    lease), in the same atomic step, and it returns what `ack` would.

    Example:
        acker = queue.result_acker(result_store)  # None: ack, then store
        if acker is not None:
            held = await acker(job.id, result, job.lease_token)
    """

    def result_acker(self, store: ResultStoreProtocol) -> ResultAcker | None:
        """A function that acks and stores into `store` together, or None.

        None when this queue cannot do it for that store (another backend's store,
        another server, keys a single atomic step cannot reach); the worker then acks
        and stores one after the other.
        """
        ...


@runtime_checkable
class ProgressStoreProtocol(Protocol):
    """Stores the latest `ProgressInfo` per job."""

    async def save(self, info: ProgressInfo) -> None:
        """Save progress state."""
        ...

    async def get(self, job_id: str) -> ProgressInfo | None:
        """Return progress for a job, or None."""
        ...

    async def delete(self, job_id: str) -> None:
        """Remove a progress entry."""
        ...

    async def list_active(self) -> list[ProgressInfo]:
        """Return entries whose job has not completed or failed (`ProgressInfo.is_active`)."""
        ...


@runtime_checkable
class SchedulerStoreProtocol(Protocol):
    """Persists cron schedules as records (the dicts of `ScheduledJob.to_dict`)."""

    async def save_job(self, job_id: str, job: Mapping[str, Any]) -> None:
        """Store (or replace) a schedule."""
        ...

    async def load_jobs(self) -> dict[str, dict[str, Any]]:
        """Return every stored schedule by id."""
        ...

    async def update_next_run(self, job_id: str, next_run: float) -> None:
        """Record a schedule's next fire time."""
        ...

    async def delete_job(self, job_id: str) -> None:
        """Remove a schedule."""
        ...


SCHEDULE_STATE_FIELDS: tuple[str, ...] = (
    "enabled",
    "next_run",
    "last_run",
    "last_outcome",
    "last_error",
    "last_job_id",
)
"""The fields of a schedule record that change while it runs (`update_fields` takes them)."""


@runtime_checkable
class FieldUpdatingSchedulerStoreProtocol(SchedulerStoreProtocol, Protocol):
    """A scheduler store that changes some fields of one record in one step (optional).

    The core records a fire, a pause or a resume by changing a few of
    `SCHEDULE_STATE_FIELDS`. A store with `update_fields` does that in one atomic step;
    for one without it, the core reads the whole record and writes it back, and a change
    another process makes in between can be lost.

    Example:
        if isinstance(store, FieldUpdatingSchedulerStoreProtocol):
            await store.update_fields(key, {"enabled": False})
    """

    async def update_fields(self, job_id: str, fields: Mapping[str, Any]) -> None:
        """Change only `fields` (some of `SCHEDULE_STATE_FIELDS`) of one record, atomically.

        A no-op for an unknown id; the record's other fields are left as they are.
        """
        ...


@runtime_checkable
class WorkflowStateStoreProtocol(Protocol):
    """Persists workflow progress so a chain resumes after a crash."""

    async def save_state(self, workflow_id: str, result: WorkflowResult) -> None:
        """Save a workflow's state."""
        ...

    async def load_state(self, workflow_id: str) -> WorkflowResult | None:
        """Return a workflow's saved state, or None."""
        ...

    async def list_active(self) -> list[WorkflowSummary]:
        """Return workflows that have not finished."""
        ...

    async def delete_state(self, workflow_id: str) -> None:
        """Delete a workflow's state."""
        ...


@runtime_checkable
class WorkflowRunStoreProtocol(Protocol):
    """Persists queue-driven workflow runs and joins their stages atomically.

    A run is a sequence of stages; a stage is one or more steps, each a job on the
    queue. Step records are JSON dicts (``job_id``, ``status``, ``result``, ``error``,
    ``started_at``, ``finished_at``). Every method is safe to repeat: a worker that
    dies between recording a step and acking its job runs the step again and makes
    the same calls, and must get the same answers.
    """

    async def create_run(self, workflow_id: str, definition: Mapping[str, Any]) -> bool:
        """Store a new RUNNING run with its definition; False when the id exists."""
        ...

    async def record_step(
        self,
        workflow_id: str,
        stage: int,
        member: int,
        *,
        size: int,
        record: Mapping[str, Any],
    ) -> list[dict[str, Any]] | None:
        """Record a step's success; return the stage's records when this step completes it.

        Atomic: the first record of a step is kept (a repeat changes nothing), and
        exactly one step of a stage, the one whose record made all `size` present, is
        answered with the stage's records in member order (and so is every repeat of
        that step); every other call, and every call once the run is no longer
        RUNNING, gets None.
        """
        ...

    async def fail_step(
        self, workflow_id: str, stage: int, member: int, *, record: Mapping[str, Any]
    ) -> bool:
        """Record a step that failed for good, or was cancelled, and mark the run FAILED.

        The record is kept as given, its ``status`` too (``"failed"``, or
        ``"cancelled"`` for a step whose job was cancelled), and only the first record
        of a step. Returns True to the step that moved the run from RUNNING to FAILED
        (and to every repeat of that step), False otherwise.
        """
        ...

    async def finish_run(self, workflow_id: str, result: Any) -> None:
        """Mark a RUNNING run COMPLETED with its final result."""
        ...

    async def load_run(self, workflow_id: str) -> dict[str, Any] | None:
        """Return a run, or None.

        The dict holds ``workflow_id``, ``definition``, ``status`` (a `WorkflowStatus`
        value), ``steps`` (records by ``"<stage>:<member>"``), ``result``, ``error``,
        ``created_at`` and ``updated_at`` (epoch seconds), and ``failed_step``: the
        ``"<stage>:<member>"`` of the step `fail_step` answered True (the one whose
        error is the run's), None while no step failed the run. In a group several
        steps may fail; only this one says which failed the run, so a store should
        return it (core falls back to the first unsuccessful step in stage order when
        the key is absent).
        """
        ...

    async def delete_run(self, workflow_id: str) -> None:
        """Delete a run and its step records (no-op when absent)."""
        ...


@runtime_checkable
class JobRecordingWorkflowRunStoreProtocol(WorkflowRunStoreProtocol, Protocol):
    """A workflow run store that also keeps the job ids of each stage (optional).

    Whoever enqueues a stage (``apply_async`` for the first, the step that completed the
    stage before for the others) records its jobs in one call once the queue accepted
    them, so a step that has not ended can be found, and cancelled, by its job id. A
    store without it shows a step's job id only once the step has ended.
    """

    async def record_jobs(self, workflow_id: str, stage: int, record: Mapping[str, Any]) -> None:
        """Keep `record` as the jobs of stage `stage`; `load_run` returns it in ``jobs``.

        `record` is a JSON dict: ``job_ids`` (one per member, in member order; None for
        a job the queue did not accept), ``queue`` (the queue's name) and
        ``enqueued_at``. `load_run` returns every stage's under ``jobs``, by
        ``"<stage>"``. A later call for the stage replaces it (an enqueue repeated after
        a crash gets the same ids back); it is not a step record, so `record_step`'s
        join never counts it; a run that does not exist is left absent.
        """
        ...


@runtime_checkable
class ListingWorkflowRunStoreProtocol(WorkflowRunStoreProtocol, Protocol):
    """A workflow run store that can also list its runs (optional).

    `WorkflowStateStoreProtocol.list_active` lists the in-process workflows' states
    only; this lists queue-driven runs, so tools can show them without knowing ids.
    """

    async def list_runs(
        self, *, status: WorkflowStatus | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Return at most `limit` runs, newest first, each as `load_run` returns it.

        Newest means latest ``created_at`` (runs created at the same instant in an
        order the store chooses). `status` keeps only the runs in that status (None:
        every run); a `limit` below 1 returns ``[]``. A run deleted while the list is
        read may be left out.
        """
        ...


@runtime_checkable
class LockProtocol(Protocol):
    """A lock on one key that expires after its timeout (so a dead holder frees it)."""

    async def acquire(self) -> bool:
        """Try to take the lock without waiting; True if taken."""
        ...

    async def try_acquire(self) -> bool:
        """Try to take the lock without waiting; True if taken."""
        ...

    async def acquire_wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds (None = forever) for the lock; True if taken."""
        ...

    async def release(self) -> None:
        """Release the lock if this holder still owns it."""
        ...

    async def __aenter__(self) -> Self:
        """Wait for the lock and take it."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Release the lock."""
        ...


@runtime_checkable
class LockManagerProtocol(Protocol):
    """Creates locks; a backend's version makes them hold across processes."""

    def acquire(self, key: str, timeout: float = 60.0) -> LockProtocol:
        """Return a lock on `key` that auto-releases after `timeout` seconds.

        Use as ``async with manager.acquire("user:1"):``.
        """
        ...


@runtime_checkable
class RateLimiterProtocol(Protocol):
    """A token bucket; a backend's version is shared by every process."""

    async def acquire(self, tokens: int = 1) -> None:
        """Wait until `tokens` are available and take them."""
        ...

    async def try_acquire(self, tokens: int = 1) -> bool:
        """Take `tokens` if available now; True if taken."""
        ...


@runtime_checkable
class CacheBackendProtocol(Protocol):
    """A string key-value cache with TTLs (the platform cache contract)."""

    async def get(self, key: str) -> str | None:
        """Return the value, or None if absent or expired."""
        ...

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store a value, expiring after `ttl` seconds when given."""
        ...

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store a value only if the key is absent; True if stored."""
        ...

    async def delete(self, key: str) -> bool:
        """Delete a key; True if it existed."""
        ...

    async def exists(self, key: str) -> bool:
        """Return True if the key is present."""
        ...

    async def keys(self, prefix: str) -> list[str]:
        """Return the keys that start with `prefix`."""
        ...


@runtime_checkable
class IdempotencyStoreProtocol(Protocol):
    """Stores idempotency records (JSON dicts) under keys with a TTL."""

    async def set_if_absent(
        self, key: str, record: Mapping[str, Any], ttl: float
    ) -> dict[str, Any] | None:
        """Store `record` unless `key` exists; return the existing record, or None if stored."""
        ...

    async def get(self, key: str) -> dict[str, Any] | None:
        """Return the record for `key`, or None."""
        ...

    async def update(self, key: str, record: Mapping[str, Any], ttl: float) -> None:
        """Replace the record for `key`."""
        ...

    async def delete(self, key: str) -> bool:
        """Delete the record; True if it existed."""
        ...
