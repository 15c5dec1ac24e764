"""Conformance: inspecting and managing jobs, and concurrent consumers.

Themes: `get_job`, `delete_job`, `count`, `get_task_count`, `clear`, `close`; and
exactly-once hand-out to competing consumers.
"""

# ruff: noqa: S101, PLR2004 - the kit is pytest tests: asserts on literal expected counts

from __future__ import annotations

import asyncio
import time
from collections import Counter

from lexigram.contracts.tasks import JobStatus, TaskQueueProtocol
from lexigram.tasks.testing._base import (
    QueueConformanceBase,
    QueueFactory,
    enqueue_ok,
    lease_one,
    make_job,
    next_job,
    status_of,
)


class QueueJobManagementConformance(QueueConformanceBase):
    """`get_job`, `delete_job`, `count`, `get_task_count`, `clear` and `close` all work."""

    async def test_get_job_returns_waiting_job(self, queue: TaskQueueProtocol) -> None:
        """A waiting job is returned with its fields and a waiting status."""
        job = make_job(args=(1, 2), kwargs={"to": "a@b.c"}, priority=3)
        await enqueue_ok(queue, job)
        found = await queue.get_job(job.id)
        assert found is not None, "get_job returned None for a waiting job"
        assert (found.id, found.name, found.args, found.kwargs, found.priority) == (
            job.id,
            job.name,
            (1, 2),
            {"to": "a@b.c"},
            3,
        )
        assert status_of(found) is JobStatus.PENDING

    async def test_get_job_returns_in_flight_job(self, queue: TaskQueueProtocol) -> None:
        """A leased job is returned with status RUNNING."""
        job = make_job()
        await enqueue_ok(queue, job)
        await lease_one(queue)
        found = await queue.get_job(job.id)
        assert found is not None, "get_job returned None for an in-flight job"
        assert found.id == job.id
        assert status_of(found) is JobStatus.RUNNING

    async def test_get_job_unknown_returns_none(self, queue: TaskQueueProtocol) -> None:
        """An id the queue does not hold gives None."""
        assert await queue.get_job("no-such-job") is None

    async def test_delete_waiting_job(self, queue: TaskQueueProtocol) -> None:
        """A deleted waiting job is gone: not delivered, not counted, not found."""
        doomed, kept = make_job(), make_job()
        await enqueue_ok(queue, doomed)
        await enqueue_ok(queue, kept)
        assert await queue.delete_job(doomed.id) is True
        assert await queue.delete_job(doomed.id) is False
        assert await queue.get_job(doomed.id) is None
        assert await queue.get_task_count() == 1
        leased = await queue.dequeue()
        assert leased is not None
        assert leased.id == kept.id
        assert await queue.dequeue() is None

    async def test_delete_delayed_job(self, queue: TaskQueueProtocol) -> None:
        """A job waiting for its `scheduled_at` can be deleted too."""
        job = make_job(scheduled_at=time.time() + 3600)
        await enqueue_ok(queue, job)
        assert await queue.delete_job(job.id) is True
        assert await queue.get_task_count() == 0

    async def test_delete_in_flight_job_is_never_redelivered(
        self, queue: TaskQueueProtocol, lease_seconds: float
    ) -> None:
        """A job deleted while leased does not come back when its lease would have ended."""
        job = make_job()
        await enqueue_ok(queue, job)
        await lease_one(queue)
        assert await queue.delete_job(job.id) is True
        again = await next_job(queue, lease_seconds * 1.5)
        assert again is None, "a job deleted while in flight was delivered again"
        assert await queue.get_job(job.id) is None
        assert await queue.count(queue.queue_name) == 0

    async def test_deleted_in_flight_job_cannot_be_extended_or_requeued(
        self, queue: TaskQueueProtocol
    ) -> None:
        """After delete, the holder's heartbeat gets False and its ack/nack change nothing."""
        job = make_job()
        await enqueue_ok(queue, job)
        await lease_one(queue)
        assert await queue.delete_job(job.id) is True
        assert await queue.extend_lease(job.id) is False
        await queue.nack(job.id, requeue=True)
        await queue.ack(job.id)
        assert await queue.dequeue() is None, "nack(requeue=True) resurrected a deleted job"
        assert await queue.count(queue.queue_name) == 0

    async def test_delete_unknown_job_returns_false(self, queue: TaskQueueProtocol) -> None:
        """Deleting an id the queue does not hold returns False."""
        assert await queue.delete_job("no-such-job") is False

    async def test_count_by_status(self, queue: TaskQueueProtocol) -> None:
        """`count` splits waiting (PENDING), retrying (RETRYING) and in-flight (RUNNING)."""
        name = queue.queue_name
        running = make_job(priority=9)
        retrying = make_job(priority=8)
        await enqueue_ok(queue, running)
        await enqueue_ok(queue, retrying)
        for _ in range(2):
            await lease_one(queue)
        held = await queue.get_job(retrying.id)
        assert held is not None
        held.mark_retrying()
        await queue.retry_later(held, delay=3600)
        for job in (make_job(), make_job(), make_job(scheduled_at=time.time() + 3600)):
            await enqueue_ok(queue, job)
        assert await queue.count(name) == 5
        assert await queue.count(name, None) == 5
        assert await queue.count(name, JobStatus.PENDING) == 4
        assert await queue.count(name, JobStatus.RETRYING) == 1
        assert await queue.count(name, JobStatus.RUNNING) == 1
        assert await queue.count(name, JobStatus.COMPLETED) == 0
        assert await queue.count(name, JobStatus.FAILED) == 0
        assert await queue.count(name, JobStatus.CANCELLED) == 0

    async def test_count_other_queue_name_is_zero(self, queue: TaskQueueProtocol) -> None:
        """Jobs of this queue are not counted under another queue's name."""
        await enqueue_ok(queue, make_job())
        assert await queue.count(queue.queue_name) == 1
        assert await queue.count(f"{queue.queue_name}-other") == 0

    async def test_get_task_count_counts_waiting_jobs_only(self, queue: TaskQueueProtocol) -> None:
        """Ready and delayed jobs count; in-flight ones do not."""
        await enqueue_ok(queue, make_job(priority=5))
        await enqueue_ok(queue, make_job())
        await enqueue_ok(queue, make_job(scheduled_at=time.time() + 3600))
        assert await queue.get_task_count() == 3
        await lease_one(queue)
        assert await queue.get_task_count() == 2

    async def test_clear_removes_waiting_and_in_flight_jobs(self, queue: TaskQueueProtocol) -> None:
        """After `clear` nothing is held: no job, no count, no lease to extend."""
        in_flight = make_job(priority=9)
        await enqueue_ok(queue, in_flight)
        await enqueue_ok(queue, make_job())
        await enqueue_ok(queue, make_job(scheduled_at=time.time() + 3600))
        await lease_one(queue)
        await queue.clear()
        assert await queue.get_task_count() == 0
        assert await queue.count(queue.queue_name) == 0
        assert await queue.get_job(in_flight.id) is None
        assert await queue.extend_lease(in_flight.id) is False
        assert await queue.dequeue() is None

    async def test_close_is_idempotent(self, make_queue: QueueFactory) -> None:
        """`close` may be called twice."""
        queue = await make_queue()
        await queue.close()
        await queue.close()


