"""Conformance: leases, acknowledgements and retries (at-least-once delivery).

Tests that must see a lease run out wait on the queue itself (`dequeue_batch` with a
timeout a little longer than the lease), never on a bare sleep.
"""

# ruff: noqa: S101 - the kit is a set of pytest tests; assert is how they check

from __future__ import annotations

import time

from lexigram.contracts.tasks import Job, JobStatus, TaskQueueProtocol
from lexigram.tasks.testing._base import (
    QueueConformanceBase,
    QueueFactory,
    enqueue_ok,
    lease_one,
    make_job,
    next_job,
    status_of,
)


class QueueLeaseConformance(QueueConformanceBase):
    """An unfinished lease runs out and the job is delivered again; heartbeats keep it."""

    async def test_lease_expiry_redelivers_job(
        self, queue: TaskQueueProtocol, lease_seconds: float
    ) -> None:
        """A job neither acked nor nacked is delivered again with `delivery_count` raised."""
        job = make_job()
        await enqueue_ok(queue, job)
        first = await lease_one(queue)
        first_count = first.delivery_count
        again = await next_job(queue, lease_seconds + self.prompt_seconds)
        assert again is not None, "a job whose lease expired was never delivered again"
        assert again.id == job.id
        assert again.delivery_count > first_count
        assert status_of(again) is JobStatus.RUNNING
        await queue.ack(again.id)

    async def test_lease_expiry_redelivers_to_another_consumer(
        self, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        """A consumer that dies holding a job does not lose it: another consumer gets it."""
        crashed = await make_queue()
        survivor = await make_queue()
        job = make_job()
        await enqueue_ok(crashed, job)
        await lease_one(crashed)
        await crashed.close()  # the process is gone; its lease is all that is left
        again = await next_job(survivor, lease_seconds + self.prompt_seconds)
        assert again is not None, "the job of a dead consumer was never delivered again"
        assert again.id == job.id
        await survivor.ack(again.id)
        assert await survivor.get_job(job.id) is None

    async def test_extend_lease_keeps_job_from_redelivery(
        self, queue: TaskQueueProtocol, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        """Heartbeats keep a job leased well past its original lease."""
        other = await make_queue()
        job = make_job()
        await enqueue_ok(queue, job)
        await lease_one(queue)
        started = time.monotonic()
        # The other consumer's wait is the heartbeat interval: a third of the lease.
        while time.monotonic() - started < lease_seconds * 2:
            stolen = await other.dequeue_batch(1, timeout=lease_seconds / 3)
            assert stolen == [], "a job whose lease was being extended was delivered again"
            assert await queue.extend_lease(job.id), "extend_lease of a held job returned False"
        await queue.ack(job.id)
        assert await queue.get_job(job.id) is None

    async def test_extend_lease_with_seconds_outlasts_visibility_timeout(
        self, queue: TaskQueueProtocol, lease_seconds: float
    ) -> None:
        """`extend_lease(id, seconds)` sets the lease to `seconds` from now."""
        job = make_job()
        await enqueue_ok(queue, job)
        await lease_one(queue)
        assert await queue.extend_lease(job.id, lease_seconds * 4)
        stolen = await next_job(queue, lease_seconds * 1.5)
        assert stolen is None, "a job was delivered again before its extended lease ended"
        await queue.ack(job.id)

    async def test_extend_lease_unknown_job_returns_false(self, queue: TaskQueueProtocol) -> None:
        """A job the queue never leased has no lease to extend."""
        assert await queue.extend_lease("no-such-job") is False

    async def test_extend_lease_after_ack_or_nack_returns_false(
        self, queue: TaskQueueProtocol
    ) -> None:
        """Once a lease ends (ack, nack), extending it returns False."""
        acked, nacked = make_job(), make_job()
        await enqueue_ok(queue, acked)
        await enqueue_ok(queue, nacked)
        for _ in range(2):
            await lease_one(queue)
        await queue.ack(acked.id)
        await queue.nack(nacked.id, requeue=False)
        assert await queue.extend_lease(acked.id) is False
        assert await queue.extend_lease(nacked.id) is False


class QueueAcknowledgementConformance(QueueConformanceBase):
    """`ack` forgets, `nack` requeues or discards, `retry_later` persists and delays."""

    async def test_ack_and_discarding_nack_forget_the_job(
        self, queue: TaskQueueProtocol, lease_seconds: float
    ) -> None:
        """Acked and nack(requeue=False) jobs are gone, even after their lease would end."""
        acked, discarded = make_job(), make_job()
        await enqueue_ok(queue, acked)
        await enqueue_ok(queue, discarded)
        for _ in range(2):
            await lease_one(queue)
        await queue.ack(acked.id)
        await queue.nack(discarded.id, requeue=False)
        assert await queue.get_job(acked.id) is None
        assert await queue.get_job(discarded.id) is None
        assert await queue.count(queue.queue_name) == 0
        late = await next_job(queue, lease_seconds * 1.5)
        assert late is None, "a finished job came back after its lease would have ended"

    async def test_ack_and_nack_of_unknown_job_are_noops(self, queue: TaskQueueProtocol) -> None:
        """Acking or nacking a job the queue does not hold changes nothing and raises nothing."""
        job = make_job()
        await enqueue_ok(queue, job)
        await queue.ack("no-such-job")
        await queue.nack("no-such-job")
        await queue.nack("no-such-job", requeue=False)
        assert await queue.get_task_count() == 1

    async def test_nack_requeue_makes_job_available_now(
        self, queue: TaskQueueProtocol, lease_seconds: float
    ) -> None:
        """`nack(requeue=True)` returns the job at once, waiting (PENDING), not after the lease."""
        job = make_job()
        await enqueue_ok(queue, job)
        first = await lease_one(queue)
        first_count = first.delivery_count
        await queue.nack(first.id, requeue=True)
        waiting = await queue.get_job(job.id)
        assert waiting is not None, "a requeued job is not held by the queue"
        assert status_of(waiting) is JobStatus.PENDING
        again = await next_job(queue, lease_seconds * 0.8)
        assert again is not None, "a requeued job was not available before its lease ran out"
        assert again.id == job.id
        assert again.delivery_count == first_count + 1
        await queue.ack(again.id)

    async def test_retry_later_persists_retry_state_and_delays(
        self, queue: TaskQueueProtocol
    ) -> None:
        """`retry_later` keeps the job's new retry_count/last_error and honours the delay."""
        job = make_job(max_retries=3)
        await enqueue_ok(queue, job)
        leased = await lease_one(queue)
        first_count = leased.delivery_count
        # A separate object, as a worker in another process would hold: the queue must
        # persist the fields of the object it is given.
        failed = Job.from_dict(leased.to_dict())
        failed.mark_retrying()
        failed.last_error = "ConnectionError: upstream timed out"
        delay = 0.5
        # From before the call: the checks below take round trips of their own, which on a
        # slow machine are most of the delay.
        started = time.monotonic()
        await queue.retry_later(failed, delay=delay)
        assert await queue.dequeue() is None, "a job retried with a delay came back at once"
        waiting = await queue.get_job(job.id)
        assert waiting is not None, "a job waiting for its retry is not held by the queue"
        assert status_of(waiting) is JobStatus.RETRYING
        assert waiting.retry_count == 1
        assert await queue.count(queue.queue_name, JobStatus.RETRYING) == 1
        again = await next_job(queue, delay + self.prompt_seconds)
        assert again is not None, "a job retried with a delay never came back"
        assert time.monotonic() - started >= delay * 0.5, "the retry delay was not honoured"
        assert again.id == job.id
        assert again.retry_count == 1
        assert again.last_error == "ConnectionError: upstream timed out"
        assert again.delivery_count == first_count + 1
        await queue.ack(again.id)

    async def test_retry_later_without_delay_is_available_now(
        self, queue: TaskQueueProtocol, lease_seconds: float
    ) -> None:
        """`retry_later(job, delay=0)` makes the job available at once."""
        job = make_job()
        await enqueue_ok(queue, job)
        leased = await lease_one(queue)
        leased.mark_retrying()
        await queue.retry_later(leased, delay=0.0)
        again = await next_job(queue, lease_seconds * 0.8)
        assert again is not None, "a job retried without delay was not available at once"
        assert again.id == job.id
        assert again.retry_count == 1
        await queue.ack(again.id)


__all__ = ["QueueAcknowledgementConformance", "QueueLeaseConformance"]
