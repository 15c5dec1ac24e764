"""A worker's registration: the jobs it runs (inspect --json and the dashboard show it), written
while it runs whether or not its first write succeeds."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from lexigram.contracts.tasks import Job, TaskBackendSpec
from lexigram.tasks import TaskConfig, _presence
from lexigram.tasks.cli import _runtime
from lexigram.tasks.cli._app import LoadedApp
from lexigram.tasks.cli._context import Stores, open_stores, resolve_spec
from lexigram.tasks.cli._runtime import WorkerRuntime


def _memory_runtime(handler: Callable[..., Awaitable[Any]]) -> WorkerRuntime:
    """A CLI worker runtime on the memory backend whose APP has `handler` as its one task."""
    app = LoadedApp(source="test")
    app.handlers.register(handler.__name__, handler)
    config = TaskConfig()
    spec = resolve_spec(config, "memory")
    return WorkerRuntime(
        app, config, spec, [spec.queue_name], worker_config=config.effective_worker()
    )


async def test_running_jobs_names_each_job_while_it_runs_and_forgets_it_after() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def hold(n: int) -> int:
        started.set()
        await release.wait()
        return n

    runtime = _memory_runtime(hold)
    await runtime.start(connect_timeout=2)
    try:
        assert runtime.running_jobs() == []
        job = Job(name="hold", args=(1,))
        await runtime.queues[0].enqueue(job)
        await asyncio.wait_for(started.wait(), 10)
        [running] = runtime.running_jobs()
        assert running["id"] == job.id
        assert running["task"] == "hold"
        assert isinstance(running["started_at"], float)
        release.set()
        await runtime.drain(timeout=10)  # lets the job finish
        assert runtime.running_jobs() == []
    finally:
        release.set()
        await runtime.close()


class _RefusingCache:
    """A key-value store whose first `refusals` writes fail, as a backend's hiccup would."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.records: dict[str, str] = {}

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        if self.refusals:
            self.refusals -= 1
            msg = "the store did not answer"
            raise ConnectionError(msg)
        self.records[key] = value


async def test_a_registration_that_fails_is_logged_and_does_not_stop_the_worker(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran = asyncio.Event()

    async def noop() -> None:
        ran.set()

    runtime = _memory_runtime(noop)
    cache = _RefusingCache(refusals=1)

    def with_refusing_cache(backend: TaskBackendSpec, *names: str) -> Stores:
        stores = open_stores(backend, *names)
        stores.cache = cache
        return stores

    monkeypatch.setattr(_runtime, "open_stores", with_refusing_cache)
    monkeypatch.setattr(_presence, "PRESENCE_TTL", 0.15)  # refreshed every 0.05 s
    await runtime.start(connect_timeout=2)
    try:
        await runtime.queues[0].enqueue(Job(name="noop"))
        await asyncio.wait_for(ran.wait(), 10)  # the worker runs jobs meanwhile
        for _ in range(200):
            if cache.records:
                break
            await asyncio.sleep(0.01)
        [record] = cache.records.values()
        assert json.loads(record)["id"] == runtime.worker_id
        # The failure and the recovery are one line each, without a traceback.
        begun = f"Worker {runtime.worker_id} could not refresh its registration (ConnectionError"
        ended = f"Worker {runtime.worker_id} can refresh its registration again after"
        lines = [r for r in caplog.records if r.getMessage().startswith((begun, ended))]
        assert [r.getMessage().startswith(begun) for r in lines] == [True, False]
        assert all(r.exc_info is None for r in lines)
    finally:
        await runtime.close()
