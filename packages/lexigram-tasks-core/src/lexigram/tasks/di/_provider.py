"""`TaskProvider`: binds the task services in the container and runs workers and scheduler.

Lifecycle (driven by `lexigram.app.Application`):

* ``register``: build each configured backend's queue and stores through discovery (no
  I/O: backends connect lazily), build one `WorkerPool` per queue, bind everything.
* ``boot``: check that every backend answers (as the command line does before it starts
  anything), wire the handler classes found in the container, start the pools and the
  scheduler, make the primary queue the default of ``task(...).delay()``.
* ``shutdown``: stop the scheduler, drain the pools (``worker.shutdown_timeout``), close
  the queues and stores.

The queue bound under ``Named(name)`` is the very object the workers of that backend
consume; the primary one is also bound unnamed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Self

from lexigram.contracts.tasks import (
    HookRegistryProtocol,
    RateLimiterProtocol,
    TaskConfigurationError,
    TaskExecutorProtocol,
    TaskQueueProtocol,
)
from lexigram.di import (
    ContainerRegistrarProtocol,
    ContainerResolverProtocol,
    HealthCheckResult,
    HealthStatus,
    Provider,
    ProviderPriority,
)
from lexigram.tasks._backends import (
    TaskBackendRegistry,
)
from lexigram.tasks._closing import close_each
from lexigram.tasks._presence import WorkerPresence, describe_backend
from lexigram.tasks._producer import install_task_queues
from lexigram.tasks.concurrency import LockManager
from lexigram.tasks.config import TaskConfig
from lexigram.tasks.constants import scheduled_task_id
from lexigram.tasks.decorators import schedule_template
from lexigram.tasks.di._handlers import discover_handler_classes, handler_specs
from lexigram.tasks.di._health import aggregate_pool_stats, probe_queues, summarize
from lexigram.tasks.di._provider_jobs import ProviderJobsMixin
from lexigram.tasks.di._registration import HandlerRegistrationMixin
from lexigram.tasks.di._stack import (
    BackendStack,
    bind_stack,
    build_config_rate_limiter,
    build_hooks,
    build_pool,
    build_stacks,
    observe_enqueues,
    report_config_issues,
)
from lexigram.tasks.di._start_check import check_stacks
from lexigram.tasks.execution import HandlerRegistry, WorkerPool
from lexigram.tasks.hooks import HookRegistry
from lexigram.tasks.observability import TaskDashboard, TaskMetricsCollector
from lexigram.tasks.scheduling import TaskScheduler, as_scheduler_store

if TYPE_CHECKING:
    from lexigram.tasks.middleware import TaskMiddlewarePipeline

logger = logging.getLogger(__name__)


_CONTEXT_KEYS = frozenset({"queue", "worker_count", "enable_scheduler", "middleware_pipeline"})


class TaskProvider(HandlerRegistrationMixin, ProviderJobsMixin, Provider):
    """Task processing provider: DI bindings, workers, scheduler and health.

    Explicit constructor arguments win over the configuration: a
    `worker_count` or `enable_scheduler` left as None comes from `config`, and an
    explicit `queue` replaces the one the config would build (the primary one in
    multi-backend mode; the other named backends are still built from config).

    Example:
        app = Application()
        queue = MemoryTaskQueue()
        provider = TaskProvider(queue, worker_count=4)
        app.use(provider)
        await app.start()

    Args:
        queue: The queue to use; None builds it from `config` (``backend.type``, or one
            queue per ``backends`` entry) when the application registers providers.
        worker_count: Workers per queue; None takes ``config.worker.worker_count``.
        enable_scheduler: Run the cron scheduler; None takes ``config.scheduler.enabled``.
        middleware_pipeline: Middleware around every job execution.
        config: The configuration. None takes the application's (its ``tasks``
            section, found by `Provider.find_config` when the application registers
            providers), else ``TaskConfig()``. ``LEX_TASKS__*`` environment variables win
            over either (`TaskConfig.with_environment`).

    Raises:
        TypeError: `config` is not a `TaskConfig`.
        TaskConfigurationError: `worker_count` is negative, or a ``LEX_TASKS__*``
            variable has an invalid value or an unknown key.
    """

    name = "tasks"
    priority = ProviderPriority.INFRASTRUCTURE
    config_key = "tasks"
    config_model = TaskConfig
    config_error_type = TaskConfigurationError

    def __init__(
        self,
        queue: TaskQueueProtocol | None = None,
        worker_count: int | None = None,
        enable_scheduler: bool | None = None,
        middleware_pipeline: TaskMiddlewarePipeline | None = None,
        config: TaskConfig | None = None,
    ) -> None:
        super().__init__()
        given_queue: object = queue
        if isinstance(given_queue, TaskConfig):
            msg = (
                "TaskProvider's first argument is a queue, and it was given a TaskConfig. "
                "Pass the configuration by name: TaskProvider(config=...)."
            )
            raise TypeError(msg)
        given: object = config
        if given is not None and not isinstance(given, TaskConfig):
            msg = (
                f"TaskProvider(config=...) needs a TaskConfig, got {type(given).__name__}. "
                "Build one with TaskConfig.from_yaml(...), TaskConfig.from_dict(...) or "
                "TaskConfig(...)."
            )
            raise TypeError(msg)
        if worker_count is not None and worker_count < 0:
            msg = (
                f"TaskProvider worker_count = {worker_count!r}: must be ≥ 0. Set a "
                "non-negative number of workers."
            )
            raise TaskConfigurationError(msg, details={"worker_count": worker_count})
        # LEX_TASKS__* variables win over a config built in code, as they win over a file
        # and over this provider's config when `lexigram-tasks worker` runs it: one rule.
        self._config: TaskConfig = (
            config if config is not None else TaskConfig()
        ).with_environment()
        self._config_given = config is not None
        # What the provider runs with in an application that holds no tasks config.
        self._own_config = self._config
        self.queue: TaskQueueProtocol | None = queue
        self._explicit_queue = queue
        self._explicit_worker_count = worker_count
        self._explicit_enable_scheduler = enable_scheduler
        self.worker_count: int = 0
        self.enable_scheduler: bool = False
        self.scheduler: TaskScheduler | None = None
        self._apply_config()
        self.middleware_pipeline = middleware_pipeline
        self.registry = HandlerRegistry()
        self.backend_registry = TaskBackendRegistry.with_defaults()
        self.worker_pool: WorkerPool | None = None
        self.worker_pools: dict[str, WorkerPool] = {}
        self.stacks: dict[str, BackendStack] = {}
        self.rate_limiter: RateLimiterProtocol | None = None
        # Lifecycle hooks (plugins from the entry-point group `lexigram.tasks.plugins`, and
        # observers added with provider.hooks.on(...)) feed the metrics counters.
        self.hooks = build_hooks(load_plugins=False)  # plugins are loaded at boot
        self.metrics = TaskMetricsCollector()
        self.metrics.attach(self.hooks)
        self.dashboard = TaskDashboard()
        self._primary_name: str | None = None
        self._stop_observing: Callable[[], None] | None = None
        self._presence: WorkerPresence | None = None
        self._uninstall_queues: Callable[[], None] | None = None
        # Whether this provider holds its backends (from boot to shutdown): another
        # provider's shutdown then leaves their shared connection pools open.
        self._holding_backends = False
        # Tasks and schedules that boot() took from handler classes; shutdown() removes
        # them, so the provider can be registered again (by a new application).
        self._class_tasks: list[str] = []
        self._class_schedules: list[str] = []

    def _apply_config(self) -> None:
        """Derive the settings from the config; explicit constructor arguments win."""
        cfg = self._config
        count = self._explicit_worker_count
        self.worker_count = count if count is not None else cfg.worker.worker_count
        enable = self._explicit_enable_scheduler
        self.enable_scheduler = enable if enable is not None else cfg.scheduler.enabled
        if not self.enable_scheduler:
            self.scheduler = None
        elif self.scheduler is None:
            self.scheduler = TaskScheduler.from_config(cfg.scheduler)
        else:  # keep the schedules registered so far
            self.scheduler.check_interval = cfg.scheduler.check_interval
            self.scheduler.set_timezone(cfg.scheduler.timezone)
            self.scheduler.adopt_unowned = cfg.scheduler.adopt_unowned

    async def _adopt_application_config(self, container: ContainerRegistrarProtocol) -> None:
        """Run on the application's tasks config (``Application(config=...)``) if none was given.

        `Provider.find_config` alone decides what counts: a `TaskConfig` (or subclass), or
        the ``tasks`` section of the application's settings. The ``LEX_TASKS__*`` variables
        win over what it finds, as over a config given to the provider.
        """
        if self._config_given:
            return
        found: TaskConfig | None = await self.application_config(container)
        # Without one, the defaults: not a config adopted from an earlier application.
        config = found.with_environment() if found is not None else self._own_config
        if config is not self._config:
            self._config = config
            self._apply_config()

    @classmethod
    def load_config(cls, section: Mapping[str, Any]) -> TaskConfig:
        """Validate a ``tasks`` mapping as `TaskConfig.from_dict` does (unknown keys fail).

        Args:
            section: The settings of the tasks section.

        Returns:
            The config; `LEX_TASKS__*` variables are applied by the caller.

        Raises:
            TaskConfigurationError: A value is invalid, or a key is unknown (unless not strict).
        """
        return TaskConfig.from_dict(section)

    @classmethod
    def from_config(cls, config: TaskConfig | Mapping[str, Any], **context: Any) -> Self:
        """Create a TaskProvider from a TaskConfig (or the mapping of one).

        Context kwargs may include a pre-built ``queue`` and any other constructor
        argument (``worker_count``, ``enable_scheduler``, ``middleware_pipeline``); they
        win over the config. Without a queue, the backend named by the config's ``type``
        is built through discovery (one queue per ``backends`` entry in multi mode).

        Args:
            config: The configuration.
            **context: Explicit constructor arguments.

        Returns:
            The provider.

        Raises:
            TypeError: An unknown context key, or a config of the wrong type.
        """
        unknown = sorted(set(context) - _CONTEXT_KEYS)
        if unknown:
            msg = (
                f"TaskProvider.from_config() got unknown argument(s) {unknown}. It accepts "
                f"{sorted(_CONTEXT_KEYS)}."
            )
            raise TypeError(msg)
        if isinstance(config, Mapping):
            config = cls.load_config(config)
        return cls(config=config, **context)

    @property
    def config(self) -> TaskConfig:
        """The configuration this provider runs with."""
        return self._config

    @property
    def explicit_settings(self) -> dict[str, Any]:
        """The constructor's settings that win over any configuration, by config path.

        ``worker_count`` and ``enable_scheduler`` given to the constructor, as
        ``{"worker.worker_count": 3, "scheduler.enabled": False}`` (only those given).
        ``lexigram-tasks worker APP:provider`` and ``scheduler APP:provider`` apply them
        over the configuration they read, as the provider does.
        """
        settings: dict[str, Any] = {}
        if self._explicit_worker_count is not None:
            settings["worker.worker_count"] = self._explicit_worker_count
        if self._explicit_enable_scheduler is not None:
            settings["scheduler.enabled"] = self._explicit_enable_scheduler
        return settings

    @property
    def queues(self) -> dict[str, TaskQueueProtocol]:
        """Every queue by backend name (built on first access)."""
        self._ensure_stacks()
        return {name: stack.queue for name, stack in self.stacks.items()}

    @property
    def scheduler_task(self) -> asyncio.Task[None] | None:
        """The running scheduler loop task, or None."""
        if self.scheduler is None:
            return None
        task: asyncio.Task[None] | None = self.scheduler._loop_task  # noqa: SLF001 - published attribute
        return task

    # ------------------------------------------------------------------ building

    def _ensure_stacks(self) -> None:
        if self.stacks:
            return
        cfg = self._config
        stacks, primary = build_stacks(
            cfg,
            registry=self.backend_registry,
            queue=self._explicit_queue,
            with_scheduler_store=self.scheduler is not None,
        )
        self.stacks = stacks
        self._primary_name = primary
        main = stacks[primary]
        self.queue = main.queue
        self.rate_limiter = build_config_rate_limiter(cfg, main)
        if self.scheduler is not None:
            # Schedules are owned by an application: without a configured name, the
            # primary queue names it (applications sharing a queue share its jobs too).
            self.scheduler.namespace = cfg.scheduler.namespace or f"queue:{main.spec.queue_name}"
            self.scheduler.queue_name = main.spec.queue_name
            if main.scheduler_store is not None:
                self.scheduler.store = as_scheduler_store(main.scheduler_store)

    @property
    def _primary(self) -> BackendStack:
        self._ensure_stacks()
        assert self._primary_name is not None  # noqa: S101 - set by _ensure_stacks
        return self.stacks[self._primary_name]

    def _build_pools(self) -> None:
        if self.worker_pools:
            return
        for name, stack in self.stacks.items():
            self.worker_pools[name] = build_pool(
                stack,
                self.registry,
                config=self._config,
                size=self.worker_count,
                rate_limiter=self.rate_limiter,
                hooks=self.hooks,
                dashboard=self.dashboard,
                middleware_pipeline=self.middleware_pipeline,
            )
        self.worker_pool = self.worker_pools[self._primary.name]

    # ------------------------------------------------------------------ lifecycle

    async def register(self, container: ContainerRegistrarProtocol) -> None:
        """Register task services with the DI container.

        Binds (singletons): `TaskProvider`, `TaskConfig`, `HandlerRegistry` and
        `TaskExecutorProtocol` (the registry), `TaskBackendRegistry`, `HookRegistry` and
        `HookRegistryProtocol`, `TaskMetricsCollector`, `TaskDashboard`, `TaskScheduler`
        (when enabled); and for the primary backend unnamed, plus for every backend
        under ``Named(name)`` in multi-backend mode: `TaskQueueProtocol`, `WorkerPool`,
        `ResultStore`/`ResultStoreProtocol`, `ProgressStore`/`ProgressStoreProtocol`,
        `ProgressTrackerProtocol`, `PersistentDeadLetterQueue`/`DLQBackendProtocol`;
        `RateLimiterProtocol` when rate limiting is enabled; `LockManager` (over the
        primary backend's lock manager when it offers one, else in-process locks).

        Args:
            container: DI registrar to bind task services into.
        """
        if not self.stacks:
            await self._adopt_application_config(container)
        self._report_config_issues()
        self._ensure_stacks()
        self._build_pools()
        container.singleton(TaskProvider, self)
        container.singleton(TaskConfig, self._config)
        container.singleton(HandlerRegistry, self.registry)
        container.singleton(TaskExecutorProtocol, self.registry)
        container.singleton(TaskBackendRegistry, self.backend_registry)
        container.singleton(HookRegistry, self.hooks)
        container.singleton(HookRegistryProtocol, self.hooks)
        container.singleton(TaskMetricsCollector, self.metrics)
        container.singleton(TaskDashboard, self.dashboard)
        if self.scheduler is not None:
            container.singleton(TaskScheduler, self.scheduler)
        if self.rate_limiter is not None:
            container.singleton(RateLimiterProtocol, self.rate_limiter)
        primary = self._primary
        bind_stack(container, primary, self.worker_pools[primary.name], None)
        container.singleton(LockManager, self._lock_manager(primary))
        if self._config.backends:
            for name, stack in self.stacks.items():
                bind_stack(container, stack, self.worker_pools[stack.name], name)

    def _report_config_issues(self) -> None:
        """Log what `validate_for_environment` finds; deployments decide what to block on."""
        report_config_issues(self._config, self.backend_registry)

    def _lock_manager(self, primary: BackendStack) -> LockManager:
        """The `LockManager` the container provides: the primary backend's locks, if any."""
        shared = primary.add_store("create_lock_manager", fallback="locks of this process only")
        return LockManager(backend=shared)

    async def boot(self, container: ContainerResolverProtocol) -> None:
        """Start the task provider.

        Checks that every backend answers (`probe`, on all queues at once, as the command
        line checks before it starts anything; also with ``worker_count`` 0 and no
        scheduler, so an application that only enqueues fails here rather than at its
        first ``.delay()``), wires handler classes bound in the container, starts one
        worker pool per queue (``worker_count`` workers each; none when it is 0),
        restores persisted schedules and starts the scheduler on the primary queue, and
        makes the primary queue the default of ``task(...).delay()``. On failure,
        whatever started is stopped and what was opened is closed (as `shutdown` does)
        before the error propagates: the application calls no `shutdown` for a provider
        whose boot failed.

        Args:
            container: The application container (handler classes are built from it, and
                handler parameters are resolved from it per job).

        Raises:
            TaskQueueError: A backend is unreachable or refuses the connection: its own
                one-line error (e.g. `BackendConnectionError` naming the server, the
                cause and what to fix), before any worker or the scheduler started.
        """
        self._ensure_stacks()
        self._build_pools()
        if not self._config.enabled:
            logger.info("Tasks are disabled (tasks.enabled = false): no worker or scheduler.")
            self._hold_backends()
            return
        try:
            await self._check_backends()
            self.hooks.load_entry_point_plugins()
            if self._stop_observing is None:
                self._stop_observing = observe_enqueues(self.hooks)
            await self._wire_handler_classes(container)
            for pool in self.worker_pools.values():
                pool.services.container = container
                if self.worker_count > 0:
                    await pool.start()
            if self.worker_count > 0:
                self._start_presence()
            if self.scheduler is not None:
                if self.scheduler.store is not None:
                    restored = await self.scheduler.restore_from_store()
                    logger.info("Restored %d persisted schedule(s).", restored)
                await self.scheduler.start_scheduler(self._enqueue_scheduled)
        except BaseException:
            # Nothing may keep running or retrying (presence, a queue's reconnects): the
            # application does not shut a provider down whose boot failed.
            await self.shutdown()
            raise
        self._uninstall_queues = install_task_queues(
            self._primary.queue, self._queues_by_name(), open_other=self._open_other_queue
        )
        self._hold_backends()
        logger.info(
            "Tasks started: %d queue(s) %s, %d worker(s) each, scheduler %s.",
            len(self.stacks),
            sorted(self.stacks),
            self.worker_count,
            "on" if self.scheduler is not None else "off",
        )

    async def _check_backends(self) -> None:
        """The start-up check of every queue (`check_stacks`), before anything starts."""
        await check_stacks(self.stacks.values(), self.backend_registry, self._explicit_queue)

    def _start_presence(self) -> None:
        """Register this process's workers where ``inspect`` lists them, as the CLI's are.

        In the primary backend's key-value store; a backend without one lists none.
        """
        primary = self._primary
        # Closed with the stack, after `_stop_presence` has unregistered.
        cache = primary.add_store(
            "create_cache_backend",
            fallback="no registration of running workers (`inspect` lists none)",
        )
        if cache is None:
            return
        self._presence = WorkerPresence(
            cache,
            pools=lambda: list(self.worker_pools.values()),
            queues=[stack.spec.queue_name for stack in self.stacks.values()],
            backend=describe_backend(primary.spec),
        )
        self._presence.start()

    async def _stop_presence(self) -> None:
        presence, self._presence = self._presence, None
        if presence is None:
            return
        await presence.stop()

    async def _wire_handler_classes(self, container: ContainerResolverProtocol) -> None:
        for cls in await discover_handler_classes(container):
            instance: object = await container.resolve(cls)
            for spec in handler_specs(instance):
                if spec.task_name in self.registry:
                    logger.warning(
                        "Handler class %s replaces the handler registered for task %r.",
                        cls.__qualname__,
                        spec.task_name,
                    )
                self._class_tasks.append(spec.task_name)
                if spec.cron is None:
                    self.register_handler(spec.task_name, spec.handler, options=spec.options)
                else:
                    self._class_schedules.append(scheduled_task_id(spec.task_name))
                    self._register_and_schedule(
                        spec.task_name,
                        spec.handler,
                        spec.cron,
                        schedule_template(spec.task_name, spec.options),
                        spec.options,
                    )

    async def shutdown(self) -> None:
        """Shutdown the task provider gracefully.

        Stops the scheduler, drains every pool (running jobs get
        ``worker.shutdown_timeout`` seconds, then are cancelled and requeued), and
        closes the queues and stores. Safe to call twice.
        """
        await self._stop_running()
        await self._stop_presence()
        if self._stop_observing is not None:
            self._stop_observing()
            self._stop_observing = None
        if self._uninstall_queues is not None:
            self._uninstall_queues()
            self._uninstall_queues = None
        await self._close_other_queues()
        for stack in self.stacks.values():
            await stack.close()
        await close_each(self.rate_limiter, owner="the task provider")
        # What the backends hold for this event loop (shared connection pools), as the
        # command line releases it when a command ends, unless another provider of this
        # process still holds the backend; they reopen lazily on next use.
        held, self._holding_backends = self._holding_backends, False
        await self.backend_registry.release_backends(
            (s.spec.type for s in self.stacks.values()), held=held
        )
        self._reset()

    def _hold_backends(self) -> None:
        """Hold the stacks' backends until `shutdown` (see `TaskBackendRegistry.hold_backends`)."""
        if not self._holding_backends:
            self.backend_registry.hold_backends(s.spec.type for s in self.stacks.values())
            self._holding_backends = True

    def _reset(self) -> None:
        """Forget what register() and boot() built, so a new application can start again.

        Queues built from config are rebuilt then (fresh objects); an explicit queue is
        kept. Handlers registered directly stay; those taken from handler classes go.
        """
        for task_name in self._class_tasks:
            self.registry.remove(task_name)
        if self.scheduler is not None:
            for schedule_id in self._class_schedules:
                self.scheduler.unschedule_job_sync(schedule_id)
        self._class_tasks.clear()
        self._class_schedules.clear()
        self.worker_pools.clear()
        self.worker_pool = None
        self.stacks = {}
        self._primary_name = None
        self.rate_limiter = None
        self.queue = self._explicit_queue

    async def _stop_running(self) -> None:
        timeout = self._config.worker.shutdown_timeout
        if self.scheduler is not None and self.scheduler.running:
            await self.scheduler.stop_scheduler(timeout=timeout)
        pools = [pool for pool in self.worker_pools.values() if pool.running]
        await asyncio.gather(*(pool.stop(drain=True, timeout=timeout) for pool in pools))

    async def health_check(self, timeout: float = 5.0) -> HealthCheckResult:
        """Check task provider health.

        Probes every queue with ``get_task_count()`` (the protocol has no health
        method) within `timeout`; the status is the worst across queues, workers (a
        stopped worker is DEGRADED) and scheduler.

        Args:
            timeout: Seconds each queue probe may take.

        Returns:
            HealthCheckResult with current status and metrics.
        """
        if not self.is_booted:
            return HealthCheckResult(
                HealthStatus.UNHEALTHY,
                f"Task provider is {self.state.value}, not booted.",
                component=self.name,
            )
        queues = await probe_queues({n: s.queue for n, s in self.stacks.items()}, timeout)
        return summarize(
            self.name,
            queues,
            pools=self.worker_pools if self._config.enabled else {},
            expected_workers=self.worker_count,
            scheduler=self.scheduler if self._config.enabled else None,
        )

    def refresh_worker_handlers(self) -> None:
        """Refresh handler mappings in all workers.

        Workers look handlers up in the shared registry on every job, so handlers
        registered after the pools started are already used; this re-reads the
        mapping for callers that rely on it.
        """
        for pool in self.worker_pools.values():
            pool.refresh_handlers()

    def get_worker_stats(self) -> dict[str, Any] | None:
        """Get worker pool statistics (None before the pools exist).

        Returns:
            `WorkerPool.get_pool_stats()` of the pool, or in multi-backend mode the sums
            over all pools plus ``pools`` (each pool's own stats by backend name).
        """
        if not self.worker_pools:
            return None
        return aggregate_pool_stats(
            {name: pool.get_pool_stats() for name, pool in self.worker_pools.items()}
        )
