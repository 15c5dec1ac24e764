"""A task's queue that no configured backend serves: one rule at every door.

``@task(queue="reports")`` with one backend configured (a SQLite file, shared between
processes) and no backend called ``reports``: a ``worker`` handler's ``.delay()``, an
application's ``.delay()`` and `TaskProvider.enqueue_job`, and ``enqueue --app`` all put
the job on the ``reports`` queue of that backend, where ``worker APP --queue reports``
runs it, and the application's handle reads the result that worker stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks.backends.sqlite import SQLiteTaskQueue
from lexigram.tasks.decorators import task

APP = """
from pathlib import Path

from lexigram.tasks import task


@task(name="unconfigured_queue.build_report", queue="reports")
async def build_report(name: str) -> str:
    with Path("reports.txt").open("a") as out:
        out.write(name + "\\n")
    return "built " + name


@task(name="unconfigured_queue.fanout")
async def fanout(name: str) -> None:
    await build_report.delay(name)
"""

CONFIG = """
tasks:
  backend:
    url: "sqlite:///{db}"
    queue_name: app-main
"""


@task(name="unconfigured_queue.build_report", queue="reports")
async def build_report(name: str) -> str:
    """The APP's task, declared here too, for the application in this process."""
    return "built " + name


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("LEX_TASKS__") or name == "LEXIGRAM_TASKS_DB":
            monkeypatch.delenv(name)
    (tmp_path / "unconfigured_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "tasks.yaml").write_text(CONFIG.format(db=tmp_path / "tasks.db"))
    return tmp_path


@pytest.fixture
def cli(workdir: Path, run_cli: RunCli) -> RunCli:
    """``lexigram-tasks ARGS --config tasks.yaml`` as a process in `workdir`."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--config", "tasks.yaml", cwd=workdir, app_dir=workdir)

    return run


async def waiting(workdir: Path, queue_name: str) -> int:
    """How many jobs wait in `queue_name` of the test's SQLite file."""
    queue = SQLiteTaskQueue(str(workdir / "tasks.db"), queue_name=queue_name)
    try:
        return await queue.get_task_count()
    finally:
        await queue.close()


async def test_a_handlers_delay_waits_on_the_backends_queue_of_that_name(
    workdir: Path, cli: RunCli
) -> None:
    fired = cli("enqueue", "unconfigured_queue.fanout", "--args", '["w1"]')
    assert fired.returncode == 0, fired.stderr
    main = cli("worker", "unconfigured_app", "--burst")
    assert main.returncode == 0, main.stderr
    assert "Dead-letter" not in main.stderr
    assert "Jobs for queue 'reports' go to the queue of that name on sqlite" in main.stderr
    assert not (workdir / "reports.txt").exists()
    assert await waiting(workdir, "reports") == 1
    reports = cli("worker", "unconfigured_app", "--queue", "reports", "--burst")
    assert reports.returncode == 0, reports.stderr
    assert (workdir / "reports.txt").read_text() == "w1\n"


async def test_enqueue_with_the_app_uses_the_same_queue(workdir: Path, cli: RunCli) -> None:
    done = cli(
        "enqueue", "unconfigured_queue.build_report", "--app", "unconfigured_app",
        "--args", '["e1"]', "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["queue"] == "reports"
    assert await waiting(workdir, "reports") == 1


async def test_an_applications_delay_and_enqueue_job_reach_the_worker_of_that_queue(
    workdir: Path, cli: RunCli
) -> None:
    config = TaskConfig.from_yaml(workdir / "tasks.yaml", strict=True)
    provider = TaskProvider(config=config, worker_count=0, enable_scheduler=False)
    async with Application.boot(providers=[provider]):
        handle = await build_report.delay("a1")
        job_id = await provider.enqueue_job(
            Job(name="unconfigured_queue.build_report", args=("a2",), queue_name="reports")
        )
        assert await waiting(workdir, "reports") == 2
        assert await waiting(workdir, "app-main") == 0
        reports = await asyncio.to_thread(
            cli, "worker", "unconfigured_app", "--queue", "reports", "--burst"
        )
        assert reports.returncode == 0, reports.stderr
        # The handle reads the result store the reports worker wrote to.
        assert await handle.result(timeout=10) == "built a1"
        assert job_id != handle.id
    assert sorted((workdir / "reports.txt").read_text().split()) == ["a1", "a2"]
