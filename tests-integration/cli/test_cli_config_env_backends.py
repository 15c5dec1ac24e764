"""``lexigram-tasks`` as a process: an option a named backend refuses names its variable.

RabbitMQ and PostgreSQL check their options when the command builds the backend, after the
configuration was read; the one line still names the ``LEX_TASKS__*`` variable that set it.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def _environ(**variables: str) -> dict[str, str]:
    # Only the variables of the test configure the command.
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("LEX_TASKS__")}
    return {**base, **variables}


def test_rabbitmq_queue_version_names_its_variable(
    run_cli: RunCli, amqp_url: str, tmp_path: Path
) -> None:
    result = run_cli(
        "inspect",
        "--backend",
        "events",
        cwd=tmp_path,
        env=_environ(
            LEX_TASKS__BACKENDS__MAIN__TYPE="memory",
            LEX_TASKS__BACKENDS__EVENTS__URL=amqp_url,
            LEX_TASKS__BACKENDS__EVENTS__OPTIONS__QUEUE_VERSION="7",
        ),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "error: tasks.backends[0].options.queue_version = '7' (from environment variable "
        "LEX_TASKS__BACKENDS__EVENTS__OPTIONS__QUEUE_VERSION): RabbitMQ backend option "
        "queue_version=7 is invalid. Use 1, 2, or 0 for the broker's default."
    )


def test_postgres_option_of_the_wrong_type_names_its_variable(
    run_cli: RunCli, postgres_dsn: str, tmp_path: Path
) -> None:
    result = run_cli(
        "inspect",
        cwd=tmp_path,
        env=_environ(
            LEX_TASKS__BACKENDS__JOBS__URL=postgres_dsn,
            LEX_TASKS__BACKENDS__JOBS__OPTIONS__POOL_MAX_SIZE="lots",
        ),
    )
    assert result.returncode == 2, result.stderr
    assert (
        "error: tasks.backends[0].options.pool_max_size = 'lots' (from environment variable "
        "LEX_TASKS__BACKENDS__JOBS__OPTIONS__POOL_MAX_SIZE): postgres backend 'jobs' option "
        "pool_max_size='lots' is not a whole number." in result.stderr
    )


@pytest.mark.parametrize(
    "command", [["workflow", "show", "no-such-run"], ["job", "status", "no-such-job"]]
)
def test_a_command_that_opens_a_store_first_names_the_variable(
    run_cli: RunCli, postgres_dsn: str, tmp_path: Path, command: list[str]
) -> None:
    """`workflow show` and `job` build a store before any queue: its error is the same line."""
    result = run_cli(
        *command,
        cwd=tmp_path,
        env=_environ(
            LEX_TASKS__BACKEND__URL=postgres_dsn,
            LEX_TASKS__BACKEND__OPTIONS__POOL_MAX_SIZE="lots",
        ),
    )
    assert result.returncode == 2, result.stderr
    assert (
        "error: tasks.backend.options.pool_max_size = 'lots' (from environment variable "
        "LEX_TASKS__BACKEND__OPTIONS__POOL_MAX_SIZE): postgres backend 'default' option "
        "pool_max_size='lots' is not a whole number." in result.stderr
    )


def test_a_type_and_url_that_disagree_name_both_variables(run_cli: RunCli, tmp_path: Path) -> None:
    """Neither value is wrong alone: the line names the section and both variables."""
    result = run_cli(
        "inspect",
        cwd=tmp_path,
        env=_environ(
            LEX_TASKS__BACKENDS__MAIN__TYPE="memory",
            LEX_TASKS__BACKENDS__MAIN__URL="redis://:hunter2@cache:6379/0",
        ),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        "error: tasks.backends[0] = {...} (from environment variables "
        "LEX_TASKS__BACKENDS__MAIN__TYPE and LEX_TASKS__BACKENDS__MAIN__URL): "
        "tasks.backends[0].url is a redis:// URL, served by the 'redis' backend, but "
        "tasks.backends[0].type is 'memory'."
    ), result.stderr
    assert "hunter2" not in result.stderr
