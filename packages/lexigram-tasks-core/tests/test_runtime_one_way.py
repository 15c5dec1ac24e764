"""The CLI worker and the provider run an application's tasks the same way.

A `TaskProvider` run by ``lexigram-tasks worker APP:provider`` keeps its middleware, hook
observers and dashboard; both register their workers where ``inspect`` lists them; both
put ``LEX_TASKS__*`` variables over the configuration they are given, and neither loses a
section of it that was changed after it was built; a YAML APP keeps its tasks' options.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job
from lexigram.tasks import MemoryTaskQueue, TaskConfig, TaskProvider
from lexigram.tasks.cache import InMemoryCacheBackend
from lexigram.tasks.cli._app import load_app
from lexigram.tasks.cli._context import resolve_spec
from lexigram.tasks.cli._runtime import WorkerRuntime
from lexigram.tasks.constants import WORKER_KEY_PREFIX
from lexigram.tasks.di import _provider, _stack
from lexigram.tasks.di._stack import build_stacks, build_store
from lexigram.tasks.scheduling import InMemorySchedulerStore


@pytest.fixture
def write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"one_way_{uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        return name

    return write


PROVIDER_APP = """
    from lexigram.tasks import TaskProvider, task
    from lexigram.tasks.middleware import TaskMiddleware, TaskMiddlewarePipeline

    seen = []

    class Recording(TaskMiddleware):
        async def before_execute(self, ctx):
            seen.append(("middleware", ctx.job.name))

    pipeline = TaskMiddlewarePipeline()
    pipeline.add(Recording())
    provider = TaskProvider(middleware_pipeline=pipeline)

    @provider.hooks.on("task.completed")
    async def completed(payload):
        seen.append(("hook", payload.task_name))

    @task
    async def greet(name: str) -> str:
        seen.append(("handler", name))
        return name

    provider.register_handler(greet.name, greet)
"""


async def test_cli_worker_runs_a_provider_app_with_its_middleware_hooks_and_dashboard(
    write_module: Any,
) -> None:
    module_name = write_module(PROVIDER_APP)
    app = load_app(f"{module_name}:provider")
    module = __import__(module_name)
    config = TaskConfig()
    spec = resolve_spec(config, "memory")
    runtime = WorkerRuntime(
        app, config, spec, [spec.queue_name], worker_config=config.effective_worker()
    )
    await runtime.start(connect_timeout=2)
    try:
        await runtime.queues[0].enqueue(Job(name="greet", args=("ada",)))
        for _ in range(500):
            if ("hook", "greet") in module.seen:
                break
            await asyncio.sleep(0.01)
    finally:
        await runtime.close()
    assert module.seen == [("middleware", "greet"), ("handler", "ada"), ("hook", "greet")]
    assert module.provider.dashboard.get_summary()["total_executed"] == 1


async def test_a_booted_provider_registers_its_workers_where_inspect_lists_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = InMemoryCacheBackend()

    def with_cache(spec: Any, factory: str, field: str, **kwargs: Any) -> Any:
        if factory == "create_cache_backend":
            return cache
        return build_store(spec, factory, field, **kwargs)

    monkeypatch.setattr(_stack, "build_store", with_cache)
    provider = TaskProvider(worker_count=2, enable_scheduler=False)
    async with Application.boot(providers=[provider]):
        keys: list[str] = []
        for _ in range(200):
            keys = await cache.keys(WORKER_KEY_PREFIX)
            if keys:
                break
            await asyncio.sleep(0.01)
        [key] = keys
        record = json.loads(await cache.get(key) or "{}")
        assert record["queues"] == [provider.config.backend.queue_name]
        # Two workers per queue run twice the slots of one.
        assert record["concurrency"] == 2 * provider.config.worker.max_concurrent_tasks
    assert await cache.keys(WORKER_KEY_PREFIX) == []


def test_provider_puts_lex_tasks_variables_over_its_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEX_TASKS__WORKER__MAX_CONCURRENT_TASKS", "3")
    config = TaskConfig.from_dict({"timeout": {"default_timeout": 9.0}})
    provider = TaskProvider(config=config)
    assert provider.config.worker.max_concurrent_tasks == 3
    assert provider.config.timeout.default_timeout == 9.0


def test_with_environment_keeps_a_section_changed_after_the_config_was_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = TaskConfig.from_dict({"backend": {"type": "memory", "queue_name": "jobs"}})
    config.worker.max_concurrent_tasks = 3  # never passed in: only assigned
    config.timeout.default_timeout = 1.0
    monkeypatch.setenv("LEX_TASKS__WORKER__LOG_JOBS", "true")
    merged = config.with_environment()
    assert merged.worker.log_jobs is True
    assert merged.worker.max_concurrent_tasks == 3
    assert merged.timeout.default_timeout == 1.0
    assert merged.backend.queue_name == "jobs"


def test_a_yaml_app_keeps_the_options_its_tasks_were_registered_with(
    write_module: Any, tmp_path: Path
) -> None:
    module_name = write_module(
        """
        from lexigram.tasks import HandlerRegistry, TaskOptions

        registry = HandlerRegistry()
        registry.register("quiet", lambda: 7, options=TaskOptions(store_result=False, timeout=2.0))
        """
    )
    path = tmp_path / "tasks.yaml"
    path.write_text(f"tasks:\n  extra:\n    app: {module_name}:registry\n", encoding="utf-8")
    app = load_app(str(path))
    options = app.handlers.options("quiet")
    assert options is not None
    assert options.store_result is False
    assert options.timeout == 2.0


SCHEDULED_APP = """
    from lexigram.tasks import scheduled

    @scheduled("0 3 * * *")
    async def nightly() -> None:
        return None
