"""Built-in middleware: logging, metrics, and the timeout setting."""

from __future__ import annotations

import logging
from typing import Any

from lexigram.contracts.tasks import Job, JobResult
from lexigram.tasks.middleware._base import (
    TaskExecutionContext,
    TaskMiddleware,
    TaskMiddlewarePipeline,
)

_logger = logging.getLogger(__name__)

TIMEOUT_KEY = "timeout"
"""`TaskExecutionContext.metadata` key of the timeout `TimeoutMiddleware` set."""


class LoggingMiddleware(TaskMiddleware):
    """Logs task start, completion, and failures (INFO, and ERROR for failures).

    Args:
        logger: Logger to write to (this module's by default).
    """

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[Any] | None = None) -> None:
        self._logger: logging.Logger | logging.LoggerAdapter[Any] = (
            logger if logger is not None else _logger
        )

    async def before_execute(self, ctx: TaskExecutionContext) -> None:
        """Log task start before execution."""
        self._logger.info("Task %s (job %s) started.", ctx.job.name, ctx.job.id)

    async def after_execute(self, ctx: TaskExecutionContext) -> None:
        """Log task completion status and duration after execution."""
        self._logger.info(
            "Task %s (job %s) completed in %.1f ms.", ctx.job.name, ctx.job.id, ctx.duration_ms
        )

    async def on_error(self, ctx: TaskExecutionContext, error: BaseException) -> None:
        """Log the error when a task raises an exception."""
        self._logger.error(
            "Task %s (job %s) failed after %.1f ms: %s: %s",
            ctx.job.name,
            ctx.job.id,
            ctx.duration_ms,
            type(error).__name__,
            error,
        )


class MetricsMiddleware(TaskMiddleware):
    """Collects per-task-type execution metrics (counts, durations, errors).

    Example:
        metrics = MetricsMiddleware()
        pipeline.add(metrics)
        ...
        metrics.get_stats()["per_task"]["send_email"]["avg_ms"]
    """

    def __init__(self) -> None:
        self._total_executed = 0
        self._total_failed = 0
        self._per_task: dict[str, dict[str, float]] = {}

    async def after_execute(self, ctx: TaskExecutionContext) -> None:
        """Record execution metrics for the completed task."""
        self._record(ctx, failed=False)

    async def on_error(self, ctx: TaskExecutionContext, error: BaseException) -> None:
        """Record the failed execution (it counts as executed, and as an error)."""
        del error
        self._record(ctx, failed=True)

    def get_stats(self) -> dict[str, Any]:
        """Return aggregated execution statistics keyed by task name.

        Returns:
            ``{"total_executed", "total_failed", "per_task": {name: {"count",
            "total_ms", "min_ms", "max_ms", "errors", "avg_ms"}}}``.
        """
        per_task: dict[str, dict[str, Any]] = {}
        for name, entry in self._per_task.items():
            count = int(entry["count"])
            per_task[name] = {
                "count": count,
                "total_ms": entry["total_ms"],
                "min_ms": entry["min_ms"],
                "max_ms": entry["max_ms"],
                "errors": int(entry["errors"]),
                "avg_ms": entry["total_ms"] / count if count else 0.0,
            }
        return {
            "total_executed": self._total_executed,
            "total_failed": self._total_failed,
            "per_task": per_task,
        }

    def _record(self, ctx: TaskExecutionContext, *, failed: bool) -> None:
        self._total_executed += 1
        entry = self._per_task.get(ctx.job.name)
        duration = ctx.duration_ms
        if entry is None:
            entry = {"count": 0, "total_ms": 0.0, "min_ms": duration, "max_ms": duration}
            entry["errors"] = 0
            self._per_task[ctx.job.name] = entry
        entry["count"] += 1
        entry["total_ms"] += duration
        entry["min_ms"] = min(entry["min_ms"], duration)
        entry["max_ms"] = max(entry["max_ms"], duration)
        if failed:
            entry["errors"] += 1
            self._total_failed += 1


class TimeoutMiddleware(TaskMiddleware):
    """Sets the timeout of jobs that have none of their own, and caps every job's.

    A job's timeout is its own `Job.timeout`, else its task's ``@task(timeout=...)``;
    this middleware gives every other job `default_timeout` and caps every job at
    `max_timeout`. It sets the value (`TaskExecutionContext.set_timeout`); inside a
    worker the worker's deadline timer stops a job that runs too long, and outside one
    `TaskMiddlewarePipeline.execute` (or `execute_with_timeout`) does, with
    `asyncio.timeout`.

    Args:
        default_timeout: Seconds for jobs whose job and task set no timeout.
        max_timeout: Upper bound of any job's timeout (None = no cap).
    """

    def __init__(self, default_timeout: float = 300.0, max_timeout: float | None = None) -> None:
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout

    def effective_timeout(self, job: Job) -> float:
        """Return the timeout this middleware gives `job` (judged by `Job.timeout` alone)."""
        timeout = job.timeout if job.timeout is not None else self.default_timeout
        if self.max_timeout is not None:
            timeout = min(timeout, self.max_timeout)
        return timeout

    def timeout_for(self, ctx: TaskExecutionContext) -> float:
        """Return the timeout for the attempt of `ctx` (its explicit one, else the default)."""
        if ctx.timeout_explicit and ctx.timeout is not None:
            timeout = ctx.timeout
        elif ctx.job.timeout is not None:
            timeout = ctx.job.timeout
        else:
            timeout = self.default_timeout
        if self.max_timeout is not None:
            timeout = min(timeout, self.max_timeout)
        return timeout

    async def before_execute(self, ctx: TaskExecutionContext) -> None:
        """Set the attempt's timeout (also recorded in ``ctx.metadata["timeout"]``)."""
        timeout = self.timeout_for(ctx)
        ctx.metadata[TIMEOUT_KEY] = timeout
        ctx.set_timeout(timeout)

    async def execute_with_timeout(
        self,
        handler: Any,
        job: Job,
        ctx: TaskExecutionContext,
        resolved_args: list[Any] | None = None,
        resolved_kwargs: dict[str, Any] | None = None,
    ) -> JobResult:
        """Run `handler` for `job` outside a worker, stopped once this timeout runs out.

        The same as a `TaskMiddlewarePipeline` holding this middleware alone: the
        timeout is set by `before_execute` and enforced with `asyncio.timeout`.

        Args:
            handler: The handler (sync or async callable).
            job: The job being executed.
            ctx: Its execution context (the timeout is recorded in it).
            resolved_args: Positional arguments (default: `job.args`).
            resolved_kwargs: Keyword arguments (default: `job.kwargs`).

        Returns:
            `JobResult.ok` with the handler's value, or `JobResult.fail` (its error a
            `TaskTimeoutError`'s message when the timeout ran out).
        """
        pipeline = TaskMiddlewarePipeline()
        pipeline.add(self)
        return await pipeline.execute(
            job, handler, resolved_args=resolved_args, resolved_kwargs=resolved_kwargs, ctx=ctx
        )
