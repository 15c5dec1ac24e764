"""Conformance: what goes in comes out, in the right order, when it should.

Themes: round trip and validation, idempotency, ordering (priority, FIFO, delayed
jobs), and `dequeue_batch` waiting.
"""

# ruff: noqa: S101, PLR2004 - the kit is pytest tests: asserts on literal expected counts

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from lexigram.contracts.tasks import Job, JobStatus, Ok, TaskQueueProtocol
from lexigram.tasks.testing._base import (
    CLOCK_TOLERANCE,
    QueueConformanceBase,
    QueueFactory,
    assert_validation_error,
    drain,
    enqueue_ok,
    lease_one,
    make_job,
    next_job,
    status_of,
)

KeyTTLQueueFactory = Callable[[float], Awaitable[TaskQueueProtocol]]
"""The type of the optional ``make_queue_with_idempotency_ttl`` fixture: given seconds, a
queue like ``make_queue``'s whose idempotency keys are held that long (its TTL option)."""

# Fields a queue manages itself; every other field must survive the round trip.
_QUEUE_MANAGED_FIELDS = ("status", "delivery_count")


class QueueRoundTripConformance(QueueConformanceBase):
    """A job comes back exactly as it went in; invalid jobs are refused with an `Err`."""

    async def test_queue_name_is_a_non_empty_string(self, queue: TaskQueueProtocol) -> None:
        """`queue_name` names the queue the object serves."""
        assert isinstance(queue.queue_name, str)
        assert queue.queue_name

    async def test_dequeue_empty_queue_returns_none(self, queue: TaskQueueProtocol) -> None:
        """`dequeue` on an empty queue returns None at once."""
        assert await queue.dequeue() is None

    async def test_enqueue_returns_ok_with_job_id(self, queue: TaskQueueProtocol) -> None:
        """`enqueue` returns Ok(job.id)."""
        job = make_job()
        assert await enqueue_ok(queue, job) == job.id

    async def test_round_trip_preserves_every_field(self, queue: TaskQueueProtocol) -> None:
        """Every field (args, kwargs, ids, metadata, ...) survives enqueue and dequeue."""
        job = Job(
            name="conformance.round_trip",
            args=(1, "two", [3.5, None], {"nested": True}),
            kwargs={"user_id": 7, "tags": ["a", "b"], "options": {"depth": [1, 2]}},
            priority=7,
            max_retries=5,
            timeout=12.5,
            depends_on=["upstream-1"],
            correlation_id="correlation-1",
            causation_id="causation-1",
            cron_expression="*/5 * * * *",
            queue_name=queue.queue_name,
            metadata={"tenant": "acme", "trace": {"span": 3}, "unicode": "héllo ✓"},
        )
        expected = job.to_dict()
        await enqueue_ok(queue, job)
        leased = await queue.dequeue()
        assert isinstance(leased, Job), f"dequeue returned {leased!r}, expected the job"
        got = leased.to_dict()
        for name in _QUEUE_MANAGED_FIELDS:
            expected.pop(name)
            got.pop(name)
        assert got == expected

    async def test_dequeue_marks_job_running_and_counts_delivery(
        self, queue: TaskQueueProtocol
    ) -> None:
        """A dequeued job has status RUNNING and its `delivery_count` raised by one."""
        job = make_job(delivery_count=0)
        await enqueue_ok(queue, job)
        leased = await lease_one(queue)
        assert leased.id == job.id
        assert status_of(leased) is JobStatus.RUNNING
        assert leased.delivery_count == 1

    async def test_enqueue_non_json_argument_returns_validation_error(
        self, queue: TaskQueueProtocol
    ) -> None:
        """A job whose arguments JSON cannot carry is refused with an Err, not raised."""
        bad_arg = make_job(args=(object(),))
        assert_validation_error(await queue.enqueue(bad_arg), "a job with an object() argument")
        bad_kwarg = make_job(kwargs={"when": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)})
        assert_validation_error(await queue.enqueue(bad_kwarg), "a job with a datetime kwarg")
        assert await queue.get_task_count() == 0
        assert await queue.get_job(bad_arg.id) is None

    async def test_enqueue_out_of_range_priority_returns_validation_error(
        self, queue: TaskQueueProtocol
    ) -> None:
        """A priority outside 0..255 is refused with Err(TaskValidationError)."""
        assert_validation_error(await queue.enqueue(make_job(priority=-1)), "priority -1")
        assert_validation_error(await queue.enqueue(make_job(priority=256)), "priority 256")
        assert await queue.get_task_count() == 0

    async def test_enqueue_id_without_utf8_form_returns_validation_error(
        self, queue: TaskQueueProtocol
    ) -> None:
        """An id with a lone surrogate (no UTF-8 form) is refused with an Err.

        Alone or in a batch, as `encode_job` refuses it: a server would fail on its bytes.
        """
        bad = make_job(id="scan-\udcff.pdf")
        assert_validation_error(await queue.enqueue(bad), "a job id with a lone surrogate")
        good = make_job()
        results = await queue.enqueue_many([bad, good])
        assert_validation_error(results[0], "a job id with a lone surrogate, in a batch")
        assert results[1] == Ok(good.id)
        assert [job.id for job in await drain(queue)] == [good.id]

    async def test_enqueue_many_returns_one_result_per_job_in_order(
        self, queue: TaskQueueProtocol
    ) -> None:
        """`enqueue_many` returns a result per job, in order; a bad job does not stop it."""
        first, second = make_job(), make_job()
        bad = make_job(args=({1, 2},))
        results = await queue.enqueue_many([first, bad, second])
        assert len(results) == 3
        assert results[0] == Ok(first.id)
        assert_validation_error(results[1], "a job with a set argument")
        assert results[2] == Ok(second.id)
        assert [job.id for job in await drain(queue)] == [first.id, second.id]


