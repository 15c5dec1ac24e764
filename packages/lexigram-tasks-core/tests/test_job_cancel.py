"""Cancelling jobs on the memory backend: waiting, delayed, running, finished, shielded."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    CancellableQueueProtocol,
    CancelOutcome,
    Job,
    JobStatus,
    Result,
    TaskCancelledError,
    TaskQueueError,
)
from lexigram.tasks import JobHandle, TaskWorker, shield_cancellation
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.decorators import task
from lexigram.tasks.dlq import DeadLetterQueue
from lexigram.tasks.events import CANCELLED, JobEvent
from lexigram.tasks.execution import HandlerRegistry, TaskWorkerServices
from lexigram.tasks.results import InMemoryResultStore
from lexigram.tasks.workflows import TaskChain, TaskStep


class Probe:
    """What the handlers saw; a new one per test (events bind to one loop)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.calls = 0
        self.cancelled_at: float | None = None
        self.section_done = False
        self.after_section = False
        self.thread_release = threading.Event()


class Harness:
    def __init__(self, queue: Any = None) -> None:
        self.queue = queue if queue is not None else MemoryTaskQueue(visibility_timeout=30.0)
        self.results = InMemoryResultStore()
        self.dlq = DeadLetterQueue()
        self.probe = Probe()
        self.events: list[JobEvent] = []
        probe = self.probe

        async def slow() -> str:
            probe.calls += 1
            probe.started.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                probe.cancelled_at = time.monotonic()
                raise
            return "slept"

        async def quick(value: int) -> int:
            probe.calls += 1
            return value

        async def shielded() -> str:
            probe.calls += 1
            with shield_cancellation():
                probe.started.set()
                await asyncio.sleep(0.3)
                probe.section_done = True
            probe.after_section = True
            return "done"

        def shielded_sync() -> str:  # a `def` task: runs in a thread
            probe.calls += 1
            with shield_cancellation():
                probe.thread_release.wait(5)
                probe.section_done = True
            probe.after_section = True
            return "done"

        class Observer:
            def observe(_self, event: JobEvent) -> None:  # noqa: N805 - closure over self
                self.events.append(event)

        self.worker = TaskWorker(
            "w1",
            self.queue,
            {"slow": slow, "quick": quick, "shielded": shielded, "shielded_sync": shielded_sync},
            TaskWorkerConfig(poll_interval=0.05),
            TaskWorkerServices(
                result_store=self.results, dead_letter_queue=self.dlq, observers=[Observer()]
            ),
        )

    async def send(self, name: str, *args: Any, delay: float = 0.0) -> JobHandle[Any]:
        job = Job(name=name, args=args)
        if delay:
            job.scheduled_at = time.time() + delay
        (await self.queue.enqueue(job)).unwrap()
        return JobHandle(self.queue, job.id, result_store=self.results)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    harness.probe.thread_release.set()
    await harness.worker.stop()


def test_memory_queue_is_a_cancellable_queue() -> None:
    queue: CancellableQueueProtocol = MemoryTaskQueue()
    assert isinstance(queue, CancellableQueueProtocol)


async def test_cancel_a_waiting_job_removes_it_and_it_never_runs(h: Harness) -> None:
    handle = await h.send("quick", 1)
    assert await handle.cancel() is CancelOutcome.REMOVED
    assert await handle.status() is JobStatus.CANCELLED
    with pytest.raises(TaskCancelledError, match=f"Job {handle.id} was cancelled"):
        await handle.result(timeout=1)
    await h.worker.start()
    marker = await h.send("quick", 2)  # runs after the cancelled one would have
    assert await marker.result(timeout=2) == 2
    assert h.probe.calls == 1
    assert await h.queue.get_job(handle.id) is None


async def test_cancel_a_delayed_job_removes_it(h: Harness) -> None:
    handle = await h.send("quick", 1, delay=0.2)
    assert await h.queue.count(h.queue.queue_name, JobStatus.PENDING) == 1
    assert await handle.cancel() is CancelOutcome.REMOVED
    await h.worker.start()
    await asyncio.sleep(0.4)
    assert h.probe.calls == 0
    assert await h.queue.count(h.queue.queue_name) == 0
    assert await handle.status() is JobStatus.CANCELLED


