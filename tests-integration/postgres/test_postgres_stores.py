"""The PostgreSQL stores, built through the backend's factories, against a real server.

Two objects built from the same spec stand for two processes: they share nothing but
the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import (
    CacheBackendProtocol,
    DLQBackendProtocol,
    IdempotencyStoreProtocol,
    JobResult,
    JobTemplate,
    LockManagerProtocol,
    ProgressInfo,
    ProgressStoreProtocol,
    RateLimiterProtocol,
    ResultStoreProtocol,
    SchedulerStoreProtocol,
    StepResult,
    TaskBackendSpec,
    WorkflowResult,
    WorkflowStateStoreProtocol,
    WorkflowStatus,
)
from lexigram.tasks.backends.postgres import backend
from lexigram.tasks.scheduling import TaskScheduler

pytestmark = pytest.mark.postgres


@pytest_asyncio.fixture
async def build(
    postgres_dsn: str, pg_schema: str, unique_name: str
) -> AsyncIterator[Callable[..., Any]]:
    """`build("create_result_store", **kwargs)` -> a store on this test's namespace."""
    made: list[Any] = []
    spec = TaskBackendSpec(
        name="pg",
        type="postgres",
        url=postgres_dsn,
        options={"schema": pg_schema, "namespace": f"ns-{unique_name}", "result_ttl": 60},
    )

    def factory(factory_name: str, /, **kwargs: Any) -> Any:
        store = getattr(backend, factory_name)(spec, **kwargs)
        made.append(store)
        return store

    yield factory
    for store in made:
        await store.close()


async def test_result_store_round_trip_and_listing(build):
    store = build("create_result_store")
    assert isinstance(store, ResultStoreProtocol)
    ok = JobResult.ok({"n": 1}, duration=0.5)
    failed = JobResult.fail("boom", retry_count=2)
    await store.store("a", ok)
    await store.store("b", failed)
    assert await store.get("a") == ok
    assert await store.get("missing") is None
    assert [r.data for r in await store.get_completed()] == [{"n": 1}]
    assert [r.error for r in await store.get_failed(limit=5)] == ["boom"]
    assert await store.delete("a") is True
    assert await store.delete("a") is False


async def test_result_store_keeps_what_json_cannot_carry_as_every_store_does(build) -> None:
    # The same record as the Redis and SQLite stores write (`JobResult.to_json`): a value
    # JSON cannot carry as its repr, a lone surrogate (a file name decoded with
    # surrogateescape, which asyncpg cannot send as it is) as its escape.
    store = build("create_result_store")
    name = b"scan-\xff.pdf".decode("utf-8", "surrogateescape")
    await store.store("odd", JobResult.ok({"file": name, "when": object, "nul": "a\x00b"}))
    found = await store.get("odd")
    assert found is not None
    assert found.data == {"file": name, "when": repr(object), "nul": "a\x00b"}


async def test_a_nan_in_a_result_or_progress_is_stored_as_null(build) -> None:
    # PostgreSQL's json columns refuse a NaN token: the result could not be stored, the
    # job's ack (which carries it) failed, and the job ran until it was dead-lettered.
    store = build("create_result_store")
    await store.store("nan", JobResult.ok({"x": [1.0, float("nan")], "y": float("inf")}))
    found = await store.get("nan")
    assert found is not None
    assert found.data == {"x": [1.0, None], "y": None}
    progress = build("create_progress_store")
    info = ProgressInfo(job_id="nan", current=1, total=2, metadata={"ratio": float("nan")})
    await progress.save(info)
    saved = await progress.get("nan")
    assert saved is not None
    assert saved.metadata["ratio"] is None


async def test_result_store_wait_is_woken_by_a_store_in_another_process(build):
    waiter = build("create_result_store")
    writer = build("create_result_store")
    waiting = asyncio.create_task(waiter.wait("job-1", timeout=20.0))
    await asyncio.sleep(0.1)  # let the waiter start listening
    await writer.store("job-1", JobResult.ok("done"))
    started = time.monotonic()
    result = await asyncio.wait_for(waiting, 10.0)
    assert result is not None
    assert result.data == "done"
    assert time.monotonic() - started < 4.0  # the NOTIFY, not the 5 s safety net