class QueueIdempotencyConformance(QueueConformanceBase):
    """A job id or idempotency key already held does not add a second job.

    The rule that a key outlives its TTL while its job is still in the queue needs a
    short TTL: a backend checks it by overriding the ``make_queue_with_idempotency_ttl``
    fixture in its subclass (a `KeyTTLQueueFactory` on the test's own queue, cleaned up
    like ``make_queue``'s); without it that test is skipped.
    """

    key_ttl: float = 1.0
    """The idempotency TTL, in seconds, the kit asks ``make_queue_with_idempotency_ttl`` for."""

    @pytest.fixture
    def make_queue_with_idempotency_ttl(self) -> KeyTTLQueueFactory:
        """Supplied by a backend that can set its idempotency TTL (see the class)."""
        pytest.skip(
            "override the make_queue_with_idempotency_ttl fixture to check that a key "
            "is held past its TTL while its job is in the queue"
        )

    async def test_idempotency_key_held_while_its_job_outlives_the_ttl(
        self, make_queue_with_idempotency_ttl: KeyTTLQueueFactory
    ) -> None:
        """A key is held past its TTL while its job waits or runs, and free once both ended."""
        ttl = self.key_ttl
        queue = await make_queue_with_idempotency_ttl(ttl)
        first = make_job(idempotency_key="slow-lane")
        await enqueue_ok(queue, first)
        await asyncio.sleep(ttl + CLOCK_TOLERANCE)
        assert await enqueue_ok(queue, make_job(idempotency_key="slow-lane")) == first.id, (
            "a key whose TTL passed while its job still waited was given to a new job"
        )
        leased = await lease_one(queue)
        assert leased.id == first.id
        assert await enqueue_ok(queue, make_job(idempotency_key="slow-lane")) == first.id, (
            "a key whose TTL passed while its job ran was given to a new job"
        )
        assert await queue.ack(leased.id, lease_token=leased.lease_token) is True
        second = make_job(idempotency_key="slow-lane")
        assert await enqueue_ok(queue, second) == second.id, (
            "a key whose TTL passed was still held after its job left the queue"
        )
        assert [job.id for job in await drain(queue)] == [second.id]

    async def test_same_job_id_enqueued_twice_keeps_one_job(self, queue: TaskQueueProtocol) -> None:
        """Enqueueing an id that is already waiting returns Ok(id) and adds nothing."""
        job = make_job()
        await enqueue_ok(queue, job)
        again = make_job(id=job.id)
        assert await enqueue_ok(queue, again) == job.id
        assert await queue.get_task_count() == 1
        assert [leased.id for leased in await drain(queue)] == [job.id]

    async def test_same_job_id_while_in_flight_is_not_duplicated(
        self, queue: TaskQueueProtocol
    ) -> None:
        """Enqueueing the id of an in-flight job returns Ok(id) and adds nothing."""
        job = make_job()
        await enqueue_ok(queue, job)
        await lease_one(queue)
        assert await enqueue_ok(queue, make_job(id=job.id)) == job.id
        assert await queue.count(queue.queue_name) == 1
        assert await queue.dequeue() is None

    async def test_idempotency_key_duplicate_returns_first_id(
        self, queue: TaskQueueProtocol
    ) -> None:
        """A second job with a held idempotency key returns the first id, one job total."""
        first = make_job(idempotency_key="order-42")
        second = make_job(idempotency_key="order-42")
        assert await enqueue_ok(queue, first) == first.id
        assert await enqueue_ok(queue, second) == first.id
        assert await queue.get_task_count() == 1
        assert await queue.get_job(second.id) is None
        assert [job.id for job in await drain(queue)] == [first.id]

    async def test_idempotency_key_held_after_first_job_acked(
        self, queue: TaskQueueProtocol
    ) -> None:
        """The key stays held within its TTL after the first job finished."""
        first = make_job(idempotency_key="invoice-7")
        await enqueue_ok(queue, first)
        leased = await lease_one(queue)
        assert await queue.ack(leased.id, lease_token=leased.lease_token) is True
        assert await enqueue_ok(queue, make_job(idempotency_key="invoice-7")) == first.id
        assert await queue.get_task_count() == 0

    async def test_finished_job_resubmitted_under_its_own_key_runs_again(
        self, queue: TaskQueueProtocol
    ) -> None:
        """The same job (same id and key) enqueued again after it left the queue is accepted.

        This is how a dead-lettered job is retried: its key still maps to its own id, so
        the resubmission is that job again, not a duplicate of another one.
        """
        job = make_job(idempotency_key="export-3")
        await enqueue_ok(queue, job)
        leased = await lease_one(queue)
        await queue.ack(leased.id)
        again = make_job(id=job.id, idempotency_key="export-3")
        assert await enqueue_ok(queue, again) == job.id
        assert await queue.get_task_count() == 1
        assert [leased.id for leased in await drain(queue)] == [job.id]

    async def test_finished_job_resubmitted_under_its_own_id_runs_again(
        self, queue: TaskQueueProtocol
    ) -> None:
        """A job id is a duplicate only while the queue holds that job, not after it."""
        job = make_job()
        await enqueue_ok(queue, job)
        leased = await lease_one(queue)
        assert await queue.ack(leased.id, lease_token=leased.lease_token) is True
        assert await enqueue_ok(queue, make_job(id=job.id)) == job.id
        assert await queue.get_task_count() == 1
        assert [again.id for again in await drain(queue)] == [job.id]

    async def test_clear_forgets_idempotency_keys(self, queue: TaskQueueProtocol) -> None:
        """After `clear` a held key is free: a new job with it is enqueued under its own id."""
        first = make_job(idempotency_key="report-9")
        await enqueue_ok(queue, first)
        await queue.clear()
        second = make_job(idempotency_key="report-9")
        assert await enqueue_ok(queue, second) == second.id, (
            "clear() kept an idempotency key: a new job with it was taken for the old one"
        )
        assert [job.id for job in await drain(queue)] == [second.id]

    async def test_different_idempotency_keys_are_independent(
        self, queue: TaskQueueProtocol
    ) -> None:
        """Jobs with different keys are all enqueued."""
        jobs = [make_job(idempotency_key=f"key-{index}") for index in range(3)]
        for job in jobs:
            assert await enqueue_ok(queue, job) == job.id
        assert await queue.get_task_count() == 3


