"""The job-state records of a worker's jobs ride batched round trips to a shared store.

A worker with a shared (Redis) state store looks up and records the deliveries of one
hand-out with one read and one write sent together, and drops the records of jobs acked
concurrently with shared writes; every record still lands, and none is left behind.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.contracts.tasks import Job, JobStatus
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.redis import RedisCacheBackend

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis]

JOBS = 120


class CountedCache(RedisCacheBackend):
    """The Redis cache, with every call it gets counted by name."""

    def __init__(self, url: str, *, key_prefix: str) -> None:
        super().__init__(url, key_prefix=key_prefix)
        self.calls: Counter[str] = Counter()

    async def get(self, key: str) -> str | None:
        self.calls["get"] += 1
        return await super().get(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.calls["set"] += 1
        await super().set(key, value, ttl)

    async def delete(self, key: str) -> bool:
        self.calls["delete"] += 1
        return await super().delete(key)

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        self.calls["get_many"] += 1
        return await super().get_many(keys)

    async def write_many(
        self, sets: Sequence[tuple[str, str, float | None]], deletes: Sequence[str]
    ) -> None:
        self.calls["write_many"] += 1
        await super().write_many(sets, deletes)


@pytest_asyncio.fixture
async def cache(redis_url: str) -> AsyncIterator[CountedCache]:
    """A counted Redis cache under a prefix of its own, emptied afterwards."""
    prefix = f"lexigram-test-{uuid.uuid4().hex[:8]}"
    store = CountedCache(redis_url, key_prefix=prefix)
    yield store
    await store.close()
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _until_pending(queue: RabbitMQTaskQueue, name: str, expected: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3.0
    while (pending := await queue.count(name, JobStatus.PENDING)) != expected:
        assert loop.time() < deadline, f"{pending} jobs still count as waiting, not {expected}"
        await asyncio.sleep(0.05)


async def _take(queue: RabbitMQTaskQueue, count: int) -> tuple[list[Job], int]:
    """Lease `count` jobs; return them and how many hand-outs returned any."""
    jobs: list[Job] = []
    batches = 0
    while len(jobs) < count:
        batch = await queue.dequeue_batch(count - len(jobs), timeout=10.0)
        assert batch, f"only {len(jobs)} of {count} jobs were delivered"
        jobs += batch
        batches += 1
    return jobs, batches


async def test_a_worker_batch_costs_one_read_and_one_write_and_acks_share_writes(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue], queue_name: str, cache: CountedCache
) -> None:
    queue = make_rabbitmq_queue(state_store=cache)
    results = await queue.enqueue_many([Job(name="noop") for _ in range(JOBS)])
    assert all(result.is_ok() for result in results)
    await queue.delete_job(results[7].unwrap())  # dropped when delivered
    cache.calls.clear()

    jobs, batches = await _take(queue, JOBS - 1)
    # The batch that met the deleted job's tombstone pays one more write, correcting the
    # run record written alongside its lookup.
    assert cache.calls == Counter(get_many=batches, write_many=batches + 1)
    assert batches < len(jobs)  # deliveries were handed out several at a time
    assert await queue.count(queue_name, JobStatus.RUNNING) == JOBS - 1
    running = await queue.get_job(jobs[0].id)
    assert running is not None
    assert running.status is JobStatus.RUNNING

    cache.calls.clear()
    acked = await asyncio.gather(*(queue.ack(job.id, lease_token=job.lease_token) for job in jobs))
    assert all(acked)
    assert cache.calls["get"] == cache.calls["set"] == cache.calls["delete"] == 0
    assert 1 <= cache.calls["write_many"] <= JOBS // 10
    assert await queue.count(queue_name) == 0
    assert await cache.keys("") == []


async def test_a_second_worker_drops_a_job_deleted_while_it_waited(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue], queue_name: str, cache: CountedCache
) -> None:
    producer = make_rabbitmq_queue(state_store=cache)
    worker = make_rabbitmq_queue(state_store=cache)
    ids = [(await producer.enqueue(Job(name="noop"))).unwrap() for _ in range(6)]
    assert await producer.delete_job(ids[2]) is True
    assert await producer.delete_job(ids[4]) is True
    jobs, _ = await _take(worker, 4)
    assert sorted(job.id for job in jobs) == sorted([*ids[:2], ids[3], ids[5]])
    assert await producer.count(queue_name, JobStatus.RUNNING) == 4
    assert await worker.dequeue_batch(10, timeout=0.3) == []
    # Dropping the two deleted deliveries acks them, and acks are followed by the consumer's
    # ack-sync messages (so that the broker writes the acks): they count as waiting until a
    # consumer takes them back, which the worker did while it looked for more jobs above.
    await _until_pending(producer, queue_name, 0)
    for job in jobs:
        assert await worker.ack(job.id, lease_token=job.lease_token) is True
    assert await cache.keys("") == []


async def test_a_first_batch_taken_without_waiting_costs_one_read_and_one_write(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue], queue_name: str, cache: CountedCache
) -> None:
    # A worker's first batch comes from basic.get (its consumer is not subscribed yet):
    # the gets are handed out together, not one state-store round trip pair per job.
    queue = make_rabbitmq_queue(state_store=cache)
    results = await queue.enqueue_many([Job(name="noop") for _ in range(30)])
    assert all(result.is_ok() for result in results)
    await queue.delete_job(results[3].unwrap())  # dropped when delivered: its slot refilled
    cache.calls.clear()

    jobs = await queue.dequeue_batch(20)
    assert len(jobs) == 20
    assert results[3].unwrap() not in {job.id for job in jobs}
    # A second hand-out for the dropped job's refill; the first, which met its tombstone,
    # pays one more write correcting the run record written alongside its lookup.
    assert cache.calls == Counter(get_many=2, write_many=3)
    assert await queue.count(queue_name, JobStatus.RUNNING) == 20
    for job in jobs:
        assert await queue.ack(job.id, lease_token=job.lease_token) is True
