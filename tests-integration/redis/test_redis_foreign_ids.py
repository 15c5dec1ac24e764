"""A job id that is not UTF-8 text, stored by a writer other than lexigram's, on a real Redis.

Our producers refuse such ids, but Redis takes any bytes. No client can send one back to
settle its job, and decoding it used to fail every batch that held it: the worker leased
the batch, raised, and leased it again when the leases ran out, running none of its jobs.
Now the dequeue renames such a job to a printable id and hands it out as poison, which the
worker dead-letters; the rest of the batch runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from lexigram.contracts.tasks import POISON_JOB_NAME, Job
from lexigram.tasks.backends.redis import RedisConnector, RedisDLQBackend, RedisTaskQueue
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.execution import TaskWorker, TaskWorkerServices
from lexigram.tasks.testing import HookRecorder

pytestmark = pytest.mark.redis

RAW_ID = b"foreign-\xff\xfe-id"
PRINTABLE_ID = "foreign-\\xff\\xfe-id"


async def store_under_raw_id(
    redis_url: str, staging: RedisTaskQueue, queue: RedisTaskQueue, job: Job
) -> None:
    """Put `job` on `queue` under `RAW_ID` at once, as a foreign writer would.

    The job is enqueued on `staging` (records, score, idempotency key), then every record
    of it is written to `queue`'s keys under `RAW_ID` in one transaction, with the wake-up
    a consumer waits for.
    """
    (await staging.enqueue(job)).unwrap()
    old = job.id.encode()
    client = aioredis.Redis.from_url(redis_url)
    try:
        writes = client.pipeline(transaction=True)
        for source, target in zip(staging.keys.fixed, queue.keys.fixed, strict=True):
            kind = await client.type(source)
            if kind == b"hash" and (value := await client.hget(source, old)) is not None:
                writes.hset(target, RAW_ID, value)
            elif kind == b"zset" and (score := await client.zscore(source, old)) is not None:
                writes.zadd(target, {RAW_ID: score})
            elif kind == b"set" and await client.sismember(source, old):
                writes.sadd(target, RAW_ID)
        if job.idempotency_key is not None:
            writes.set(queue.keys.idempotency_key(job.idempotency_key), RAW_ID)
        writes.rpush(queue.keys.notify, 1)
        await writes.execute()
        await client.delete(*staging.keys.fixed)
    finally:
        await client.aclose()


async def test_the_foreign_id_is_dead_lettered_and_the_rest_of_its_batch_runs(
    make_redis_queue: Callable[..., RedisTaskQueue],
    connector: RedisConnector,
    key_prefix: str,
    redis_url: str,
) -> None:
    ran: list[int] = []

    async def work(n: int) -> int:
        ran.append(n)
        return n

    queue = make_redis_queue()
    dlq = PersistentDeadLetterQueue(
        backend=RedisDLQBackend(key_prefix=key_prefix, connector=connector)
    )
    # Enqueued first, so the batch that takes it holds the good jobs too.
    staging = make_redis_queue("staging")
    await store_under_raw_id(redis_url, staging, queue, Job(name="work", args=(0,)))
    good = [Job(name="work", args=(n,)) for n in range(1, 6)]
    for job in good:
        (await queue.enqueue(job)).unwrap()
    hooks = HookRecorder()
    worker = TaskWorker(
        "foreign-ids",
        queue,
        {"work": work},
        TaskWorkerConfig(poll_interval=0.05),
        TaskWorkerServices(hooks=hooks, dead_letter_queue=dlq),
    )
    await worker.start()
    try:
        await hooks.wait_until(
            lambda: len(hooks.ids("task.completed")) == 5 and hooks.ids("task.failed"), timeout=10
        )
    finally:
        await worker.stop()

    assert hooks.ids("task.failed") == [PRINTABLE_ID]

    assert sorted(ran) == [1, 2, 3, 4, 5]
    record = await dlq.get(PRINTABLE_ID)
    assert record is not None
    assert record.job.name == POISON_JOB_NAME
    assert record.metadata["reason"] == "poison"
    assert record.error.startswith(
        f"TaskDecodeError: Job id {RAW_ID!r} on queue 'tasks' is not UTF-8 text"
    )
    assert f"renamed {PRINTABLE_ID!r}" in record.error
    stats = worker.get_stats()
    assert (stats.jobs_succeeded, stats.jobs_dead_lettered, stats.jobs_lost) == (5, 1, 0)
    assert await queue.count(queue.queue_name) == 0


async def test_a_taken_printable_id_gets_the_raw_ids_hex_and_the_idempotency_key_follows(
    make_redis_queue: Callable[..., RedisTaskQueue], redis_url: str
) -> None:
    queue = make_redis_queue()
    (await queue.enqueue(Job(name="work", id=PRINTABLE_ID))).unwrap()
    job = Job(name="work", idempotency_key="order-7")
    await store_under_raw_id(redis_url, make_redis_queue("staging"), queue, job)

    taken = await queue.dequeue_batch(10)

    by_id = {job.id: job for job in taken}
    renamed = f"{PRINTABLE_ID}#{RAW_ID.hex()}"
    assert set(by_id) == {PRINTABLE_ID, renamed}
    assert by_id[PRINTABLE_ID].name == "work"  # the job that held the id keeps it
    poison = by_id[renamed]
    assert poison.name == POISON_JOB_NAME
    assert poison.delivery_count == 1
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.get(queue.keys.idempotency_key("order-7")) == renamed.encode()
        assert not await client.hexists(queue.keys.jobs, RAW_ID)
        assert await client.zscore(queue.keys.inflight, RAW_ID) is None
    finally:
        await client.aclose()
    # Settled under its new id: the lease token moved with it.
    assert await queue.ack(renamed, lease_token=poison.lease_token)
    assert await queue.ack(PRINTABLE_ID, lease_token=by_id[PRINTABLE_ID].lease_token)
    assert await queue.count(queue.queue_name) == 0
    # Still held for its TTL, naming the job by its new id.
    assert (await queue.enqueue(Job(name="work", idempotency_key="order-7"))).unwrap() == renamed


async def test_a_consumer_waiting_on_an_empty_queue_takes_the_foreign_id_as_poison(
    make_redis_queue: Callable[..., RedisTaskQueue], redis_url: str
) -> None:
    """The blocking wait leases in the same round trip (`_waiting`): its reply is read alike."""
    queue = make_redis_queue()
    staging = make_redis_queue("staging")
    waiting = asyncio.create_task(queue.dequeue_batch(10, timeout=5.0))
    await asyncio.sleep(0.3)  # the consumer is blocked on the notify list
    await store_under_raw_id(redis_url, staging, queue, Job(name="work"))

    taken = await asyncio.wait_for(waiting, 5.0)

    assert [(job.id, job.name) for job in taken] == [(PRINTABLE_ID, POISON_JOB_NAME)]
    assert await queue.ack(PRINTABLE_ID, lease_token=taken[0].lease_token)


async def test_an_id_lookup_skips_ids_that_are_not_utf8(
    make_redis_queue: Callable[..., RedisTaskQueue], redis_url: str
) -> None:
    queue = make_redis_queue()
    await store_under_raw_id(redis_url, make_redis_queue("staging"), queue, Job(name="work"))
    (await queue.enqueue(Job(name="work", id="foreign-ok"))).unwrap()

    assert await queue.find_job_ids("foreign-", 10) == ["foreign-ok"]


async def test_a_cancellation_naming_an_id_that_is_not_utf8_is_skipped(
    make_redis_queue: Callable[..., RedisTaskQueue], redis_url: str
) -> None:
    """The subscription keeps going: raising would drop it, and a cancel sent meanwhile."""
    queue = make_redis_queue()
    cancellations = queue.cancellations()
    received = asyncio.create_task(anext(cancellations))
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with asyncio.timeout(5):
            # Until the subscription is up (PUBLISH counts the subscribers it reached).
            while not await client.publish(queue.keys.cancel_channel, RAW_ID):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await client.publish(queue.keys.cancel_channel, b"job-7")

        assert await asyncio.wait_for(received, 5) == "job-7"
    finally:
        await client.aclose()
        await cancellations.aclose()  # type: ignore[attr-defined]
