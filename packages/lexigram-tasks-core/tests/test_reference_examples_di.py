"""The published reference's TaskProvider, TasksModule and NamedTaskConfig examples, as written.

Imports are added.

The Redis variants of the TasksModule examples need a server; they run in
tests-integration/app/test_app_reference_examples_redis.py.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from lexigram.app import Application
from lexigram.contracts.tasks import Job, TaskQueueProtocol
from lexigram.di import Module, Named, module
from lexigram.tasks import TaskConfig, TaskProvider, TasksModule

NAMED_TASK_CONFIG_YAML = """\
backends:
  - name: primary
    primary: true
    type: redis
    redis_url: "${REDIS_URL}"
  - name: notifications
    type: rabbitmq
    amqp_url: "${AMQP_URL}"
"""


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_reference_task_provider_example():
    from lexigram.app import Application
    from lexigram.tasks import MemoryTaskQueue, TaskProvider

    app = Application()
    queue = MemoryTaskQueue()
    provider = TaskProvider(queue, worker_count=4)
    app.use(provider)

    await app.start()
    try:
        assert provider.worker_pool is not None
        assert provider.worker_pool.queue is queue
        assert provider.get_worker_stats() == provider.worker_pool.get_pool_stats()
        assert len(provider.worker_pool.workers) == 4
        assert await app.container.resolve(TaskQueueProtocol) is queue
    finally:
        await app.stop()
    assert _other_tasks() == set()


async def test_reference_tasks_module_memory_example():
    from lexigram.tasks.backends.memory import MemoryTaskQueue

    @module(imports=[TasksModule.configure(queue=MemoryTaskQueue())])
    class AppModule(Module):
        pass

    done = asyncio.Event()

    async def ping() -> None:
        done.set()

    async with Application.boot(modules=[AppModule]) as app:
        provider = await app.container.resolve(TaskProvider)
        provider.register_handler("ping", ping)
        queue = await app.container.resolve(TaskQueueProtocol)
        assert isinstance(queue, MemoryTaskQueue)
        await provider.enqueue_job(Job(name="ping"))
        await asyncio.wait_for(done.wait(), 5)
    assert _other_tasks() == set()


def test_reference_named_task_config_example_loads_from_a_yaml_file(tmp_path, monkeypatch):
    path = tmp_path / "application.yaml"
    path.write_text(NAMED_TASK_CONFIG_YAML, encoding="utf-8")
    monkeypatch.setenv("REDIS_URL", "redis://:redis-pass@cache.internal:6379/0")
    monkeypatch.setenv("AMQP_URL", "amqp://app:amqp-pass@mq.internal:5672/")

    config = TaskConfig.from_yaml(path)

    primary, notifications = config.backends
    assert (primary.name, primary.primary, primary.type) == ("primary", True, "redis")
    assert primary.redis_url is not None
    assert primary.redis_url.get_secret_value() == "redis://:redis-pass@cache.internal:6379/0"
    assert (notifications.name, notifications.primary, notifications.type) == (
        "notifications",
        False,
        "rabbitmq",
    )
    assert notifications.amqp_url is not None
    assert notifications.amqp_url.get_secret_value() == "amqp://app:amqp-pass@mq.internal:5672/"
    assert config.primary_backend is primary
    assert "redis-pass" not in repr(config)
    assert TaskConfig.from_named(notifications).backend.type == "rabbitmq"


async def test_reference_named_task_config_inject_by_name(tmp_path, monkeypatch):
    path = tmp_path / "application.yaml"
    path.write_text(NAMED_TASK_CONFIG_YAML, encoding="utf-8")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/0")
    monkeypatch.setenv("AMQP_URL", "amqp://mq.internal:5672/")
    config = TaskConfig.from_yaml(path)

    class NotificationService:
        def __init__(
            self,
            # The reference's injection line, verbatim:
            queue: Annotated[TaskQueueProtocol, Named("notifications")],
        ) -> None:
            self.queue = queue

    # TasksModule.stub mirrors the named backends in memory, so no server is needed here.
    @module(imports=[TasksModule.stub(config)], providers=[NotificationService])
    class AppModule(Module):
        pass

    async with Application.boot(modules=[AppModule]) as app:
        service = await app.container.resolve(NotificationService)
        provider = await app.container.resolve(TaskProvider)
        assert service.queue is provider.queues["notifications"]
        assert service.queue is provider.worker_pools["notifications"].queue
        assert await app.container.resolve(TaskQueueProtocol) is provider.queues["primary"]
