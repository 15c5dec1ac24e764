"""A job re-published by a process that dies before its ack lands runs one lineage only.

A retry or a delay-bucket hop publishes the job anew (confirmed) and then acks the
delivery it came from. A holder killed between the two leaves both messages: the original
is redelivered at once and the copy arrives after its delay. Here the holder "dies" at
exactly that point (its acks are dropped, then its connection closes), and a second queue
object sharing the Redis state store must hand the job out once, not once per message.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.rabbitmq._delivery import Delivery
from lexigram.tasks.backends.redis import RedisCacheBackend

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis]


@pytest_asyncio.fixture
async def cache(redis_url: str) -> AsyncIterator[RedisCacheBackend]:
    """A Redis cache under a prefix of its own, emptied afterwards."""
    prefix = f"lexigram-test-{uuid.uuid4().hex[:8]}"
    store = RedisCacheBackend(redis_url, key_prefix=prefix)
    yield store
    await store.close()
    client = aioredis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def lose_acks(queue: RabbitMQTaskQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on `queue`'s acks never reach the broker, as when its process is killed."""

    async def lost(delivery: Delivery) -> bool:
        delivery.settled = True
        return True

    monkeypatch.setattr(queue._buffer, "ack", lost)


async def handed_out(queue: RabbitMQTaskQueue, job_id: str, within: float) -> list[Job]:
    """Every delivery of `job_id` `queue` hands out within `within` s (each acked)."""
    seen: list[Job] = []
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        for job in await queue.dequeue_batch(10, timeout=min(0.5, remaining)):
            assert await queue.ack(job.id, lease_token=job.lease_token)
            if job.id == job_id:
                seen.append(job)
    return seen


async def test_a_retry_whose_ack_was_lost_runs_once(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue],
    cache: RedisCacheBackend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder = make_rabbitmq_queue(state_store=cache)
    survivor = make_rabbitmq_queue(state_store=cache)
    job_id = (await holder.enqueue(Job(name="flaky"))).unwrap()
    (job,) = await holder.dequeue_batch(1, timeout=5.0)
    lose_acks(holder, monkeypatch)
    job.retry_count += 1
    assert await holder.retry_later(job, delay=0.3)  # the copy is confirmed
    await holder.close()  # killed: the original comes back, unacked

    runs = await handed_out(survivor, job_id, within=3.0)

    assert len(runs) == 1, [(j.retry_count, j.delivery_count) for j in runs]


async def test_a_delay_hop_whose_ack_was_lost_runs_once(
    make_rabbitmq_queue: Callable[..., RabbitMQTaskQueue],
    cache: RedisCacheBackend,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder = make_rabbitmq_queue(state_store=cache)
    survivor = make_rabbitmq_queue(state_store=cache)
    # Due 1.5 s out: it waits in the 1024 ms bucket, then comes to the holder early and
    # is sent on to a smaller bucket.
    job_id = (await holder.enqueue(Job(name="later", scheduled_at=time.time() + 1.5))).unwrap()
    lose_acks(holder, monkeypatch)
    assert await holder.dequeue_batch(1, timeout=1.3) == []
    await holder._settle_background()  # the send-back published its copy (confirmed)
    await holder.close()

    runs = await handed_out(survivor, job_id, within=3.0)

    assert len(runs) == 1, [(j.retry_count, j.delivery_count) for j in runs]