class QueueOrderingConformance(QueueConformanceBase):
    """Higher priority first, FIFO within a priority, delayed jobs never block ready ones."""

    async def test_higher_priority_dequeued_first(self, queue: TaskQueueProtocol) -> None:
        """Jobs come out by priority, high to low, whatever the enqueue order."""
        low, high, middle = make_job(priority=1), make_job(priority=10), make_job(priority=5)
        for job in (low, high, middle):
            await enqueue_ok(queue, job)
        assert [job.id for job in await drain(queue)] == [high.id, middle.id, low.id]

    async def test_same_priority_is_fifo(self, queue: TaskQueueProtocol) -> None:
        """Jobs of one priority come out in enqueue order."""
        jobs = [make_job(priority=5) for _ in range(10)]
        for job in jobs:
            await enqueue_ok(queue, job)
        assert [job.id for job in await drain(queue)] == [job.id for job in jobs]

    async def test_many_priorities_then_fifo(self, queue: TaskQueueProtocol) -> None:
        """A shuffled mix of priorities comes out sorted by (-priority, enqueue order)."""
        rng = random.Random(20240601)  # noqa: S311 - reproducible test data, not crypto
        priorities = [rng.choice((0, 1, 2, 5, 10, 20, 100, 255)) for _ in range(40)]
        jobs = [make_job(priority=priority) for priority in priorities]
        for job in jobs:
            await enqueue_ok(queue, job)
        order = sorted(range(len(jobs)), key=lambda index: (-jobs[index].priority, index))
        got = [job.id for job in await drain(queue)]
        assert got == [jobs[index].id for index in order]

    async def test_delayed_job_does_not_block_ready_jobs(self, queue: TaskQueueProtocol) -> None:
        """A future job, even of higher priority and enqueued first, lets ready jobs pass."""
        delayed = make_job(priority=255, scheduled_at=time.time() + 3600)
        ready = make_job(priority=0)
        await enqueue_ok(queue, delayed)
        await enqueue_ok(queue, ready)
        leased = await queue.dequeue()
        assert leased is not None, "a ready job was blocked by a delayed one"
        assert leased.id == ready.id
        assert await queue.dequeue() is None, "a delayed job was delivered before its time"
        assert await queue.get_task_count() == 1

    async def test_delayed_job_becomes_available_at_its_time(
        self, queue: TaskQueueProtocol
    ) -> None:
        """A delayed job is not delivered early, and a waiting consumer gets it when due."""
        delay = 0.5
        due = time.time() + delay
        job = make_job(scheduled_at=due)
        await enqueue_ok(queue, job)
        assert await queue.dequeue() is None, "a delayed job was delivered at once"
        leased = await next_job(queue, self.prompt_seconds)
        assert leased is not None, f"a job due in {delay}s never arrived"
        assert leased.id == job.id
        # Measured against its due time, not from after the first dequeue (on a slow machine
        # the enqueue and that dequeue alone can take most of the delay). Clocks may differ
        # slightly between a client and a server: allow 0.2 s early.
        early = due - time.time()
        assert early <= 0.2, f"the delayed job came {early:.3f} s before its time"

    async def test_job_scheduled_in_the_past_is_ready(self, queue: TaskQueueProtocol) -> None:
        """A `scheduled_at` that has passed is ready now."""
        job = make_job(scheduled_at=time.time() - 60)
        await enqueue_ok(queue, job)
        leased = await queue.dequeue()
        assert leased is not None
        assert leased.id == job.id


