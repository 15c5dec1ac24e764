"""The settings a worker runs with, as a plain record: the defaults of `TaskWorkerConfig`.

`TaskWorkerConfig` (pydantic) is what users write and what is validated; its defaults
are read from the records here, so each default is written once. The engine reads a
`TaskWorkerConfig` or a `WorkerSettings` alike (the same attribute names), which lets
``lexigram-tasks worker`` run with every default, when nothing is configured, without
importing pydantic: a third of the worker's start-up instructions went to pydantic and
the configuration models ("The unconfigured worker starts without pydantic" in
``docs/design-decisions.md``). A test keeps the fields and defaults of both equal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from lexigram.tasks.constants import (
    DEFAULT_MAX_CONCURRENT_TASKS,
    DEFAULT_MAX_TIMEOUT,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_TASK_TIMEOUT,
    DEFAULT_WORKER_COUNT,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    from lexigram.tasks.config import RetryConfig, TaskWorkerConfig


class RetrySettings(NamedTuple):
    """Retry backoff, as `RetryConfig` describes it (its defaults)."""

    initial_delay: float = 1.0
    max_delay: float = 300.0
    backoff_factor: float = 2.0
    jitter: float = 0.25


class WorkerSettings(NamedTuple):
    """Worker settings, as `TaskWorkerConfig` describes them (its defaults)."""

    worker_count: int = DEFAULT_WORKER_COUNT
    max_concurrent_tasks: int = DEFAULT_MAX_CONCURRENT_TASKS
    poll_interval: float = DEFAULT_POLL_INTERVAL
    prefetch_window: float = 0.1
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    default_timeout: float = DEFAULT_TASK_TIMEOUT
    max_timeout: float = DEFAULT_MAX_TIMEOUT
    enforce_timeout: bool = True
    retry: RetrySettings = RetrySettings()
    max_deliveries: int = 5
    log_jobs: bool = False
    loop_lag_threshold: float = 0.5
    metrics_port: int | None = None
    tracing: bool = True


WORKER_DEFAULTS = WorkerSettings()
"""Every worker setting at its default."""

RETRY_DEFAULTS = RetrySettings()
"""Every retry setting at its default."""

if TYPE_CHECKING:
    AnyWorkerSettings: TypeAlias = TaskWorkerConfig | WorkerSettings
    """What the engine reads its settings from: the validated model or the plain record."""
    AnyRetrySettings: TypeAlias = RetryConfig | RetrySettings
    """What the backoff reads: the validated model or the plain record."""


def settings_or_model_defaults(config: AnyWorkerSettings | None) -> AnyWorkerSettings:
    """`config`, or a `TaskWorkerConfig` at its defaults: what a worker given none runs with.

    The model is imported only then, so a worker given plain settings (the CLI's, when
    nothing is configured) never loads pydantic.
    """
    if config is not None:
        return config
    from lexigram.tasks.config import TaskWorkerConfig  # noqa: PLC0415

    return TaskWorkerConfig()


__all__ = [
    "RETRY_DEFAULTS",
    "WORKER_DEFAULTS",
    "RetrySettings",
    "WorkerSettings",
    "settings_or_model_defaults",
]
