"""MemoryTaskQueue behaviour beyond the shared conformance kit."""

from __future__ import annotations

import asyncio
import math
import time
import tracemalloc
from importlib.metadata import entry_points
from typing import Any

import pytest

from lexigram.contracts.tasks import (
    Err,
    Job,
    JobStatus,
    Ok,
    QueueFullError,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueProtocol,
    TaskValidationError,
)
from lexigram.tasks.backends.memory import MemoryOptions, MemoryTaskQueue, backend, create_queue
from lexigram.tasks.backends.memory import _queue as memory_queue_module


def _assert_empty(queue: MemoryTaskQueue) -> None:
    assert queue._jobs == {}
    assert queue._payloads == {}
    assert queue._waiting == {}
    assert queue._ready == []
    assert queue._delayed == []
    assert queue._in_flight == {}
    assert queue._keys.keys == {}
    assert len(queue._keys.expiries) == 0
    assert queue._wakeups.waiters == set()


async def test_memory_queue_satisfies_the_protocol() -> None:
    queue = MemoryTaskQueue(queue_name="emails", visibility_timeout=12.0)
    assert isinstance(queue, TaskQueueProtocol)
    assert queue.queue_name == "emails"
    assert queue.visibility_timeout == 12.0
    assert "emails" in repr(queue)


async def test_a_redelivery_is_a_new_object_without_the_holders_changes() -> None:
    queue = MemoryTaskQueue()
    job = Job(name="noop", kwargs={"to": "a@b.c"}, metadata={"m": 1})
    await queue.enqueue(job)
    assert job.queue_name == "tasks"
    first = await queue.dequeue()
    assert first is not None
    # The first delivery is the enqueued object: no copy on the path every job takes.
    assert first is job
    assert first.lease_token
    first.kwargs["to"] = "changed"
    first.metadata["m"] = 2
    first.mark_retrying()
    assert await queue.nack(first.id, lease_token=first.lease_token) is True
    second = await queue.dequeue()
    assert second is not None
    assert second is not first
    assert (second.kwargs, second.metadata) == ({"to": "a@b.c"}, {"m": 1})
    assert (second.retry_count, second.delivery_count) == (0, 2)
    assert second.lease_token not in (None, first.lease_token)
    # A lease that runs out gives the same: the job as it was enqueued.
    second.kwargs["to"] = "changed again"
    assert await queue.extend_lease(second.id, 0.0, lease_token=second.lease_token)
    third = await queue.dequeue()
    assert third is not None
    assert third is not second
    assert (third.kwargs, third.delivery_count, third.status) == (
        {"to": "a@b.c"},
        3,
        JobStatus.RUNNING,
    )


async def test_a_retried_job_is_delivered_as_passed_to_retry_later() -> None:
    queue = MemoryTaskQueue()
    await queue.enqueue(Job(name="noop", kwargs={"n": 1}))
    first = await queue.dequeue()
    assert first is not None
    first.mark_retrying()
    first.last_error = "boom"
    assert await queue.retry_later(first, delay=0) is True
    # What the holder changes after retry_later does not reach the queue.
    first.kwargs["n"] = 99
    first.last_error = "later"
    second = await queue.dequeue()
    assert second is not None
    assert second is not first
    assert (second.kwargs, second.retry_count, second.last_error) == ({"n": 1}, 1, "boom")
    # Its lease running out brings back the retried job, not the first one.
    second.last_error = "changed"
    assert await queue.extend_lease(second.id, 0.0, lease_token=second.lease_token)
    third = await queue.dequeue()
    assert third is not None
    assert (third.retry_count, third.last_error, third.status) == (1, "boom", JobStatus.RUNNING)
    assert await queue.ack(third.id, lease_token=third.lease_token) is True
    _assert_empty(queue)


