"""Pydantic configuration models of lexigram-tasks.

Field names and defaults follow the published API. Secrets are `SecretStr`, so they never
appear in a repr, a log line or an error message. Constructing a model with a bad value
raises `TaskConfigurationError` (a `ValueError`) with one line per problem, naming the
field, the value and the fix; loading (dict, YAML, environment) lives on `TaskConfig`.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from lexigram.tasks._timezone import resolve_timezone
from lexigram.tasks._worker_settings import RETRY_DEFAULTS, WORKER_DEFAULTS
from lexigram.tasks.config._validation import (
    configuration_error,
    problems_from_validation_error,
)
from lexigram.tasks.constants import (
    CONFIG_SECTION,
    DEFAULT_AMQP_URL,
    DEFAULT_BACKEND,
    DEFAULT_ENQUEUE_TIMEOUT,
    DEFAULT_QUEUE_NAME,
    DEFAULT_REDIS_URL,
)

# True while a model is being validated as part of an outer one (see _Section.__init__).
_NESTED: ContextVar[bool] = ContextVar("lexigram_tasks_config_nested", default=False)


def _fix(text: str) -> dict[str, Any]:
    """Field metadata: the sentence shown after a validation error of that field."""
    return {"fix": text}


# The default factories of the mapping and list fields are functions rather than `dict`
# and `list`: pydantic reads a default factory's signature when it builds the model, and a
# builtin type's is parsed from its text signature by the tokenizer, compiled on first use
# (about 14M instructions, 1 % of a CLI worker's start).
def _empty_mapping() -> dict[str, Any]:
    return {}


def _empty_list() -> list[Any]:
    return []


class _Section(BaseModel):
    """Base of every config model: validated on assignment, unknown keys ignored.

    Validation errors surface as `TaskConfigurationError`, never as pydantic's own
    error, so callers catch one exception type and read one message format.
    """

    # No field takes NaN or an infinity: each is a count, a size or a number of seconds,
    # and an infinite one (rate_limit.per: .inf) broke the backends each in its own way.
    model_config = ConfigDict(extra="ignore", validate_assignment=True, allow_inf_nan=False)

    config_path: ClassVar[str] = CONFIG_SECTION
    """Dotted path of this section inside the application config (for messages)."""

    def __init__(self, /, **data: Any) -> None:
        if _NESTED.get():
            # Built as part of an outer model: let pydantic merge the error locations.
            super().__init__(**data)
            return
        token = _NESTED.set(True)
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = problems_from_validation_error(exc, type(self), root=self.config_path)
            raise configuration_error(problems) from None
        finally:
            _NESTED.reset(token)

    @classmethod
    def model_validate(
        cls,
        obj: Any,
        *,
        strict: bool | None = None,
        extra: Any = None,
        from_attributes: bool | None = None,
        context: Any | None = None,
        by_alias: bool | None = None,
        by_name: bool | None = None,
    ) -> Self:
        """Validate `obj` into this model; errors raise `TaskConfigurationError`.

        Args:
            obj: The data.
            strict: Pydantic's strict type checking (not the unknown-key check).
            extra: Pydantic's per-call extra-key behaviour.
            from_attributes: Read attributes instead of keys.
            context: Validation context.
            by_alias: Validate by alias.
            by_name: Validate by field name.

        Returns:
            The model.

        Raises:
            TaskConfigurationError: Some value is invalid.
        """
        token = _NESTED.set(True)
        try:
            return super().model_validate(
                obj,
                strict=strict,
                extra=extra,
                from_attributes=from_attributes,
                context=context,
                by_alias=by_alias,
                by_name=by_name,
            )
        except ValidationError as exc:
            problems = problems_from_validation_error(exc, cls, root=cls.config_path)
            raise configuration_error(problems) from None
        finally:
            _NESTED.reset(token)

    @classmethod
    def _validate_raw(cls, obj: Any) -> Self:
        """Pydantic's own validation: raises its `ValidationError` (call with _NESTED set)."""
        return super().model_validate(obj)

    def __setattr__(self, name: str, value: Any) -> None:
        # Pydantic stores the value before the model's own checks (mode "after") run,
        # and leaves one they refuse in place: the old value goes back, so that a
        # refused assignment (`config.backends = [...]` beside a backend URL) changes
        # nothing.
        known = name in type(self).model_fields
        before = self.__dict__.get(name)
        fields_set = set(self.model_fields_set)
        try:
            super().__setattr__(name, value)
        except ValidationError as exc:
            if known:
                self.__dict__[name] = before
                object.__setattr__(self, "__pydantic_fields_set__", fields_set)
            problems = problems_from_validation_error(exc, type(self), root=self.config_path)
            raise configuration_error(problems) from None


