"""Listing results when processes sharing a key prefix keep them for different times.

Workers and producers may share one prefix with different `result_ttl` settings. A
result must stay listed by `get_completed` / `get_failed` for as long as it exists, which
is the TTL it was stored with, whichever process stores next; and an entry must leave
the listing once its result is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from lexigram.contracts.tasks import Job, JobResult, TaskBackendSpec
from lexigram.tasks.backends.redis import RedisBackend, RedisConnector, RedisResultStore

pytestmark = pytest.mark.redis

_SHORT = 0.3  # seconds the short-lived process keeps a result
_PAST_SHORT = 0.5  # long enough for such a result to expire


@pytest_asyncio.fixture
async def raw(redis_url: str, connector: RedisConnector) -> AsyncIterator[aioredis.Redis]:
    # `connector` is only for its teardown: it deletes every key of the test's prefix.
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def _ok(job_id: str) -> JobResult:
    return JobResult(success=True, data=job_id, id=job_id)


def _failed(job_id: str) -> JobResult:
    return JobResult(success=False, error="boom", id=job_id)


async def test_a_shorter_ttl_does_not_drop_the_entries_of_longer_lived_results(
    connector: RedisConnector, key_prefix: str
) -> None:
    keeper = RedisResultStore(key_prefix=key_prefix, connector=connector, ttl=60)
    brief = RedisResultStore(key_prefix=key_prefix, connector=connector, ttl=_SHORT)
    await keeper.store("kept", _ok("kept"))
    await keeper.store("kept-failed", _failed("kept-failed"))
    await asyncio.sleep(_PAST_SHORT)
    await brief.store("brief", _ok("brief"))  # trims the shared index

    assert await keeper.get("kept") is not None
    assert [r.id for r in await keeper.get_completed()] == ["brief", "kept"]
    assert [r.id for r in await brief.get_failed()] == ["kept-failed"]

    await asyncio.sleep(_PAST_SHORT)
    await keeper.store("later", _ok("later"))  # trims "brief", whose result is gone
    assert [r.id for r in await brief.get_completed()] == ["later", "kept"]
    assert await keeper.cleanup_expired() == 0  # nothing left to drop


async def test_acks_that_store_results_trim_by_each_results_own_expiry(
    redis_url: str, key_prefix: str, connector: RedisConnector
) -> None:
    # A worker settling with ACK_AND_STORE (the queue's script) and a short result_ttl.
    backend = RedisBackend()
    options = {"key_prefix": key_prefix, "result_ttl": _SHORT}
    spec = TaskBackendSpec(type="redis", url=redis_url, options=options)
    queue = backend.create_queue(spec)
    worker_store = backend.create_result_store(spec)
    keeper = RedisResultStore(key_prefix=key_prefix, connector=connector, ttl=60)
    try:
        acker = queue.result_acker(worker_store)
        assert acker is not None
        await keeper.store("kept", _ok("kept"))
        await asyncio.sleep(_PAST_SHORT)
        (await queue.enqueue(Job(name="noop", id="acked"))).unwrap()
        [job] = await queue.dequeue_batch(1, timeout=1.0)
        assert await acker(job.id, _ok(job.id), job.lease_token) is True

        assert [r.id for r in await keeper.get_completed()] == ["acked", "kept"]
    finally:
        await worker_store.close()
        await queue.close()


async def test_a_listing_skips_entries_whose_result_expired_before_any_trim(
    connector: RedisConnector, key_prefix: str
) -> None:
    keeper = RedisResultStore(key_prefix=key_prefix, connector=connector, ttl=60)
    brief = RedisResultStore(key_prefix=key_prefix, connector=connector, ttl=_SHORT)
    await keeper.store("old-1", _ok("old-1"))
    await keeper.store("old-2", _ok("old-2"))
    await brief.store("new-1", _ok("new-1"))
    await brief.store("new-2", _ok("new-2"))
    await asyncio.sleep(_PAST_SHORT)  # the newest two are gone, still in the index

    assert [r.id for r in await keeper.get_completed(limit=2)] == ["old-2", "old-1"]
    assert [r.id for r in await keeper.get_completed(limit=1)] == ["old-2"]
    assert [r.id for r in await keeper.get_completed()] == ["old-2", "old-1"]
    assert await keeper.cleanup_expired() == 2


async def test_entries_stored_before_the_expiry_index_go_once_their_result_is_gone(
    connector: RedisConnector, key_prefix: str, raw: aioredis.Redis
) -> None:
    # An earlier version indexed results without their expiry: such entries have no
    # expiry score. They are dropped once their result is gone, not before.
    store = RedisResultStore(key_prefix=key_prefix, connector=connector, ttl=60)
    tag = f"{{{key_prefix}:results}}"
    await raw.set(f"{tag}:r:alive", _ok("alive").to_json(of="alive"), px=60_000)
    await raw.zadd(f"{tag}:completed", {"gone": 1.0, "alive": 2.0})
    await raw.zadd(f"{tag}:failed", {"gone-failed": 1.0})

    await store.store("new", _ok("new"))
    assert await raw.zrange(f"{tag}:completed", 0, -1) == [b"alive", b"new"]
    assert await raw.zrange(f"{tag}:failed", 0, -1) == []

    await raw.delete(f"{tag}:r:alive")
    assert await store.cleanup_expired() == 1
    assert await raw.zrange(f"{tag}:completed", 0, -1) == [b"new"]


async def test_a_deleted_result_leaves_every_index(
    connector: RedisConnector, key_prefix: str, raw: aioredis.Redis
) -> None:
    store = RedisResultStore(key_prefix=key_prefix, connector=connector, ttl=60)
    await store.store("job", _ok("job"))
    assert await store.delete("job") is True
    tag = f"{{{key_prefix}:results}}"
    assert await raw.exists(f"{tag}:completed", f"{tag}:expiry") == 0
