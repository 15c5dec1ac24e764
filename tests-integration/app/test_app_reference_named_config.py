"""The published reference's NamedTaskConfig example from a YAML file, on Redis and RabbitMQ."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.di import Module, Named, module
from lexigram.tasks import TaskConfig, TaskProvider, TasksModule
from lexigram.tasks.backends.rabbitmq import RabbitMQTaskQueue
from lexigram.tasks.backends.redis import RedisTaskQueue

pytestmark = [pytest.mark.redis, pytest.mark.rabbitmq]

# The reference's example, verbatim.
REFERENCE_YAML = """\
backends:
  - name: primary
    primary: true
    type: redis
    redis_url: "${REDIS_URL}"
  - name: notifications
    type: rabbitmq
    amqp_url: "${AMQP_URL}"
"""


class NotificationService:
    def __init__(self, queue: Annotated[TaskQueueProtocol, Named("notifications")]) -> None:
        self.queue = queue


def _other_tasks() -> set[asyncio.Task[Any]]:
    # aio-pika/aiormq finish a closed connection in tasks of their own that
    # RabbitMQTaskQueue.close() does not await (close callbacks, the writer's teardown);
    # they are the client library's, not ours.
    def ours(task: asyncio.Task[Any]) -> bool:
        code = getattr(task.get_coro(), "cr_code", None)
        filename = code.co_filename if code is not None else ""
        return "aio_pika" not in filename and "aiormq" not in filename

    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and ours(t)}


async def test_reference_named_task_config_example_runs_on_redis_and_rabbitmq(  # noqa: PLR0917 - pytest fixtures
    tmp_path, monkeypatch, redis_url, amqp_url, key_prefix, amqp_queue_name, succeeded_by
):
    path = tmp_path / "application.yaml"
    path.write_text(REFERENCE_YAML, encoding="utf-8")
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("AMQP_URL", amqp_url)
    # Isolation from other tests through LEX_TASKS__ overrides; the file stays as written.
    monkeypatch.setenv("LEX_TASKS__BACKENDS__PRIMARY__OPTIONS__KEY_PREFIX", key_prefix)
    monkeypatch.setenv("LEX_TASKS__BACKENDS__NOTIFICATIONS__QUEUE_NAME", amqp_queue_name)
    config = TaskConfig.from_yaml(path)

    seen: asyncio.Queue[str] = asyncio.Queue()

    async def record(tag: str) -> None:
        await seen.put(tag)

    @module(imports=[TasksModule.configure(config=config)], providers=[NotificationService])
    class AppModule(Module):
        pass

    async with Application.boot(modules=[AppModule]) as app:
        provider = await app.container.resolve(TaskProvider)
        provider.register_handler("record", record)
        service = await app.container.resolve(NotificationService)
        primary = await app.container.resolve(TaskQueueProtocol)
        assert isinstance(service.queue, RabbitMQTaskQueue)
        assert isinstance(primary, RedisTaskQueue)
        assert provider.worker_pools["notifications"].queue is service.queue
        assert provider.worker_pools["primary"].queue is primary
        assert (await service.queue.enqueue(Job(name="record", args=("amqp",)))).is_ok()
        assert (await primary.enqueue(Job(name="record", args=("redis",)))).is_ok()
        assert {await asyncio.wait_for(seen.get(), 15) for _ in range(2)} == {"amqp", "redis"}
        await succeeded_by(provider)({"notifications": 1, "primary": 1})
    assert _other_tasks() == set()
