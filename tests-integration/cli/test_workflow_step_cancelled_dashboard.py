"""The dashboard's workflow page shows a step whose job was cancelled as cancelled.

As ``workflow show`` does: the step says ``cancelled`` with its error where a failed
step's error goes (it used to say ``failed``), and its run says ``failed``. Through
httpx's ASGI transport, on a SQLite database.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio

from lexigram.contracts.tasks import CancelOutcome
from lexigram.tasks import JobChain, TaskConfig, task
from lexigram.tasks.cli._context import open_queue, release_backend
from lexigram.tasks.dashboard import Dashboard, create_dashboard
from lexigram.tasks.di._stack import build_store
from lexigram.tasks.handles import JobHandle


@task
async def dashboard_cancelled_step(x: int) -> int:
    return x


@pytest_asyncio.fixture
async def dashboard(tmp_path: Path) -> AsyncIterator[Dashboard]:
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    config = TaskConfig.model_validate({"backend": {"url": url, "queue_name": "jobs"}})
    made = create_dashboard(config)
    yield made
    await made.close()
    await release_backend(made.backend.spec)


async def test_a_cancelled_step_shows_as_cancelled_with_its_error(dashboard: Dashboard) -> None:
    spec = dashboard.backend.spec
    queue = open_queue(spec)
    store = build_store(spec, "create_workflow_state_store", "tasks.backend")
    assert store is not None
    try:
        step = dashboard_cancelled_step
        handle = await JobChain(step.s(1), step.s()).apply_async(queue, store=store)
        job_id = (await handle.info()).steps[0].job_id
        assert job_id is not None
        # No worker runs: the step is waiting, and cancelling it removes it.
        assert await JobHandle(queue, job_id).cancel() is CancelOutcome.REMOVED
        transport = httpx.ASGITransport(app=dashboard)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            page = await client.get(f"/workflows/{handle.workflow_id}")
        assert page.status_code == 200
        assert 'id="workflow-status">failed<' in page.text
        row = re.search(r"<tr><td>0\.0</td>.*?</tr>", page.text, re.DOTALL)
        assert row is not None, page.text
        assert '<td class="status status-cancelled">cancelled</td>' in row.group(0)
        assert job_id in row.group(0)
        assert "cancelled before it ran" in row.group(0)
    finally:
        await store.close()
        await queue.close()
