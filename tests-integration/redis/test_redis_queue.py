"""RedisTaskQueue behaviour beyond the conformance kit: keys, tokens, batching, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from lexigram.contracts.tasks import (
    POISON_JOB_NAME,
    BackendConnectionError,
    Err,
    Job,
    JobStatus,
    Ok,
    QueueFullError,
    TaskBackendSpec,
    TaskConfigurationError,
)
from lexigram.tasks.backends.redis import RedisTaskQueue, backend

pytestmark = pytest.mark.redis

MakeQueue = Callable[..., RedisTaskQueue]


async def test_queue_keys_share_one_hash_tag(
    make_redis_queue: MakeQueue, redis_url: str, key_prefix: str
) -> None:
    queue = make_redis_queue("emails")
    await queue.enqueue(Job(name="a", idempotency_key="k"))
    await queue.enqueue(Job(name="b", scheduled_at=time.time() + 60))
    await queue.dequeue()
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k.decode() async for k in client.scan_iter(match=f"{{{key_prefix}:*")]
    finally:
        await client.aclose()
    assert keys
    assert all(key.startswith(f"{{{key_prefix}:emails}}:") for key in keys)
    assert {key.rsplit(":", 1)[-1] for key in keys} >= {"jobs", "inflight", "delayed", "idem"}


async def test_queue_creation_does_not_connect() -> None:
    # Port 1 refuses connections: building the queue must not notice.
    queue = RedisTaskQueue(url="redis://127.0.0.1:1/0", queue_name="lazy")
    assert queue.queue_name == "lazy"
    assert "127.0.0.1:1" in repr(queue)


async def test_unreachable_server_raises_backend_connection_error_with_masked_url() -> None:
    queue = RedisTaskQueue(
        "redis://user:s3cret@127.0.0.1:1/0", "down", retry_timeout=0.3, socket_connect_timeout=0.2
    )
    with pytest.raises(BackendConnectionError) as info:
        await queue.enqueue(Job(name="x"))
    assert "s3cret" not in str(info.value)
    assert "***" in str(info.value)
    assert info.value.__cause__ is not None
    await queue.close()


async def test_dequeue_batch_on_unreachable_server_returns_empty_instead_of_raising() -> None:
    queue = RedisTaskQueue("redis://127.0.0.1:1/0", "down", socket_connect_timeout=0.2)
    started = time.monotonic()
    assert await queue.dequeue_batch(5, timeout=0.1) == []
    # It backed off (no hot loop) but stayed bounded.
    assert 0.5 <= time.monotonic() - started < 5
    await queue.close()


async def test_url_alias_and_conflicting_urls() -> None:
    queue = RedisTaskQueue(url="redis://localhost:6390/2")
    assert "6390" in repr(queue)
    with pytest.raises(TaskConfigurationError):
        RedisTaskQueue("redis://a:6379", url="redis://b:6379")
    with pytest.raises(TaskConfigurationError):
        RedisTaskQueue(url="http://localhost")


async def test_stale_holder_is_refused_on_all_four_calls(make_redis_queue: MakeQueue) -> None:
    first = make_redis_queue("stale", visibility_timeout=0.3)
    second = make_redis_queue("stale", visibility_timeout=5)
    job = Job(name="slow")
    await first.enqueue(job)
    held = await first.dequeue()
    assert held is not None
    assert held.lease_token
    again = await second.dequeue_batch(1, timeout=3)
    assert [j.id for j in again] == [job.id]
    assert again[0].delivery_count == 2
    assert again[0].lease_token not in (None, held.lease_token)
    # The first holder's lease is gone: every call with its token is refused, changing nothing.
    stale = held.lease_token
    assert await first.extend_lease(job.id, lease_token=stale) is False
    assert await first.ack(job.id, lease_token=stale) is False
    assert await first.nack(job.id, lease_token=stale) is False
    assert await first.nack(job.id, requeue=False, lease_token=stale) is False
    held.mark_retrying()
    assert await first.retry_later(held, delay=60) is False
    assert held.scheduled_at is None  # the refused call left the object alone too
    current = await second.get_job(job.id)
    assert current is not None
    assert current.status is JobStatus.RUNNING
    assert current.retry_count == 0
    assert current.delivery_count == 2
    assert await second.count("stale", JobStatus.RUNNING) == 1
    token = again[0].lease_token
    assert await second.extend_lease(job.id, lease_token=token) is True
    assert await second.ack(job.id, lease_token=token) is True
    assert await second.count("stale") == 0


async def test_expired_token_is_refused_even_before_redelivery(make_redis_queue: MakeQueue) -> None:
    queue = make_redis_queue("expired-token", visibility_timeout=0.2)
    job = Job(name="x")
    await queue.enqueue(job)
    held = await queue.dequeue()
    assert held is not None
    await asyncio.sleep(0.35)  # time passing is the point: the 0.2 s lease runs out
    assert await queue.count("expired-token", JobStatus.RUNNING) == 0
    assert await queue.ack(job.id, lease_token=held.lease_token) is False
    assert await queue.nack(job.id, lease_token=held.lease_token) is False
    assert await queue.retry_later(held) is False
    again = await queue.dequeue()
    assert again is not None
    assert again.delivery_count == 2
    assert await queue.ack(job.id, lease_token=again.lease_token) is True


async def test_calls_without_a_token_act_on_the_current_delivery(
    make_redis_queue: MakeQueue,
) -> None:
    first = make_redis_queue("no-token", visibility_timeout=0.2)
    second = make_redis_queue("no-token", visibility_timeout=5)
    job = Job(name="x")
    await first.enqueue(job)
    assert await first.dequeue() is not None
    again = await second.dequeue_batch(1, timeout=3)
    assert [j.id for j in again] == [job.id]
    assert await first.extend_lease(job.id) is True  # the short form: whoever holds it
    assert await first.ack(job.id) is True
    assert await second.ack(job.id, lease_token=again[0].lease_token) is False
    assert await first.ack(job.id) is False  # nothing in flight any more


async def test_extend_after_lease_expired_returns_false_and_changes_nothing(
    make_redis_queue: MakeQueue,
) -> None:
    queue = make_redis_queue("expired", visibility_timeout=0.2)
    job = Job(name="x")
    await queue.enqueue(job)
    held = await queue.dequeue()
    assert held is not None
    await asyncio.sleep(0.4)  # time passing is the point: the 0.2 s lease runs out
    assert await queue.extend_lease(job.id, lease_token=held.lease_token) is False
    assert await queue.extend_lease(job.id) is False
    assert await queue.get_task_count() == 1
    again = await queue.dequeue()
    assert again is not None
    assert again.delivery_count == 2


async def test_batched_acks_answer_each_caller(make_redis_queue: MakeQueue) -> None:
    queue = make_redis_queue("acks")
    jobs = [Job(name="n") for _ in range(50)]
    await queue.enqueue_many(jobs)
    leased = await queue.dequeue_batch(50)
    assert len(leased) == 50
    calls = [queue.ack(job.id, lease_token=job.lease_token) for job in leased]
    calls += [queue.ack(job.id, lease_token="1") for job in leased[:10]]  # noqa: S106 - forged
    answers = await asyncio.gather(*calls)
    assert answers[:50] == [True] * 50
    assert answers[50:] == [False] * 10


async def test_concurrent_enqueues_and_acks_are_batched_without_loss(
    make_redis_queue: MakeQueue,
) -> None:
    queue = make_redis_queue("batched")
    jobs = [Job(name="n", kwargs={"i": i}) for i in range(1000)]
    results = await asyncio.gather(*(queue.enqueue(job) for job in jobs))
    assert results == [Ok(job.id) for job in jobs]
    leased = await queue.dequeue_batch(1000)
    assert len(leased) == 1000
    await asyncio.gather(*(queue.ack(job.id) for job in leased))
    assert await queue.count("batched") == 0


async def test_enqueue_many_mixed_duplicates_and_idempotency(make_redis_queue: MakeQueue) -> None:
    queue = make_redis_queue("many")
    first = Job(name="a", idempotency_key="same")
    jobs = [first, Job(name="b", idempotency_key="same"), Job(name="c"), Job(id=first.id, name="d")]
    results = await queue.enqueue_many(jobs)
    assert results == [Ok(first.id), Ok(first.id), Ok(jobs[2].id), Ok(first.id)]
    assert await queue.get_task_count() == 2


async def test_idempotency_key_expires_after_ttl_once_job_is_gone(
    make_redis_queue: MakeQueue,
) -> None:
    queue = make_redis_queue("idem-ttl", idempotency_ttl=0.2)
    first = Job(name="a", idempotency_key="k")
    await queue.enqueue(first)
    await asyncio.sleep(0.3)  # the TTL passes while the job still waits
    # Held while the job exists, whatever the TTL says.
    assert await queue.enqueue(Job(name="b", idempotency_key="k")) == Ok(first.id)
    leased = await queue.dequeue()
    assert leased is not None
    await queue.ack(leased.id)
    # Job gone and TTL over: the key is free again.
    second = Job(name="c", idempotency_key="k")
    assert await queue.enqueue(second) == Ok(second.id)


async def test_max_size_returns_queue_full(make_redis_queue: MakeQueue) -> None:
    queue = make_redis_queue("small", max_size=2)
    assert (await queue.enqueue(Job(name="a"))).is_ok()
    assert (await queue.enqueue(Job(name="b"))).is_ok()
    full = await queue.enqueue(Job(name="c"))
    assert isinstance(full, Err)
    assert isinstance(full.error, QueueFullError)
    # In-flight jobs do not count as waiting.
    assert await queue.dequeue() is not None
    assert (await queue.enqueue(Job(name="d"))).is_ok()


async def test_poison_payload_is_leased_as_poison_job(
    make_redis_queue: MakeQueue, redis_url: str
) -> None:
    queue = make_redis_queue("poison")
    good = Job(name="good")
    await queue.enqueue(good)
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.hset(queue.keys.jobs, good.id, b"\xff not json")
    finally:
        await client.aclose()
    held = await queue.get_job(good.id)
    assert held is not None
    assert held.name == POISON_JOB_NAME
    assert held.queue_name == "poison"
    leased = await queue.dequeue()
    assert leased is not None
    assert leased.name == POISON_JOB_NAME
    assert leased.id == good.id
    # The dead-letter record shows the queue of the job the worker dead-letters.
    assert leased.queue_name == "poison"
    assert leased.delivery_count == 1
    assert "not valid JSON" in (leased.last_error or "")
    await queue.ack(leased.id)
    assert await queue.count("poison") == 0


async def test_scripts_reload_after_script_flush(
    make_redis_queue: MakeQueue, redis_url: str
) -> None:
    queue = make_redis_queue("flush")
    await queue.enqueue(Job(name="a"))
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.script_flush()
    finally:
        await client.aclose()
    assert (await queue.enqueue(Job(name="b"))).is_ok()
    assert len(await queue.dequeue_batch(5)) == 2


async def test_close_wakes_a_blocked_consumer(make_redis_queue: MakeQueue) -> None:
    queue = make_redis_queue("closing")
    waiter = asyncio.create_task(queue.dequeue_batch(1, timeout=30))
    await asyncio.sleep(0.1)
    await queue.close()
    assert await asyncio.wait_for(waiter, 5) == []
    # A closed queue reconnects lazily when used again.
    assert (await queue.enqueue(Job(name="after"))).is_ok()


async def test_idle_consumer_wakes_within_milliseconds(make_redis_queue: MakeQueue) -> None:
    consumer = make_redis_queue("latency")
    producer = make_redis_queue("latency")
    await consumer.connect()
    waits: list[float] = []
    for _ in range(5):
        task = asyncio.create_task(consumer.dequeue_batch(1, timeout=10))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        await producer.enqueue(Job(name="ping"))
        got = await asyncio.wait_for(task, 10)
        waits.append(time.perf_counter() - started)
        assert len(got) == 1
        await consumer.ack(got[0].id)
    # Not a speed assertion: a sleep-poll design would take its poll interval (>= 1 s).
    assert min(waits) < 0.5


async def test_delayed_job_wakes_blocked_consumer_at_its_time(make_redis_queue: MakeQueue) -> None:
    queue = make_redis_queue("delayed-wake")
    await queue.enqueue(Job(name="later", scheduled_at=time.time() + 0.4))
    started = time.monotonic()
    got = await queue.dequeue_batch(1, timeout=10)
    elapsed = time.monotonic() - started
    assert len(got) == 1
    assert 0.2 <= elapsed < 5


async def test_queue_works_across_event_loops(redis_url: str, key_prefix: str) -> None:
    queue = RedisTaskQueue(redis_url, "loops", key_prefix=key_prefix)

    def in_new_loop() -> int:
        async def body() -> int:
            await queue.enqueue(Job(name="x"))
            try:
                return await queue.get_task_count()
            finally:
                await queue.close()  # release this loop's pool inside this loop

        return asyncio.run(body())

    assert await asyncio.to_thread(in_new_loop) == 1
    assert await queue.get_task_count() == 1
    await queue.clear()
    await queue.close()


async def test_backend_create_queue_reads_options(redis_url: str, key_prefix: str) -> None:
    spec = TaskBackendSpec(
        name="main",
        type="redis",
        url=redis_url,
        queue_name="from-spec",
        options={"visibility_timeout": "2.5", "key_prefix": key_prefix, "max_size": 10},
    )
    queue = backend.create_queue(spec)
    try:
        assert queue.visibility_timeout == 2.5
        assert queue.queue_name == "from-spec"
        assert queue.key_prefix == key_prefix
        assert (await queue.enqueue(Job(name="x"))).is_ok()
    finally:
        await queue.clear()
        await queue.close()
    with pytest.raises(TaskConfigurationError, match="unknown option"):
        backend.create_queue(TaskBackendSpec(type="redis", options={"visibilty_timeout": 1}))


async def test_cancelled_wait_gives_back_a_job_it_leased(make_redis_queue: MakeQueue) -> None:
    consumer = make_redis_queue("cancelled-wait", visibility_timeout=30)
    producer = make_redis_queue("cancelled-wait", visibility_timeout=30)
    waiter = asyncio.create_task(consumer.dequeue_batch(1, timeout=0.5))
    await asyncio.sleep(0.1)  # let it reach its (server-side) wait
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # The cancelled waiter's pop is still pending on the server: it takes this job's
    # wake-up and its pipelined lease script leases the job. It must come back at once,
    # not after the 30 s lease.
    job = Job(name="x")
    await producer.enqueue(job)
    got = await producer.dequeue_batch(1, timeout=5)
    assert [j.id for j in got] == [job.id]
    await producer.ack(job.id)
