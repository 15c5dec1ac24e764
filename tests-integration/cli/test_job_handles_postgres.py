"""`JobHandle` and ``lexigram-tasks job wait`` on PostgreSQL, the worker in another process.

The worker is ``lexigram-tasks worker APP`` as its own process; this process boots an
application with a `TaskProvider` on the same configuration and no workers, calls
``.delay()`` and awaits the handles (the result store's wait, woken by the backend).
"""

from __future__ import annotations

import asyncio
import importlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.app import Application
from lexigram.contracts.tasks import JobStatus, TaskExecutionError
from lexigram.tasks import JobHandle, TaskConfig, TaskProvider
from lexigram.tasks.cli import cli

pytestmark = pytest.mark.postgres

APP = """
from lexigram.tasks import task


@task
async def add(a: int, b: int) -> int:
    return a + b


@task(max_retries=0)
async def boom(reason: str) -> None:
    raise RuntimeError(reason)
"""


async def test_handles_await_results_a_worker_process_stored_on_postgres(
    pg_config: Path, write_app, cli_process
) -> None:
    name = write_app(APP)
    config = ["--config", str(pg_config)]
    worker = cli_process("worker", name, *config, "--log-level", "info")
    worker.wait_for(r"consuming")
    module = importlib.import_module(name)
    provider = TaskProvider(
        config=TaskConfig.from_yaml(pg_config), worker_count=0, enable_scheduler=False
    )
    async with Application.boot(providers=[provider]):
        handle = await module.add.delay(2, 3)
        assert await handle.result(timeout=30) == 5
        assert await handle.status() is JobStatus.COMPLETED
        failed = await module.boom.delay("disk full")
        with pytest.raises(TaskExecutionError, match="disk full"):
            await failed.result(timeout=30)
        assert provider.queue is not None
        again = JobHandle[int](provider.queue, handle.id)
        assert await again.result(timeout=5) == 5

    done = await asyncio.to_thread(
        CliRunner().invoke, cli, ["job", "wait", handle.id, "--timeout", "10", *config]
    )
    assert (done.exit_code, done.stdout.strip()) == (0, "5")
