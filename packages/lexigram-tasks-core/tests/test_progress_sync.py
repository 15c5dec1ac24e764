"""Progress from `def` handlers: `SyncProgressTracker`, on a real worker pool (memory backend)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, ProgressInfo, ProgressStatus
from lexigram.tasks import INJECTED, JobHandle, ProgressTracker, SyncProgressTracker, task
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.execution import HandlerRegistry, TaskWorkerServices, WorkerPool
from lexigram.tasks.handles import register_job_stores
from lexigram.tasks.progress import InMemoryProgressStore, InMemoryProgressTracker
from lexigram.tasks.results import InMemoryResultStore


class Gates:
    """Thread events the `def` handlers wait on (new ones per test, see `pool`)."""

    midway = threading.Event()  # set by a handler halfway through its steps
    resume = threading.Event()  # set by the test to let it finish
    finished = threading.Event()  # set by a handler thread when it is done
    errors: list[BaseException] = []  # noqa: RUF012 - reset per test


@task(name="sync_progress.async_steps")
async def async_steps(count: int, progress: ProgressTracker = INJECTED) -> int:
    for step in range(1, count + 1):
        await progress.update(step, count, f"step {step}", phase="copy")
    return count


@task(name="sync_progress.def_steps")
def def_steps(count: int, progress: SyncProgressTracker = INJECTED) -> int:
    for step in range(1, count + 1):
        progress.update(step, count, f"step {step}", phase="copy")
        if step == 3:
            Gates.midway.set()
            Gates.resume.wait(5)
    return count


@task(name="sync_progress.def_steps_annotated_async")
def def_steps_annotated_async(count: int, progress: ProgressTracker = INJECTED) -> int:
    # The annotation of handlers written before SyncProgressTracker: the worker injects
    # one all the same, so the calls save progress (a type checker flags them unawaited).
    for step in range(1, count + 1):
        progress.update(step, count, f"step {step}", phase="copy")  # type: ignore[unused-coroutine]
    return count


@task(name="sync_progress.to_thread")
async def to_thread(count: int, progress: SyncProgressTracker = INJECTED) -> int:
    def blocking() -> None:
        for step in range(1, count + 1):
            progress.update(step, count)

    await asyncio.to_thread(blocking)
    return count


@task(name="sync_progress.on_the_loop", max_retries=0)
async def on_the_loop(progress: SyncProgressTracker = INJECTED) -> None:
    progress.update(1, 2)  # wrong in an async def: raises rather than deadlocks


@task(name="sync_progress.slow", timeout=0.3, max_retries=1, retry_backoff=0.01)
def slow(progress: SyncProgressTracker = INJECTED, job: Job = INJECTED) -> str:
    if job.retry_count > 0:
        progress.update(3, 3, "second attempt")
        return "second attempt"
    progress.update(1, 3, "first attempt")
    Gates.resume.wait(5)  # past the timeout: this thread runs on after its job moved on
    try:
        progress.update(2, 3, "late")
        progress.complete("late")
    except BaseException as exc:
        Gates.errors.append(exc)
    finally:
        Gates.finished.set()
    return "first attempt"


HANDLERS = (async_steps, def_steps, def_steps_annotated_async, to_thread, on_the_loop, slow)


class Harness:
    def __init__(self) -> None:
        self.queue = MemoryTaskQueue()
        self.results = InMemoryResultStore()
        self.progress = InMemoryProgressStore()
        self.live = InMemoryProgressTracker()
        registry = HandlerRegistry()
        for handler in HANDLERS:
            registry.register(handler.name, handler)
        self.pool = WorkerPool(
            self.queue,
            registry,
            size=1,
            services=TaskWorkerServices(
                result_store=self.results, progress_store=self.progress, progress_tracker=self.live
            ),
        )
        register_job_stores(self.queue, result_store=self.results, progress_store=self.progress)

    async def progress_of(self, job_id: str) -> ProgressInfo:
        info = await self.progress.get(job_id)
        assert info is not None
        return info


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    Gates.midway, Gates.resume, Gates.finished = (threading.Event() for _ in range(3))
    Gates.errors = []
    harness = Harness()
    await harness.pool.start()
    yield harness
    Gates.resume.set()
    await harness.pool.stop(drain=True, timeout=2)


def shape(info: ProgressInfo) -> tuple[Any, ...]:
    """What a ProgressInfo says, without the job's id and the clock."""
    return (
        info.current,
        info.total,
        info.percentage,
        info.message,
        info.estimated_remaining_seconds,
        info.metadata,
    )


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(200):
        if await check():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