class RetryConfig(_Section):
    """Retry backoff: delay = min(max_delay, initial_delay * backoff_factor**attempt) ± jitter.

    Attributes:
        initial_delay: Seconds before the first retry.
        max_delay: Upper bound of any retry delay, in seconds.
        backoff_factor: Multiplier applied per failed attempt.
        jitter: Fraction (0..1) of the delay randomised to spread retries out.
    """

    config_path: ClassVar[str] = "tasks.retry"

    initial_delay: float = Field(
        default=RETRY_DEFAULTS.initial_delay,
        ge=0.0,
        json_schema_extra=_fix("Set a delay in seconds ≥ 0, e.g. 1.0."),
    )
    max_delay: float = Field(
        default=RETRY_DEFAULTS.max_delay,
        ge=0.0,
        json_schema_extra=_fix("Set a delay in seconds ≥ 0, e.g. 300."),
    )
    backoff_factor: float = Field(
        default=RETRY_DEFAULTS.backoff_factor,
        ge=1.0,
        json_schema_extra=_fix("Set a factor ≥ 1, e.g. 2.0."),
    )
    jitter: float = Field(
        default=RETRY_DEFAULTS.jitter,
        ge=0.0,
        le=1.0,
        json_schema_extra=_fix("Set a fraction between 0 and 1, e.g. 0.25."),
    )


class TaskBackendConfig(_Section):
    """Configuration for the task queue backend (single-backend mode).

    With a ``backends`` list, only `enqueue_timeout` (one deadline for every queue)
    applies; setting any of the other keys here then is a configuration error.

    Attributes:
        type: Backend type: an entry-point name such as 'memory', 'redis', 'rabbitmq', 'postgres'.
        url: Connection URL for any backend type; wins over the per-type fields below.
        redis_url: Redis connection URL (type 'redis').
        amqp_url: AMQP connection URL (type 'rabbitmq').
        postgres_dsn: PostgreSQL DSN (type 'postgres').
        queue_name: Queue name.
        options: Backend-specific options passed through to the backend factory.
        enqueue_timeout: Seconds an enqueue (``.delay()``, ``enqueue_job``, the CLI's
            ``enqueue``) may take before it fails with a clear error, so that a web
            request does not hang while the broker is down; None waits as long as the
            backend's own deadlines allow.
    """

    config_path: ClassVar[str] = "tasks.backend"
    keys_set_per_backend: ClassVar[tuple[str, ...]] = (
        "type",
        "url",
        "redis_url",
        "amqp_url",
        "postgres_dsn",
        "queue_name",
        "options",
    )
    """Keys that each entry of a `backends` list holds instead: with one, they go there."""

    type: str = Field(
        default=DEFAULT_BACKEND,
        min_length=1,
        json_schema_extra=_fix("Name an installed backend: memory, redis, rabbitmq or postgres."),
    )
    url: SecretStr | None = None
    redis_url: SecretStr = SecretStr(DEFAULT_REDIS_URL)
    amqp_url: SecretStr = SecretStr(DEFAULT_AMQP_URL)
    postgres_dsn: SecretStr | None = None
    queue_name: str = Field(
        default=DEFAULT_QUEUE_NAME, min_length=1, json_schema_extra=_fix("Name the queue.")
    )
    options: dict[str, Any] = Field(default_factory=_empty_mapping)
    enqueue_timeout: float | None = Field(
        default=DEFAULT_ENQUEUE_TIMEOUT,
        gt=0.0,
        json_schema_extra=_fix("Set a positive number of seconds, e.g. 5, or null for none."),
    )


