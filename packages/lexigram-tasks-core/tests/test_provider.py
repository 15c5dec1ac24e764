from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lexigram.app import Application, ApplicationStartError
from lexigram.contracts.tasks import (
    DLQBackendProtocol,
    HookRegistryProtocol,
    Job,
    JobTemplate,
    Priority,
    ProgressStoreProtocol,
    ProgressTrackerProtocol,
    RateLimiterProtocol,
    ResultStoreProtocol,
    TaskConfigurationError,
    TaskExecutorProtocol,
    TaskQueueError,
    TaskQueueProtocol,
    TaskRegistrationError,
    TaskValidationError,
)
from lexigram.di import Container, HealthStatus, Module, ProviderPriority, module
from lexigram.tasks import (
    HandlerRegistry,
    MemoryTaskQueue,
    TaskBackendConfig,
    TaskBackendRegistry,
    TaskConfig,
    TaskFunction,
    TaskProvider,
    TaskRateLimitConfig,
    TaskSchedulerConfig,
    TasksModule,
    TaskWorkerConfig,
    WorkerPool,
    scheduled,
    task,
)
from lexigram.tasks.decorators import schedule_template
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.hooks import HookRegistry
from lexigram.tasks.idempotency import InMemoryIdempotencyStore
from lexigram.tasks.observability import TaskDashboard, TaskMetricsCollector
from lexigram.tasks.progress import ProgressStore
from lexigram.tasks.results import ResultStore
from lexigram.tasks.scheduling import TaskScheduler