async def test_cancel_a_running_job_stops_its_handler_and_records_cancelled(h: Harness) -> None:
    await h.worker.start()
    handle = await h.send("slow")
    await asyncio.wait_for(h.probe.started.wait(), 2)
    asked = time.monotonic()
    assert await handle.cancel() is CancelOutcome.STOPPING
    with pytest.raises(TaskCancelledError):
        await handle.result(timeout=2)
    for _ in range(100):
        if h.probe.cancelled_at is not None and not h.worker.is_busy():
            break
        await asyncio.sleep(0.02)
    assert h.probe.cancelled_at is not None
    assert h.probe.cancelled_at - asked < 2.0
    assert await handle.status() is JobStatus.CANCELLED
    stored = await h.results.get(handle.id)
    assert stored is not None
    assert stored.cancelled
    assert stored.status is JobStatus.CANCELLED
    # Not retried, not dead-lettered: the handler ran once and the queue forgot the job.
    await asyncio.sleep(0.2)
    assert h.probe.calls == 1
    assert h.dlq.size == 0
    assert h.worker.stats.jobs_retried == 0
    assert h.worker.stats.jobs_cancelled == 1
    assert await h.queue.count(h.queue.queue_name) == 0
    assert [e.kind for e in h.events if e.job_id == handle.id][-1] == CANCELLED


async def test_cancel_a_finished_job_says_it_finished(h: Harness) -> None:
    await h.worker.start()
    handle = await h.send("quick", 7)
    assert await handle.result(timeout=2) == 7
    assert await handle.cancel() is CancelOutcome.FINISHED
    assert not CancelOutcome.FINISHED.cancelled
    assert await handle.result(timeout=1) == 7
    assert await handle.status() is JobStatus.COMPLETED


async def test_cancel_an_unknown_job_says_not_found(h: Harness) -> None:
    handle: JobHandle[Any] = JobHandle(h.queue, "no-such-job", result_store=h.results)
    assert await handle.cancel() is CancelOutcome.NOT_FOUND


async def test_a_shielded_section_finishes_before_the_cancellation_lands(h: Harness) -> None:
    await h.worker.start()
    handle = await h.send("shielded")
    await asyncio.wait_for(h.probe.started.wait(), 2)
    assert await handle.cancel() is CancelOutcome.STOPPING
    for _ in range(100):
        if not h.worker.is_busy():
            break
        await asyncio.sleep(0.02)
    assert h.probe.section_done
    assert not h.probe.after_section
    stored = await h.results.get(handle.id)
    assert stored is not None
    assert stored.cancelled


async def test_a_shield_in_a_def_task_stops_the_thread_at_its_end(h: Harness) -> None:
    await h.worker.start()
    handle = await h.send("shielded_sync")
    for _ in range(100):
        if h.probe.calls:
            break
        await asyncio.sleep(0.02)
    assert await handle.cancel() is CancelOutcome.STOPPING
    await asyncio.sleep(0.1)
    assert h.worker.is_busy()  # the thread is still inside the shield
    h.probe.thread_release.set()
    for _ in range(100):
        if not h.worker.is_busy():
            break
        await asyncio.sleep(0.02)
    assert h.probe.section_done
    assert not h.probe.after_section
    assert h.worker.stats.jobs_cancelled == 1


async def test_shield_cancellation_outside_a_job_does_nothing() -> None:
    with shield_cancellation():
        await asyncio.sleep(0)


async def test_a_cancellation_announced_before_the_job_starts_stops_it(h: Harness) -> None:
    # The announcement can overtake the lease: the worker leased the job, then it was
    # cancelled before the worker started it. The worker remembers the id.
    job = Job(name="quick", args=(3,))
    watch = h.worker._cancels
    assert watch is not None
    watch.announced(job.id)
    (await h.queue.enqueue(job)).unwrap()
    await h.worker.start()
    handle: JobHandle[Any] = JobHandle(h.queue, job.id, result_store=h.results)
    with pytest.raises(TaskCancelledError):
        await handle.result(timeout=2)
    assert h.probe.calls == 0


class DeleteOnlyQueue:
    """A third-party queue with `TaskQueueProtocol` only (no cancellation support)."""

    def __init__(self) -> None:
        self._inner = MemoryTaskQueue(visibility_timeout=30.0)

    @property
    def queue_name(self) -> str:
        return self._inner.queue_name

    @property
    def lease_seconds(self) -> float:
        return self._inner.lease_seconds

    async def enqueue(self, task: Job) -> Result[str, TaskQueueError]:
        return await self._inner.enqueue(task)

    async def enqueue_many(self, tasks: Sequence[Job]) -> list[Result[str, TaskQueueError]]:
        return await self._inner.enqueue_many(tasks)

    async def dequeue(self) -> Job | None:
        return await self._inner.dequeue()

    async def dequeue_batch(self, max_jobs: int, *, timeout: float = 0.0) -> list[Job]:
        return await self._inner.dequeue_batch(max_jobs, timeout=timeout)

    async def extend_lease(
        self, task_id: str, seconds: float | None = None, *, lease_token: str | None = None
    ) -> bool:
        return await self._inner.extend_lease(task_id, seconds, lease_token=lease_token)

    async def ack(self, task_id: str, *, lease_token: str | None = None) -> bool:
        return await self._inner.ack(task_id, lease_token=lease_token)

    async def nack(
        self, task_id: str, requeue: bool = True, *, lease_token: str | None = None
    ) -> bool:
        return await self._inner.nack(task_id, requeue, lease_token=lease_token)

    async def retry_later(self, task: Job, *, delay: float = 0.0) -> bool:
        return await self._inner.retry_later(task, delay=delay)

    async def get_task_count(self) -> int:
        return await self._inner.get_task_count()

    async def get_job(self, job_id: str) -> Job | None:
        return await self._inner.get_job(job_id)

    async def delete_job(self, job_id: str) -> bool:
        return await self._inner.delete_job(job_id)

    async def count(self, queue_name: str, status: JobStatus | None = None) -> int:
        return await self._inner.count(queue_name, status)

    async def clear(self) -> None:
        await self._inner.clear()

    async def close(self) -> None:
        await self._inner.close()


