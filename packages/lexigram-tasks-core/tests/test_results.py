"""Result stores and the in-memory cache backend: TTL, capacity, waiting, serialization."""

from __future__ import annotations

import asyncio
import types

import pytest

from lexigram.contracts.tasks import (
    CacheBackendProtocol,
    JobResult,
    ResultStoreProtocol,
    TaskConfigurationError,
)
from lexigram.tasks.cache import InMemoryCacheBackend
from lexigram.tasks.results import CacheBackendResultStore, InMemoryResultStore, ResultStore


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    namespace = types.SimpleNamespace(monotonic=fake.monotonic)
    monkeypatch.setattr("lexigram.tasks.results._memory.time", namespace)
    monkeypatch.setattr("lexigram.tasks.cache._memory.time", namespace)
    return fake


async def test_in_memory_store_get_delete_and_protocol() -> None:
    store = InMemoryResultStore()
    assert isinstance(store, ResultStore)
    assert isinstance(store, ResultStoreProtocol)
    await store.store("a", JobResult.ok(1))
    result = await store.get("a")
    assert result is not None
    assert result.data == 1
    assert await store.delete("a") is True
    assert await store.delete("a") is False
    assert await store.get("a") is None


async def test_in_memory_store_expires_entries_after_ttl(clock: Clock) -> None:
    store = InMemoryResultStore(ttl=10)
    await store.store("a", JobResult.ok(1))
    clock.now += 5
    await store.store("b", JobResult.ok(2))
    clock.now += 6
    assert await store.get("a") is None
    assert await store.get("b") is not None
    clock.now += 10
    await store.store("c", JobResult.ok(3))  # a store also drops what has expired
    assert store.get_stats()["stored"] == 1
    clock.now += 20
    assert await store.cleanup_expired() == 1
    assert store.get_stats()["stored"] == 0


async def test_in_memory_store_evicts_the_oldest_at_capacity() -> None:
    store = InMemoryResultStore(max_size=3)
    for i in range(5):
        await store.store(f"j{i}", JobResult.ok(i))
    assert await store.get("j0") is None
    assert await store.get("j1") is None
    assert await store.get("j4") is not None
    await store.store("j2", JobResult.ok("again"))  # re-storing refreshes its place
    await store.store("j5", JobResult.ok(5))
    assert await store.get("j2") is not None
    assert await store.get("j3") is None
    stats = store.get_stats()
    assert stats == {
        "stored": 3,
        "max_size": 3,
        "pending_waiters": 0,
        "total_stored": 7,
        "ttl": 3600,
    }


async def test_in_memory_store_wait_is_woken_by_store_not_by_polling() -> None:
    store = InMemoryResultStore()

    async def waiter() -> JobResult | None:
        return await store.wait("job", timeout=10, poll_interval=60)

    waiting = [asyncio.create_task(waiter()) for _ in range(3)]
    await asyncio.sleep(0)
    assert store.get_stats()["pending_waiters"] == 3
    await store.store("job", JobResult.ok("done"))
    # Woken within one loop iteration: a poll of 60 s could never return this fast.
    results = await asyncio.wait_for(asyncio.gather(*waiting), 1.0)
    assert [r.data for r in results if r is not None] == ["done"] * 3
    assert store.get_stats()["pending_waiters"] == 0


async def test_in_memory_store_wait_returns_existing_or_none_on_timeout() -> None:
    store = InMemoryResultStore()
    await store.store("ready", JobResult.ok(1))
    ready = await store.wait("ready", timeout=0)
    assert ready is not None
    assert await store.wait("never", timeout=0.01) is None
    assert store.get_stats()["pending_waiters"] == 0


async def test_in_memory_store_completed_and_failed_newest_first() -> None:
    store = InMemoryResultStore()
    await store.store("a", JobResult.ok("a"))
    await store.store("b", JobResult.fail("b failed"))
    await store.store("c", JobResult.ok("c"))
    assert [r.data for r in await store.get_completed()] == ["c", "a"]
    assert [r.data for r in await store.get_completed(limit=1)] == ["c"]
    assert [r.error for r in await store.get_failed()] == ["b failed"]