class QueueWaitConformance(QueueConformanceBase):
    """`dequeue_batch` returns up to `max_jobs`, and waits for work without polling."""

    async def test_dequeue_batch_returns_at_most_max_jobs(self, queue: TaskQueueProtocol) -> None:
        """A batch never exceeds `max_jobs`; repeated batches deliver every job once."""
        jobs = [make_job() for _ in range(5)]
        for job in jobs:
            await enqueue_ok(queue, job)
        first = await queue.dequeue_batch(3, timeout=self.prompt_seconds)
        assert 1 <= len(first) <= 3, f"dequeue_batch(3) returned {len(first)} jobs"
        got = [job.id for job in first]
        while len(got) < len(jobs):
            batch = await queue.dequeue_batch(10, timeout=self.prompt_seconds)
            assert batch, "dequeue_batch returned nothing while jobs were waiting"
            got.extend(job.id for job in batch)
        assert sorted(got) == sorted(job.id for job in jobs)
        assert await queue.dequeue_batch(10, timeout=0) == []

    async def test_dequeue_batch_keeps_priority_order(self, queue: TaskQueueProtocol) -> None:
        """Jobs across batches come out by priority, then FIFO."""
        jobs = [make_job(priority=priority) for priority in (1, 9, 5, 9, 1, 5)]
        for job in jobs:
            await enqueue_ok(queue, job)
        got: list[str] = []
        while len(got) < len(jobs):
            batch = await queue.dequeue_batch(4, timeout=self.prompt_seconds)
            assert batch, "dequeue_batch returned nothing while jobs were waiting"
            got.extend(job.id for job in batch)
        order = sorted(range(len(jobs)), key=lambda index: (-jobs[index].priority, index))
        assert got == [jobs[index].id for index in order]

    async def test_dequeue_batch_times_out_empty(self, queue: TaskQueueProtocol) -> None:
        """With no job, `dequeue_batch` returns [] once the timeout passes."""
        assert await queue.dequeue_batch(5, timeout=0.2) == []

    async def test_dequeue_batch_zero_timeout_does_not_wait(self, queue: TaskQueueProtocol) -> None:
        """`timeout=0` returns at once: [] when empty, the ready jobs otherwise."""
        empty = await asyncio.wait_for(queue.dequeue_batch(3, timeout=0), self.prompt_seconds)
        assert empty == []
        job = make_job()
        await enqueue_ok(queue, job)
        batch = await asyncio.wait_for(queue.dequeue_batch(3, timeout=0), self.prompt_seconds)
        assert [leased.id for leased in batch] == [job.id]

    async def test_dequeue_batch_wakes_on_enqueue(
        self, queue: TaskQueueProtocol, make_queue: QueueFactory
    ) -> None:
        """A waiting consumer gets a job another producer enqueues, well before its timeout."""
        producer = await make_queue()
        timeout = self.prompt_seconds * 2
        consumer = asyncio.create_task(queue.dequeue_batch(1, timeout=timeout))
        # Let the consumer reach its wait so that the wake-up path is what is tested;
        # the assertions below hold either way.
        await asyncio.sleep(0.05)
        started = time.monotonic()
        job = make_job()
        await enqueue_ok(producer, job)
        batch = await asyncio.wait_for(consumer, timeout + 1)
        elapsed = time.monotonic() - started
        assert [leased.id for leased in batch] == [job.id]
        assert elapsed < timeout / 2, f"the waiting consumer needed {elapsed:.2f}s to wake"

    async def test_dequeue_batch_wakes_on_requeue(
        self, queue: TaskQueueProtocol, make_queue: QueueFactory, lease_seconds: float
    ) -> None:
        """A waiting consumer gets a job another consumer nacks back, before its lease ends."""
        other = await make_queue()
        job = make_job()
        await enqueue_ok(other, job)
        held = await lease_one(other)
        timeout = self.prompt_seconds * 2
        consumer = asyncio.create_task(queue.dequeue_batch(1, timeout=timeout))
        await asyncio.sleep(0.05)  # as above: reach the wait first
        started = time.monotonic()
        await other.nack(held.id, requeue=True)
        batch = await asyncio.wait_for(consumer, timeout + 1)
        elapsed = time.monotonic() - started
        assert [leased.id for leased in batch] == [job.id]
        # Sooner than the lease would have run out: the nack itself woke the consumer.
        assert elapsed < lease_seconds * 0.8, f"the waiting consumer needed {elapsed:.2f}s"


__all__ = [
    "QueueIdempotencyConformance",
    "QueueOrderingConformance",
    "QueueRoundTripConformance",
    "QueueWaitConformance",
]