class QueueConcurrencyConformance(QueueConformanceBase):
    """Competing consumers and producers: every job is handed out exactly once."""

    jobs_total = 120
    consumers_total = 4

    async def _consume_all(self, consumers: list[TaskQueueProtocol], expected: int) -> Counter[str]:
        received: Counter[str] = Counter()
        done = asyncio.Event()
        deadline = time.monotonic() + self.prompt_seconds * 2

        async def consume(consumer: TaskQueueProtocol) -> None:
            while not done.is_set() and time.monotonic() < deadline:
                batch = await consumer.dequeue_batch(7, timeout=0.1)
                for job in batch:
                    received[job.id] += 1
                    await consumer.ack(job.id)
                if sum(received.values()) >= expected:
                    done.set()
                await asyncio.sleep(0)  # interleave the consumers

        await asyncio.gather(*(consume(consumer) for consumer in consumers))
        return received

    async def test_concurrent_consumers_receive_each_job_once(
        self, make_queue: QueueFactory
    ) -> None:
        """N consumer handles on one queue drain M jobs: each job delivered exactly once."""
        producer = await make_queue()
        jobs = [make_job(kwargs={"n": index}) for index in range(self.jobs_total)]
        for result in await producer.enqueue_many(jobs):
            assert result.is_ok(), f"enqueue_many returned {result!r}"
        consumers = [await make_queue() for _ in range(self.consumers_total)]
        received = await self._consume_all(consumers, len(jobs))
        duplicates = sorted(job_id for job_id, times in received.items() if times > 1)
        assert not duplicates, f"{len(duplicates)} jobs were delivered twice"
        assert set(received) == {job.id for job in jobs}, "some jobs were never delivered"
        assert await producer.count(producer.queue_name) == 0

    async def test_concurrent_tasks_on_one_queue_receive_each_job_once(
        self, queue: TaskQueueProtocol
    ) -> None:
        """Several tasks sharing one queue object drain it with no job given twice."""
        jobs = [make_job(priority=index % 3) for index in range(self.jobs_total)]
        for job in jobs:
            await enqueue_ok(queue, job)
        received = await self._consume_all([queue] * self.consumers_total * 2, len(jobs))
        assert all(times == 1 for times in received.values()), "a job was delivered twice"
        assert set(received) == {job.id for job in jobs}, "some jobs were never delivered"

    async def test_concurrent_producers_enqueue_every_job(
        self, queue: TaskQueueProtocol, make_queue: QueueFactory
    ) -> None:
        """Producers enqueueing at the same time lose no job."""
        producers = [await make_queue() for _ in range(self.consumers_total)]
        per_producer = self.jobs_total // self.consumers_total

        async def produce(producer: TaskQueueProtocol) -> list[str]:
            ids = []
            for _ in range(per_producer):
                ids.append(await enqueue_ok(producer, make_job()))
                await asyncio.sleep(0)
            return ids

        batches = await asyncio.gather(*(produce(producer) for producer in producers))
        ids = [job_id for batch in batches for job_id in batch]
        assert len(set(ids)) == len(ids) == per_producer * len(producers)
        assert await queue.get_task_count() == len(ids)


__all__ = ["QueueConcurrencyConformance", "QueueJobManagementConformance"]
