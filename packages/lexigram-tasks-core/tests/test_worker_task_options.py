"""The task's definition governs its jobs: retries, timeout, retry control, bad arguments.

Every job here is enqueued as a bare ``Job(name=...)`` (as the CLI, a schedule or another
service would), unless the test is about `.delay()` / `.apply_async()` themselves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.decorators import set_default_queue, task
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.events import JobEvent
from lexigram.tasks.execution import (
    HandlerRegistry,
    Reject,
    Retry,
    TaskOptions,
    TaskWorker,
    TaskWorkerServices,
)
from lexigram.tasks.handles import JobHandle
from lexigram.tasks.results import InMemoryResultStore
from lexigram.tasks.testing import HookRecorder

FAST_RETRY = RetryConfig(initial_delay=0.01, backoff_factor=2.0, max_delay=1.0, jitter=0.0)


class RecordingQueue(MemoryTaskQueue):
    """A memory queue that records the delay of every retry_later call."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.retry_delays: list[float] = []

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        self.retry_delays.append(delay)
        return await super().retry_later(task, delay=delay)


class Harness:
    """A worker over a recording queue, with a DLQ, a result store and hook recorder."""

    def __init__(self, *tasks: Any, **services: Any) -> None:
        self.queue = RecordingQueue()
        self.hooks = HookRecorder()
        self.dlq = DeadLetterQueue()
        self.store = InMemoryResultStore()
        self.registry = HandlerRegistry()
        for function in tasks:
            self.registry.register(function.name, function)
        self.worker = TaskWorker(
            "w1",
            self.queue,
            self.registry,
            TaskWorkerConfig(retry=FAST_RETRY, poll_interval=0.05),
            TaskWorkerServices(
                hooks=self.hooks, dead_letter_queue=self.dlq, result_store=self.store, **services
            ),
        )

    async def run_until_failed(self, job: Job) -> None:
        (await self.queue.enqueue(job)).unwrap()
        await self.worker.start()
        try:
            await self.hooks.wait_until(lambda: job.id in self.hooks.ids("task.failed"))
        finally:
            await self.worker.stop()

    def starts(self, job: Job | JobHandle[Any]) -> int:
        return self.hooks.ids("task.started").count(job.id)


