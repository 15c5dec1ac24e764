from __future__ import annotations

import asyncio
from importlib.metadata import entry_points
from typing import Any

import pytest

from lexigram.app import Application
from lexigram.contracts.tasks import Job, TaskExecutorProtocol, TaskQueueProtocol
from lexigram.di import DynamicModule, Module, compile_modules, module
from lexigram.tasks import (
    MemoryTaskQueue,
    TaskConfig,
    TaskProvider,
    TaskSchedulerConfig,
    TasksModule,
    TaskWorkerConfig,
    scheduled,
    task,
)
from lexigram.tasks import module as module_path
from lexigram.tasks.di import is_handler_class

RESULTS: asyncio.Queue[tuple[str, Any]] | None = None


class Mailer:
    def send(self, to: str) -> str:
        return f"sent to {to}"


class SendEmailTask:
    """A class-based handler: task_name + handle, built by constructor injection."""

    task_name = "send_email"

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    async def handle(self, to: str, *, subject: str = "") -> None:
        assert RESULTS is not None
        await RESULTS.put(("send_email", (self.mailer.send(to), subject)))


class ReportTasks:
    """Handler methods declared with @task / @scheduled."""

    def __init__(self, mailer: Mailer) -> None:
        self.mailer = mailer

    @task(name="generate_report")
    async def generate(self, report_id: int, mailer: Mailer) -> None:
        assert RESULTS is not None
        await RESULTS.put(("generate_report", (report_id, mailer is not None)))

    @scheduled("0 4 * * *", name="nightly_report")
    async def nightly(self) -> None: ...


class CleanupTask:
    task_name = "cleanup"
    cron = "*/5 * * * *"

    async def __call__(self) -> None: ...


class NotAHandler:
    pass


@pytest.fixture
def results():
    global RESULTS  # noqa: PLW0603 - handlers defined at module level report here
    RESULTS = asyncio.Queue()
    yield RESULTS
    RESULTS = None


def test_configure_returns_a_global_dynamic_module_with_the_provider():
    queue = MemoryTaskQueue()
    dynamic = TasksModule.configure(queue=queue, worker_count=3)
    assert isinstance(dynamic, DynamicModule)
    assert dynamic.module is TasksModule
    assert dynamic.is_global
    (provider,) = dynamic.providers
    assert isinstance(provider, TaskProvider)
    assert provider.queue is queue
    assert provider.worker_count == 3
    assert TaskQueueProtocol in dynamic.exports
    assert TaskExecutorProtocol in dynamic.exports
    assert TasksModule.is_global


def test_configure_rejects_a_config_that_is_not_a_task_config():
    with pytest.raises(TypeError, match="needs a TaskConfig, got dict"):
        TasksModule.configure(config={"worker": {"worker_count": 2}})


def test_a_provider_given_its_config_in_the_queues_place_says_so():
    with pytest.raises(
        TypeError, match=r"first argument is a queue.*TaskProvider\(config=\.\.\.\)"
    ):
        TaskProvider(TaskConfig())  # type: ignore[arg-type]


def test_configure_explicit_arguments_win_over_config():
    config = TaskConfig(
        worker=TaskWorkerConfig(worker_count=4), scheduler=TaskSchedulerConfig(enabled=True)
    )
    (provider,) = TasksModule.configure(
        worker_count=2, enable_scheduler=False, config=config
    ).providers
    assert provider.worker_count == 2
    assert provider.scheduler is None


def test_configure_and_scopes_coexist_in_one_graph():
    @module(
        imports=[
            TasksModule.configure(queue=MemoryTaskQueue()),
            TasksModule.scope(SendEmailTask),
            TasksModule.scope(ReportTasks, CleanupTask),
        ]
    )
    class AppModule(Module): ...

    graph = compile_modules([AppModule])
    assert {SendEmailTask, ReportTasks, CleanupTask} <= set(graph.services)
    assert sum(isinstance(p, TaskProvider) for p in graph.providers) == 1


def test_scope_rejects_what_is_not_a_handler_class():
    with pytest.raises(TypeError, match="no task_name class attribute and no @task"):
        TasksModule.scope(NotAHandler)
    with pytest.raises(TypeError, match="Pass the class itself"):
        TasksModule.scope(CleanupTask())
    with pytest.raises(TypeError, match="takes only handler classes"):
        TasksModule.scope(SendEmailTask, worker_count=2)

    class NoEntry:
        task_name = "x"

    with pytest.raises(TypeError, match="defines no handle"):
        TasksModule.scope(NoEntry)
    assert is_handler_class(SendEmailTask)
    assert is_handler_class(ReportTasks)
    assert not is_handler_class(NotAHandler)


async def test_scoped_handler_classes_are_wired_with_injection(results):
    @module(
        imports=[
            TasksModule.configure(queue=MemoryTaskQueue()),
            TasksModule.scope(SendEmailTask, ReportTasks, CleanupTask),
        ],
        providers=[Mailer],
    )
    class AppModule(Module): ...

    async with Application.boot(modules=[AppModule]) as app:
        provider = await app.container.resolve(TaskProvider)
        assert {"send_email", "generate_report", "nightly_report", "cleanup"} <= set(
            provider.registry.list_handlers()
        )
        await provider.enqueue_job(
            Job(name="send_email", args=("a@b.c",), kwargs={"subject": "Hi"})
        )
        await provider.enqueue_job(Job(name="generate_report", args=(7,)))
        got = dict([await asyncio.wait_for(results.get(), 5) for _ in range(2)])
        assert got["send_email"] == ("sent to a@b.c", "Hi")
        assert got["generate_report"] == (7, True)
        scheduled_jobs = provider.get_scheduled_jobs()
        assert scheduled_jobs is not None
        crons = {j["name"]: j["cron"] for j in scheduled_jobs["scheduled_jobs"]}
        assert crons == {"nightly_report": "0 4 * * *", "cleanup": "*/5 * * * *"}
    # Wiring from classes is undone at shutdown, so a new application starts clean.
    assert "send_email" not in provider.registry
    assert provider.get_scheduled_jobs() == {"scheduled_jobs": []}


async def test_stub_runs_in_memory_with_one_worker_and_no_scheduler():
    dynamic = TasksModule.stub()
    (provider,) = dynamic.providers
    assert provider.worker_count == 1
    assert provider.scheduler is None

    @module(imports=[dynamic])
    class TestModule(Module): ...

    async with Application.boot(modules=[TestModule]) as app:
        queue = await app.container.resolve(TaskQueueProtocol)
        assert isinstance(queue, MemoryTaskQueue)
    with pytest.raises(TypeError, match="needs a TaskConfig"):
        TasksModule.stub(config="tasks.yaml")  # type: ignore[arg-type]


def test_stub_keeps_the_applications_enqueue_deadline() -> None:
    config = TaskConfig.from_dict(
        {"backend": {"type": "memory", "queue_name": "jobs", "enqueue_timeout": 0.25}}
    )
    (provider,) = TasksModule.stub(config).providers
    assert provider.config.backend.enqueue_timeout == 0.25
    assert provider.config.backend.queue_name == "jobs"


def test_published_module_path_and_entry_points():
    assert module_path.TasksModule is TasksModule
    (modules_ep,) = entry_points(group="lexigram.modules", name="tasks")
    assert modules_ep.load() is TasksModule
    (config_ep,) = entry_points(group="lexigram.config", name="tasks")
    assert config_ep.load() is TaskConfig
