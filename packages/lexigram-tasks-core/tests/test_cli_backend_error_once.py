"""A backend the configuration names but no one can build is reported once: the error line.

The configuration's checks log what they find (`report_config_issues`), for library users
as for commands; a backend whose type is not installed, or whose URL's scheme no backend
serves, is then raised by whoever builds it. A command that builds it ends with that
error as its one ``error:`` line (exit code 2), so the finding logged before it is held
back; a library user, who has no command line, still gets the logged finding.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from types import ModuleType
from uuid import uuid4

import pytest
from click.testing import CliRunner

from lexigram.tasks.cli import cli
from lexigram.tasks.cli._errors import holding_backend_errors, release_held
from lexigram.tasks.config import TaskConfig
from lexigram.tasks.di._stack import report_config_issues

APP = """
from lexigram.tasks import task


@task()
async def hello() -> int:
    return 1
"""

NOT_INSTALLED = "No task backend named 'nosuch' is installed"
NO_SCHEME = "has the scheme 'nosuch', which no installed backend serves"


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"cli_once_app_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return importlib.import_module(name)


def _config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n" + body, encoding="utf-8")
    return str(path)


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("  backend: {type: nosuch}\n", f"tasks.backend.type = 'nosuch': {NOT_INSTALLED}"),
        ("  backend: {url: 'nosuch://x'}\n", f"tasks.backend.url = 'nosuch://x' {NO_SCHEME}"),
    ],
    ids=["type", "url-scheme"],
)
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_worker_reports_a_backend_it_cannot_build_once(
    app_module: ModuleType, tmp_path: Path, section: str, message: str, workers: str
) -> None:
    # --workers 2: the supervising process fails before it starts a child (each child
    # would print the error again).
    config = _config(tmp_path, section)
    code, output = _run("worker", app_module.__name__, "--config", config, "--workers", workers)
    assert code == 2, output
    assert output.count(message) == 1, output
    assert output.strip().splitlines()[-1].startswith(f"error: {message}")


def test_a_variable_naming_an_unknown_backend_type_is_reported_once(
    app_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEX_TASKS__BACKEND__TYPE", "nosuch")
    code, output = _run("worker", app_module.__name__)
    assert code == 2, output
    assert output.count(NOT_INSTALLED) == 1, output
    assert "(from environment variable LEX_TASKS__BACKEND__TYPE)" in output


def test_a_backend_option_with_an_unknown_scheme_is_reported_once(
    app_module: ModuleType,
) -> None:
    for workers in ("1", "2"):
        code, output = _run(
            "worker", app_module.__name__, "--backend", "nosuch://x", "--workers", workers
        )
        assert code == 2, output
        assert output.count("has the URL scheme 'nosuch'") == 1, output


def test_another_failure_still_shows_the_finding(app_module: ModuleType, tmp_path: Path) -> None:
    # The command fails before it builds the backend: its error is not the finding's.
    config = _config(tmp_path, "  enabled: false\n  backend: {type: nosuch}\n")
    code, output = _run("worker", app_module.__name__, "--config", config)
    assert code == 2, output
    assert output.count(NOT_INSTALLED) == 1, output
    assert "Task configuration: [error] tasks.backend.type = 'nosuch'" in output
    assert output.strip().splitlines()[-1].startswith("error: ")
    assert NOT_INSTALLED not in output.strip().splitlines()[-1]


def _bad_config() -> TaskConfig:
    return TaskConfig.model_validate({"backend": {"type": "nosuch"}})


def test_a_library_user_still_gets_the_logged_finding(caplog: pytest.LogCaptureFixture) -> None:
    # No command line: nothing holds it back (TaskProvider reports through here too).
    with caplog.at_level(logging.ERROR, logger="lexigram.tasks.di._stack"):
        report_config_issues(_bad_config())
    assert caplog.text.count(f"tasks.backend.type = 'nosuch': {NOT_INSTALLED}") == 1


def test_a_command_that_goes_on_logs_the_finding_when_it_starts_running(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It did not build that backend (another of a `backends` list, say): it says so as
    # it starts its event loop, not at its end.
    with caplog.at_level(logging.ERROR, logger="lexigram.tasks.di._stack"):
        with holding_backend_errors():
            report_config_issues(_bad_config())
            assert NOT_INSTALLED not in caplog.text
            release_held()
            assert caplog.text.count(NOT_INSTALLED) == 1
        assert caplog.text.count(NOT_INSTALLED) == 1


def test_warnings_are_not_held(caplog: pytest.LogCaptureFixture) -> None:
    config = TaskConfig.model_validate({"env": "production", "backend": {"type": "memory"}})
    findings = caplog.at_level(logging.WARNING, logger="lexigram.tasks.di._stack")
    with findings, holding_backend_errors():
        report_config_issues(config)
        assert "tasks.backend.type = 'memory'" in caplog.text
