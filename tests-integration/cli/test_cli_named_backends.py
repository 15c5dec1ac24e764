"""A ``tasks.backends`` list: the commands pick each backend by name, as the application does.

Two SQLite files stand for two backends (``main``, the primary, and ``reports``). A job
enqueued from the command line with ``--queue reports``, a job a ``main`` worker's handler
enqueues with ``.delay()`` for ``@task(queue="reports")``, and a worker started with
``--backend reports`` all meet on the ``reports`` backend, as an application's
``Named("reports")`` and ``.delay()`` would have them.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from lexigram.tasks.backends.sqlite import SQLiteTaskQueue

APP = """
from pathlib import Path

from lexigram.tasks import task


@task(queue="reports")
async def build_report(name: str) -> str:
    with Path("reports.txt").open("a") as out:
        out.write(name + "\\n")
    return name


@task
async def fanout(name: str) -> None:
    await build_report.delay(name)
"""

CONFIG = """
tasks:
  backends:
    - name: main
      primary: true
      url: "sqlite:///{main}"
      queue_name: app-main
    - name: reports
      url: "sqlite:///{reports}"
      queue_name: app-reports
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("LEX_TASKS__") or name == "LEXIGRAM_TASKS_DB":
            monkeypatch.delenv(name)
    (tmp_path / "named_app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "tasks.yaml").write_text(
        CONFIG.format(main=tmp_path / "main.db", reports=tmp_path / "reports.db")
    )
    return tmp_path


RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(workdir: Path, run_cli: RunCli) -> RunCli:
    """``lexigram-tasks ARGS --config tasks.yaml`` as a process in `workdir`."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--config", "tasks.yaml", cwd=workdir, app_dir=workdir)

    return run


async def waiting_on(path: Path, queue_name: str) -> list[str | None]:
    """The queue names of the jobs waiting in the SQLite file at `path`."""
    queue = SQLiteTaskQueue(str(path), queue_name=queue_name)
    try:
        jobs = await queue.dequeue_batch(100)
        return [job.queue_name for job in jobs]
    finally:
        await queue.close()


async def test_enqueue_with_a_backends_name_lands_on_that_backend(
    workdir: Path, cli: RunCli
) -> None:
    done = cli("enqueue", "build_report", "--args", '["q1"]', "--queue", "reports", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["queue"] == "app-reports"
    assert await waiting_on(workdir / "reports.db", "app-reports") == ["app-reports"]


async def test_a_worker_for_a_named_backend_and_delay_to_it_from_the_primary(
    workdir: Path, cli: RunCli
) -> None:
    fired = cli("enqueue", "fanout", "--args", '["q2"]')
    assert fired.returncode == 0, fired.stderr
    main = cli("worker", "named_app", "--burst")
    assert main.returncode == 0, main.stderr
    assert "Dead-letter" not in main.stderr
    # The handler's .delay() sent build_report to the reports backend, under its queue.
    reports = cli("worker", "named_app", "--backend", "reports", "--burst")
    assert reports.returncode == 0, reports.stderr
    assert "consuming app-reports" in reports.stderr
    assert (workdir / "reports.txt").read_text() == "q2\n"


def test_an_unknown_backend_name_lists_the_configured_ones(cli: RunCli) -> None:
    done = cli("inspect", "--backend", "report")
    assert done.returncode != 0
    assert "'report' is neither a configured backend (main, reports)" in done.stderr
