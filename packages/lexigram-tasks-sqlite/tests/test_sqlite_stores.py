"""The SQLite stores, each through the backend object as the core builds them."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from lexigram.contracts.tasks import (
    CacheBackendProtocol,
    DLQBackendProtocol,
    IdempotencyStoreProtocol,
    JobResult,
    LockManagerProtocol,
    ProgressInfo,
    ProgressStoreProtocol,
    ProgressTrackerProtocol,
    RateLimiterProtocol,
    ResultStoreProtocol,
    SchedulerStoreProtocol,
    StepResult,
    TaskBackendSpec,
    WorkflowResult,
    WorkflowStateStoreProtocol,
    WorkflowStatus,
)
from lexigram.tasks.backends.sqlite import SQLiteBackend, SQLiteLockManager, SQLiteResultStore
from lexigram.tasks.backends.sqlite._base import Purger


@pytest_asyncio.fixture
async def made(tmp_path: Path) -> AsyncIterator[tuple[SQLiteBackend, TaskBackendSpec, list[Any]]]:
    spec = TaskBackendSpec(
        name="default",
        type="sqlite",
        url=f"sqlite:///{tmp_path}/stores.db",
        options={"result_ttl": 60, "dlq_max_entries": 3},
    )
    objects: list[Any] = []
    yield SQLiteBackend(), spec, objects
    for obj in objects:
        await obj.close()


def build(made: tuple[SQLiteBackend, TaskBackendSpec, list[Any]], factory: str, **kw: Any) -> Any:
    backend, spec, objects = made
    obj = getattr(backend, factory)(spec, **kw)
    objects.append(obj)
    return obj


async def test_a_result_holding_a_lone_surrogate_is_stored_and_read_back(made: Any) -> None:
    store = build(made, "create_result_store")
    name = b"scan-\xff.pdf".decode("utf-8", "surrogateescape")
    result = JobResult.ok(data={"file": name, "note": "é"})
    await store.store("odd-name", result)
    assert await store.get("odd-name") == result


async def test_results_round_trip_list_and_expire(made: Any) -> None:
    store: SQLiteResultStore = build(made, "create_result_store")
    assert isinstance(store, ResultStoreProtocol)
    await store.store("a", JobResult.ok(data={"n": 1}))
    await store.store("b", JobResult.fail("boom"))
    got = await store.get("a")
    assert got is not None
    assert got.data == {"n": 1}
    assert [r.error for r in await store.get_failed()] == ["boom"]
    assert len(await store.get_completed(limit=5)) == 1
    assert await store.wait("a", timeout=0.1) == got
    assert await store.wait("missing", timeout=0.05) is None
    assert await store.delete("a")
    assert not await store.delete("a")

    def age(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE lexigram_results SET expires_at = 0")

    await store.database.call(age)
    assert await store.get("b") is None
    assert await store.cleanup_expired() == 1


async def test_a_waiter_wakes_on_a_store_through_another_object(made: Any) -> None:
    writer = build(made, "create_result_store")
    reader = build(made, "create_result_store")
    waiting = asyncio.create_task(reader.wait("j", timeout=5.0))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await writer.store("j", JobResult.ok(data=1))
    assert (await waiting) is not None
    assert time.monotonic() - started < 0.5


async def test_progress_store_lists_only_active(made: Any) -> None:
    store = build(made, "create_progress_store")
    assert isinstance(store, ProgressStoreProtocol)
    await store.save(ProgressInfo(job_id="a", current=1, total=3))
    await store.save(ProgressInfo(job_id="b", current=3, total=3))
    assert [info.job_id for info in await store.list_active()] == ["a"]
    assert (await store.get("b")) == ProgressInfo(job_id="b", current=3, total=3)
    await store.delete("a")
    assert await store.get("a") is None


async def test_progress_of_a_failed_or_cancelled_job_is_not_listed_as_active(made: Any) -> None:
    # What the worker saves for a job that called `update(1, 10)` and then raised, or was
    # cancelled: the count never reached the total, but the status says it ended.
    store = build(made, "create_progress_store")
    await store.save(
        ProgressInfo(job_id="run", current=1, total=10, metadata={"status": "running"})
    )
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

    def flags(conn: sqlite3.Connection) -> dict[str, int]:
        rows = conn.execute("SELECT job_id, complete FROM lexigram_progress").fetchall()
        return {str(job_id): int(complete) for job_id, complete in rows}

    assert await store.database.call(flags, write=False) == {
        "run": 0,
        "fail": 1,
        "cancel": 1,
        "done": 1,
    }
    # The next attempt of a retried job reports progress again: listed again.
    await store.save(
        ProgressInfo(job_id="fail", current=2, total=10, metadata={"status": "running"})
    )
    assert [info.job_id for info in await store.list_active()] == ["fail", "run"]


async def test_a_finished_progress_entry_saved_as_incomplete_is_not_listed(made: Any) -> None:
    # Rows an earlier version wrote for a failed job had `complete = 0`.
    store = build(made, "create_progress_store")
    await store.save(ProgressInfo(job_id="run", current=1, total=10))
    data = '{"job_id": "old", "current": 1, "total": 10, "metadata": {"status": "failed"}}'

    def plant(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO lexigram_progress VALUES (?, ?, 0, ?)", ("old", data, time.time() + 60)
        )

    await store.database.call(plant)
    assert await store.get("old") is not None
    assert [info.job_id for info in await store.list_active()] == ["run"]


async def test_dlq_is_newest_first_and_capped(made: Any) -> None:
    dlq = build(made, "create_dlq_backend")
    assert isinstance(dlq, DLQBackendProtocol)
    for index in range(5):
        await dlq.add(f"r{index}", {"job_id": f"r{index}", "n": index})
        await asyncio.sleep(0.002)
    assert await dlq.size() == 3
    assert [r["job_id"] for r in await dlq.list_all()] == ["r4", "r3", "r2"]
    assert [r["job_id"] for r in await dlq.list_all(limit=1)] == ["r4"]
    assert await dlq.get("r3") == {"job_id": "r3", "n": 3}
    assert await dlq.remove("r3")
    assert not await dlq.remove("r3")
    assert await dlq.clear() == 2
    assert await dlq.size() == 0


async def test_scheduler_store_keeps_next_run_apart(made: Any) -> None:
    store = build(made, "create_scheduler_store")
    assert isinstance(store, SchedulerStoreProtocol)
    await store.save_job("s1", {"job_id": "s1", "cron": "* * * * *", "next_run": 10.0})
    await store.update_next_run("s1", 20.0)
    await store.update_next_run("unknown", 5.0)
    assert await store.load_jobs() == {
        "s1": {"job_id": "s1", "cron": "* * * * *", "next_run": 20.0}
    }
    await store.delete_job("s1")
    assert await store.load_jobs() == {}


async def test_scheduler_store_update_fields_changes_only_state_fields(made: Any) -> None:
    store = build(made, "create_scheduler_store")
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


async def test_workflow_state_lists_unfinished_workflows(made: Any) -> None:
    store = build(made, "create_workflow_state_store")
    assert isinstance(store, WorkflowStateStoreProtocol)
    step = StepResult(step_name="one", success=True)
    await store.save_state("w1", WorkflowResult("w1", WorkflowStatus.RUNNING, steps=[step]))
    await store.save_state("w2", WorkflowResult("w2", WorkflowStatus.COMPLETED))
    active = await store.list_active()
    assert [(s.workflow_id, s.completed_steps) for s in active] == [("w1", ["one"])]
    loaded = await store.load_state("w2")
    assert loaded is not None
    assert loaded.status is WorkflowStatus.COMPLETED
    await store.delete_state("w1")
    assert await store.list_active() == []


async def test_locks_exclude_expire_and_wake(made: Any) -> None:
    manager: SQLiteLockManager = build(made, "create_lock_manager")
    assert isinstance(manager, LockManagerProtocol)
    first = manager.acquire("k", timeout=0.3)
    second = manager.acquire("k", timeout=0.3)
    assert await first.acquire()
    assert not await second.try_acquire()
    started = time.monotonic()
    assert await second.acquire_wait(timeout=3.0)  # the first holder's lease runs out
    assert 0.1 < time.monotonic() - started < 1.5
    assert not await first.extend()
    await first.release()  # no longer the holder: changes nothing
    assert not await first.try_acquire()
    waiting = asyncio.create_task(first.acquire_wait(timeout=3.0))
    await asyncio.sleep(0.05)
    await second.release()
    assert await asyncio.wait_for(waiting, 0.5)
    async with manager.acquire("other", timeout=5.0) as held:
        assert held.held


async def test_an_abandoned_lock_is_deleted_by_the_acquires_of_other_keys(
    made: Any, tmp_path: Path
) -> None:
    # A holder killed before releasing: its row expires, and nobody takes its key again.
    abandoned: SQLiteLockManager = build(made, "create_lock_manager")
    assert await abandoned.acquire("job:1", timeout=0.05).try_acquire()
    await asyncio.sleep(0.1)
    other: SQLiteLockManager = build(made, "create_lock_manager")
    async with other.acquire("job:2", timeout=5.0) as held:
        assert held.held
        with contextlib.closing(sqlite3.connect(tmp_path / "stores.db")) as conn:
            keys = [row[0] for row in conn.execute("SELECT key FROM lexigram_locks")]
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(
                    "EXPLAIN QUERY PLAN SELECT key FROM lexigram_locks WHERE expires_at <= 0"
                )
            )
        assert keys == ["job:2"]
        assert "lexigram_locks_expiry" in plan


async def test_rate_limiter_is_a_shared_token_bucket(made: Any) -> None:
    one = build(made, "create_rate_limiter", name="api", rate=10, per=1.0, burst=2)
    two = build(made, "create_rate_limiter", name="api", rate=10, per=1.0, burst=2)
    assert isinstance(one, RateLimiterProtocol)
    assert await one.try_acquire()
    assert await two.try_acquire()
    assert not await one.try_acquire()
    started = time.monotonic()
    await two.acquire()
    assert 0.05 < time.monotonic() - started < 0.5
    with pytest.raises(ValueError, match="burst"):
        await one.acquire(5)


async def test_idempotency_store_claims_once(made: Any) -> None:
    store = build(made, "create_idempotency_store")
    assert isinstance(store, IdempotencyStoreProtocol)
    assert await store.set_if_absent("k", {"status": "running"}, 60) is None
    assert await store.set_if_absent("k", {"status": "other"}, 60) == {"status": "running"}
    await store.update("k", {"status": "done"}, 60)
    assert await store.get("k") == {"status": "done"}
    assert await store.delete("k")
    assert not await store.delete("k")
    assert await store.set_if_absent("t", {"a": 1}, 0.05) is None
    await asyncio.sleep(0.1)
    assert await store.set_if_absent("t", {"a": 2}, 60) is None  # the first one expired


async def test_cache_values_ttls_and_prefixes(made: Any) -> None:
    cache = build(made, "create_cache_backend")
    assert isinstance(cache, CacheBackendProtocol)
    await cache.set("user:1", "ada")
    await cache.set("user:2", "bob", ttl=0.05)
    await cache.set("x_y", "z")
    assert await cache.set_if_absent("user:1", "eve") is False
    assert await cache.get("user:1") == "ada"
    assert await cache.keys("user:") == ["user:1", "user:2"]
    await asyncio.sleep(0.1)
    assert not await cache.exists("user:2")
    assert await cache.keys("x_") == ["x_y"]
    assert await cache.delete("user:1")
    assert not await cache.delete("user:1")


async def test_tracker_subscriber_gets_every_change_then_ends(made: Any) -> None:
    writer = build(made, "create_progress_tracker")
    reader = build(made, "create_progress_tracker")
    assert isinstance(reader, ProgressTrackerProtocol)
    seen: list[int] = []

    async def follow() -> None:
        seen.extend([snapshot.current async for snapshot in reader.subscribe("t")])

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    for current in range(1, 4):
        await writer.update("t", current, 5)
    await writer.fail("t", "disk full")
    await asyncio.wait_for(following, 2.0)
    assert seen == [1, 2, 3, 3]
    late = [s async for s in reader.subscribe("t")]
    assert [(s.status.value, s.error) for s in late] == [("failed", "disk full")]
    assert await reader.get("unknown") is None


async def test_tracker_answers_from_the_result_of_a_job_without_progress(made: Any) -> None:
    results = build(made, "create_result_store")
    reader = build(made, "create_progress_tracker")
    assert await reader.get("quiet") is None
    following = asyncio.ensure_future(_collect(reader.subscribe("quiet")))
    await asyncio.sleep(0.05)
    await results.store("quiet", JobResult.ok(data=1))
    await results.store("broken", JobResult.fail("ValueError: bad"))
    followed = await asyncio.wait_for(following, 2.0)
    assert [(s.status.value, s.percent) for s in followed] == [("complete", 100.0)]
    failed = await reader.get("broken")
    assert failed is not None
    assert (failed.status.value, failed.error) == ("failed", "ValueError: bad")
    late = await _collect(reader.subscribe("broken"))
    assert [s.status.value for s in late] == ["failed"]


async def _collect(snapshots: Any) -> list[Any]:
    return [snapshot async for snapshot in snapshots]


async def test_one_failing_call_does_not_take_the_others_down(made: Any) -> None:
    store = build(made, "create_result_store")

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO no_such_table VALUES (1)")

    outcomes = await asyncio.gather(
        store.store("x", JobResult.ok(data=1)),
        store.database.call(broken, what="break"),
        store.store("y", JobResult.ok(data=2)),
        return_exceptions=True,
    )
    assert outcomes[0] is None
    assert outcomes[2] is None
    assert "no such table" in str(outcomes[1])
    assert await store.get("x") is not None
    assert await store.get("y") is not None


async def _store_result(store: Any, index: int) -> None:
    await store.store(f"new{index}", JobResult.ok(data=index))


async def _save_progress(store: Any, index: int) -> None:
    await store.save(ProgressInfo(job_id=f"new{index}", current=1, total=2))


@pytest.mark.parametrize(
    ("factory", "table", "expired_row", "write"),
    [
        ("create_result_store", "lexigram_results", "(?, 1, '{}', 0, 1)", _store_result),
        # Before, only `list_active` deleted expired progress: a worker that never listed
        # kept every entry.
        ("create_progress_store", "lexigram_progress", "(?, '{}', 0, 1)", _save_progress),
    ],
)
async def test_writes_purge_expired_rows_in_bounded_chunks_until_caught_up(
    made: Any, factory: str, table: str, expired_row: str, write: Any
) -> None:
    store = build(made, factory)
    store._purger = Purger(every=3600.0, chunk=100)

    def plant(conn: sqlite3.Connection) -> None:
        conn.executemany(
            f"INSERT INTO {table} VALUES {expired_row}",  # noqa: S608 - the test's own table
            [(f"old{i}",) for i in range(250)],
        )

    await store.database.call(plant)

    def remaining(conn: sqlite3.Connection) -> int:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608

    counts = []
    for index in range(4):
        await write(store, index)
        counts.append(await store.database.call(remaining, write=False))
    # 100 per write while behind (the first purge is due at once), then no more purges.
    assert counts == [151, 52, 3, 4]
