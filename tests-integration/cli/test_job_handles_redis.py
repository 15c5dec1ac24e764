"""`JobHandle` and ``lexigram-tasks job`` read results a worker in another process stored.

The worker is ``lexigram-tasks worker APP`` as its own process on Redis; this process
is the producer: an application booted with a `TaskProvider` on the same configuration
and no workers, calling ``.delay()`` and awaiting the handles it returns, or the
``job status|result|wait`` commands.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.app import Application
from lexigram.contracts.tasks import JobStatus, TaskExecutionError
from lexigram.tasks import JobHandle, TaskConfig, TaskProvider
from lexigram.tasks.cli import cli

pytestmark = pytest.mark.redis

APP = """
import asyncio
import sys

from lexigram.tasks import ProgressTracker, task


@task
async def add(a: int, b: int) -> int:
    return a + b


@task(max_retries=0)
async def boom(reason: str) -> None:
    raise RuntimeError(reason)


@task
async def slow() -> None:
    print("slow started", file=sys.stderr, flush=True)
    await asyncio.sleep(60)


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


def _job(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["job", *args])
    return result.exit_code, result.stdout, result.stderr


def test_job_commands_show_status_and_results_a_worker_process_stored(
    redis_config: Path, write_app, cli_process
) -> None:
    app = write_app(APP)
    config = ["--config", str(redis_config)]
    ids = {}
    for name, args in (("add", "[2, 3]"), ("boom", '["disk full"]'), ("steps", "[2]")):
        done = CliRunner().invoke(cli, ["enqueue", name, "--args", args, *config])
        assert done.exit_code == 0, done.output
        ids[name] = done.stdout.strip().split()[-1]

    code, out, _ = _job("status", ids["add"], *config)
    assert (code, out.split()[:2]) == (0, [ids["add"], "pending"])
    code, _, err = _job("result", ids["add"], *config)
    assert code == 2
    assert "no result yet (it is pending)" in err

    worker = cli_process("worker", app, *config, "--log-level", "info")
    worker.wait_for(r"consuming")
    code, out, _ = _job("wait", ids["add"], "--timeout", "30", *config)
    assert (code, out.strip()) == (0, "5")
    code, out, _ = _job("result", ids["add"], "--json", *config)
    assert code == 0
    assert json.loads(out)["result"] == 5
    assert json.loads(out)["status"] == "completed"

    code, _, err = _job("wait", ids["boom"], "--timeout", "30", *config)
    assert code == 1
    assert "disk full" in err
    code, out, _ = _job("status", ids["boom"], *config)
    assert (code, out.split()[1]) == (0, "failed")

    code, out, err = _job("wait", ids["steps"], "--follow", *config)
    assert (code, out.strip()) == (0, "2")
    # The bar, drawn from the progress saved for the job (completed by the worker).
    assert "100%" in err
    assert "2/2" in err
    code, out, _ = _job("status", ids["steps"], "--json", *config)
    status = json.loads(out)
    assert (status["status"], status["progress"]["current"]) == ("completed", 2)

    code, _, err = _job("status", "no-such-job", *config)
    assert code == 2
    assert "no-such-job" in err


def test_job_cancel_removes_a_waiting_job_and_then_says_it_finished(redis_config: Path) -> None:
    config = ["--config", str(redis_config)]
    done = CliRunner().invoke(cli, ["enqueue", "add", "--args", "[1, 2]", *config])
    assert done.exit_code == 0, done.output
    job_id = done.stdout.strip().split()[-1]

    code, out, _ = _job("cancel", job_id, *config)
    assert code == 0, out
    assert "will not run" in out
    code, out, _ = _job("status", job_id, *config)
    assert (code, out.split()[:2]) == (0, [job_id, "cancelled"])
    code, _, err = _job("result", job_id, *config)
    assert code == 1
    assert f"Job {job_id} was cancelled." in err

    # A second cancel finds nothing to cancel: the job ended (cancelled) already.
    code, out, _ = _job("cancel", job_id, "--json", *config)
    assert code == 1
    assert json.loads(out) == {"id": job_id, "outcome": "finished", "cancelled": False}
    # An unknown id is looked up as a prefix first, and that lookup reports it.
    code, _, err = _job("cancel", "no-such-job", *config)
    assert code == 2
    assert "No job of the redis backend has the id 'no-such-job' or an id starting with it" in err


def test_job_cancel_stops_a_job_running_in_a_worker_process(
    redis_config: Path, write_app, cli_process
) -> None:
    app = write_app(APP)
    config = ["--config", str(redis_config)]
    worker = cli_process("worker", app, *config, "--log-level", "info")
    worker.wait_for(r"consuming")
    done = CliRunner().invoke(cli, ["enqueue", "slow", *config])
    assert done.exit_code == 0, done.output
    job_id = done.stdout.strip().split()[-1]
    worker.wait_for(r"slow started")

    asked = time.monotonic()
    code, out, _ = _job("cancel", job_id, *config)
    assert code == 0, out
    assert "was running" in out
    # The worker logs this once the handler has stopped: the Redis announcement reached it.
    worker.wait_for(rf"Job {job_id} \(slow\) was cancelled while running", timeout=2.0)
    assert time.monotonic() - asked < 2.5  # the cancel command itself included
    code, out, _ = _job("status", job_id, *config)
    assert (code, out.split()[:2]) == (0, [job_id, "cancelled"])
    assert not any("retrying" in line or "dead-letter" in line for line in worker.seen)