class TaskWorkerConfig(_Section):
    """Configuration for task workers.

    Attributes:
        worker_count: Number of workers in the pool (0 runs no worker in this process).
        max_concurrent_tasks: Jobs one worker runs at the same time.
        poll_interval: Longest wait, in seconds, of one idle dequeue call before the
            worker re-checks its stop flag (not a sleep: the queue wakes it earlier).
        prefetch_window: Seconds of work a worker leases ahead of its free slots, so
            that a slot that frees starts its next job without a round trip to the
            queue: as many jobs as it finished in its last window of this length, at
            most `max_concurrent_tasks`. A held job waits about this long or less, so
            other workers and later jobs of higher priority are not kept waiting behind
            it, and long jobs are barely held; 0 turns prefetching off.
        shutdown_timeout: Seconds a graceful stop waits for running jobs.
        default_timeout: Timeout, in seconds, of a job that sets none.
        max_timeout: Upper bound of any job's timeout.
        enforce_timeout: Whether timeouts are enforced at all.
        retry: Backoff between retries of a failed job.
        max_deliveries: Deliveries of one job not explained by its retries (a worker
            died or released it mid-run) after which it is dead-lettered as a crash loop.
        log_jobs: Log one line at INFO for every job that completes (task, job id,
            duration, attempt); failures are logged either way.
        loop_lag_threshold: Seconds the event loop may be blocked (a task calling
            blocking code) before the worker warns, naming the running tasks; 0 turns
            the monitor off.
        metrics_port: Port on which ``lexigram-tasks worker`` serves Prometheus
            metrics (like ``--metrics-port``; needs prometheus-client); None serves none.
        tracing: Make an OpenTelemetry span of each job attempt, a child of the span
            that enqueued the job (only when opentelemetry-api is installed).
    """

    config_path: ClassVar[str] = "tasks.worker"

    worker_count: int = Field(
        default=WORKER_DEFAULTS.worker_count,
        ge=0,
        json_schema_extra=_fix("Set a non-negative number of workers."),
    )
    max_concurrent_tasks: int = Field(
        default=WORKER_DEFAULTS.max_concurrent_tasks,
        ge=1,
        json_schema_extra=_fix("Set how many jobs one worker may run at once, at least 1."),
    )
    poll_interval: float = Field(
        default=WORKER_DEFAULTS.poll_interval,
        gt=0.0,
        json_schema_extra=_fix("Set a positive number of seconds, e.g. 0.1."),
    )
    prefetch_window: float = Field(
        default=WORKER_DEFAULTS.prefetch_window,
        ge=0.0,
        json_schema_extra=_fix("Set seconds ≥ 0, e.g. 0.1 (0 turns prefetching off)."),
    )
    shutdown_timeout: float = Field(
        default=WORKER_DEFAULTS.shutdown_timeout,
        ge=0.0,
        json_schema_extra=_fix("Set seconds ≥ 0 to wait for running jobs."),
    )
    default_timeout: float = Field(
        default=WORKER_DEFAULTS.default_timeout,
        gt=0.0,
        json_schema_extra=_fix("Set a positive number of seconds."),
    )
    max_timeout: float = Field(
        default=WORKER_DEFAULTS.max_timeout,
        gt=0.0,
        json_schema_extra=_fix("Set a positive number of seconds."),
    )
    enforce_timeout: bool = WORKER_DEFAULTS.enforce_timeout
    retry: RetryConfig = Field(default_factory=RetryConfig)
    max_deliveries: int = Field(
        default=WORKER_DEFAULTS.max_deliveries,
        ge=1,
        json_schema_extra=_fix("Set how many unexplained deliveries to allow, ≥ 1."),
    )
    log_jobs: bool = WORKER_DEFAULTS.log_jobs
    loop_lag_threshold: float = Field(
        default=WORKER_DEFAULTS.loop_lag_threshold,
        ge=0.0,
        json_schema_extra=_fix("Set seconds ≥ 0, e.g. 0.5 (0 turns the loop-lag warning off)."),
    )
    metrics_port: int | None = Field(
        default=WORKER_DEFAULTS.metrics_port,
        ge=0,
        le=65535,
        json_schema_extra=_fix("Set a TCP port 0-65535, e.g. 9108, or leave it unset."),
    )
    tracing: bool = WORKER_DEFAULTS.tracing


