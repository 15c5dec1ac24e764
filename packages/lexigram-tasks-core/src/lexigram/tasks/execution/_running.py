"""Running one job and settling it: every path ends in ack, retry_later or nack.

`JobExecution` is the half of `TaskWorker` that runs inside each job's asyncio task;
the worker's loop, heartbeat and lifecycle are in `_worker.py`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import random
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lexigram.contracts.tasks import (
    DEFAULT_MAX_RETRIES,
    POISON_JOB_NAME,
    HookRegistryProtocol,
    Job,
    JobResult,
    JobStatus,
    ProgressTrackerProtocol,
    TaskDecodeError,
    TaskExecutionError,
    TaskQueueError,
    TaskQueueProtocol,
    TaskTimeoutError,
)
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.dlq import DeadLetterQueue, PersistentDeadLetterQueue
from lexigram.tasks.execution._params import plan_for, resolve_arguments
from lexigram.tasks.execution._registry import unknown_task_error
from lexigram.tasks.execution._stats import WorkerJobStats
from lexigram.tasks.hooks import TaskCompletedHook, TaskFailedHook, TaskStartedHook
from lexigram.tasks.middleware import TaskExecutionContext, TaskMiddlewarePipeline
from lexigram.tasks.middleware._base import ERROR_KEY
from lexigram.tasks.progress import ProgressStore, ProgressTracker
from lexigram.tasks.results import ResultStore

# Why the worker itself cancelled a job's task (None: it did not).
TIMEOUT = "timeout"
LEASE_LOST = "lease_lost"
STOP = "stop"

REASON_MAX_RETRIES = "max_retries"
REASON_UNKNOWN_TASK = "unknown_task"
REASON_POISON = "poison"
REASON_CRASH_LOOP = "crash_loop"

_STARTED, _COMPLETED, _FAILED = "task.started", "task.completed", "task.failed"


class Running:
    """Book-keeping of one in-flight job (slots: this is created per job)."""

    __slots__ = ("deadline", "job", "reason", "renewed", "settling", "started", "task", "tracker")

    def __init__(self, job: Job, now: float, deadline: float) -> None:
        self.job = job
        self.deadline = deadline
        self.renewed = now
        self.reason: str | None = None
        self.started = False
        self.settling = False
        self.task: asyncio.Task[None] | None = None
        self.tracker: ProgressTracker | None = None

    @property
    def interrupted(self) -> bool:
        """True once the worker cancelled (or marked) this job for a reason."""
        return self.reason is not None


class Unrunnable(Exception):  # noqa: N818 - internal signal, never escapes the worker
    """A job that cannot run at all; it goes straight to the DLQ without retries."""

    def __init__(self, reason: str, error: BaseException | str) -> None:
        super().__init__(str(error))
        self.reason = reason
        self.error = str(error)


class JobExecution:
    """Runs jobs and settles their outcome; mixed into `TaskWorker`."""

    worker_id: str
    queue: TaskQueueProtocol
    config: TaskWorkerConfig
    stats: WorkerJobStats
    dlq: DeadLetterQueue | PersistentDeadLetterQueue
    result_store: ResultStore | None
    progress_store: ProgressStore | None
    dashboard: Any
    logger: logging.Logger | logging.LoggerAdapter[Any]
    current_job: Job | None
    _lookup: Callable[[str], Any]
    _handler_names: Callable[[], list[str]]
    _pipeline: TaskMiddlewarePipeline | None
    _hooks: HookRegistryProtocol | None
    _progress_tracker: ProgressTrackerProtocol | None
    _container: Any
    _retry_policy: Any
    _executor: ThreadPoolExecutor | None
    _observed: bool  # a dashboard or live progress tracker wants every outcome
    _idempotency: Any
    _in_flight: dict[str, Running]

    # -- running ---------------------------------------------------------------------

    async def _invoke(self, entry: Running) -> Any:
        job = entry.job
        job.mark_running()
        if self._hooks is not None:
            await self._emit(
                _STARTED,
                TaskStartedHook(task_name=job.name, task_id=job.id, worker_id=self.worker_id),
            )
        handler = self._lookup(job.name)
        if handler is None:
            raise self._unrunnable(job)
        if job.delivery_count - job.retry_count > self.config.max_deliveries:
            raise Unrunnable(REASON_CRASH_LOOP, self._crash_loop_message(job))
        plan = plan_for(handler)
        if self._pipeline is None and (
            plan.always_direct or plan.direct_call_ok(job.args, job.kwargs)
        ):
            if plan.is_async:
                return await handler(*job.args, **job.kwargs)
            return await self._run_sync(handler, *job.args, **job.kwargs)
        ctx = TaskExecutionContext(job=job)
        args, kwargs = await resolve_arguments(
            plan,
            job,
            tracker=functools.partial(self._tracker_for, entry),
            context=lambda: ctx,
            container=self._container,
        )
        if self._pipeline is None:
            if plan.is_async:
                return await handler(*args, **kwargs)
            return await self._run_sync(handler, *args, **kwargs)
        call = handler if plan.is_async else functools.partial(self._run_sync, handler)
        result = await self._pipeline.execute(
            job, call, resolved_args=args, resolved_kwargs=kwargs, ctx=ctx
        )
        if not result.success:
            error = ctx.metadata.get(ERROR_KEY)
            if isinstance(error, BaseException):
                raise error
            raise TaskExecutionError(result.error or "The middleware pipeline reported a failure.")
        return result.data

    def _unrunnable(self, job: Job) -> Unrunnable:
        if job.name == POISON_JOB_NAME:
            error = job.last_error or str(job.metadata.get("poison_error") or "undecodable job")
            return Unrunnable(REASON_POISON, TaskDecodeError(error))
        return Unrunnable(REASON_UNKNOWN_TASK, unknown_task_error(job.name, self._handler_names()))

    def _crash_loop_message(self, job: Job) -> str:
        died = job.delivery_count - job.retry_count - 1
        return (
            f"Job {job.id} ({job.name!r}) was delivered {job.delivery_count} times but failed "
            f"only {job.retry_count} times: a worker died (or was stopped) {died} times while "
            "running this job. It is dead-lettered as a probable crash loop "
            f"(TaskWorkerConfig.max_deliveries={self.config.max_deliveries}); fix the cause "
            "(memory, segfault, a blocking handler), then retry it from the DLQ."
        )

    async def _run_sync(self, handler: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a sync handler in the worker's bounded thread pool.

        A timeout or stop cancels the wait, not the thread: Python cannot kill a
        thread, so the call runs to its end in the background (its result is dropped)
        and keeps its pool slot until then.
        """
        executor = self._executor
        if executor is None:
            workers = min(self.config.max_concurrent_tasks, 64)
            executor = ThreadPoolExecutor(workers, thread_name_prefix=f"lexigram-{self.worker_id}")
            self._executor = executor
        call = functools.partial(handler, *args, **kwargs)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(executor, contextvars.copy_context().run, call)
        if inspect.isawaitable(result):
            return await result
        return result

    def _tracker_for(self, entry: Running) -> ProgressTracker:
        if entry.tracker is None:
            entry.tracker = ProgressTracker(
                entry.job.id, self.progress_store, tracker=self._progress_tracker
            )
        return entry.tracker

    # -- settling --------------------------------------------------------------------

    async def _settle_success(self, entry: Running, data: Any, started: float) -> None:
        job = entry.job
        now = time.time()
        result = JobResult(
            success=True,
            data=data,
            duration=time.perf_counter() - started,
            retry_count=job.retry_count,
            id=job.id,
            name=job.name,
            completed_at=now,
        )
        job.status = JobStatus.COMPLETED
        job.completed_at = now
        job.result = result
        self.stats.record_job(result)
        await self._record(entry, result)
        if self._hooks is not None:
            await self._emit(
                _COMPLETED,
                TaskCompletedHook(task_name=job.name, task_id=job.id, worker_id=self.worker_id),
            )
        try:
            await self.queue.ack(job.id)
        except Exception:
            self.logger.exception(
                "Ack of job %s (%s) failed; it will be delivered again when its lease expires.",
                job.id,
                job.name,
            )

    async def _after_error(self, entry: Running, exc: BaseException, started: float) -> None:
        if entry.reason is not None:  # cancelled by the worker, re-raised as something else
            await self._after_cancel(entry, exc, started)
            return
        if isinstance(exc, Unrunnable):
            await self._dead_letter(entry, exc.error, None, exc.reason, started)
            return
        error = _describe(exc)
        await self._settle_failure(entry, error, _format(exc), started)

    async def _after_cancel(self, entry: Running, exc: BaseException, started: float) -> None:
        reason = entry.reason
        task = asyncio.current_task()
        if reason is not None and task is not None and task.cancelling():
            task.uncancel()  # the cancellation was ours and is handled here
        job = entry.job
        if reason == TIMEOUT:
            timeout = self._effective_timeout(job)
            message = (
                f"Task {job.name!r} (job {job.id}) exceeded its timeout of {timeout:g} s. Raise "
                "the job's timeout (Job.timeout, @task(timeout=...)) or TaskWorkerConfig."
                "default_timeout/max_timeout, or make the handler faster."
            )
            error = _describe(TaskTimeoutError(message))
            where = "".join(traceback.format_exception(exc))
            tb = f"{error}\n\nThe handler was interrupted at:\n{where}"
            await self._settle_failure(entry, error, tb, started)
        elif reason == LEASE_LOST:
            job.mark_cancelled()
            self.stats.jobs_cancelled += 1
            self.logger.warning(
                "Job %s (%s) lost its lease (deleted, cancelled or expired); its handler was "
                "cancelled and the job is not acked.",
                job.id,
                job.name,
            )
        else:
            await self._release(job)
            if reason is None:
                raise exc  # an outside cancellation (loop shutdown): honour it

    async def _release(self, job: Job) -> None:
        job.status = JobStatus.PENDING
        try:
            await self.queue.nack(job.id, requeue=True)
        except Exception:
            self.logger.exception(
                "Nack of job %s (%s) failed; it is delivered again when its lease expires.",
                job.id,
                job.name,
            )

    async def _settle_failure(self, entry: Running, error: str, tb: str, started: float) -> None:
        job = entry.job
        if not job.can_retry:
            await self._dead_letter(entry, error, tb, REASON_MAX_RETRIES, started)
            return
        duration = time.perf_counter() - started
        self.stats.record_job(JobResult.fail(error, retry_count=job.retry_count, duration=duration))
        job.mark_retrying()
        job.last_error = error
        delay = self._retry_delay(job.retry_count - 1)
        self.stats.jobs_retried += 1
        self.logger.warning(
            "Job %s (%s) failed (attempt %s of %s), retrying in %.2f s: %s",
            job.id,
            job.name,
            job.retry_count,
            (job.max_retries if job.max_retries is not None else DEFAULT_MAX_RETRIES) + 1,
            delay,
            error,
        )
        try:
            await self.queue.retry_later(job, delay=delay)
        except Exception:
            self.logger.exception(
                "Scheduling the retry of job %s (%s) failed; it is delivered again when its "
                "lease expires.",
                job.id,
                job.name,
            )

    async def _dead_letter(
        self, entry: Running, error: str, tb: str | None, reason: str, started: float
    ) -> None:
        job = entry.job
        duration = time.perf_counter() - started
        result = JobResult.fail(error, retry_count=job.retry_count, duration=duration)
        result.id, result.name = job.id, job.name
        job.mark_failed(error)
        job.result = result
        self.stats.record_job(result)
        self.stats.jobs_dead_lettered += 1
        self.logger.error("Job %s (%s) dead-lettered (%s): %s", job.id, job.name, reason, error)
        try:
            added = self.dlq.add(
                job,
                error,
                traceback=tb,
                reason=reason,
                worker_id=self.worker_id,
                attempts=job.retry_count + (reason == REASON_MAX_RETRIES),
            )
            if inspect.isawaitable(added):
                await added
        except Exception:
            # The failure must not vanish: without a DLQ record the job comes back later.
            delay = max(1.0, self.config.retry.max_delay)
            self.logger.exception(
                "Dead-lettering job %s (%s) failed; it is retried in %.0f s instead.",
                job.id,
                job.name,
                delay,
            )
            await self._retry_unrecorded(job, delay)
            return
        await self._record(entry, result)
        if self._hooks is not None:
            failed = TaskFailedHook(
                task_name=job.name,
                task_id=job.id,
                reason=result.error or reason,
                worker_id=self.worker_id,
            )
            await self._emit(_FAILED, failed)
        try:
            await self.queue.ack(job.id)
        except Exception:
            self.logger.exception("Ack of dead-lettered job %s (%s) failed.", job.id, job.name)

    async def _retry_unrecorded(self, job: Job, delay: float) -> None:
        try:
            await self.queue.retry_later(job, delay=delay)
        except Exception:
            self.logger.exception("Requeueing job %s (%s) failed.", job.id, job.name)

    async def _record(self, entry: Running, result: JobResult) -> None:
        """Store the result and feed observers; a broken store or observer is only logged."""
        job = entry.job
        if self.result_store is not None:
            try:
                await self.result_store.store(job.id, result)
            except Exception:
                self.logger.exception("Storing the result of job %s (%s) failed.", job.id, job.name)
        if self._observed or entry.tracker is not None:
            try:
                await self._observe(entry, result)
            except Exception:
                self.logger.exception("Reporting job %s (%s) failed.", job.id, job.name)
        if self._idempotency is not None and job.idempotency_key is not None:
            await self._settle_idempotency(job.idempotency_key, result)

    async def _settle_idempotency(self, key: str, result: JobResult) -> None:
        """Remember a success under the job's key; free the key of a dead-lettered job."""
        manager = self._idempotency
        try:
            if result.success:
                mark = getattr(manager, "mark_completed", None)
                if mark is not None:
                    await mark(key, result.data)
            else:
                release = getattr(manager, "release", None)
                if release is not None:
                    await release(key)
        except KeyError:
            pass  # the job was not submitted through the manager: nothing to record
        except Exception:
            self.logger.exception("Recording idempotency key %r failed.", key)

    async def _observe(self, entry: Running, result: JobResult) -> None:
        """Feed the dashboard and publish the job's terminal progress state."""
        job = entry.job
        if self.dashboard is not None:
            self.dashboard.record_execution(
                job.name,
                job_id=job.id,
                duration_ms=result.duration * 1000.0,
                success=result.success,
                error=result.error,
                worker_id=self.worker_id,
            )
        tracker = entry.tracker
        if tracker is not None and tracker.finished:
            return
        if tracker is None and self._progress_tracker is not None:
            tracker = self._tracker_for(entry)
        if tracker is None:
            return
        if result.success:
            await tracker.complete()
        else:
            await tracker.fail(result.error or "failed")

    async def _emit(self, action: str, payload: Any) -> None:
        hooks = self._hooks
        if hooks is None:
            return
        try:
            await hooks.emit(action, payload)
        except Exception:
            self.logger.exception("Hook %r raised; the job carries on.", action)

    # -- policies --------------------------------------------------------------------

    def _effective_timeout(self, job: Job) -> float:
        config = self.config
        timeout = job.timeout if job.timeout is not None else config.default_timeout
        return min(timeout, config.max_timeout)

    def _retry_delay(self, attempt: int) -> float:
        """Seconds before retry number `attempt` (0-based): exponential, with jitter."""
        policy = self._retry_policy
        if policy is not None:
            compute = getattr(policy, "compute_delay", None) or getattr(policy, "get_delay", None)
            if compute is not None:
                try:
                    return max(0.0, float(compute(attempt)))
                except Exception:
                    self.logger.exception("retry_policy failed; using TaskWorkerConfig.retry.")
        retry = self.config.retry
        delay = min(retry.max_delay, retry.initial_delay * retry.backoff_factor**attempt)
        if retry.jitter:
            spread = delay * retry.jitter
            delay += random.uniform(-spread, spread)  # noqa: S311 - jitter, not security
        return max(0.0, delay)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TaskQueueError):
        return f"{type(exc).__name__}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
