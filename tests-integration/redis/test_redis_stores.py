"""Every Redis store against a real server: results, progress, DLQ, scheduler, workflows,
idempotency, cache, locks and rate limiters."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
import redis.asyncio as aioredis

from lexigram.contracts.tasks import (
    OPTIONAL_BACKEND_FACTORIES,
    CacheBackendProtocol,
    DLQBackendProtocol,
    IdempotencyStoreProtocol,
    JobResult,
    LockManagerProtocol,
    ProgressInfo,
    ProgressStatus,
    ProgressStoreProtocol,
    ProgressTrackerProtocol,
    RateLimiterProtocol,
    ResultStoreProtocol,
    SchedulerStoreProtocol,
    StepResult,
    TaskBackendSpec,
    TaskConfigurationError,
    WorkflowResult,
    WorkflowStateStoreProtocol,
    WorkflowStatus,
)
from lexigram.tasks.backends.redis import (
    RedisBackend,
    RedisCacheBackend,
    RedisConnector,
    RedisDLQBackend,
    RedisIdempotencyStore,
    RedisLockManager,
    RedisProgressStore,
    RedisProgressTracker,
    RedisRateLimiter,
    RedisResultStore,
    RedisSchedulerStore,
    RedisWorkflowStateStore,
)

pytestmark = pytest.mark.redis


# -- backend factories ---------------------------------------------------------------


async def test_backend_offers_every_optional_factory(redis_url: str, key_prefix: str) -> None:
    backend = RedisBackend()
    spec = TaskBackendSpec(type="redis", url=redis_url, options={"key_prefix": key_prefix})
    expected = {
        "create_result_store": ResultStoreProtocol,
        "create_progress_store": ProgressStoreProtocol,
        "create_progress_tracker": ProgressTrackerProtocol,
        "create_dlq_backend": DLQBackendProtocol,
        "create_scheduler_store": SchedulerStoreProtocol,
        "create_workflow_state_store": WorkflowStateStoreProtocol,
        "create_lock_manager": LockManagerProtocol,
        "create_cache_backend": CacheBackendProtocol,
        "create_idempotency_store": IdempotencyStoreProtocol,
    }
    assert set(OPTIONAL_BACKEND_FACTORIES) == {*expected, "create_rate_limiter"}
    for factory, protocol in expected.items():
        assert isinstance(getattr(backend, factory)(spec), protocol), factory
    limiter = backend.create_rate_limiter(spec, name="x", rate=10, per=1.0, burst=None)
    assert isinstance(limiter, RateLimiterProtocol)
    # One pool per URL and connection options, shared by the queue and every store.
    assert backend.connector(spec) is backend.create_queue(spec).connector
    await backend.close()


# -- results ---------------------------------------------------------------------------


async def test_result_store_round_trip_and_lists(
    connector: RedisConnector, key_prefix: str
) -> None:
    store = RedisResultStore(key_prefix=key_prefix, connector=connector, ttl=60)
    ok = JobResult.ok({"rows": 3}, duration=0.5)
    ok.id = "job-1"
    failed = JobResult.fail("boom", retry_count=2)
    failed.id = "job-2"
    await store.store("job-1", ok)
    await store.store("job-2", failed)
    assert await store.get("job-1") == ok
    assert await store.get("missing") is None
    assert [r.id for r in await store.get_completed()] == ["job-1"]
    assert [r.id for r in await store.get_failed(limit=5)] == ["job-2"]
    assert await store.get_completed(limit=0) == []
    assert await store.delete("job-1") is True
    assert await store.delete("job-1") is False
    assert await store.get_completed() == []


async def test_result_store_wait_wakes_on_store_from_another_client(
    redis_url: str, key_prefix: str
) -> None:
    waiter_side = RedisResultStore(redis_url, key_prefix=key_prefix)
    writer_side = RedisResultStore(redis_url, key_prefix=key_prefix)
    try:
        waiters = [asyncio.create_task(waiter_side.wait("job-w", timeout=10)) for _ in range(3)]
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await writer_side.store("job-w", JobResult.ok(42))
        results = await asyncio.wait_for(asyncio.gather(*waiters), 10)
        assert [r.data if r else None for r in results] == [42, 42, 42]
        assert time.monotonic() - started < 5  # woken, not timed out
        assert await waiter_side.wait("never", timeout=0.2) is None
    finally:
        await waiter_side.close()
        await writer_side.close()


async def test_only_an_awaited_result_leaves_a_wake_up_token(
    connector: RedisConnector, key_prefix: str
) -> None:
    """A result nobody waits for writes no notify list; a waiter's is pushed, then cleared."""
    store = RedisResultStore(key_prefix=key_prefix, connector=connector)
    client = connector.client()
    await store.store("unwatched", JobResult.ok(1))
    assert await client.exists(store._notify_key("unwatched")) == 0
    assert await client.zcard(store.result_keys.waiting) == 0

    waiter = asyncio.create_task(store.wait("watched", timeout=10))
    for _ in range(500):  # registered before it blocks
        if await client.zcard(store.result_keys.waiting):
            break
        await asyncio.sleep(0.01)
    assert await client.zcard(store.result_keys.waiting) == 1
    await store.store("watched", JobResult.ok(2))
    found = await asyncio.wait_for(waiter, 5)
    assert found is not None
    assert found.data == 2
    assert await client.zcard(store.result_keys.waiting) == 0  # the store took it out
    assert await client.exists(store._notify_key("watched")) == 1  # handed on to others
    # ...for a minute at most: the token handed on after BLPOP emptied the list kept no
    # expiry, so each awaited result left a list behind for good.
    assert 0 < await client.pttl(store._notify_key("watched")) <= 60_000

    # Deleting the result takes its token too: a later waiter blocks, it does not spin.
    assert await store.delete("watched") is True
    assert await client.exists(store._notify_key("watched")) == 0
    started = time.monotonic()
    assert await store.wait("watched", timeout=0.3) is None
    assert time.monotonic() - started >= 0.25


