"""Constants of lexigram-tasks: environment variable names and defaults.

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

DEFAULT_CONFIG_NAME: Final = "tasks"
"""`TaskConfig.name` by default: the prefix of its rate-limit buckets."""

DEFAULT_CONFIG_FILE: Final = "application.yaml"
"""File `TaskConfig.from_yaml` reads when no path is given."""

BACKEND_MEMORY: Final = "memory"
"""Type name of the in-memory backend that ships inside the core."""

FIRST_PARTY_BACKENDS: Final = ("postgres", "rabbitmq", "redis")
FIRST_PARTY_SCHEMES: Final = {
    "sqlite": "sqlite",
    "redis": "redis",
    "rediss": "redis",
    "redis+sentinel": "redis",
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "postgres": "postgres",
    "postgresql": "postgres",
}
"""URL scheme -> the first-party backend serving it, to name what to install when the
backend is not installed (installed backends declare their schemes themselves)."""
"""Extras of the ``lexigram-tasks`` distribution, one per first-party backend.

Used only to suggest ``pip install "lexigram-tasks[<type>]"`` for a backend that is not
installed; the core reads everything else about a backend from the backend itself. A
test keeps this equal to the extras declared in ``packages/lexigram-tasks``.
"""

DEFAULT_BACKEND: Final = BACKEND_MEMORY
DEFAULT_QUEUE_NAME: Final = "tasks"
DEFAULT_WORKER_COUNT: Final = 1
DEFAULT_MAX_CONCURRENT_TASKS: Final = 10
DEFAULT_POLL_INTERVAL: Final = 0.1
DEFAULT_SHUTDOWN_TIMEOUT: Final = 30.0
DEFAULT_TASK_TIMEOUT: Final = 300.0
DEFAULT_MAX_TIMEOUT: Final = 3600.0
DEFAULT_ENQUEUE_TIMEOUT: Final = 5.0
"""Seconds an enqueue of the core may take before it fails (``tasks.backend.enqueue_timeout``)."""

DEFAULT_CONNECT_TIMEOUT: Final = 5.0
"""Seconds a start (a command, `TaskProvider.boot`) waits at least for the backend's first
answer before saying it is unreachable: the command line's ``--connect-timeout`` default
(see `lexigram.tasks._backends._probe`)."""

DEFAULT_SCHEDULER_TIMEZONE: Final = "UTC"
DEFAULT_SCHEDULER_CHECK_INTERVAL: Final = 1.0
DEFAULT_REDIS_URL: Final = "redis://localhost:6379"

DEFAULT_DB_ENV: Final = "LEXIGRAM_TASKS_DB"
"""Variable naming the database file the command line uses when nothing is configured."""

DEFAULT_DB_FILE: Final = "lexigram-tasks.db"
"""That file's default name, in the working directory."""

DEFAULT_DB_SCHEME: Final = "sqlite"
"""URL scheme of the command line's default backend (used when it is installed)."""
DEFAULT_AMQP_URL: Final = "amqp://localhost:5672/"

WORKFLOW_STEP_KEY: Final = "lexigram.workflow"
"""`Job.metadata` key of a queue-driven workflow step: where the step sits in its run."""

IMMUTABLE_STEP_KEY: Final = "lexigram.immutable"
"""`Job.metadata` key set by ``.si()``: the step does not receive the previous result."""

MIN_ID_PREFIX: Final = 4
"""Fewest characters of an id that the commands look up by prefix (jobs, dead letters,
schedules): shorter ones match too much, and an empty one would match anything."""

WORKER_KEY_PREFIX: Final = "lexigram-tasks:worker:"
"""Key prefix under which running CLI workers register in the backend's cache store."""


def scheduled_task_id(task_name: str) -> str:
    """The schedule id of a ``@scheduled`` task: one in every process that declares it.

    Each occurrence's idempotency key is made of it, so a `TaskProvider` and the
    ``lexigram-tasks scheduler`` command running the same task fire an occurrence once.
    """
    return f"scheduled:{task_name}"


__all__ = [
    "BACKEND_MEMORY",
    "CONFIG_SECTION",
    "DEFAULT_AMQP_URL",
    "DEFAULT_BACKEND",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_CONFIG_NAME",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_DB_ENV",
    "DEFAULT_DB_FILE",
    "DEFAULT_DB_SCHEME",
    "DEFAULT_ENQUEUE_TIMEOUT",
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
    "FIRST_PARTY_BACKENDS",
    "FIRST_PARTY_SCHEMES",
    "IMMUTABLE_STEP_KEY",
    "MIN_ID_PREFIX",
    "WORKER_KEY_PREFIX",
    "WORKFLOW_STEP_KEY",
    "scheduled_task_id",
]
