"""Built-in middleware: logging, metrics, and timeouts."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from lexigram.contracts.tasks import Job, JobResult, TaskTimeoutError
from lexigram.tasks.middleware._base import TaskExecutionContext, TaskMiddleware, call_handler

_logger = logging.getLogger(__name__)

TIMEOUT_KEY = "timeout"
"""`TaskExecutionContext.metadata` key of the effective timeout `TimeoutMiddleware` applies."""


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
    """Enforces an execution timeout on tasks.

    The effective timeout is the job's `timeout`, else `default_timeout`, capped at
    `max_timeout`. A sync handler handed to the pipeline runs on the event loop; the
    worker passes sync handlers wrapped to run in its thread pool, where the timeout
    stops the wait but cannot stop the thread.

    Args:
        default_timeout: Seconds for jobs that set no timeout.
        max_timeout: Upper bound of any job's timeout (None = no cap).
    """

    def __init__(self, default_timeout: float = 300.0, max_timeout: float | None = None) -> None:
        self.default_timeout = default_timeout
        self.max_timeout = max_timeout

    def effective_timeout(self, job: Job) -> float:
        """Return the timeout that applies to `job`."""
        timeout = job.timeout if job.timeout is not None else self.default_timeout
        if self.max_timeout is not None:
            timeout = min(timeout, self.max_timeout)
        return timeout

    async def before_execute(self, ctx: TaskExecutionContext) -> None:
        """Compute and store the effective timeout in ``ctx.metadata["timeout"]``."""
        ctx.metadata[TIMEOUT_KEY] = self.effective_timeout(ctx.job)

    async def execute_with_timeout(
        self,
        handler: Any,
        job: Job,
        ctx: TaskExecutionContext,
        resolved_args: Sequence[Any] | None = None,
        resolved_kwargs: dict[str, Any] | None = None,
    ) -> JobResult:
        """Execute `handler` with timeout enforcement.

        Args:
            handler: The handler to execute.
            job: The job being executed.
            ctx: Execution context.
            resolved_args: Pre-resolved positional arguments (default: `job.args`).
            resolved_kwargs: Pre-resolved keyword arguments (default: `job.kwargs`).

        Returns:
            `JobResult.ok` with the handler's return value.

        Raises:
            TaskTimeoutError: The handler ran longer than the effective timeout.
        """
        timeout = float(ctx.metadata.get(TIMEOUT_KEY) or self.effective_timeout(job))
        args = tuple(job.args) if resolved_args is None else tuple(resolved_args)
        kwargs = dict(job.kwargs) if resolved_kwargs is None else resolved_kwargs
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                data = await call_handler(handler, args, kwargs)
        except TimeoutError:
            msg = (
                f"Task {job.name!r} (job {job.id}) exceeded its timeout of {timeout:g} s. "
                "Raise the job's timeout or TimeoutMiddleware's default/max, or make the "
                "handler faster."
            )
            raise TaskTimeoutError(msg, details={"timeout": timeout}) from None
        return JobResult.ok(data, duration=time.perf_counter() - started)
