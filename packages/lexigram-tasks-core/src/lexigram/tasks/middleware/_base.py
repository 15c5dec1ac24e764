"""The middleware pipeline: `TaskExecutionContext`, `TaskMiddleware`, `TaskMiddlewarePipeline`."""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from abc import ABC
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lexigram.contracts.tasks import Job, JobResult, TaskTimeoutError

ERROR_KEY = "error"
"""`TaskExecutionContext.metadata` key holding the exception of a failed execution."""
TRACEBACK_KEY = "traceback"
"""`TaskExecutionContext.metadata` key holding the formatted traceback of a failure."""


@dataclass
class TaskExecutionContext:
    """Context passed through the middleware pipeline for one execution of a job.

    Attributes:
        job: The job being executed.
        start_time: When execution started (epoch seconds).
        end_time: When it ended.
        duration_ms: How long it took, in milliseconds.
        result: The `JobResult`, once there is one.
        metadata: Free-form data middleware share (e.g. the effective timeout).
        timeout: Seconds this attempt may run, as the worker enforces it (None: no
            timeout, or not run by a worker).
        timeout_explicit: True when `timeout` was set by the job or its task, False
            when it is the worker's default.
    """

    job: Job
    start_time: float = 0.0
    end_time: float = 0.0
    duration_ms: float = 0.0
    result: JobResult | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    timeout_explicit: bool = False
    deadline_setter: Callable[[float], None] | None = field(default=None, repr=False)
    timed_out: Callable[[], bool] | None = field(default=None, repr=False)
    """Whether the attempt's handler is being stopped because its timeout ran out
    (set by whoever enforces the timeout: the worker, or `TaskMiddlewarePipeline.execute`)."""
    interrupted: Callable[[], bool] | None = field(default=None, repr=False)
    """Whether the worker is stopping the attempt (its stop, a cancel, its timeout, a lost
    lease); None outside a worker. See `raised_by_handler`."""

    def set_timeout(self, seconds: float) -> None:
        """Set this attempt's timeout to `seconds`, counted from the attempt's start.

        The worker's deadline timer enforces it (the one timeout mechanism); outside a
        worker this only records the value.
        """
        self.timeout = seconds
        if self.deadline_setter is not None:
            self.deadline_setter(seconds)


class TaskMiddleware(ABC):  # noqa: B024 - every hook is optional, so none is abstract
    """Abstract base for task middleware: override the hooks you need.

    `before_execute` runs in registration order before the handler, `after_execute`
    in reverse order after a success, `on_error` in reverse order after a failure.
    """

    async def before_execute(self, ctx: TaskExecutionContext) -> None:  # noqa: B027 - optional hook
        """Called before task execution; override to modify or log."""

    async def after_execute(self, ctx: TaskExecutionContext) -> None:  # noqa: B027 - optional hook
        """Called after a successful execution; override to observe or log."""

    async def on_error(self, ctx: TaskExecutionContext, error: BaseException) -> None:  # noqa: B027 - optional hook
        """Called when task execution fails."""


def timeout_error(job: Job, seconds: float | None) -> TaskTimeoutError:
    """The error of an attempt stopped because it ran longer than its timeout."""
    message = (
        f"Task {job.name!r} (job {job.id}) exceeded its timeout of {seconds or 0:g} s. "
        "Raise @task(timeout=...) (or the job's timeout, or the default_timeout/max_timeout "
        "of the worker's config or of a TimeoutMiddleware), or make the handler faster."
    )
    return TaskTimeoutError(message, details={"timeout": seconds})


