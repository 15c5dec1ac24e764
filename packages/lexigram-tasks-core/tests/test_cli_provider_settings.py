"""``worker APP:provider`` and ``scheduler APP:provider`` run with the provider's own settings.

A provider's constructor arguments win over any configuration, and a schedule declared
without a timezone follows ``tasks.scheduler.timezone``: in the application and on the
command line alike, even when the command is given a ``--config`` of its own.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
from pathlib import Path
from types import ModuleType
from uuid import uuid4

import pytest
from click.testing import CliRunner

from lexigram.tasks import TaskConfig
from lexigram.tasks.cli import cli
from lexigram.tasks.cli._app import load_app
from lexigram.tasks.cli._context import read_config, resolve_spec
from lexigram.tasks.cli._scheduler import _declare, _run
from lexigram.tasks.di._stack import worker_settings
from lexigram.tasks.scheduling import TaskScheduler

APP = """
from lexigram.tasks import JobTemplate, TaskConfig, TaskProvider, scheduled

config = TaskConfig.from_dict(
    {"worker": {"worker_count": 1}, "scheduler": {"enabled": False, "timezone": "UTC"}}
)
provider = TaskProvider(worker_count=3, enable_scheduler=True, config=config)


@scheduled("0 9 * * *")
async def morning() -> None:
    return None


provider.register_scheduled_task(morning)
provider.register_handler("evening", morning)
provider.scheduler.schedule_job_sync(
    JobTemplate(name="evening"), "0 18 * * *", "evening", timezone="Asia/Tokyo"
)
quiet = TaskProvider(enable_scheduler=False, config=TaskConfig())
quiet.register_handler("morning", morning)
"""

FILE = """
tasks:
  worker: {worker_count: 1}
  scheduler: {enabled: false, timezone: Europe/Berlin}
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"cli_provider_settings_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    (tmp_path / "tasks.yaml").write_text(FILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return importlib.import_module(name)


def test_the_providers_arguments_win_over_its_config_and_over_a_file(
    app_module: ModuleType,
) -> None:
    loaded = load_app(f"{app_module.__name__}:provider")
    assert loaded.explicit_settings == {"worker.worker_count": 3, "scheduler.enabled": True}
    for path in (None, "tasks.yaml"):
        config = loaded.with_explicit_settings(read_config(path, loaded.config, report=False))
        assert isinstance(config, TaskConfig)
        # What the provider itself runs with: three workers per queue, its scheduler on.
        assert worker_settings(config).worker_count == app_module.provider.worker_count == 3
        assert config.scheduler.enabled is True
        assert config.worker.worker_count == 3
    assert loaded.config is not None
    assert loaded.config.worker.worker_count == 1  # the provider's own config is untouched


async def test_a_schedule_without_a_timezone_follows_the_commands_configuration(
    app_module: ModuleType,
) -> None:
    loaded = load_app(f"{app_module.__name__}:provider")
    zones = {schedule.schedule_id: schedule.timezone for schedule in loaded.schedules}
    assert zones == {"scheduled:morning": None, "evening": "Asia/Tokyo"}
    config = read_config("tasks.yaml", loaded.config, report=False)
    assert config is not None
    scheduler = TaskScheduler.from_config(config.scheduler)
    await _declare(scheduler, loaded)
    declared = {job.job_id: job.timezone for job in scheduler.get_scheduled_jobs()}
    assert declared == {"scheduled:morning": "Europe/Berlin", "evening": "Asia/Tokyo"}


def test_a_scheduler_of_a_provider_built_without_one_says_so(app_module: ModuleType) -> None:
    result = CliRunner().invoke(cli, ["scheduler", f"{app_module.__name__}:quiet"])
    assert result.exit_code == 2, result.output
    assert "built with enable_scheduler=False, so it runs no scheduler" in result.stderr


async def test_the_scheduler_command_stops_as_a_provider_stops_its_scheduler(
    app_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last enqueue gets ``worker.shutdown_timeout``, as under a provider's shutdown."""
    given: list[float] = []
    stop = TaskScheduler.stop_scheduler

    async def recording_stop(self: TaskScheduler, timeout: float = 10.0) -> None:
        given.append(timeout)
        await stop(self, timeout)

    monkeypatch.setattr(TaskScheduler, "stop_scheduler", recording_stop)
    loaded = load_app(f"{app_module.__name__}:provider")
    config = TaskConfig.from_dict({"worker": {"shutdown_timeout": 3.5}})
    spec = resolve_spec(config, "memory")
    running = asyncio.create_task(_run(loaded, config, spec, 2.0, "settings"))
    await asyncio.sleep(0.2)  # the command has installed its signal handlers by now
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(running, 10)
    assert given == [3.5]
