"""The middleware pipeline: `TaskExecutionContext`, `TaskMiddleware`, `TaskMiddlewarePipeline`."""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import Job, JobResult

if TYPE_CHECKING:
    from lexigram.tasks.middleware._builtin import TimeoutMiddleware

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
    """

    job: Job
    start_time: float = 0.0
    end_time: float = 0.0
    duration_ms: float = 0.0
    result: JobResult | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


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


async def call_handler(handler: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """Call `handler` and await its result when it returns an awaitable."""
    result = handler(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


class TaskMiddlewarePipeline:
    """Chains middleware around task execution.

    A `TimeoutMiddleware` in the chain runs the handler under its timeout; otherwise the
    handler is called directly. A failure of any kind (except cancellation, which
    propagates) is reported to every middleware's `on_error` and returned as a failed
    `JobResult`; the exception and its traceback are left in
    ``ctx.metadata["error"]`` / ``["traceback"]`` for the caller.

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

    async def execute(
        self,
        job: Job,
        handler: Any,
        *,
        resolved_args: Sequence[Any] | None = None,
        resolved_kwargs: dict[str, Any] | None = None,
        ctx: TaskExecutionContext | None = None,
    ) -> JobResult:
        """Execute a job through the middleware pipeline.

        Args:
            job: The job to execute.
            handler: The handler (sync or async callable).
            resolved_args: Positional arguments to call it with (default: `job.args`);
                a worker passes the arguments it resolved, DI-injected ones included.
            resolved_kwargs: Keyword arguments (default: `job.kwargs`).
            ctx: Context to use (a fresh one when omitted).

        Returns:
            JobResult from execution: `ok` with the handler's return value, or `fail`.
        """
        ctx = ctx if ctx is not None else TaskExecutionContext(job=job)
        args = tuple(job.args) if resolved_args is None else tuple(resolved_args)
        kwargs = dict(job.kwargs) if resolved_kwargs is None else resolved_kwargs
        ctx.start_time = time.time()
        started = time.perf_counter()
        try:
            for middleware in self.middlewares:
                await middleware.before_execute(ctx)
            result = await self._run(handler, job, ctx, args, kwargs, started=started)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            return await self._failed(ctx, exc, started)
        ctx.result = result
        self._finish(ctx, started)
        for middleware in reversed(self.middlewares):
            await middleware.after_execute(ctx)
        return result

    async def _run(
        self,
        handler: Any,
        job: Job,
        ctx: TaskExecutionContext,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        started: float,
    ) -> JobResult:
        timeout = self._timeout_middleware()
        if timeout is not None:
            return await timeout.execute_with_timeout(handler, job, ctx, list(args), kwargs)
        data = await call_handler(handler, args, kwargs)
        return JobResult.ok(data, duration=time.perf_counter() - started)

    def _timeout_middleware(self) -> TimeoutMiddleware | None:
        from lexigram.tasks.middleware._builtin import TimeoutMiddleware  # noqa: PLC0415 - cycle

        for middleware in self.middlewares:
            if isinstance(middleware, TimeoutMiddleware):
                return middleware
        return None

    async def _failed(
        self, ctx: TaskExecutionContext, exc: BaseException, started: float
    ) -> JobResult:
        self._finish(ctx, started)
        ctx.metadata[ERROR_KEY] = exc
        ctx.metadata[TRACEBACK_KEY] = "".join(traceback.format_exception(exc))
        result = JobResult.fail(
            f"{type(exc).__name__}: {exc}",
            retry_count=ctx.job.retry_count,
            duration=time.perf_counter() - started,
        )
        ctx.result = result
        for middleware in reversed(self.middlewares):
            await middleware.on_error(ctx, exc)
        return result

    @staticmethod
    def _finish(ctx: TaskExecutionContext, started: float) -> None:
        ctx.end_time = time.time()
        ctx.duration_ms = (time.perf_counter() - started) * 1000.0
