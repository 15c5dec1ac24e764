"""The first line of a command that nothing configures: which SQLite file, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from lexigram.tasks.cli import _context
from lexigram.tasks.cli._context import default_backend


@pytest.fixture(autouse=True)
def nothing_configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEXIGRAM_TASKS_DB", raising=False)
    monkeypatch.setattr(_context, "configured_by_environment", lambda section="": False)
    monkeypatch.setattr(_context, "available_backends", lambda: ["memory", "sqlite"])


def test_the_variable_that_named_the_file_is_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = (tmp_path / "jobs.db").resolve()
    monkeypatch.setenv("LEXIGRAM_TASKS_DB", str(database))
    assert default_backend(None, None, None) == f"sqlite:///{database}"
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"Using the SQLite database {database} (from LEXIGRAM_TASKS_DB; pass --backend or "
        "--config to use another)."
    )
    assert "no backend is configured" not in line


def test_without_the_variable_the_working_directorys_file_is_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = (tmp_path / "lexigram-tasks.db").resolve()
    assert default_backend(None, None, None) == f"sqlite:///{database}"
    [line] = capsys.readouterr().err.splitlines()
    assert line == (
        f"Using the SQLite database {database} (no backend is configured: pass --backend or "
        "--config, or set LEXIGRAM_TASKS_DB, to use another)."
    )
