"""The dashboard's workers table shows a worker's attempts by outcome, as ``inspect`` does.

Both read the worker's registration (`WorkerPresence`) and name its counts as
``lexigram_tasks_jobs_total`` does (`OUTCOMES`): a retried attempt and a dead-lettered
job are two columns, never one "failed" that means one thing here and another in
`TaskDashboard` and the metrics collector (where "failed" is dead-lettered).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from lexigram.contracts.tasks import Job, TaskBackendSpec
from lexigram.tasks import _backends
from lexigram.tasks._presence import OUTCOMES, WorkerPresence
from lexigram.tasks.admin import registered_workers
from lexigram.tasks.backends.memory import MemoryTaskQueue
from lexigram.tasks.cache import InMemoryCacheBackend
from lexigram.tasks.cli._inspect import _render
from lexigram.tasks.config import RetryConfig, TaskWorkerConfig
from lexigram.tasks.constants import WORKER_KEY_PREFIX
from lexigram.tasks.dashboard import Dashboard
from lexigram.tasks.dashboard._backend import DashboardBackend
from lexigram.tasks.execution import WorkerPool
from lexigram.tasks.testing import HookRecorder

FAST = RetryConfig(initial_delay=0.01, max_delay=0.01, jitter=0.0)


class _Backend:
    """A shared backend (not process-local) whose worker registrations a test writes."""

    url_schemes = ()
    url_field = None

    def __init__(self) -> None:
        self.queue = MemoryTaskQueue(queue_name="jobs")
        self.cache = InMemoryCacheBackend()

    def create_queue(self, spec: TaskBackendSpec, /) -> MemoryTaskQueue:
        return self.queue

    def create_cache_backend(self, spec: TaskBackendSpec, /) -> InMemoryCacheBackend:
        return self.cache


@pytest.fixture
def backend() -> Iterator[_Backend]:
    _backends.clear_backend_cache()
    made = _backends._cache["workers-table"] = _Backend()  # as if installed
    yield made
    _backends.clear_backend_cache()


@pytest_asyncio.fixture
async def client(backend: _Backend) -> AsyncIterator[httpx.AsyncClient]:
    dashboard = Dashboard(
        DashboardBackend(TaskBackendSpec(type="workers-table", queue_name="jobs"))
    )
    transport = httpx.ASGITransport(app=dashboard)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        yield http
    await dashboard.close()


async def _run_jobs(backend: _Backend) -> None:
    """One job succeeds, one fails once and then for good: 1 retried, 1 dead-lettered."""

    async def ok() -> str:
        return "ok"

    async def bad() -> None:
        msg = "no"
        raise ValueError(msg)

    hooks = HookRecorder()
    pool = WorkerPool(
        backend.queue,
        {"ok": ok, "bad": bad},
        size=1,
        hooks=hooks,
        config=TaskWorkerConfig(poll_interval=0.01, retry=FAST),
    )
    done, failed = Job(name="ok"), Job(name="bad", max_retries=1)
    (await backend.queue.enqueue(done)).unwrap()
    (await backend.queue.enqueue(failed)).unwrap()
    await pool.start()
    try:
        await hooks.wait_until(
            lambda: done.id in hooks.ids("task.completed") and failed.id in hooks.ids("task.failed")
        )
    finally:
        await pool.stop()
    presence = WorkerPresence(
        backend.cache, pools=lambda: [pool], queues=["jobs"], backend="memory", worker_id="w:1"
    )
    await presence.beat()


def _dashboard_columns(html: str) -> dict[str, str]:
    header = re.findall(r"<th[^>]*>(.*?)</th>", html)
    row = re.search(r'<tr data-worker="w:1">(.*?)</tr>', html, re.DOTALL)
    assert row is not None
    cells = [c.strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.DOTALL)]
    return dict(zip(header, cells, strict=True))


def _inspect_columns(record: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    report = {
        "backend": {"type": "redis", "url": "redis"},
        "queues": [],
        "workers": [record],
        "schedules": None,
        "dead_letters": 0,
    }
    _render(report, TaskBackendSpec(type="redis", url="redis://localhost:6379/0"))
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "processed" in line)
    row = next(line for line in out.splitlines() if "w:1" in line)
    columns = [c.strip() for c in header.strip("┃│ ").split("┃")]
    cells = [c.strip() for c in row.strip("┃│ ").split("│")]
    return dict(zip(columns, cells, strict=True))


async def test_the_workers_table_shows_the_outcomes_inspect_shows(
    backend: _Backend,
    client: httpx.AsyncClient,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _run_jobs(backend)
    page = await client.get("/fragments/workers")
    assert page.status_code == 200
    shown = _dashboard_columns(page.text)
    counts = ("processed", *OUTCOMES)
    assert [shown[name] for name in counts] == ["3", "1", "1", "1", "0", "0", "0"]
    assert "failed" not in shown  # retried + dead_lettered under a name that means neither

    monkeypatch.setenv("COLUMNS", "200")
    (record,) = await registered_workers(backend.cache)
    listed = _inspect_columns(record, capsys)
    assert {name: listed[name] for name in counts} == {name: shown[name] for name in counts}


async def test_a_record_of_an_older_worker_shows_a_dash_for_a_missing_outcome(
    backend: _Backend, client: httpx.AsyncClient
) -> None:
    # Written before the outcomes were recorded: processed, succeeded and failed only.
    old = {"id": "w:1", "queues": ["jobs"], "processed": 5, "succeeded": 4, "failed": 1}
    old |= {"in_flight": 0, "concurrency": 1, "started_at": time.time(), "seen_at": time.time()}
    await backend.cache.set(WORKER_KEY_PREFIX + "w:1", json.dumps(old), ttl=60)
    shown = _dashboard_columns((await client.get("/fragments/workers")).text)
    assert [shown[name] for name in ("processed", *OUTCOMES)] == ["5", "4", "-", "-", "-", "-", "-"]
