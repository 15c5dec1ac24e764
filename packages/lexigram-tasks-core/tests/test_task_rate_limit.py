"""Per-task rate limits: ``@task(rate_limit=...)`` parsed at decoration, honoured by workers.

Rates are measured from the moments handlers start (jobs start one period apart: the
task's bucket holds one token), within a tolerance; nothing asserts machine speed.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job, TaskValidationError
from lexigram.tasks import TaskProvider, task
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.concurrency import RateLimit, parse_rate_limit
from lexigram.tasks.concurrency._task_rate import TaskRateLimiters
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.events import COMPLETED, JobEvent
from lexigram.tasks.execution import (
    HandlerRegistry,
    TaskOptions,
    TaskWorker,
    TaskWorkerServices,
    WorkerPool,
)

TOLERANCE = 0.15


@pytest.mark.parametrize(
    ("text", "rate", "per"),
    [("10/s", 10, 1.0), ("100/m", 100, 60.0), ("1000/h", 1000, 3600.0), (" 5 / s ", 5, 1.0)],
)
def test_rate_limit_forms_parse_to_a_rate_and_a_period(text, rate, per):
    limit = parse_rate_limit(text, task="t")
    assert (limit.rate, limit.per) == (rate, per)
    assert limit.per_second == pytest.approx(rate / per)


@pytest.mark.parametrize("bad", ["10", "10/d", "0/s", "-1/s", "1.5/s", "ten/s", "", 10])
def test_an_invalid_rate_limit_fails_at_decoration_naming_the_task_and_the_forms(bad):
    with pytest.raises(TaskValidationError) as caught:

        @task(name="emails.send", rate_limit=bad)
        async def send() -> None: ...

    message = str(caught.value)
    assert "'emails.send'" in message
    assert repr(bad) in message
    assert "'<n>/s', '<n>/m' or '<n>/h'" in message
    assert "\n" not in message


def test_the_decorated_task_carries_the_parsed_limit_in_its_options():
    @task(rate_limit="100/m")
    async def sync_crm() -> None: ...

    assert sync_crm.options.rate_limit == RateLimit(rate=100, per=60.0, text="100/m")

    @task
    async def plain() -> None: ...

    assert plain.options.rate_limit is None


async def test_a_10_per_second_task_runs_about_10_jobs_a_second_and_others_are_not_held_back():
    queue = MemoryTaskQueue()
    limited: list[float] = []
    free: list[float] = []

    @task(name="limited", rate_limit="10/s")
    async def limited_task(n: int) -> None:
        limited.append(time.monotonic())

    @task(name="free")
    async def free_task(n: int) -> None:
        free.append(time.monotonic())

    registry = HandlerRegistry()
    registry.register("limited", limited_task)
    registry.register("free", free_task)
    # The limited backlog comes first: the free jobs behind it must not wait for it.
    await queue.enqueue_many([Job(name="limited", args=(i,)) for i in range(40)])
    await queue.enqueue_many([Job(name="free", args=(i,)) for i in range(20)])
    pool = WorkerPool(queue, registry, size=1, config=TaskWorkerConfig(max_concurrent_tasks=4))
    began = time.monotonic()
    await pool.start()
    try:
        await asyncio.sleep(1.05)
    finally:
        await pool.stop()
    assert len(free) == 20
    assert max(free) - began < 0.5, max(free) - began
    # One second at 10/s, the first at once: 11 starts (10 after the first).
    assert 9 <= len(limited) <= 12, len(limited)
    rate = (len(limited) - 1) / (limited[-1] - limited[0])
    assert 10 * (1 - TOLERANCE) <= rate <= 10 * (1 + TOLERANCE), rate
    for worker in pool.workers:
        stats = worker.get_stats()
        assert (stats.jobs_failed, stats.jobs_retried, stats.jobs_dead_lettered) == (0, 0, 0)


async def test_the_workers_of_a_pool_share_one_bucket_per_task():
    queue = MemoryTaskQueue()
    starts: list[float] = []

    @task(name="shared", rate_limit="20/s")
    async def shared() -> None:
        starts.append(time.monotonic())

    registry = HandlerRegistry()
    registry.register("shared", shared)
    await queue.enqueue_many([Job(name="shared") for _ in range(100)])
    pool = WorkerPool(queue, registry, size=3, config=TaskWorkerConfig(max_concurrent_tasks=4))
    await pool.start()
    try:
        await asyncio.sleep(1.0)
    finally:
        await pool.stop()
    # Three workers, one process, one bucket: 20 a second, not 60.
    assert 17 <= len(starts) <= 23, len(starts)


class _CountingQueue(MemoryTaskQueue):
    """The memory queue, counting the jobs given back for later."""

    given_back = 0

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        self.given_back += 1
        return await super().retry_later(task, delay=delay)


async def test_a_job_given_back_for_its_limit_is_not_retried_failed_or_dead_lettered():
    queue = _CountingQueue()
    started: list[int] = []
    all_started = asyncio.Event()

    async def burst(n: int) -> None:
        started.append(n)
        if len(started) == 30:
            all_started.set()

    registry = HandlerRegistry()
    registry.register(
        "burst", burst, options=TaskOptions(rate_limit=parse_rate_limit("20/s", task="burst"))
    )
    # More jobs than one worker keeps waiting in line: the rest go back to the queue.
    await queue.enqueue_many([Job(name="burst", args=(i,)) for i in range(30)])
    worker = TaskWorker(
        "w", queue, registry, config=TaskWorkerConfig(max_concurrent_tasks=10, max_deliveries=1)
    )
    await worker.start()
    try:
        async with asyncio.timeout(5):
            await all_started.wait()
    finally:
        await worker.stop()
    assert sorted(started) == list(range(30))
    # Some jobs went back to the queue (and came back more than max_deliveries times).
    assert queue.given_back > 0
    stats = worker.get_stats()
    assert (stats.jobs_failed, stats.jobs_retried, stats.jobs_dead_lettered) == (0, 0, 0)
    assert worker.dlq.size == 0


async def test_a_limit_holds_for_jobs_enqueued_by_name_through_the_provider():
    provider = TaskProvider(worker_count=2)
    starts: list[float] = []

    @task(name="by_name", rate_limit="20/s")
    async def by_name() -> None:
        starts.append(time.monotonic())

    provider.register_handler("by_name", by_name)
    async with Application.boot(providers=[provider]):
        queue = provider.queue
        assert queue is not None
        await queue.enqueue_many([Job(name="by_name") for _ in range(30)])
        await asyncio.sleep(1.0)
    # Two workers, one bucket: 20 a second, 1/20 s apart (the rest went back at shutdown).
    assert 17 <= len(starts) <= 23, len(starts)
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    assert 20 * (1 - TOLERANCE) <= rate <= 20 * (1 + TOLERANCE), rate


def test_a_backend_without_a_shared_limiter_is_named_in_a_warning_per_limited_task(caplog):
    limit = parse_rate_limit("20/s", task="report")
    limiters = TaskRateLimiters(backend="rabbitmq")
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.concurrency._task_rate"):
        limiters.prepare([("report", TaskOptions(rate_limit=limit)), ("plain", TaskOptions())])
        limiters.get("report", limit)  # built once: no second warning
    [record] = caplog.records
    message = record.getMessage()
    assert "'report'" in message
    assert "'20/s'" in message
    assert "rabbitmq" in message
    assert "per worker process" in message


def test_the_memory_backend_keeps_per_process_buckets_without_a_warning(caplog):
    limiters = TaskRateLimiters()
    with caplog.at_level(logging.WARNING):
        limiters.get("report", parse_rate_limit("20/s", task="report"))
    assert caplog.records == []


async def test_a_draining_worker_requeues_the_jobs_waiting_for_a_token_at_once():
    queue = MemoryTaskQueue()
    ran: list[int] = []
    first_ran = asyncio.Event()
    second_ran = asyncio.Event()

    @task(name="slow_rate", rate_limit="1/m")
    async def slow_rate(n: int) -> None:
        ran.append(n)
        (second_ran if first_ran.is_set() else first_ran).set()

    registry = HandlerRegistry()
    registry.register("slow_rate", slow_rate)
    await queue.enqueue_many([Job(name="slow_rate", args=(n,)) for n in range(2)])
    worker = TaskWorker("w", queue, registry)
    await worker.start()
    async with asyncio.timeout(5):
        await first_ran.wait()
    await asyncio.sleep(0.1)  # the second job is taken and waits for the next token
    assert worker.in_flight == 1
    began = time.monotonic()
    await worker.stop(drain=True, timeout=30)
    assert time.monotonic() - began < 2  # not the drain timeout, nor the minute
    assert ran == [0]
    # The second job never started: it is waiting in the queue again, not retried or failed.
    assert await queue.get_task_count() == 1
    stats = worker.get_stats()
    assert (stats.jobs_failed, stats.jobs_retried, stats.jobs_dead_lettered) == (0, 0, 0)
    # Its next delivery is no crash loop, even where one extra delivery would be.
    strict = TaskWorkerConfig(max_deliveries=1)
    second = TaskWorker("w2", queue, registry, config=strict)
    await second.start()
    try:
        async with asyncio.timeout(5):
            await second_ran.wait()
    finally:
        await second.stop()
    assert ran == [0, 1]
    assert second.get_stats().jobs_dead_lettered == 0


@pytest.mark.parametrize(("rate", "per"), [(0, 1.0), (5, 0.0)])
def test_a_rate_limit_built_by_hand_must_be_positive(rate, per):
    with pytest.raises(ValueError, match="parse_rate_limit"):
        RateLimit(rate=rate, per=per, text="?")


class _Durations:
    """An observer of the job events: the duration of each completed job."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def observe(self, event: JobEvent) -> None:
        if event.kind == COMPLETED:
            self.seconds.append(event.duration or 0.0)


async def test_the_wait_for_a_token_is_not_counted_in_a_job_s_duration():
    queue = MemoryTaskQueue()
    durations = _Durations()
    starts: list[float] = []
    all_done = asyncio.Event()

    @task(name="four_a_second", rate_limit="4/s")
    async def four_a_second() -> None:
        starts.append(time.monotonic())
        if len(starts) == 3:
            all_done.set()

    registry = HandlerRegistry()
    registry.register("four_a_second", four_a_second)
    await queue.enqueue_many([Job(name="four_a_second") for _ in range(3)])
    worker = TaskWorker("w", queue, registry, services=TaskWorkerServices(observers=[durations]))
    await worker.start()
    try:
        async with asyncio.timeout(5):
            await all_done.wait()
        await asyncio.sleep(0.05)  # the last one settles
    finally:
        await worker.stop(drain=True)
    assert starts[-1] - starts[0] >= 0.4  # the last two waited for their tokens...
    assert len(durations.seconds) == 3
    assert max(durations.seconds) < 0.1, durations.seconds  # ...but did not run that long
