"""Configuration models: `TaskConfig` and its sections, `NamedTaskConfig`."""

from __future__ import annotations

from lexigram.tasks.config._sections import (
    NamedTaskConfig,
    RetryConfig,
    TaskBackendConfig,
    TaskConfig,
    TaskRateLimitConfig,
    TaskSchedulerConfig,
    TaskTimeoutConfig,
    TaskWorkerConfig,
)

__all__ = [
    "NamedTaskConfig",
    "RetryConfig",
    "TaskBackendConfig",
    "TaskConfig",
    "TaskRateLimitConfig",
    "TaskSchedulerConfig",
    "TaskTimeoutConfig",
    "TaskWorkerConfig",
]
