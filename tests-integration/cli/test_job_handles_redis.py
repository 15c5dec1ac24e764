"""A `JobHandle` awaits a result that a worker in another process stored on Redis.

The worker is ``lexigram-tasks worker APP`` as its own process; this process is the
producer: an application booted with a `TaskProvider` on the same configuration and
no workers, calling ``.delay()`` and awaiting the handles it returns.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import JobStatus, TaskExecutionError
from lexigram.tasks import JobHandle, TaskConfig, TaskProvider

pytestmark = pytest.mark.redis

APP = """
from lexigram.tasks import ProgressTracker, task


@task
async def add(a: int, b: int) -> int:
    return a + b


@task(max_retries=0)
async def boom(reason: str) -> None:
    raise RuntimeError(reason)


@task
async def steps(count: int, progress: ProgressTracker) -> int:
    for i in range(1, count + 1):
        await progress.update(i, count, f"step {i}")
    return count
"""


async def test_handles_await_results_a_worker_process_stored(
    redis_config: Path, write_app, cli_process
) -> None:
    name = write_app(APP)
    worker = cli_process("worker", name, "--config", str(redis_config), "--log-level", "info")
    worker.wait_for(r"consuming")
    module = importlib.import_module(name)
    config = TaskConfig.from_yaml(redis_config)
    provider = TaskProvider(config=config, worker_count=0, enable_scheduler=False)
    async with Application.boot(providers=[provider]):
        handle = await module.add.delay(2, 3)
        assert await handle.result(timeout=30) == 5
        assert await handle.status() is JobStatus.COMPLETED

        failed = await module.boom.delay("disk full")
        with pytest.raises(TaskExecutionError, match="disk full"):
            await failed.result(timeout=30)
        assert await failed.status() is JobStatus.FAILED

        tracked = await module.steps.delay(3)
        assert await tracked.result(timeout=30) == 3
        info = await tracked.progress()
        assert info is not None
        assert (info.current, info.total) == (3, 3)

        # Rebuilt from the id alone, as another process would: the provider registered
        # the queue's result store, so nothing but the queue and the id is needed.
        assert provider.queue is not None
        again = JobHandle[int](provider.queue, handle.id)
        assert await again.result(timeout=5) == 5
