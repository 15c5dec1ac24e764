"""Progress: per-job ProgressTracker, progress stores, and the live InMemoryProgressTracker."""

from __future__ import annotations

import asyncio
import inspect
import time
import types

import pytest

from lexigram.contracts.tasks import (
    Job,
    ProgressInfo,
    ProgressSnapshot,
    ProgressStatus,
    ProgressStoreProtocol,
    ProgressTrackerProtocol,
)
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cache import InMemoryCacheBackend
from lexigram.tasks.execution import TaskWorkerServices, WorkerPool
from lexigram.tasks.progress import (
    CacheBackendProgressStore,
    InMemoryProgressStore,
    InMemoryProgressTracker,
    ProgressStore,
    ProgressTracker,
)


async def test_progress_tracker_computes_percentage_and_eta(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = InMemoryProgressStore()
    now = [1000.0]
    clock = types.SimpleNamespace(time=lambda: now[0])
    monkeypatch.setattr("lexigram.tasks.progress._tracker.time", clock)
    tracker = ProgressTracker("job-1", store)
    now[0] += 10.0
    await tracker.update(25, 100, "quarter", phase="load")
    info = await store.get("job-1")
    assert info is not None
    assert info.percentage == 25.0
    assert info.estimated_remaining_seconds == pytest.approx(30.0)
    assert info.metadata["phase"] == "load"
    assert info.message == "quarter"
    assert tracker.info == info
    assert not tracker.finished
    assert await store.list_active() == [info]
    await tracker.complete()
    assert info.current == 25  # a snapshot: what was read does not change under the reader
    done = await store.get("job-1")
    assert done is not None
    assert (done.current, done.total, done.percentage) == (100, 100, 100.0)
    assert done.estimated_remaining_seconds == 0.0
    assert done.is_complete
    assert done.metadata["status"] == "complete"
    assert await store.list_active() == []


async def test_progress_tracker_fail_and_unknown_total() -> None:
    store = InMemoryProgressStore()
    tracker = ProgressTracker("job-2", store)
    await tracker.update(3, 0, "unknown total")
    assert tracker.info.percentage == 0.0
    assert tracker.info.estimated_remaining_seconds is None
    await tracker.fail("disk full")
    info = await store.get("job-2")
    assert info is not None
    assert info.message == "disk full"
    assert info.metadata["status"] == "failed"
    assert await store.list_active() == []
    assert "ProgressTracker" in repr(tracker)


async def test_progress_tracker_complete_without_updates_is_100_percent() -> None:
    tracker = ProgressTracker("job-3")
    await tracker.complete("done")
    assert tracker.info.percentage == 100.0
    assert tracker.info.is_complete


async def test_in_memory_progress_store_crud() -> None:
    store = InMemoryProgressStore()
    assert isinstance(store, ProgressStore)
    assert isinstance(store, ProgressStoreProtocol)
    await store.save(ProgressInfo(job_id="a", current=1, total=2))
    await store.save(ProgressInfo(job_id="b", current=2, total=2))
    assert [i.job_id for i in await store.list_active()] == ["a"]
    await store.delete("a")
    await store.delete("a")
    assert await store.get("a") is None


async def test_cache_progress_store_round_trip() -> None:
    cache = InMemoryCacheBackend()
    store = CacheBackendProgressStore(cache, ttl=60)
    tracker = ProgressTracker("job-9", store)
    await tracker.update(2, 8, "go", batch=3)
    info = await store.get("job-9")
    assert info is not None
    assert (info.current, info.total, info.percentage, info.metadata["batch"]) == (2, 8, 25.0, 3)
    await store.save(ProgressInfo(job_id="done", current=5, total=5))
    assert [i.job_id for i in await store.list_active()] == ["job-9"]
    await cache.set("lexigram:tasks:progress:broken", "{oops")
    assert await store.get("broken") is None
    await store.delete("job-9")
    assert await store.get("job-9") is None
    assert "CacheBackendProgressStore" in repr(store)


async def test_in_memory_tracker_satisfies_the_protocol() -> None:
    tracker = InMemoryProgressTracker()
    assert isinstance(tracker, ProgressTrackerProtocol)
    assert inspect.isasyncgenfunction(InMemoryProgressTracker.subscribe)
    assert await tracker.get("unknown") is None


async def test_in_memory_tracker_subscriber_sees_every_change_then_stops() -> None:
    tracker = InMemoryProgressTracker()
    seen: list[ProgressSnapshot] = []
    ready = asyncio.Event()

    async def consume() -> None:
        await tracker.update("t", 0, 3, "start")
        ready.set()
        seen.extend([snap async for snap in tracker.subscribe("t")])

    consumer = asyncio.create_task(consume())
    await ready.wait()
    await asyncio.sleep(0)  # let the subscriber register
    for i in range(1, 4):
        await tracker.update("t", i, 3, f"step {i}")
    await tracker.complete("t", "all done")
    await asyncio.wait_for(consumer, 1)
    assert [s.current for s in seen] == [0, 1, 2, 3, 3]
    assert seen[-1].status is ProgressStatus.COMPLETE
    assert seen[-1].message == "all done"
    assert seen[-1].percent == 100.0


async def test_in_memory_tracker_late_subscriber_gets_the_terminal_snapshot_once() -> None:
    tracker = InMemoryProgressTracker()
    await tracker.update("t", 1, 4)
    await tracker.fail("t", "exploded")
    late = [snap async for snap in tracker.subscribe("t")]
    assert len(late) == 1
    assert late[0].status is ProgressStatus.FAILED
    assert late[0].error == "exploded"
    assert (late[0].current, late[0].total) == (1, 4)


async def test_in_memory_tracker_waits_for_an_unknown_task() -> None:
    tracker = InMemoryProgressTracker()
    collected: list[ProgressSnapshot] = []

    async def consume() -> None:
        collected.extend([s async for s in tracker.subscribe("later")])

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await tracker.update("later", 1, 2)
    await tracker.complete("later")
    await asyncio.wait_for(consumer, 1)
    assert [s.status for s in collected] == [ProgressStatus.RUNNING, ProgressStatus.COMPLETE]
    assert collected[-1].current == 2


async def test_in_memory_tracker_concurrent_updates_are_safe() -> None:
    tracker = InMemoryProgressTracker()
    subscribers = 5
    seen: list[list[ProgressSnapshot]] = [[] for _ in range(subscribers)]

    async def consume(i: int) -> None:
        async for snap in tracker.subscribe("t"):
            seen[i].append(snap)

    consumers = [asyncio.create_task(consume(i)) for i in range(subscribers)]
    await asyncio.sleep(0)

    async def writer(offset: int) -> None:
        for i in range(50):
            await tracker.update("t", offset + i, 1000)
            await asyncio.sleep(0)

    await asyncio.gather(*(writer(n * 100) for n in range(10)))
    await tracker.complete("t")
    await asyncio.wait_for(asyncio.gather(*consumers), 2)
    for snapshots in seen:
        assert len(snapshots) == 501  # every change, each subscriber, in the same order
        assert snapshots == seen[0]
    assert tracker._subscribers == {}


async def test_in_memory_tracker_forgets_old_finished_tasks() -> None:
    tracker = InMemoryProgressTracker(max_finished=2)
    for name in ("a", "b", "c"):
        await tracker.complete(name)
    assert await tracker.get("a") is None
    assert await tracker.get("c") is not None
    assert "InMemoryProgressTracker" in repr(tracker)


async def test_handler_in_a_worker_pool_reports_progress_to_subscribers() -> None:
    queue = MemoryTaskQueue()
    live = InMemoryProgressTracker()
    store = InMemoryProgressStore()
    go = asyncio.Event()

    async def export(rows: int, progress: ProgressTracker) -> int:
        await go.wait()
        for i in range(1, rows + 1):
            await progress.update(i, rows, f"row {i}")
        return rows

    pool = WorkerPool(
        queue,
        {"export": export},
        size=2,
        services=TaskWorkerServices(progress_tracker=live, progress_store=store),
    )
    job = Job(name="export", args=(4,))
    early: list[ProgressSnapshot] = []

    async def watch() -> None:
        early.extend([s async for s in live.subscribe(job.id)])

    watcher = asyncio.create_task(watch())
    await pool.start()
    (await queue.enqueue(job)).unwrap()
    await asyncio.sleep(0)
    go.set()
    await asyncio.wait_for(watcher, 5)
    late = [s async for s in live.subscribe(job.id)]
    await pool.stop()

    assert [s.current for s in early] == [1, 2, 3, 4, 4]
    assert early[-1].status is ProgressStatus.COMPLETE
    assert late == [early[-1]]
    info = await store.get(job.id)
    assert info is not None
    assert info.percentage == 100.0
    assert info.started_at <= time.time()
