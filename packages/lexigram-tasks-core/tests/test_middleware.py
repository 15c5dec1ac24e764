"""Middleware: pipeline order, error reporting, metrics, logging and timeouts."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lexigram.contracts.tasks import Job, JobResult, TaskTimeoutError
from lexigram.tasks.middleware import (
    LoggingMiddleware,
    MetricsMiddleware,
    TaskExecutionContext,
    TaskMiddleware,
    TaskMiddlewarePipeline,
    TimeoutMiddleware,
)
from lexigram.tasks.middleware._base import ERROR_KEY, TRACEBACK_KEY


class Tracing(TaskMiddleware):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def before_execute(self, ctx: TaskExecutionContext) -> None:
        self.log.append(f"{self.name}.before")

    async def after_execute(self, ctx: TaskExecutionContext) -> None:
        self.log.append(f"{self.name}.after")

    async def on_error(self, ctx: TaskExecutionContext, error: BaseException) -> None:
        self.log.append(f"{self.name}.error:{type(error).__name__}")


class Silent(TaskMiddleware):
    """Overrides nothing: every hook is optional."""


async def test_pipeline_runs_before_in_order_and_after_in_reverse() -> None:
    log: list[str] = []
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Tracing("a", log))
    pipeline.add(Tracing("b", log))
    pipeline.add(Silent())

    async def handler(x: int) -> int:
        log.append("handler")
        return x * 2

    result = await pipeline.execute(Job(name="double", args=(21,)), handler)
    assert isinstance(result, JobResult)
    assert result.success
    assert result.data == 42
    assert log == ["a.before", "b.before", "handler", "b.after", "a.after"]
    assert len(pipeline) == 3
    assert "Tracing" in repr(pipeline)


async def test_pipeline_reports_failures_and_returns_a_failed_result() -> None:
    log: list[str] = []
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Tracing("a", log))
    ctx = TaskExecutionContext(job=Job(name="bad"))

    def handler() -> None:
        msg = "nope"
        raise KeyError(msg)

    result = await pipeline.execute(ctx.job, handler, ctx=ctx)
    assert not result.success
    assert result.error == "KeyError: 'nope'"
    assert log == ["a.before", "a.error:KeyError"]
    assert isinstance(ctx.metadata[ERROR_KEY], KeyError)
    assert "KeyError" in ctx.metadata[TRACEBACK_KEY]
    assert ctx.result is result
    assert ctx.duration_ms >= 0.0


async def test_pipeline_passes_resolved_arguments() -> None:
    pipeline = TaskMiddlewarePipeline()
    seen: list[tuple[object, ...]] = []

    async def handler(*args: object, **kwargs: object) -> None:
        seen.append((args, kwargs))

    job = Job(name="x", args=(1,), kwargs={"a": 2})
    await pipeline.execute(job, handler)
    await pipeline.execute(job, handler, resolved_args=[1, "svc"], resolved_kwargs={"a": 3})
    assert seen == [((1,), {"a": 2}), ((1, "svc"), {"a": 3})]


async def test_pipeline_lets_cancellation_through() -> None:
    pipeline = TaskMiddlewarePipeline()

    async def handler() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await pipeline.execute(Job(name="x"), handler)


async def test_metrics_middleware_collects_per_task_stats() -> None:
    metrics = MetricsMiddleware()
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(metrics)

    async def ok() -> None:
        return None

    async def bad() -> None:
        msg = "x"
        raise ValueError(msg)

    for _ in range(3):
        await pipeline.execute(Job(name="ok"), ok)
    await pipeline.execute(Job(name="bad"), bad)
    stats = metrics.get_stats()
    assert stats["total_executed"] == 4
    assert stats["total_failed"] == 1
    assert set(stats["per_task"]) == {"ok", "bad"}
    per_ok = stats["per_task"]["ok"]
    assert set(per_ok) == {"count", "total_ms", "min_ms", "max_ms", "errors", "avg_ms"}
    assert per_ok["count"] == 3
    assert per_ok["errors"] == 0
    assert per_ok["min_ms"] <= per_ok["avg_ms"] <= per_ok["max_ms"]
    assert stats["per_task"]["bad"]["errors"] == 1


async def test_logging_middleware_logs_start_end_and_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(LoggingMiddleware())

    async def ok() -> None:
        return None

    async def bad() -> None:
        msg = "kaput"
        raise OSError(msg)

    with caplog.at_level(logging.INFO, logger="lexigram.tasks.middleware"):
        await pipeline.execute(Job(name="ok"), ok)
        await pipeline.execute(Job(name="bad"), bad)
    messages = [r.getMessage() for r in caplog.records]
    assert any("Task ok" in m and "started" in m for m in messages)
    assert any("Task ok" in m and "completed" in m for m in messages)
    assert any("Task bad" in m and "OSError: kaput" in m for m in messages)
    assert any(r.levelno == logging.ERROR for r in caplog.records)


async def test_timeout_middleware_computes_the_effective_timeout() -> None:
    timeout = TimeoutMiddleware(default_timeout=10, max_timeout=5)
    assert timeout.effective_timeout(Job(name="x")) == 5
    assert timeout.effective_timeout(Job(name="x", timeout=2)) == 2
    ctx = TaskExecutionContext(job=Job(name="x", timeout=3))
    await timeout.before_execute(ctx)
    assert ctx.metadata["timeout"] == 3
    assert TimeoutMiddleware().effective_timeout(Job(name="x")) == 300.0


async def test_timeout_middleware_execute_with_timeout() -> None:
    timeout = TimeoutMiddleware(default_timeout=0.05)
    job = Job(name="slow")
    ctx = TaskExecutionContext(job=job)

    async def fast(x: int, *, y: int) -> int:
        return x + y

    result = await timeout.execute_with_timeout(fast, job, ctx, [1], {"y": 2})
    assert result.success
    assert result.data == 3

    async def stuck() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TaskTimeoutError, match=r"exceeded its timeout of 0\.05 s"):
        await timeout.execute_with_timeout(stuck, job, ctx)


async def test_pipeline_with_timeout_middleware_fails_slow_jobs() -> None:
    log: list[str] = []
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Tracing("t", log))
    pipeline.add(TimeoutMiddleware(default_timeout=0.05))

    async def stuck() -> None:
        await asyncio.Event().wait()

    result = await pipeline.execute(Job(name="stuck"), stuck)
    assert not result.success
    assert result.error is not None
    assert result.error.startswith("TaskTimeoutError")
    assert log == ["t.before", "t.error:TaskTimeoutError"]
