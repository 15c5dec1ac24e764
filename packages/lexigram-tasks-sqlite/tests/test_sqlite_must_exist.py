"""A missing file is refused, not created, where asked; the file in use is logged once.

The option ``must_exist`` is what the command line's commands on existing data set
(``inspect``, ``dlq``, ``job``, ``schedule``, ``workflow show``; ``dashboard`` too, tested
with the dashboard), so a mistyped ``sqlite:///`` path fails with one line naming it
instead of showing a new, empty queue (and leaving the file and its directory behind).
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import BackendConnectionError, Job, TaskBackendSpec
from lexigram.tasks.backends.sqlite import SQLiteBackend, SQLiteOptions
from lexigram.tasks.cli import cli

DATABASE_LOGGER = "lexigram.tasks.backends.sqlite._database"


def spec(path: Path, **options: object) -> TaskBackendSpec:
    return TaskBackendSpec(
        name="default", type="sqlite", url=f"sqlite:///{path}", queue_name="jobs", options=options
    )


def test_the_option_is_declared_and_off_by_default() -> None:
    assert SQLiteOptions().must_exist is False


def test_must_exist_refuses_a_missing_file_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "taks.db"
    with pytest.raises(BackendConnectionError) as caught:
        SQLiteBackend().create_queue(spec(missing, must_exist=True))
    assert str(missing) in caught.value.message
    assert "does not exist" in caught.value.message
    assert not (tmp_path / "typo").exists()


def test_must_exist_refuses_for_the_stores_too(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    with pytest.raises(BackendConnectionError):
        SQLiteBackend().create_dlq_backend(spec(missing, must_exist=True))
    assert list(tmp_path.iterdir()) == []


async def test_must_exist_opens_a_file_that_exists(tmp_path: Path) -> None:
    path = tmp_path / "tasks.db"
    writer = SQLiteBackend().create_queue(spec(path))
    await writer.enqueue(Job(name="send", queue_name="jobs"))
    await writer.close()
    reader = SQLiteBackend().create_queue(spec(path, must_exist=True))
    try:
        assert await reader.count("jobs") == 1
    finally:
        await reader.close()


async def test_the_file_in_use_is_logged_once_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A spec without a URL names no file anywhere else: the log line is where it shows.
    path = tmp_path / f"named-{uuid.uuid4().hex}.db"
    backend = SQLiteBackend()
    caplog.set_level(logging.INFO, logger=DATABASE_LOGGER)
    queue = backend.create_queue(spec(path))
    store = backend.create_result_store(spec(path, synchronous="FULL"))  # a second Database
    try:
        assert await queue.count("jobs") == 0
    finally:
        await queue.close()
        await store.close()
    lines = [r.getMessage() for r in caplog.records if r.name == DATABASE_LOGGER]
    assert lines == [f"Using the SQLite database {path}."]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == DATABASE_LOGGER)


@pytest.mark.parametrize(
    "command",
    [
        ["inspect"],
        ["inspect", "--json"],
        ["dlq", "list"],
        ["dlq", "retry-all", "--yes"],
        ["job", "status", "01a248f3-544f-7b13-9437-b94c3dc920d9"],
        ["schedule", "list"],
        ["schedule", "pause", "scheduled:tick"],
        ["workflow", "show", "01a248f3-544f-7b13-9437-b94c3dc920d9"],
    ],
)
def test_read_only_commands_refuse_a_missing_file_in_one_line(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "typo" / "taks.db"
    result = CliRunner().invoke(cli, [*command, "--backend", f"sqlite:///{missing}"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0]
    assert "does not exist" in lines[0]
    assert "Check the path" in lines[0]
    assert not (tmp_path / "typo").exists()


def test_the_default_file_is_refused_too_when_nothing_made_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing configured: the commands use $LEXIGRAM_TASKS_DB (the first line says so).
    monkeypatch.setenv("LEXIGRAM_TASKS_DB", str(tmp_path / "default.db"))
    result = CliRunner().invoke(cli, ["inspect"])
    assert result.exit_code == 2, result.output
    assert f"The SQLite database {tmp_path / 'default.db'} does not exist" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_read_only_commands_work_once_enqueue_made_the_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    enqueued = CliRunner().invoke(cli, ["enqueue", "send_welcome", "--backend", url])
    assert enqueued.exit_code == 0, enqueued.output
    job_id = enqueued.stdout.strip()
    inspected = CliRunner().invoke(cli, ["inspect", "--backend", url, "--json"])
    assert inspected.exit_code == 0, inspected.output
    assert '"waiting": 1' in inspected.stdout
    status = CliRunner().invoke(cli, ["job", "status", job_id, "--backend", url])
    assert status.exit_code == 0, status.output
    dead = CliRunner().invoke(cli, ["dlq", "list", "--backend", url])
    assert dead.exit_code == 0, dead.output
