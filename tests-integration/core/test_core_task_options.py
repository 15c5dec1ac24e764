"""The task's definition governs bare jobs on real backends, through the real worker.

A job enqueued as ``Job(name=...)`` (as the CLI or another service does) on Redis and
PostgreSQL runs with its task's ``@task(max_retries=..., timeout=...)``; the worker's
ack, retry_later and heartbeat carry the lease token each delivery got.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.decorators import task
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.events import JobEvent
from lexigram.tasks.execution import HandlerRegistry, TaskWorker, TaskWorkerServices
from lexigram.tasks.results import InMemoryResultStore

FAST_RETRY = RetryConfig(initial_delay=0.01, backoff_factor=1.0, max_delay=0.01, jitter=0.0)


# The top conftest's delete_redis_prefix and drop_pg_schema fixtures.
Delete = Callable[[str, str], Awaitable[None]]


async def _redis_queue(
    redis_url: str, name: str, delete_prefix: Delete
) -> tuple[TaskQueueProtocol, Callable[[], Any]]:
    from lexigram.tasks.backends.redis import RedisTaskQueue

    prefix = f"core-{name}"
    queue = RedisTaskQueue(redis_url, "tasks", key_prefix=prefix)

    async def cleanup() -> None:
        await queue.close()
        await delete_prefix(redis_url, prefix)

    return queue, cleanup


async def _postgres_queue(
    dsn: str, name: str, drop_schema: Delete
) -> tuple[TaskQueueProtocol, Callable[[], Any]]:
    from lexigram.tasks.backends.postgres import PostgresTaskQueue, migrate

    schema = f"lexigram_core_{name}"
    await migrate(dsn, schema)
    queue = PostgresTaskQueue(dsn=dsn, schema=schema, queue_name=f"q-{name}")

    async def cleanup() -> None:
        await queue.close()
        await drop_schema(dsn, schema)

    return queue, cleanup


@pytest_asyncio.fixture(params=["redis", "postgres"])
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[TaskQueueProtocol]:
    """A queue of this test's own on the backend named by the parameter."""
    name = uuid.uuid4().hex[:8]
    if request.param == "redis":
        made, cleanup = await _redis_queue(
            request.getfixturevalue("redis_url"),
            name,
            request.getfixturevalue("delete_redis_prefix"),
        )
    else:
        made, cleanup = await _postgres_queue(
            request.getfixturevalue("postgres_dsn"), name, request.getfixturevalue("drop_pg_schema")
        )
    try:
        yield made
    finally:
        await cleanup()


class Run:
    """A worker on `queue` with the given tasks, recording every job event."""

    def __init__(self, queue: TaskQueueProtocol, *tasks: Any) -> None:
        self.events: list[JobEvent] = []
        self.changed = asyncio.Event()
        self.dlq = DeadLetterQueue()
        self.store = InMemoryResultStore()
        registry = HandlerRegistry()
        for function in tasks:
            registry.register(function.name, function)
        self.worker = TaskWorker(
            "core-it",
            queue,
            registry,
            TaskWorkerConfig(retry=FAST_RETRY, poll_interval=0.05),
            TaskWorkerServices(
                dead_letter_queue=self.dlq, result_store=self.store, observers=[self]
            ),
        )

    def observe(self, event: JobEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def kinds(self, job_id: str) -> list[str]:
        return [e.kind for e in self.events if e.job_id == job_id]

    async def until(self, job_id: str, kind: str, timeout: float = 15.0) -> JobEvent:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if event.job_id == job_id and event.kind == kind:
                        return event
                self.changed.clear()
                await self.changed.wait()


async def test_task_max_retries_governs_a_bare_job(queue: TaskQueueProtocol) -> None:
    calls = 0

    @task(name="core_flaky", max_retries=1)
    async def flaky() -> None:
        nonlocal calls
        calls += 1
        msg = "still down"
        raise ConnectionError(msg)

    run = Run(queue, flaky)
    job = Job(name="core_flaky")
    (await queue.enqueue(job)).unwrap()
    await run.worker.start()
    try:
        failed = await run.until(job.id, "failed")
    finally:
        await run.worker.stop()
    assert calls == 2
    assert run.kinds(job.id) == ["started", "retrying", "started", "failed"]
    assert failed.attempt == 2
    record = run.dlq.get(job.id)
    assert record is not None
    assert record.metadata["attempts"] == 2
    assert record.metadata["reason"] == "max_retries"
    assert await queue.get_job(job.id) is None  # acked with its lease token


async def test_task_timeout_stops_a_bare_job(queue: TaskQueueProtocol) -> None:
    @task(name="core_slow", timeout=0.5, max_retries=0)
    async def slow() -> None:
        await asyncio.sleep(30)

    run = Run(queue, slow)
    job = Job(name="core_slow")
    (await queue.enqueue(job)).unwrap()
    await run.worker.start()
    try:
        started = await run.until(job.id, "started")
        failed = await run.until(job.id, "failed")
    finally:
        await run.worker.stop()
    assert failed.duration is not None
    assert 0.45 <= failed.duration < 1.5
    assert failed.started_at == started.started_at
    record = run.dlq.get(job.id)
    assert record is not None
    assert "timeout of 0.5 s" in record.error


async def test_a_success_is_acked_with_its_token_and_reported_once(
    queue: TaskQueueProtocol,
) -> None:
    @task(name="core_add")
    async def add(a: int, b: int) -> int:
        return a + b

    run = Run(queue, add)
    job = Job(name="core_add", args=(2, 3))
    (await queue.enqueue(job)).unwrap()
    began = time.time()
    await run.worker.start()
    try:
        done = await run.until(job.id, "completed")
    finally:
        await run.worker.stop()
    result = await run.store.get(job.id)
    assert result is not None
    assert result.data == 5
    assert run.kinds(job.id) == ["started", "completed"]
    assert done.attempt == 1
    assert done.finished_at is not None
    assert done.finished_at >= began
    assert run.worker.stats.jobs_lost == 0
    assert await queue.get_job(job.id) is None
