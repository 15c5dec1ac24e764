"""Configuration: `TaskConfig`, its sections, `NamedTaskConfig`, loading and validation.

Load from a mapping, a YAML file (``${VAR}`` / ``${VAR:-default}`` interpolation) or
``LEX_TASKS__SECTION__FIELD`` environment variables. Precedence, lowest to highest:
model defaults, the file, the environment (``env_override=True``), explicit overrides
(and, in `TaskProvider` / `TasksModule.configure`, explicit arguments). Invalid values
raise `TaskConfigurationError` with one line per problem (field, value, fix);
`TaskConfig.validate_for_environment` returns `ConfigIssue`s for settings that are valid
but wrong for production. See ``docs/configuration.md``.
"""

from __future__ import annotations

from lexigram.tasks.config._environment import ConfigIssue, Environment
from lexigram.tasks.config._sections import (
    NamedTaskConfig,
    RetryConfig,
    TaskBackendConfig,
    TaskRateLimitConfig,
    TaskSchedulerConfig,
    TaskTimeoutConfig,
    TaskWorkerConfig,
)
from lexigram.tasks.config._task_config import TaskConfig

__all__ = [
    "ConfigIssue",
    "Environment",
    "NamedTaskConfig",
    "RetryConfig",
    "TaskBackendConfig",
    "TaskConfig",
    "TaskRateLimitConfig",
    "TaskSchedulerConfig",
    "TaskTimeoutConfig",
    "TaskWorkerConfig",
]