async def test_a_waiter_that_gave_up_is_dropped_from_the_waiting_index(
    connector: RedisConnector, key_prefix: str
) -> None:
    store = RedisResultStore(key_prefix=key_prefix, connector=connector)
    client = connector.client()
    assert await store.wait("never", timeout=0.05) is None
    # Registered until its timeout plus the client's grace, then trimmed by any store.
    assert await client.zcard(store.result_keys.waiting) == 1
    await client.zadd(store.result_keys.waiting, {"never": 0})  # as if that time passed
    await store.store("other", JobResult.ok(3))
    assert await client.zcard(store.result_keys.waiting) == 0
    await client.zadd(store.result_keys.waiting, {"never": 0})
    assert await store.cleanup_expired() == 0
    assert await client.zcard(store.result_keys.waiting) == 0


async def test_concurrent_results_share_script_calls_and_all_land(
    connector: RedisConnector, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker finishing many jobs at once stores their results in a few round trips."""
    store = RedisResultStore(key_prefix=key_prefix, connector=connector)
    batches: list[int] = []
    send = store._writes._run

    async def counted(items: list[tuple[str, str, str]]) -> list[None]:
        batches.append(len(items))
        return await send(items)

    monkeypatch.setattr(store._writes, "_run", counted)
    outcomes = [JobResult.ok(n) if n % 3 else JobResult.fail(f"boom {n}") for n in range(300)]
    waiter = asyncio.create_task(store.wait("job-299", timeout=10))
    await asyncio.gather(*(store.store(f"job-{n}", r) for n, r in enumerate(outcomes)))
    assert sum(batches) == 300
    assert len(batches) <= 4  # one lone call, then batches of up to 200
    assert [(await store.get(f"job-{n}")) for n in range(300)] == [
        JobResult.from_dict(r.to_dict()) for r in outcomes
    ]
    assert len(await store.get_failed()) == 100
    assert len(await store.get_completed()) == 200
    found = await waiter
    assert found is not None
    assert found.data == 299


async def test_result_store_ttl_and_cleanup(connector: RedisConnector, key_prefix: str) -> None:
    store = RedisResultStore(key_prefix=key_prefix, connector=connector, ttl=0.2)
    await store.store("short", JobResult.ok(1))
    await asyncio.sleep(0.35)
    assert await store.get("short") is None
    assert await store.get_completed() == []  # expired results are not listed
    assert await store.cleanup_expired() == 1
    assert await store.cleanup_expired() == 0


async def test_result_store_keeps_non_json_data_as_text(
    connector: RedisConnector, key_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisResultStore(key_prefix=key_prefix, connector=connector)
    await store.store("odd", JobResult.ok({"when": object}))
    found = await store.get("odd")
    assert found is not None
    assert found.data == {"when": repr(object)}
    assert "not JSON-serializable" in caplog.text


async def test_a_result_holding_a_lone_surrogate_is_stored_and_read_back(
    connector: RedisConnector, key_prefix: str
) -> None:
    # A file name with invalid UTF-8 bytes, decoded as Python does (surrogateescape): no
    # UTF-8 client can send it as it is, and the store used to fail the whole batch.
    name = b"scan-\xff.pdf".decode("utf-8", "surrogateescape")
    store = RedisResultStore(key_prefix=key_prefix, connector=connector)
    result = JobResult.ok({"file": name, "note": "é"})
    result.id = "odd-name"
    await store.store("odd-name", result)
    assert await store.get("odd-name") == result


# -- progress --------------------------------------------------------------------------


async def test_progress_store_active_list(connector: RedisConnector, key_prefix: str) -> None:
    store = RedisProgressStore(key_prefix=key_prefix, connector=connector)
    running = ProgressInfo(job_id="a", current=1, total=10, percentage=10.0)
    done = ProgressInfo(job_id="b", current=5, total=5, percentage=100.0)
    await store.save(running)
    await store.save(done)
    assert await store.get("a") == running
    assert [info.job_id for info in await store.list_active()] == ["a"]
    await store.delete("a")
    assert await store.get("a") is None
    assert await store.list_active() == []


async def test_progress_of_a_failed_or_cancelled_job_is_not_listed_as_active(
    redis_url: str, connector: RedisConnector, key_prefix: str
) -> None:
    # What the worker saves for a job that called `update(1, 10)` and then raised, or was
    # cancelled: the count never reached the total, but the status says it ended.
    store = RedisProgressStore(key_prefix=key_prefix, connector=connector)
    running = ProgressInfo(job_id="run", current=1, total=10, metadata={"status": "running"})
    await store.save(running)
    await store.save(
        ProgressInfo(job_id="fail", current=1, total=10, metadata={"status": "failed"})
    )
    await store.save(
        ProgressInfo(job_id="cancel", message="cancelled", metadata={"status": "failed"})
    )
    await store.save(ProgressInfo(job_id="done", metadata={"status": "complete"}))
    assert [info.job_id for info in await store.list_active()] == ["run"]
    got = await store.get("fail")
    assert got is not None
    assert got.metadata == {"status": "failed"}
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.smembers(store._active) == {b"run"}
        # An entry an earlier version left in the active set when its job failed.
        await client.sadd(store._active, "old")
        old = ProgressInfo(job_id="old", current=1, total=10, metadata={"status": "failed"})
        await client.set(store._key("old"), json.dumps(old.to_dict()), ex=60)
        assert [info.job_id for info in await store.list_active()] == ["run"]
    finally:
        await client.aclose()
    # The next attempt of a retried job reports progress again: listed again.
    await store.save(
        ProgressInfo(job_id="fail", current=2, total=10, metadata={"status": "running"})
    )
    assert [info.job_id for info in await store.list_active()] == ["fail", "run"]


async def test_progress_tracker_streams_across_clients(redis_url: str, key_prefix: str) -> None:
    watcher = RedisProgressTracker(redis_url, key_prefix=key_prefix)
    worker = RedisProgressTracker(redis_url, key_prefix=key_prefix)
    try:
        await worker.update("t1", 1, 4, "start")
        seen: list[tuple[int, ProgressStatus]] = []
        subscribed = asyncio.Event()

        async def follow() -> None:
            async for snap in watcher.subscribe("t1"):
                seen.append((snap.current, snap.status))
                subscribed.set()

        follower = asyncio.create_task(follow())
        await asyncio.wait_for(subscribed.wait(), 5)
        await worker.update("t1", 2, 4)
        await worker.update("t1", 3, 4)
        await worker.complete("t1", "done")
        await asyncio.wait_for(follower, 5)
        assert seen == [
            (1, ProgressStatus.RUNNING),
            (2, ProgressStatus.RUNNING),
            (3, ProgressStatus.RUNNING),
            (4, ProgressStatus.COMPLETE),
        ]
        # A late subscriber gets the terminal snapshot once.
        late = [snap async for snap in watcher.subscribe("t1")]
        assert [(s.current, s.status, s.message) for s in late] == [
            (4, ProgressStatus.COMPLETE, "done")
        ]
        await worker.fail("t2", "exploded")
        failed = await watcher.get("t2")
        assert failed is not None
        assert (failed.status, failed.error) == (ProgressStatus.FAILED, "exploded")
        assert await watcher.get("unknown") is None
    finally:
        await watcher.close()
        await worker.close()


# -- DLQ -------------------------------------------------------------------------------


async def test_dlq_backend_newest_first_and_cap(connector: RedisConnector, key_prefix: str) -> None:
    dlq = RedisDLQBackend(key_prefix=key_prefix, connector=connector, max_entries=3)
    for index in range(5):
        await dlq.add(f"r{index}", {"job_id": f"r{index}", "error": "x", "failed_at": 1000 + index})
    assert await dlq.size() == 3
    assert [r["job_id"] for r in await dlq.list_all()] == ["r4", "r3", "r2"]
    assert [r["job_id"] for r in await dlq.list_all(limit=1)] == ["r4"]
    assert await dlq.get("r0") is None
    assert (await dlq.get("r3") or {})["error"] == "x"
    await dlq.add("r3", {"job_id": "r3", "error": "replaced", "failed_at": 2000})
    assert (await dlq.get("r3") or {})["error"] == "replaced"
    assert await dlq.remove("r3") is True
    assert await dlq.remove("r3") is False
    assert await dlq.clear() == 2
    assert await dlq.size() == 0


# -- scheduler and workflows -------------------------------------------------------------


async def test_scheduler_store_round_trip(connector: RedisConnector, key_prefix: str) -> None:
    store = RedisSchedulerStore(key_prefix=key_prefix, connector=connector)
    record = {"job_id": "s1", "cron_expression": "* * * * *", "next_run": 10.5, "enabled": True}
    await store.save_job("s1", record)
    await store.update_next_run("s1", 1795891234.123456)
    await store.update_next_run("ghost", 1.0)  # unknown: ignored
    loaded = await store.load_jobs()
    assert list(loaded) == ["s1"]
    assert loaded["s1"]["next_run"] == 1795891234.123456
    assert loaded["s1"]["cron_expression"] == "* * * * *"
    await store.delete_job("s1")
    assert await store.load_jobs() == {}


async def test_scheduler_store_update_fields_changes_only_state_fields(
    connector: RedisConnector, key_prefix: str
) -> None:
    store = RedisSchedulerStore(key_prefix=key_prefix, connector=connector)
    record = {"job_id": "s1", "cron": "* * * * *", "next_run": 10.0, "enabled": True}
    await store.save_job("s1", record)
    state = {"enabled": False, "last_run": 9.5, "last_outcome": "enqueued", "cron": "x"}
    await store.update_fields("s1", state)  # "cron" is not a state field: ignored
    await store.update_fields("unknown", {"enabled": False})  # no record: ignored
    await store.update_fields("s1", {"next_run": 30.0, "last_error": None})
    assert await store.load_jobs() == {
        "s1": {
            "job_id": "s1",
            "cron": "* * * * *",
            "next_run": 30.0,
            "enabled": False,
            "last_run": 9.5,
            "last_outcome": "enqueued",
            "last_error": None,
        }
    }
    await store.save_job("s1", record)  # a save replaces the state with the record's
    assert await store.load_jobs() == {"s1": record}
    await store.delete_job("s1")
    assert await store.load_jobs() == {}


async def test_workflow_state_store(connector: RedisConnector, key_prefix: str) -> None:
    store = RedisWorkflowStateStore(key_prefix=key_prefix, connector=connector)
    running = WorkflowResult(
        workflow_id="w1",
        status=WorkflowStatus.RUNNING,
        steps=[
            StepResult(step_name="a", success=True, data=1),
            StepResult(step_name="b", success=False, error="x"),
        ],
    )
    await store.save_state("w1", running)
    await store.save_state("w2", WorkflowResult("w2", WorkflowStatus.COMPLETED))
    assert await store.load_state("w1") == running
    active = await store.list_active()
    assert [(s.workflow_id, s.status, s.completed_steps) for s in active] == [
        ("w1", WorkflowStatus.RUNNING, ["a"])
    ]
    assert active[0].created_at <= active[0].last_updated
    await store.delete_state("w1")
    assert await store.load_state("w1") is None
    assert await store.list_active() == []


# -- idempotency and cache ---------------------------------------------------------------


async def test_idempotency_store(connector: RedisConnector, key_prefix: str) -> None:
    store = RedisIdempotencyStore(key_prefix=key_prefix, connector=connector)
    assert await store.set_if_absent("k", {"task_id": "1"}, ttl=60) is None
    assert await store.set_if_absent("k", {"task_id": "2"}, ttl=60) == {"task_id": "1"}
    await store.update("k", {"task_id": "1", "status": "completed"}, ttl=60)
    assert await store.get("k") == {"task_id": "1", "status": "completed"}
    assert await store.delete("k") is True
    assert await store.get("k") is None
    assert await store.set_if_absent("short", {"a": 1}, ttl=0.1) is None
    await asyncio.sleep(0.2)
    assert await store.get("short") is None


async def test_idempotency_store_single_winner_under_concurrency(
    connector: RedisConnector, key_prefix: str
) -> None:
    store = RedisIdempotencyStore(key_prefix=key_prefix, connector=connector)
    outcomes = await asyncio.gather(
        *(store.set_if_absent("race", {"n": n}, ttl=60) for n in range(20))
    )
    assert sum(outcome is None for outcome in outcomes) == 1


async def test_cache_backend(connector: RedisConnector, key_prefix: str) -> None:
    cache = RedisCacheBackend(key_prefix=key_prefix, connector=connector)
    await cache.set("user:1", "alice")
    await cache.set("user:2", "bob", ttl=60)
    await cache.set("user:[x]*", "glob")
    await cache.set("other", "x")
    assert await cache.get("user:1") == "alice"
    assert await cache.keys("user:") == ["user:1", "user:2", "user:[x]*"]
    assert await cache.keys("user:[") == ["user:[x]*"]
    assert await cache.set_if_absent("user:1", "mallory") is False
    assert await cache.set_if_absent("new", "v", ttl=0.1) is True
    assert await cache.exists("new")
    await asyncio.sleep(0.2)
    assert not await cache.exists("new")
    assert await cache.delete("user:1") is True
    assert await cache.delete("user:1") is False
    await cache.set("gone", "v", ttl=0)
    assert await cache.get("gone") is None


async def test_single_key_store_calls_open_no_pooled_connection(
    redis_url: str, clean_prefix: str
) -> None:
    # The cache and the idempotency store send their single-key commands on the
    # multiplexed connection (RabbitMQ's producer records every job through the cache):
    # the server sees that one connection under the connector's name, never a pooled one.
    name = f"lexigram-test-{uuid.uuid4().hex[:12]}"
    connector = RedisConnector(redis_url, client_name=name)
    observer = aioredis.Redis.from_url(redis_url)
    try:
        cache = RedisCacheBackend(key_prefix=clean_prefix, connector=connector)
        idempotency = RedisIdempotencyStore(key_prefix=clean_prefix, connector=connector)
        assert await cache.get_many(["k"]) == [None]  # opens the multiplexed connection
        assert await cache.set_if_absent("k", "v", ttl=60) is True
        await cache.set("k2", "w")
        assert await cache.get("k") == "v"
        assert await cache.exists("k2")
        assert await cache.delete("k2") is True
        assert await idempotency.set_if_absent("i", {"task_id": "1"}, ttl=60) is None
        await idempotency.update("i", {"task_id": "1", "status": "completed"}, ttl=60)
        assert await idempotency.get("i") == {"task_id": "1", "status": "completed"}
        assert await idempotency.delete("i") is True
        clients = await observer.client_list()
        assert [c["name"] for c in clients].count(name) == 1
    finally:
        await connector.close()
        await observer.aclose()


async def test_cache_backend_reads_and_writes_many_keys_at_once(
    connector: RedisConnector, key_prefix: str
) -> None:
    cache = RedisCacheBackend(key_prefix=key_prefix, connector=connector)
    await cache.set("old", "x")
    await cache.set("stale", "y")
    await cache.write_many(
        [("a", "1", None), ("b", "2", 0.1), ("stale", "z", 0), ("c", "3", 60)], ["old"]
    )
    assert await cache.get_many(["a", "b", "c", "old", "stale", "none"]) == [
        "1",
        "2",
        "3",
        None,
        None,
        None,
    ]
    await asyncio.sleep(0.2)
    assert await cache.get_many(["a", "b"]) == ["1", None]
    await cache.write_many([], ["a", "c", "none"])
    assert await cache.keys("") == []
    assert await cache.get_many([]) == []
    await cache.write_many([], [])


# -- locks and rate limiters --------------------------------------------------------------


async def test_lock_is_exclusive_and_token_checked(redis_url: str, key_prefix: str) -> None:
    one = RedisLockManager(redis_url, key_prefix=key_prefix)
    two = RedisLockManager(redis_url, key_prefix=key_prefix)
    try:
        first = one.acquire("report", timeout=0.3)
        second = two.acquire("report", timeout=5)
        assert await first.try_acquire()
        assert not await second.try_acquire()
        # The first holder's lock expires; a second holder takes it; the first's
        # release must not free the second's lock.
        assert await second.acquire_wait(timeout=5)
        await first.release()
        assert not await one.acquire("report").try_acquire()
        assert await second.extend(10)
        await second.release()
        assert await one.acquire("report").try_acquire()
    finally:
        await one.close()
        await two.close()


async def test_lock_waiter_wakes_on_release(redis_url: str, key_prefix: str) -> None:
    manager = RedisLockManager(redis_url, key_prefix=key_prefix)
    try:
        holder = manager.acquire("job", timeout=30)
        assert await holder.try_acquire()
        waiter = asyncio.create_task(manager.acquire("job", timeout=30).acquire_wait(timeout=20))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await holder.release()
        assert await asyncio.wait_for(waiter, 10) is True
        assert time.monotonic() - started < 5  # woken by the release, not the 30 s TTL
        async with manager.acquire("ctx", timeout=5) as lock:
            assert lock.held
        assert not lock.held
        assert await manager.acquire("ctx").try_acquire()
    finally:
        await manager.close()


async def test_rate_limiter_bucket(connector: RedisConnector, key_prefix: str) -> None:
    limiter = RedisRateLimiter(
        connector, name="t", rate=20, per=1.0, burst=2, key_prefix=key_prefix
    )
    assert await limiter.try_acquire()
    assert await limiter.try_acquire()
    assert not await limiter.try_acquire()
    started = time.monotonic()
    await limiter.acquire()  # one token refills in 50 ms
    assert time.monotonic() - started >= 0.02
    with pytest.raises(TaskConfigurationError):
        await limiter.acquire(5)
    with pytest.raises(TaskConfigurationError):
        RedisRateLimiter(connector, name="bad", rate=0)
