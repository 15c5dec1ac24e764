"""A worker whose job-state store refuses it fails its start, not its jobs.

RabbitMQ keeps each job's state in the ``stores`` backend (here Redis). With a wrong
Redis password a worker used to connect to the broker, log ``consuming ...`` and then
only warnings, running no job and never exiting, even with ``--burst``. Its start-up
check (`RabbitMQTaskQueue.check_connection`) now reads the store once, so the command
ends at once with one line naming the ``stores`` option and exit status 2, as
``enqueue`` does; with the right password the same worker runs the job.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

pytestmark = [pytest.mark.rabbitmq, pytest.mark.redis]

RunCli = Callable[..., subprocess.CompletedProcess[str]]  # the top conftest's `run_cli`
DeleteFamily = Callable[[str, str], Awaitable[None]]  # the top conftest's fixture

WRONG = "s3cret-stores"  # Redis asks for no password: any one is refused
# Far below the minutes a worker stuck in warnings runs, far above a start that fails:
# the broker connect and one read, each bounded by --connect-timeout.
WITHIN = 20.0

APP = """
from lexigram.tasks import task


@task
async def mark(path: str) -> None:
    with open(path, "a") as file:
        file.write("ran\\n")
"""


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f":{password}@{parts.hostname}:{parts.port or 6379}"
    return urlunsplit(parts._replace(netloc=netloc))


def _env(amqp_url: str, queue_name: str, **extra: str) -> dict[str, str]:
    """This process's environment without LEX_TASKS__ settings, plus the backend's."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEX_TASKS")}
    env.update(
        LEX_TASKS__BACKEND__URL=amqp_url,
        LEX_TASKS__BACKEND__QUEUE_NAME=queue_name,
        **extra,
    )
    return env


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "stores_check_app.py").write_text(APP)
    return tmp_path


def test_a_worker_whose_stores_refuse_the_password_fails_its_start_in_one_line(
    *,
    amqp_url: str,
    redis_url: str,
    queue_name: str,
    app_dir: Path,
    run_cli: RunCli,
    delete_rabbitmq_family: DeleteFamily,
) -> None:
    stores = _with_password(redis_url, WRONG)
    env = _env(amqp_url, queue_name, LEX_TASKS__BACKEND__OPTIONS__STORES=stores)
    started = time.monotonic()
    try:
        done = run_cli(
            "worker",
            "stores_check_app",
            "--burst",
            "--connect-timeout",
            "2",
            cwd=app_dir,
            env=env,
            app_dir=app_dir,
            timeout=WITHIN + 10,
        )
    finally:
        asyncio.run(delete_rabbitmq_family(amqp_url, queue_name))
    elapsed = time.monotonic() - started
    output = done.stderr + done.stdout
    assert done.returncode == 2, output
    assert elapsed < WITHIN, f"the worker took {elapsed:.1f} s to fail: {output}"
    assert "consuming" not in output, output
    errors = [line for line in done.stderr.splitlines() if "job-state store" in line]
    assert len(errors) == 1, output
    masked = _with_password(redis_url, "***")
    assert f"option stores = {masked}" in errors[0]
    assert "rejected the credentials" in errors[0]
    assert "Correct the stores option" in errors[0]
    assert WRONG not in output, "the password leaked"


def test_the_same_worker_with_the_right_password_runs_the_job(
    *,
    amqp_url: str,
    redis_url: str,
    redis_prefix: str,
    queue_name: str,
    app_dir: Path,
    run_cli: RunCli,
    delete_rabbitmq_family: DeleteFamily,
) -> None:
    # The mapping form, so the worker's records stay under this test's key prefix.
    config = app_dir / "tasks.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            tasks:
              backend:
                type: rabbitmq
                options:
                  stores:
                    type: redis
                    url: "{redis_url}"
                    options:
                      key_prefix: {redis_prefix}
            """
        )
    )
    marker = app_dir / "ran.txt"
    env = _env(amqp_url, queue_name)
    common = ("--config", str(config), "--connect-timeout", "2")
    try:
        sent = run_cli(
            "enqueue",
            "mark",
            "--app",
            "stores_check_app",
            "--kwargs",
            f'{{"path": "{marker}"}}',
            *common,
            cwd=app_dir,
            env=env,
            app_dir=app_dir,
        )
        assert sent.returncode == 0, sent.stderr
        done = run_cli(
            "worker",
            "stores_check_app",
            "--burst",
            *common,
            cwd=app_dir,
            env=env,
            app_dir=app_dir,
            timeout=WITHIN + 30,
        )
    finally:
        asyncio.run(delete_rabbitmq_family(amqp_url, queue_name))
    assert done.returncode == 0, done.stderr
    assert marker.read_text() == "ran\n", done.stderr