async def call_handler(handler: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Call `handler` and await its result when it returns an awaitable."""
    result = handler(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def raised_by_handler(interrupted: Callable[[], bool] | None) -> bool:
    """Whether a `CancelledError` caught around a handler is the handler's own failure.

    It is when nothing cancelled the attempt: the worker did not interrupt it
    (`interrupted`, when a worker runs it) and no ``cancel()`` of the running task is
    pending. That is a cancelled inner task's error let out, say, and fails the attempt
    like any exception; any other cancellation propagates as one. The worker's runner and
    the middleware pipeline both decide with this.
    """
    if interrupted is not None and interrupted():
        return False
    task = asyncio.current_task()
    return task is None or task.cancelling() == 0


class TaskMiddlewarePipeline:
    """Chains middleware around task execution.

    `run` (what the worker calls) runs every `before_execute`, the handler, then every
    `after_execute`; a failure of any kind is reported to every middleware's `on_error`
    and re-raised unchanged. A cancellation propagates as it is; when it stops a
    handler that ran out of time (`TaskExecutionContext.timed_out`), every `on_error`
    gets a `TaskTimeoutError` first.
    `execute` is the same for callers that want a `JobResult` instead of an exception.
    A timeout a middleware sets (`TimeoutMiddleware`) is enforced by the worker's
    deadline timer inside a worker, and by `execute` itself outside one; `run` leaves
    it to its caller.

    Example:
        pipeline = TaskMiddlewarePipeline()
        pipeline.add(LoggingMiddleware())
        pipeline.add(MetricsMiddleware())
        result = await pipeline.execute(job, handler)
    """

    def __init__(self) -> None:
        self.middlewares: list[TaskMiddleware] = []

    def __repr__(self) -> str:
        names = [type(m).__name__ for m in self.middlewares]
        return f"TaskMiddlewarePipeline({names!r})"

    def __len__(self) -> int:
        return len(self.middlewares)

    def add(self, middleware: TaskMiddleware) -> None:
        """Append a middleware instance to the pipeline."""
        self.middlewares.append(middleware)

    async def run(
        self,
        ctx: TaskExecutionContext,
        handler: Any,
        args: Sequence[Any],
        kwargs: dict[str, Any],
    ) -> Any:
        """Run `handler(*args, **kwargs)` inside the middleware; return its value.

        Raises:
            BaseException: Whatever the handler or a middleware raised, unchanged, after
                every `on_error` ran.
        """
        ctx.start_time = time.time()
        started = time.perf_counter()
        try:
            for middleware in self.middlewares:
                await middleware.before_execute(ctx)
            data = await call_handler(handler, args, kwargs)
        except asyncio.CancelledError as exc:
            # A timeout is a failure like any other, and reported as one, and so is a
            # CancelledError the handler raised itself; any other cancellation (a stop,
            # a cancelled job, a lost lease) is not a failure.
            if ctx.timed_out is not None and ctx.timed_out():
                await self._failed(ctx, started, timeout_error(ctx.job, ctx.timeout))
            elif raised_by_handler(ctx.interrupted):
                await self._failed(ctx, started, exc)
            raise
        except BaseException as exc:
            await self._failed(ctx, started, exc)
            raise
        self._finish(ctx, started)
        ctx.result = JobResult.ok(data, duration=ctx.duration_ms / 1000.0)
        for middleware in reversed(self.middlewares):
            await middleware.after_execute(ctx)
        return data

    async def _failed(self, ctx: TaskExecutionContext, started: float, exc: BaseException) -> None:
        """Record a failed attempt in `ctx` and report it to every `on_error`."""
        self._finish(ctx, started)
        ctx.metadata[ERROR_KEY] = exc
        ctx.result = JobResult.fail(
            f"{type(exc).__name__}: {exc}",
            retry_count=ctx.job.retry_count,
            duration=ctx.duration_ms / 1000.0,
        )
        for middleware in reversed(self.middlewares):
            await middleware.on_error(ctx, exc)

    async def execute(
        self,
        job: Job,
        handler: Any,
        *,
        resolved_args: Sequence[Any] | None = None,
        resolved_kwargs: dict[str, Any] | None = None,
        ctx: TaskExecutionContext | None = None,
    ) -> JobResult:
        """Execute a job through the middleware pipeline and return its `JobResult`.

        Args:
            job: The job to execute.
            handler: The handler (sync or async callable).
            resolved_args: Positional arguments to call it with (default: `job.args`).
            resolved_kwargs: Keyword arguments (default: `job.kwargs`).
            ctx: Context to use (a fresh one when omitted).

        Returns:
            `ok` with the handler's return value, or `fail`; the exception and its
            traceback are left in ``ctx.metadata["error"]`` / ``["traceback"]``. A
            handler still running when the timeout a middleware set (`set_timeout`)
            ran out is cancelled and fails with a `TaskTimeoutError`, reported to
            every ``on_error`` as in a worker.
        """
        ctx = ctx if ctx is not None else TaskExecutionContext(job=job)
        args = tuple(job.args) if resolved_args is None else tuple(resolved_args)
        kwargs = dict(job.kwargs) if resolved_kwargs is None else resolved_kwargs
        if ctx.deadline_setter is not None:  # a worker's attempt: its timer enforces it
            return await self._execute(ctx, handler, args, kwargs)
        # Outside a worker, a timeout a middleware sets (`TimeoutMiddleware`) is
        # enforced here, counted from the start, through the same `set_timeout`.
        scope = asyncio.timeout(None)
        loop = asyncio.get_running_loop()
        started = loop.time()
        ctx.deadline_setter = lambda seconds: scope.reschedule(started + seconds)
        ctx.timed_out = scope.expired
        try:
            async with scope:
                return await self._execute(ctx, handler, args, kwargs)
        except TimeoutError as exc:
            if not scope.expired():
                raise  # raised by a middleware's own hook, outside `run`'s handling
            # `run` recorded the failure and reported it; the cancellation's traceback
            # shows where the handler was stopped.
            ctx.metadata[TRACEBACK_KEY] = "".join(traceback.format_exception(exc))
            assert ctx.result is not None  # noqa: S101 - set by run() before re-raising
            return ctx.result
        finally:
            ctx.deadline_setter = None
            ctx.timed_out = None

    async def _execute(
        self, ctx: TaskExecutionContext, handler: Any, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> JobResult:
        try:
            await self.run(ctx, handler, args, kwargs)
        except asyncio.CancelledError as exc:
            if not raised_by_handler(ctx.interrupted):
                raise
            ctx.metadata[TRACEBACK_KEY] = "".join(traceback.format_exception(exc))
        except BaseException as exc:
            ctx.metadata[TRACEBACK_KEY] = "".join(traceback.format_exception(exc))
        assert ctx.result is not None  # noqa: S101 - run() always sets it
        return ctx.result

    @staticmethod
    def _finish(ctx: TaskExecutionContext, started: float) -> None:
        ctx.end_time = time.time()
        ctx.duration_ms = (time.perf_counter() - started) * 1000.0
