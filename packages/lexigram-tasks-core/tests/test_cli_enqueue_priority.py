"""``lexigram-tasks enqueue --priority`` accepts exactly the priorities a `Job` accepts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import PRIORITY_MAX, PRIORITY_MIN
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._enqueue import PriorityParam

MEMORY = {"LEX_TASKS__BACKEND__TYPE": "memory"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (str(PRIORITY_MIN), PRIORITY_MIN),
        ("21", 21),
        (str(PRIORITY_MAX), PRIORITY_MAX),
        ("critical", 20),
        ("LOW", 0),
    ],
)
def test_priority_param_accepts_the_job_range(value: str, expected: int) -> None:
    assert PriorityParam().convert(value, None, None) == expected


@pytest.mark.parametrize("value", ["21", str(PRIORITY_MAX)])
def test_enqueue_accepts_a_priority_above_the_named_ones(value: str) -> None:
    result = CliRunner().invoke(cli, ["enqueue", "x", "--priority", value], env=MEMORY)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("value", [str(PRIORITY_MAX + 1), str(PRIORITY_MIN - 1), "urgent"])
def test_enqueue_refuses_what_a_job_refuses_in_one_line(value: str) -> None:
    result = CliRunner().invoke(cli, ["enqueue", "x", "--priority", value], env=MEMORY)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"a number from {PRIORITY_MIN} to {PRIORITY_MAX}" in result.stderr


def test_enqueue_help_states_the_range() -> None:
    result = CliRunner().invoke(cli, ["enqueue", "--help"], env=MEMORY)
    assert f"{PRIORITY_MIN}-{PRIORITY_MAX}" in result.stdout
