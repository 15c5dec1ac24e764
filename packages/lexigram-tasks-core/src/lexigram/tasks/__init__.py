__path__ = __import__("pkgutil").extend_path(__path__, __name__)
# lexigram-tasks: asyncio background tasks that lose no job.
#
# Every public name is importable from here (``from lexigram.tasks import TaskProvider,
# task``). Names load lazily, so importing this package imports no backend, no croniter
# and not even pydantic until a name that needs them is used. The line above must stay
# first (it lets the backend distributions share the ``lexigram.tasks`` namespace), which
# is why this module has no docstring and no ``from __future__`` import.
#
# The import block under ``if TYPE_CHECKING:`` is the one list of public names, grouped
# by the module that defines each: type checkers read it, and at run time the lazy
# loader reads the same block (`type_checking_imports`, on the first lookup) to learn
# where each name lives. ``__all__`` repeats the names for ``import *`` and for type
# checkers; a test keeps the two equal. ``__version__`` is read from the installed
# metadata when first asked for: `lexigram-tasks --help` and the worker's start-up do not
# pay for it.
from typing import TYPE_CHECKING, Any

from lexigram.tasks._lazy import lazy_exports

if TYPE_CHECKING:
    __version__: str

    from lexigram.contracts.tasks import (
        BackendConflictError,
        BackendConnectionError,
        BackendError,
        BackendImportError,
        BackendNotFoundError,
        CacheBackendProtocol,
        CancellableQueueProtocol,
        CancelOutcome,
        DuplicateTaskError,
        Err,
        FailureRecord,
        IdempotencyResult,
        IdempotencyResultStatus,
        Job,
        JobResult,
        JobStatus,
        JobTemplate,
        Ok,
        OnErrorPolicy,
        Priority,
        ProgressInfo,
        ProgressSnapshot,
        ProgressStatus,
        ProgressTrackerProtocol,
        QueueFullError,
        Result,
        StepResult,
        TaskBackendSpec,
        TaskCancelledError,
        TaskConfigurationError,
        TaskDependencyCycleError,
        TaskError,
        TaskExecutionError,
        TaskExecutorProtocol,
        TaskNotFoundError,
        TaskQueueError,
        TaskQueueProtocol,
        TaskRegistrationError,
        TaskTimeoutError,
        TaskValidationError,
        WorkflowError,
        WorkflowResult,
        WorkflowStatus,
        WorkflowSummary,
    )
    from lexigram.tasks._backends import (
        TaskBackendRegistry,
        available_backends,
        load_backend,
    )
    from lexigram.tasks.backends.memory import (
        MemoryTaskQueue,
    )
    from lexigram.tasks.background_task_manager import (
        BackgroundTaskManager,
    )
    from lexigram.tasks.concurrency import (
        DistributedLockProtocol,
        GlobalRateLimiter,
        InMemoryLock,
        LockManager,
        QueueRateLimiter,
        TokenBucket,
        UniqueTask,
        distributed_lock,
        unique_task,
    )
    from lexigram.tasks.config import (
        ConfigIssue,
        Environment,
        NamedTaskConfig,
        RetryConfig,
        TaskBackendConfig,
        TaskConfig,
        TaskRateLimitConfig,
        TaskSchedulerConfig,
        TaskTimeoutConfig,
        TaskWorkerConfig,
    )
    from lexigram.tasks.decorators import (
        TaskFunction,
        get_default_queue,
        scheduled,
        set_default_queue,
        task,
    )
    from lexigram.tasks.di import (
        TaskProvider,
        TasksModule,
        create_memory_task_provider,
        create_provider_from_config,
        create_rabbitmq_task_provider,
        create_redis_task_provider,
        create_url_task_provider,
    )
    from lexigram.tasks.dispatch import (
        delay,
    )
    from lexigram.tasks.dlq import (
        DeadLetterQueue,
        DLQBackend,
        InMemoryDLQBackend,
        PersistentDeadLetterQueue,
    )
    from lexigram.tasks.events import (
        DomainEvent,
        EventBus,
        EventObserver,
        JobEvent,
        TaskCompletedEvent,
        TaskFailedEvent,
        TaskQueuedEvent,
    )
    from lexigram.tasks.execution import (
        INJECTED,
        HandlerRegistry,
        Reject,
        Retry,
        TaskOptions,
        TaskWorker,
        TaskWorkerServices,
        WorkerJobStats,
        WorkerPool,
        shield_cancellation,
    )
    from lexigram.tasks.handles import (
        JobHandle,
    )
    from lexigram.tasks.hooks import (
        HookRegistry,
        TaskCompletedHook,
        TaskEnqueuedHook,
        TaskFailedHook,
        TaskStartedHook,
    )
    from lexigram.tasks.idempotency import (
        IdempotencyManager,
        IdempotentTaskManager,
        InMemoryIdempotencyStore,
    )
    from lexigram.tasks.middleware import (
        LoggingMiddleware,
        MetricsMiddleware,
        TaskExecutionContext,
        TaskMiddleware,
        TaskMiddlewarePipeline,
        TimeoutMiddleware,
    )
    from lexigram.tasks.models import (
        JobProtocol,
        JobTemplateProtocol,
    )
    from lexigram.tasks.observability import (
        ExecutionRecord,
        TaskDashboard,
        TaskHealth,
        TaskMetricsCollector,
    )
    from lexigram.tasks.progress import (
        CacheBackendProgressStore,
        InMemoryProgressStore,
        InMemoryProgressTracker,
        ProgressStore,
        ProgressTracker,
        SyncProgressTracker,
    )
    from lexigram.tasks.results import (
        CacheBackendResultStore,
        InMemoryResultStore,
        ResultStore,
    )
    from lexigram.tasks.scheduled_worker import (
        ScheduledWorker,
    )
    from lexigram.tasks.scheduling import (
        CronExpression,
        InMemorySchedulerStore,
        ScheduledJob,
        SchedulerStore,
        TaskScheduler,
    )
    from lexigram.tasks.workflows import (
        BranchStep,
        InMemoryWorkflowStateStore,
        JobChain,
        JobChord,
        JobGroup,
        TaskChain,
        TaskChord,
        TaskGroup,
        TaskStep,
        Workflow,
        WorkflowHandle,
        WorkflowRunInfo,
        WorkflowStateStore,
        WorkflowStepInfo,
        chain,
    )