async def test_concurrent_results_share_statements_and_all_land(
    build: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker finishing many jobs at once commits their results in a few statements."""
    store = build("create_result_store")
    statements: list[int] = []
    send = store._writes._run

    async def counted(items: list[Any]) -> list[None]:
        statements.append(len(items))
        return await send(items)

    monkeypatch.setattr(store._writes, "_run", counted)
    outcomes = [JobResult.ok(n) if n % 3 else JobResult.fail(f"boom {n}") for n in range(300)]
    waiter = asyncio.create_task(store.wait("job-299", timeout=10.0))
    await asyncio.sleep(0.1)  # let the waiter start listening
    stores = [store.store(f"job-{n}", r) for n, r in enumerate(outcomes)]
    # The same job twice in one batch: the later result wins (one row per job).
    await asyncio.gather(*stores, store.store("job-0", JobResult.ok("again")))
    assert sum(statements) == 301
    assert len(statements) <= 3  # one lone statement, then everything that queued meanwhile
    assert [(await store.get(f"job-{n}")) for n in range(1, 300)] == outcomes[1:]
    again = await store.get("job-0")
    assert again is not None
    assert again.data == "again"
    assert len(await store.get_failed()) == 99  # job-0 failed first, then succeeded
    found = await asyncio.wait_for(waiter, 10.0)
    assert found is not None
    assert found.data == 299


async def test_result_store_wait_times_out_with_none(build):
    store = build("create_result_store")
    assert await store.wait("never", timeout=0.2) is None


async def test_result_store_cleanup_removes_expired(postgres_dsn, pg_schema, unique_name):
    spec = TaskBackendSpec(
        url=postgres_dsn,
        options={"schema": pg_schema, "namespace": f"exp-{unique_name}", "result_ttl": 0.05},
    )
    store = backend.create_result_store(spec)
    try:
        await store.store("x", JobResult.ok())
        await asyncio.sleep(0.1)  # let the 50 ms TTL pass (wall-clock expiry is the subject)
        assert await store.get("x") is None
        assert await store.cleanup_expired() >= 1
    finally:
        await store.close()


async def test_progress_store_lists_only_active(build):
    store = build("create_progress_store")
    assert isinstance(store, ProgressStoreProtocol)
    running = ProgressInfo(job_id="r", current=3, total=10, message="working")
    done = ProgressInfo(job_id="d", current=10, total=10)
    failed = ProgressInfo(job_id="f", current=1, total=10, metadata={"status": "failed"})
    for info in (running, done, failed):
        await store.save(info)
    assert await store.get("r") == running
    assert [p.job_id for p in await store.list_active()] == ["r"]
    await store.delete("r")
    assert await store.get("r") is None


async def test_dlq_backend_newest_first_and_replace(build):
    store = build("create_dlq_backend")
    assert isinstance(store, DLQBackendProtocol)
    for record_id in ("1", "2", "3"):
        await store.add(record_id, {"job_id": record_id, "error": f"e{record_id}"})
    await store.add("1", {"job_id": "1", "error": "again"})  # replaced: now the newest
    assert [r["job_id"] for r in await store.list_all()] == ["1", "3", "2"]
    assert [r["job_id"] for r in await store.list_all(limit=2)] == ["1", "3"]
    assert await store.get("1") == {"job_id": "1", "error": "again"}
    assert await store.size() == 3
    assert await store.remove("2") is True
    assert await store.remove("2") is False
    assert await store.clear() == 2
    assert await store.size() == 0


async def test_scheduler_store_survives_a_scheduler_restart(build):
    store = build("create_scheduler_store")
    assert isinstance(store, SchedulerStoreProtocol)
    first = TaskScheduler(check_interval=1.0, store=store)
    schedule_id = await first.schedule_job(JobTemplate(name="report"), "0 9 * * *")
    key = first.scheduled_jobs[schedule_id].key  # stored as "<namespace>/<id>"
    await store.update_next_run(key, 1234.5)
    other = TaskScheduler(check_interval=1.0, store=build("create_scheduler_store"))
    assert await other.restore_from_store() == 1
    restored = other.scheduled_jobs[schedule_id]
    assert restored.job_template.name == "report"
    assert restored.next_run == 1234.5
    await store.delete_job(key)
    assert await store.load_jobs() == {}


async def test_scheduler_store_update_fields_changes_only_state_fields(build) -> None:
    store = build("create_scheduler_store")
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


async def test_workflow_state_store_lists_active_workflows(build):
    store = build("create_workflow_state_store")
    assert isinstance(store, WorkflowStateStoreProtocol)
    running = WorkflowResult(
        workflow_id="w1",
        status=WorkflowStatus.RUNNING,
        steps=[
            StepResult("fetch", success=True, data=[1]),
            StepResult("parse", success=False, error="x"),
        ],
    )
    await store.save_state("w1", running)
    await store.save_state("w2", WorkflowResult("w2", WorkflowStatus.COMPLETED))
    assert await store.load_state("w1") == running
    active = await store.list_active()
    assert [(s.workflow_id, s.completed_steps) for s in active] == [("w1", ["fetch"])]
    assert active[0].created_at.tzinfo is not None
    await store.delete_state("w1")
    assert await store.load_state("w1") is None


async def test_lock_is_exclusive_across_managers_and_wakes_waiters_on_release(build):
    one = build("create_lock_manager")
    two = build("create_lock_manager")
    assert isinstance(one, LockManagerProtocol)
    key = "lock-release"
    held = one.acquire(key, timeout=30.0)
    assert await held.try_acquire() is True
    assert await two.acquire(key, timeout=30.0).try_acquire() is False
    waiter = two.acquire(key, timeout=30.0)
    waiting = asyncio.create_task(waiter.acquire_wait(20.0))
    await asyncio.sleep(0.1)  # the waiter is listening now
    await held.release()
    assert await asyncio.wait_for(waiting, 4.0) is True  # woken by NOTIFY, not a poll
    await waiter.release()


async def test_lock_expires_after_its_timeout(build):
    one = build("create_lock_manager")
    two = build("create_lock_manager")
    assert await one.acquire("lock-expiry", timeout=0.3).try_acquire() is True  # never released
    assert await two.acquire("lock-expiry", timeout=5.0).acquire_wait(5.0) is True


async def test_lock_context_manager(build):
    manager = build("create_lock_manager")
    async with manager.acquire("lock-cm", timeout=5.0) as lock:
        assert lock.held
        assert await manager.acquire("lock-cm").try_acquire() is False
    assert await manager.acquire("lock-cm").try_acquire() is True


async def test_rate_limiter_bucket_is_shared_and_refills(build, unique_name):
    name = f"limit-{unique_name}"
    # One token per second: the seven round trips below (the first creates the table)
    # finish long before a token comes back, even on a loaded machine.
    one = build("create_rate_limiter", name=name, rate=5, per=5.0)
    two = build("create_rate_limiter", name=name, rate=5, per=5.0)
    assert isinstance(one, RateLimiterProtocol)
    taken = [await (one if i % 2 else two).try_acquire() for i in range(7)]
    assert taken == [True] * 5 + [False] * 2
    started = time.monotonic()
    await one.acquire(1)  # waits for the refill
    assert time.monotonic() - started > 0.2


async def test_idempotency_store_first_writer_wins(build):
    one = build("create_idempotency_store")
    two = build("create_idempotency_store")
    assert isinstance(one, IdempotencyStoreProtocol)
    assert await one.set_if_absent("order-1", {"task_id": "a"}, ttl=60) is None
    assert await two.set_if_absent("order-1", {"task_id": "b"}, ttl=60) == {"task_id": "a"}
    await two.update("order-1", {"task_id": "a", "status": "completed"}, ttl=60)
    assert await one.get("order-1") == {"task_id": "a", "status": "completed"}
    assert await one.delete("order-1") is True
    assert await one.get("order-1") is None
    assert await one.set_if_absent("short", {"v": 1}, ttl=0.05) is None
    await asyncio.sleep(0.1)  # the TTL running out is what is tested
    assert await two.set_if_absent("short", {"v": 2}, ttl=60) is None


async def test_cache_backend_ttl_prefix_and_set_if_absent(build, unique_name):
    cache = build("create_cache_backend")
    assert isinstance(cache, CacheBackendProtocol)
    p = f"{unique_name}:"
    await cache.set(p + "a", "1")
    await cache.set(p + "b", "2", ttl=60)
    await cache.set(p + "gone", "3", ttl=0.05)
    await cache.set(f"{unique_name}_x", "4")  # '_' must not match as a wildcard
    assert await cache.get(p + "a") == "1"
    assert await cache.set_if_absent(p + "a", "other") is False
    assert await cache.set_if_absent(p + "c", "5") is True
    await asyncio.sleep(0.1)  # the TTL running out is what is tested
    assert await cache.exists(p + "gone") is False
    assert await cache.keys(p) == [p + "a", p + "b", p + "c"]
    assert await cache.delete(p + "a") is True
    assert await cache.delete(p + "a") is False
    assert await cache.keys(p) == [p + "b", p + "c"]


async def test_results_stored_in_one_batch_wake_waiters_in_another_process(build):
    """A batch announces its results in a few notifications, not one per result."""
    waiter = build("create_result_store")
    writer = build("create_result_store")
    ids = [f"batch-{n}" for n in range(400)] + ['odd "id"', '["looks", "like json"]']
    watched = [ids[0], ids[-3], ids[-2], ids[-1]]
    waiting = [asyncio.create_task(waiter.wait(job_id, timeout=20.0)) for job_id in watched]
    await asyncio.sleep(0.2)  # let the waiter start listening
    started = time.monotonic()
    await asyncio.gather(*(writer.store(job_id, JobResult.ok(job_id)) for job_id in ids))
    results = await asyncio.wait_for(asyncio.gather(*waiting), 10.0)
    assert [r.data if r is not None else None for r in results] == watched
    assert time.monotonic() - started < 4.0  # the NOTIFY, not the 5 s safety net