"""


@pytest.fixture
def schedule_store(monkeypatch: pytest.MonkeyPatch) -> InMemorySchedulerStore:
    """The scheduler store every provider built in the test gets from its stack."""
    store = InMemorySchedulerStore()

    def with_store(*args: Any, **kwargs: Any) -> Any:
        stacks, primary = build_stacks(*args, **kwargs)
        stacks[primary].scheduler_store = store
        return stacks, primary

    monkeypatch.setattr(_provider, "build_stacks", with_store)
    return store


async def test_a_provider_saves_its_schedules_under_the_id_the_command_line_gives_them(
    write_module: Any, schedule_store: InMemorySchedulerStore
) -> None:
    module_name = write_module(SCHEDULED_APP)
    nightly = __import__(module_name).nightly
    store = schedule_store
    provider = TaskProvider(worker_count=0)
    provider.register_scheduled_task(nightly)
    async with Application.boot(providers=[provider]):
        stored = [job.job_id for job in (await store.load_jobs()).values()]
    # `schedule list` reads the store: the provider's schedule is there, under the id the
    # `scheduler` command gives the same task, so the two fire each occurrence once.
    [schedule] = load_app(module_name).schedules
    assert stored == [schedule.schedule_id] == ["scheduled:nightly"]


async def test_a_task_scheduled_after_boot_is_stored_too(
    write_module: Any, schedule_store: InMemorySchedulerStore
) -> None:
    module_name = write_module(SCHEDULED_APP)
    nightly = __import__(module_name).nightly
    store = schedule_store
    provider = TaskProvider(worker_count=0)
    async with Application.boot(providers=[provider]):
        assert await store.load_jobs() == {}
        provider.register_scheduled_task(nightly)
        for _ in range(10):  # the write runs as a task of the loop
            await asyncio.sleep(0)
        stored = [job.job_id for job in (await store.load_jobs()).values()]
    assert stored == ["scheduled:nightly"]


QUEUED_SCHEDULE_APP = """
    from lexigram.tasks import scheduled

    @scheduled("0 3 * * *", queue="emails", priority=9)
    async def digest() -> None:
        return None
"""


def test_a_scheduled_tasks_queue_rides_its_template_under_both_doors(write_module: Any) -> None:
    module_name = write_module(QUEUED_SCHEDULE_APP)
    [schedule] = load_app(module_name).schedules
    provider = TaskProvider(worker_count=0)
    provider.register_scheduled_task(__import__(module_name).digest)
    assert provider.scheduler is not None
    declared = provider.scheduler.get_scheduled_job(schedule.schedule_id)
    assert declared is not None
    assert declared.job_template == schedule.template
    assert (schedule.template.queue_name, schedule.template.priority) == ("emails", 9)
    fired = provider.scheduler.make_job(declared, 0.0)
    assert fired.queue_name == "emails"


async def test_the_scheduler_command_fires_a_job_onto_the_queue_its_task_names() -> None:
    from lexigram.tasks.cli._opener import QueueOpener

    spec = resolve_spec(TaskConfig(), "memory")
    own = MemoryTaskQueue(queue_name=spec.queue_name)
    route = QueueOpener(TaskConfig(), spec, own)
    try:
        assert route.route(Job(name="tick")) is own
        emails = route.route(Job(name="digest", queue_name="emails"))
        assert emails.queue_name == "emails"
        assert route.route(Job(name="digest", queue_name="emails")) is emails
    finally:
        await route.close()
