"""`TaskWorker`: one consume loop that runs up to `max_concurrent_tasks` jobs at once.

The loop takes as many jobs as it has free slots (batch dequeue), plus, while its jobs
are short, those it expects to start within `prefetch_window` (`Prefetch`), which start
the moment a slot frees (from the ending job's task, whatever the loop is waiting for).
Each job runs as an asyncio task running `JobRunner.run`, in a copy of the context the
worker started in; when full, the loop sleeps until a job finishes. The leases of running
jobs are renewed by a `LeaseKeeper` thread when the queue offers a
`LeaseRenewingQueueProtocol` renewer (so a handler that blocks the loop cannot lose them),
else by one heartbeat task per worker on the loop. One timer per worker enforces timeouts
(`DeadlineTimer`, re-armed for the earliest deadline; it is the only timeout mechanism), so
the per-job cost is a dict entry and a task.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import CancellableQueueProtocol, Job, TaskQueueProtocol
from lexigram.tasks._outage import OutageLog
from lexigram.tasks._worker_settings import settings_or_model_defaults
from lexigram.tasks.concurrency._task_rate import TaskRateGate, TaskRateLimiters
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.execution._cancel import CancelWatch
from lexigram.tasks.execution._deadlines import DeadlineTimer
from lexigram.tasks.execution._heartbeat import Heartbeat
from lexigram.tasks.execution._lag import DEFAULT_LOOP_LAG_THRESHOLD, LoopLagMonitor
from lexigram.tasks.execution._leases import LeaseWatch
from lexigram.tasks.execution._prefetch import Prefetch
from lexigram.tasks.execution._registry import HandlerRegistry
from lexigram.tasks.execution._runner import JobRunner
from lexigram.tasks.execution._running import CANCEL, STOP, Running
from lexigram.tasks.execution._settle import Settler
from lexigram.tasks.execution._stats import TaskWorkerServices, WorkerJobStats
from lexigram.tasks.execution._wiring import WorkerLogAdapter, event_stream_of, lookup_of
from lexigram.tasks.middleware import TaskMiddlewarePipeline
from lexigram.tasks.progress import ProgressTracker
from lexigram.tasks.results import InMemoryResultStore

if TYPE_CHECKING:
    from lexigram.tasks._worker_settings import AnyWorkerSettings


logger = logging.getLogger(__name__)

# Seconds stop() gives cancelled handlers to unwind and nack before it gives up on them.
_CANCEL_GRACE = 5.0
# Longest pause after a failing dequeue (backend down), doubling from 0.1 s.
_MAX_ERROR_BACKOFF = 5.0


class TaskWorker:
    """Individual task worker: consumes one queue and runs jobs with registered handlers.

    Each job runs in its own asyncio task, up to `config.max_concurrent_tasks` at once;
    sync handlers run in a bounded thread pool. Each job runs with the options of the
    task it names (``@task(max_retries=..., timeout=..., retry_on=...)``), whoever
    enqueued it; a job's own `max_retries`/`timeout` win only where its producer set
    them. Whatever a handler does (raise any exception type, time out, never return),
    the job ends in `ack` (success or dead-lettered), `retry_later` (retry with
    backoff) or `nack(requeue=True)` (worker stopping), or loses its lease and is left
    to the queue; the worker itself never dies on bad input.

    Args:
        worker_id: Unique worker identifier.
        queue: Queue to pull jobs from.
        handler_registry: Dict of task name -> handler, or a `HandlerRegistry`;
            looked up per job, so handlers registered later are seen.
        config: Worker configuration (`TaskWorkerConfig()` when omitted).
        services: Optional infrastructure services (DLQ, result store, observers...).
        middleware_pipeline: Optional middleware around every execution.
        log_jobs: Log every completed job at INFO (default: the config's ``log_jobs``
            when it has one, else False).
        loop_lag_threshold: Warn, naming the running tasks, when the event loop was
            blocked this many seconds; 0 turns the check off (None: the config's
            ``loop_lag_threshold`` when it has one, else 0.5).

    Example:
        worker = TaskWorker("worker-1", queue, handlers)
        await worker.start()
        # ... worker processes jobs ...
        await worker.stop()
    """

    def __init__(
        self,
        worker_id: str,
        queue: TaskQueueProtocol,
        handler_registry: Mapping[str, Callable[..., Any]] | HandlerRegistry,
        config: AnyWorkerSettings | None = None,
        services: TaskWorkerServices | None = None,
        *,
        middleware_pipeline: TaskMiddlewarePipeline | None = None,
        log_jobs: bool | None = None,
        loop_lag_threshold: float | None = None,
    ) -> None:
        services = services if services is not None else TaskWorkerServices()
        self.worker_id = worker_id
        self.queue = queue
        self.handlers = handler_registry
        self.config = settings_or_model_defaults(config)
        self.services = services
        self.stats = WorkerJobStats(worker_id=worker_id)
        self.running = False
        self.current_job: Job | None = None
        self.dlq = (
            services.dead_letter_queue
            if services.dead_letter_queue is not None
            else DeadLetterQueue()
        )
        self.result_store = services.result_store
        self.progress_store = services.progress_store
        self.dashboard = services.dashboard
        self.logger = (
            services.logger
            if services.logger is not None
            else WorkerLogAdapter(logger, {"worker_id": worker_id})
        )
        self._lookup = lookup_of(handler_registry)
        self._rate_limiter = services.rate_limiter
        self._progress_tracker = services.progress_tracker
        self._in_flight: dict[str, Running] = {}
        # Jobs in `_in_flight` whose handler succeeded and whose ack and result are on
        # their way: they hold no slot (`_release_slot`).
        self._finishing = 0
        # Jobs leased ahead of a free slot (also in `_in_flight`, with no task yet).
        self._prefetch = Prefetch(
            self._in_flight, self.config.max_concurrent_tasks, self.config.prefetch_window
        )
        self._ahead = self._prefetch.line
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._slot_free = asyncio.Event()
        self._interruptible = False
        self._credits = 0
        self._deadlines = DeadlineTimer(self._in_flight, self._interrupt)
        self._stop_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Every job's task runs in a copy of the context the worker started in: a job
        # started from another job's task (the slot it frees) must not inherit that job's
        # context variables (its entry, a tracing span, whatever its handler set).
        self._context = contextvars.Context()
        self._stop_requested = False
        if log_jobs is None:
            log_jobs = bool(getattr(self.config, "log_jobs", False))
        if loop_lag_threshold is None:
            configured = getattr(self.config, "loop_lag_threshold", None)
            loop_lag_threshold = (
                DEFAULT_LOOP_LAG_THRESHOLD if configured is None else float(configured)
            )
        self._lag_task: asyncio.Task[None] | None = None
        # Jobs of rate-limited tasks waiting for a token hold no slot (`_consume_once`).
        self._gate = TaskRateGate(
            services.task_rate_limiters or TaskRateLimiters(),
            queue,
            wake=self._slot_free.set,
            max_parked=self.config.max_concurrent_tasks,
        )
        self._cancel_task: asyncio.Task[None] | None = None
        self._cancels = (
            CancelWatch(queue, self._cancel_running_job, self.logger, worker_id)
            if isinstance(queue, CancellableQueueProtocol)
            else None
        )
        self.events = event_stream_of(services)
        self._settler = Settler(
            worker_id=worker_id,
            queue=queue,
            config=self.config,
            stats=self.stats,
            dlq=self.dlq,
            events=self.events,
            result_store=services.result_store,
            progress_store=services.progress_store,
            progress_tracker=services.progress_tracker,
            retry_policy=services.retry_policy,
            idempotency=services.idempotency_manager,
            logger=self.logger,
            log_jobs=log_jobs,
            # Acking and storing a result are round trips to the backend: the next jobs need
            # not wait for them. (An in-process store finishes at once: nothing to overlap.)
            released=(
                None
                if services.result_store is None
                or isinstance(services.result_store, InMemoryResultStore)
                else self._release_slot
            ),
        )
        self._leases = LeaseWatch(
            queue,
            self._in_flight,
            interrupt=self._interrupt,
            forget=self._forget,
            give_back=self._settler.give_back,
            announces_cancels=self._cancels is not None,
            logger=self.logger,
            worker_id=worker_id,
        )
        self._heartbeat = Heartbeat(
            queue,
            self._in_flight,
            float(queue.lease_seconds),
            kept_by_keeper=self._leases.kept_by_keeper,
            lease_gone=self._leases.lease_gone,
            reclaim=self._leases.reclaim,
            logger=self.logger,
            worker_id=worker_id,
        )
        self.lag_monitor = (
            LoopLagMonitor(
                loop_lag_threshold,
                self._running_task_names,
                self.logger,
                worker_id,
                blocker=self._leases.blocking_job,
            )
            if loop_lag_threshold > 0
            else None
        )
        self._runner = JobRunner(
            worker_id=worker_id,
            lookup=self._lookup,
            task_names=self._handler_names,
            config=self.config,
            events=self.events,
            deadlines=self._deadlines,
            move_deadline=self._deadlines.move,
            done=self._forget,
            settler=self._settler,
            pipeline=middleware_pipeline if middleware_pipeline else None,
            container=services.container,
            gate=self._gate,
        )
        if loop_lag_threshold > 0:
            self._settler.long_job_seconds = loop_lag_threshold

    def __repr__(self) -> str:
        return (
            f"TaskWorker({self.worker_id!r}, running={self.running}, "
            f"in_flight={len(self._in_flight)})"
        )

    # -- public API ------------------------------------------------------------------

    async def start(self) -> None:
        """Start consuming in background tasks; returns at once (no-op when running)."""
        if self.running:
            return
        self.running = True
        self._stop_requested = False
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        self.stats.started_at = time.time()
        manager = self.services.task_manager
        consume, beat = self._consume(), self._heartbeat.run()
        if manager is not None:
            self._loop_task = manager.track_named(f"lexigram.tasks.{self.worker_id}", consume)
            self._heartbeat_task = manager.track_named(
                f"lexigram.tasks.{self.worker_id}.heartbeat", beat
            )
        else:
            self._loop_task = asyncio.create_task(consume, name=f"lexigram.tasks.{self.worker_id}")
            self._heartbeat_task = asyncio.create_task(
                beat, name=f"lexigram.tasks.{self.worker_id}.heartbeat"
            )
        if self.lag_monitor is not None:
            self._lag_task = asyncio.create_task(
                self.lag_monitor.run(), name=f"lexigram.tasks.{self.worker_id}.loop-lag"
            )
        self._leases.start(self._loop, self.lag_monitor)
        if self._cancels is not None:
            self._cancel_task = asyncio.create_task(
                self._cancels.run(lambda: self.running),
                name=f"lexigram.tasks.{self.worker_id}.cancellations",
            )

    async def stop(self, drain: bool = False, timeout: float | None = 30.0) -> None:
        """Stop taking jobs, then finish or release the running ones.

        Args:
            drain: Wait for running jobs to finish (up to `timeout`) before cancelling
                the rest; False cancels them now.
            timeout: Seconds to wait when draining (None: as long as it takes).

        Cancelled jobs are nacked with ``requeue=True`` so another worker runs them.
        """
        async with self._stop_lock:
            if self._loop_task is None:
                self.running = False
                return
            self.running = False
            self._stop_requested = True
            self._slot_free.set()
            if self._interruptible:
                self._loop_task.cancel()
            await asyncio.wait({self._loop_task})
            self._loop_task = None
            for job in self._prefetch.take_all():  # never started: back to the queue
                await self._settler.give_back(job)
            self._gate.release_waiting()  # never started: back to the queue, not drained
            if drain and self._in_flight:
                await asyncio.wait(self._tasks(), timeout=timeout)
            await self._cancel_running()
            await self._leases.stop()  # after: a job that ignored its stop loses its lease
            listener = self._cancel_task
            self._shutdown_background()
            if listener is not None:
                # Let the subscription close its connection while the loop still runs.
                await asyncio.wait({listener}, timeout=_CANCEL_GRACE)

    def get_stats(self) -> WorkerJobStats:
        """Get worker statistics."""
        return self.stats

    def is_busy(self) -> bool:
        """Check if the worker currently has a job in progress."""
        return bool(self._in_flight)

    @property
    def in_flight(self) -> int:
        """Number of jobs this worker holds: running, finishing, or leased ahead to start."""
        return len(self._in_flight)

    def running_jobs(self) -> list[Job]:
        """The jobs whose attempt has begun and not yet ended (safe from any thread)."""
        return [entry.job for entry in list(self._in_flight.values()) if entry.started_at]

    def get_progress_tracker(self, job_id: str) -> ProgressTracker | None:
        """Get a `ProgressTracker` for a job (opt-in for handlers).

        Returns:
            A tracker writing to the worker's progress store (and live tracker), or
            None when neither is configured.
        """
        if self.progress_store is None and self._progress_tracker is None:
            return None
        entry = self._in_flight.get(job_id)
        if entry is not None:
            return self._settler.tracker_for(entry)
        return ProgressTracker(job_id, self.progress_store, tracker=self._progress_tracker)

    def _running_task_names(self, lag: float) -> list[str]:
        """Names of the jobs that were running during the last `lag` seconds (the block)."""
        began = time.time() - lag
        running = {
            job_id: e.job.name
            for job_id, e in self._in_flight.items()
            if 0.0 < e.started_at <= began
        }
        long_jobs = self._settler.long_jobs
        # A job that ended during the block may still be settling (in flight): named once.
        ended = [
            name
            for job_id, name, finished in long_jobs
            if finished >= began and job_id not in running
        ]
        long_jobs.clear()
        return [*running.values(), *ended]

    def _handler_names(self) -> list[str]:
        try:
            return [str(name) for name in self.handlers]
        except TypeError:
            return []

    # -- the consume loop ------------------------------------------------------------

    async def _consume(self) -> None:
        backoff = 0.1
        outage = OutageLog(self.logger, f"Worker {self.worker_id}", "take jobs from the queue")
        while self.running:
            try:
                await self._consume_once()
                backoff = 0.1
                if outage.in_outage:
                    outage.succeeded()
            except asyncio.CancelledError:
                if not self._stop_requested:
                    raise  # cancelled from outside: stop consuming
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()  # stop() interrupted an idle wait
                return
            except Exception as exc:
                outage.failed(exc, backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, _MAX_ERROR_BACKOFF)

    async def _consume_once(self) -> None:
        if self._ahead:
            self._start_ahead()  # in the slots freed since the last pass
        free = self._free_slots()
        if self._rate_limiter is not None:
            wanted = free  # tokens are taken for jobs that start now, never ahead
        else:
            now = (self._loop or asyncio.get_running_loop()).time()
            wanted = self._prefetch.wanted(free, now, self.stats.jobs_processed)
        if wanted <= 0:
            self._slot_free.clear()
            await self._slot_free.wait()
            return
        if self._rate_limiter is not None:
            wanted = await self._take_tokens(wanted)
        jobs = await self.queue.dequeue_batch(wanted)
        if not jobs and free <= 0:
            # Only looking ahead, and nothing is ready: wait for a slot, not for the queue
            # (held jobs start at the next pass, which a freed slot brings at once). A slot
            # that freed during the call above has set the event already: clearing it then
            # would wait for a next one that may never come, with jobs held.
            if self._free_slots() <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
            return
        if not jobs and self.running:  # stop() may have begun during the call above
            self._interruptible = True
            try:
                jobs = await self.queue.dequeue_batch(wanted, timeout=self.config.poll_interval)
            finally:
                self._interruptible = False
        if self._rate_limiter is not None:
            self._credits -= len(jobs)
        if jobs:
            await self._take(jobs)

    async def _take(self, jobs: list[Job]) -> None:
        """Start the leased jobs in the free slots and hold the rest ahead."""
        if not self.running:  # stop() began while the jobs were being leased
            for job in jobs:
                await self._settler.give_back(job)
            return
        free = self._free_slots()
        loop_time = (self._loop or asyncio.get_running_loop()).time()
        for job in jobs:
            if free > 0:
                self._start_job(job)
                free -= 1
            else:
                self._prefetch.hold(job, loop_time)

    def _free_slots(self) -> int:
        """Slots no job holds: running jobs hold one, jobs ahead, finishing or parked none."""
        return (
            self.config.max_concurrent_tasks
            - len(self._in_flight)
            + len(self._ahead)
            + self._finishing
            + self._gate.parked
        )

    async def _take_tokens(self, free: int) -> int:
        """Hold up to `free` rate-limit tokens; wait for the first one if none is held."""
        limiter = self._rate_limiter
        if limiter is None:
            return free
        if self._credits <= 0:
            self._interruptible = True
            try:
                await limiter.acquire()
            finally:
                self._interruptible = False
            self._credits = 1
        while self._credits < free and await limiter.try_acquire():
            self._credits += 1
        return min(self._credits, free)

    async def _pause(self, seconds: float) -> None:
        self._interruptible = True
        try:
            await asyncio.sleep(seconds)
        finally:
            self._interruptible = False

    def _start_job(self, job: Job) -> None:
        loop = self._loop or asyncio.get_running_loop()
        entry = Running(job, loop.time())
        cancels = self._cancels
        if cancels is not None and cancels.ids and cancels.ids.pop(job.id, None) is not None:
            entry.reason = CANCEL  # cancelled between its lease and now: it never starts
        self._in_flight[job.id] = entry
        self.current_job = job
        self._spawn(entry)

    def _spawn(self, entry: Running) -> None:
        """Run `entry`'s job in a task of its own, in the worker's context (`_context`)."""
        loop = self._loop or asyncio.get_running_loop()
        entry.task = loop.create_task(self._runner.run(entry), context=self._context.copy())

    def _start_ahead(self) -> None:
        """Start jobs held ahead in the slots that are free now (none once stopping)."""
        ahead = self._ahead
        if not ahead or not self.running:
            return
        free = self._free_slots()
        while free > 0 and ahead:
            self._start_held(ahead.popleft())
            free -= 1

    def _start_held(self, entry: Running) -> None:
        """Start a job that was held ahead (settled unrun if cancelled meanwhile)."""
        cancels = self._cancels
        if cancels is not None and cancels.ids and cancels.ids.pop(entry.job.id, None) is not None:
            entry.reason = CANCEL
        self.current_job = entry.job
        self._spawn(entry)

    def _slot_freed(self) -> None:
        """A slot freed: a job held ahead starts in it now; the loop tops the line up.

        Started here rather than by the consume loop, which may be waiting for a
        `dequeue_batch` round trip: the slot would stay empty for that trip.
        """
        self._start_ahead()
        self._slot_free.set()

    def _release_slot(self, entry: Running) -> None:
        """The job's handler succeeded: its slot goes to the next job while it finishes.

        Bounded: at most `max_concurrent_tasks` jobs finish this way at once, so a slow
        result store still slows the intake down.
        """
        if self._finishing < self.config.max_concurrent_tasks:
            entry.slot_released = True
            self._finishing += 1
            self._slot_freed()

    def _forget(self, entry: Running) -> None:
        # The task's context holds the entry (`current_entry`) and the entry its task: drop
        # that back reference so both are freed when the task ends instead of waiting for the
        # cycle collector (a cycle per job made the collector run ~190 times per 20k jobs).
        entry.task = None
        if entry.slot_released:
            self._finishing -= 1
        job_id = entry.job.id
        if self._in_flight.get(job_id) is entry:
            del self._in_flight[job_id]
        if self.current_job is entry.job:
            self.current_job = None
        if entry.slot_released:  # its slot went to the next job when its handler ended
            self._slot_free.set()
        else:
            self._slot_freed()

    # -- cancellation ----------------------------------------------------------------

    def _cancel_running_job(self, job_id: str) -> bool:
        """Interrupt the job if this worker runs it (a cancellation was announced)."""
        entry = self._in_flight.get(job_id)
        if entry is None:
            return False
        self._interrupt(entry, CANCEL)
        return True

    def _interrupt(self, entry: Running, reason: str) -> None:
        """Cancel a running handler for `reason`, unless it already finished.

        A task that has not started yet is only marked: cancelling it would skip its
        body (and so its nack), leaving the job in flight. A job held ahead is marked and
        started now, so that its run settles it for `reason` without calling the handler.
        A handler inside `shield_cancellation` is marked too; the shield's end cancels it.
        """
        if entry.settling or entry.reason is not None:
            return
        if entry.task is None:
            if self._prefetch.drop(entry):  # held ahead: its run settles it unrun
                entry.reason = reason
                self._spawn(entry)
            return
        entry.reason = reason
        if entry.shield:
            entry.deferred = True
        elif entry.started_at:
            entry.task.cancel()

    # -- stopping --------------------------------------------------------------------

    def _tasks(self) -> set[asyncio.Task[None]]:
        return {entry.task for entry in self._in_flight.values() if entry.task is not None}

    async def _cancel_running(self) -> None:
        for entry in list(self._in_flight.values()):
            self._interrupt(entry, STOP)
        tasks = self._tasks()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=_CANCEL_GRACE)
        for task in pending:
            self.logger.warning(
                "A job of worker %s ignored cancellation for %.0f s; its lease will expire "
                "and it will be delivered again (%r).",
                self.worker_id,
                _CANCEL_GRACE,
                task,
            )

    def _shutdown_background(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            self._heartbeat_task = None
        if self._lag_task is not None:
            self._lag_task.cancel()
            self._lag_task = None
        if self._cancel_task is not None:
            self._cancel_task.cancel()
            self._cancel_task = None
        self._deadlines.cancel()
        self._runner.shutdown()
        self._gate.close()
