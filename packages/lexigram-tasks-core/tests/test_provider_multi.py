from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pytest

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import BackendNotFoundError, Job, TaskQueueError, TaskQueueProtocol
from lexigram.di import Container, HealthStatus, Module, Named, module
from lexigram.tasks import MemoryTaskQueue, TaskConfig, TaskProvider, TasksModule, WorkerPool
from lexigram.tasks.decorators import task
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.results import ResultStore

MULTI = {
    "backends": [
        {"name": "primary", "primary": True, "type": "memory", "queue_name": "main"},
        {"name": "notifications", "type": "memory", "queue_name": "notify"},
    ]
}


class Notifier:
    """Takes the notifications queue by name, as an application service would."""

    def __init__(self, queue: Annotated[TaskQueueProtocol, Named("notifications")]) -> None:
        self.queue = queue


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def test_multi_backend_binds_each_queue_by_name_and_the_primary_unnamed():
    provider = TaskProvider(config=TaskConfig.from_dict(MULTI))
    container = Container()
    await provider.register(container)
    primary = await container.resolve(Annotated[TaskQueueProtocol, Named("primary")])
    notify = await container.resolve(Annotated[TaskQueueProtocol, Named("notifications")])
    assert primary is not notify
    assert await container.resolve(TaskQueueProtocol) is primary
    assert primary.queue_name == "main"
    assert notify.queue_name == "notify"
    for name, queue in (("primary", primary), ("notifications", notify)):
        pool = await container.resolve(Annotated[WorkerPool, Named(name)])
        # The object injected under Named(x) is the object x's workers consume.
        assert pool.queue is queue
        dlq = await container.resolve(Annotated[PersistentDeadLetterQueue, Named(name)])
        assert dlq is pool.dead_letter_queue
        assert dlq.queue is queue
        assert await container.resolve(Annotated[ResultStore, Named(name)]) is (
            provider.stacks[name].result_store
        )
    assert await container.resolve(WorkerPool) is provider.worker_pools["primary"]


async def test_multi_backend_primary_defaults_to_the_first_entry():
    config = TaskConfig.from_dict({"backends": [{"name": "a"}, {"name": "b"}]})
    provider = TaskProvider(config=config)
    container = Container()
    await provider.register(container)
    assert await container.resolve(TaskQueueProtocol) is provider.stacks["a"].queue


async def test_multi_backend_workers_process_jobs_from_the_injected_queues():
    seen: asyncio.Queue[str] = asyncio.Queue()

    async def record(tag: str) -> None:
        await seen.put(tag)

    @module(
        imports=[TasksModule.configure(config=TaskConfig.from_dict(MULTI), enable_scheduler=False)],
        providers=[Notifier],
    )
    class AppModule(Module): ...

    async with Application.boot(modules=[AppModule]) as app:
        provider = await app.container.resolve(TaskProvider)
        provider.register_handler("record", record)
        notifier = await app.container.resolve(Notifier)
        primary = await app.container.resolve(TaskQueueProtocol)
        assert (await notifier.queue.enqueue(Job(name="record", args=("n",)))).is_ok()
        assert (await primary.enqueue(Job(name="record", args=("p",)))).is_ok()
        assert {await asyncio.wait_for(seen.get(), 5) for _ in range(2)} == {"n", "p"}
        stats = provider.get_worker_stats()
        assert stats is not None
        assert stats["pools"]["notifications"]["total_jobs_succeeded"] == 1
        assert stats["pools"]["primary"]["total_jobs_succeeded"] == 1
        assert stats["total_jobs_succeeded"] == 2
        assert stats["pool_size"] == 2
    assert _other_tasks() == set()


async def test_multi_backend_enqueue_job_routes_by_queue_name():
    provider = TaskProvider(
        worker_count=0, enable_scheduler=False, config=TaskConfig.from_dict(MULTI)
    )
    queues = provider.queues
    await provider.enqueue_job(Job(name="a", queue_name="notifications"))
    await provider.enqueue_job(Job(name="b", queue_name="notify"))
    await provider.enqueue_job(Job(name="d"))
    # A name no backend has is a queue of the primary backend, which memory cannot share.
    with pytest.raises(TaskQueueError, match="memory backend keeps its queues in this process"):
        await provider.enqueue_job(Job(name="c", queue_name="elsewhere"))
    assert await queues["notifications"].get_task_count() == 2
    assert await queues["primary"].get_task_count() == 1