__all__ = [
    "INJECTED",
    "BackendConflictError",
    "BackendConnectionError",
    "BackendError",
    "BackendImportError",
    "BackendNotFoundError",
    "BackgroundTaskManager",
    "BranchStep",
    "CacheBackendProgressStore",
    "CacheBackendProtocol",
    "CacheBackendResultStore",
    "CancelOutcome",
    "CancellableQueueProtocol",
    "ConfigIssue",
    "CronExpression",
    "DLQBackend",
    "DeadLetterQueue",
    "DistributedLockProtocol",
    "DomainEvent",
    "DuplicateTaskError",
    "Environment",
    "Err",
    "EventBus",
    "EventObserver",
    "ExecutionRecord",
    "FailureRecord",
    "GlobalRateLimiter",
    "HandlerRegistry",
    "HookRegistry",
    "IdempotencyManager",
    "IdempotencyResult",
    "IdempotencyResultStatus",
    "IdempotentTaskManager",
    "InMemoryDLQBackend",
    "InMemoryIdempotencyStore",
    "InMemoryLock",
    "InMemoryProgressStore",
    "InMemoryProgressTracker",
    "InMemoryResultStore",
    "InMemorySchedulerStore",
    "InMemoryWorkflowStateStore",
    "Job",
    "JobChain",
    "JobChord",
    "JobEvent",
    "JobGroup",
    "JobHandle",
    "JobProtocol",
    "JobResult",
    "JobStatus",
    "JobTemplate",
    "JobTemplateProtocol",
    "LockManager",
    "LoggingMiddleware",
    "MemoryTaskQueue",
    "MetricsMiddleware",
    "NamedTaskConfig",
    "Ok",
    "OnErrorPolicy",
    "PersistentDeadLetterQueue",
    "Priority",
    "ProgressInfo",
    "ProgressSnapshot",
    "ProgressStatus",
    "ProgressStore",
    "ProgressTracker",
    "ProgressTrackerProtocol",
    "QueueFullError",
    "QueueRateLimiter",
    "Reject",
    "Result",
    "ResultStore",
    "Retry",
    "RetryConfig",
    "ScheduledJob",
    "ScheduledWorker",
    "SchedulerStore",
    "StepResult",
    "SyncProgressTracker",
    "TaskBackendConfig",
    "TaskBackendRegistry",
    "TaskBackendSpec",
    "TaskCancelledError",
    "TaskChain",
    "TaskChord",
    "TaskCompletedEvent",
    "TaskCompletedHook",
    "TaskConfig",
    "TaskConfigurationError",
    "TaskDashboard",
    "TaskDependencyCycleError",
    "TaskEnqueuedHook",
    "TaskError",
    "TaskExecutionContext",
    "TaskExecutionError",
    "TaskExecutorProtocol",
    "TaskFailedEvent",
    "TaskFailedHook",
    "TaskFunction",
    "TaskGroup",
    "TaskHealth",
    "TaskMetricsCollector",
    "TaskMiddleware",
    "TaskMiddlewarePipeline",
    "TaskNotFoundError",
    "TaskOptions",
    "TaskProvider",
    "TaskQueueError",
    "TaskQueueProtocol",
    "TaskQueuedEvent",
    "TaskRateLimitConfig",
    "TaskRegistrationError",
    "TaskScheduler",
    "TaskSchedulerConfig",
    "TaskStartedHook",
    "TaskStep",
    "TaskTimeoutConfig",
    "TaskTimeoutError",
    "TaskValidationError",
    "TaskWorker",
    "TaskWorkerConfig",
    "TaskWorkerServices",
    "TasksModule",
    "TimeoutMiddleware",
    "TokenBucket",
    "UniqueTask",
    "WorkerJobStats",
    "WorkerPool",
    "Workflow",
    "WorkflowError",
    "WorkflowHandle",
    "WorkflowResult",
    "WorkflowRunInfo",
    "WorkflowStateStore",
    "WorkflowStatus",
    "WorkflowStepInfo",
    "WorkflowSummary",
    "available_backends",
    "chain",
    "create_memory_task_provider",
    "create_provider_from_config",
    "create_rabbitmq_task_provider",
    "create_redis_task_provider",
    "create_url_task_provider",
    "delay",
    "distributed_lock",
    "get_default_queue",
    "load_backend",
    "scheduled",
    "set_default_queue",
    "shield_cancellation",
    "task",
    "unique_task",
]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("lexigram-tasks-core")
    except PackageNotFoundError:  # running from a source tree without metadata
        return "0.0.0"


_lookup, _names = lazy_exports(__name__)


def __getattr__(name: str) -> Any:
    if name != "__version__":
        return _lookup(name)
    value = globals()[name] = _version()
    return value


def __dir__() -> list[str]:
    return sorted({*_names(), "__version__"})