async def test_stale_copy_cannot_settle_the_new_delivery() -> None:
    queue = MemoryTaskQueue(visibility_timeout=60.0)
    await queue.enqueue(Job(name="noop"))
    first = await queue.dequeue()
    assert first is not None
    # End the first lease without waiting for a clock, then redeliver.
    assert await queue.extend_lease(first.id, 0.0, lease_token=first.lease_token)
    second = await queue.dequeue()
    assert second is not None
    assert first.lease_token != second.lease_token
    assert await queue.ack(first.id, lease_token=first.lease_token) is False
    assert await queue.extend_lease(first.id, lease_token=first.lease_token) is False
    first.mark_retrying()
    assert await queue.retry_later(first, delay=0) is False
    assert await queue.count("tasks", JobStatus.RUNNING) == 1
    assert await queue.ack(second.id, lease_token=second.lease_token) is True
    _assert_empty(queue)


async def test_enqueue_non_job_returns_validation_error() -> None:
    queue = MemoryTaskQueue()
    # A dict on purpose: enqueue must reject what is not a Job.
    result = await queue.enqueue({"name": "noop"})  # type: ignore[arg-type]
    assert isinstance(result, Err)
    assert isinstance(result.error, TaskValidationError)
    assert "not a Job" in result.error.message


async def test_max_size_returns_queue_full_error() -> None:
    queue = MemoryTaskQueue(queue_name="small", max_size=2)
    first, second = Job(name="a"), Job(name="b")
    assert await queue.enqueue(first) == Ok(first.id)
    assert await queue.enqueue(second) == Ok(second.id)
    result = await queue.enqueue(Job(name="c"))
    assert isinstance(result, Err)
    error = result.error
    assert isinstance(error, QueueFullError)
    assert (error.queue_name, error.capacity) == ("small", 2)
    assert "'small' is full (2 jobs waiting)" in error.message
    assert error.message.endswith(".")
    assert await queue.get_task_count() == 2


async def test_max_size_never_drops_a_job_coming_back_from_a_lease() -> None:
    queue = MemoryTaskQueue(max_size=2)
    leased_job = Job(name="leased")
    await queue.enqueue(leased_job)
    leased = await queue.dequeue()
    assert leased is not None
    assert leased.id == leased_job.id
    for name in ("a", "b"):
        assert (await queue.enqueue(Job(name=name))).is_ok()
    await queue.nack(leased_job.id, requeue=True)
    assert await queue.get_task_count() == 3
    assert isinstance(await queue.enqueue(Job(name="c")), Err)


def test_memory_queue_leaves_task_queued_to_core() -> None:
    # Core emits "task.queued" for every backend; a queue has no hook registry to set.
    assert not hasattr(MemoryTaskQueue, "set_hook_registry")


async def test_memory_returns_to_baseline_after_10000_jobs() -> None:
    queue = MemoryTaskQueue(visibility_timeout=60.0, idempotency_ttl=0.0)
    for index in range(10_000):
        job = Job(
            name="noop",
            priority=index % 7,
            idempotency_key=f"key-{index}" if index % 10 == 0 else None,
            scheduled_at=time.time() - 1 if index % 3 == 0 else None,
        )
        assert (await queue.enqueue(job)).is_ok()
    acked = 0
    while batch := await queue.dequeue_batch(64, timeout=0):
        for job in batch:
            # Heartbeats and a requeue on the way, as a real worker would produce.
            assert await queue.extend_lease(job.id)
            if job.delivery_count == 1 and acked % 100 == 0:
                await queue.nack(job.id, requeue=True)
                continue
            await queue.ack(job.id)
            acked += 1
    assert acked == 10_000
    _assert_empty(queue)


async def test_deleting_waiting_jobs_compacts_the_heaps() -> None:
    queue = MemoryTaskQueue()
    jobs = [Job(name="noop", scheduled_at=time.time() + 60 if i % 2 else None) for i in range(1000)]
    for job in jobs:
        await queue.enqueue(job)
    for job in jobs[:900]:
        assert await queue.delete_job(job.id)
    assert len(queue._ready) + len(queue._delayed) <= 2 * 100 + 64
    for job in jobs[900:]:
        assert await queue.delete_job(job.id)
    _assert_empty(queue)


