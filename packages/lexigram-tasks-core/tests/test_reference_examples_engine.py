"""The published reference's examples for the engine's classes, as written (imports added)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, ProgressTrackerProtocol
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.dispatch import delay
from lexigram.tasks.execution import HandlerRegistry, TaskWorker, WorkerPool
from lexigram.tasks.progress import InMemoryProgressTracker


async def send_email(to: str) -> str:
    return f"sent to {to}"


async def test_reference_task_worker_example() -> None:
    queue = MemoryTaskQueue()
    sent = asyncio.Event()

    async def send_and_signal(to: str) -> str:
        sent.set()
        return await send_email(to)

    handlers = {"send_email": send_and_signal}
    await queue.enqueue(Job(name="send_email", args=("a@b.c",)))

    worker = TaskWorker("worker-1", queue, handlers)
    await worker.start()
    # ... worker processes jobs ...
    await asyncio.wait_for(sent.wait(), 5)
    await worker.stop()  # lets the finished job settle (ack) before returning

    assert worker.stats.jobs_succeeded == 1


async def test_reference_worker_pool_example() -> None:
    queue = MemoryTaskQueue()
    handlers = {"send_email": send_email}

    pool = WorkerPool(queue, handlers, size=4)
    await pool.start()
    stats = pool.get_pool_stats()
    await pool.scale_to(8)  # Scale up
    await pool.stop()

    assert stats["pool_size"] == 4
    assert len(pool.workers) == 8


async def test_reference_handler_registry_examples() -> None:
    registry = HandlerRegistry()

    # As decorator
    @registry.register("task_name")
    async def my_handler(*args: Any) -> None:
        pass

    # Direct call
    registry.register("task_name", my_handler)

    registry.register("send_email", send_email)
    handler = registry.get("send_email")
    assert handler is send_email
    assert registry.get("task_name") is my_handler


async def test_reference_progress_tracker_protocol_examples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async def fetch_all() -> list[int]:
        return [1, 2, 3, 4]

    async def process(record: int) -> None:
        await asyncio.sleep(0)

    async def export_data(tracker: ProgressTrackerProtocol) -> None:
        records = await fetch_all()
        total = len(records)
        for i, record in enumerate(records, start=1):
            await process(record)
            await tracker.update("export-1", i, total, f"Row {i}/{total}")
        await tracker.complete("export-1", "Export finished")

    tracker = InMemoryProgressTracker()

    async def watch() -> None:
        async for snap in tracker.subscribe("export-1"):
            print(f"{snap.percent:.1f}% — {snap.message}")  # noqa: T201 - the reference's example

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)
    await export_data(tracker)
    await asyncio.wait_for(watcher, 5)

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "25.0% — Row 1/4",
        "50.0% — Row 2/4",
        "75.0% — Row 3/4",
        "100.0% — Row 4/4",
        "100.0% — Export finished",
    ]

    # The second example: subscribing to a task that already finished.
    async for snap in tracker.subscribe("export-1"):
        print(f"{snap.percent:.1f}% — {snap.message}")  # noqa: T201 - the reference's example
    assert capsys.readouterr().out == "100.0% — Export finished\n"


async def test_reference_delay_example() -> None:
    saved: list[list[str]] = []

    class AuditStore:
        async def save_many(self, batch: list[str]) -> None:
            saved.append(batch)

    audit_store = AuditStore()
    entries = ["login", "logout"]

    @delay
    async def flush_audit_log(batch: list[str]) -> None:
        await audit_store.save_many(batch)

    # Direct call (awaited in the current task):
    await flush_audit_log(batch=entries)

    # Background dispatch (does not block):
    background = flush_audit_log.delay(batch=entries)
    await background
    assert saved == [entries, entries]
