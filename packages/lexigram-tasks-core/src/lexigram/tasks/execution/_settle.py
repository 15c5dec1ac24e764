"""`Settler`: ends every job in exactly one outcome, and reports it once.

    success               -> ack, then store the result and report "completed"
    failure, retries left -> retry_later(delay)          ("retrying")
    failure for good      -> dead-letter, then ack        ("failed")
    stopped by the worker -> nack(requeue=True)           ("released")
    cancelled             -> ack (refused: cancel removed it), store CANCELLED ("cancelled")
    lease lost            -> nothing: the job's current holder settles it ("lost")

Every queue call passes the job's lease token, so a worker that lost a job's lease
(it ran past its lease, or was deleted or redelivered) changes nothing: the backend
answers False. Then this worker does not store a result or count the job as done,
because the job's current delivery will run (or has run) and settle it; it logs a
warning and reports "lost".

`WorkerJobStats` counts each attempt under the outcome its event reports, at the same
point: once the settling call held, or as lost when it did not. So the stats, the events
and ``lexigram_tasks_jobs_total`` agree (an attempt is never counted succeeded and then
lost, nor succeeded again when its redelivery succeeds).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import (
    Job,
    JobResult,
    JobStatus,
    ProgressStoreProtocol,
    ProgressTrackerProtocol,
    ResultAcker,
    ResultAckingQueueProtocol,
    ResultStoreProtocol,
    TaskQueueProtocol,
)
from lexigram.tasks._give_back import give_back
from lexigram.tasks._presence import worker_identity
from lexigram.tasks.constants import WORKFLOW_STEP_KEY
from lexigram.tasks.dlq import DeadLetterQueue, PersistentDeadLetterQueue
from lexigram.tasks.events import (
    CANCELLED,
    COMPLETED,
    FAILED,
    LOST,
    RELEASED,
    RETRYING,
    STARTED,
    EventStream,
    JobEvent,
    counter_failed,
    new_job_event,
)
from lexigram.tasks.execution._backoff import retry_delay
from lexigram.tasks.execution._cancel import cancelled_result
from lexigram.tasks.execution._idempotency_keys import settle_idempotency_key
from lexigram.tasks.execution._options import Reject, Retry
from lexigram.tasks.execution._running import (
    CANCEL,
    LEASE_LOST,
    NOT_ATTEMPTED,
    REASON_MAX_RETRIES,
    REASON_NOT_RETRIED,
    REASON_REJECTED,
    REASON_RETRY_REQUESTED,
    TIMEOUT,
    Running,
    Unrunnable,
    describe,
)
from lexigram.tasks.execution._stats import WorkerJobStats
from lexigram.tasks.middleware._base import timeout_error
from lexigram.tasks.progress import ProgressTracker

if TYPE_CHECKING:
    from lexigram.tasks._worker_settings import AnyWorkerSettings

# A job that ran at least this long gives its slot to the next job before its ack, one
# that ran shorter after it (see Settler.released).
EARLY_RELEASE_SECONDS = 0.005


class Settler:
    """Settles jobs and reports their events; one per `TaskWorker`, collaborators explicit.

    Args:
        worker_id: Id of the worker, in logs, events and DLQ records.
        queue: The queue the jobs were leased from (ack/nack/retry_later).
        config: The worker's configuration (retry backoff).
        stats: Counters to update.
        dlq: Where jobs that failed for good go.
        events: The job event stream (observers: hooks, dashboard, metrics...).
        result_store: Where results are stored (None: nowhere). When the queue can ack
            and store into it in one call (`ResultAckingQueueProtocol`), it does.
        progress_store: Where handlers' progress is saved.
        progress_tracker: Live progress tracker; the terminal state of each job that
            reported progress (its handler took a `ProgressTracker`) is published. A job
            that never did writes no progress at all: its end is its result and status.
        retry_policy: ``compute_delay(attempt)`` / ``get_delay(attempt)`` overriding the
            configured backoff of tasks that set none of their own.
        idempotency: Idempotency manager (``mark_completed`` / ``release``).
        logger: Where to log.
        log_jobs: Log every completed job at INFO.
        released: Called once a job's handler has succeeded, before its result is stored
            and its end reported, and before its ack when the handler ran at least
            `EARLY_RELEASE_SECONDS` (else once the ack returns): the worker hands the
            job's slot to the next job meanwhile, so leasing the next round overlaps that
            bookkeeping (None: the slot frees at the very end).
    """

    def __init__(
        self,
        *,
        worker_id: str,
        queue: TaskQueueProtocol,
        config: AnyWorkerSettings,
        stats: WorkerJobStats,
        dlq: DeadLetterQueue | PersistentDeadLetterQueue,
        events: EventStream,
        result_store: ResultStoreProtocol | None = None,
        progress_store: ProgressStoreProtocol | None = None,
        progress_tracker: ProgressTrackerProtocol | None = None,
        retry_policy: Any = None,
        idempotency: Any = None,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        log_jobs: bool = False,
        released: Callable[[Running], None] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.queue = queue
        self.config = config
        self.stats = stats
        self.dlq = dlq
        self.events = events
        # The stream's own list (C-level truth test on the hot path, sees later adds).
        self._observers = events.observer_list
        self.result_store = result_store
        # Ack + result in one call where the queue offers it for this store (asked once).
        self._acker: ResultAcker | None = (
            queue.result_acker(result_store)
            if result_store is not None and isinstance(queue, ResultAckingQueueProtocol)
            else None
        )
        self.progress_store = progress_store
        self.progress_tracker = progress_tracker
        self.retry_policy = retry_policy
        self.idempotency = idempotency
        self.logger = logger
        self.log_jobs = log_jobs
        self._queue_name = str(getattr(queue, "queue_name", "") or "")
        # Whether every job needs _after_end (idempotency keys); a job whose handler
        # took a ProgressTracker needs it too (entry.tracker is set).
        self._finishing = idempotency is not None
        # Attempts that ran at least `long_job_seconds` (the loop-lag threshold), as
        # (job id, task name, finished at): the loop-lag monitor wakes after a blocking
        # job ended, and names it from here.
        self.long_job_seconds = math.inf
        self.long_jobs: deque[tuple[str, str, float]] = deque(maxlen=64)
        self.released = released

    def tracker_for(self, entry: Running) -> ProgressTracker:
        """The job's `ProgressTracker` (created on first use)."""
        if entry.tracker is None:
            entry.tracker = ProgressTracker(
                entry.job.id, self.progress_store, tracker=self.progress_tracker
            )
        return entry.tracker

    # -- outcomes --------------------------------------------------------------------
    async def succeeded(self, entry: Running, data: Any, started: float) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot path, inlined on purpose
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
        if duration >= self.long_job_seconds:
            self.long_jobs.append((job.id, job.name, now))
        place = job.metadata.get(WORKFLOW_STEP_KEY)  # a queue-driven workflow's step
        if place is not None and not await _workflows().step_succeeded(
            self.queue, job, place, data, self.logger
        ):
            return  # not acked: the step runs again when its lease ends, and advances then
        # Jobs that ran a while end in waves (they started together): their slots take
        # the next jobs while the acks travel, or the refill waits for the acks' group
        # commits, one after the other. Short jobs keep their slot through the ack: the
        # refill then leases for the many slots an ack round frees at once, where freeing
        # each at its handler's return makes many small leases (on RabbitMQ with a state
        # store, a store round trip each: W2's CPU per job rose by a fifth).
        options = entry.options
        store = self.result_store is not None and (options is None or options.store_result)
        acker = self._acker if store else None
        # An ack that carries the result (or follows its write) returns later than a bare
        # ack: the slot does not wait for it (the jobs held ahead keep the refills in
        # batches).
        released = self.released
        if released is not None and (store or duration >= EARLY_RELEASE_SECONDS):
            released(entry)
            released = None
        if store and acker is None and self.result_store is not None:
            # Stored before the ack, where no acker does both in one step: a worker that
            # dies between the two runs the job again (at least once), while the other
            # order left an acked job without its result for good. A delivery whose ack
            # then finds its lease gone has stored the result of a run that did complete;
            # the current delivery's settling replaces it.
            try:
                await self.result_store.store(job.id, result)
            except Exception:
                self.logger.exception("Storing the result of job %s (%s) failed.", job.id, job.name)
        try:  # inlined rather than _settle(): this is the hot path
            if acker is not None:  # the result goes with the ack, only if the ack holds
                held = await acker(job.id, result, job.lease_token)
            elif job.lease_token is None:
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
        # Counted once the ack held, as its event is (moved, not added: the same call).
        self.stats.record_job(result)
        if released is not None:
            released(entry)
        if self._finishing or entry.tracker is not None:
            await self._after_end(entry, result)
        if self._observers:
            counters, read = self.events.completion_listeners()
            if counters:  # metrics: the job's figures, no event built for them
                queue = job.queue_name or self._queue_name
                attempt = job.retry_count + 1
                for count in counters:
                    try:
                        count(job.name, queue, attempt, job.created_at, entry.started_at, duration)
                    except Exception as error:
                        counter_failed(count, job.name, error)
            if read:
                pending = self.events.deliver(self.event(entry, COMPLETED, duration, now))
                if pending is not None:
                    await pending
        if self.log_jobs:
            attempt = job.retry_count + 1
            self.logger.info(
                "Job %s (%s) completed in %.1f ms (attempt %d).",
                job.id,
                job.name,
                duration * 1000.0,
                attempt,
                extra={
                    "job_id": job.id,
                    "task": job.name,
                    "duration_ms": round(duration * 1000.0, 3),
                    "attempt": attempt,
                    "outcome": COMPLETED,
                },
            )

    async def errored(self, entry: Running, exc: BaseException, started: float) -> None:
        """The attempt failed: retry it or dead-letter the job.

        `exc` is what the handler raised; an `asyncio.CancelledError` here is one the
        handler raised itself, the worker having cancelled nothing (see `JobRunner.run`).
        """
        if isinstance(exc, Unrunnable):
            await self._dead_letter(entry, exc.error, None, exc.reason, started)
            return
        if isinstance(exc, asyncio.CancelledError):
            error = handler_cancellation_error(exc)
        else:
            error = describe(exc)
        await self._failed(entry, exc, error, _format(exc), started)

    async def _failed(
        self, entry: Running, exc: BaseException, error: str, tb: str, started: float
    ) -> None:
        """Retry a failed attempt, or dead-letter the job: the one retry decision."""
        job = entry.job
        if entry.pristine is not None:  # the retry and the dead letter carry what was sent
            job.args, job.kwargs = entry.pristine
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

    async def cancelled(self, entry: Running, exc: BaseException, started: float) -> None:
        reason = entry.reason
        task = asyncio.current_task()
        if reason is not None and task is not None and task.cancelling():
            task.uncancel()  # the cancellation was ours and is handled here
        job = entry.job
        if reason == TIMEOUT:
            timed_out = timeout_error(job, entry.timeout)
            error = describe(timed_out)
            where = "".join(traceback.format_exception(exc))
            tb = f"{error}\n\nThe handler was interrupted at:\n{where}"
            await self._failed(entry, timed_out, error, tb, started)
        elif reason == CANCEL:
            await self._cancelled(entry, started)
        elif reason == LEASE_LOST:
            job.mark_cancelled()
            duration = time.perf_counter() - started
            # Reported "lost" (its handler was cancelled, but the job was not): counted so.
            self.stats.jobs_lost += 1
            self.stats.record_attempt(duration)
            self.logger.warning(
                "Job %s (%s) lost its lease (deleted, cancelled or expired); its handler was "
                "cancelled and the job is not acked.",
                job.id,
                job.name,
            )
            if self._observers:
                pending = self.events.deliver(self.event(entry, LOST, duration=duration))
                if pending is not None:
                    await pending
        else:
            await self.release(job)
            duration = time.perf_counter() - started
            self.stats.jobs_released += 1
            self.stats.record_attempt(duration)
            if self._observers:
                pending = self.events.deliver(self.event(entry, RELEASED, duration=duration))
                if pending is not None:
                    await pending
            if reason is None:
                raise exc  # an outside cancellation (loop shutdown): honour it

    async def _cancelled(self, entry: Running, started: float) -> None:
        """The job was cancelled while running: no retry, no DLQ; CANCELLED is stored."""
        job = entry.job
        duration = self._ended(job, started)
        job.mark_cancelled()
        result = cancelled_result(job.id, job.name, duration=duration, retry_count=job.retry_count)
        job.result = result
        place = job.metadata.get(WORKFLOW_STEP_KEY)
        if place is not None:  # a cancelled step ends its run: no later step is enqueued
            await _workflows().step_failed(
                self.queue, job, place, result.error or "cancelled", self.logger, cancelled=True
            )
        # `cancel` already removed the job, so False is the usual answer; a backend whose
        # delivery outlives that (a broker message held here) settles it now. Not a
        # discarding nack: a broker would dead-letter the message.
        await self._settle(job, "ack", self._ack(job))
        # Whatever the ack answered (False is the usual answer here): "cancelled".
        self.stats.jobs_cancelled += 1
        self.stats.record_attempt(duration)
        await self._store_result(entry, result)
        await self._after_end(entry, result)
        self.logger.info("Job %s (%s) was cancelled while running.", job.id, job.name)
        if self._observers:
            event = self.event(entry, CANCELLED, duration=duration, error=result.error)
            pending = self.events.deliver(event)
            if pending is not None:
                await pending

    async def give_back(self, job: Job) -> None:
        """Give a leased job that never started back to the queue now, counted as such.

        See `lexigram.tasks._give_back`: its delivery is no crash, and it keeps its retry
        count.
        """
        try:
            await give_back(self.queue, job)
        except Exception:
            self.logger.exception(
                "Giving back job %s (%s) failed; it is delivered again when its lease expires.",
                job.id,
                job.name,
            )

    async def release(self, job: Job) -> None:
        """Give back a job whose run was interrupted (the worker is stopping).

        It started, so its delivery counts towards the crash-loop check.
        """
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
        duration = self._ended(job, started)
        attempt = job.retry_count + 1
        options = entry.options
        limit = options.max_retries_for(job) if options is not None else 0
        job.mark_retrying()
        job.last_error = error
        if delay is None:
            delay = retry_delay(
                job.retry_count - 1, options, self.config.retry, self.retry_policy, self.logger
            )
        if not await self._settle(job, "retry_later", self.queue.retry_later(job, delay=delay)):
            await self._lost(entry, duration, attempt)
            return
        self.logger.warning(
            "Job %s (%s) failed (attempt %d of %d), retrying in %.2f s: %s",
            job.id,
            job.name,
            attempt,
            limit + 1,
            delay,
            one_line(error),
            extra={
                "job_id": job.id,
                "task": job.name,
                "attempt": attempt,
                "outcome": RETRYING,
                "error": error,
                "retry_in": delay,
            },
        )
        await self._retried(entry, duration, error=error, reason=reason, retry_in=delay)

    async def _retried(self, entry: Running, duration: float, **event: Any) -> None:
        """Count and report an attempt whose ``retry_later`` held (its outcome: retried)."""
        self.stats.jobs_retried += 1
        self.stats.record_attempt(duration)
        if self._observers:
            pending = self.events.deliver(self.event(entry, RETRYING, duration=duration, **event))
            if pending is not None:
                await pending

    async def _dead_letter(
        self, entry: Running, error: str, tb: str | None, reason: str, started: float
    ) -> None:
        job = entry.job
        if job.queue_name is None:
            # `dlq retry` puts a job back on the queue its record names; a backend that
            # built the stand-in of an undecodable payload without it still gets this one.
            job.queue_name = self.queue.queue_name
        duration = self._ended(job, started)
        attempts = job.retry_count + (reason not in NOT_ATTEMPTED)
        result = JobResult.fail(error, retry_count=job.retry_count, duration=duration)
        result.id, result.name = job.id, job.name
        job.mark_failed(error)
        job.result = result
        options = entry.options
        try:
            added = self.dlq.add(
                job,
                error,
                traceback=tb,
                reason=reason,
                worker_id=self.worker_id,
                # The process as `inspect` and the logs name it: worker ids repeat per process.
                process=worker_identity(),
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
            await self._retry_undead(entry, error, duration, attempts, delay)
            return
        place = job.metadata.get(WORKFLOW_STEP_KEY)
        if place is not None and not await _workflows().step_failed(
            self.queue, job, place, error, self.logger
        ):
            return  # not acked: settled again when its lease ends
        queue_name = job.queue_name or self.queue.queue_name
        self.logger.error(
            "Job %s (%s) dead-lettered after %d attempt(s) (%s) from queue %r: %s",
            job.id,
            job.name,
            attempts,
            reason,
            queue_name,
            one_line(error),
            extra={
                "job_id": job.id,
                "task": job.name,
                "queue": queue_name,
                "attempt": attempts,
                "outcome": FAILED,
                "reason": reason,
                "error": error,
            },
        )
        # The failed result before the ack: a worker that dies between the two leaves a
        # dead letter whose status reads "failed", not an unknown job.
        await self._store_result(entry, result)
        if not await self._settle(job, "ack", self._ack(job)):
            # The record stays: whoever holds the job now may dead-letter it again.
            await self._lost(entry, duration, attempts)
            return
        # Counted once the ack held, as its event is.
        self.stats.record_job(result)
        self.stats.jobs_dead_lettered += 1
        await self._after_end(entry, result)
        if self._observers:
            event = self.event(
                entry, FAILED, duration=duration, error=error, reason=reason, attempt=attempts
            )
            pending = self.events.deliver(event)
            if pending is not None:
                await pending

    async def _retry_undead(
        self, entry: Running, error: str, duration: float, attempts: int, delay: float
    ) -> None:
        """Retry in `delay` seconds a job the DLQ refused (its failure must not vanish)."""
        job = entry.job
        if not await self._settle(job, "retry_later", self.queue.retry_later(job, delay=delay)):
            await self._lost(entry, duration, attempts)
            return
        # A retry was scheduled: counted and reported as one, so the attempt has its
        # outcome in the stats and on /metrics alike (and its span ends).
        await self._retried(entry, duration, error=error, retry_in=delay, attempt=attempts)

    async def _store_result(self, entry: Running, result: JobResult) -> None:
        options, job = entry.options, entry.job
        if self.result_store is not None and (options is None or options.store_result):
            try:
                await self.result_store.store(job.id, result)
            except Exception:
                self.logger.exception("Storing the result of job %s (%s) failed.", job.id, job.name)

    def _ended(self, job: Job, started: float) -> float:
        """Seconds the attempt ran; remembers it when it ran as long as a loop block."""
        duration = time.perf_counter() - started
        if duration >= self.long_job_seconds:
            self.long_jobs.append((job.id, job.name, time.time()))
        return duration

    async def _lost(self, entry: Running, duration: float, attempt: int | None = None) -> None:
        job = entry.job
        # The one place a lost settle is counted, next to its LOST event.
        self.stats.jobs_lost += 1
        self.stats.record_attempt(duration)
        self.logger.warning(
            "Job %s (%s) lost its lease before it was settled (it ran past its lease, or "
            "was deleted or delivered again); its outcome is dropped and its current "
            "delivery settles it.",
            job.id,
            job.name,
        )
        if self._observers:
            pending = self.events.deliver(
                self.event(entry, LOST, duration=duration, attempt=attempt)
            )
            if pending is not None:
                await pending

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
        """Finish the job's progress record and its idempotency key; errors are logged.

        Only a job whose handler took a `ProgressTracker` has a progress record to
        finish: the others write no progress row or snapshot per job (readers of
        progress fall back to the job's result).
        """
        tracker = entry.tracker
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
            await settle_idempotency_key(self.idempotency, key, result, self.logger)

    def event(  # noqa: PLR0917 - positional on the hot path (see the docstring)
        self,
        entry: Running,
        kind: str,
        duration: float | None = None,
        end: float | None = None,
        error: str | None = None,
        reason: str | None = None,
        retry_in: float | None = None,
        attempt: int | None = None,
        started: float | None = None,
    ) -> JobEvent:
        """The `JobEvent` of `kind` for `entry`'s job (`end`: the time it ended, if known).

        Positional parameters, and `new_job_event` called positionally: this runs for
        every job an observer listens to, and keyword matching is a good part of a call.
        """
        job = entry.job
        if duration is None and started is not None:
            duration = time.perf_counter() - started
        return new_job_event(
            kind,
            job.name,
            job.id,
            job.queue_name or self._queue_name,
            job.retry_count + (kind != RETRYING) if attempt is None else attempt,
            self.worker_id,
            job.created_at,
            entry.started_at or None,
            None if kind == STARTED else time.time() if end is None else end,
            duration,
            error,
            reason,
            retry_in,
            job.metadata,
        )


def _workflows() -> Any:
    # Imported on a workflow step's path only: the workflows package imports the producer
    # helpers, which import this package.
    from lexigram.tasks.workflows import _advance  # noqa: PLC0415

    return _advance


def handler_cancellation_error(exc: BaseException) -> str:
    """The error of an attempt whose handler raised `asyncio.CancelledError` itself.

    Not a stop, a cancel, a timeout or a lost lease (those are the worker's, and end the
    job their own way): most often an inner task or call that was cancelled let its
    `CancelledError` out of the handler. It fails the attempt like any exception.
    """
    name = type(exc).__name__
    detail = describe(exc).partition(": ")[2]
    told = f" (its message: {detail})" if detail else ""
    return (
        f"{name}: the handler raised {name} without the worker cancelling it (no stop, "
        f"cancel, timeout or lost lease), so this attempt failed{told}. An inner task or "
        "call that was cancelled probably let its CancelledError out of the handler: catch "
        "it there, or raise another exception."
    )


def _format(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def one_line(text: str) -> str:
    r"""`text` with its line breaks written as ``\n``: a log record stays one line.

    A handler's exception message may hold line breaks; written as they are, they would
    split the record and could pass for records of their own in a log pipeline.
    """
    return text.replace("\r", "\\r").replace("\n", "\\n")