async def test_task_max_retries_governs_a_bare_job(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    @task(max_retries=1)
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        msg = "still down"
        raise ConnectionError(msg)

    h = Harness(flaky)
    job = Job(name="flaky")  # max_retries None: the task decides
    with caplog.at_level(logging.WARNING):
        await h.run_until_failed(job)
    assert calls == 2  # the first run and one retry
    record = h.dlq.get(job.id)
    assert record is not None
    assert record.metadata["reason"] == "max_retries"
    assert record.metadata["attempts"] == 2
    assert record.metadata["max_retries"] == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("failed (attempt 1 of 2)" in m for m in messages)
    assert any("dead-lettered after 2 attempt(s)" in m for m in messages)


async def test_task_timeout_stops_a_bare_job_and_dead_letters_it() -> None:
    @task(timeout=0.5, max_retries=0)
    async def slow() -> None:
        await asyncio.sleep(30)

    h = Harness(slow)
    job = Job(name="slow")
    started = time.perf_counter()
    await h.run_until_failed(job)
    elapsed = time.perf_counter() - started
    assert 0.45 <= elapsed < 1.5
    record = h.dlq.get(job.id)
    assert record is not None
    assert record.error.startswith("TaskTimeoutError")
    assert "timeout of 0.5 s" in record.error
    assert h.starts(job) == 1


async def test_the_job_s_explicit_values_win_over_the_task_s() -> None:
    @task(max_retries=3, timeout=30)
    async def boom() -> None:
        await asyncio.sleep(1)

    h = Harness(boom)
    job = await boom.apply_async(h.queue, max_retries=0, timeout=0.05)
    await h.worker.start()
    await h.hooks.wait_until(lambda: job.id in h.hooks.ids("task.failed"))
    await h.worker.stop()
    assert h.starts(job) == 1  # max_retries=0 from apply_async: no retry
    record = h.dlq.get(job.id)
    assert record is not None
    assert "timeout of 0.05 s" in record.error


async def test_delay_leaves_the_options_to_the_worker() -> None:
    calls = 0

    @task(max_retries=2)
    async def unlucky() -> None:
        nonlocal calls
        calls += 1
        raise ValueError(calls)

    h = Harness(unlucky)
    set_default_queue(h.queue)
    try:
        job = await unlucky.delay()
    finally:
        set_default_queue(None)
    assert job.max_retries is None
    await h.worker.start()
    await h.hooks.wait_until(lambda: job.id in h.hooks.ids("task.failed"))
    await h.worker.stop()
    assert calls == 3


async def test_arguments_that_do_not_bind_fail_once_without_retries() -> None:
    calls = 0

    @task  # default options: 3 retries for ordinary failures
    async def send_email(to: str) -> None:
        nonlocal calls
        calls += 1

    h = Harness(send_email)
    job = Job(name="send_email", args=("a@b.c",), kwargs={"x": 1})
    await h.run_until_failed(job)
    assert calls == 0
    assert h.queue.retry_delays == []
    record = h.dlq.get(job.id)
    assert record is not None
    assert record.metadata["reason"] == "bad_arguments"
    assert "send_email() got an unexpected keyword argument 'x'" in record.error
    assert "the job was sent with args=['a@b.c'] kwargs={'x': 1}" in record.error


async def test_a_type_error_inside_the_handler_is_retried() -> None:
    calls = 0

    @task(max_retries=1)
    async def buggy(n: int) -> None:
        nonlocal calls
        calls += 1
        _ = n + "1"  # type: ignore[operator]

    h = Harness(buggy)
    job = Job(name="buggy", args=(1,))
    await h.run_until_failed(job)
    assert calls == 2
    record = h.dlq.get(job.id)
    assert record is not None
    assert record.metadata["reason"] == "max_retries"


async def test_reject_dead_letters_at_once() -> None:
    @task(max_retries=5)
    async def charge(order_id: str) -> None:
        msg = f"order {order_id} does not exist"
        raise Reject(msg)

    h = Harness(charge)
    job = Job(name="charge", args=("o-1",))
    await h.run_until_failed(job)
    assert h.starts(job) == 1
    record = h.dlq.get(job.id)
    assert record is not None
    assert record.metadata["reason"] == "rejected"
    assert record.error == "Reject: order o-1 does not exist"


async def test_retry_asks_for_a_delay_and_counts_against_max_retries() -> None:
    @task(max_retries=2)
    async def poll() -> None:
        raise Retry(delay=0.05, reason="report not ready")

    h = Harness(poll)
    job = Job(name="poll")
    await h.run_until_failed(job)
    assert h.queue.retry_delays == [0.05, 0.05]
    assert h.starts(job) == 3
    record = h.dlq.get(job.id)
    assert record is not None
    assert record.metadata["reason"] == "max_retries"
    assert record.error == "Retry: report not ready"


async def test_retry_then_success() -> None:
    attempts = 0

    @task
    async def eventually() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise Retry(delay=0.01)
        return "done"

    h = Harness(eventually)
    job = Job(name="eventually")
    (await h.queue.enqueue(job)).unwrap()
    await h.worker.start()
    result = await h.store.wait(job.id, timeout=5)
    await h.worker.stop()
    assert result is not None
    assert result.data == "done"
    assert h.queue.retry_delays == [0.01]


async def test_retry_on_and_dont_retry_on() -> None:
    @task(max_retries=3, retry_on=(ConnectionError,))
    async def only_network() -> None:
        msg = "bad input"
        raise ValueError(msg)

    @task(max_retries=3, dont_retry_on=(KeyError,))
    async def not_missing() -> None:
        msg = "gone"
        raise KeyError(msg)

    @task(max_retries=1, retry_on=(OSError,), dont_retry_on=(PermissionError,))
    async def network() -> None:
        msg = "reset"
        raise ConnectionResetError(msg)

    h = Harness(only_network, not_missing, network)
    jobs = [Job(name="only_network"), Job(name="not_missing"), Job(name="network")]
    for job in jobs:
        (await h.queue.enqueue(job)).unwrap()
    await h.worker.start()
    await h.hooks.wait_until(lambda: len(h.hooks.ids("task.failed")) == 3)
    await h.worker.stop()
    reasons = {job.name: h.dlq.get(job.id).metadata["reason"] for job in jobs}  # type: ignore[union-attr]
    assert reasons == {
        "only_network": "not_retried",
        "not_missing": "not_retried",
        "network": "max_retries",
    }
    assert [h.starts(job) for job in jobs] == [1, 1, 2]


async def test_per_task_backoff() -> None:
    @task(max_retries=3, retry_backoff=0.01, retry_backoff_max=0.03, retry_jitter=False)
    async def backoff() -> None:
        raise RuntimeError

    h = Harness(backoff)
    job = Job(name="backoff")
    await h.run_until_failed(job)
    assert h.queue.retry_delays == [0.01, 0.02, 0.03]


async def test_full_jitter_stays_below_the_backoff() -> None:
    @task(max_retries=3, retry_backoff=0.02, retry_jitter=True)
    async def jittery() -> None:
        raise RuntimeError

    h = Harness(jittery)
    await h.run_until_failed(Job(name="jittery"))
    assert len(h.queue.retry_delays) == 3
    for delay, ceiling in zip(h.queue.retry_delays, (0.02, 0.04, 0.08), strict=True):
        assert 0.0 <= delay <= ceiling


async def test_store_result_false_stores_nothing() -> None:
    @task(store_result=False)
    async def fire_and_forget() -> str:
        return "unread"

    h = Harness(fire_and_forget)
    job = Job(name="fire_and_forget")
    (await h.queue.enqueue(job)).unwrap()
    await h.worker.start()
    await h.hooks.wait_until(lambda: job.id in h.hooks.ids("task.completed"))
    await h.worker.stop()
    assert await h.store.get(job.id) is None


async def test_options_are_validated_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="max_retries=-1"):
        task(max_retries=-1)
    with pytest.raises(TypeError, match="retry_on"):
        task(retry_on=("ConnectionError",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delay"):
        Retry(delay=-1)


async def test_registry_returns_the_options_with_the_handler() -> None:
    @task(max_retries=7)
    async def seven() -> None:
        return None

    async def plain() -> None:
        return None

    registry = HandlerRegistry()
    registry.register(seven.name, seven)
    registry.register("plain", plain)
    registry.register("bound", plain, options=TaskOptions(timeout=2))
    assert registry.lookup("seven") == (seven, seven.options)
    assert registry.lookup("plain") == (plain, TaskOptions())
    assert registry.options("bound") == TaskOptions(timeout=2)
    assert registry.lookup("nope") is None


class LosingQueue(MemoryTaskQueue):
    """A queue whose ack reports that the lease was lost (another delivery holds it)."""

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        return False


async def test_a_lost_lease_at_ack_is_counted_lost_after_storing_its_runs_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = LosingQueue()
    store = InMemoryResultStore()
    seen: list[JobEvent] = []
    lost = asyncio.Event()

    class Collect:
        def observe(self, event: JobEvent) -> None:
            seen.append(event)
            if event.kind == "lost":
                lost.set()

    async def quick() -> str:
        return "ran"

    worker = TaskWorker(
        "w1",
        queue,
        {"quick": quick},
        services=TaskWorkerServices(result_store=store, observers=[Collect()]),
    )
    job = Job(name="quick")
    (await queue.enqueue(job)).unwrap()
    with caplog.at_level(logging.WARNING):
        await worker.start()
        await asyncio.wait_for(lost.wait(), 5)
        await worker.stop()
    # Stored before the ack (the run did complete); the current delivery's settling
    # replaces it.
    stored = await store.get(job.id)
    assert stored is not None
    assert stored.data == "ran"
    assert worker.stats.jobs_lost == 1
    assert [e.kind for e in seen] == ["started", "lost"]
    assert any("lost its lease before it was settled" in r.getMessage() for r in caplog.records)


async def test_log_jobs_logs_each_success_at_info(caplog: pytest.LogCaptureFixture) -> None:
    queue = MemoryTaskQueue()
    hooks = HookRecorder()

    async def quick() -> None:
        return None

    worker = TaskWorker(
        "w1", queue, {"quick": quick}, services=TaskWorkerServices(hooks=hooks), log_jobs=True
    )
    job = Job(name="quick")
    (await queue.enqueue(job)).unwrap()
    with caplog.at_level(logging.INFO, logger="lexigram.tasks.execution"):
        await worker.start()
        await hooks.wait_until(lambda: job.id in hooks.ids("task.completed"))
        await worker.stop()
    lines = [
        r for r in caplog.records if r.levelno == logging.INFO and "completed in" in r.getMessage()
    ]
    assert len(lines) == 1
    assert f"Job {job.id} (quick) completed in" in lines[0].getMessage()


async def test_a_task_registered_again_runs_its_next_jobs_with_the_new_definition() -> None:
    """The worker caches what it derives from a task only while the task stays the same."""
    attempts: list[str] = []

    async def flaky() -> None:
        attempts.append("flaky")
        msg = "down"
        raise ConnectionError(msg)

    registry = HandlerRegistry()
    registry.register("flaky", flaky, options=TaskOptions(max_retries=0))
    queue = MemoryTaskQueue()
    dlq = DeadLetterQueue()
    worker = TaskWorker(
        "w1",
        queue,
        registry,
        TaskWorkerConfig(max_concurrent_tasks=1, poll_interval=0.01, retry=FAST_RETRY),
        TaskWorkerServices(dead_letter_queue=dlq),
    )
    await worker.start()
    try:
        await queue.enqueue(Job(name="flaky"))
        await _wait_for(lambda: len(dlq) == 1)
        assert attempts == ["flaky"]  # max_retries=0: dead-lettered at once

        # The same handler registered again with other options: the next job uses them.
        registry.register("flaky", flaky, options=TaskOptions(max_retries=1))
        await queue.enqueue(Job(name="flaky"))
        await _wait_for(lambda: len(dlq) == 2)
        assert attempts == ["flaky"] * 3

        # A plain mapping: a replaced handler runs from the next job on.
        ran: list[str] = []

        async def first() -> None:
            ran.append("first")

        async def second() -> None:
            ran.append("second")

        handlers = {"job": first}
        other = MemoryTaskQueue()
        mapped = TaskWorker("w2", other, handlers, TaskWorkerConfig(poll_interval=0.01))
        await mapped.start()
        try:
            await other.enqueue(Job(name="job"))
            await _wait_for(lambda: ran == ["first"])
            handlers["job"] = second
            await other.enqueue(Job(name="job"))
            await _wait_for(lambda: ran == ["first", "second"])
        finally:
            await mapped.stop()
    finally:
        await worker.stop()


async def _wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            msg = "the condition did not hold in time"
            raise AssertionError(msg)
        await asyncio.sleep(0.01)
