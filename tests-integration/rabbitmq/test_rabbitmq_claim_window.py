"""An idempotency key whose producer died before its publish does not keep its job away.

With a shared state store, a RabbitMQ enqueue claims the job's key in the store, then
publishes the job. A producer killed between the two left the key held for its whole TTL
by a job that never reached the queue: a workflow step run again after its worker died
re-enqueued the next step, was told that step was already queued, and the run waited
forever. A claim now stays pending until the broker confirms the job; a pending claim of
another process is waited for and, once it expires, taken.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.rabbitmq._idem_records import OPEN_CLAIMS, idem_value
from lexigram.tasks.backends.rabbitmq._state import CLAIM_MARGIN
from lexigram.tasks.backends.redis import RedisCacheBackend

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis]

PUBLISH_TIMEOUT = 1.0
SCRIPT = Path(__file__).with_name("claim_and_die.py")


@pytest_asyncio.fixture
async def shared(amqp_url: str, redis_url: str) -> AsyncIterator[tuple[RabbitMQTaskQueue, str]]:
    prefix = f"lexigram-test-claim-{uuid.uuid4().hex[:8]}"
    store = RedisCacheBackend(redis_url, key_prefix=prefix)
    name = f"claim-window-{uuid.uuid4().hex[:8]}"
    queue = RabbitMQTaskQueue(amqp_url, name, state_store=store, publish_timeout=PUBLISH_TIMEOUT)
    await queue.connect()
    try:
        yield queue, prefix
    finally:
        await queue.delete_queues(if_empty=False)
        await queue.close()
        for key in await store.keys(""):
            await store.delete(key)
        await store.close()


async def _claim_in_a_dying_process(
    amqp_url: str, redis_url: str, queue: RabbitMQTaskQueue, prefix: str, key: str
) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SCRIPT),
        amqp_url,
        redis_url,
        queue.queue_name,
        prefix,
        key,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert out.startswith(b"claimed "), err.decode()
    return out.decode().split()[1]


async def test_a_key_claimed_by_a_producer_that_died_goes_to_the_next_enqueue(
    shared: tuple[RabbitMQTaskQueue, str], amqp_url: str, redis_url: str
) -> None:
    queue, prefix = shared
    ghost = await _claim_in_a_dying_process(amqp_url, redis_url, queue, prefix, "next-step")
    started = time.monotonic()
    result = await queue.enqueue(Job(name="step", idempotency_key="next-step"))
    waited = time.monotonic() - started
    job_id = result.unwrap()
    assert job_id != ghost, "the key still names a job that never reached the queue"
    jobs = await queue.dequeue_batch(1, timeout=5.0)
    assert [job.id for job in jobs] == [job_id]
    # It waited for the dead producer's claim to lapse, and no longer.
    assert waited < PUBLISH_TIMEOUT + CLAIM_MARGIN + 5.0
    # Its own claim is confirmed: the next enqueue with the key is its duplicate at once.
    started = time.monotonic()
    again = await queue.enqueue(Job(name="step", idempotency_key="next-step"))
    assert again.unwrap() == job_id
    assert time.monotonic() - started < 1.0


async def test_a_live_producers_pending_claim_still_makes_the_duplicate(
    shared: tuple[RabbitMQTaskQueue, str], amqp_url: str, redis_url: str
) -> None:
    queue, prefix = shared
    store = RedisCacheBackend(redis_url, key_prefix=prefix)
    other = RabbitMQTaskQueue(
        amqp_url, queue.queue_name, state_store=store, publish_timeout=PUBLISH_TIMEOUT
    )
    await other.connect()
    try:
        first, second = await asyncio.gather(
            queue.enqueue(Job(name="step", idempotency_key="once")),
            other.enqueue(Job(name="step", idempotency_key="once")),
        )
        assert first.unwrap() == second.unwrap()
        jobs = await queue.dequeue_batch(10, timeout=2.0)
        assert [job.id for job in jobs] == [first.unwrap()]
    finally:
        await other.close()
        await store.close()


async def test_a_key_taken_again_by_a_job_already_on_the_queue_is_held_for_good(
    shared: tuple[RabbitMQTaskQueue, str],
) -> None:
    # The job waits on the queue while its key's record is gone (a store flushed, say):
    # enqueued again under its id, it takes the key, and its message is the one queued.
    queue, _ = shared
    job = Job(name="step", idempotency_key="again")
    job_id = (await queue.enqueue(job)).unwrap()
    states = queue._states
    key = states._key("idem", "again")
    await states.store.delete(key)
    assert (await queue.enqueue(Job(id=job_id, name="step", idempotency_key="again"))).unwrap() == (
        job_id
    )
    value = await states.store.get(key)
    assert value is not None
    assert not value.startswith("p@"), value  # confirmed, not left pending
    assert key not in OPEN_CLAIMS


async def test_a_bulk_enqueue_publishes_its_own_keys_before_waiting_for_anothers(
    shared: tuple[RabbitMQTaskQueue, str],
) -> None:
    # Two processes bulk-enqueueing overlapping keys at once must not wait on each
    # other: each one's jobs go out (their keys confirmed) before it waits for the other's.
    queue, _ = shared
    states = queue._states
    theirs = states._key("idem", "shared")
    # Another process's claim of "shared", its publish under way.
    await states.store.set(theirs, idem_value(time.time() + 60, "theirs", pending=True), 30)
    jobs = [Job(name="step", idempotency_key=f"own-{n}") for n in range(3)]
    jobs.append(Job(name="step", idempotency_key="shared"))
    bulk = asyncio.ensure_future(queue.enqueue_many(jobs))
    own = [states._key("idem", f"own-{n}") for n in range(3)]
    async with asyncio.timeout(5):
        while True:
            values = [await states.store.get(key) for key in own]
            if all(value is not None and value.startswith("@") for value in values):
                break
            assert not bulk.done()
            await asyncio.sleep(0.05)
    assert not bulk.done()  # still waiting for the other process's job
    await states.confirm_idempotency([("shared", "theirs", 60.0, 0.0)])
    results = await asyncio.wait_for(bulk, 5)
    assert [result.unwrap() for result in results] == [*(job.id for job in jobs[:3]), "theirs"]
    delivered = await queue.dequeue_batch(10, timeout=2.0)
    assert sorted(job.id for job in delivered) == sorted(job.id for job in jobs[:3])
