"""The ``retry`` and ``timeout`` sections drive the workers of both composition roots.

`TaskProvider` and ``lexigram-tasks worker`` build their workers through the same code
(`lexigram.tasks.di._stack`), so ``TaskConfig.from_dict({"retry": {"max_delay": ...},
"timeout": {"default_timeout": ...}})`` changes what either of them does.

The handler sleeps 5 s. With the defaults (a 300 s timeout) it would succeed after 5 s;
with ``timeout.default_timeout = 0.3`` each attempt is stopped at 0.3 s, and with
``retry.initial_delay = 30`` capped by ``retry.max_delay = 0.05`` the retry follows at
once, so the job is dead-lettered after two attempts in well under 5 s.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from pathlib import Path
from types import ModuleType
from uuid import uuid4

import pytest
from click.testing import CliRunner

from lexigram.app import Application
from lexigram.contracts.tasks import Job, JobTemplate, TaskConfigurationError
from lexigram.tasks import TaskConfig, TaskProvider
from lexigram.tasks.cli import cli
from lexigram.tasks.di._stack import rate_limit_bucket

SECTIONS = {
    "retry": {"initial_delay": 30, "max_delay": 0.05},
    "timeout": {"default_timeout": 0.3},
    "worker": {"poll_interval": 0.02},
    "scheduler": {"enabled": False},
}

APP = f"""
import asyncio

from lexigram.tasks import MemoryTaskQueue, TaskConfig, TaskProvider

queue = MemoryTaskQueue(queue_name="work")
provider = TaskProvider(queue=queue, config=TaskConfig.from_dict({SECTIONS!r}))


async def slow():
    await asyncio.sleep(5)
    return "finished"


provider.register_handler("slow", slow)
"""


def test_effective_worker_takes_the_retry_and_timeout_sections() -> None:
    config = TaskConfig.from_dict({"retry": {"max_delay": 7}, "timeout": {"default_timeout": 5}})
    worker = config.effective_worker()
    assert worker.default_timeout == 5
    assert worker.retry.max_delay == 7
    assert worker.retry.initial_delay == 1.0  # untouched settings keep their defaults
    assert TaskConfig().effective_worker() == TaskConfig().worker


def test_the_same_value_set_twice_differently_is_an_error() -> None:
    with pytest.raises(TaskConfigurationError) as info:
        TaskConfig.from_dict({"timeout": {"default_timeout": 5}, "worker": {"default_timeout": 6}})
    assert "tasks.timeout.default_timeout = 5.0" in str(info.value)
    assert "tasks.worker.default_timeout = 6.0" in str(info.value)
    same = TaskConfig.from_dict({"retry": {"max_delay": 2}, "worker": {"retry": {"max_delay": 2}}})
    assert same.effective_worker().retry.max_delay == 2


def test_one_rate_limit_bucket_name() -> None:
    assert rate_limit_bucket(TaskConfig()) == "tasks:global"
    assert rate_limit_bucket(TaskConfig(name="billing")) == "billing:global"


async def test_provider_worker_follows_the_sections() -> None:
    provider = TaskProvider(config=TaskConfig.from_dict(SECTIONS))

    async def slow() -> str:
        await asyncio.sleep(5)
        return "finished"

    provider.register_handler("slow", slow)
    app = Application().use(provider)
    await app.start()
    try:
        started = time.monotonic()
        await provider.enqueue_job(Job(name="slow", max_retries=1))
        dlq = provider.stacks[provider.config.name].dead_letter_queue
        while await dlq.size() == 0:
            assert time.monotonic() - started < 4, "the job was not stopped by the timeout"
            await asyncio.sleep(0.02)
        assert time.monotonic() - started < 2
        stats = provider.get_worker_stats()
        assert stats is not None
    finally:
        await app.stop()


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"cli_sections_app_{uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def test_cli_worker_follows_the_sections(app_module: ModuleType) -> None:
    async def put() -> None:
        assert (await app_module.queue.enqueue(Job(name="slow", max_retries=1))).is_ok()

    asyncio.run(put())
    started = time.monotonic()
    result = CliRunner().invoke(
        cli, ["worker", f"{app_module.__name__}:provider", "--burst", "--log-level", "info"]
    )
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert (
        "2 processed: 0 succeeded, 1 retried, 1 dead_lettered, 0 cancelled, 0 released, 0 lost"
        in result.stderr
    )
    assert elapsed < 4, f"took {elapsed:.1f} s: the timeout section was not applied"


async def test_an_adopted_scheduler_timezone_reaches_the_schedules_declared_before() -> None:

    provider = TaskProvider()
    assert provider.scheduler is not None
    provider.scheduler.schedule_job_sync(JobTemplate(name="nine"), "0 9 * * *", "nine")
    provider.scheduler.schedule_job_sync(
        JobTemplate(name="tokyo"), "0 9 * * *", "tokyo", timezone="Asia/Tokyo"
    )
    config = TaskConfig.from_dict({"scheduler": {"timezone": "America/New_York"}})
    app = Application(config=config).use(provider)
    await app.start()
    try:
        zones = {job.job_id: job.timezone for job in provider.scheduler.get_scheduled_jobs()}
    finally:
        await app.stop()
    # The schedule without a zone of its own follows the adopted one; the other keeps its.
    assert zones == {"nine": "America/New_York", "tokyo": "Asia/Tokyo"}
