"""The dashboard sends a job where ``dlq retry`` and ``schedule run-now`` send it.

Two SQLite files stand for two configured backends, ``main`` (the primary, which the
dashboard shows) and ``reports``. A schedule and a dead letter of ``main`` name the queue
``reports``: run now and retried from the dashboard, their jobs reach the ``reports``
backend, whose workers consume them, as the command line's and ``.delay()``'s would.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from lexigram.contracts.tasks import Job, JobTemplate
from lexigram.tasks import TaskConfig
from lexigram.tasks.backends.sqlite import SQLiteTaskQueue
from lexigram.tasks.cli._context import open_queue, open_stores, release_backend
from lexigram.tasks.dashboard import Dashboard, create_dashboard
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.scheduling import ScheduledJob


def _config(tmp_path: Path) -> TaskConfig:
    return TaskConfig.model_validate(
        {
            "backends": [
                {
                    "name": "main",
                    "primary": True,
                    "url": f"sqlite:///{tmp_path / 'main.db'}",
                    "queue_name": "app-main",
                },
                {
                    "name": "reports",
                    "url": f"sqlite:///{tmp_path / 'reports.db'}",
                    "queue_name": "app-reports",
                },
            ]
        }
    )


@pytest_asyncio.fixture
async def dashboard(tmp_path: Path) -> AsyncIterator[Dashboard]:
    built = create_dashboard(_config(tmp_path))
    spec = built.backend.spec
    queue = open_queue(spec)
    stores = open_stores(spec, "dlq_backend", "scheduler_store")
    try:
        monthly = ScheduledJob(
            job_template=JobTemplate(name="build_report", queue_name="reports"),
            cron_expression="0 3 1 * *",
            next_run=time.time() + 3600,
            job_id="monthly",
            namespace="app",
            queue_name="reports",
        )
        await stores.scheduler_store.save_job("app/monthly", monthly.to_dict())
        dlq = PersistentDeadLetterQueue(backend=stores.dlq_backend, queue=queue)
        await dlq.add(Job(name="build_report", queue_name="reports"), "boom", reason="exhausted")
    finally:
        await stores.close()
        await queue.close()
    yield built
    await built.close()
    await release_backend(spec)


async def _waiting(path: Path, queue_name: str) -> list[str]:
    queue = SQLiteTaskQueue(str(path), queue_name=queue_name)
    try:
        return [job.name for job in await queue.dequeue_batch(10)]
    finally:
        await queue.close()


async def test_run_now_and_retry_reach_the_backend_the_queue_name_leads_to(
    dashboard: Dashboard, tmp_path: Path
) -> None:
    ran = await dashboard.backend.schedule_action("app/monthly", "run-now")
    assert "on 'app-reports'" in ran
    retried = await dashboard.backend.retry_all()
    assert "Requeued 1" in retried
    assert await _waiting(tmp_path / "reports.db", "app-reports") == ["build_report"] * 2
    assert await _waiting(tmp_path / "main.db", "reports") == []
    assert await _waiting(tmp_path / "main.db", "app-main") == []
