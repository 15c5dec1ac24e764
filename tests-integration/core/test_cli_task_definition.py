"""Through the command line on Redis and PostgreSQL, the task's definition governs its jobs.

``lexigram-tasks enqueue`` sends a bare job (no retry limit, no timeout of its own);
``lexigram-tasks worker APP --burst`` runs it with the ``@task(...)`` options of the
APP, and ``lexigram-tasks dlq`` shows the attempt numbers the worker logged.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

APP = """
import asyncio
import os

from lexigram.tasks import task


@task(name="{prefix}_flaky", max_retries=1)
async def flaky() -> None:
    with open(os.environ["TASKDEF_CALLS"], "a") as calls:
        calls.write("flaky\\n")
    raise ConnectionError("still down")


@task(name="{prefix}_slow", timeout=0.5, max_retries=0)
async def slow() -> None:
    await asyncio.sleep(5)
"""

WORKER_SECTION = """
  worker:
    poll_interval: 0.05
    retry:
      initial_delay: 0.05
      max_delay: 0.1
      jitter: 0
"""


def _redis_config(redis_url: str, prefix: str, name: str) -> str:
    return f"""
tasks:
  backend:
    type: redis
    url: "{redis_url}"
    queue_name: jobs-{name}
    options:
      key_prefix: {prefix}
{WORKER_SECTION}"""


def _postgres_config(dsn: str, schema: str, name: str) -> str:
    return f"""
tasks:
  backend:
    type: postgres
    url: "{dsn}"
    queue_name: jobs-{name}
    options:
      schema: {schema}
{WORKER_SECTION}"""


@pytest.fixture(params=["redis", "postgres"])
def setup(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    unique_name: str,
    drop_pg_schema: Callable[[str, str], Coroutine[Any, Any, None]],
) -> Iterator[tuple[Path, str, dict[str, str]]]:
    """A config file of this test's own, an APP module and the subprocesses' environment."""
    cleanup: Callable[[], Coroutine[Any, Any, None]] | None = None
    if request.param == "redis":
        # The top conftest's redis_prefix: its keys are deleted after the test.
        prefix: str = request.getfixturevalue("redis_prefix")
        config = _redis_config(request.getfixturevalue("redis_url"), prefix, unique_name)
    else:
        dsn: str = request.getfixturevalue("postgres_dsn")
        schema = f"lexigram_taskdef_{unique_name}"
        config = _postgres_config(dsn, schema, unique_name)
        cleanup = functools.partial(drop_pg_schema, dsn, schema)
    config_path = tmp_path / "tasks.yaml"
    config_path.write_text(config)
    app = f"taskdef_app_{unique_name}"
    (tmp_path / f"{app}.py").write_text(textwrap.dedent(APP.format(prefix=app)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
        "TASKDEF_CALLS": str(tmp_path / "calls.txt"),
    }
    try:
        yield config_path, app, env
    finally:
        if cleanup is not None:
            asyncio.run(cleanup())


@pytest.fixture
def cli(
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> Callable[..., tuple[str, str]]:
    """Run ``lexigram-tasks ARGS`` as a real process (exit 0 required): stdout, stderr."""

    def run(env: dict[str, str], cwd: Path, *args: str) -> tuple[str, str]:
        done = run_cli(*args, env=env, cwd=cwd)
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout, done.stderr

    return run


def test_cli_jobs_run_with_the_task_definition(
    setup: tuple[Path, str, dict[str, str]], tmp_path: Path, cli: Callable[..., tuple[str, str]]
) -> None:
    config_path, app, env = setup
    config = ["--config", str(config_path)]
    enqueued = {}
    for task_name in (f"{app}_flaky", f"{app}_slow"):
        out, _ = cli(env, tmp_path, "enqueue", task_name, *config, "--json")
        enqueued[task_name] = json.loads(out)["id"]

    _, log = cli(env, tmp_path, "worker", app, *config, "--burst", "--log-level", "info")
    flaky_id, slow_id = enqueued[f"{app}_flaky"], enqueued[f"{app}_slow"]
    assert f"Job {flaky_id} ({app}_flaky) failed (attempt 1 of 2)" in log, log
    assert f"Job {flaky_id} ({app}_flaky) dead-lettered after 2 attempt(s)" in log, log
    assert f"Job {slow_id} ({app}_slow) dead-lettered after 1 attempt(s)" in log, log
    # The task ran twice: once, then its one retry (max_retries=1 from @task, not 3).
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["flaky", "flaky"]

    listed = json.loads(cli(env, tmp_path, "dlq", "list", *config, "--json")[0])
    rows = {row["id"]: row for row in listed["jobs"]}
    assert set(rows) == {flaky_id, slow_id}
    assert (rows[flaky_id]["attempts"], rows[flaky_id]["max_retries"]) == (2, 1)
    assert rows[flaky_id]["reason"] == "max_retries"
    assert (rows[slow_id]["attempts"], rows[slow_id]["max_retries"]) == (1, 0)
    assert "timeout of 0.5 s" in rows[slow_id]["error"]

    shown = json.loads(cli(env, tmp_path, "dlq", "show", slow_id, *config, "--json")[0])
    ran_for = shown["failed_at"] - shown["job"]["started_at"]
    assert 0.45 <= ran_for < 2.0, shown  # stopped at its own 0.5 s, not the worker's 300 s
    assert shown["job"]["max_retries"] is None  # the CLI left it to the task
    assert shown["job"]["timeout"] is None
