"""What a command says when the backend a URL or the default needs is not installed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from lexigram.tasks._backends import install_hint, missing_backend_fix
from lexigram.tasks.cli import _context, cli
from lexigram.tasks.cli._context import parse_backend
from lexigram.tasks.cli._errors import CLIError


def test_a_first_party_url_without_its_backend_names_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_context, "backend_for_scheme", lambda scheme: None)
    with pytest.raises(CLIError) as info:
        parse_backend("amqps://guest:s3cret@rabbit:5671/")
    message = str(info.value)
    assert "needs the rabbitmq backend, which is not installed" in message
    assert 'pip install "lexigram-tasks[rabbitmq]"' in message
    assert "s3cret" not in message


def test_sqlite_is_installed_with_the_meta_package() -> None:
    assert install_hint("sqlite") == "pip install lexigram-tasks (or lexigram-tasks-sqlite alone)"
    assert missing_backend_fix("sqlite").startswith("Install it with pip install lexigram-tasks")


def test_without_sqlite_an_unconfigured_enqueue_says_memory_is_used_and_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("LEXIGRAM_TASKS_DB",):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_context, "available_backends", lambda: ["memory"])
    result = CliRunner().invoke(cli, ["enqueue", "send_welcome", "--args", "[42]"])
    assert result.exit_code == 0, result.output
    first, *_, last = result.stderr.strip().splitlines()
    assert first.startswith("Using the in-memory backend: no backend is configured and the SQLite")
    assert "Leave --backend out" not in last
    assert "Install the SQLite backend (pip install lexigram-tasks" in last
