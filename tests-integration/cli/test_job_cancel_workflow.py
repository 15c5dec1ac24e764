"""``lexigram-tasks job cancel`` of a waiting workflow step ends the run, as the API does.

A step removed before it ran ends its queue-driven run as failed ("cancelled before it
ran"), the step itself recorded as cancelled, through the run store registered for the
queue. The command builds its queue as
the provider does, so it registers the backend's run store too; without it the run
stayed ``running`` for ever while the step was gone.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import WorkflowStatus
from lexigram.tasks import JobChain, task
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import load_config, open_queue, open_store, resolve_spec
from lexigram.tasks.workflows import _queued
from lexigram.tasks.workflows._queued import enqueue_all

BACKENDS = [
    pytest.param("redis_config", marks=pytest.mark.redis, id="redis"),
    pytest.param("pg_config", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("sqlite_config", id="sqlite"),
]


@task
async def add(a: int, b: int) -> int:
    return a + b


async def _cancel_a_waiting_step(config: Path, enqueued: list[str]) -> tuple[Any, ...]:
    """Apply a two-step chain whose first step waits (delayed); cancel it with the CLI."""
    spec = resolve_spec(load_config(str(config)))
    queue = open_queue(spec)
    store = open_store(spec, "create_workflow_state_store")
    try:
        first = add.s(1, 2)
        first.scheduled_at = time.time() + 60
        handle = await JobChain(first, add.s(1)).apply_async(
            queue, store=store, workflow_id=f"wf-cancel-{uuid4().hex[:8]}"
        )
        [step_id] = enqueued
        # The command runs its own event loop: in a thread, as from another terminal.
        args = ["job", "cancel", step_id, "--config", str(config)]
        result = await asyncio.to_thread(CliRunner().invoke, cli, args)
        info = await handle.info()
        step = info.steps[0]
        return result.exit_code, result.output, info.status, step.status, step.error
    finally:
        await store.close()
        await queue.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("config_fixture", BACKENDS)
def test_job_cancel_of_a_waiting_step_ends_its_workflow(
    config_fixture: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    config: Path = request.getfixturevalue(config_fixture)
    enqueued: list[str] = []  # the ids of the steps' jobs, as the chain enqueues them

    async def noting(queue: Any, jobs: list[Any]) -> Any:
        enqueued.extend(job.id for job in jobs)
        return await enqueue_all(queue, jobs)

    monkeypatch.setattr(_queued, "enqueue_all", noting)
    code, output, status, step, error = asyncio.run(_cancel_a_waiting_step(config, enqueued))
    assert code == 0, output
    assert "was waiting and is cancelled" in output
    assert (status, step, error) == (WorkflowStatus.FAILED, "cancelled", "cancelled before it ran")