async def test_a_queue_without_the_capability_cancels_waiting_jobs_only() -> None:
    harness = Harness(DeleteOnlyQueue())
    assert not isinstance(harness.queue, CancellableQueueProtocol)
    try:
        waiting = await harness.send("quick", 1)
        assert await waiting.cancel() is CancelOutcome.REMOVED
        assert await waiting.status() is JobStatus.CANCELLED
        await harness.worker.start()
        running = await harness.send("slow")
        await asyncio.wait_for(harness.probe.started.wait(), 2)
        assert await running.cancel() is CancelOutcome.UNSUPPORTED
        assert await running.status() is JobStatus.RUNNING
        assert harness.probe.calls == 1
    finally:
        await harness.worker.stop()


async def test_cancelling_the_job_that_runs_a_chain_stops_its_remaining_steps() -> None:
    ran: list[str] = []
    second_started = asyncio.Event()

    async def first(data: int) -> int:
        ran.append("first")
        return data + 1

    async def second(data: int) -> int:
        ran.append("second")
        second_started.set()
        await asyncio.sleep(30)
        return data + 1

    async def third(data: int) -> int:
        ran.append("third")
        return data + 1

    async def pipeline(start: int) -> Any:
        steps = [TaskStep("first", first), TaskStep("second", second), TaskStep("third", third)]
        return await TaskChain(steps).execute(start)

    queue = MemoryTaskQueue(visibility_timeout=30.0)
    results = InMemoryResultStore()
    worker = TaskWorker(
        "w-chain",
        queue,
        {"pipeline": pipeline},
        TaskWorkerConfig(poll_interval=0.05),
        TaskWorkerServices(result_store=results),
    )
    await worker.start()
    try:
        job = Job(name="pipeline", args=(1,))
        (await queue.enqueue(job)).unwrap()
        await asyncio.wait_for(second_started.wait(), 2)
        handle: JobHandle[Any] = JobHandle(queue, job.id, result_store=results)
        assert await handle.cancel() is CancelOutcome.STOPPING
        for _ in range(100):
            if not worker.is_busy():
                break
            await asyncio.sleep(0.02)
        assert not worker.is_busy()
        assert ran == ["first", "second"]
        assert await handle.status() is JobStatus.CANCELLED
    finally:
        await worker.stop()


async def test_cancel_a_job_waiting_for_its_rate_limit_token_ends_it_unrun() -> None:
    ran: list[int] = []
    first_ran = asyncio.Event()

    @task(name="cancel.rated", rate_limit="1/m")
    async def rated(n: int) -> None:
        ran.append(n)
        first_ran.set()

    queue = MemoryTaskQueue(visibility_timeout=30.0)
    results = InMemoryResultStore()
    registry = HandlerRegistry()
    registry.register("cancel.rated", rated)
    jobs = [Job(name="cancel.rated", args=(n,)) for n in range(2)]
    await queue.enqueue_many(jobs)
    services = TaskWorkerServices(result_store=results)
    worker = TaskWorker("w-rated", queue, registry, services=services)
    await worker.start()
    try:
        await asyncio.wait_for(first_ran.wait(), 5)
        await asyncio.sleep(0.1)  # the second job is taken and waits for the next token
        assert worker.in_flight == 1
        handle: JobHandle[Any] = JobHandle(queue, jobs[1].id, result_store=results)
        assert await handle.cancel() is CancelOutcome.STOPPING
        for _ in range(100):
            if not worker.is_busy():
                break
            await asyncio.sleep(0.02)
        assert not worker.is_busy()
        assert ran == [0]
        assert await handle.status() is JobStatus.CANCELLED
        assert await queue.count(queue.queue_name) == 0
        assert worker.stats.jobs_cancelled == 1
    finally:
        await worker.stop()