class TaskSchedulerConfig(_Section):
    """Configuration for the cron scheduler.

    Attributes:
        enabled: Whether the scheduler runs.
        check_interval: Seconds between checks for due schedules.
        timezone: IANA timezone in which cron expressions are evaluated.
        namespace: The application owning the schedules this config's schedulers
            save; only schedulers of the same namespace restore and fire them. None:
            the APP's module for ``lexigram-tasks scheduler``, ``queue:<primary
            queue>`` for `TaskProvider`.
        adopt_unowned: Take over stored schedules saved without a namespace (by an
            older version) at restore, instead of only those the application declares.
    """

    config_path: ClassVar[str] = "tasks.scheduler"

    enabled: bool = True
    check_interval: float = Field(
        default=1.0, gt=0.0, json_schema_extra=_fix("Set a positive number of seconds, e.g. 1.0.")
    )
    timezone: str = Field(
        default="UTC",
        min_length=1,
        json_schema_extra=_fix(
            "Use an IANA name such as 'UTC' or 'Europe/Berlin' (without a system timezone "
            "database, install the tzdata package)."
        ),
    )
    namespace: str | None = Field(
        default=None,
        min_length=1,
        json_schema_extra=_fix("Name the application, e.g. 'billing', or leave it out."),
    )
    adopt_unowned: bool = False

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        # Checked here, so a bad name fails when the configuration is read, through every
        # door, rather than when a scheduler first evaluates a schedule.
        try:
            resolve_timezone(value)
        except ValueError:
            msg = "is not a known IANA timezone"
            raise ValueError(msg) from None
        return value


class TaskRateLimitConfig(_Section):
    """Configuration for the global rate limit applied to job starts.

    Attributes:
        enabled: Whether the limit applies.
        rate: Jobs allowed per period.
        per: Period length in seconds.
        burst: Bucket capacity (defaults to `rate`).
    """

    config_path: ClassVar[str] = "tasks.rate_limit"

    enabled: bool = False
    rate: int = Field(
        default=100, gt=0, json_schema_extra=_fix("Set how many jobs may start per period, ≥ 1.")
    )
    per: float = Field(
        default=1.0, gt=0.0, json_schema_extra=_fix("Set the period in seconds, e.g. 1.0.")
    )
    burst: int | None = Field(
        default=None, gt=0, json_schema_extra=_fix("Set a bucket size ≥ 1, or leave it out.")
    )


class TaskTimeoutConfig(_Section):
    """Configuration for task timeout behaviour.

    Attributes:
        default_timeout: Timeout, in seconds, of a job that sets none.
        max_timeout: Upper bound of any job's timeout.
        enforce_timeout: Whether timeouts are enforced at all.
    """

    config_path: ClassVar[str] = "tasks.timeout"

    default_timeout: float = Field(
        default=WORKER_DEFAULTS.default_timeout,
        gt=0.0,
        json_schema_extra=_fix("Set a positive number of seconds."),
    )
    max_timeout: float = Field(
        default=WORKER_DEFAULTS.max_timeout,
        gt=0.0,
        json_schema_extra=_fix("Set a positive number of seconds."),
    )
    enforce_timeout: bool = WORKER_DEFAULTS.enforce_timeout


class NamedTaskConfig(_Section):
    """Configuration for a single named task queue backend.

    Used in `TaskConfig.backends` to declare several queues, each bound in the container
    as ``Annotated[TaskQueueProtocol, Named(name)]``; the primary one (or the first) is
    also bound unnamed.

    Example (YAML)::

        backends:
          - name: primary
            primary: true
            type: redis
            redis_url: "${REDIS_URL}"
          - name: notifications
            type: rabbitmq
            amqp_url: "${AMQP_URL}"

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

    config_path: ClassVar[str] = "NamedTaskConfig"
    keys_set_elsewhere: ClassVar[dict[str, str]] = {
        "enqueue_timeout": "tasks.backend.enqueue_timeout (one deadline for every queue)"
    }
    """Keys of the single-backend section that are not per backend: where they go."""

    name: str = Field(
        min_length=1, json_schema_extra=_fix("Give every backend a unique, non-empty name.")
    )
    primary: bool = False
    type: str = Field(
        default=DEFAULT_BACKEND,
        min_length=1,
        json_schema_extra=_fix("Name an installed backend: memory, redis, rabbitmq or postgres."),
    )
    url: SecretStr | None = None
    redis_url: SecretStr | None = None
    amqp_url: SecretStr | None = None
    postgres_dsn: SecretStr | None = None
    queue_name: str = Field(
        default=DEFAULT_QUEUE_NAME, min_length=1, json_schema_extra=_fix("Name the queue.")
    )
    options: dict[str, Any] = Field(default_factory=_empty_mapping)
