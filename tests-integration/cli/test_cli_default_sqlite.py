"""With nothing configured, every command uses one SQLite file and says which first.

``lexigram-tasks-sqlite`` is installed with the meta package; ``lexigram-tasks worker
APP`` and ``lexigram-tasks enqueue ...`` started in two terminals of one directory then
share ``./lexigram-tasks.db`` (``$LEXIGRAM_TASKS_DB`` names another file).
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.tasks.cli import cli

APP = """
from pathlib import Path

from lexigram.tasks import task


@task
async def note(text: str) -> str:
    Path("done.txt").write_text(text)
    return text
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory and an environment that configures nothing."""
    for name in list(os.environ):
        if name.startswith("LEX_TASKS__") or name == "LEXIGRAM_TASKS_DB":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default_app.py").write_text(textwrap.dedent(APP))
    return tmp_path


def test_worker_and_enqueue_in_two_processes_share_the_default_file(
    workdir: Path, run_cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    database = workdir / "lexigram-tasks.db"
    args = '["from another process"]'
    enqueued = run_cli("enqueue", "note", "--args", args, cwd=workdir, app_dir=workdir)
    assert enqueued.returncode == 0, enqueued.stderr
    first = enqueued.stderr.splitlines()[0]
    assert first.startswith(f"Using the SQLite database {database} (no backend is configured")
    assert len(enqueued.stdout.split()) == 1  # stdout is the job id alone
    assert database.exists()

    worker = run_cli(
        "worker", "default_app", "--burst", "--log-level", "info", cwd=workdir, app_dir=workdir
    )
    assert worker.returncode == 0, worker.stderr
    assert worker.stderr.splitlines()[0].startswith(f"Using the SQLite database {database}")
    assert (workdir / "done.txt").read_text() == "from another process"
    assert (
        "1 processed: 1 succeeded, 0 retried, 0 dead_lettered, 0 cancelled, 0 released, 0 lost"
        in worker.stderr
    )


def test_the_variable_names_another_file(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = workdir / "elsewhere" / "jobs.db"
    other.parent.mkdir()
    monkeypatch.setenv("LEXIGRAM_TASKS_DB", str(other))
    result = CliRunner().invoke(cli, ["enqueue", "note", "--args", '["x"]'])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith(f"Using the SQLite database {other} ")
    listed = CliRunner().invoke(cli, ["inspect", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["queues"][0]["waiting"] == 1
    assert not (workdir / "lexigram-tasks.db").exists()


def test_a_configured_backend_turns_the_default_off(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = CliRunner().invoke(cli, ["enqueue", "note", "--backend", "memory"])
    assert explicit.exit_code == 0, explicit.output
    assert "Using the SQLite database" not in explicit.stderr
    monkeypatch.setenv("LEX_TASKS__BACKEND__TYPE", "memory")
    from_env = CliRunner().invoke(cli, ["enqueue", "note"])
    assert from_env.exit_code == 0, from_env.output
    assert "Using the SQLite database" not in from_env.stderr
    assert not (workdir / "lexigram-tasks.db").exists()


def test_a_variable_of_another_section_keeps_the_default_file(
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    """``LEX_TASKS__WORKER__LOG_JOBS`` changes what ``--log-jobs`` does, not the backend."""
    database = workdir / "lexigram-tasks.db"
    enqueued = run_cli("enqueue", "note", "--args", '["logged"]', cwd=workdir, app_dir=workdir)
    assert enqueued.returncode == 0, enqueued.stderr
    worker = run_cli(
        "worker", "default_app", "--burst", "--log-level", "info",
        cwd=workdir, app_dir=workdir, env={**os.environ, "LEX_TASKS__WORKER__LOG_JOBS": "true"},
    )  # fmt: skip
    assert worker.returncode == 0, worker.stderr
    assert worker.stderr.splitlines()[0].startswith(f"Using the SQLite database {database}")
    assert (
        "1 processed: 1 succeeded, 0 retried, 0 dead_lettered, 0 cancelled, 0 released, 0 lost"
        in worker.stderr
    )
    assert (workdir / "done.txt").read_text() == "logged"
