"""Every command that sends a job reports it "queued" to the plugins, as a provider does.

``enqueue``, ``dlq retry``, ``dlq retry-all`` and ``schedule run-now`` each put a job on a
queue; the installed plugins' ``task.queued`` hook sees each one (here an observer on the
registry the commands build, on a SQLite file the commands share).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import Job, JobTemplate, TaskBackendSpec
from lexigram.tasks.cli import _context, cli
from lexigram.tasks.cli._context import open_queue, open_stores, release_backend, resolve_spec
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.hooks import HookRegistry
from lexigram.tasks.scheduling import ScheduledJob


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The task names the commands' plugins see queued."""
    seen: list[str] = []

    def build_hooks() -> HookRegistry:
        hooks = HookRegistry()
        hooks.add_observer("task.queued", lambda payload: seen.append(payload.task_name))
        return hooks

    monkeypatch.setattr(_context, "build_hooks", build_hooks)
    return seen


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for name in list(os.environ):
        if name.startswith("LEX_TASKS__") or name == "LEXIGRAM_TASKS_DB":
            monkeypatch.delenv(name)
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    asyncio.run(_seed(resolve_spec(None, url)))
    return url


async def _seed(spec: TaskBackendSpec) -> None:
    queue = open_queue(spec)
    stores = open_stores(spec, "dlq_backend", "scheduler_store")
    try:
        dlq = PersistentDeadLetterQueue(backend=stores.dlq_backend, queue=queue)
        for name in ("resize", "crop"):
            await dlq.add(Job(name=name), "boom", reason="exhausted")
        nightly = ScheduledJob(
            job_template=JobTemplate(name="nightly"),
            cron_expression="0 3 * * *",
            next_run=time.time() + 3600,
            job_id="nightly",
            namespace="app",
        )
        await stores.scheduler_store.save_job("app/nightly", nightly.to_dict())
    finally:
        await stores.close()
        await queue.close()
        await release_backend(spec)


def _run(*args: str) -> None:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output


def test_each_sending_command_reports_its_jobs_queued(backend: str, queued: list[str]) -> None:
    _run("enqueue", "send_email", "--backend", backend)
    assert queued == ["send_email"]
    _run("dlq", "retry", asyncio.run(_dead_letter_id(backend, "resize")), "--backend", backend)
    assert queued == ["send_email", "resize"]
    _run("dlq", "retry-all", "--yes", "--backend", backend)
    assert queued == ["send_email", "resize", "crop"]
    _run("schedule", "run-now", "nightly", "--backend", backend)
    assert queued == ["send_email", "resize", "crop", "nightly"]


async def _dead_letter_id(url: str, task_name: str) -> str:
    """The id of the dead letter of `task_name` (what ``dlq retry`` is given)."""
    spec = resolve_spec(None, url)
    stores = open_stores(spec, "dlq_backend")
    try:
        records = await stores.dlq_backend.list_all()
    finally:
        await stores.close()
        await release_backend(spec)
    [job_id] = [str(r["job_id"]) for r in records if r["job"]["name"] == task_name]
    return job_id
