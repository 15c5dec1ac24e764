__path__ = __import__("pkgutil").extend_path(__path__, __name__)
# lexigram-tasks: asyncio background tasks that lose no job.
#
# Every public name of the API is importable from here (``from lexigram.tasks import
# TaskProvider, MemoryTaskQueue``). Names load lazily, so importing this package does
# not import a backend, croniter, or anything a program does not use. The line above
# must stay first (house-style §2.3), which is why this module has no docstring and no
# ``from __future__`` import: nothing here needs postponed annotations.
import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("lexigram-tasks-core")
except PackageNotFoundError:  # running from a source tree without metadata
    __version__ = "0.0.0"

_CONTRACTS = "lexigram.contracts.tasks"

# Public name -> module that defines it. One line per name keeps merges trivial.
_EXPORTS: dict[str, str] = {
    # contracts: protocols, value types, enums, errors, Result
    "BackendConflictError": _CONTRACTS,
    "BackendConnectionError": _CONTRACTS,
    "BackendError": _CONTRACTS,
    "BackendImportError": _CONTRACTS,
    "BackendNotFoundError": _CONTRACTS,
    "CacheBackendProtocol": _CONTRACTS,
    "DuplicateTaskError": _CONTRACTS,
    "Err": _CONTRACTS,
    "FailureRecord": _CONTRACTS,
    "IdempotencyResult": _CONTRACTS,
    "IdempotencyResultStatus": _CONTRACTS,
    "Job": _CONTRACTS,
    "JobResult": _CONTRACTS,
    "JobStatus": _CONTRACTS,
    "JobTemplate": _CONTRACTS,
    "Ok": _CONTRACTS,
    "OnErrorPolicy": _CONTRACTS,
    "Priority": _CONTRACTS,
    "ProgressInfo": _CONTRACTS,
    "ProgressSnapshot": _CONTRACTS,
    "ProgressStatus": _CONTRACTS,
    "ProgressTrackerProtocol": _CONTRACTS,
    "QueueFullError": _CONTRACTS,
    "Result": _CONTRACTS,
    "StepResult": _CONTRACTS,
    "TaskBackendSpec": _CONTRACTS,
    "TaskCancelledError": _CONTRACTS,
    "TaskConfigurationError": _CONTRACTS,
    "TaskDecodeError": _CONTRACTS,
    "TaskDependencyCycleError": _CONTRACTS,
    "TaskError": _CONTRACTS,
    "TaskExecutionError": _CONTRACTS,
    "TaskExecutorProtocol": _CONTRACTS,
    "TaskNotFoundError": _CONTRACTS,
    "TaskQueueError": _CONTRACTS,
    "TaskQueueProtocol": _CONTRACTS,
    "TaskRegistrationError": _CONTRACTS,
    "TaskTimeoutError": _CONTRACTS,
    "TaskValidationError": _CONTRACTS,
    "WorkflowError": _CONTRACTS,
    "WorkflowResult": _CONTRACTS,
    "WorkflowStatus": _CONTRACTS,
    "WorkflowSummary": _CONTRACTS,
    # job model under the seed's names (concrete dataclasses)
    "JobProtocol": "lexigram.tasks.models",
    "JobTemplateProtocol": "lexigram.tasks.models",
    "PoolStrategy": "lexigram.tasks.types",
    # backends and discovery
    "MemoryTaskQueue": "lexigram.tasks.backends.memory",
    "available_backends": "lexigram.tasks._backends",
    "load_backend": "lexigram.tasks._backends",
    "TaskBackendRegistry": "lexigram.tasks._backends",
    # configuration
    "NamedTaskConfig": "lexigram.tasks.config",
    "RetryConfig": "lexigram.tasks.config",
    "TaskBackendConfig": "lexigram.tasks.config",
    "TaskConfig": "lexigram.tasks.config",
    "TaskRateLimitConfig": "lexigram.tasks.config",
    "TaskSchedulerConfig": "lexigram.tasks.config",
    "TaskTimeoutConfig": "lexigram.tasks.config",
    "TaskWorkerConfig": "lexigram.tasks.config",
    "ConfigIssue": "lexigram.tasks.config",
    "Environment": "lexigram.tasks.config",
    # execution
    "HandlerRegistry": "lexigram.tasks.execution",
    "TaskWorker": "lexigram.tasks.execution",
    "TaskWorkerServices": "lexigram.tasks.execution",
    "WorkerJobStats": "lexigram.tasks.execution",
    "WorkerPool": "lexigram.tasks.execution",
    # middleware
    "LoggingMiddleware": "lexigram.tasks.middleware",
    "MetricsMiddleware": "lexigram.tasks.middleware",
    "TaskExecutionContext": "lexigram.tasks.middleware",
    "TaskMiddleware": "lexigram.tasks.middleware",
    "TaskMiddlewarePipeline": "lexigram.tasks.middleware",
    "TimeoutMiddleware": "lexigram.tasks.middleware",
    # dead-letter queue
    "DeadLetterQueue": "lexigram.tasks.dlq",
    "DLQBackend": "lexigram.tasks.dlq",
    "InMemoryDLQBackend": "lexigram.tasks.dlq",
    "PersistentDeadLetterQueue": "lexigram.tasks.dlq",
    # results and cache
    "CacheBackendResultStore": "lexigram.tasks.results",
    "InMemoryResultStore": "lexigram.tasks.results",
    "ResultStore": "lexigram.tasks.results",
    "InMemoryCacheBackend": "lexigram.tasks.cache",
    # progress
    "CacheBackendProgressStore": "lexigram.tasks.progress",
    "InMemoryProgressStore": "lexigram.tasks.progress",
    "InMemoryProgressTracker": "lexigram.tasks.progress",
    "ProgressStore": "lexigram.tasks.progress",
    "ProgressTracker": "lexigram.tasks.progress",
    # decorators and dispatch
    "scheduled": "lexigram.tasks.decorators",
    "task": "lexigram.tasks.decorators",
    "TaskFunction": "lexigram.tasks.decorators",
    "get_default_queue": "lexigram.tasks.decorators",
    "set_default_queue": "lexigram.tasks.decorators",
    "get_task_queues": "lexigram.tasks.decorators",
    "set_task_queues": "lexigram.tasks.decorators",
    "delay": "lexigram.tasks.dispatch",
    # concurrency: locks and rate limits
    "DistributedLockProtocol": "lexigram.tasks.concurrency",
    "GlobalRateLimiter": "lexigram.tasks.concurrency",
    "InMemoryLock": "lexigram.tasks.concurrency",
    "LockManager": "lexigram.tasks.concurrency",
    "QueueRateLimiter": "lexigram.tasks.concurrency",
    "TokenBucket": "lexigram.tasks.concurrency",
    "UniqueTask": "lexigram.tasks.concurrency",
    "distributed_lock": "lexigram.tasks.concurrency",
    "unique_task": "lexigram.tasks.concurrency",
    # idempotency
    "IdempotencyManager": "lexigram.tasks.idempotency",
    "IdempotentTaskManager": "lexigram.tasks.idempotency",
    "InMemoryIdempotencyStore": "lexigram.tasks.idempotency",
    # background work
    "BackgroundTaskManager": "lexigram.tasks.background_task_manager",
    "ScheduledWorker": "lexigram.tasks.scheduled_worker",
    # observability
    "ExecutionRecord": "lexigram.tasks.observability",
    "TaskDashboard": "lexigram.tasks.observability",
    "TaskHealth": "lexigram.tasks.observability",
    "TaskMetricsCollector": "lexigram.tasks.observability",
    # hooks and events
    "TaskCompletedHook": "lexigram.tasks.hooks",
    "TaskEnqueuedHook": "lexigram.tasks.hooks",
    "TaskFailedHook": "lexigram.tasks.hooks",
    "TaskStartedHook": "lexigram.tasks.hooks",
    "HookRegistry": "lexigram.tasks.hooks",
    "TaskCompletedEvent": "lexigram.tasks.events",
    "TaskFailedEvent": "lexigram.tasks.events",
    "TaskQueuedEvent": "lexigram.tasks.events",
    "DomainEvent": "lexigram.tasks.events",
    "EventBus": "lexigram.tasks.events",
    # scheduling
    "CronExpression": "lexigram.tasks.scheduling",
    "DependencyResolver": "lexigram.tasks.scheduling",
    "InMemorySchedulerStore": "lexigram.tasks.scheduling",
    "ScheduledJob": "lexigram.tasks.scheduling",
    "SchedulerStore": "lexigram.tasks.scheduling",
    "TaskScheduler": "lexigram.tasks.scheduling",
    # workflows
    "BranchStep": "lexigram.tasks.workflows",
    "InMemoryWorkflowStateStore": "lexigram.tasks.workflows",
    "TaskChain": "lexigram.tasks.workflows",
    "TaskChord": "lexigram.tasks.workflows",
    "TaskGroup": "lexigram.tasks.workflows",
    "TaskStep": "lexigram.tasks.workflows",
    "Workflow": "lexigram.tasks.workflows",
    "WorkflowStateStore": "lexigram.tasks.workflows",
    "chain": "lexigram.tasks.workflows",
    # application integration
    "TaskProvider": "lexigram.tasks.di",
    "TasksModule": "lexigram.tasks.di",
    "create_memory_task_provider": "lexigram.tasks.di",
    "create_provider_from_config": "lexigram.tasks.di",
    "create_rabbitmq_task_provider": "lexigram.tasks.di",
    "create_redis_task_provider": "lexigram.tasks.di",
}

