"""A succeeded job's ack and its result in one script call, against a real Redis.

`RedisTaskQueue.result_acker` hands a worker one function for both when its result store
is a `RedisResultStore` on the queue's own connection. It must keep the two steps'
promise: the result is stored only if the ack held, and it answers what `ack` would.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import (
    Job,
    JobResult,
    JobStatus,
    ResultAckingQueueProtocol,
    TaskBackendSpec,
)
from lexigram.tasks import TaskWorker
from lexigram.tasks.backends.redis import (
    RedisBackend,
    RedisConnector,
    RedisResultStore,
    RedisTaskQueue,
)
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.execution import TaskWorkerServices
from lexigram.tasks.results import InMemoryResultStore

pytestmark = pytest.mark.redis


class Pair:
    """A queue and a result store built by one backend object (one shared connection)."""

    def __init__(self, redis_url: str, key_prefix: str) -> None:
        backend = RedisBackend()
        spec = TaskBackendSpec(type="redis", url=redis_url, options={"key_prefix": key_prefix})
        self.queue = backend.create_queue(spec)
        self.store = backend.create_result_store(spec)


@pytest_asyncio.fixture
async def pair(redis_url: str, key_prefix: str, connector: RedisConnector) -> AsyncIterator[Pair]:
    # `connector` is only for its teardown: it deletes every key of the test's prefix.
    built = Pair(redis_url, key_prefix)
    yield built
    await built.store.close()
    await built.queue.close()


def _result(job: Job, data: object = "done") -> JobResult:
    return JobResult(success=True, data=data, id=job.id, name=job.name, completed_at=1.0)


async def _leased(queue: RedisTaskQueue, count: int) -> list[Job]:
    for _ in range(count):
        (await queue.enqueue(Job(name="noop"))).unwrap()
    jobs = await queue.dequeue_batch(count, timeout=1.0)
    assert len(jobs) == count
    return jobs


async def test_only_a_result_store_on_the_queues_own_connection_gets_an_acker(
    pair: Pair, redis_url: str, key_prefix: str
) -> None:
    assert isinstance(pair.queue, ResultAckingQueueProtocol)
    assert pair.queue.result_acker(pair.store) is not None
    assert pair.queue.result_acker(InMemoryResultStore()) is None
    elsewhere = RedisResultStore(redis_url, key_prefix=key_prefix)  # a connection of its own
    try:
        assert pair.queue.result_acker(elsewhere) is None
    finally:
        await elsewhere.close()


async def test_a_held_delivery_is_acked_and_its_result_stored(pair: Pair) -> None:
    (job, unwatched) = await _leased(pair.queue, 2)
    acker = pair.queue.result_acker(pair.store)
    assert acker is not None
    waiting = asyncio.create_task(pair.store.wait(job.id, timeout=5.0))
    await asyncio.sleep(0.05)  # the waiter blocks on the result's notify list first
    assert await acker(unwatched.id, _result(unwatched), unwatched.lease_token) is True
    # Nobody waits for that one: its result is stored without a wake-up token.
    assert await pair.store.get(unwatched.id) is not None
    client = pair.store.connector.client()
    assert await client.exists(pair.store._notify_key(unwatched.id)) == 0
    assert await acker(job.id, _result(job, {"n": 1}), job.lease_token) is True
    woken = await asyncio.wait_for(waiting, 2.0)
    assert woken is not None
    assert woken.data == {"n": 1}
    assert await pair.queue.get_job(job.id) is None  # acked: the queue forgot it
    assert await pair.queue.count(pair.queue.queue_name) == 0
    stored = await pair.store.get(job.id)
    assert stored is not None
    assert stored.success
    assert stored.data == {"n": 1}
    assert {r.id for r in await pair.store.get_completed()} == {job.id, unwatched.id}


async def test_a_stale_token_changes_nothing_and_stores_no_result(pair: Pair) -> None:
    (job,) = await _leased(pair.queue, 1)
    acker = pair.queue.result_acker(pair.store)
    assert acker is not None
    assert await acker(job.id, _result(job), "12345") is False
    assert await pair.store.get(job.id) is None
    assert await pair.queue.count(pair.queue.queue_name, JobStatus.RUNNING) == 1
    assert await acker(job.id, _result(job), job.lease_token) is True  # the holder still can


async def test_concurrent_calls_each_get_their_own_answer(pair: Pair) -> None:
    jobs = await _leased(pair.queue, 50)
    acker = pair.queue.result_acker(pair.store)
    assert acker is not None
    # Every fifth call names a delivery that is not the job's: refused, nothing stored.
    answers = await asyncio.gather(
        *(
            acker(job.id, _result(job, n), job.lease_token if n % 5 else "999")
            for n, job in enumerate(jobs)
        )
    )
    assert answers == [n % 5 != 0 for n in range(50)]
    for n, job in enumerate(jobs):
        stored = await pair.store.get(job.id)
        assert (stored is not None and stored.data == n) is (n % 5 != 0)
    assert await pair.queue.count(pair.queue.queue_name, JobStatus.RUNNING) == 10


async def test_a_worker_stores_each_result_through_the_acker(pair: Pair) -> None:
    calls = 0

    async def double(n: int) -> int:
        nonlocal calls
        calls += 1
        return n * 2

    for n in range(30):
        (await pair.queue.enqueue(Job(name="double", args=(n,)))).unwrap()
    worker = TaskWorker(
        "w1",
        pair.queue,
        {"double": double},
        TaskWorkerConfig(max_concurrent_tasks=10, poll_interval=0.05),
        TaskWorkerServices(result_store=pair.store),
    )
    await worker.start()
    try:
        for _ in range(200):
            if await pair.queue.count(pair.queue.queue_name) == 0 and not worker.is_busy():
                break
            await asyncio.sleep(0.02)
    finally:
        await worker.stop(drain=True)
    assert calls == 30
    completed = await pair.store.get_completed()
    assert sorted(r.data for r in completed) == [n * 2 for n in range(30)]
