"""`JobHandle` and ``lexigram-tasks job wait`` on PostgreSQL, the worker in another process.

The worker is ``lexigram-tasks worker APP`` as its own process; this process boots an
application with a `TaskProvider` on the same configuration and no workers, calls
``.delay()`` and awaits the handles (the result store's wait, woken by the backend).
"""

from __future__ import annotations

import asyncio
import importlib
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner

from lexigram.app import Application
from lexigram.contracts.tasks import JobStatus, TaskExecutionError
from lexigram.tasks import JobHandle, TaskConfig, TaskProvider
from lexigram.tasks.backends.postgres import migrate
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


async def _drop_schema(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def pg_config(tmp_path: Path, postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A YAML config on a schema of this test's own (migrated here, dropped afterwards)."""
    schema = f"lexigram_jh_{uuid.uuid4().hex[:8]}"
    asyncio.run(migrate(postgres_dsn, schema))
    path = tmp_path / "tasks.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                type: postgres
                url: "${{LEXIGRAM_JOB_HANDLES_PG_DSN}}"
                queue_name: jobs
                options:
                  schema: {schema}
              worker:
                poll_interval: 0.05
            """
        )
    )
    monkeypatch.setenv("LEXIGRAM_JOB_HANDLES_PG_DSN", postgres_dsn)
    yield path
    asyncio.run(_drop_schema(postgres_dsn, schema))


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
