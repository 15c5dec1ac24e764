from __future__ import annotations

import asyncio
import logging

import pytest

from lexigram.contracts.tasks import TaskManagerProtocol
from lexigram.tasks.background_task_manager import BackgroundTaskManager

LOGGER = "lexigram.tasks.background_task_manager"


async def test_track_then_shutdown_and_protocol():
    ran = asyncio.Event()

    async def some_coroutine() -> None:
        ran.set()

    manager = BackgroundTaskManager()
    task = manager.track(some_coroutine())
    # … later …
    await manager.shutdown(timeout=30.0)
    assert isinstance(task, asyncio.Task)
    assert isinstance(manager, TaskManagerProtocol)


async def test_track_returns_the_task_and_forgets_it_when_done():
    manager = BackgroundTaskManager()
    gate = asyncio.Event()

    async def work() -> int:
        await gate.wait()
        return 7

    task = manager.track(work())
    assert manager.pending_count == 1
    gate.set()
    assert await task == 7
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration
    assert manager.pending_count == 0
    assert manager._tasks == {}


async def test_track_named_names_the_task():
    manager = BackgroundTaskManager()
    gate = asyncio.Event()
    task = manager.track_named("flush-audit", gate.wait())
    assert task.get_name() == "flush-audit"
    assert manager.pending_names() == ["flush-audit"]
    gate.set()
    await task


async def test_track_accepts_futures_and_tasks():
    manager = BackgroundTaskManager()
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()
    wrapped = manager.track(future)
    future.set_result("ok")
    assert await wrapped == "ok"
    inner = asyncio.create_task(asyncio.sleep(0, result="t"))
    assert manager.track_named("given", inner) is inner
    assert inner.get_name() == "given"
    assert await inner == "t"


async def test_shutdown_cancels_pending_tasks_and_runs_their_finally_blocks():
    manager = BackgroundTaskManager()
    cleaned: list[str] = []
    started = asyncio.Event()

    async def forever(name: str) -> None:
        try:
            started.set()
            await asyncio.Event().wait()
        finally:
            cleaned.append(name)

    tasks = [manager.track_named(f"t{i}", forever(f"t{i}")) for i in range(3)]
    await started.wait()
    await manager.shutdown(timeout=5.0)
    assert sorted(cleaned) == ["t0", "t1", "t2"]
    assert all(t.cancelled() for t in tasks)
    assert manager.pending_count == 0


async def test_shutdown_logs_the_names_of_tasks_that_did_not_stop(caplog: pytest.LogCaptureFixture):
    manager = BackgroundTaskManager()
    release = asyncio.Event()
    in_finally = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            in_finally.set()
            await release.wait()  # refuses to stop promptly

    async def polite() -> None:
        await asyncio.Event().wait()

    manager.track_named("stubborn-exporter", stubborn())
    manager.track_named("polite-flusher", polite())
    manager.track(polite())
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await manager.shutdown(timeout=0.05)
    assert in_finally.is_set()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "stubborn-exporter" in warnings[0].getMessage()
    assert "polite-flusher" not in warnings[0].getMessage()
    assert manager.pending_names() == ["stubborn-exporter"]
    release.set()
    await manager.shutdown(timeout=5.0)
    assert manager.pending_count == 0


async def test_shutdown_with_nothing_pending_returns_at_once():
    manager = BackgroundTaskManager()
    await manager.shutdown(timeout=0)
    assert repr(manager) == "BackgroundTaskManager(pending=0)"


async def test_a_failing_task_is_logged_by_name(caplog: pytest.LogCaptureFixture):
    manager = BackgroundTaskManager()

    async def boom() -> None:
        msg = "disk full"
        raise OSError(msg)

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        task = manager.track_named("writer", boom())
        await asyncio.wait({task})
        await asyncio.sleep(0)
    assert "Background task writer failed" in caplog.text
    assert "disk full" in caplog.text


async def test_shutdown_called_from_a_tracked_task_does_not_cancel_itself():
    manager = BackgroundTaskManager()
    other_cancelled = asyncio.Event()

    async def other() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            other_cancelled.set()
            raise

    async def stopper() -> str:
        await manager.shutdown(timeout=5.0)
        return "stopped"

    manager.track(other())
    await asyncio.sleep(0)
    assert await manager.track_named("stopper", stopper()) == "stopped"
    assert other_cancelled.is_set()
