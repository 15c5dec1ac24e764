"""``lexigram-tasks workflow show`` names the job of every step enqueued, and its state.

A step is recorded in the run store only when it ends; the ids of a stage's jobs are
recorded when the stage is enqueued, and the command asks the queue for the state of
each step that has not ended. So a running step shows ``running`` with its job id, and
``lexigram-tasks job cancel`` of that id ends the run, on every backend with a run store
(RabbitMQ with the one of its Redis ``stores``). Before, such a step showed ``queued``
and no job id.
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

from lexigram.tasks import JobChord, JobGroup
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._context import load_config, open_queue, open_store, resolve_spec
from lexigram.tasks.workflows import WorkflowError, WorkflowHandle

APP = """
import asyncio
import os
from pathlib import Path

from lexigram.tasks import task


@task(max_retries=0)
async def hold(x: int) -> int:
    with open(os.environ["LEXIGRAM_SHOW_LOG"], "a") as log:
        log.write(f"hold {x}\\n")
    release = Path(os.environ["LEXIGRAM_SHOW_RELEASE"])
    while not release.exists():
        await asyncio.sleep(0.02)
    return x


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def total(values: list[int]) -> int:
    return sum(values)
"""


BACKENDS = [
    pytest.param("redis_config", marks=pytest.mark.redis, id="redis"),
    pytest.param("pg_config", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("sqlite_config", id="sqlite"),
    pytest.param("rabbitmq_config", marks=[pytest.mark.rabbitmq, pytest.mark.redis], id="rabbitmq"),
]


def _invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


async def _show(config: Path, workflow_id: str, *more: str, code: int = 0) -> Result:
    """``workflow show``, in a thread: the command runs an event loop of its own."""
    args = ("workflow", "show", workflow_id, *more, "--config", str(config))
    shown = await asyncio.to_thread(_invoke, *args)
    assert shown.exit_code == code, shown.output
    return shown


async def _until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        await asyncio.sleep(0.02)


async def _scenario(config: Path, app_name: str, log: Path) -> None:
    app = importlib.import_module(app_name)
    spec = resolve_spec(load_config(str(config)))
    store = open_store(spec, "create_workflow_state_store")
    assert store is not None, f"the {spec.type} backend built no workflow run store"
    queue = open_queue(spec)
    try:
        later = app.add.s(1, 2)
        later.scheduled_at = time.time() + 300  # enqueued, but no worker may take it yet
        chord = JobChord(JobGroup(app.hold.s(1), app.hold.s(2), later), app.total.s())
        handle: WorkflowHandle = await chord.apply_async(
            queue, store=store, workflow_id=f"wf-show-{uuid4().hex[:8]}"
        )

        def both_held() -> bool:
            return log.exists() and len(log.read_text().splitlines()) == 2

        await _until(both_held, "both hold steps did not start")
        data = json.loads((await _show(config, handle.workflow_id, "--json")).stdout)
        steps = data["steps"]
        assert [(s["task"], s["status"]) for s in steps] == [
            ("hold", "running"),
            ("hold", "running"),
            ("add", "queued"),
            ("total", "waiting"),
        ]
        ids = [s["job_id"] for s in steps]
        assert all(ids[:3]), ids
        assert len(set(ids[:3])) == 3
        assert ids[3] is None  # its job is enqueued only once the group has ended
        text = (await _show(config, handle.workflow_id)).stdout
        assert f"0.0  hold  running  job {ids[0]}" in text
        assert f"0.2  add  queued  job {ids[2]}" in text
        assert "1.0  total  waiting\n" in text

        # The id shown is the one `job cancel` takes: cancelling it ends the run.
        cancel = ("job", "cancel", str(ids[0]), "--config", str(config))
        cancelled = await asyncio.to_thread(_invoke, *cancel)
        assert cancelled.exit_code == 0, cancelled.output
        with pytest.raises(WorkflowError, match="hold"):
            await handle.result(timeout=30)
        data = json.loads((await _show(config, handle.workflow_id, "--json", code=1)).stdout)
        first = data["steps"][0]
        # Recorded as cancelled, not as failed; the run fails (exit status 1) either way.
        assert (data["status"], first["status"], first["job_id"]) == ("failed", "cancelled", ids[0])
        assert first["error"] == f"Job {ids[0]} ('hold') was cancelled."
        text = (await _show(config, handle.workflow_id, code=1)).stdout
        assert f"0.0  hold  cancelled  job {ids[0]}" in text
        assert "('hold') was cancelled.\"" in text  # its error, where a failure's would be
    finally:
        await store.close()
        await queue.close()


@pytest.fixture
def hold_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The file each `hold` step notes its start in, and the one that lets them end."""
    log, release = tmp_path / "held.log", tmp_path / "release"
    monkeypatch.setenv("LEXIGRAM_SHOW_LOG", str(log))
    monkeypatch.setenv("LEXIGRAM_SHOW_RELEASE", str(release))
    return log, release


@pytest.mark.timeout(120)
@pytest.mark.parametrize("config_fixture", BACKENDS)
def test_workflow_show_names_the_job_and_state_of_every_enqueued_step(
    config_fixture: str,
    request: pytest.FixtureRequest,
    hold_files: tuple[Path, Path],
    write_app: Any,
    cli_process: Any,
) -> None:
    config: Path = request.getfixturevalue(config_fixture)
    log, release = hold_files
    name = write_app(APP)
    worker = cli_process("worker", name, "--config", str(config), "--log-level", "info")
    worker.wait_for(r"consuming")
    try:
        asyncio.run(_scenario(config, name, log))
    finally:
        release.touch()  # the other hold step ends, so the worker stops at once
        # Stopped before the config fixture (set up last, so torn down first) drops the
        # backend's storage under it.
        worker.close()