async def test_in_memory_store_ttl_zero_keeps_entries(clock: Clock) -> None:
    store = InMemoryResultStore(ttl=0)
    await store.store("a", JobResult.ok(1))
    clock.now += 10**9
    assert await store.get("a") is not None
    with pytest.raises(TaskConfigurationError):
        InMemoryResultStore(max_size=0)


async def test_cache_backend_basics_and_ttl(clock: Clock) -> None:
    cache = InMemoryCacheBackend()
    assert isinstance(cache, CacheBackendProtocol)
    await cache.set("a", "1", ttl=10)
    await cache.set("b", "2")
    assert await cache.get("a") == "1"
    assert await cache.exists("b")
    assert await cache.set_if_absent("a", "x") is False
    assert await cache.set_if_absent("c", "3", ttl=5) is True
    assert sorted(await cache.keys("")) == ["a", "b", "c"]
    clock.now += 6
    assert await cache.get("c") is None
    clock.now += 5
    assert await cache.keys("a") == []
    assert await cache.set_if_absent("a", "new") is True
    assert await cache.delete("a") is True
    assert await cache.delete("a") is False
    await cache.clear()
    assert len(cache) == 0
    assert "InMemoryCacheBackend" in repr(cache)


async def test_cache_backend_drops_expired_keys_on_writes(clock: Clock) -> None:
    cache = InMemoryCacheBackend()
    for i in range(100):
        await cache.set(f"k{i}", "v", ttl=1)
    clock.now += 2
    await cache.set("fresh", "v")
    assert len(cache) == 1


async def test_cache_result_store_round_trip_and_delete() -> None:
    cache = InMemoryCacheBackend()
    store = CacheBackendResultStore(cache, ttl=60)
    result = JobResult.ok({"rows": 3}, duration=0.5)
    result.id, result.name = "j1", "export"
    await store.store("j1", result)
    got = await store.get("j1")
    assert got is not None
    assert got.to_dict() == result.to_dict()
    assert await cache.keys("lexigram:tasks:result:") == ["lexigram:tasks:result:j1"]
    assert await store.delete("j1") is True
    assert await store.get("j1") is None
    assert await store.cleanup_expired() == 0


async def test_cache_result_store_keeps_non_json_data_as_every_store_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = CacheBackendResultStore(InMemoryCacheBackend())
    await store.store("j", JobResult.ok({"when": object}))
    found = await store.get("j")
    assert found is not None
    assert found.data == {"when": repr(object)}
    assert "result of job j" in caplog.text


async def test_cache_result_store_wait_local_and_across_instances() -> None:
    cache = InMemoryCacheBackend()
    here = CacheBackendResultStore(cache, poll_interval=60)
    waiting = asyncio.create_task(here.wait("j", timeout=10))
    await asyncio.sleep(0)
    await here.store("j", JobResult.ok(1))
    local = await asyncio.wait_for(waiting, 1.0)  # woken by this instance's store()
    assert local is not None

    there = CacheBackendResultStore(cache, poll_interval=0.01)  # another process's view
    remote = asyncio.create_task(there.wait("k", timeout=10))
    await asyncio.sleep(0)
    await here.store("k", JobResult.ok(2))
    found = await asyncio.wait_for(remote, 2.0)  # seen by re-reading the cache
    assert found is not None
    assert found.data == 2
    assert await there.wait("none", timeout=0.02) is None


async def test_cache_result_store_completed_and_failed() -> None:
    store = CacheBackendResultStore(InMemoryCacheBackend())
    ok = JobResult.ok("a")
    ok.completed_at = 1.0
    newer = JobResult.ok("b")
    newer.completed_at = 2.0
    await store.store("a", ok)
    await store.store("b", newer)
    await store.store("c", JobResult.fail("bad"))
    assert [r.data for r in await store.get_completed()] == ["b", "a"]
    assert [r.data for r in await store.get_completed(limit=1)] == ["b"]
    assert [r.error for r in await store.get_failed()] == ["bad"]
    assert "CacheBackendResultStore" in repr(store)


async def test_cache_result_store_ignores_unreadable_entries() -> None:
    cache = InMemoryCacheBackend()
    store = CacheBackendResultStore(cache)
    await cache.set("lexigram:tasks:result:junk", "{not json")
    assert await store.get("junk") is None
