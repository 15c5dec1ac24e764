"""Output to a pipe or a file: nothing wrapped or cut to a width (a terminal keeps its own)."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest
from click.testing import CliRunner
from rich.syntax import Syntax

from lexigram.tasks.admin import schedule_row
from lexigram.tasks.cli import _job, _schedule, cli
from lexigram.tasks.cli._output import stdout_console, table

MEMORY = {"LEX_TASKS__BACKEND__TYPE": "memory"}
# What could make rich see a terminal, or pick a width, in the environment of the tests.
NO_WIDTH: dict[str, str | None] = {"COLUMNS": None, "FORCE_COLOR": None, "TTY_COMPATIBLE": None}

LONG_ID = "scheduled:" + "a_schedule_whose_id_is_longer_than_any_terminal_is_wide_" * 3
LONG_TITLE = "A title that is much longer than the table under it, which is narrow"


class Piped:
    """Stdout as pytest captures it: not a terminal."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def getvalue(self) -> str:
        return self.capsys.readouterr().out


@pytest.fixture
def piped(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Piped:
    """Stdout is not a terminal and nothing sets a width."""
    for name in NO_WIDTH:
        monkeypatch.delenv(name, raising=False)
    return Piped(capsys)


def lines_of(text: str) -> list[str]:
    return text.splitlines()


def test_a_piped_table_keeps_its_ids_and_its_title_whole(piped: Piped) -> None:
    stdout_console().print(table(LONG_TITLE, ["id", "n"], [(LONG_ID, 1), ("short", 22)]))
    lines = lines_of(piped.getvalue())
    assert lines[0] == LONG_TITLE
    assert any(LONG_ID in line for line in lines), piped.getvalue()
    assert "…" not in piped.getvalue()
    assert all(line == line.rstrip() for line in lines)


def test_a_piped_line_longer_than_a_terminal_stays_one_line(piped: Piped) -> None:
    text = f"{LONG_ID}  running  50% (5/10)  " + "word " * 60
    stdout_console().print(text, highlight=False)
    assert lines_of(piped.getvalue()) == [text.rstrip()]


def test_a_piped_traceback_is_not_padded_to_the_width(piped: Piped) -> None:
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom'
    stdout_console().print(Syntax(traceback, "pytb", word_wrap=True))
    assert lines_of(piped.getvalue()) == traceback.splitlines()


def test_an_explicit_columns_keeps_its_width_when_piped(
    piped: Piped, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    console = stdout_console()
    assert console.width == 40
    console.print("word " * 20)
    assert len(lines_of(piped.getvalue())) > 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_keeps_its_width_and_wrapping(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NO_WIDTH:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "50")  # the terminal's width, as rich reads it
    monkeypatch.setenv("TERM", "xterm-256color")
    out = _Terminal()
    monkeypatch.setattr(sys, "stdout", out)
    console = stdout_console()
    assert console.is_terminal
    assert console.width == 50
    assert console.file is out
    assert not console.soft_wrap


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={**MEMORY, **NO_WIDTH})


def test_inspect_piped_prints_the_queues_title_on_one_line() -> None:
    result = invoke("inspect")
    assert result.exit_code == 0, result.output
    title = "Queues (waiting includes delayed jobs and jobs waiting for a retry)"
    assert title in lines_of(result.stdout), result.stdout


def test_schedule_list_piped_shows_the_whole_id_on_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = {"job_id": LONG_ID, "namespace": "myapp.tasks", "job_template": {"name": "tick"}}
    rows = [schedule_row(f"myapp.tasks/{LONG_ID}", record)]
    monkeypatch.setattr(_schedule, "_run", lambda *args, **kwargs: rows)
    result = invoke("schedule", "list")
    assert result.exit_code == 0, result.output
    assert any(LONG_ID in line for line in lines_of(result.stdout)), result.stdout


def test_job_status_piped_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = "01a24cf2-6787-714b-b183-9287d4b2b0b4"
    progress = {
        "percentage": 50.0,
        "current": 5,
        "total": 10,
        "message": "rendering page 5 of 10 of the quarterly report for every region " * 2,
        "updated_at": None,
    }
    data = {"id": job_id, "status": "running", "progress": progress}
    monkeypatch.setattr(_job, "_run", lambda *args, **kwargs: (None, data))
    result = invoke("job", "status", job_id)
    assert result.exit_code == 0, result.output
    [line] = lines_of(result.stdout)
    assert line.startswith(f"{job_id}  running  50% (5/10)  rendering page 5")
