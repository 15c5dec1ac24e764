"""The command line reads a configuration as `TaskProvider` does: switches, issues, precedence."""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path
from types import ModuleType
from uuid import uuid4

import pytest
from click.testing import CliRunner

from lexigram.contracts.tasks import Job, TaskConfigurationError
from lexigram.tasks._backends import check_url_syntax
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._app import load_app
from lexigram.tasks.cli._context import read_config
from lexigram.tasks.cli._scheduler import _declare
from lexigram.tasks.scheduling import TaskScheduler

APP = """
from lexigram.tasks import MemoryTaskQueue, TaskConfig, TaskProvider, scheduled, task

queue = MemoryTaskQueue(queue_name="work")
config = TaskConfig.from_dict({"worker": {"max_concurrent_tasks": 4}})
provider = TaskProvider(queue=queue, config=config)
provider.register_handler("add", lambda a, b: a + b)


@scheduled("0 9 * * *")
@task
async def nine() -> None:
    return None
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"cli_doors_app_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return importlib.import_module(name)


def _config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "tasks.yaml"
    path.write_text("tasks:\n" + body, encoding="utf-8")
    return str(path)


def test_a_worker_refuses_a_configuration_that_disables_the_tasks(
    app_module: ModuleType, tmp_path: Path
) -> None:
    asyncio.run(app_module.queue.enqueue(Job(name="add", args=(1, 2))))
    config = _config(tmp_path, "  enabled: false\n  backend: {type: memory}\n")
    result = CliRunner().invoke(cli, ["worker", app_module.__name__, "--config", config, "--burst"])
    assert result.exit_code == 2, result.output
    assert "sets tasks.enabled to false, so it runs no worker" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("  enabled: false\n", "tasks.enabled"),
        ("  scheduler: {enabled: false}\n", "tasks.scheduler.enabled"),
    ],
)
def test_a_scheduler_refuses_a_configuration_that_turns_it_off(
    app_module: ModuleType, tmp_path: Path, body: str, key: str
) -> None:
    config = _config(tmp_path, body)
    result = CliRunner().invoke(cli, ["scheduler", app_module.__name__, "--config", config])
    assert result.exit_code == 2, result.output
    assert f"sets {key} to false, so it runs no scheduler" in result.stderr


def test_variables_win_over_the_apps_own_configuration(
    app_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = f"{app_module.__name__}:provider"
    result = CliRunner().invoke(cli, ["worker", app, "--burst", "--log-level", "info"])
    assert result.exit_code == 0, result.output
    assert "concurrency 4 per queue)" in result.stderr  # the APP's config
    monkeypatch.setenv("LEX_TASKS__WORKER__MAX_CONCURRENT_TASKS", "7")
    result = CliRunner().invoke(cli, ["worker", app, "--burst", "--log-level", "info"])
    assert result.exit_code == 0, result.output
    assert "concurrency 7 per queue)" in result.stderr


def test_the_start_line_counts_every_worker_of_a_queue(
    app_module: ModuleType, tmp_path: Path
) -> None:
    # The configuration's worker_count runs that many workers per queue, as a booted
    # TaskProvider runs them, and --concurrency is each one's: the line says the total.
    config = _config(tmp_path, "  backend: {type: memory}\n  worker: {worker_count: 2}\n")
    args = ["worker", app_module.__name__, "--config", config, "-c", "3", "--burst"]
    result = CliRunner().invoke(cli, [*args, "--log-level", "info"])
    assert result.exit_code == 0, result.output
    assert "concurrency 2 workers x 3 = 6 per queue)" in result.stderr


def test_a_misspelt_variable_over_the_apps_configuration_is_refused(
    app_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEX_TASKS__WORKER__MAX_CONCURENT_TASKS", "7")
    app = f"{app_module.__name__}:provider"
    result = CliRunner().invoke(cli, ["worker", app, "--burst"])
    assert result.exit_code == 2, result.output
    assert "Did you mean 'max_concurrent_tasks'?" in result.stderr


def test_a_worker_reports_the_configurations_issues_as_the_provider_does(
    app_module: ModuleType, tmp_path: Path
) -> None:
    config = _config(tmp_path, "  env: production\n  backend: {type: memory}\n")
    result = CliRunner().invoke(cli, ["worker", app_module.__name__, "--config", config, "--burst"])
    assert result.exit_code == 0, result.output
    assert "Task configuration: [error] tasks.backend.type = 'memory'" in result.stderr


def test_a_worker_count_of_zero_is_named_when_the_command_runs_one(
    app_module: ModuleType, tmp_path: Path
) -> None:
    config = _config(tmp_path, "  worker: {worker_count: 0}\n")
    args = ["worker", app_module.__name__, "--config", config, "--burst", "--log-level", "info"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "tasks.worker.worker_count is 0" in result.stderr


def test_a_providers_schedule_keeps_its_own_timezone_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"cli_doors_tz_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from lexigram.tasks import JobTemplate, TaskConfig, TaskProvider\n"
        "provider = TaskProvider(config=TaskConfig.from_dict("
        "{'scheduler': {'timezone': 'America/New_York'}}))\n"
        "provider.register_handler('h', lambda: None)\n"
        "provider.scheduler.schedule_job_sync(JobTemplate(name='h'), '0 9 * * *', 'tokyo',"
        " timezone='Asia/Tokyo')\n"
        "provider.scheduler.schedule_job_sync(JobTemplate(name='h'), '0 9 * * *', 'local')\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    loaded = load_app(f"{name}:provider")
    # "local" has no zone of its own: it follows the command's configuration, here the
    # provider's (a --config file's would win, as it does over the provider's other settings).
    zones = {s.schedule_id: s.timezone for s in loaded.schedules}
    assert zones == {"tokyo": "Asia/Tokyo", "local": None}
    config = read_config(None, loaded.config, report=False)
    assert config is not None
    scheduler = TaskScheduler.from_config(config.scheduler)
    asyncio.run(_declare(scheduler, loaded))
    declared = {job.job_id: job.timezone for job in scheduler.get_scheduled_jobs()}
    assert declared == {"tokyo": "Asia/Tokyo", "local": "America/New_York"}


def test_a_file_name_given_as_app_is_named_as_such(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "jobs.py").write_text("VALUE = 1\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["worker", "jobs.py", "--backend", "memory", "--burst"])
    assert result.exit_code == 2, result.output
    assert "APP 'jobs.py' is a file name; APP is a module name" in result.stderr
    assert "Pass 'jobs'" in result.stderr


@pytest.mark.parametrize("command", ["worker", "enqueue"])
def test_an_empty_queue_option_is_refused(app_module: ModuleType, command: str) -> None:
    target = app_module.__name__ if command == "worker" else "add"
    result = CliRunner().invoke(cli, [command, target, "--backend", "memory", "-q", " "])
    assert result.exit_code == 2, result.output
    assert "--queue is empty" in result.stderr


def test_a_backend_set_by_variables_replaces_the_apps_own_queue(
    app_module: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The APP's queue object was built from its config without the variable; the worker
    # consumes the backend the variables describe (here: another queue name).
    asyncio.run(app_module.queue.enqueue(Job(name="add", args=(1, 2))))
    monkeypatch.setenv("LEX_TASKS__BACKEND__QUEUE_NAME", "elsewhere")
    app = f"{app_module.__name__}:provider"
    result = CliRunner().invoke(cli, ["worker", app, "--burst", "--log-level", "info"])
    assert result.exit_code == 0, result.output
    assert "consuming elsewhere on memory" in result.stderr
    assert "0 processed" in result.stderr  # the APP's own queue (with its job) was not used


@pytest.mark.parametrize(
    "command",
    [["worker", "app", "--burst"], ["enqueue", "add"], ["scheduler", "app"], ["inspect", "stats"]],
)
def test_an_empty_config_option_is_refused_by_every_command(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--config", ""])
    assert result.exit_code == 2, result.output
    assert "'--config': is empty: give the path of a YAML config file" in result.stderr


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("redis://127.0.0.1:63x0/0", "(Port could not be cast to integer value as '63x0')"),
        ("redis://[::1/0", "(Invalid IPv6 URL)"),
        # An unescaped "/" ends the password early: what the parser calls the port is part
        # of the password, so the cause is not quoted.
        ("redis://:hun/ter2@127.0.0.1:6390/0", "(its host or port cannot be read)"),
    ],
)
def test_an_unreadable_url_names_its_part_and_never_a_piece_of_the_password(
    url: str, cause: str
) -> None:
    with pytest.raises(TaskConfigurationError) as info:
        check_url_syntax(url, "--backend")
    message = str(info.value)
    assert "is not a valid URL " + cause in message
    assert "hun" not in message
    assert "ter2" not in message


@pytest.mark.parametrize(
    "url",
    [
        "amqp://app:s3cret@rabbit1:5672,rabbit2:5672,rabbit3:5672/prod",
        "redis+sentinel://:s3cret@sentinel-a:26379,sentinel-b:26379/tasks-primary/0",
    ],
)
def test_a_cluster_or_sentinel_url_listing_several_hosts_is_accepted(url: str) -> None:
    check_url_syntax(url, "--backend")  # the check of --backend and of a config's url


def test_a_bad_port_of_one_host_of_several_is_named() -> None:
    with pytest.raises(
        TaskConfigurationError, match="Port could not be cast to integer value as '56x2'"
    ):
        check_url_syntax("amqp://a:5672,b:56x2/", "--backend")


def test_a_mistyped_backend_type_in_the_configuration_is_named_by_its_field(
    tmp_path: Path,
) -> None:
    # As TaskProvider names it: the field, its value, then what is installed.
    config = _config(tmp_path, "  backend: {type: rediss}\n")
    result = CliRunner().invoke(cli, ["inspect", "--config", config])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert "tasks.backend.type = 'rediss': No task backend named 'rediss' is installed" in line


def test_findings_about_the_backend_that_backend_replaces_are_not_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # `--backend URL` replaces the configuration's type and URL: a warning about them
    # (here a default login) would be about a backend the command does not use.
    path = _config(tmp_path, '  backend: {type: redis, url: "redis://guest:guest@h:6379/0"}\n')
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.di._stack"):
        read_config(path)
    assert "tasks.backend.url = 'redis://guest:***@h:6379/0'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lexigram.tasks.di._stack"):
        read_config(path, backend="memory://")
    assert "Task configuration" not in caplog.text
