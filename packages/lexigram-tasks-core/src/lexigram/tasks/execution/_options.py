"""A task's options (`TaskOptions`) and the exceptions a handler raises to steer retries.

The worker decides how each job runs from the options of the task it is registered
under, whatever produced the job (`.delay()`, `Job(name=...)`, the CLI, a schedule, a
service that only knows the task's name). A job overrides an option only where its
producer set the value explicitly (`Job.max_retries` / `Job.timeout` not None, e.g.
through ``apply_async(max_retries=...)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lexigram.contracts.tasks import DEFAULT_MAX_RETRIES, Job, Priority
from lexigram.tasks.concurrency._task_rate import RateLimit

ExceptionTypes = tuple[type[BaseException], ...]


class Reject(Exception):  # noqa: N818 - the name users know from Celery
    """Raise in a handler to fail the job for good: it is dead-lettered at once, unretried.

    Use it for failures that no retry can fix (a record that no longer exists, input
    that will never validate).

    Example:
        @task
        async def charge(order_id: str) -> None:
            order = await orders.get(order_id)
            if order is None:
                raise Reject(f"order {order_id} does not exist")
    """

    def __init__(self, reason: str = "rejected by the task") -> None:
        super().__init__(reason)
        self.reason = reason


class Retry(Exception):  # noqa: N818 - the name users know from Celery
    """Raise in a handler to have the job retried after `delay` seconds.

    The attempt counts against the task's `max_retries`: once they are used up, the
    job is dead-lettered like any other failure.

    Args:
        delay: Seconds before the retry (None: the task's backoff decides).
        reason: Why, recorded as the attempt's error.

    Example:
        @task(max_retries=10)
        async def poll(report_id: str) -> bytes:
            report = await api.report(report_id)
            if not report.ready:
                raise Retry(delay=30, reason="report not ready yet")
            return report.body
    """

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        if delay is not None and not delay >= 0:
            msg = f"Retry(delay={delay!r}): the delay must be 0 or more seconds (or None)."
            raise ValueError(msg)
        super().__init__(reason)
        self.delay = delay
        self.reason = reason


def _exception_types(name: str, value: Iterable[Any]) -> ExceptionTypes:
    types = tuple(value)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            msg = (
                f"@task({name}=...) takes exception classes, got {item!r}. Pass e.g. "
                f"{name}=(ConnectionError, TimeoutError)."
            )
            raise TypeError(msg)
    return types


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How the worker runs every job of one task (set with ``@task(...)``).

    None means "not set here": the worker's configuration decides (`TaskWorkerConfig`).

    Attributes:
        max_retries: Retries after a failed attempt (None: `DEFAULT_MAX_RETRIES`, 3).
        timeout: Seconds an attempt may run (None: `TaskWorkerConfig.default_timeout`);
            always capped at `TaskWorkerConfig.max_timeout`.
        priority: Priority `.delay()` gives the task's jobs (higher runs first).
        queue: Name of the queue `.delay()` enqueues on ("default": the default queue).
        retry_on: Only these exception types are retried (empty: every exception).
        dont_retry_on: These exception types are never retried (they win over
            `retry_on`); the job is dead-lettered at once.
        retry_backoff: Seconds before the first retry, doubling on each further
            retry, as Celery's ``retry_backoff`` (None: `TaskWorkerConfig.retry`).
        retry_backoff_max: Longest delay between retries, in seconds, as Celery's
            ``retry_backoff_max`` (None: `TaskWorkerConfig.retry.max_delay`).
        retry_jitter: Randomise each delay to spread retries out, as Celery's
            ``retry_jitter`` (None: as `TaskWorkerConfig.retry.jitter` says).
        store_result: Store each job's result in the worker's result store (False for
            tasks whose result nobody reads).
        rate_limit: How often the task's jobs may start, shared by every worker
            process where the backend can share it (None: no limit); set with
            ``@task(rate_limit="10/s")``.
    """

    max_retries: int | None = None
    timeout: float | None = None
    priority: int = int(Priority.NORMAL)
    queue: str = "default"
    retry_on: ExceptionTypes = ()
    dont_retry_on: ExceptionTypes = ()
    retry_backoff: float | None = None
    retry_backoff_max: float | None = None
    retry_jitter: bool | None = None
    store_result: bool = True
    rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        if self.max_retries is not None and self.max_retries < 0:
            msg = f"@task(max_retries={self.max_retries!r}): use 0 or more (0: never retry)."
            raise ValueError(msg)
        if self.timeout is not None and not self.timeout > 0:
            msg = f"@task(timeout={self.timeout!r}): use a positive number of seconds."
            raise ValueError(msg)
        for name in ("retry_backoff", "retry_backoff_max"):
            value = getattr(self, name)
            if value is not None and not value >= 0:
                msg = f"@task({name}={value!r}): use 0 or more seconds (or None)."
                raise ValueError(msg)
        object.__setattr__(self, "retry_on", _exception_types("retry_on", self.retry_on))
        object.__setattr__(
            self, "dont_retry_on", _exception_types("dont_retry_on", self.dont_retry_on)
        )

    def max_retries_for(self, job: Job) -> int:
        """Retries `job` gets: the job's own value if its producer set one, else the task's."""
        if job.max_retries is not None:
            return job.max_retries
        return self.max_retries if self.max_retries is not None else DEFAULT_MAX_RETRIES

    def retries(self, exc: BaseException) -> bool:
        """True when a failure raising `exc` may be retried (`retry_on`/`dont_retry_on`)."""
        if self.dont_retry_on and isinstance(exc, self.dont_retry_on):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)


DEFAULT_OPTIONS = TaskOptions()
"""The options of a handler registered without any (a plain function)."""


def options_of(handler: Any) -> TaskOptions:
    """The options a handler carries (a ``@task`` function's), else `DEFAULT_OPTIONS`."""
    options = getattr(handler, "options", None)
    return options if isinstance(options, TaskOptions) else DEFAULT_OPTIONS
