"""Constants of lexigram-tasks: environment variable names, defaults and backend type names.

The defaults here are the ones the configuration models use, so code that needs "the
default queue name" reads it from one place.
"""

from __future__ import annotations

from typing import Final

ENV_PREFIX: Final = "LEX_TASKS__"
"""Prefix of the environment variables that configure `TaskConfig` (``LEX_TASKS__WORKER__...``)."""

ENV_NESTED_DELIMITER: Final = "__"
"""Separator between the section and field names in those variables."""

ENV_ENVIRONMENT_VAR: Final = "LEX_ENV"
"""Variable naming the deployment environment (production, staging, development, testing)."""

CONFIG_SECTION: Final = "tasks"
"""Key of the tasks section in an application config file."""

DEFAULT_CONFIG_FILE: Final = "application.yaml"
"""File `TaskConfig.from_yaml` reads when no path is given."""

BACKEND_MEMORY: Final = "memory"
BACKEND_REDIS: Final = "redis"
BACKEND_RABBITMQ: Final = "rabbitmq"
BACKEND_POSTGRES: Final = "postgres"

DEFAULT_BACKEND: Final = BACKEND_MEMORY
DEFAULT_QUEUE_NAME: Final = "tasks"
DEFAULT_WORKER_COUNT: Final = 1
DEFAULT_MAX_CONCURRENT_TASKS: Final = 10
DEFAULT_POLL_INTERVAL: Final = 0.1
DEFAULT_SHUTDOWN_TIMEOUT: Final = 30.0
DEFAULT_TASK_TIMEOUT: Final = 300.0
DEFAULT_MAX_TIMEOUT: Final = 3600.0
DEFAULT_SCHEDULER_TIMEZONE: Final = "UTC"
DEFAULT_SCHEDULER_CHECK_INTERVAL: Final = 1.0
DEFAULT_REDIS_URL: Final = "redis://localhost:6379"
DEFAULT_AMQP_URL: Final = "amqp://localhost:5672/"

__all__ = [
    "BACKEND_MEMORY",
    "BACKEND_POSTGRES",
    "BACKEND_RABBITMQ",
    "BACKEND_REDIS",
    "CONFIG_SECTION",
    "DEFAULT_AMQP_URL",
    "DEFAULT_BACKEND",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_MAX_CONCURRENT_TASKS",
    "DEFAULT_MAX_TIMEOUT",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_QUEUE_NAME",
    "DEFAULT_REDIS_URL",
    "DEFAULT_SCHEDULER_CHECK_INTERVAL",
    "DEFAULT_SCHEDULER_TIMEZONE",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_TASK_TIMEOUT",
    "DEFAULT_WORKER_COUNT",
    "ENV_ENVIRONMENT_VAR",
    "ENV_NESTED_DELIMITER",
    "ENV_PREFIX",
]
