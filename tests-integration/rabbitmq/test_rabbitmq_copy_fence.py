"""A job re-published by a holder that dies before its ack lands runs one line of attempts.

A retry or a delay-bucket hop publishes the job anew (confirmed) and then acks the
delivery it came from. A holder killed between the two leaves both messages: the original
is redelivered at once and the copy arrives after its delay. Here the holder "dies" at
exactly that point (its acks are dropped, then its connection closes), and a second queue
object sharing the Redis state store must hand the job out once, not once per message.
The fence must never drop the last message of a job: the last tests check the cases where
dropping would have lost one.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job, encode_job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.rabbitmq._bulk import Published
from lexigram.tasks.backends.rabbitmq._delivery import Delivery
from lexigram.tasks.backends.redis import RedisCacheBackend

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis]

Factory = Callable[..., RabbitMQTaskQueue]


@pytest_asyncio.fixture
async def cache(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisCacheBackend]:
    """The job-state store the queue objects share (the processes of one deployment)."""
    store = RedisCacheBackend(redis_url, key_prefix=redis_prefix)
    yield store
    await store.close()


def lose_acks(queue: RabbitMQTaskQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on `queue`'s acks never reach the broker, as when its process is killed."""

    async def lost(delivery: Delivery) -> bool:
        delivery.settled = True
        return True

    monkeypatch.setattr(queue._buffer, "ack", lost)


async def handed_out(queue: RabbitMQTaskQueue, job_id: str, within: float) -> list[Job]:
    """Every delivery of `job_id` that `queue` hands out within `within` s (each acked)."""
    seen: list[Job] = []
    deadline = time.monotonic() + within
    while (remaining := deadline - time.monotonic()) > 0:
        for job in await queue.dequeue_batch(10, timeout=min(0.5, remaining)):
            assert await queue.ack(job.id, lease_token=job.lease_token)
            if job.id == job_id:
                seen.append(job)
    return seen


def attempts(jobs: list[Job]) -> list[tuple[int, int]]:
    return [(job.retry_count, job.delivery_count) for job in jobs]


async def test_a_retry_whose_ack_was_lost_runs_once(
    make_rabbitmq_queue: Factory, cache: RedisCacheBackend, monkeypatch: pytest.MonkeyPatch
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

    assert attempts(runs) == [(1, 2)]


async def test_a_delay_hop_whose_ack_was_lost_runs_once(
    make_rabbitmq_queue: Factory, cache: RedisCacheBackend, monkeypatch: pytest.MonkeyPatch
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

    assert len(runs) == 1, attempts(runs)


async def test_a_newer_copy_that_comes_while_its_twin_runs_is_not_dropped(
    make_rabbitmq_queue: Factory, cache: RedisCacheBackend
) -> None:
    """Twin messages of one job (a publish retried across a reconnect) run side by side.

    The twin held by `other` is retried: its copy is recorded as the newest, which makes
    the twin still running in `holder` an older copy. The copy then reaches `holder`.
    Acked there as "a second copy of a job running here", it would leave the job with
    one message, the older twin, which the record drops once `holder` dies: the job
    would be lost. It waits unacked instead, and comes back with the twin.
    """
    holder = make_rabbitmq_queue(state_store=cache)
    other = make_rabbitmq_queue(state_store=cache)
    survivor = make_rabbitmq_queue(state_store=cache)
    job = Job(name="twinned")
    job_id = (await holder.enqueue(job)).unwrap()
    assert await holder._publisher.publish(job, encode_job(job), 0.0) is Published.ACK
    twin = await other.dequeue()  # basic.get: one twin, and no prefetch of the other
    assert twin is not None
    (running,) = await holder.dequeue_batch(1, timeout=5.0)
    assert running.id == job_id
    twin.retry_count += 1
    assert await other.retry_later(twin, delay=0.0)  # copy 1, recorded, twin acked
    await other.close()
    assert await holder.dequeue_batch(1, timeout=1.0) == []  # the copy came, and waits
    await holder.close()  # killed while running: its twin and the copy come back

    runs = await handed_out(survivor, job_id, within=3.0)

    assert attempts(runs) == [(1, 3)]


async def test_a_job_enqueued_again_under_its_id_is_not_an_older_copy(
    make_rabbitmq_queue: Factory, cache: RedisCacheBackend
) -> None:
    """A copy record left by the job's earlier enqueue does not drop the new one."""
    holder = make_rabbitmq_queue(state_store=cache)
    survivor = make_rabbitmq_queue(state_store=cache)
    earlier = Job(name="daily", id="daily-report", created_at=time.time() - 60)
    await holder._states.copied(earlier.id, 3, earlier.created_at, 0.0)
    job_id = (await holder.enqueue(Job(name="daily", id="daily-report"))).unwrap()
    assert [job.id for job in await holder.dequeue_batch(1, timeout=5.0)] == [job_id]
    await holder.close()  # killed while running: the job is redelivered

    runs = await handed_out(survivor, job_id, within=2.0)

    assert len(runs) == 1, attempts(runs)


async def test_a_first_delivery_of_an_older_copy_is_dropped(
    make_rabbitmq_queue: Factory, cache: RedisCacheBackend
) -> None:
    """Twin copies (a holder died before recording its copy): one moved on, one is stale.

    The stale twin was never delivered, so only its copy count tells it apart.
    """
    queue = make_rabbitmq_queue(state_store=cache)
    job = Job(name="twinned")
    # Copy 1 of the job waits; its twin went on, and copy 2 of it was confirmed.
    assert await queue._publisher.publish(job, encode_job(job), 0.0, copy=1) is Published.ACK
    await queue._states.copied(job.id, 2, job.created_at, 0.0)

    assert await queue.dequeue_batch(1, timeout=1.0) == []
    assert await queue.count(queue.queue_name) == 0