def _other_tasks() -> set[asyncio.Task[Any]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def _until(predicate, *, limit: int = 10_000) -> None:
    """Yield to the loop until `predicate()` holds (a condition wait, not a timed sleep)."""
    for _ in range(limit):
        if predicate():
            return
        await asyncio.sleep(0)
    msg = "condition never became true"
    raise AssertionError(msg)


def test_provider_class_attributes_match_the_inventory():
    assert TaskProvider.name == "tasks"
    assert TaskProvider.priority == ProviderPriority.INFRASTRUCTURE
    assert TaskProvider.config_key == "tasks"
    assert TaskProvider.config_model is TaskConfig


def test_provider_defaults_come_from_config():
    config = TaskConfig(
        worker=TaskWorkerConfig(worker_count=3), scheduler=TaskSchedulerConfig(enabled=False)
    )
    provider = TaskProvider(config=config)
    assert provider.worker_count == 3
    assert provider.enable_scheduler is False
    assert provider.scheduler is None
    default = TaskProvider()
    assert default.worker_count == 1
    assert isinstance(default.scheduler, TaskScheduler)


def test_provider_explicit_arguments_win_over_config():
    config = TaskConfig(
        worker=TaskWorkerConfig(worker_count=3), scheduler=TaskSchedulerConfig(enabled=True)
    )
    provider = TaskProvider(worker_count=1, enable_scheduler=False, config=config)
    assert provider.worker_count == 1
    assert provider.scheduler is None
    from_config = TaskProvider.from_config(config, worker_count=5)
    assert from_config.worker_count == 5
    assert from_config.enable_scheduler is True


def test_provider_explicit_arguments_win_over_config_file(tmp_path):
    path = tmp_path / "application.yaml"
    path.write_text("tasks:\n  worker:\n    worker_count: 6\n  scheduler:\n    enabled: true\n")
    config = TaskConfig.from_yaml(path, environ={})
    provider = TaskProvider(worker_count=2, enable_scheduler=False, config=config)
    assert (provider.worker_count, provider.enable_scheduler) == (2, False)
    assert config.worker.worker_count == 6  # the config itself is left as loaded


def test_provider_rejects_bad_arguments():
    with pytest.raises(TypeError, match="needs a TaskConfig, got dict"):
        TaskProvider(config={"worker": {}})  # type: ignore[arg-type]
    with pytest.raises(TaskConfigurationError, match="worker_count = -1: must be ≥ 0"):
        TaskProvider(worker_count=-1)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['workers'\]"):
        TaskProvider.from_config(TaskConfig(), workers=2)


def test_provider_from_config_accepts_a_mapping_and_an_explicit_queue():
    queue = MemoryTaskQueue()
    provider = TaskProvider.from_config({"worker": {"worker_count": 2}}, queue=queue)
    assert provider.worker_count == 2
    assert provider.queues == {"tasks": queue}


def test_provider_builds_queue_from_config_type_through_discovery():
    provider = TaskProvider.from_config(TaskConfig(backend=TaskBackendConfig(queue_name="jobs")))
    assert provider.queue is None  # nothing is built before it is needed
    (queue,) = provider.queues.values()
    assert isinstance(queue, MemoryTaskQueue)
    assert queue.queue_name == "jobs"
    assert provider.queue is queue


async def test_provider_register_binds_every_service():
    provider = TaskProvider(
        MemoryTaskQueue(), config=TaskConfig(rate_limit=TaskRateLimitConfig(enabled=True))
    )
    container = Container()
    await provider.register(container)
    assert await container.resolve(TaskProvider) is provider
    assert await container.resolve(TaskConfig) is provider.config
    assert await container.resolve(HandlerRegistry) is provider.registry
    assert await container.resolve(TaskExecutorProtocol) is provider.registry
    assert isinstance(await container.resolve(TaskBackendRegistry), TaskBackendRegistry)
    assert await container.resolve(TaskScheduler) is provider.scheduler
    assert await container.resolve(TaskQueueProtocol) is provider.queue
    pool = await container.resolve(WorkerPool)
    assert pool is provider.worker_pool
    assert pool.queue is provider.queue
    stack = provider.stacks["tasks"]
    assert await container.resolve(ResultStore) is stack.result_store
    assert await container.resolve(ResultStoreProtocol) is stack.result_store
    assert await container.resolve(ProgressStore) is stack.progress_store
    assert await container.resolve(ProgressStoreProtocol) is stack.progress_store
    assert await container.resolve(ProgressTrackerProtocol) is stack.progress_tracker
    dlq = await container.resolve(PersistentDeadLetterQueue)
    assert dlq is pool.dead_letter_queue
    assert await container.resolve(DLQBackendProtocol) is dlq.backend
    assert await container.resolve(RateLimiterProtocol) is provider.rate_limiter


async def test_provider_scheduler_disabled_binds_no_scheduler():
    provider = TaskProvider(MemoryTaskQueue(), enable_scheduler=False)
    container = Container()
    await provider.register(container)
    assert not container.has(TaskScheduler)


async def test_application_boot_runs_jobs_and_drains_with_no_task_pending():
    seen: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    async def add(a: int, b: int) -> int:
        await seen.put((a, b))
        return a + b

    provider = TaskProvider(MemoryTaskQueue(), worker_count=2)
    provider.register_handler("add", add)
    async with Application.boot(providers=[provider]) as app:
        assert provider.worker_pool is not None
        assert provider.worker_pool.running
        assert provider.scheduler is not None
        assert provider.scheduler.running
        job_id = await provider.enqueue_job(Job(name="add", args=(2, 3)))
        assert await asyncio.wait_for(seen.get(), 5) == (2, 3)
        stack = provider.stacks["tasks"]
        result = await stack.result_store.wait(job_id, timeout=5)
        assert result is not None
        assert result.success
        health = await app.health_check()
        assert health.status is HealthStatus.HEALTHY
    assert provider.state.value == "shutdown"
    assert _other_tasks() == set()


async def test_shutdown_drains_a_running_job_instead_of_cancelling_it():
    started, release = asyncio.Event(), asyncio.Event()
    finished: list[str] = []

    async def slow(tag: str) -> None:
        started.set()
        await release.wait()
        finished.append(tag)

    queue = MemoryTaskQueue()
    provider = TaskProvider(queue, config=TaskConfig(worker=TaskWorkerConfig(shutdown_timeout=30)))
    provider.register_handler("slow", slow)
    app = Application().use(provider)
    await app.start()
    pool = provider.worker_pool
    assert pool is not None
    await provider.enqueue_job(Job(name="slow", args=("x",)))
    await asyncio.wait_for(started.wait(), 5)
    stopping = asyncio.create_task(app.stop())
    await _until(lambda: not pool.running)  # the pool has been told to stop
    assert not stopping.done()  # ...and waits for the running job
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert finished == ["x"]
    assert await queue.get_task_count() == 0
    assert _other_tasks() == set()


async def test_boot_failure_stops_everything_it_started(monkeypatch):
    provider = TaskProvider(MemoryTaskQueue(), worker_count=2)
    assert provider.scheduler is not None

    async def broken(callback: Any) -> None:
        msg = "scheduler cannot start"
        raise RuntimeError(msg)

    monkeypatch.setattr(provider.scheduler, "start_scheduler", broken)
    app = Application().use(provider)
    with pytest.raises(ApplicationStartError, match="scheduler cannot start"):
        await app.start()
    assert _other_tasks() == set()


class Greeter:
    def greet(self, name: str) -> str:
        return f"hello {name}"


async def test_handler_gets_positional_args_kwargs_and_injected_services():
    calls: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    async def handler(a: int, b: str, greeter: Greeter, *, c: float) -> None:
        await calls.put((a, b, greeter.greet(b), c))

    provider = TaskProvider(MemoryTaskQueue(), enable_scheduler=False)
    provider.register_handler("combo", handler)
    async with Application.boot(providers=[provider]) as app:
        app.container.singleton(Greeter, Greeter())
        await provider.enqueue_job(
            Job(name="combo", args=(1, "bo"), kwargs={"c": 2.5}, max_retries=0)
        )
        assert await asyncio.wait_for(calls.get(), 5) == (1, "bo", "hello bo", 2.5)


async def test_boot_sets_the_default_queue_for_delay_and_shutdown_unsets_it():
    done: asyncio.Queue[str] = asyncio.Queue()

    @task(name="notify")
    async def notify(user: str) -> None:
        await done.put(user)

    provider = TaskProvider(MemoryTaskQueue(), enable_scheduler=False)
    provider.register_handler(notify._task_name, notify)
    async with Application.boot(providers=[provider]):
        job = await notify.delay("ann")
        assert job.id
        assert await asyncio.wait_for(done.get(), 5) == "ann"
    with pytest.raises(TaskQueueError, match="No default task queue"):
        await notify.delay("bob")


async def test_enqueue_job_returns_the_id_and_raises_what_the_queue_refuses():
    provider = TaskProvider(MemoryTaskQueue(), worker_count=0, enable_scheduler=False)
    job = Job(name="x", args=(1,))
    assert await provider.enqueue_job(job) == job.id
    with pytest.raises(TaskValidationError):
        await provider.enqueue_job(Job(name="x", args=(object(),)))


def test_register_scheduled_task_requires_scheduled_metadata():
    provider = TaskProvider(MemoryTaskQueue())

    @task(name="plain")
    async def plain() -> None: ...

    with pytest.raises(TaskRegistrationError, match=r"has no _cron\. Decorate the function"):
        provider.register_scheduled_task(plain)
    with pytest.raises(TaskRegistrationError, match="has no _task_name or _cron"):
        provider.register_scheduled_task(lambda: None)
    assert "plain" not in provider.registry


def test_register_scheduled_task_rolls_back_on_a_bad_cron():
    provider = TaskProvider(MemoryTaskQueue())

    async def old() -> None: ...

    provider.register_handler("report", old)

    # Built without @scheduled, which would refuse these crons already.
    async def report_handler() -> None: ...

    async def fresh_handler() -> None: ...

    report = TaskFunction(report_handler, name="report", cron="not a cron")
    fresh = TaskFunction(fresh_handler, name="fresh", cron="61 * * * *")

    with pytest.raises(TaskRegistrationError, match="Cannot schedule task 'report'"):
        provider.register_scheduled_task(report)
    assert provider.registry.get_handler("report") is old
    with pytest.raises(TaskRegistrationError, match="rolled back"):
        provider.register_scheduled_task(fresh)
    assert "fresh" not in provider.registry
    assert provider.get_scheduled_jobs() == {"scheduled_jobs": []}


def test_a_schedule_without_task_options_fires_at_the_tasks_default_priority():
    # A stand-in naming no priority (as a handler class's `cron` method has none): its
    # jobs run beside the task's own, not below every `.delay()` at priority 0.
    provider = TaskProvider(MemoryTaskQueue())

    async def sweep() -> None: ...

    sweep._task_name = "sweep"  # type: ignore[attr-defined]
    sweep._cron = "0 * * * *"  # type: ignore[attr-defined]
    provider.register_scheduled_task(sweep)
    assert provider.scheduler is not None
    job = provider.scheduler.get_scheduled_job("scheduled:sweep")
    assert job is not None
    assert job.job_template.priority == Priority.NORMAL
    assert schedule_template("sweep", None).priority == Priority.NORMAL


def test_scheduling_api_shapes():
    provider = TaskProvider(MemoryTaskQueue())

    @scheduled("0 3 * * *", name="nightly")
    async def nightly() -> None: ...

    provider.register_scheduled_task(nightly)
    schedule_id = provider.schedule_job_sync(JobTemplate(name="hourly"), "0 * * * *", "h1")
    assert schedule_id == "h1"
    info = provider.get_scheduled_jobs()
    assert info is not None
    by_id = {entry["job_id"]: entry for entry in info["scheduled_jobs"]}
    assert set(by_id) == {"scheduled:nightly", "h1"}
    assert by_id["h1"]["name"] == "hourly"
    assert by_id["h1"]["cron"] == "0 * * * *"
    assert by_id["h1"]["enabled"] is True
    assert isinstance(by_id["h1"]["next_run"], float)
    assert provider.unschedule_job_sync("h1") is True
    assert provider.unschedule_job_sync("h1") is False

    off = TaskProvider(MemoryTaskQueue(), enable_scheduler=False)
    assert off.schedule_job_sync(JobTemplate(name="x"), "* * * * *") is None
    assert off.unschedule_job_sync("x") is False
    assert off.get_scheduled_jobs() is None
    off.register_scheduled_task(nightly)  # handler only, with a warning
    assert "nightly" in off.registry


async def test_scheduled_task_fires_through_the_primary_queue():
    fired = asyncio.Event()

    @scheduled("* * * * * *", name="tick")  # every second
    async def tick() -> None:
        fired.set()

    provider = TaskProvider(
        MemoryTaskQueue(), config=TaskConfig(scheduler=TaskSchedulerConfig(check_interval=0.05))
    )
    provider.register_scheduled_task(tick)
    async with Application.boot(providers=[provider]):
        await asyncio.wait_for(fired.wait(), 5)
    assert _other_tasks() == set()


async def test_get_worker_stats_shape_and_refresh():
    provider = TaskProvider(MemoryTaskQueue(), worker_count=2, enable_scheduler=False)
    assert provider.get_worker_stats() is None
    async with Application.boot(providers=[provider]):
        stats = provider.get_worker_stats()
        assert stats is not None
        assert stats["pool_size"] == 2
        assert stats["active_workers"] == 2
        for key in ("total_jobs_processed", "total_jobs_succeeded", "total_jobs_failed"):
            assert stats[key] == 0
        provider.refresh_worker_handlers()


class HangingQueue(MemoryTaskQueue):
    """A queue whose server stops answering once `hang()` is called.

    Only after boot: a server that does not answer at boot fails it (the start-up check).
    """

    def __init__(self) -> None:
        super().__init__()
        self.hanging = False

    def hang(self) -> None:
        self.hanging = True

    async def _answer(self) -> None:
        if self.hanging:
            await asyncio.Event().wait()

    async def count(self, queue_name: str, status: Any = None) -> int:
        await self._answer()
        return await super().count(queue_name, status)

    async def get_task_count(self) -> int:
        await self._answer()
        return await super().get_task_count()


async def test_health_check_is_unhealthy_before_boot_and_when_a_queue_hangs():
    queue = HangingQueue()
    provider = TaskProvider(queue, worker_count=0, enable_scheduler=False)
    before = await provider.health_check()
    assert before.status is HealthStatus.UNHEALTHY
    async with Application.boot(providers=[provider]):
        assert (await provider.health_check(timeout=0.01)).status is HealthStatus.HEALTHY
        queue.hang()
        result = await provider.health_check(timeout=0.01)
        assert result.status is HealthStatus.UNHEALTHY
        assert "did not answer within 0.01s" in result.message


async def test_health_check_reports_stopped_workers_as_degraded():
    provider = TaskProvider(MemoryTaskQueue(), worker_count=1, enable_scheduler=False)
    async with Application.boot(providers=[provider]):
        assert (await provider.health_check()).status is HealthStatus.HEALTHY
        assert provider.worker_pool is not None
        await provider.worker_pool.stop()
        degraded = await provider.health_check()
        assert degraded.status is HealthStatus.DEGRADED
        assert "0 of 1 worker(s) are running" in degraded.message


async def test_disabled_config_binds_but_starts_nothing():
    provider = TaskProvider(MemoryTaskQueue(), config=TaskConfig(enabled=False))
    async with Application.boot(providers=[provider]) as app:
        assert await app.container.resolve(TaskQueueProtocol) is provider.queue
        assert provider.worker_pool is not None
        assert not provider.worker_pool.running
        assert provider.scheduler is not None
        assert not provider.scheduler.running
    assert _other_tasks() == set()


async def test_provider_starts_again_in_a_new_application():
    explicit = MemoryTaskQueue()
    provider = TaskProvider(explicit, enable_scheduler=False)
    from_config = TaskProvider(enable_scheduler=False)
    for _ in range(2):
        async with Application.boot(providers=[provider, from_config]):
            assert provider.queue is explicit
            assert provider.worker_pool is not None
            assert provider.worker_pool.running
    assert _other_tasks() == set()


async def test_provider_builds_idempotency_managers_on_the_primary_queue():
    queue = MemoryTaskQueue()
    provider = TaskProvider(queue, worker_count=0, enable_scheduler=False)
    manager = provider.build_idempotent_task_manager()
    job = Job(name="charge", idempotency_key="order-1")
    first = await manager.submit(job)
    second = await manager.submit(Job(name="charge", idempotency_key="order-1"))
    assert first.task_id == second.task_id == job.id
    assert second.status.value == "duplicate"
    assert await queue.get_task_count() == 1
    store = InMemoryIdempotencyStore()
    assert provider.build_idempotency_manager(store).store is store


async def test_provider_hooks_feed_metrics_and_observers():
    completed: asyncio.Queue[str] = asyncio.Queue()

    async def work() -> None: ...

    provider = TaskProvider(MemoryTaskQueue(), enable_scheduler=False)
    provider.register_handler("work", work)

    @provider.hooks.on("task.completed")
    async def on_completed(payload: Any) -> None:
        await completed.put(payload.task_name)

    async with Application.boot(providers=[provider]) as app:
        assert await app.container.resolve(HookRegistry) is provider.hooks
        assert await app.container.resolve(HookRegistryProtocol) is provider.hooks
        assert await app.container.resolve(TaskMetricsCollector) is provider.metrics
        assert await app.container.resolve(TaskDashboard) is provider.dashboard
        await provider.enqueue_job(Job(name="work"))
        assert await asyncio.wait_for(completed.get(), 5) == "work"
        assert provider.metrics.get("work", "queued") == 1
        assert provider.metrics.get("work", "completed") == 1


async def test_provider_without_config_uses_the_application_config():
    app_config = TaskConfig(
        worker=TaskWorkerConfig(worker_count=3), scheduler=TaskSchedulerConfig(enabled=False)
    )

    @module(imports=[TasksModule.configure(worker_count=None)])
    class AppModule(Module): ...

    async with Application.boot(modules=[AppModule], config=app_config) as app:
        provider = await app.container.resolve(TaskProvider)
        assert provider.config is app_config
        assert provider.worker_count == 3
        assert provider.scheduler is None
        assert provider.worker_pool is not None
        assert len(provider.worker_pool.workers) == 3
    # A config given to the provider itself is never replaced.
    own = TaskProvider(config=TaskConfig(worker=TaskWorkerConfig(worker_count=1)))
    async with Application.boot(providers=[own], config=app_config):
        assert own.worker_count == 1