async def test_heartbeats_keep_one_lease_per_job_and_a_shortened_lease_still_expires() -> None:
    queue = MemoryTaskQueue()
    for _ in range(10):
        await queue.enqueue(Job(name="noop"))
    jobs = await queue.dequeue_batch(10)
    for _ in range(100):
        for job in jobs:
            assert await queue.extend_lease(job.id)
    assert len(queue._in_flight) == 10
    # A lease made shorter than every other one is still the first to run out.
    assert await queue.extend_lease(jobs[0].id, 0.01)
    await asyncio.sleep(0.03)
    assert await queue.get_task_count() == 1
    for job in jobs[1:]:
        assert await queue.ack(job.id)
    again = await queue.dequeue_batch(1)
    assert [job.id for job in again] == [jobs[0].id]
    assert await queue.ack(again[0].id, lease_token=again[0].lease_token)
    _assert_empty(queue)


class _Clock:
    """Stands in for the queue module's `time`: moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


async def test_a_lease_expires_on_time_after_earlier_leases_were_acked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(memory_queue_module, "time", clock)
    queue = MemoryTaskQueue(visibility_timeout=10.0)
    first, second = Job(name="noop"), Job(name="noop")
    await queue.enqueue(first)
    [held_first] = await queue.dequeue_batch(1)
    clock.now += 4.0
    await queue.enqueue(second)
    [held_second] = await queue.dequeue_batch(1)
    assert await queue.ack(held_first.id, lease_token=held_first.lease_token)
    clock.now += 8.0  # past where the acked lease would have ended, not the second one
    assert await queue.get_task_count() == 0
    clock.now += 3.0
    assert await queue.get_task_count() == 1
    assert not await queue.ack(held_second.id, lease_token=held_second.lease_token)
    [again] = await queue.dequeue_batch(1)
    assert (again.id, again.delivery_count) == (second.id, 2)
    assert await queue.ack(again.id, lease_token=again.lease_token)
    _assert_empty(queue)


async def test_expired_lease_puts_job_back_as_pending() -> None:
    queue = MemoryTaskQueue()
    job = Job(name="noop")
    await queue.enqueue(job)
    await queue.dequeue()
    assert await queue.count("tasks", JobStatus.RUNNING) == 1
    # A zero-second extension ends the lease now: expiry without waiting for a clock.
    assert await queue.extend_lease(job.id, 0.0)
    found = await queue.get_job(job.id)
    assert found is not None
    assert found.status is JobStatus.PENDING
    assert await queue.count("tasks", JobStatus.RUNNING) == 0
    assert await queue.count("tasks", JobStatus.PENDING) == 1
    assert await queue.extend_lease(job.id) is False
    again = await queue.dequeue()
    assert again is not None
    assert again.id == job.id
    assert again.delivery_count == 2


async def test_extend_lease_of_expired_unreaped_lease_returns_false() -> None:
    queue = MemoryTaskQueue()
    job = Job(name="noop")
    await queue.enqueue(job)
    leased = await queue.dequeue()
    assert leased is not None
    assert leased.lease_token is not None
    # The lease ran out unnoticed: no reap has run since.
    queue._in_flight[job.id] = (time.monotonic() - 1, leased.lease_token)
    assert await queue.extend_lease(job.id, lease_token=leased.lease_token) is False
    assert await queue.count("tasks", JobStatus.RUNNING) == 0
    assert await queue.get_task_count() == 1


async def test_retry_later_of_job_not_in_flight_is_a_noop() -> None:
    queue = MemoryTaskQueue()
    waiting = Job(name="waiting")
    await queue.enqueue(waiting)
    assert await queue.retry_later(waiting, delay=10) is False
    assert await queue.retry_later(Job(name="stranger"), delay=0) is False
    assert await queue.get_task_count() == 1
    assert waiting.status is JobStatus.PENDING
    assert waiting.scheduled_at is None


async def test_idempotency_key_released_once_ttl_passed_and_job_gone() -> None:
    queue = MemoryTaskQueue(idempotency_ttl=0.0)
    first = Job(name="noop", idempotency_key="k")
    await queue.enqueue(first)
    # Still queued: the key is held even though its TTL is over.
    assert await queue.enqueue(Job(name="noop", idempotency_key="k")) == Ok(first.id)
    await queue.dequeue()
    await queue.ack(first.id)
    second = Job(name="noop", idempotency_key="k")
    assert await queue.enqueue(second) == Ok(second.id)


async def test_count_of_unknown_status_is_zero() -> None:
    queue = MemoryTaskQueue()
    await queue.enqueue(Job(name="noop"))
    assert await queue.count("tasks", JobStatus.COMPLETED) == 0
    assert await queue.count("tasks", JobStatus.CANCELLED) == 0


async def test_close_wakes_a_waiting_consumer_and_keeps_the_queue_usable() -> None:
    queue = MemoryTaskQueue()
    consumer = asyncio.create_task(queue.dequeue_batch(1, timeout=60))
    await asyncio.sleep(0)  # let the consumer start waiting
    assert queue._wakeups.waiters
    await queue.close()
    assert await asyncio.wait_for(consumer, 5) == []
    job = Job(name="after-close")
    await queue.enqueue(job)
    leased = await queue.dequeue()
    assert leased is not None
    assert leased.id == job.id


async def test_cancelled_consumer_leaves_no_waiter_behind() -> None:
    queue = MemoryTaskQueue()
    consumer = asyncio.create_task(queue.dequeue_batch(1, timeout=60))
    await asyncio.sleep(0)
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert queue._wakeups.waiters == set()


async def test_dequeue_batch_with_no_room_returns_empty() -> None:
    queue = MemoryTaskQueue()
    await queue.enqueue(Job(name="noop"))
    assert await queue.dequeue_batch(0, timeout=1) == []
    assert await queue.get_task_count() == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"visibility_timeout": 0},
        {"visibility_timeout": float("inf")},
        {"max_size": 0},
        {"idempotency_ttl": -1},
    ],
)
def test_constructor_rejects_bad_settings(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TaskConfigurationError):
        MemoryTaskQueue(**kwargs)


def test_backend_create_queue_reads_the_spec() -> None:
    spec = TaskBackendSpec(
        name="fast",
        queue_name="reports",
        options={"visibility_timeout": "5", "max_size": 10, "idempotency_ttl": 60},
    )
    queue = backend.create_queue(spec)
    assert isinstance(queue, MemoryTaskQueue)
    assert (queue.queue_name, queue.visibility_timeout) == ("reports", 5.0)
    assert queue._max_size == 10
    assert queue._keys.ttl == 60.0
    assert create_queue(TaskBackendSpec()).queue_name == "tasks"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"visiblity_timeout": 5}, "Did you mean 'visibility_timeout'?"),
        ({"visibility_timeout": "soon"}, "visibility_timeout='soon' is not a number"),
        ({"visibility_timeout": True}, "visibility_timeout=True"),
        ({"max_size": 2.5}, "max_size=2.5 is not a whole number"),
        ({"max_size": "many"}, "max_size='many'"),
    ],
)
def test_backend_rejects_bad_options(options: dict[str, object], fragment: str) -> None:
    with pytest.raises(TaskConfigurationError) as info:
        backend.create_queue(TaskBackendSpec(options=options))
    assert fragment in str(info.value)


def test_memory_entry_point_names_the_backend_object() -> None:
    (entry,) = entry_points(group="lexigram.tasks.backends", name="memory")
    assert entry.load() is backend
    assert backend.url_schemes == ()
    assert backend.url_field is None
    assert backend.options_type is MemoryOptions


async def test_an_idle_queue_names_no_lease_expiry_after_its_leases_are_acked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(memory_queue_module, "time", clock)
    queue = MemoryTaskQueue(visibility_timeout=10.0)
    await queue.enqueue(Job(name="noop"))
    [held] = await queue.dequeue_batch(1)
    assert queue._next_due(clock.now) == clock.now + 10.0
    assert await queue.ack(held.id, lease_token=held.lease_token)
    # A consumer waiting on the empty queue is not woken when that lease would have ended.
    assert queue._next_due(clock.now) == math.inf


async def test_a_waiting_job_keeps_an_envelope_of_its_own_size() -> None:
    # orjson returns its output in a buffer of at least 4 KiB that it never shrinks; kept
    # as it came, each waiting job held 4 KiB (a million of them 4.7 GB of RSS).
    queue = MemoryTaskQueue()
    jobs = [Job(name="noop", args=(n,)) for n in range(500)]
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for job in jobs:
            (await queue.enqueue(job)).unwrap()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown / len(jobs) < 1024, f"{grown / len(jobs):.0f} bytes kept per waiting job"
