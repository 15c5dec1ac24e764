"""Core behaviour checked with the first-party backends installed (their URL schemes, config
fields and type names); core's own unit session installs core alone."""

from __future__ import annotations

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


def test_cli_unknown_url_scheme_is_one_line_with_exit_2() -> None:
    result = run("inspect", "--backend", "mysql://root:hunter2@db/app")
    assert_one_line_error(result, "scheme 'mysql'", "redis://")
    assert "hunter2" not in result.output
