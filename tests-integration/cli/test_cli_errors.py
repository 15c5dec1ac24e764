"""Unreachable servers: one line saying what is wrong and what to do, exit code 2.

Nothing listens on port 1, so these need no server; they need the backend packages. A
refused connection fails at once (no waiting for --connect-timeout) and says so.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lexigram.tasks.cli import cli

UNREACHABLE = {
    "redis": "redis://:s3cret@127.0.0.1:1/0",
    "postgres": "postgresql://app:s3cret@127.0.0.1:1/app",
    "rabbitmq": "amqp://guest:s3cret@127.0.0.1:1/",
}


def assert_one_line(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0].lower()
    assert "s3cret" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("backend", sorted(UNREACHABLE))
def test_enqueue_to_an_unreachable_server_is_one_line(backend: str) -> None:
    url = UNREACHABLE[backend]
    result = CliRunner().invoke(cli, ["enqueue", "x", "--backend", url, "--connect-timeout", "0.5"])
    assert_one_line(result, "127.0.0.1:1", "refused", ":***@")


def test_inspect_unreachable_redis_is_one_line() -> None:
    url = UNREACHABLE["redis"]
    result = CliRunner().invoke(cli, ["inspect", "-b", url, "--connect-timeout", "0.5"])
    assert_one_line(result, "redis://:***@127.0.0.1:1/0", "refused")


def test_worker_unreachable_redis_is_one_line() -> None:
    args = ["worker", "lexigram.tasks.cli._demo_app:build_registry", "-b", UNREACHABLE["redis"]]
    result = CliRunner().invoke(cli, [*args, "--connect-timeout", "0.5"])
    assert_one_line(result, "redis://:***@127.0.0.1:1/0", "refused")


def test_dlq_unreachable_postgres_is_one_line() -> None:
    args = ["dlq", "list", "-b", UNREACHABLE["postgres"], "--connect-timeout", "0.5"]
    assert_one_line(CliRunner().invoke(cli, args), "postgresql://app:***@127.0.0.1:1/app")


def test_demo_unreachable_rabbitmq_is_one_line() -> None:
    args = ["demo", "-b", UNREACHABLE["rabbitmq"], "--connect-timeout", "0.5"]
    assert_one_line(CliRunner().invoke(cli, args), "amqp://guest:***@127.0.0.1:1/", "refused")


def test_a_typo_in_a_backend_type_suggests_the_installed_one() -> None:
    result = CliRunner().invoke(cli, ["enqueue", "x", "--backend", "sqlit"])
    assert_one_line(result, "no task backend named 'sqlit'", "did you mean 'sqlite'?")
    assert "pip install" not in result.stderr  # it is installed; and not ours to suggest


def test_a_typo_of_a_server_backend_is_suggested_too() -> None:
    result = CliRunner().invoke(cli, ["enqueue", "x", "--backend", "postgress"])
    assert_one_line(result, "did you mean 'postgres'?")
