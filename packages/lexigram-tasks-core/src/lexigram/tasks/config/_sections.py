"""Pydantic configuration models of lexigram-tasks.

Field names and defaults follow the published API. Secrets are `SecretStr` so they
never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class _Section(BaseModel):
    """Base of every config section: validated on assignment, unknown keys ignored."""

    model_config = ConfigDict(extra="ignore", validate_assignment=True)


class RetryConfig(_Section):
    """Retry backoff: delay = min(max_delay, initial_delay * backoff_factor**attempt) ± jitter.

    Attributes:
        initial_delay: Seconds before the first retry.
        max_delay: Upper bound of any retry delay, in seconds.
        backoff_factor: Multiplier applied per failed attempt.
        jitter: Fraction (0..1) of the delay randomised to spread retries out.
    """

    initial_delay: float = Field(default=1.0, ge=0.0)
    max_delay: float = Field(default=300.0, ge=0.0)
    backoff_factor: float = Field(default=2.0, ge=1.0)
    jitter: float = Field(default=0.25, ge=0.0, le=1.0)


class TaskBackendConfig(_Section):
    """Configuration for the task queue backend (single-backend mode).

    Attributes:
        type: Backend type: an entry-point name such as 'memory', 'redis', 'rabbitmq', 'postgres'.
        url: Connection URL for any backend type; wins over the per-type fields below.
        redis_url: Redis connection URL (type 'redis').
        amqp_url: AMQP connection URL (type 'rabbitmq').
        postgres_dsn: PostgreSQL DSN (type 'postgres').
        queue_name: Queue name.
        options: Backend-specific options passed through to the backend factory.
    """

    type: str = "memory"
    url: SecretStr | None = None
    redis_url: SecretStr = SecretStr("redis://localhost:6379")
    amqp_url: SecretStr = SecretStr("amqp://localhost:5672/")
    postgres_dsn: SecretStr | None = None
    queue_name: str = "tasks"
    options: dict[str, Any] = Field(default_factory=dict)


class TaskWorkerConfig(_Section):
    """Configuration for task workers.

    Attributes:
        worker_count: Number of workers in the pool.
        max_concurrent_tasks: Jobs one worker runs at the same time.
        poll_interval: Longest wait, in seconds, of one idle dequeue call before the
            worker re-checks its stop flag (not a sleep: the queue wakes it earlier).
        shutdown_timeout: Seconds a graceful stop waits for running jobs.
        default_timeout: Timeout, in seconds, of a job that sets none.
        max_timeout: Upper bound of any job's timeout.
        enforce_timeout: Whether timeouts are enforced at all.
        retry: Backoff between retries of a failed job.
    """

    worker_count: int = Field(default=1, ge=0)
    max_concurrent_tasks: int = Field(default=10, ge=1)
    poll_interval: float = Field(default=0.1, gt=0.0)
    shutdown_timeout: float = Field(default=30.0, ge=0.0)
    default_timeout: float = Field(default=300.0, gt=0.0)
    max_timeout: float = Field(default=3600.0, gt=0.0)
    enforce_timeout: bool = True
    retry: RetryConfig = Field(default_factory=RetryConfig)


class TaskSchedulerConfig(_Section):
    """Configuration for the cron scheduler.

    Attributes:
        enabled: Whether the scheduler runs.
        check_interval: Seconds between checks for due schedules.
        timezone: IANA timezone in which cron expressions are evaluated.
    """

    enabled: bool = True
    check_interval: float = Field(default=1.0, gt=0.0)
    timezone: str = "UTC"


class TaskRateLimitConfig(_Section):
    """Configuration for the global rate limit applied to job starts.

    Attributes:
        enabled: Whether the limit applies.
        rate: Jobs allowed per period.
        per: Period length in seconds.
        burst: Bucket capacity (defaults to `rate`).
    """

    enabled: bool = False
    rate: int = Field(default=100, gt=0)
    per: float = Field(default=1.0, gt=0.0)
    burst: int | None = Field(default=None, gt=0)


class TaskTimeoutConfig(_Section):
    """Configuration for task timeout behaviour."""

    default_timeout: float = Field(default=300.0, gt=0.0)
    max_timeout: float = Field(default=3600.0, gt=0.0)
    enforce_timeout: bool = True


class NamedTaskConfig(BaseModel):
    """Configuration for a single named task queue backend.

    Used in `TaskConfig.backends` to declare several queues, each bound in the
    container as ``Annotated[TaskQueueProtocol, Named(name)]``.

    Attributes:
        name: Unique backend identifier; the Named() DI key.
        primary: Whether this backend also gets the unnamed TaskQueueProtocol binding.
        type: Backend type ('memory', 'redis', 'rabbitmq', 'postgres', or a plugin's).
        url: Connection URL for any backend type; wins over the per-type fields below.
        redis_url: Redis connection URL (type 'redis').
        amqp_url: AMQP connection URL (type 'rabbitmq').
        postgres_dsn: PostgreSQL DSN (type 'postgres').
        queue_name: Queue name for this backend instance.
        options: Backend-specific options passed through to the backend factory.
    """

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    name: str
    primary: bool = False
    type: str = "memory"
    url: SecretStr | None = None
    redis_url: SecretStr | None = None
    amqp_url: SecretStr | None = None
    postgres_dsn: SecretStr | None = None
    queue_name: str = "tasks"
    options: dict[str, Any] = Field(default_factory=dict)


class TaskConfig(BaseModel):
    """Hierarchical root configuration for lexigram-tasks.

    Attributes:
        name: Configuration name.
        enabled: Whether the tasks module is enabled.
        backend: Single-backend configuration (used when `backends` is empty).
        worker: Worker settings.
        scheduler: Scheduler settings.
        retry: Retry backoff settings.
        rate_limit: Global rate limit.
        timeout: Timeout settings.
        extra: Extra configuration.
        backends: Named backends (multi-backend mode).
    """

    model_config = ConfigDict(extra="ignore", validate_assignment=True)

    name: str = "tasks"
    enabled: bool = True
    backend: TaskBackendConfig = Field(default_factory=TaskBackendConfig)
    worker: TaskWorkerConfig = Field(default_factory=TaskWorkerConfig)
    scheduler: TaskSchedulerConfig = Field(default_factory=TaskSchedulerConfig)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    rate_limit: TaskRateLimitConfig = Field(default_factory=TaskRateLimitConfig)
    timeout: TaskTimeoutConfig = Field(default_factory=TaskTimeoutConfig)
    extra: dict[str, Any] = Field(default_factory=dict)
    backends: list[NamedTaskConfig] = Field(default_factory=list)
