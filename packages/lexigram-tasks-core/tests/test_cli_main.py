"""The command group: help everywhere, --version, and one-line errors with exit code 2."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from lexigram.tasks.cli import cli

COMMANDS = [
    ["worker"],
    ["scheduler"],
    ["enqueue"],
    ["inspect"],
    ["dlq"],
    ["dlq", "list"],
    ["dlq", "show"],
    ["dlq", "retry"],
    ["dlq", "retry-all"],
    ["dlq", "purge"],
    ["demo"],
]


# On the memory backend, configured through the environment: the default SQLite database
# (used when nothing is configured) stays out of these tests.
MEMORY = {"LEX_TASKS__BACKEND__TYPE": "memory"}


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env={**MEMORY, **(env or {})})


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_cli_help_lists_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in ("worker", "scheduler", "enqueue", "inspect", "dlq", "demo"):
        assert name in result.output
    assert "Examples:" in result.output


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_cli_help_of_every_command_has_usage(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ")
    assert " ".join(command) in result.output


@pytest.mark.parametrize("command", ["worker", "scheduler", "enqueue", "inspect", "demo", "dlq"])
def test_cli_help_of_top_commands_shows_examples(command: str) -> None:
    assert "Examples:" in run(command, "--help").output


def test_cli_version_names_version_python_and_backends() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.startswith("lexigram-tasks ")
    assert "memory" in result.output
    assert "Python 3." in result.output


def test_cli_unknown_command_is_one_line_with_exit_2() -> None:
    assert_one_line_error(run("wrker"), "No such command 'wrker'", "--help")


def test_cli_missing_argument_is_one_line_with_exit_2() -> None:
    assert_one_line_error(run("worker"), "APP", "lexigram-tasks worker --help")


def test_cli_bad_json_args_is_one_line_with_exit_2() -> None:
    result = run("enqueue", "send_email", "--args", '["a@b.c",')
    assert_one_line_error(result, "--args", "not valid JSON", "JSON array")


def test_cli_json_of_wrong_shape_is_one_line_with_exit_2() -> None:
    result = run("enqueue", "send_email", "--kwargs", '["not", "an", "object"]')
    assert_one_line_error(result, "--kwargs", "not a JSON object")


def test_cli_unknown_backend_type_is_one_line_with_exit_2() -> None:
    result = run("enqueue", "send_email", "--backend", "rediss2")
    assert_one_line_error(
        result, "No task backend named 'rediss2'", "installed: ", "memory", "Did you mean"
    )


def test_cli_unknown_app_module_is_one_line_with_exit_2() -> None:
    result = run("worker", "no_such_module_for_cli_tests:registry")
    assert_one_line_error(result, "Cannot import 'no_such_module_for_cli_tests'", "PYTHONPATH")


def test_cli_unknown_app_attribute_is_one_line_with_exit_2() -> None:
    result = run("worker", "lexigram.tasks.cli:no_such_registry")
    assert_one_line_error(result, "has no attribute 'no_such_registry'")


def test_cli_app_that_is_not_handlers_is_one_line_with_exit_2() -> None:
    result = run("worker", "lexigram.tasks.cli:EPILOG")
    assert_one_line_error(result, "is a str, which holds no task handlers")


def test_cli_missing_config_file_is_one_line_with_exit_2(tmp_path) -> None:
    result = run("inspect", "--config", str(tmp_path / "absent.yaml"))
    assert_one_line_error(result, "absent.yaml", "does not exist")


def test_cli_bad_config_value_from_env_exits_2() -> None:
    result = run("inspect", env={"LEX_TASKS__WORKER__WORKER_COUNT": "-3"})
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "LEX_TASKS__WORKER__WORKER_COUNT" in result.stderr
    assert "Traceback" not in result.output


def test_cli_debug_shows_the_traceback() -> None:
    result = run("--debug", "worker", "no_such_module_for_cli_tests")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: Cannot import")


def test_cli_debug_flag_of_a_subcommand_shows_the_traceback() -> None:
    result = run("worker", "no_such_module_for_cli_tests", "--debug")
    assert "Traceback (most recent call last)" in result.stderr


def test_cli_debug_env_var_shows_the_traceback() -> None:
    result = run("worker", "no_such_module_for_cli_tests", env={"LEXIGRAM_TASKS_DEBUG": "1"})
    assert "Traceback (most recent call last)" in result.stderr


def test_cli_restores_the_logging_setup_after_a_command() -> None:
    root = logging.getLogger()
    discovery = logging.getLogger("lexigram.tasks._backends")
    before = (list(root.handlers), root.level, discovery.level)
    assert run("inspect", "--json").exit_code == 0
    assert run("worker", "no_such_module_for_cli_tests").exit_code == 2
    assert (list(root.handlers), root.level, discovery.level) == before
