"""A failed or cancelled job's progress leaves `list_active` (the dashboard's "Running now").

The store keeps the entry, marked failed, until it expires; it is no longer listed as
active. Run against each backend whose progress store once decided "active" by the count
alone (Redis and SQLite), through a real worker.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import redis
from lexigram.contracts.tasks import (
    CancelOutcome,
    Job,
    ProgressStoreProtocol,
    TaskBackendSpec,
)
from lexigram.tasks import load_backend
from lexigram.tasks.config import TaskWorkerConfig
from lexigram.tasks.decorators import task
from lexigram.tasks.execution import HandlerRegistry, TaskWorker, TaskWorkerServices
from lexigram.tasks.progress import ProgressTracker


@pytest.fixture(params=["redis", "sqlite"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskBackendSpec]:
    if request.param == "redis":
        request.applymarker(pytest.mark.redis)
        url = request.getfixturevalue("redis_url")
        prefix = f"progress-{uuid.uuid4().hex[:8]}"
        yield TaskBackendSpec(type="redis", url=url, options={"key_prefix": prefix})
        client = redis.Redis.from_url(url)
        try:
            for key in client.scan_iter(match=f"*{prefix}*"):
                client.delete(key)
        finally:
            client.close()
        return
    yield TaskBackendSpec(type="sqlite", url=f"sqlite:///{tmp_path}/progress.db")


async def _ended(store: ProgressStoreProtocol, job_id: str) -> None:
    """Wait until the worker has marked the job's progress failed."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        info = await store.get(job_id)
        if info is not None and info.metadata.get("status") == "failed":
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"the progress of job {job_id} was never marked failed")


async def test_failed_and_cancelled_jobs_leave_the_active_progress(
    spec: TaskBackendSpec,
) -> None:
    started = asyncio.Event()

    @task(name="progress_then_raise", max_retries=0)
    async def boom(progress: ProgressTracker) -> None:
        await progress.update(1, 10)
        msg = "exploded on purpose"
        raise ValueError(msg)

    @task(name="progress_then_wait", max_retries=0)
    async def waits(progress: ProgressTracker) -> None:
        await progress.update(1, 10)
        started.set()
        await asyncio.Event().wait()

    backend: Any = load_backend(spec.type)
    queue = backend.create_queue(spec)
    store = backend.create_progress_store(spec)
    results = backend.create_result_store(spec)
    registry = HandlerRegistry()
    for function in (boom, waits):
        registry.register(function.name, function)
    worker = TaskWorker(
        "progress-it",
        queue,
        registry,
        TaskWorkerConfig(poll_interval=0.05),
        TaskWorkerServices(result_store=results, progress_store=store),
    )
    await worker.start()
    try:
        failing = Job(name="progress_then_raise")
        (await queue.enqueue(failing)).unwrap()
        await _ended(store, failing.id)
        assert await store.list_active() == []

        cancelled = Job(name="progress_then_wait")
        (await queue.enqueue(cancelled)).unwrap()
        await asyncio.wait_for(started.wait(), 10.0)
        assert [info.job_id for info in await store.list_active()] == [cancelled.id]
        assert await queue.cancel(cancelled.id) == CancelOutcome.STOPPING
        await _ended(store, cancelled.id)
        assert await store.list_active() == []
    finally:
        await worker.stop()
        for closing in (queue, store, results):
            await closing.close()
