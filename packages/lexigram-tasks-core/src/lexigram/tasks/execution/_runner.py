"""`JobRunner`: runs one leased job and settles it, along one path.

    look up the task -> resolve its options -> start the deadline -> call the handler
    (through the middleware, if any) -> settle:
        success               -> ack, then store the result and report "completed"
        failure, retries left -> retry_later(delay)          ("retrying")
        failure for good      -> dead-letter, then ack        ("failed")
        stopped by the worker -> nack(requeue=True)           ("released")
        lease lost            -> nothing: the job's current holder settles it ("lost")

Every queue call passes the job's lease token, so a worker that lost a job's lease
(it ran past its lease, or was deleted or redelivered) changes nothing: the backend
answers False. Then this worker does not store a result or count the job as done,
because the job's current delivery will run (or has run) and settle it; it logs a
warning and reports "lost". The worker loop (`TaskWorker`) owns what spans jobs:
leases, the heartbeat, the deadline timer and stopping.
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
    POISON_JOB_NAME,
    Job,
    JobResult,
    JobStatus,
    ProgressTrackerProtocol,
    TaskDecodeError,
    TaskQueueError,
    TaskQueueProtocol,
    TaskTimeoutError,
    TaskValidationError,
)
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.dlq import DeadLetterQueue, PersistentDeadLetterQueue
from lexigram.tasks.events import (
    COMPLETED,
    FAILED,
    LOST,
    RELEASED,
    RETRYING,
    STARTED,
    EventStream,
    JobEvent,
)
from lexigram.tasks.execution._options import Reject, Retry, TaskOptions
from lexigram.tasks.execution._params import binding_error, plan_for, resolve_arguments
from lexigram.tasks.execution._registry import unknown_task_error
from lexigram.tasks.execution._stats import WorkerJobStats
from lexigram.tasks.middleware import TaskExecutionContext, TaskMiddlewarePipeline
from lexigram.tasks.progress import ProgressStore, ProgressTracker
from lexigram.tasks.results import ResultStore

# Why the worker itself cancelled a job's task (None: it did not).
TIMEOUT = "timeout"
LEASE_LOST = "lease_lost"
STOP = "stop"

REASON_MAX_RETRIES = "max_retries"
REASON_NOT_RETRIED = "not_retried"
REASON_REJECTED = "rejected"
REASON_BAD_ARGUMENTS = "bad_arguments"
REASON_UNKNOWN_TASK = "unknown_task"
REASON_POISON = "poison"
REASON_CRASH_LOOP = "crash_loop"
REASON_RETRY_REQUESTED = "retry_requested"
# Reasons for which the handler never ran on this delivery (no attempt is counted).
_NOT_ATTEMPTED = frozenset({REASON_UNKNOWN_TASK, REASON_POISON, REASON_CRASH_LOOP})

Lookup = Callable[[str], "tuple[Callable[..., Any], TaskOptions] | None"]


class Running:
    """Book-keeping of one in-flight job (slots: this is created per job)."""

    __slots__ = (
        "deadline",
        "job",
        "options",
        "reason",
        "renewed",
        "settling",
        "started",
        "started_at",
        "task",
        "timeout",
        "tracker",
    )

    def __init__(self, job: Job, now: float, deadline: float) -> None:
        self.job = job
        self.deadline = deadline
        self.renewed = now
        self.reason: str | None = None
        self.started = False
        self.started_at = 0.0
        self.settling = False
        self.task: asyncio.Task[None] | None = None
        self.tracker: ProgressTracker | None = None
        self.options: TaskOptions | None = None
        self.timeout: float | None = None

    @property
    def interrupted(self) -> bool:
        """True once the worker cancelled (or marked) this job for a reason."""
        return self.reason is not None


class Unrunnable(Exception):  # noqa: N818 - internal signal, never escapes the worker
    """A job that cannot run (again): it goes straight to the DLQ without retries."""

    def __init__(self, reason: str, error: BaseException | str) -> None:
        super().__init__(str(error))
        self.reason = reason
        self.error = error if isinstance(error, str) else _describe(error)


class JobRunner:
    """Runs jobs and settles their outcome; one per `TaskWorker`, collaborators explicit.

    Args:
        worker_id: Id of the worker, in logs, events and DLQ records.
        queue: The queue the jobs were leased from (ack/nack/retry_later).
        lookup: Task name -> (handler, options), or None for an unknown task.
        task_names: Returns the registered task names (for the unknown-task error).
        config: The worker's configuration (timeouts, retry backoff, crash loops).
        stats: Counters to update.
        dlq: Where jobs that failed for good go.
        events: The job event stream (observers: hooks, dashboard, metrics...).
        arm_deadline: Starts (or moves) a job's deadline on the worker's timer.
        result_store: Where results are stored (None: nowhere).
        progress_store: Where handlers' progress is saved.
        progress_tracker: Live progress tracker; each job's terminal state is published.
        pipeline: Middleware around every handler call.
        container: DI container for handler parameters.
        retry_policy: ``compute_delay(attempt)`` / ``get_delay(attempt)`` overriding the
            configured backoff of tasks that set none of their own.
        idempotency: Idempotency manager (``mark_completed`` / ``release``).
        logger: Where to log.
        log_jobs: Log every completed job at INFO.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        queue: TaskQueueProtocol,
        lookup: Lookup,
        task_names: Callable[[], list[str]],
        config: TaskWorkerConfig,
        stats: WorkerJobStats,
        dlq: DeadLetterQueue | PersistentDeadLetterQueue,
        events: EventStream,
        arm_deadline: Callable[[Running, float], None],
        result_store: ResultStore | None = None,
        progress_store: ProgressStore | None = None,
        progress_tracker: ProgressTrackerProtocol | None = None,
        pipeline: TaskMiddlewarePipeline | None = None,
        container: Any = None,
        retry_policy: Any = None,
        idempotency: Any = None,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        log_jobs: bool = False,
    ) -> None:
        self.worker_id = worker_id
        self.queue = queue
        self.config = config
        self.stats = stats
        self.dlq = dlq
        self.events = events
        self.result_store = result_store
        self.progress_store = progress_store
        self.progress_tracker = progress_tracker
        self.pipeline = pipeline
        self.container = container
        self.retry_policy = retry_policy
        self.idempotency = idempotency
        self.logger = logger
        self.log_jobs = log_jobs
        self._lookup = lookup
        self._task_names = task_names
        self._arm_deadline = arm_deadline
        self._executor: ThreadPoolExecutor | None = None
        self._default_timeout = min(config.default_timeout, config.max_timeout)
        self._queue_name = str(getattr(queue, "queue_name", "") or "")
        # Whether every job needs _after_end (live progress, idempotency keys).
        self._finishing = progress_tracker is not None or idempotency is not None

    # -- the one path ----------------------------------------------------------------

    async def run(self, entry: Running) -> None:
        """Run `entry`'s job and settle it; never raises (except an outside cancel)."""
        # A task cancelled before its first step never runs its body, so the worker
        # never cancels a task that has not started: it sets a reason that is handled
        # here instead. Nothing awaits before the try.
        entry.started = True
        entry.started_at = time.time()
        started = time.perf_counter()
        try:
            if entry.reason is not None:  # interrupted (stop, lost lease) before it began
                await self._after_cancel(entry, asyncio.CancelledError(), started)
                return
            data = await self._call(entry)
        except asyncio.CancelledError as exc:
            entry.settling = True
            await self._after_cancel(entry, exc, started)
        except BaseException as exc:
            entry.settling = True
            if entry.reason is not None:  # cancelled by the worker, re-raised as another
                await self._after_cancel(entry, exc, started)
            else:
                await self._after_error(entry, exc, started)
        else:
            entry.settling = True
            if entry.interrupted:  # the handler swallowed the worker's cancellation
                await self._after_cancel(entry, asyncio.CancelledError(), started)
            else:
                await self._succeeded(entry, data, started)

    async def _call(self, entry: Running) -> Any:
        job = entry.job
        handler, explicit = self._prepare(entry)
        if self.events:
            await self.events.observe(self._event(entry, STARTED))
        plan = plan_for(handler)
        if self.pipeline is None and (
            plan.always_direct or plan.direct_call_ok(job.args, job.kwargs)
        ):
            try:
                if plan.is_async:
                    return await handler(*job.args, **job.kwargs)
                return await self._run_sync(handler, *job.args, **job.kwargs)
            except TypeError as exc:
                if binding_error(plan, job.args, job.kwargs):
                    raise Unrunnable(REASON_BAD_ARGUMENTS, _bad_call(job, exc)) from exc
                raise
        ctx = TaskExecutionContext(
            job=job,
            timeout=entry.timeout,
            timeout_explicit=explicit is not None,
            deadline_setter=functools.partial(self._set_timeout, entry),
        )
        try:
            args, kwargs = await resolve_arguments(
                plan,
                job,
                tracker=functools.partial(self.tracker_for, entry),
                context=lambda: ctx,
                container=self.container,
            )
        except TaskValidationError as exc:
            raise Unrunnable(REASON_BAD_ARGUMENTS, _bad_call(job, exc)) from exc
        call = handler if plan.is_async else functools.partial(self._run_sync, handler)
        if self.pipeline is None:
            return await call(*args, **kwargs)
        return await self.pipeline.run(ctx, call, args, kwargs)

    def _prepare(self, entry: Running) -> tuple[Callable[..., Any], float | None]:
        """Find the job's task, resolve its options and start its deadline.

        Returns:
            The handler, and the timeout the job or its task set (None: the default).
        """
        job = entry.job
        found = self._lookup(job.name)
        if found is None:
            raise self._unrunnable(job)
        handler, options = found
        entry.options = options
        if job.delivery_count - job.retry_count > self.config.max_deliveries:
            raise Unrunnable(REASON_CRASH_LOOP, self._crash_loop_message(job))
        explicit = job.timeout if job.timeout is not None else options.timeout
        if explicit is None:
            entry.timeout = self._default_timeout
        else:
            entry.timeout = min(explicit, self.config.max_timeout)
        if self.config.enforce_timeout:
            self._arm_deadline(entry, entry.timeout)
        job.mark_running()
        return handler, explicit

    def _set_timeout(self, entry: Running, seconds: float) -> None:
        """A middleware set the attempt's timeout: move the job's deadline."""
        entry.timeout = seconds
        if self.config.enforce_timeout:
            self._arm_deadline(entry, seconds)

    def _unrunnable(self, job: Job) -> Unrunnable:
        if job.name == POISON_JOB_NAME:
            error = job.last_error or str(job.metadata.get("poison_error") or "undecodable job")
            return Unrunnable(REASON_POISON, TaskDecodeError(error))
        return Unrunnable(REASON_UNKNOWN_TASK, unknown_task_error(job.name, self._task_names()))

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

    def shutdown(self) -> None:
        """Release the thread pool (running sync handlers finish in the background)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def tracker_for(self, entry: Running) -> ProgressTracker:
        """The job's `ProgressTracker` (created on first use)."""
        if entry.tracker is None:
            entry.tracker = ProgressTracker(
                entry.job.id, self.progress_store, tracker=self.progress_tracker
            )
        return entry.tracker

    # -- outcomes --------------------------------------------------------------------

    async def _succeeded(self, entry: Running, data: Any, started: float) -> None:
        job = entry.job
        duration = time.perf_counter() - started
        now = time.time()
        result = JobResult(
            success=True,
            data=data,
            duration=duration,
            retry_count=job.retry_count,
            id=job.id,
            name=job.name,
            completed_at=now,
        )
        job.status = JobStatus.COMPLETED
        job.completed_at = now
        job.result = result
        self.stats.record_job(result)
        try:  # inlined rather than _settle(): this is the hot path
            if job.lease_token is None:
                held = await self.queue.ack(job.id)
            else:
                held = await self.queue.ack(job.id, lease_token=job.lease_token)
        except Exception:
            held = None
            self.logger.exception(
                "Ack of job %s (%s) failed; it is delivered again when its lease expires.",
                job.id,
                job.name,
            )
        if held is False:
            await self._lost(entry, duration)
            return
        options = entry.options
        if self.result_store is not None and (options is None or options.store_result):
            try:
                await self.result_store.store(job.id, result)
            except Exception:
                self.logger.exception("Storing the result of job %s (%s) failed.", job.id, job.name)
        if self._finishing or entry.tracker is not None:
            await self._after_end(entry, result)
        if self.events:
            await self.events.observe(self._event(entry, COMPLETED, duration=duration, end=now))
        if self.log_jobs:
            self.logger.info(
                "Job %s (%s) completed in %.1f ms (attempt %d).",
                job.id,
                job.name,
                duration * 1000.0,
                job.retry_count + 1,
            )

    async def _after_error(self, entry: Running, exc: BaseException, started: float) -> None:
        if isinstance(exc, Unrunnable):
            await self._dead_letter(entry, exc.error, None, exc.reason, started)
            return
        await self._failed(entry, exc, _describe(exc), _format(exc), started)

    async def _failed(
        self, entry: Running, exc: BaseException, error: str, tb: str, started: float
    ) -> None:
        """Retry a failed attempt, or dead-letter the job: the one retry decision."""
        job = entry.job
        options = entry.options
        if isinstance(exc, Reject):
            await self._dead_letter(entry, error, tb, REASON_REJECTED, started)
            return
        if not isinstance(exc, Retry) and options is not None and not options.retries(exc):
            await self._dead_letter(entry, error, tb, REASON_NOT_RETRIED, started)
            return
        limit = options.max_retries_for(job) if options is not None else 0
        if job.retry_count >= limit:
            await self._dead_letter(entry, error, tb, REASON_MAX_RETRIES, started)
        elif isinstance(exc, Retry):
            await self._retry(entry, error, started, exc.delay, REASON_RETRY_REQUESTED)
        else:
            await self._retry(entry, error, started, None, None)

    async def _after_cancel(self, entry: Running, exc: BaseException, started: float) -> None:
        reason = entry.reason
        task = asyncio.current_task()
        if reason is not None and task is not None and task.cancelling():
            task.uncancel()  # the cancellation was ours and is handled here
        job = entry.job
        if reason == TIMEOUT:
            message = (
                f"Task {job.name!r} (job {job.id}) exceeded its timeout of "
                f"{entry.timeout or 0:g} s. Raise @task(timeout=...) (or the job's "
                "timeout, or TaskWorkerConfig.default_timeout/max_timeout), or make the "
                "handler faster."
            )
            timed_out = TaskTimeoutError(message, details={"timeout": entry.timeout})
            error = _describe(timed_out)
            where = "".join(traceback.format_exception(exc))
            tb = f"{error}\n\nThe handler was interrupted at:\n{where}"
            await self._failed(entry, timed_out, error, tb, started)
        elif reason == LEASE_LOST:
            job.mark_cancelled()
            self.stats.jobs_cancelled += 1
            self.logger.warning(
                "Job %s (%s) lost its lease (deleted, cancelled or expired); its handler was "
                "cancelled and the job is not acked.",
                job.id,
                job.name,
            )
            if self.events:
                await self.events.observe(self._event(entry, LOST, started=started))
        else:
            await self.release(job)
            if self.events:
                await self.events.observe(self._event(entry, RELEASED, started=started))
            if reason is None:
                raise exc  # an outside cancellation (loop shutdown): honour it

    async def release(self, job: Job) -> None:
        """Give a leased job back to the queue now (the worker is stopping)."""
        job.status = JobStatus.PENDING
        try:
            if job.lease_token is None:
                await self.queue.nack(job.id, requeue=True)
            else:
                await self.queue.nack(job.id, requeue=True, lease_token=job.lease_token)
        except Exception:
            self.logger.exception(
                "Nack of job %s (%s) failed; it is delivered again when its lease expires.",
                job.id,
                job.name,
            )

    async def _retry(
        self,
        entry: Running,
        error: str,
        started: float,
        delay: float | None,
        reason: str | None,
    ) -> None:
        job = entry.job
        duration = time.perf_counter() - started
        self.stats.record_job(JobResult.fail(error, retry_count=job.retry_count, duration=duration))
        attempt = job.retry_count + 1
        options = entry.options
        limit = options.max_retries_for(job) if options is not None else 0
        job.mark_retrying()
        job.last_error = error
        if delay is None:
            delay = self._retry_delay(job.retry_count - 1, options)
        if not await self._settle(job, "retry_later", self.queue.retry_later(job, delay=delay)):
            await self._lost(entry, duration, attempt)
            return
        self.stats.jobs_retried += 1
        self.logger.warning(
            "Job %s (%s) failed (attempt %d of %d), retrying in %.2f s: %s",
            job.id,
            job.name,
            attempt,
            limit + 1,
            delay,
            error,
        )
        if self.events:
            event = self._event(
                entry, RETRYING, duration=duration, error=error, reason=reason, retry_in=delay
            )
            await self.events.observe(event)

    async def _dead_letter(
        self, entry: Running, error: str, tb: str | None, reason: str, started: float
    ) -> None:
        job = entry.job
        duration = time.perf_counter() - started
        attempts = job.retry_count + (reason not in _NOT_ATTEMPTED)
        result = JobResult.fail(error, retry_count=job.retry_count, duration=duration)
        result.id, result.name = job.id, job.name
        job.mark_failed(error)
        job.result = result
        self.stats.record_job(result)
        options = entry.options
        try:
            added = self.dlq.add(
                job,
                error,
                traceback=tb,
                reason=reason,
                worker_id=self.worker_id,
                attempts=attempts,
                max_retries=options.max_retries_for(job) if options is not None else None,
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
            await self._settle(job, "retry_later", self.queue.retry_later(job, delay=delay))
            return
        self.stats.jobs_dead_lettered += 1
        self.logger.error(
            "Job %s (%s) dead-lettered after %d attempt(s) (%s): %s",
            job.id,
            job.name,
            attempts,
            reason,
            error,
        )
        if not await self._settle(job, "ack", self._ack(job)):
            # The record stays: whoever holds the job now may dead-letter it again.
            await self._lost(entry, duration, attempts)
            return
        if self.result_store is not None and (options is None or options.store_result):
            try:
                await self.result_store.store(job.id, result)
            except Exception:
                self.logger.exception("Storing the result of job %s (%s) failed.", job.id, job.name)
        await self._after_end(entry, result)
        if self.events:
            event = self._event(
                entry, FAILED, duration=duration, error=error, reason=reason, attempt=attempts
            )
            await self.events.observe(event)

    async def _lost(self, entry: Running, duration: float, attempt: int | None = None) -> None:
        job = entry.job
        self.stats.jobs_lost += 1
        self.logger.warning(
            "Job %s (%s) lost its lease before it was settled (it ran past its lease, or "
            "was deleted or delivered again); its outcome is dropped and its current "
            "delivery settles it.",
            job.id,
            job.name,
        )
        if self.events:
            await self.events.observe(self._event(entry, LOST, duration=duration, attempt=attempt))

    # -- queue calls -----------------------------------------------------------------

    def _ack(self, job: Job) -> Any:
        if job.lease_token is None:
            return self.queue.ack(job.id)
        return self.queue.ack(job.id, lease_token=job.lease_token)

    async def _settle(self, job: Job, what: str, call: Any) -> bool:
        """Await a settling queue call; False only when the backend says the lease is gone.

        A call that raises is logged: the lease then runs out and the job is delivered
        again (True is returned, as the outcome is recorded all the same).
        """
        try:
            held = await call
        except Exception:
            self.logger.exception(
                "%s of job %s (%s) failed; it is delivered again when its lease expires.",
                what.capitalize(),
                job.id,
                job.name,
            )
            return True
        return held is not False

    # -- after the end ---------------------------------------------------------------

    async def _after_end(self, entry: Running, result: JobResult) -> None:
        """Finish the job's progress record and its idempotency key; errors are logged."""
        tracker = entry.tracker
        if tracker is None and self.progress_tracker is not None:
            tracker = self.tracker_for(entry)
        if tracker is not None and not tracker.finished:
            try:
                if result.success:
                    await tracker.complete()
                else:
                    await tracker.fail(result.error or "failed")
            except Exception:
                self.logger.exception("Reporting progress of job %s failed.", entry.job.id)
        key = entry.job.idempotency_key
        if self.idempotency is not None and key is not None:
            await self._settle_idempotency(key, result)

    async def _settle_idempotency(self, key: str, result: JobResult) -> None:
        """Remember a success under the job's key; free the key of a dead-lettered job."""
        manager = self.idempotency
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

    def _event(
        self,
        entry: Running,
        kind: str,
        *,
        duration: float | None = None,
        error: str | None = None,
        reason: str | None = None,
        retry_in: float | None = None,
        attempt: int | None = None,
        end: float | None = None,
        started: float | None = None,
    ) -> JobEvent:
        job = entry.job
        if duration is None and started is not None:
            duration = time.perf_counter() - started
        finished = None
        if kind != STARTED:
            finished = end if end is not None else time.time()
        return JobEvent(
            kind=kind,
            task=job.name,
            job_id=job.id,
            queue=job.queue_name or self._queue_name,
            attempt=attempt if attempt is not None else job.retry_count + (kind != RETRYING),
            worker_id=self.worker_id,
            enqueued_at=job.created_at,
            started_at=entry.started_at or None,
            finished_at=finished,
            duration=duration,
            error=error,
            reason=reason,
            retry_in=retry_in,
        )

    # -- policies --------------------------------------------------------------------

    def _retry_delay(self, attempt: int, options: TaskOptions | None) -> float:
        """Seconds before retry number `attempt` (0-based), as the task or config says.

        A task's ``retry_backoff=N`` waits N, 2N, 4N... seconds (capped at
        ``retry_backoff_max``, else the configured ``max_delay``); ``retry_jitter=True``
        picks a random delay between 0 and that (Celery's full jitter). Otherwise
        `TaskWorkerServices.retry_policy`, else `TaskWorkerConfig.retry` decides.
        """
        retry = self.config.retry
        own = options is not None and (
            options.retry_backoff is not None
            or options.retry_backoff_max is not None
            or options.retry_jitter is not None
        )
        policy = self.retry_policy
        if not own and policy is not None:
            compute = getattr(policy, "compute_delay", None) or getattr(policy, "get_delay", None)
            if compute is not None:
                try:
                    return max(0.0, float(compute(attempt)))
                except Exception:
                    self.logger.exception("retry_policy failed; using TaskWorkerConfig.retry.")
        initial, factor, cap = retry.initial_delay, retry.backoff_factor, retry.max_delay
        if options is not None:
            if options.retry_backoff is not None:
                initial, factor = options.retry_backoff, 2.0
            if options.retry_backoff_max is not None:
                cap = options.retry_backoff_max
        delay = min(cap, initial * factor**attempt)
        jitter = None if options is None else options.retry_jitter
        if jitter is True:
            delay = random.uniform(0.0, delay)  # noqa: S311 - jitter, not security
        elif jitter is None and retry.jitter:
            spread = delay * retry.jitter
            delay += random.uniform(-spread, spread)  # noqa: S311 - jitter, not security
        return max(0.0, delay)


def _bad_call(job: Job, exc: BaseException) -> str:
    return (
        f"{_describe(exc)}; the job was sent with args={list(job.args)!r} "
        f"kwargs={job.kwargs!r}. Retrying cannot help: fix the producer's call or the "
        "task's signature, then enqueue it again."
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TaskQueueError):
        return f"{type(exc).__name__}: {exc.message}"
    if isinstance(exc, Reject | Retry):
        return f"{type(exc).__name__}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))