async def test_multi_backend_explicit_queue_replaces_only_the_primary():
    explicit = MemoryTaskQueue(queue_name="explicit")
    provider = TaskProvider(explicit, config=TaskConfig.from_dict(MULTI))
    assert provider.queues["primary"] is explicit
    assert provider.queues["notifications"] is not explicit
    assert provider.queue is explicit


async def test_multi_backend_unknown_type_fails_at_start_naming_the_entry():
    config = TaskConfig.from_dict(
        {"backends": [{"name": "primary"}, {"name": "mail", "type": "rediss"}]}
    )
    app = Application().use(TaskProvider(config=config))
    with pytest.raises(ApplicationStartError) as info:
        await app.start()
    cause = info.value.__cause__
    assert isinstance(cause, BackendNotFoundError)
    assert cause.message.startswith("tasks.backends[1].type = 'rediss': No task backend named")


async def test_multi_backend_health_is_the_worst_queue():
    class HangingQueue(MemoryTaskQueue):
        """Stops answering once `hanging` is set (after boot, whose check it passes)."""

        hanging = False

        async def count(self, queue_name: str, status: Any = None) -> int:
            if self.hanging:
                await asyncio.Event().wait()
            return await super().count(queue_name, status)

        async def get_task_count(self) -> int:
            if self.hanging:
                await asyncio.Event().wait()
            return await super().get_task_count()

    queue = HangingQueue()
    provider = TaskProvider(
        queue, worker_count=0, enable_scheduler=False, config=TaskConfig.from_dict(MULTI)
    )
    async with Application.boot(providers=[provider]):
        queue.hanging = True
        result = await provider.health_check(timeout=0.01)
        assert result.status is HealthStatus.UNHEALTHY
        queues = result.details["queues"]
        assert queues["primary"]["status"] == "unhealthy"
        assert queues["notifications"]["status"] == "healthy"


async def test_stub_keeps_backend_names_in_memory():
    config = TaskConfig.from_dict(
        {
            "backends": [
                {"name": "primary", "primary": True, "type": "redis", "redis_url": "redis://x"},
                {"name": "notifications", "type": "rabbitmq", "amqp_url": "amqp://y"},
            ]
        }
    )

    @module(imports=[TasksModule.stub(config)], providers=[Notifier])
    class TestModule(Module): ...

    async with Application.boot(modules=[TestModule]) as app:
        notifier = await app.container.resolve(Notifier)
        assert isinstance(notifier.queue, MemoryTaskQueue)
        provider = await app.container.resolve(TaskProvider)
        assert provider.scheduler is None
        assert provider.worker_count == 1
        assert set(provider.queues) == {"primary", "notifications"}


@task(name="notify_by_backend_name", queue="notifications")
async def notify_by_backend_name(user: int) -> None:
    return None


@task(name="notify_by_queue_name", queue="notify")
async def notify_by_queue_name(user: int) -> None:
    return None


@task(name="plain_default")
async def plain_default(user: int) -> None:
    return None


async def test_delay_routes_each_task_to_its_declared_backend():
    # No workers: the jobs stay where .delay() put them.
    provider = TaskProvider(
        config=TaskConfig.from_dict(MULTI), worker_count=0, enable_scheduler=False
    )
    container = Container()
    await provider.register(container)
    await provider.boot(container)
    primary = provider.stacks["primary"].queue
    notify = provider.stacks["notifications"].queue
    try:
        by_name = await notify_by_backend_name.delay(1)
        by_queue_name = await notify_by_queue_name.delay(2)
        default = await plain_default.delay(3)
        assert await notify.get_job(by_name.id) is not None
        assert await notify.get_job(by_queue_name.id) is not None
        assert await primary.get_job(default.id) is not None
        assert await primary.get_job(by_name.id) is None
    finally:
        await provider.shutdown()
    with pytest.raises(TaskQueueError, match="No task queue named 'notifications'"):
        await notify_by_backend_name.delay(4)  # the provider unset its queues
