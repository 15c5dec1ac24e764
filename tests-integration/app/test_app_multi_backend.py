"""An application with a memory and a Redis backend, bound by name, on real Redis."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.di import HealthStatus, Module, Named, module
from lexigram.tasks import MemoryTaskQueue, TaskConfig, TaskProvider, TasksModule, WorkerPool
from lexigram.tasks.backends.redis import RedisTaskQueue

pytestmark = pytest.mark.redis

CONFIG_YAML = """\
tasks:
  worker:
    worker_count: 2
    shutdown_timeout: 10
  backends:
    - name: primary
      primary: true
      type: memory
    - name: notifications
      type: redis
      redis_url: "${REDIS_URL}"
      queue_name: notifications
      options:
        key_prefix: "${KEY_PREFIX}"
"""


class Clock:
    """An application service the handlers ask for by type."""

    def now(self) -> str:
        return "now"


class Notifier:
    def __init__(self, queue: Annotated[TaskQueueProtocol, Named("notifications")]) -> None:
        self.queue = queue


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


@pytest.fixture
def config(tmp_path, monkeypatch, redis_url, key_prefix) -> TaskConfig:
    path = tmp_path / "application.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("KEY_PREFIX", key_prefix)
    return TaskConfig.from_yaml(path, strict=True)


async def test_app_injects_both_queues_by_name_and_each_worker_consumes_its_own(
    config, succeeded_by
):
    seen: asyncio.Queue[tuple[str, int, str, str | None]] = asyncio.Queue()

    async def deliver(tag: str, attempt: int, clock: Clock, job: Job) -> None:
        await seen.put((tag, attempt, clock.now(), job.queue_name))

    @module(
        imports=[TasksModule.configure(config=config)],
        providers=[Notifier],
    )
    class AppModule(Module): ...

    async with Application.boot(modules=[AppModule]) as app:
        app.container.singleton(Clock, Clock())
        provider = await app.container.resolve(TaskProvider)
        provider.register_handler("deliver", deliver)

        notifier = await app.container.resolve(Notifier)
        primary = await app.container.resolve(TaskQueueProtocol)
        named_primary = await app.container.resolve(Annotated[TaskQueueProtocol, Named("primary")])
        assert isinstance(notifier.queue, RedisTaskQueue)
        assert isinstance(primary, MemoryTaskQueue)
        assert named_primary is primary
        # The injected objects are the ones the workers consume.
        notify_pool = await app.container.resolve(Annotated[WorkerPool, Named("notifications")])
        primary_pool = await app.container.resolve(Annotated[WorkerPool, Named("primary")])
        assert notify_pool.queue is notifier.queue
        assert primary_pool.queue is primary
        assert all(worker.queue is notifier.queue for worker in notify_pool.workers)

        # Positional arguments survive the JSON round trip and DI fills the rest.
        assert (await notifier.queue.enqueue(Job(name="deliver", args=("redis", 1)))).is_ok()
        assert (await primary.enqueue(Job(name="deliver", args=("memory", 2)))).is_ok()
        got = {await asyncio.wait_for(seen.get(), 10) for _ in range(2)}
        assert {(tag, attempt, now) for tag, attempt, now, _ in got} == {
            ("redis", 1, "now"),
            ("memory", 2, "now"),
        }
        await succeeded_by(provider)({"notifications": 1, "primary": 1})
        assert await notifier.queue.get_task_count() == 0

        health = await provider.health_check()
        assert health.status is HealthStatus.HEALTHY
        assert set(health.details["queues"]) == {"primary", "notifications"}
    assert _other_tasks() == set()


async def test_app_routes_enqueue_job_to_the_named_backend(config, succeeded_by):
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def record(tag: str) -> None:
        await seen.put(tag)

    provider = TaskProvider.from_config(config)
    provider.register_handler("record", record)
    async with Application.boot(providers=[provider]):
        await provider.enqueue_job(
            Job(name="record", args=("to-redis",), queue_name="notifications")
        )
        assert await asyncio.wait_for(seen.get(), 10) == "to-redis"
        await succeeded_by(provider)({"notifications": 1, "primary": 0})
    assert _other_tasks() == set()
