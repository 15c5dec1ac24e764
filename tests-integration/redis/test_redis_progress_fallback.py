"""Progress of jobs that never report it, on a real Redis: a worker writes no snapshot
for them, so the progress tracker answers from the job's stored result."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job, ProgressSnapshot, ProgressStatus
from lexigram.tasks.backends.redis import (
    RedisConnector,
    RedisProgressTracker,
    RedisResultStore,
    RedisTaskQueue,
)
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.decorators import task
from lexigram.tasks.execution import HandlerRegistry, TaskWorker, TaskWorkerServices

pytestmark = pytest.mark.redis


class Stack:
    """A queue, result store and progress tracker on one prefix, and a worker over them."""

    def __init__(self, connector: RedisConnector, key_prefix: str, gate: asyncio.Event) -> None:
        self.started = asyncio.Event()

        @task(name="fallback_ok")
        async def ok() -> int:
            self.started.set()
            await gate.wait()
            return 42

        @task(name="fallback_boom", max_retries=0)
        async def boom() -> None:
            msg = "exploded on purpose"
            raise ValueError(msg)

        self.queue = RedisTaskQueue(queue_name="tasks", key_prefix=key_prefix, connector=connector)
        self.results = RedisResultStore(key_prefix=key_prefix, connector=connector)
        self.tracker = RedisProgressTracker(key_prefix=key_prefix, connector=connector)
        registry = HandlerRegistry()
        for function in (ok, boom):
            registry.register(function.name, function)
        self.worker = TaskWorker(
            "fallback-it",
            self.queue,
            registry,
            TaskWorkerConfig(poll_interval=0.05),
            TaskWorkerServices(result_store=self.results, progress_tracker=self.tracker),
        )


@pytest_asyncio.fixture
async def stack(connector: RedisConnector, key_prefix: str) -> AsyncIterator[Stack]:
    built = Stack(connector, key_prefix, asyncio.Event())
    await built.worker.start()
    try:
        yield built
    finally:
        await built.worker.stop()


async def _follow(tracker: RedisProgressTracker, job_id: str) -> list[ProgressSnapshot]:
    return [snapshot async for snapshot in tracker.subscribe(job_id)]


async def test_a_job_without_progress_ends_its_subscription_with_its_result(
    connector: RedisConnector, key_prefix: str
) -> None:
    gate = asyncio.Event()
    stack = Stack(connector, key_prefix, gate)
    job = Job(name="fallback_ok")
    (await stack.queue.enqueue(job)).unwrap()
    await stack.worker.start()
    try:
        await asyncio.wait_for(stack.started.wait(), 10)
        assert await stack.tracker.get(job.id) is None  # running, nothing reported yet
        follower = asyncio.create_task(_follow(stack.tracker, job.id))
        await asyncio.sleep(0.3)  # the subscription is in place before the job ends
        assert not follower.done()
        gate.set()
        seen = await asyncio.wait_for(follower, 10)
    finally:
        await stack.worker.stop()
    assert [(s.status, s.current, s.total, s.percent) for s in seen] == [
        (ProgressStatus.COMPLETE, 1, 1, 100.0)
    ]
    got = await stack.tracker.get(job.id)
    assert got is not None
    assert (got.task_id, got.status, got.percent) == (job.id, ProgressStatus.COMPLETE, 100.0)
    # Nothing was written as progress: the answer comes from the stored result.
    assert await connector.client().exists(stack.tracker._key(job.id)) == 0
    late = await asyncio.wait_for(_follow(stack.tracker, job.id), 5)
    assert [s.status for s in late] == [ProgressStatus.COMPLETE]


async def test_a_failed_job_without_progress_reads_as_failed(stack: Stack) -> None:
    job = Job(name="fallback_boom")
    follower = asyncio.create_task(_follow(stack.tracker, job.id))
    await asyncio.sleep(0.3)
    (await stack.queue.enqueue(job)).unwrap()
    seen = await asyncio.wait_for(follower, 10)
    assert len(seen) == 1
    assert seen[0].status is ProgressStatus.FAILED
    assert "exploded on purpose" in seen[0].error
    got = await stack.tracker.get(job.id)
    assert got is not None
    assert got.status is ProgressStatus.FAILED
    assert "exploded on purpose" in got.error


async def test_an_unknown_job_has_no_progress(stack: Stack) -> None:
    assert await stack.tracker.get("never-enqueued") is None
    follower = asyncio.create_task(_follow(stack.tracker, "never-enqueued"))
    await asyncio.sleep(0.3)
    assert not follower.done()  # waits for a result or progress that has not come
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
