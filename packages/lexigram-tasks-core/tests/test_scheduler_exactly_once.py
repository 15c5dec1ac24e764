"""Several scheduler processes sharing one queue fire each cron occurrence exactly once.

The schedulers run in one event loop here, but share nothing except the store and the
queue, which is all that separate processes share.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, JobTemplate, TaskQueueError
from lexigram.contracts.tasks import Result as QueueResult
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.scheduling import InMemorySchedulerStore, TaskScheduler, fire_key


class _Consumer:
    """Dequeues and acks jobs while the schedulers run (keys must stay deduplicated)."""

    def __init__(self, queue: MemoryTaskQueue) -> None:
        self.queue = queue
        self.jobs: list[Job] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            for job in await self.queue.dequeue_batch(100, timeout=0.5):
                self.jobs.append(job)
                await self.queue.ack(job.id)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.jobs.extend(await self.queue.dequeue_batch(1000))


@pytest.mark.slow
async def test_three_schedulers_sharing_a_queue_fire_each_occurrence_once() -> None:
    queue = MemoryTaskQueue()
    store = InMemorySchedulerStore()
    attempts: Counter[str] = Counter()

    async def enqueue(job: Job) -> QueueResult[str, TaskQueueError]:
        assert job.idempotency_key is not None
        attempts[job.idempotency_key] += 1
        return await queue.enqueue(job)

    # One process defines the schedule; the others load it from the shared store, so
    # all three share the schedule id (and therefore each occurrence's key and job id).
    first = TaskScheduler(check_interval=1.0, store=store)
    schedule_id = await first.schedule_job(JobTemplate(name="tick"), "* * * * * *")
    schedulers = [first, TaskScheduler(check_interval=1.0, store=store)]
    schedulers.append(TaskScheduler(check_interval=1.0, store=store))
    for scheduler in schedulers[1:]:
        assert await scheduler.restore_from_store() == 1

    consumer = _Consumer(queue)
    consumer.start()
    for scheduler in schedulers:
        await scheduler.start_scheduler(enqueue)
    try:
        await asyncio.sleep(2.5)  # the observation window, not a synchronisation
        # One process dies and a replacement restores from the store mid-run.
        await schedulers[2].stop_scheduler()
        replacement = TaskScheduler(check_interval=1.0, store=store)
        await replacement.restore_from_store()
        await replacement.start_scheduler(enqueue)
        schedulers[2] = replacement
        await asyncio.sleep(2.5)
    finally:
        for scheduler in schedulers:
            await scheduler.stop_scheduler()
        await consumer.stop()

    keys = [job.idempotency_key for job in consumer.jobs]
    fire_times = sorted(int(job.metadata["fire_time"]) for job in consumer.jobs)
    # Exactly once: no duplicate occurrence, no gap between the first and the last.
    assert len(keys) == len(set(keys))
    assert fire_times == list(range(fire_times[0], fire_times[-1] + 1))
    assert len(fire_times) >= 4
    # Every attempted occurrence is in the queue, and most were attempted by all three.
    assert set(attempts) == set(keys)
    assert max(attempts.values()) == 3
    assert sum(attempts.values()) > len(keys)
    for job in consumer.jobs:
        assert job.idempotency_key == fire_key(schedule_id, job.metadata["fire_time"])
        assert job.cron_expression == "* * * * * *"


async def test_same_occurrence_from_two_schedulers_is_enqueued_once() -> None:
    # The deterministic part without waiting on the clock: both schedulers build the
    # same job for one occurrence and the queue keeps the first.
    queue = MemoryTaskQueue()
    template = JobTemplate(name="report")
    a, b = TaskScheduler(), TaskScheduler()
    a.schedule_job_sync(template, "0 9 * * *", "daily-report")
    b.schedule_job_sync(template, "0 9 * * *", "daily-report")
    fire_time = a.scheduled_jobs["daily-report"].next_run
    results: list[Any] = []
    for scheduler in (a, b, a):
        job = scheduler.make_job(scheduler.scheduled_jobs["daily-report"], fire_time)
        results.append((await queue.enqueue(job)).unwrap())
    assert len(set(results)) == 1
    assert await queue.get_task_count() == 1


async def test_late_scheduler_does_not_rerun_an_occurrence_already_finished() -> None:
    # Regression: with instant acks, a second scheduler firing a moment later must be
    # refused by the held key, even though the first copy has already left the queue.
    queue = MemoryTaskQueue()
    first, second = TaskScheduler(), TaskScheduler()
    template = JobTemplate(name="tick")
    for scheduler in (first, second):
        scheduler.schedule_job_sync(template, "* * * * * *", "shared")
    fire_time = 1_700_000_000.0
    early = first.make_job(first.scheduled_jobs["shared"], fire_time)
    late = second.make_job(second.scheduled_jobs["shared"], fire_time)
    assert (await queue.enqueue(early)).unwrap() == early.id
    leased = await queue.dequeue()
    assert leased is not None
    await queue.ack(leased.id)
    assert (await queue.enqueue(late)).unwrap() == early.id
    assert await queue.get_task_count() == 0
