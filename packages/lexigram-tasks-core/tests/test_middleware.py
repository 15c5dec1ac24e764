"""Middleware: pipeline order, error reporting, metrics, logging and the timeout setting."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lexigram.contracts.tasks import Job, JobResult, TaskTimeoutError
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.middleware import (
    LoggingMiddleware,
    MetricsMiddleware,
    TaskExecutionContext,
    TaskMiddleware,
    TaskMiddlewarePipeline,
    TimeoutMiddleware,
)
from lexigram.tasks.middleware._base import ERROR_KEY, TRACEBACK_KEY
from lexigram.tasks.testing import HookRecorder


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


async def test_timeout_middleware_gives_jobs_without_their_own_the_default() -> None:
    middleware = TimeoutMiddleware(default_timeout=10, max_timeout=5)
    set_to: list[float] = []
    ctx = TaskExecutionContext(job=Job(name="x"), timeout=300.0, deadline_setter=set_to.append)
    await middleware.before_execute(ctx)
    assert (ctx.timeout, set_to) == (5, [5])  # the worker's default, replaced and capped
    explicit = TaskExecutionContext(
        job=Job(name="x"), timeout=2.0, timeout_explicit=True, deadline_setter=set_to.append
    )
    await TimeoutMiddleware(default_timeout=10).before_execute(explicit)
    assert explicit.timeout == 2.0  # the task's own timeout stands


async def test_worker_enforces_the_timeout_middleware_sets() -> None:
    """TimeoutMiddleware sets the value; the worker's deadline timer is what stops the job."""
    log: list[str] = []
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Tracing("t", log))
    pipeline.add(TimeoutMiddleware(default_timeout=0.05))

    async def stuck() -> None:
        await asyncio.Event().wait()

    queue = MemoryTaskQueue()
    hooks = HookRecorder()
    dlq = DeadLetterQueue()
    worker = TaskWorker(
        "w1",
        queue,
        {"stuck": stuck},
        services=TaskWorkerServices(hooks=hooks, dead_letter_queue=dlq),
        middleware_pipeline=pipeline,
    )
    job = Job(name="stuck", max_retries=0)
    (await queue.enqueue(job)).unwrap()
    started = asyncio.get_running_loop().time()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    elapsed = asyncio.get_running_loop().time() - started
    await worker.stop()
    record = dlq.get(job.id)
    assert record is not None
    assert record.error.startswith("TaskTimeoutError")
    assert "0.05 s" in record.error
    assert elapsed < 2.0
    # A timeout is a failure: every on_error hears of it (a MetricsMiddleware counts it).
    assert log == ["t.before", "t.error:TaskTimeoutError"]


async def test_pipeline_run_re_raises_the_handler_exception_unchanged() -> None:
    log: list[str] = []
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Tracing("t", log))
    error = KeyError("missing")

    async def broken() -> None:
        raise error

    ctx = TaskExecutionContext(job=Job(name="broken"))
    with pytest.raises(KeyError) as caught:
        await pipeline.run(ctx, broken, (), {})
    assert caught.value is error
    assert log == ["t.before", "t.error:KeyError"]
    assert ctx.metadata[ERROR_KEY] is error


async def test_outside_a_worker_the_pipeline_enforces_the_timeout_a_middleware_sets() -> None:
    log: list[str] = []
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Tracing("t", log))
    pipeline.add(TimeoutMiddleware(default_timeout=0.05))

    async def stuck() -> None:
        await asyncio.Event().wait()

    job = Job(name="stuck")
    ctx = TaskExecutionContext(job=job)
    result = await pipeline.execute(job, stuck, ctx=ctx)
    assert not result.success
    assert result.error is not None
    assert result.error.startswith(f"TaskTimeoutError: Task 'stuck' (job {job.id}) exceeded")
    assert "0.05 s" in result.error
    assert isinstance(ctx.metadata["error"], TaskTimeoutError)
    assert "CancelledError" in ctx.metadata["traceback"]
    assert 0.04 < result.duration < 2.0
    assert log == ["t.before", "t.error:TaskTimeoutError"]  # reported, as in a worker
    assert (ctx.deadline_setter, ctx.timed_out) == (None, None)  # it can be run again


async def test_execute_with_timeout_runs_a_handler_under_the_middlewares_timeout() -> None:
    middleware = TimeoutMiddleware(default_timeout=0.05)

    async def slow() -> int:
        await asyncio.sleep(5)
        return 1

    job = Job(name="slow")
    late = await middleware.execute_with_timeout(slow, job, TaskExecutionContext(job=job))
    assert not late.success
    assert late.error is not None
    assert late.error.startswith("TaskTimeoutError")

    def double(value: int) -> int:
        return value * 2

    quick = Job(name="double", args=(3,))
    ctx = TaskExecutionContext(job=quick)
    done = await middleware.execute_with_timeout(double, quick, ctx, resolved_args=[4])
    assert (done.success, done.data) == (True, 8)
    assert ctx.metadata["timeout"] == 0.05


async def test_a_handlers_own_timeout_error_is_its_failure_not_a_timeout() -> None:
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(TimeoutMiddleware(default_timeout=5))

    async def gives_up() -> None:
        msg = "the remote service did not answer"
        raise TimeoutError(msg)

    result = await pipeline.execute(Job(name="x"), gives_up)
    assert result.error == "TimeoutError: the remote service did not answer"


async def test_a_job_cancelled_in_a_worker_is_not_reported_as_a_failure() -> None:
    log: list[str] = []
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Tracing("t", log))
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    ctx = TaskExecutionContext(job=Job(name="waits"), timed_out=lambda: False)
    running = asyncio.create_task(pipeline.run(ctx, waits, (), {}))
    await started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert log == ["t.before"]


async def test_every_on_error_hears_of_a_cancelled_error_the_handler_raises_in_a_worker() -> None:
    """The worker fails the attempt (nothing cancelled it), and error middleware sees it."""
    log: list[str] = []
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Tracing("t", log))

    async def leaky() -> None:
        inner = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        inner.cancel()
        await inner  # a cancelled inner task's error, let out

    queue = MemoryTaskQueue()
    hooks = HookRecorder()
    dlq = DeadLetterQueue()
    worker = TaskWorker(
        "w1",
        queue,
        {"leaky": leaky},
        services=TaskWorkerServices(hooks=hooks, dead_letter_queue=dlq),
        middleware_pipeline=pipeline,
    )
    job = Job(name="leaky", max_retries=0)
    (await queue.enqueue(job)).unwrap()
    await worker.start()
    await hooks.wait_until(lambda: job.id in hooks.ids("task.failed"))
    await worker.stop()
    record = dlq.get(job.id)
    assert record is not None
    assert record.error.startswith("CancelledError")
    assert log == ["t.before", "t.error:CancelledError"]


async def test_execute_fails_on_the_handlers_own_cancelled_error_and_passes_a_cancel_on() -> None:
    log: list[str] = []
    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Tracing("t", log))

    async def gives_up() -> None:
        msg = "upstream gave up"
        raise asyncio.CancelledError(msg)

    result = await pipeline.execute(Job(name="gives_up"), gives_up)
    assert not result.success
    assert result.error == "CancelledError: upstream gave up"
    assert log == ["t.before", "t.error:CancelledError"]

    log.clear()
    started = asyncio.Event()

    async def waits() -> None:
        started.set()
        await asyncio.Event().wait()

    running = asyncio.ensure_future(pipeline.execute(Job(name="waits"), waits))
    await started.wait()
    running.cancel()  # a cancel from outside: not the handler's failure
    with pytest.raises(asyncio.CancelledError):
        await running
    assert log == ["t.before"]
