"""`TasksModule`: the module applications import to get queues, workers and the scheduler."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lexigram.contracts.tasks import TaskExecutorProtocol, TaskQueueProtocol
from lexigram.di import DynamicModule, Module, module
from lexigram.tasks.config import NamedTaskConfig, TaskBackendConfig, TaskConfig
from lexigram.tasks.constants import BACKEND_MEMORY
from lexigram.tasks.di._handlers import check_handler_class
from lexigram.tasks.di._provider import TaskProvider
from lexigram.tasks.execution import HandlerRegistry, WorkerPool
from lexigram.tasks.scheduling import TaskScheduler

if TYPE_CHECKING:
    from lexigram.tasks.middleware import TaskMiddlewarePipeline

_EXPORTS: tuple[type, ...] = (
    TaskQueueProtocol,
    TaskExecutorProtocol,
    TaskProvider,
    TaskConfig,
    HandlerRegistry,
    WorkerPool,
    TaskScheduler,
)


@module(is_global=True, exports=_EXPORTS)
class TasksModule(Module):
    """Background task workers, scheduling, and async job queues.

    Call `configure` once (usually in the root module) to set up the task subsystem;
    feature modules add their handler classes with `scope`; tests use `stub`.

    Usage (in-memory queue for development)::

        from lexigram.tasks.backends.memory import MemoryTaskQueue

        @module(imports=[TasksModule.configure(queue=MemoryTaskQueue())])
        class AppModule(Module):
            pass

    Usage (from configuration, one queue per named backend)::

        config = TaskConfig.from_yaml("application.yaml")

        @module(imports=[TasksModule.configure(config=config)])
        class AppModule(Module):
            pass
    """

    name = "TasksModule"

    @classmethod
    def configure(
        cls,
        queue: Any | None = None,
        worker_count: int | None = None,
        enable_scheduler: bool | None = None,
        config: TaskConfig | Any | None = None,
        middleware_pipeline: TaskMiddlewarePipeline | None = None,
    ) -> DynamicModule:
        """Create a TasksModule with explicit configuration.

        Explicit arguments win over `config`; nothing is built or connected until the
        application starts, so a bad backend type fails at start with the field name.

        Args:
            queue: TaskQueueProtocol implementation. Defaults to the queue `config`
                describes (a `MemoryTaskQueue` with the default config).
            worker_count: Number of concurrent task workers (per queue); None takes
                ``config.worker.worker_count``.
            enable_scheduler: Whether to enable the job scheduler; None takes
                ``config.scheduler.enabled``.
            config: The `TaskConfig`.
            middleware_pipeline: Middleware around every job execution.

        Returns:
            A DynamicModule descriptor.

        Raises:
            TypeError: `config` is not a `TaskConfig`.
        """
        if config is not None and not isinstance(config, TaskConfig):
            msg = (
                f"TasksModule.configure(config=...) needs a TaskConfig, got "
                f"{type(config).__name__}. Load one with TaskConfig.from_yaml(...) or "
                "TaskConfig.from_dict(...)."
            )
            raise TypeError(msg)
        provider = TaskProvider(
            queue, worker_count, enable_scheduler, middleware_pipeline, config=config
        )
        return DynamicModule(
            module=cls,
            providers=[provider],
            exports=list(_EXPORTS),
            is_global=True,
            name="TasksModule",
        )

    @classmethod
    def scope(cls, *handlers: Any, **kwargs: Any) -> DynamicModule:
        """Scope task handler classes into a feature module.

        Registers the given task handler classes as providers so they are discovered
        and wired by the task executor at boot. The module graph must also include
        ``TasksModule.configure`` — this does not create a new queue or worker pool.
        Uses an anonymous module token, so ``configure()`` and any number of
        ``scope()`` calls coexist in one graph.

        A handler class sets ``task_name = "..."`` and defines ``handle`` (or
        ``__call__``), or decorates methods with ``@task``/``@scheduled``; it is built
        by constructor injection. See ``docs/application.md``.

        Example::

            @module(
                imports=[
                    TasksModule.configure(queue=RedisTaskQueue(url=...)),
                    TasksModule.scope(SendEmailTask, GenerateReportTask),
                ]
            )
            class NotificationFeatureModule(Module):
                pass

        Args:
            *handlers: Task handler classes.
            **kwargs: Not supported; present for signature compatibility.

        Returns:
            A DynamicModule scoped to this feature.

        Raises:
            TypeError: An argument is not a task handler class, or a keyword is given.
        """
        if kwargs:
            msg = (
                f"TasksModule.scope() takes only handler classes, got keyword argument(s) "
                f"{sorted(kwargs)}. Configure the queue and workers with "
                "TasksModule.configure(...)."
            )
            raise TypeError(msg)
        for handler in handlers:
            check_handler_class(handler)
        return super().scope(*handlers)

    @classmethod
    def stub(cls, config: TaskConfig | None = None) -> DynamicModule:
        """Return an in-memory TasksModule for unit testing.

        Uses `MemoryTaskQueue`s, a single worker and no job scheduler. With a config,
        its worker settings are kept and every backend becomes an in-memory one with the
        same name, so ``Named("...")`` injections still resolve.

        Args:
            config: Optional configuration to mirror in memory.

        Returns:
            A DynamicModule backed by in-memory task queues.

        Raises:
            TypeError: `config` is not a `TaskConfig`.
        """
        given: object = config  # callers without a type checker may pass anything
        if given is not None and not isinstance(given, TaskConfig):
            msg = f"TasksModule.stub(config=...) needs a TaskConfig, got {type(given).__name__}."
            raise TypeError(msg)
        return cls.configure(
            worker_count=1, enable_scheduler=False, config=_in_memory(config or TaskConfig())
        )


def _in_memory(config: TaskConfig) -> TaskConfig:
    """Return `config` with every backend replaced by an in-memory one of the same name."""
    # The enqueue deadline is the application's, not a connection setting: it stays.
    # Beside a backends list, the backend section holds nothing else (its other keys are
    # the entries' to set, and refused there).
    backend = (
        TaskBackendConfig(enqueue_timeout=config.backend.enqueue_timeout)
        if config.backends
        else TaskBackendConfig(
            type=BACKEND_MEMORY,
            queue_name=config.backend.queue_name,
            enqueue_timeout=config.backend.enqueue_timeout,
        )
    )
    # Every connection setting goes back to its default; only the identity stays.
    keep = {"name", "primary", "queue_name"}
    reset = {
        name: info.get_default(call_default_factory=True)
        for name, info in NamedTaskConfig.model_fields.items()
        if name not in keep
    }
    entries = [
        entry.model_copy(update={**reset, "type": BACKEND_MEMORY, "options": {}})
        for entry in config.backends
    ]
    return config.model_copy(
        update={"backend": backend, "backends": entries, "rate_limit": config.rate_limit}
    )
