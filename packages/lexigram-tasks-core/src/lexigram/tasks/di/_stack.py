"""The composition root: one backend's queue, stores, rate limiter, hooks and worker pools.

`TaskProvider` and the command line (``lexigram-tasks worker``, ``scheduler``,
``inspect``, ``enqueue``, ``dlq``) build through this module, so a configuration
section means the same in both: the process-wide settings are set by
`apply_process_settings`, the worker settings come from `worker_settings`
(`TaskConfig.effective_worker`, ``retry`` and ``timeout`` included), the rate-limit
bucket is `rate_limit_bucket`, and plugins are loaded by `build_hooks`.

Where a function takes ``config: TaskConfig | None``, None means nothing is configured
(no file, no APP config, no ``LEX_TASKS__*`` variable): every default applies, read
from the plain records and constants the configuration models take their defaults from,
so the command line's worker starts without importing pydantic.

`build_stack` asks the backend named by ``spec.type`` for its queue and for each of
its optional stores (result, progress, progress tracker, DLQ, scheduler store); where
the backend offers none, the in-memory version is used (and `create_store` logs it).
Every error names the config field that selected the backend, so a typo in a type
reads ``tasks.backends[1].type = 'rediss': No task backend named 'rediss' ...``.
`bind_stack` is what `TaskProvider` binds in the application container for a stack.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from lexigram.contracts.tasks import (
    BackendError,
    DLQBackendProtocol,
    ProgressStoreProtocol,
    ProgressTrackerProtocol,
    RateLimiterProtocol,
    ResultStoreProtocol,
    TaskBackendSpec,
    TaskConfigurationError,
    TaskQueueError,
    TaskQueueProtocol,
    WorkflowRunStoreProtocol,
    configure_envelope,
)
from lexigram.tasks._backends import (
    IN_MEMORY,
    TaskBackendRegistry,
    config_path_of,
    entry_path,
    spec_from_config,
)
from lexigram.tasks._closing import close_each
from lexigram.tasks._worker_settings import WORKER_DEFAULTS
from lexigram.tasks.concurrency._task_rate import (
    RateLimit,
    TaskRateLimiters,
    in_process_limiter,
)
from lexigram.tasks.constants import DEFAULT_CONFIG_NAME, DEFAULT_ENQUEUE_TIMEOUT
from lexigram.tasks.decorators import configure_enqueue_timeout
from lexigram.tasks.dlq import PersistentDeadLetterQueue
from lexigram.tasks.events import EventObserver, producer_events
from lexigram.tasks.execution import HandlerRegistry, TaskWorkerServices, WorkerPool
from lexigram.tasks.handles import register_job_stores
from lexigram.tasks.hooks import HookRegistry
from lexigram.tasks.observability._tracing import TracingObserver, tracing_available
from lexigram.tasks.progress import InMemoryProgressStore, InMemoryProgressTracker, ProgressStore
from lexigram.tasks.results import InMemoryResultStore, ResultStore
from lexigram.tasks.workflows import InMemoryWorkflowStateStore, register_workflow_store

if TYPE_CHECKING:
    from lexigram.di import ContainerRegistrarProtocol
    from lexigram.tasks._worker_settings import AnyWorkerSettings
    from lexigram.tasks.config import TaskConfig
    from lexigram.tasks.middleware import TaskMiddlewarePipeline

logger = logging.getLogger(__name__)

_E = TypeVar("_E", bound=TaskQueueError)


@dataclass(slots=True, kw_only=True)
class BackendStack:
    """The objects one configured backend contributes to an application.

    Attributes:
        name: The backend's name (its ``Named()`` key in multi-backend mode).
        path: Config path of the backend, e.g. ``tasks.backends[1]`` (for messages).
        spec: The spec the stores were built from.
        queue: The queue: the object that is injected AND the one the workers consume.
        result_store: Where workers store job results.
        progress_store: Where handlers' progress is saved.
        progress_tracker: Live progress broadcast (subscribe to a job's updates).
        dead_letter_queue: Where permanently failed jobs go; `retry` re-enqueues on `queue`.
        scheduler_store: The backend's schedule store, or None (in-memory schedules).
        workflow_store: The run store of queue-driven workflows on `queue` (the
            backend's workflow state store, else an in-memory one).
        has_shared_dead_letters: Whether the backend stores dead letters itself
            (otherwise they live in this process only).
        closeables: Stores this stack built, closed at shutdown (the queue is closed too).
        task_rate_limiters: The buckets of rate-limited tasks (see `task_rate_limiters`).
    """

    name: str
    path: str
    spec: TaskBackendSpec
    queue: TaskQueueProtocol
    result_store: ResultStoreProtocol
    progress_store: ProgressStoreProtocol
    progress_tracker: ProgressTrackerProtocol
    dead_letter_queue: PersistentDeadLetterQueue
    scheduler_store: Any | None = None
    workflow_store: WorkflowRunStoreProtocol | None = None
    has_shared_dead_letters: bool = False
    closeables: list[Any] = field(default_factory=list)
    task_rate_limiters: TaskRateLimiters | None = None
    registry: TaskBackendRegistry = field(default_factory=TaskBackendRegistry.with_defaults)

    def add_store(self, factory: str, *, fallback: str) -> Any | None:
        """Build one more of the backend's stores, closed with this stack; None if it has none.

        Args:
            factory: The backend's factory, e.g. ``"create_cache_backend"``.
            fallback: What the caller does without it, for the log line.
        """
        built = build_store(
            self.spec, factory, self.path, registry=self.registry, fallback=fallback
        )
        if built is not None:
            self.closeables.append(built)
        return built

    async def close(self) -> None:
        """Close the stores, then the queue; a failing close is logged, not raised."""
        await close_each(*self.closeables, self.queue, owner=f"task backend {self.name!r}")


def bind_stack(
    container: ContainerRegistrarProtocol,
    stack: BackendStack,
    pool: WorkerPool,
    name: str | None,
) -> None:
    """Bind `stack`'s queue, its `pool` and its stores in `container` (unnamed for None).

    `TaskProvider` binds the primary backend's stack unnamed and, in multi-backend
    mode, every stack under ``Named(name)`` as well.
    """
    # The stores are bound under core's classes as well as the contracts' protocols: a
    # backend's store has every method of the class (it implements the protocol, which
    # has the same ones) but does not subclass it, since backends never import core.
    bindings: list[tuple[Any, Any]] = [
        (TaskQueueProtocol, stack.queue),
        (WorkerPool, pool),
        (ResultStore, stack.result_store),
        (ResultStoreProtocol, stack.result_store),
        (ProgressStore, stack.progress_store),
        (ProgressStoreProtocol, stack.progress_store),
        (ProgressTrackerProtocol, stack.progress_tracker),
        (PersistentDeadLetterQueue, stack.dead_letter_queue),
        (DLQBackendProtocol, stack.dead_letter_queue.backend),
    ]
    for service_type, instance in bindings:
        container.singleton(service_type, instance, name=name)


def prefixed_error(exc: _E, field: str) -> _E:
    """Return a copy of a backend error whose message starts with the config field."""
    value = f"{field}.type = {exc.details.get('type')!r}: " if "type" in exc.details else ""
    prefix = value or f"{field}: "
    return type(exc)(prefix + exc.message, details=dict(exc.details), hint=exc.hint)


def build_queue(
    spec: TaskBackendSpec, *, field: str, registry: TaskBackendRegistry
) -> TaskQueueProtocol:
    """Build the queue for `spec`, naming `field` in any error.

    Raises:
        BackendNotFoundError: No installed backend has that type (names the installed
            ones and the pip command).
        BackendError: The backend cannot be loaded or conflicts with another.
        TaskConfigurationError: The backend rejects the spec's options.
    """
    try:
        return registry.create_queue(spec)
    except (BackendError, TaskConfigurationError) as exc:
        raise prefixed_error(exc, field) from None


def build_store(
    spec: TaskBackendSpec,
    factory: str,
    field: str,
    *,
    registry: TaskBackendRegistry | None = None,
    fallback: str = IN_MEMORY,
    **kwargs: Any,
) -> Any | None:
    """Build one of the backend's optional stores (None when it offers none).

    `registry` is where the backend is looked up (default: the installed entry points);
    `fallback` says what the caller does without the store (logged when the backend
    offers none).

    Raises:
        BackendError: The backend cannot be loaded or its factory failed.
        TaskConfigurationError: The backend rejects the spec's options.
    """
    doors = registry if registry is not None else TaskBackendRegistry.with_defaults()
    try:
        return doors.create_store(spec, factory, fallback=fallback, **kwargs)
    except (BackendError, TaskConfigurationError) as exc:
        raise prefixed_error(exc, field) from None


def _or_memory(
    spec: TaskBackendSpec,
    factory: str,
    field: str,
    closeables: list[Any],
    fallback: Callable[[], Any],
    *,
    registry: TaskBackendRegistry,
) -> Any:
    built = build_store(spec, factory, field, registry=registry)
    if built is None:
        return fallback()
    closeables.append(built)
    return built


def build_stack(
    name: str,
    spec: TaskBackendSpec,
    *,
    field: str,
    registry: TaskBackendRegistry,
    queue: TaskQueueProtocol | None = None,
    with_scheduler_store: bool = False,
) -> BackendStack:
    """Build the queue (unless given) and the stores of one backend.

    No I/O happens here: backends connect lazily, on first use.

    Args:
        name: The backend's name.
        spec: What to build.
        field: Config path of the backend, for messages.
        registry: Where queue factories are looked up (falls back to entry points).
        queue: An explicit queue to use instead of building one (its stores are still
            built from `spec`).
        with_scheduler_store: Also build the backend's scheduler store (primary only).

    Returns:
        The stack.
    """
    closeables: list[Any] = []
    built_queue = queue if queue is not None else build_queue(spec, field=field, registry=registry)
    result_store = _or_memory(
        spec, "create_result_store", field, closeables, InMemoryResultStore, registry=registry
    )
    progress_store = _or_memory(
        spec, "create_progress_store", field, closeables, InMemoryProgressStore, registry=registry
    )
    tracker = _or_memory(
        spec,
        "create_progress_tracker",
        field,
        closeables,
        # A job that never reported progress ends with its result: answer from the result store.
        lambda: InMemoryProgressTracker(results=result_store),
        registry=registry,
    )
    dlq_backend = build_store(
        spec,
        "create_dlq_backend",
        field,
        registry=registry,
        fallback="dead-letter records kept in this process only",
    )
    if dlq_backend is not None:
        closeables.append(dlq_backend)
    scheduler_store = None
    if with_scheduler_store:
        scheduler_store = build_store(
            spec,
            "create_scheduler_store",
            field,
            registry=registry,
            fallback="schedules kept in this process only",
        )
        if scheduler_store is not None:
            closeables.append(scheduler_store)
    # The handles `.delay()`/`.apply_async()` return for this queue read these stores.
    register_job_stores(built_queue, result_store=result_store, progress_store=progress_store)
    # Only a backend that keeps its jobs in this process runs workflows in a
    # process-local store: elsewhere one would leave every other process blind to the
    # runs (steps run, runs never finish), so a backend without a shared store gets none
    # and `apply_async` says what to set.
    local = registry.is_process_local(spec.type)
    workflow_store = build_store(
        spec,
        "create_workflow_state_store",
        field,
        registry=registry,
        fallback=IN_MEMORY
        if local
        else "no workflow store (queue-driven workflows need one implementing "
        "WorkflowRunStoreProtocol)",
    )
    if workflow_store is not None:
        closeables.append(workflow_store)
    elif local:
        workflow_store = InMemoryWorkflowStateStore()
    if not isinstance(workflow_store, WorkflowRunStoreProtocol):
        workflow_store = None  # a third-party state store without queue-driven runs
    else:
        register_workflow_store(built_queue, workflow_store)
    return BackendStack(
        name=name,
        path=field,
        spec=spec,
        queue=built_queue,
        result_store=result_store,
        progress_store=progress_store,
        progress_tracker=tracker,
        dead_letter_queue=PersistentDeadLetterQueue(backend=dlq_backend, queue=built_queue),
        scheduler_store=scheduler_store,
        workflow_store=workflow_store,
        has_shared_dead_letters=dlq_backend is not None,
        closeables=closeables,
        registry=registry,
    )


def build_stacks(
    config: TaskConfig,
    *,
    registry: TaskBackendRegistry,
    queue: TaskQueueProtocol | None,
    with_scheduler_store: bool,
) -> tuple[dict[str, BackendStack], str]:
    """Build every backend `config` describes; return them by name, and the primary's name.

    Single mode: one stack named ``config.name`` from the ``backend`` section. Multi mode:
    one stack per ``backends`` entry; the primary is the entry marked primary, else the
    first. An explicit `queue` replaces the primary's queue only.
    """
    apply_process_settings(config)
    if not config.backends:
        field = "tasks.backend"
        try:
            spec = spec_from_config(config.backend, name=config.name, registry=registry)
            stack = build_stack(
                config.name,
                spec,
                field=field,
                registry=registry,
                queue=queue,
                with_scheduler_store=with_scheduler_store,
            )
        except (BackendError, TaskConfigurationError) as exc:
            # A value the backend refuses may come from a LEX_TASKS__* variable: say so.
            raise config.name_variables(exc, field=field) from None
        return {config.name: stack}, config.name
    primary_entry = config.primary_backend
    assert primary_entry is not None  # noqa: S101 - backends is not empty
    stacks: dict[str, BackendStack] = {}
    for index, entry in enumerate(config.backends):
        is_primary = entry.name == primary_entry.name
        field = entry_path(index)
        try:
            stacks[entry.name] = build_stack(
                entry.name,
                spec_from_config(entry, registry=registry, path=field),
                field=field,
                registry=registry,
                queue=queue if is_primary else None,
                with_scheduler_store=with_scheduler_store and is_primary,
            )
        except (BackendError, TaskConfigurationError) as exc:
            raise config.name_variables(exc, field=field, index=index) from None
    return stacks, primary_entry.name


def build_rate_limiter(
    spec: TaskBackendSpec,
    *,
    field: str,
    name: str,
    rate: int,
    per: float,
    burst: int | None,
    registry: TaskBackendRegistry | None = None,
) -> RateLimiterProtocol:
    """Build the job-start rate limiter: the backend's shared one, else a process-local one."""
    limiter = build_store(
        spec,
        "create_rate_limiter",
        field,
        registry=registry,
        fallback="a limiter of this process only",
        name=name,
        rate=rate,
        per=per,
        burst=burst,
    )
    if limiter is not None:
        return cast("RateLimiterProtocol", limiter)
    # Imported here: only applications that enable rate limiting need it.
    from lexigram.tasks.concurrency import GlobalRateLimiter  # noqa: PLC0415

    return GlobalRateLimiter(rate=rate, per=per, burst=burst)


# ---------------------------------------------------------------------- the one composition root
#
# `TaskProvider` and every CLI command build their workers through the functions below, so
# a setting means the same wherever it is read.


def apply_process_settings(config: TaskConfig | None) -> None:
    """Make `config`'s process-wide settings this process's (the defaults for None).

    Envelope signing and the payload size limit (``tasks.security``) and the enqueue
    timeout (``tasks.backend.enqueue_timeout``): every backend of the process signs,
    verifies, bounds and times out alike. Called once per configuration built from.
    """
    if config is None:
        configure_envelope()
        configure_enqueue_timeout(DEFAULT_ENQUEUE_TIMEOUT)
        return
    config.security.apply()
    configure_enqueue_timeout(config.backend.enqueue_timeout)


def report_config_issues(
    config: TaskConfig | None,
    registry: TaskBackendRegistry | None = None,
    *,
    replaced: str | None = None,
) -> None:
    """Log what `TaskConfig.validate_for_environment` finds; deployments decide what blocks.

    `TaskProvider` and every command that reads a configuration report through here, so
    a production config with a placeholder URL reads the same warning in both.

    Args:
        config: The configuration (None: nothing configured, nothing to report).
        registry: Where backend types are resolved.
        replaced: A backend section (``tasks.backend``) whose type and URL a command's
            ``--backend`` replaces: its findings are not about what runs.
    """
    if config is None:
        return
    levels = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO}
    for issue in config.validate_for_environment(registry=registry):
        if replaced is not None and issue.field.startswith(replaced + "."):
            continue
        # The finding rides on its record: the command line holds back a blocking one,
        # which its error line reports (`lexigram.tasks.cli._errors.BackendErrorHold`).
        logger.log(
            levels[issue.severity], "Task configuration: %s", issue, extra={"config_issue": issue}
        )


def worker_settings(config: TaskConfig | None) -> AnyWorkerSettings:
    """The settings every worker of `config` runs with (`TaskConfig.effective_worker`)."""
    return WORKER_DEFAULTS if config is None else config.effective_worker()


def config_name(config: TaskConfig | None) -> str:
    """`config`'s name (``tasks.name``), which prefixes its rate-limit buckets."""
    return DEFAULT_CONFIG_NAME if config is None else config.name


def rate_limit_bucket(config: TaskConfig | None) -> str:
    """The name of the job-start rate-limit bucket of `config` (``"<name>:global"``).

    Every process of one configuration (provider or ``lexigram-tasks worker``) shares
    this bucket on a backend that offers a shared rate limiter.
    """
    return f"{config_name(config)}:global"


def build_config_rate_limiter(
    config: TaskConfig | None, stack: BackendStack
) -> RateLimiterProtocol | None:
    """Build the rate limiter ``config.rate_limit`` describes, or None when it is off.

    Its bucket is in the primary backend of a ``backends`` list, else in `stack`'s.

    None (nothing configured) has it off: ``tasks.rate_limit.enabled`` is false by default.
    """
    if config is None:
        return None
    limits = config.rate_limit
    if not limits.enabled:
        return None
    # One bucket for the whole configuration, kept in its primary backend, whichever
    # backend's workers take from it (a provider's pools and every worker command).
    primary = config.primary_backend
    spec, field = stack.spec, stack.path
    if primary is not None and primary.name != stack.name:
        field = config_path_of(primary, config)
        spec = spec_from_config(primary, registry=stack.registry, path=field)
    return build_rate_limiter(
        spec,
        field=field,
        name=rate_limit_bucket(config),
        rate=limits.rate,
        per=limits.per,
        burst=limits.burst,
        registry=stack.registry,
    )


def task_rate_limiters(stack: BackendStack, config: TaskConfig | None) -> TaskRateLimiters:
    """The buckets of the rate-limited tasks (``@task(rate_limit=...)``) run on `stack`.

    One per stack, so every pool of a process shares them. Each task's bucket is the
    backend's shared rate limiter named ``"<config name>:task:<task>"`` (so every
    process of the configuration shares it), holding about one token
    (`RateLimit.capacity`): jobs start evenly spaced. A backend without one gets an
    in-process bucket, with a warning.
    """
    if stack.task_rate_limiters is not None:
        return stack.task_rate_limiters
    prefix = config_name(config)

    def make(task: str, limit: RateLimit) -> tuple[RateLimiterProtocol, bool]:
        shared = build_store(
            stack.spec,
            "create_rate_limiter",
            stack.path,
            registry=stack.registry,
            fallback="a bucket of this process only",
            name=f"{prefix}:task:{task}",
            rate=limit.rate,
            per=limit.per,
            burst=limit.capacity,
        )
        if shared is None:
            return in_process_limiter(task, limit)
        return cast("RateLimiterProtocol", shared), True

    unshared_matters = not stack.registry.is_process_local(stack.spec.type)  # else all shared
    limiters = TaskRateLimiters(make, backend=stack.spec.type if unshared_matters else None)
    stack.task_rate_limiters = limiters
    stack.closeables.append(limiters)
    return limiters


def build_hooks(*, load_plugins: bool = True) -> HookRegistry:
    """A hook registry with the ``lexigram.tasks.plugins`` entry-point plugins loaded.

    Args:
        load_plugins: Load the installed plugins now (the provider loads them at boot).
    """
    hooks = HookRegistry()
    if load_plugins:
        hooks.load_entry_point_plugins()
    return hooks


def observe_enqueues(hooks: HookRegistry) -> Callable[[], None]:
    """Report every job this process enqueues to `hooks` ("queued" job events).

    Every enqueue of the core goes through `lexigram.tasks.decorators.enqueue_job`,
    which emits on `producer_events()`; the worker's own events reach the hooks through
    its services. Returns the function that stops the reporting again.
    """
    return producer_events().add(hooks)


def build_pool(
    stack: BackendStack,
    handlers: HandlerRegistry,
    *,
    config: TaskConfig | None,
    size: int,
    queue: TaskQueueProtocol | None = None,
    worker_config: AnyWorkerSettings | None = None,
    rate_limiter: RateLimiterProtocol | None = None,
    hooks: HookRegistry | None = None,
    dashboard: Any = None,
    middleware_pipeline: TaskMiddlewarePipeline | None = None,
    observers: Sequence[EventObserver] = (),
) -> WorkerPool:
    """Build the worker pool that consumes `queue` (default: the stack's) with its stores.

    Args:
        stack: The backend's queue and stores.
        handlers: Task name -> handler.
        config: The configuration (its `worker_settings` are used), or None (nothing
            configured: the defaults).
        size: Workers in the pool.
        queue: Another queue of the same backend (another queue name); its dead
            letters are retried onto it.
        worker_config: Worker settings to use instead of ``worker_settings(config)``
            (command-line overrides applied to them).
        rate_limiter: The job-start limiter (see `build_config_rate_limiter`).
        hooks: Lifecycle hooks (plugins and observers).
        dashboard: Observability dashboard.
        middleware_pipeline: Middleware around every job.
        observers: More observers of the workers' job events (e.g. metrics); a
            `TracingObserver` is added when opentelemetry-api is installed and
            ``worker.tracing`` is on.

    Returns:
        The pool, not started.
    """
    consumed = queue if queue is not None else stack.queue
    settings = worker_config if worker_config is not None else worker_settings(config)
    if settings.tracing and tracing_available():
        observers = (*observers, TracingObserver())
    dead_letters = stack.dead_letter_queue
    if consumed is not stack.queue:
        dead_letters = PersistentDeadLetterQueue(backend=dead_letters.backend, queue=consumed)
        register_job_stores(
            consumed, result_store=stack.result_store, progress_store=stack.progress_store
        )
        if stack.workflow_store is not None:
            register_workflow_store(consumed, stack.workflow_store)
    limiters = task_rate_limiters(stack, config)
    # Built now, so a backend that cannot share them is reported when the pool starts.
    limiters.prepare((name, handlers.options(name)) for name in handlers.list_handlers())
    services = TaskWorkerServices(
        dead_letter_queue=dead_letters,
        result_store=stack.result_store,
        progress_store=stack.progress_store,
        progress_tracker=stack.progress_tracker,
        rate_limiter=rate_limiter,
        task_rate_limiters=limiters,
        hooks=hooks,
        dashboard=dashboard,
        observers=observers,
    )
    return WorkerPool(
        consumed,
        handlers,
        size=size,
        middleware_pipeline=middleware_pipeline,
        config=settings,
        services=services,
    )
