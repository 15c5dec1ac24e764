"""`TaskWorkerServices` and `WorkerJobStats`: what a worker is given and what it counts."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lexigram.contracts.tasks import (
    HookRegistryProtocol,
    JobResult,
    ProgressStoreProtocol,
    ProgressTrackerProtocol,
    RateLimiterProtocol,
    ResultStoreProtocol,
    TaskManagerProtocol,
)
from lexigram.tasks.concurrency._task_rate import TaskRateLimiters
from lexigram.tasks.dlq import DeadLetterQueue, PersistentDeadLetterQueue
from lexigram.tasks.events import OUTCOME_LABELS, EventObserver


@dataclass
class TaskWorkerServices:
    """Optional infrastructure services injected into a `TaskWorker`.

    Groups the optional dependencies so that the worker's constructor stays focused on
    the mandatory ones. Every field defaults to None; omitted services degrade
    gracefully (a worker without a DLQ creates an in-memory `DeadLetterQueue`).

    Attributes:
        container: DI container for resolving handler parameters (``await
            container.resolve(T)``).
        dead_letter_queue: DLQ for permanently failed jobs (`DeadLetterQueue` or
            `PersistentDeadLetterQueue`).
        result_store: Store for job results: any `ResultStoreProtocol` (a backend's store,
            e.g. `RedisResultStore`, or a subclass of core's `ResultStore`).
        progress_store: Store for the progress handlers report: any
            `ProgressStoreProtocol` (a backend's store, or a subclass of `ProgressStore`).
        dashboard: Observability dashboard: a `TaskDashboard` (or any object with
            ``observe(event)`` or ``record_execution(...)``); it observes the job events.
        retry_policy: Retry delay policy: an object with `compute_delay(attempt)` or
            `get_delay(attempt)` returning seconds; overrides `TaskWorkerConfig.retry`.
        task_manager: Task manager that tracks the worker's background tasks.
        idempotency_manager: Manager of idempotency keys: the worker records a
            job's result under its key on success (`mark_completed(key, data)`) and frees
            the key when the job is dead-lettered (`release(key)`).
        logger: Logger to use instead of the module's.
        hooks: Hook registry that receives "task.started"/"task.completed"/"task.failed"
            (it observes the job events: `HookRegistry.observe`, or `emit` for any
            other `HookRegistryProtocol`).
        rate_limiter: Token bucket consulted before jobs are taken from the queue.
        task_rate_limiters: The buckets of rate-limited tasks (``@task(rate_limit=...)``)
            shared by the process's workers (None: each worker keeps in-process ones).
        progress_tracker: Live progress tracker that handlers' progress is broadcast to;
            the worker also publishes each job's terminal state to it.
        observers: More observers of the job event stream (metrics, tracing, ...):
            objects with ``observe(event: JobEvent)``.
    """

    container: Any = None
    dead_letter_queue: DeadLetterQueue | PersistentDeadLetterQueue | None = None
    result_store: ResultStoreProtocol | None = None
    progress_store: ProgressStoreProtocol | None = None
    dashboard: Any = None
    retry_policy: Any = None
    task_manager: TaskManagerProtocol | None = None
    idempotency_manager: Any = None
    logger: logging.Logger | logging.LoggerAdapter[Any] | None = None
    hooks: HookRegistryProtocol | None = None
    rate_limiter: RateLimiterProtocol | None = None
    task_rate_limiters: TaskRateLimiters | None = None
    progress_tracker: ProgressTrackerProtocol | None = None
    observers: Sequence[EventObserver] = ()


@dataclass
class WorkerJobStats:
    """Worker statistics for monitoring performance.

    Every execution attempt that ends is counted once in `jobs_processed`, under
    exactly one outcome: the outcomes of ``lexigram_tasks_jobs_total`` (succeeded,
    retried, dead_lettered, cancelled, released, lost), so that

        jobs_processed == jobs_succeeded + jobs_retried + jobs_dead_lettered
                          + jobs_cancelled + jobs_released + jobs_lost

    and each matches the metric's count for this worker. An outcome is counted once the
    queue call that settles it held: an attempt whose ack or ``retry_later`` finds the
    lease gone counts as lost, not as succeeded or failed (its current delivery counts
    the job's outcome). A job that fails twice and then succeeds counts 3 processed,
    2 retried, 1 succeeded. A job the worker leaves unsettled on purpose (a workflow step
    whose run could not be advanced, a dead letter that could not be written) counts
    nothing, as no outcome event is reported for it: its next delivery counts.

    Attributes:
        worker_id: The worker these numbers belong to.
        jobs_processed: Attempts that ended (the sum of the six outcomes).
        jobs_succeeded: Attempts that succeeded and were acked.
        jobs_failed: Failed attempts: ``jobs_retried + jobs_dead_lettered``. Not an
            outcome of its own (kept for compatibility); note that the job events, hooks
            and `TaskDashboard` call a dead-lettered job "failed".
        total_processing_time: Seconds spent in handlers by the attempts counted.
        average_processing_time: Mean seconds per attempt.
        started_at: When the stats began (epoch seconds).
        last_activity: When the last attempt finished.
        jobs_retried: Failed attempts sent back for a retry.
        jobs_dead_lettered: Jobs that failed for good and were dead-lettered.
        jobs_cancelled: Attempts ended because the job was cancelled
            (`JobHandle.cancel`), including a held job cancelled before it started.
        jobs_lost: Attempts whose lease was lost: found gone when the worker settled
            them, or the handler was cancelled because the job was deleted or its lease
            expired (their current delivery settles them).
        jobs_released: Attempts interrupted by the worker stopping; the job was requeued.
    """

    worker_id: str
    jobs_processed: int = 0
    jobs_succeeded: int = 0
    total_processing_time: float = 0.0
    average_processing_time: float = 0.0
    started_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.time)
    jobs_retried: int = 0
    jobs_dead_lettered: int = 0
    jobs_cancelled: int = 0
    jobs_lost: int = 0
    jobs_released: int = 0

    @property
    def jobs_failed(self) -> int:
        """Failed attempts: ``jobs_retried + jobs_dead_lettered`` (see the class)."""
        return self.jobs_retried + self.jobs_dead_lettered

    @property
    def uptime(self) -> float:
        """Get worker uptime in seconds."""
        return time.time() - self.started_at

    def record_job(self, result: JobResult) -> None:
        """Count an attempt that ran to success or failure, once its settle call held.

        A success counts in `jobs_succeeded`; for a failure the caller counts its outcome
        (`jobs_retried` or `jobs_dead_lettered`).

        Args:
            result: The attempt's result.
        """
        if result.success:
            self.jobs_succeeded += 1
        # `record_attempt` inlined: this runs for every job that succeeds.
        self.jobs_processed += 1
        self.total_processing_time += result.duration
        self.average_processing_time = self.total_processing_time / self.jobs_processed
        self.last_activity = result.completed_at or result.failed_at or time.time()

    def record_attempt(self, duration: float, at: float | None = None) -> None:
        """Count one ended attempt in `jobs_processed`; the caller counts its outcome.

        Args:
            duration: Seconds its handler ran.
            at: When it ended (epoch seconds; default now).
        """
        self.jobs_processed += 1
        self.total_processing_time += duration
        self.average_processing_time = self.total_processing_time / self.jobs_processed
        self.last_activity = at or time.time()

    def outcome_counts(self) -> dict[str, int]:
        """The attempts by outcome, keyed by the ``outcome`` label of ``lexigram_tasks_jobs_total``.

        They add up to `jobs_processed`.
        """
        return {name: getattr(self, f"jobs_{name}") for name in OUTCOME_LABELS.values()}
