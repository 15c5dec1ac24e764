"""The shipped conformance kit, run in full against RedisTaskQueue on a real server.

Each test gets its own key prefix; every call of ``make_queue`` is another handle (with
its own connection pool) on the same queue, as a second worker process would have.
The kit's default margins hold unwidened. The Redis Cluster run is in
``tests-integration/redis/test_redis_cluster.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import ResultStoreProtocol, TaskBackendSpec, TaskQueueProtocol
from lexigram.tasks.backends.redis import RedisBackend, RedisResultStore, RedisTaskQueue
from lexigram.tasks.testing import (
    KeyTTLQueueFactory,
    PairedStoreFactory,
    QueueConformance,
    QueueFactory,
    QueueLeaseRenewerConformance,
    QueuePoisonConformance,
    QueueResultAckerConformance,
)

pytestmark = pytest.mark.redis


DeletePrefix = Callable[[str, str], Awaitable[None]]  # the top conftest's delete_redis_prefix


async def plant_raw(queue: TaskQueueProtocol, raw: bytes) -> str:
    """Store `raw` as a waiting job's payload through the queue's own enqueue script.

    The script stores the payload bytes as given, exactly where `enqueue` puts an
    encoded job, and makes the id ready (and wakes a blocked consumer).
    """
    assert isinstance(queue, RedisTaskQueue)
    job_id = f"poison-{uuid.uuid4().hex[:12]}"
    # One enqueue-script entry: id, payload, priority, ready-at (0 = now), idempotency
    # key and ttl, delivery count, retrying flag.
    entry = (job_id, raw, 0, 0, "", 0, 0, "0")
    [(status, stored)] = await queue._enqueue_entries([entry])
    assert (status, stored) == (1, job_id)
    return job_id


@pytest.fixture
def key_prefix() -> str:
    return f"lexigram-conformance-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def backends() -> dict[int, RedisBackend]:
    """The backend object that built each queue of the test (by the queue's id)."""
    return {}


@pytest_asyncio.fixture
async def make_queue(
    redis_url: str,
    lease_seconds: float,
    key_prefix: str,
    backends: dict[int, RedisBackend],
    delete_redis_prefix: DeletePrefix,
) -> AsyncIterator[QueueFactory]:
    made: list[RedisTaskQueue] = []

    async def factory() -> RedisTaskQueue:
        # A backend object per queue: each handle has its own connection, as a second
        # worker process would have.
        backend = RedisBackend()
        queue = backend.create_queue(_spec(redis_url, key_prefix, lease_seconds))
        backends[id(queue)] = backend
        made.append(queue)
        return queue

    yield factory
    for queue in made:
        await queue.close()
    await delete_redis_prefix(redis_url, key_prefix)


@pytest_asyncio.fixture
async def make_paired_result_store(
    redis_url: str, lease_seconds: float, key_prefix: str, backends: dict[int, RedisBackend]
) -> AsyncIterator[PairedStoreFactory]:
    """The result store the backend object that built a queue builds beside it."""
    made: list[RedisResultStore] = []

    async def factory(queue: TaskQueueProtocol) -> ResultStoreProtocol:
        spec = _spec(redis_url, key_prefix, lease_seconds)
        store = backends[id(queue)].create_result_store(spec)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


def _spec(url: str, prefix: str, lease_seconds: float, **extra: Any) -> TaskBackendSpec:
    options = {"key_prefix": prefix, "visibility_timeout": lease_seconds, **extra}
    return TaskBackendSpec(type="redis", url=url, queue_name="conformance", options=options)


class TestRedisQueueConformance(QueueConformance):
    # An async fixture with arguments replaces the kit's plain one (mypy sees two types).
    @pytest_asyncio.fixture
    async def make_queue_with_idempotency_ttl(  # type: ignore[override]
        self,
        redis_url: str,
        lease_seconds: float,
        key_prefix: str,
        delete_redis_prefix: DeletePrefix,
    ) -> AsyncIterator[KeyTTLQueueFactory]:
        # As make_queue, with the TTL in the spec's options.
        made: list[RedisTaskQueue] = []

        async def factory(ttl: float) -> RedisTaskQueue:
            spec = _spec(redis_url, key_prefix, lease_seconds, idempotency_ttl=ttl)
            queue = RedisBackend().create_queue(spec)
            made.append(queue)
            return queue

        yield factory
        for queue in made:
            await queue.close()
        await delete_redis_prefix(redis_url, key_prefix)


class TestRedisQueuePoisonConformance(QueuePoisonConformance):
    async def plant_raw_payload(self, queue: TaskQueueProtocol, raw: bytes) -> str:
        return await plant_raw(queue, raw)


class TestRedisLeaseRenewerConformance(QueueLeaseRenewerConformance):
    """Leases renewed from the worker's lease keeper thread (its own connection)."""


class TestRedisResultAckerConformance(QueueResultAckerConformance):
    """A succeeded job's ack and result in one script call (`result_acker`)."""
