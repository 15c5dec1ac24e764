"""A run applied on another queue than the configured one names its queue.

The run store knows the queue its steps' jobs are on, but the job tools look on the
configured queue: a chain applied on ``wfq`` showed its steps in ``workflow show`` and on
the dashboard's run page, while ``job status`` of a step's id and the dashboard's job
page (linked from the run page) said the job did not exist, and the queue was named
nowhere. Now ``workflow show`` (text and ``--json``) names the run's queue and, in text,
how to pass it to the ``job`` commands; the run page links each step's job page with its
queue, and the job page (and its live part) looks there. On a SQLite database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from click.testing import CliRunner, Result

from lexigram.tasks import JobChain, TaskConfig, WorkflowHandle, task
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import close_quietly, open_queue, release_backend
from lexigram.tasks.dashboard import Dashboard, create_dashboard
from lexigram.tasks.di._stack import build_store


@task
async def run_queue_step(x: int) -> int:
    return x


@pytest_asyncio.fixture
async def dashboard(tmp_path: Path) -> AsyncIterator[Dashboard]:
    url = f"sqlite:///{tmp_path / 'runq.db'}"
    config = TaskConfig.model_validate({"backend": {"url": url, "queue_name": "jobs"}})
    made = create_dashboard(config)
    yield made
    await made.close()
    await release_backend(made.backend.spec)


@pytest_asyncio.fixture
async def run(dashboard: Dashboard) -> AsyncIterator[tuple[WorkflowHandle, str]]:
    """A chain applied on queue ``wfq`` (the config's is ``jobs``), no worker: it waits."""
    spec = dashboard.backend.spec
    queue = open_queue(spec, "wfq")
    store = build_store(spec, "create_workflow_state_store", "tasks.backend")
    assert store is not None
    try:
        step = run_queue_step
        handle = await JobChain(step.s(1), step.s()).apply_async(queue, store=store)
        job_id = (await handle.info()).steps[0].job_id
        assert job_id is not None
        yield handle, job_id
    finally:
        await close_quietly(queue, store)


async def _cli(*args: str) -> Result:
    """The command in a thread: it runs an event loop of its own."""
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def test_workflow_show_names_the_runs_queue_and_how_to_reach_its_jobs(
    dashboard: Dashboard, run: tuple[WorkflowHandle, str]
) -> None:
    handle, job_id = run
    url = dashboard.backend.spec.url
    assert url is not None
    as_json = await _cli("workflow", "show", handle.workflow_id, "--json", "-b", url)
    assert as_json.exit_code == 0, as_json.output
    data: dict[str, Any] = json.loads(as_json.stdout)
    assert data["queue"] == "wfq"
    assert data["steps"][0]["job_id"] == job_id

    # -b URL alone: the job commands look on the backend's default queue ("tasks").
    text = await _cli("workflow", "show", handle.workflow_id, "-b", url)
    assert text.exit_code == 0, text.output
    # Words, not lines: with COLUMNS set (a test runner may set it) rich wraps the lines.
    words = " ".join(text.stdout.split())
    assert words.startswith(f"{handle.workflow_id} JobChain running queue wfq started ")
    assert words.endswith(
        "Its steps' jobs are on queue 'wfq', not 'tasks': pass `--queue wfq` to "
        "`lexigram-tasks job status|wait|cancel JOB_ID`."
    )

    # The hint is right: the step's job is found with --queue wfq, not without.
    missing = await _cli("job", "cancel", job_id, "-b", url)
    assert missing.exit_code == 2, missing.output
    assert "--queue" in missing.output
    found = await _cli("job", "status", job_id, "--queue", "wfq", "--json", "-b", url)
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout)["status"] == "pending"


async def test_the_run_page_links_each_steps_job_page_on_the_runs_queue(
    dashboard: Dashboard, run: tuple[WorkflowHandle, str]
) -> None:
    handle, job_id = run
    transport = httpx.ASGITransport(app=dashboard)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        page = await client.get(f"/workflows/{handle.workflow_id}")
        assert page.status_code == 200, page.text
        assert '<dd id="workflow-queue">wfq</dd>' in page.text
        link = f"/jobs/{job_id}?queue=wfq"
        assert f'<a href="{link}">' in page.text
        job_page = await client.get(link)
        assert job_page.status_code == 200, job_page.text
        assert 'id="job-status">pending<' in job_page.text
        assert f'data-poll="/jobs/{job_id}/live?queue=wfq"' in job_page.text
        live = await client.get(f"/jobs/{job_id}/live?queue=wfq")
        assert live.status_code == 200, live.text
        assert 'id="job-status">pending<' in live.text
        # Without the queue the page looks on the configured queue, where it is not.
        elsewhere = await client.get(f"/jobs/{job_id}")
        assert elsewhere.status_code == 404


async def test_a_run_on_the_configured_queue_needs_no_hint(
    dashboard: Dashboard, tmp_path: Path
) -> None:
    spec = dashboard.backend.spec
    queue = spec.queue_name  # "jobs"
    config = tmp_path / "tasks.yaml"
    config.write_text(f"backend:\n  url: {spec.url}\n  queue_name: {queue}\n")
    on_default = open_queue(spec, queue)
    store = build_store(spec, "create_workflow_state_store", "tasks.backend")
    assert store is not None
    try:
        step = run_queue_step
        handle = await JobChain(step.s(1), step.s()).apply_async(on_default, store=store)
    finally:
        await close_quietly(on_default, store)
    text = await _cli("workflow", "show", handle.workflow_id, "--config", str(config))
    assert text.exit_code == 0, text.output
    assert f" queue {queue} started " in " ".join(text.stdout.split())
    assert "Its steps' jobs are on queue" not in text.stdout
