"""`JobRunner`: runs one leased job along one path, and hands the outcome to the `Settler`.

    find the task (what was derived from it is cached until it is registered again)
    -> start the deadline -> call the handler (through the middleware, if any)
    -> Settler: succeeded / errored / cancelled

The worker loop (`TaskWorker`) owns what spans jobs: leases, the heartbeat, the
deadline timer and stopping.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, NamedTuple

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    Job,
    JobStatus,
    TaskDecodeError,
    TaskValidationError,
)
from lexigram.tasks._give_back import times_given_back
from lexigram.tasks.concurrency._task_rate import RateDeferred, TaskRateGate
from lexigram.tasks.events import STARTED, EventStream
from lexigram.tasks.execution._cancel import current_entry
from lexigram.tasks.execution._deadlines import DeadlineTimer
from lexigram.tasks.execution._options import TaskOptions
from lexigram.tasks.execution._params import (
    HandlerPlan,
    binding_error,
    plan_for,
    resolve_arguments,
)
from lexigram.tasks.execution._registry import unknown_task_error
from lexigram.tasks.execution._running import (
    REASON_BAD_ARGUMENTS,
    REASON_CRASH_LOOP,
    REASON_POISON,
    REASON_UNKNOWN_TASK,
    TIMEOUT,
    Running,
    Unrunnable,
    describe,
    pristine_copy,
)
from lexigram.tasks.execution._settle import Settler
from lexigram.tasks.middleware import TaskExecutionContext, TaskMiddlewarePipeline
from lexigram.tasks.middleware._base import raised_by_handler

if TYPE_CHECKING:
    from lexigram.tasks._worker_settings import AnyWorkerSettings


class TaskLookup(NamedTuple):
    """How the runner finds a job's task (see `TaskWorker`'s handler registry).

    Attributes:
        current: Task name -> an object that stays the same while the task's handler
            and options do (None: no such task); asked on every job, so it must be cheap.
        resolve: Task name -> (handler, options), or None for an unknown task.
    """

    current: Callable[[str], object]
    resolve: Callable[[str], tuple[Callable[..., Any], TaskOptions] | None]


class _Task(NamedTuple):
    """What the runner derives once from a registered task, reused for each of its jobs."""

    key: object  # `TaskLookup.current`'s answer when this was derived
    handler: Callable[..., Any]
    options: TaskOptions
    call: HandlerPlan
    direct: bool  # an async handler called as is: nothing injected, no middleware
    timeout: float  # an attempt's timeout when the job sets none


class JobRunner:
    """Runs jobs: finds the task, applies its options, calls the handler; one per worker.

    Args:
        worker_id: Id of the worker (names its thread pool).
        lookup: How to find a job's task.
        task_names: Returns the registered task names (for the unknown-task error).
        config: The worker's configuration (timeouts, crash loops, thread pool size).
        events: The job event stream ("started" is reported here).
        deadlines: The worker's timer, set at the earliest deadline of its jobs.
        move_deadline: Moves a running job's deadline (a middleware set its timeout).
        done: Called when a job's run is over (the worker frees its slot).
        settler: Ends each job in its outcome.
        pipeline: Middleware around every handler call.
        container: DI container for handler parameters.
        gate: Admits the jobs of rate-limited tasks.
    """

    def __init__(
        self,
        *,
        worker_id: str,
        lookup: TaskLookup,
        task_names: Callable[[], list[str]],
        config: AnyWorkerSettings,
        events: EventStream,
        deadlines: DeadlineTimer,
        move_deadline: Callable[[Running, float], None],
        done: Callable[[Running], None],
        settler: Settler,
        pipeline: TaskMiddlewarePipeline | None = None,
        container: Any = None,
        gate: TaskRateGate | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.config = config
        self.events = events
        # The stream's own list (C-level truth test on the hot path, sees later adds).
        self._observers = events.observer_list
        self.settler = settler
        self.pipeline = pipeline
        self.container = container
        self._current = lookup.current
        self._resolve = lookup.resolve
        self._tasks: dict[str, _Task] = {}
        self._task_names = task_names
        self._deadlines = deadlines
        self._move_deadline = move_deadline
        self._done = done
        self._gate = gate
        self._executor: ThreadPoolExecutor | None = None
        self._default_timeout = min(config.default_timeout, config.max_timeout)
        self._max_timeout = config.max_timeout
        self._max_deliveries = config.max_deliveries
        self._enforce_timeout = config.enforce_timeout

    async def run(self, entry: Running) -> None:  # noqa: C901, PLR0912, PLR0915 - the hot path, inlined on purpose
        """Run `entry`'s job and settle it; never raises (except an outside cancel)."""
        # A task cancelled before its first step never runs its body, so the worker
        # never cancels a task that has not started: it sets a reason that is handled
        # here instead. Nothing awaits before the try.
        current_entry.set(entry)  # this task's own context: for shield_cancellation()
        job = entry.job
        job.status = JobStatus.RUNNING  # Job.mark_running(), inlined on every job's path
        job.started_at = entry.started_at = time.time()
        started = time.perf_counter()
        try:
            try:
                if entry.reason:  # interrupted (stop, lost lease) before it began
                    await self.settler.cancelled(entry, asyncio.CancelledError(), started)
                    return
                # The job's task and the attempt's options (inlined: every job's path).
                name = job.name
                task = self._tasks.get(name)
                if task is None or self._current(name) is not task.key:
                    task = self._load(job)
                entry.options = task.options
                if job.delivery_count - job.retry_count > self._max_deliveries:
                    self._check_crash_loop(job)
                if job.timeout is None:
                    entry.timeout = task.timeout
                else:
                    entry.timeout = min(job.timeout, self._max_timeout)
                if task.options.rate_limit is not None and self._gate is not None:
                    await self._gate.admit(entry, task.options.rate_limit)
                    started = time.perf_counter()  # the wait for a token is not the run
                # After the rate-limit gate: waiting for a token is not running.
                if self._enforce_timeout and entry.timeout is not None:
                    # loop.time() is time.monotonic() on asyncio's loops
                    deadline = entry.deadline = time.monotonic() + entry.timeout
                    if deadline < self._deadlines.at:
                        self._deadlines.arm(deadline)
                if self._observers and self.events.listening_to(STARTED):
                    pending = self.events.deliver(self.settler.event(entry, STARTED))
                    if pending is not None:
                        await pending
                entry.pristine = pristine_copy(job.args, job.kwargs)
                if task.direct:
                    try:
                        data = await task.handler(*job.args, **job.kwargs)
                    except TypeError as exc:
                        _reject_unbound_call(task.call, job, exc)
                        raise
                else:
                    data = await self._call(entry, task)
            except RateDeferred:
                pass  # back in the queue for later: not an attempt, nothing to settle
            except asyncio.CancelledError as exc:
                entry.settling = True
                if raised_by_handler(entry.interrupted):
                    # Neither the worker nor anyone else cancelled it: the handler raised
                    # it itself (a cancelled inner task's leaked out), a failure like any.
                    await self.settler.errored(entry, exc, started)
                else:
                    await self.settler.cancelled(entry, exc, started)
            except BaseException as exc:
                entry.settling = True
                if entry.reason is not None:  # cancelled by the worker, re-raised as another
                    await self.settler.cancelled(entry, exc, started)
                else:
                    await self.settler.errored(entry, exc, started)
            else:
                entry.settling = True
                if entry.reason is not None:  # the handler swallowed the worker's cancellation
                    await self.settler.cancelled(entry, asyncio.CancelledError(), started)
                else:
                    await self.settler.succeeded(entry, data, started)
        finally:
            self._done(entry)

    async def _call(self, entry: Running, task: _Task) -> Any:
        """Call a handler that needs more than ``handler(*args, **kwargs)``.

        A sync handler (run in the thread pool), parameters to inject, or middleware.
        """
        job = entry.job
        handler = task.handler
        plan = task.call
        if self.pipeline is None and (
            plan.always_direct or plan.direct_call_ok(job.args, job.kwargs)
        ):
            try:
                if plan.is_async:
                    return await handler(*job.args, **job.kwargs)
                return await self._run_sync(handler, *job.args, **job.kwargs)
            except TypeError as exc:
                _reject_unbound_call(plan, job, exc)
                raise
        explicit = job.timeout if job.timeout is not None else task.options.timeout
        ctx = TaskExecutionContext(
            job=job,
            timeout=entry.timeout,
            timeout_explicit=explicit is not None,
            deadline_setter=functools.partial(self._set_timeout, entry),
            timed_out=lambda: entry.reason == TIMEOUT,
            interrupted=entry.interrupted,
        )
        try:
            args, kwargs = await resolve_arguments(
                plan,
                job,
                tracker=functools.partial(self.settler.tracker_for, entry),
                context=lambda: ctx,
                container=self.container,
                # A timed-out def handler's thread runs on: its later progress reports
                # must not overwrite the job's final progress (or its next attempt's).
                ended=lambda: entry.settling,
            )
        except TaskValidationError as exc:
            raise Unrunnable(REASON_BAD_ARGUMENTS, _bad_call(job, exc)) from exc
        call = handler if plan.is_async else functools.partial(self._run_sync, handler)
        if self.pipeline is None:
            return await call(*args, **kwargs)
        return await self.pipeline.run(ctx, call, args, kwargs)

    def _check_crash_loop(self, job: Job) -> None:
        """Raise for a job delivered more often than it failed, past the worker's limit.

        Raises:
            Unrunnable: The job looks like a crash loop.
        """
        # Deliveries that a worker gave back unrun (rate limit, stop) are no crash.
        if job.delivery_count - job.retry_count - times_given_back(job) > self._max_deliveries:
            raise Unrunnable(REASON_CRASH_LOOP, self._crash_loop_message(job))

    def _load(self, job: Job) -> _Task:
        """Derive (and cache) what running the jobs of `job`'s task needs."""
        name = job.name
        key = self._current(name)
        found = self._resolve(name) if key is not None else None
        if found is None:
            self._tasks.pop(name, None)
            raise self._unrunnable(job)
        handler, options = found
        call = plan_for(handler)
        timeout = options.timeout
        task = _Task(
            key=key,
            handler=handler,
            options=options,
            call=call,
            direct=self.pipeline is None and call.is_async and call.always_direct,
            timeout=(
                self._default_timeout if timeout is None else min(timeout, self.config.max_timeout)
            ),
        )
        self._tasks[name] = task
        return task

    def _set_timeout(self, entry: Running, seconds: float) -> None:
        """A middleware set the attempt's timeout: move the job's deadline."""
        entry.timeout = seconds
        if self.config.enforce_timeout:
            self._move_deadline(entry, seconds)

    def _unrunnable(self, job: Job) -> Unrunnable:
        if job.name == POISON_JOB_NAME:
            error = job.last_error or str(job.metadata.get("poison_error") or "undecodable job")
            return Unrunnable(REASON_POISON, TaskDecodeError(error))
        return Unrunnable(REASON_UNKNOWN_TASK, unknown_task_error(job.name, self._task_names()))

    def _crash_loop_message(self, job: Job) -> str:
        # Deliveries that were never settled (a failure counts as a retry). The message
        # names every way that happens: a blocked event loop is no longer one where the
        # queue has a lease keeper, and "a worker died" alone would mislead.
        lost = job.delivery_count - job.retry_count - 1
        return (
            f"Job {job.id} ({job.name!r}) was delivered {job.delivery_count} times but failed "
            f"only {job.retry_count} times: {lost} of its deliveries were never settled (the "
            "worker running it was stopped, died or was killed, or lost the job's lease "
            "before settling it: its connection to the backend failed or, on a backend "
            "without a lease keeper, its event loop was blocked past the lease; or its "
            "handler's task was cancelled by something other than the worker, which the "
            "worker takes for a shutdown and gives the job back). It is dead-lettered as a "
            "probable crash loop "
            f"(TaskWorkerConfig.max_deliveries={self.config.max_deliveries}); fix the cause "
            "(memory, a segfault, a handler that blocks the event loop or cancels its own "
            "task), then retry it from the DLQ."
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
        context = contextvars.copy_context()
        result = await loop.run_in_executor(executor, _counted, context.run, call)
        if inspect.isawaitable(result):
            return await result
        return result

    def shutdown(self) -> None:
        """Release the thread pool (running sync handlers finish in the background)."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


_busy_lock = threading.Lock()
_busy_threads = 0


def _counted(run: Callable[[Callable[[], Any]], Any], call: Callable[[], Any]) -> Any:
    """Run a sync handler's call in its pool thread, counted while it runs."""
    global _busy_threads  # noqa: PLW0603 - one count for the process's handler threads
    with _busy_lock:
        _busy_threads += 1
    try:
        return run(call)
    finally:
        with _busy_lock:
            _busy_threads -= 1


def busy_handler_threads() -> int:
    """How many threads of this process run a sync handler now.

    Python cannot stop a thread: a `def` handler still running when its worker stopped
    (its job was requeued) runs on, and the interpreter would wait for it at exit,
    while another worker runs the job again. The worker command exits without it.
    """
    with _busy_lock:
        return _busy_threads


def _reject_unbound_call(plan: HandlerPlan, job: Job, exc: TypeError) -> None:
    """Fail the job for good when `exc` says its arguments do not fit the handler.

    Returns (so the caller re-raises `exc`) when the `TypeError` came from inside the
    handler: that failure is retried like any other.
    """
    if binding_error(plan, job.args, job.kwargs):
        raise Unrunnable(REASON_BAD_ARGUMENTS, _bad_call(job, exc)) from exc


def _bad_call(job: Job, exc: BaseException) -> str:
    return (
        f"{describe(exc)}; the job was sent with args={list(job.args)!r} "
        f"kwargs={job.kwargs!r}. Retrying cannot help: fix the producer's call or the "
        "task's signature, then enqueue it again."
    )