async def test_a_def_handler_saves_the_same_progress_as_an_async_one_and_live(
    h: Harness,
) -> None:
    reference = await async_steps.apply_async(h.queue, 5)
    assert await reference.result(timeout=5) == 5

    handle: JobHandle[int] = await def_steps.apply_async(h.queue, 5)
    assert await asyncio.to_thread(Gates.midway.wait, 5)
    mid = await handle.progress()  # the call returned once saved: no polling needed
    assert mid is not None
    assert (mid.current, mid.total, mid.message, mid.metadata["status"]) == (
        3,
        5,
        "step 3",
        "running",
    )
    snapshot = await h.live.get(handle.id)
    assert snapshot is not None
    assert (snapshot.current, snapshot.status) == (3, ProgressStatus.RUNNING)
    Gates.resume.set()
    assert await handle.result(timeout=5) == 5

    async def finished() -> bool:
        info = await handle.progress()
        return info is not None and info.metadata["status"] == "complete"

    await eventually(finished, "the def handler's progress to complete")
    expected = shape(await h.progress_of(reference.id))
    assert expected == (5, 5, 100.0, "Complete", 0.0, {"phase": "copy", "status": "complete"})
    assert shape(await h.progress_of(handle.id)) == expected
    assert await h.progress.list_active() == []


async def test_a_def_handler_annotated_progress_tracker_gets_a_sync_one(h: Harness) -> None:
    handle = await def_steps_annotated_async.apply_async(h.queue, 4)
    assert await handle.result(timeout=5) == 4
    info = await h.progress_of(handle.id)
    assert (info.current, info.total, info.metadata["phase"]) == (4, 4, "copy")


async def test_an_async_handler_may_hand_a_sync_tracker_to_a_thread(h: Harness) -> None:
    handle = await to_thread.apply_async(h.queue, 3)
    assert await handle.result(timeout=5) == 3
    info = await h.progress_of(handle.id)
    assert (info.current, info.total) == (3, 3)


async def test_a_sync_tracker_called_on_the_loop_thread_raises_instead_of_deadlocking(
    h: Harness,
) -> None:
    handle = await on_the_loop.apply_async(h.queue)
    result = await h.results.wait(handle.id, timeout=5)
    assert result is not None
    assert not result.success
    assert "RuntimeError" in (result.error or "")
    assert "deadlock" in (result.error or "")

    store = InMemoryProgressStore()
    tracker = SyncProgressTracker(ProgressTracker("job-1", store), asyncio.get_running_loop())
    calls: list[Callable[[], None]] = [
        lambda: tracker.update(1, 2),
        tracker.complete,
        lambda: tracker.fail("x"),
    ]
    for call in calls:
        with pytest.raises(RuntimeError, match=r"async def handler takes a ProgressTracker"):
            call()
    assert await store.get("job-1") is None
    assert not tracker.finished
    assert "SyncProgressTracker(job_id='job-1'" in repr(tracker)


async def test_a_timed_out_def_handler_cannot_overwrite_its_jobs_progress(h: Harness) -> None:
    handle = await slow.apply_async(h.queue)
    assert await handle.result(timeout=5) == "second attempt"

    async def completed() -> bool:
        info = await handle.progress()
        return info is not None and info.metadata["status"] == "complete"

    await eventually(completed, "the second attempt's progress to complete")
    Gates.resume.set()  # the first attempt's thread now reports, late
    assert await asyncio.to_thread(Gates.finished.wait, 5)
    assert Gates.errors == []  # its calls returned: nothing raised in the thread
    info = await h.progress_of(handle.id)
    assert (info.current, info.total, info.message) == (3, 3, "Complete")
    assert info.metadata["status"] == "complete"


async def test_a_timed_out_def_handler_leaves_its_failed_progress_alone(h: Harness) -> None:
    handle = await slow.apply_async(h.queue, max_retries=0)
    result = await h.results.wait(handle.id, timeout=5)
    assert result is not None
    assert "TaskTimeoutError" in (result.error or "")

    async def failed() -> bool:
        info = await handle.progress()
        return info is not None and info.metadata["status"] == "failed"

    await eventually(failed, "the timed-out job's progress to fail")
    Gates.resume.set()
    assert await asyncio.to_thread(Gates.finished.wait, 5)
    assert Gates.errors == []
    info = await h.progress_of(handle.id)
    assert (info.current, info.metadata["status"]) == (1, "failed")
    assert await h.progress.list_active() == []


def test_a_sync_tracker_whose_loop_is_gone_drops_its_calls() -> None:
    store = InMemoryProgressStore()
    closed = asyncio.new_event_loop()
    closed.close()
    tracker = SyncProgressTracker(ProgressTracker("job-2", store), closed)
    tracker.update(1, 2)
    tracker.complete()
    assert tracker.info.current == 0
    assert not tracker.finished


def test_a_sync_tracker_does_not_wait_forever_for_a_loop_that_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("lexigram.tasks.progress._sync._LOOP_CHECK_SECONDS", 0.01)
    store = InMemoryProgressStore()
    stopped = asyncio.new_event_loop()
    try:
        tracker = SyncProgressTracker(ProgressTracker("job-3", store), stopped)
        tracker.update(1, 2)  # never run: the loop does not run
        assert tracker.info.current == 0
        stopped.run_until_complete(asyncio.sleep(0))  # the dropped call does not begin late
        assert tracker.info.current == 0
    finally:
        stopped.close()
