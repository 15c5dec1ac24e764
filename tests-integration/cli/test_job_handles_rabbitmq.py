"""`JobHandle` and ``lexigram-tasks job`` on RabbitMQ with Redis stores.

RabbitMQ carries the jobs; the ``stores`` backend (Redis, under this test's key prefix)
holds the results: those a worker in another process stores and the handles of this
process await, and one the prefix test stores itself.
"""

from __future__ import annotations

import asyncio
import importlib
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.app import Application
from lexigram.contracts.tasks import JobResult, JobStatus, TaskExecutionError
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import load_config, open_stores, resolve_spec

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis]

APP = """
from lexigram.tasks import task


@task
async def add(a: int, b: int) -> int:
    return a + b


@task(max_retries=0)
async def boom(reason: str) -> None:
    raise RuntimeError(reason)
"""


async def test_handles_await_results_a_worker_process_stored_via_rabbitmq(
    rabbitmq_config: Path, write_app, cli_process
) -> None:
    name = write_app(APP)
    worker = cli_process("worker", name, "--config", str(rabbitmq_config), "--log-level", "info")
    worker.wait_for(r"consuming")
    module = importlib.import_module(name)
    provider = TaskProvider(
        config=TaskConfig.from_yaml(rabbitmq_config), worker_count=0, enable_scheduler=False
    )
    async with Application.boot(providers=[provider]):
        handle = await module.add.delay(2, 3)
        assert await handle.result(timeout=30) == 5
        assert await handle.status() is JobStatus.COMPLETED
        failed = await module.boom.delay("disk full")
        with pytest.raises(TaskExecutionError, match="disk full"):
            await failed.result(timeout=30)


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


async def test_job_prefix_finds_finished_jobs_only_via_rabbitmq(rabbitmq_config: Path) -> None:
    # The RabbitMQ queue cannot search ids by prefix; its Redis result store can.
    config = ["--config", str(rabbitmq_config)]
    code, out, err = await asyncio.to_thread(_cli, "enqueue", "add", "--args", "[2, 3]", *config)
    assert code == 0, err
    waiting = out.strip().split()[-1]
    finished = f"f1n1-{uuid.uuid4().hex}"
    spec = resolve_spec(load_config(str(rabbitmq_config)))
    stores = open_stores(spec, "result_store")
    assert stores.result_store is not None
    try:
        await stores.result_store.store(finished, JobResult.ok(5))
    finally:
        await stores.close()

    code, out, err = await asyncio.to_thread(_cli, "job", "result", finished[:9], *config)
    assert (code, out.strip()) == (0, "5"), err
    code, _, err = await asyncio.to_thread(_cli, "job", "status", waiting[:8], *config)
    assert code == 2
    assert "Its queue cannot search by prefix: give the whole id of a waiting job." in err
