"""``lexigram-tasks enqueue NAME 1 2``: words after NAME are refused with the --args they mean."""

from __future__ import annotations

import json
import shlex

from click.testing import CliRunner

from lexigram.tasks.cli import cli

MEMORY = {"LEX_TASKS__BACKEND__TYPE": "memory"}


def _suggested_args(stderr: str) -> list[object]:
    """The JSON array the error proposes, parsed as a shell would pass it."""
    proposed = stderr.split("JSON array: --args ", 1)[1].split(" (and", 1)[0]
    words = shlex.split(proposed)
    parsed: list[object] = json.loads(words[0])
    return parsed


def test_words_after_the_name_fail_in_one_line_showing_the_args_they_mean() -> None:
    result = CliRunner().invoke(cli, ["enqueue", "add", "1", "2"], env=MEMORY)

    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "unexpected arguments after the task name (1 2)" in result.stderr
    assert _suggested_args(result.stderr) == [1, 2]


def test_the_suggestion_survives_the_shell_for_strings_and_quotes() -> None:
    words = ["ada@example.com", "it's", '{"a": 1}']
    result = CliRunner().invoke(cli, ["enqueue", "send", *words], env=MEMORY)

    assert result.exit_code == 2
    assert _suggested_args(result.stderr) == ["ada@example.com", "it's", {"a": 1}]


def test_nothing_is_enqueued_when_the_words_are_refused() -> None:
    result = CliRunner().invoke(cli, ["enqueue", "add", "1", "--json"], env=MEMORY)

    assert result.exit_code == 2
    assert result.stdout == ""


def test_unknown_options_are_still_refused_by_name() -> None:
    result = CliRunner().invoke(cli, ["enqueue", "add", "--nope"], env=MEMORY)

    assert result.exit_code == 2
    assert "--nope" in result.stderr
