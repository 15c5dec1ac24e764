"""A dead-lettered workflow step retried with ``dlq retry`` runs again under its own job id.

Reported: after the retry, ``workflow show`` kept naming the step's old (dead-lettered)
job id, so ``job cancel`` of the id it shows would miss the job running again. On every
backend the retried job is the same job, with the same id: the DLQ puts that job back,
and the queue takes the step's idempotency key, still held by that id, as the job
itself coming back rather than a duplicate. So the id ``workflow show`` names is the
one of the job running again, and ``job cancel`` of it stops that job. This pins that
down, on every backend with a run store, through the command a user runs (the
dashboard's retry and `PersistentDeadLetterQueue.retry`/`requeue` share its path,
``enqueue_again``).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from click.testing import CliRunner, Result

from lexigram.contracts.tasks import WorkflowStatus
from lexigram.tasks import JobChain
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import load_config, open_queue, open_store, resolve_spec

APP = """
import asyncio
import os
from pathlib import Path

from lexigram.tasks import task


@task(max_retries=0)
async def flaky(x: int) -> int:
    if Path(os.environ["LEXIGRAM_RETRY_FAIL"]).exists():
        raise RuntimeError("flaky failed")
    with open(os.environ["LEXIGRAM_RETRY_LOG"], "a") as log:
        log.write(f"flaky {x}\\n")
    release = Path(os.environ["LEXIGRAM_RETRY_RELEASE"])
    while not release.exists():
        await asyncio.sleep(0.02)
    return x


@task
def add(x: int, y: int) -> int:
    return x + y
"""


BACKENDS = [
    pytest.param("redis_config", marks=pytest.mark.redis, id="redis"),
    pytest.param("pg_config", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("sqlite_config", id="sqlite"),
    pytest.param("rabbitmq_config", marks=[pytest.mark.rabbitmq, pytest.mark.redis], id="rabbitmq"),
]


async def _cli(config: Path, *args: str, code: int | None = 0) -> Result:
    """A command, in a thread (it runs an event loop of its own), as from another terminal.

    `code` is its exit status (None: any).
    """
    done = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--config", str(config)])
    assert code is None or done.exit_code == code, done.output
    return done


async def _until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        await asyncio.sleep(0.05)


async def _scenario(config: Path, app_name: str, files: dict[str, Path]) -> None:
    app = importlib.import_module(app_name)
    spec = resolve_spec(load_config(str(config)))
    store = open_store(spec, "create_workflow_state_store")
    assert store is not None, f"the {spec.type} backend built no workflow run store"
    queue = open_queue(spec)
    try:
        chain = JobChain(app.flaky.s(1), app.add.s(2))
        handle = await chain.apply_async(queue, store=store, workflow_id=f"wf-{uuid4().hex[:8]}")

        async def failed() -> bool:
            return await handle.status() is WorkflowStatus.FAILED

        await _until(failed, "the first step was not dead-lettered")
        shown = await _cli(config, "workflow", "show", handle.workflow_id, "--json", code=1)
        step = json.loads(shown.stdout)["steps"][0]
        assert step["status"] == "failed"
        dead_id = str(step["job_id"])

        files["fail"].unlink()
        retried = await _cli(config, "dlq", "retry", dead_id)
        assert f"Requeued job {dead_id} (flaky)" in retried.output

        async def running_again() -> bool:
            return files["log"].exists() and files["log"].read_text() == "flaky 1\n"

        await _until(running_again, "the retried step did not start")
        # The id `workflow show` names is the id of the job running again...
        shown = await _cli(config, "workflow", "show", handle.workflow_id, "--json", code=1)
        assert json.loads(shown.stdout)["steps"][0]["job_id"] == dead_id
        status = await _cli(config, "job", "status", dead_id, "--json")
        assert json.loads(status.stdout)["status"] == "running"
        # ...so `job cancel` of it stops that job.
        await _cli(config, "job", "cancel", dead_id)

        async def cancelled() -> bool:
            status = await _cli(config, "job", "status", dead_id, "--json", code=None)
            return bool(json.loads(status.stdout)["status"] == "cancelled")

        await _until(cancelled, "the retried job was not cancelled")
    finally:
        await store.close()
        await queue.close()


@pytest.fixture
def retry_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """While ``fail`` exists the step fails; its run notes ``log``, then waits for ``release``."""
    files = {name: tmp_path / name for name in ("fail", "log", "release")}
    for name, path in files.items():
        monkeypatch.setenv(f"LEXIGRAM_RETRY_{name.upper()}", str(path))
    files["fail"].touch()  # the first run fails; the retried one holds until released
    return files


@pytest.mark.timeout(120)
@pytest.mark.parametrize("config_fixture", BACKENDS)
def test_a_retried_dead_lettered_step_shows_and_cancels_under_its_own_job_id(
    config_fixture: str,
    request: pytest.FixtureRequest,
    retry_files: dict[str, Path],
    write_app: Any,
    cli_process: Any,
) -> None:
    config: Path = request.getfixturevalue(config_fixture)
    name = write_app(APP)
    worker = cli_process("worker", name, "--config", str(config), "--log-level", "info")
    worker.wait_for(r"consuming")
    try:
        asyncio.run(_scenario(config, name, retry_files))
    finally:
        retry_files["release"].touch()
        # Stopped before the config fixture (set up last, so torn down first) drops the
        # backend's storage under it.
        worker.close()