# Static view of the lazy exports for type checkers (names in __all__ count as re-exported).
if TYPE_CHECKING:
    from lexigram.contracts.tasks import (
        BackendConflictError,
        BackendConnectionError,
        BackendError,
        BackendImportError,
        BackendNotFoundError,
        CacheBackendProtocol,
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
        TaskDecodeError,
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
    from lexigram.tasks.cache import (
        InMemoryCacheBackend,
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
        get_task_queues,
        scheduled,
        set_default_queue,
        set_task_queues,
        task,
    )
    from lexigram.tasks.di import (
        TaskProvider,
        TasksModule,
        create_memory_task_provider,
        create_provider_from_config,
        create_rabbitmq_task_provider,
        create_redis_task_provider,
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
        TaskCompletedEvent,
        TaskFailedEvent,
        TaskQueuedEvent,
    )
    from lexigram.tasks.execution import (
        HandlerRegistry,
        TaskWorker,
        TaskWorkerServices,
        WorkerJobStats,
        WorkerPool,
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
        DependencyResolver,
        InMemorySchedulerStore,
        ScheduledJob,
        SchedulerStore,
        TaskScheduler,
    )
    from lexigram.tasks.types import (
        PoolStrategy,
    )
    from lexigram.tasks.workflows import (
        BranchStep,
        InMemoryWorkflowStateStore,
        TaskChain,
        TaskChord,
        TaskGroup,
        TaskStep,
        Workflow,
        WorkflowStateStore,
        chain,
    )

# Kept equal to the export map by a test; a literal so type checkers can read it.
__all__ = [
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
    "ConfigIssue",
    "CronExpression",
    "DLQBackend",
    "DeadLetterQueue",
    "DependencyResolver",
    "DistributedLockProtocol",
    "DomainEvent",
    "DuplicateTaskError",
    "Environment",
    "Err",
    "EventBus",
    "ExecutionRecord",
    "FailureRecord",
    "GlobalRateLimiter",
    "HandlerRegistry",
    "HookRegistry",
    "IdempotencyManager",
    "IdempotencyResult",
    "IdempotencyResultStatus",
    "IdempotentTaskManager",
    "InMemoryCacheBackend",
    "InMemoryDLQBackend",
    "InMemoryIdempotencyStore",
    "InMemoryLock",
    "InMemoryProgressStore",
    "InMemoryProgressTracker",
    "InMemoryResultStore",
    "InMemorySchedulerStore",
    "InMemoryWorkflowStateStore",
    "Job",
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
    "PoolStrategy",
    "Priority",
    "ProgressInfo",
    "ProgressSnapshot",
    "ProgressStatus",
    "ProgressStore",
    "ProgressTracker",
    "ProgressTrackerProtocol",
    "QueueFullError",
    "QueueRateLimiter",
    "Result",
    "ResultStore",
    "RetryConfig",
    "ScheduledJob",
    "ScheduledWorker",
    "SchedulerStore",
    "StepResult",
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
    "TaskDecodeError",
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
    "WorkflowResult",
    "WorkflowStateStore",
    "WorkflowStatus",
    "WorkflowSummary",
    "available_backends",
    "chain",
    "create_memory_task_provider",
    "create_provider_from_config",
    "create_rabbitmq_task_provider",
    "create_redis_task_provider",
    "delay",
    "distributed_lock",
    "get_default_queue",
    "get_task_queues",
    "load_backend",
    "scheduled",
    "set_default_queue",
    "set_task_queues",
    "task",
    "unique_task",
]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        msg = f"module 'lexigram.tasks' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
