"""`@task` and `@scheduled`: turn a function into a task you can call, enqueue, or schedule.

A decorated function still runs when called directly. ``await fn.delay(...)`` enqueues
a job on the queue the task is declared for: ``@task(queue="emails")`` goes to the queue
named ``emails`` (a backend of that name, or serving that queue name, registered by the
tasks provider at boot or with `set_task_queues`; else the queue ``emails`` of the
running provider's or worker command's own backend), the default ``"default"`` to the
application's default queue (`set_default_queue`). ``await fn.apply_async(queue, ...)``
enqueues on a given queue, and ``fn.signature(...)`` / ``fn.s(...)`` only build the
`Job`. Arguments are typed with `ParamSpec`, so a type checker flags a wrong call to
``delay`` or ``s`` just as it would flag a wrong direct call.

The task's options (``fn.options``, a `TaskOptions`) are of two kinds. What the worker
decides (retries and their backoff, the timeout, the rate limit, whether the result is
stored) is not copied into the jobs: the worker runs every job of the task with the
options it has registered, so a job made by ``Job(name=...)``, the CLI or a schedule
behaves like one made by ``.delay()``. What a job carries from its producer (the
priority, the queue, the idempotency key built from the arguments) is set by the calls
that build a job from a call: ``.delay()`` and ``.apply_async()`` (which enqueue on the
task's queue, or the one given), ``.s()``/``.si()``/``.signature()`` (whose job names the
task's queue in ``queue_name`` unless it is ``"default"``, so a router such as
``TaskProvider.enqueue_job`` sends it where ``.delay()`` would) and schedules of the task;
a hand-made ``Job(name=...)`` or ``lexigram-tasks enqueue`` job carries what it is given
(``priority=``, ``--priority``, ``--idempotency-key``...). A step of a queue-driven
workflow is the exception: its job runs on the workflow's queue and carries the step's
own idempotency key instead of the task's (one job per step), but keeps the priority,
``scheduled_at`` and the arguments of its signature. Every
enqueue of the core goes through `submit_job` (or `enqueue_job` / `enqueue_jobs`, built
on the same rule), which reports "queued" on `lexigram.tasks.events.producer_events()`
once per job a queue accepted. Those helpers and the queue routing are defined in
``_producer.py``; every name of theirs is importable from here, as is `TaskFunction`,
what the decorators return, defined in ``_task_function.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar, overload

from lexigram.contracts.tasks import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    JobTemplate,
    Priority,
    TaskValidationError,
)
from lexigram.tasks._producer import (
    DEFAULT_QUEUE,
    configure_enqueue_timeout,
    enqueue_job,
    enqueue_jobs,
    get_default_queue,
    get_task_queues,
    queue_for,
    set_default_queue,
    set_task_queues,
    submit_job,
)
from lexigram.tasks._task_function import IdempotencyKey, TaskFunction, _default_name
from lexigram.tasks._task_function import is_method_of as is_method_of  # noqa: PLC0414 - re-exported
from lexigram.tasks.concurrency._task_rate import parse_rate_limit
from lexigram.tasks.constants import DEFAULT_ENQUEUE_TIMEOUT
from lexigram.tasks.execution._options import ExceptionTypes, TaskOptions
from lexigram.tasks.handles import JobHandle

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def schedule_template(name: str, options: TaskOptions | None) -> JobTemplate:
    """What each occurrence of the scheduled task `name` enqueues: name, priority, queue.

    The one template of a scheduled task, under a `TaskProvider` and the ``scheduler``
    command alike. Retries and timeout stay unset (the worker takes them from the task it
    has registered); the queue is the task's ``@task(queue=...)``, None for the default.
    """
    if options is None:  # a handler class's `cron`: the priority a task has by default
        return JobTemplate(name=name, priority=Priority.NORMAL)
    queue = None if options.queue == DEFAULT_QUEUE else options.queue
    return JobTemplate(name=name, priority=options.priority, queue_name=queue)


_UNSET_OPTIONS = TaskOptions()


def _declaration(
    decorator: str,
    *,
    name: str | None,
    priority: Priority | int,
    max_retries: int | None,
    timeout: float | None,
    queue: str,
    idempotency_key: IdempotencyKey,
    retry_on: Iterable[type[BaseException]],
    dont_retry_on: Iterable[type[BaseException]],
    retry_backoff: float | None,
    retry_backoff_max: float | None,
    retry_jitter: bool | None,
    store_result: bool,
    rate_limit: str | None,
    cron: str | None,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """The decorator `task` and `scheduled` return: options checked now, applied by `_declare`."""
    # Checked here, when the decorator is built, so a bad value fails at import like the
    # other options, not at the first enqueue (where the job codec would refuse it).
    if not PRIORITY_MIN <= int(priority) <= PRIORITY_MAX:
        msg = (
            f"@{decorator}(priority={priority!r}): use a Priority or a whole number from "
            f"{PRIORITY_MIN} to {PRIORITY_MAX} (higher runs first)."
        )
        raise ValueError(msg)
    options = TaskOptions(
        max_retries=max_retries,
        timeout=timeout,
        priority=int(priority),
        queue=queue,
        retry_on=tuple(retry_on),
        dont_retry_on=tuple(dont_retry_on),
        retry_backoff=retry_backoff,
        retry_backoff_max=retry_backoff_max,
        retry_jitter=retry_jitter,
        store_result=store_result,
    )

    def decorator_(func: Callable[P, R]) -> TaskFunction[P, R]:
        return _declare(
            func,
            decorator,
            name=name,
            options=options,
            idempotency_key=idempotency_key,
            rate_limit=rate_limit,
            cron=cron,
        )

    return decorator_


def _declare(
    func: Callable[P, R],
    decorator: str,
    *,
    name: str | None,
    options: TaskOptions,
    idempotency_key: IdempotencyKey,
    rate_limit: str | None,
    cron: str | None,
) -> TaskFunction[P, R]:
    """Make the `TaskFunction` of `func`, or of the function a `TaskFunction` `func` wraps.

    Stacked over a task (``@scheduled`` above ``@task``, or the other way round), the
    new task wraps the plain function and keeps every setting of the one below: each
    setting comes from whichever decorator gives it a value other than its default, and
    two decorators giving one setting different values raise `TaskValidationError`.
    """
    below = func if isinstance(func, TaskFunction) else None
    if below is not None:
        func = below.__wrapped__
        inner_name = below.name if below.name != _default_name(func) else None
        name = _one_of("name", _default_name(func), name, inner_name, None)
    task_name = name or _default_name(func)
    if cron is not None:
        # Here, not at the top: importing the scheduling package costs every worker's
        # start (the APP imports this module), and only @scheduled needs it.
        from lexigram.tasks.scheduling._cron import validate_cron  # noqa: PLC0415

        try:
            validate_cron(cron)
        except ValueError as exc:
            msg = f"@{decorator} task {task_name!r}: {exc}"
            raise TaskValidationError(msg) from None
    if rate_limit is not None:  # parsed once, here, so a typo fails at import
        options = dataclasses.replace(
            options, rate_limit=parse_rate_limit(rate_limit, task=task_name)
        )
    if below is not None:
        options = _merged(task_name, options, below.options)
        idempotency_key = _one_of(
            "idempotency_key", task_name, idempotency_key, below.idempotency_key, None
        )
        cron = _one_of("cron", task_name, cron, below.cron, None)
    return TaskFunction(
        func, name=name, options=options, idempotency_key=idempotency_key, cron=cron
    )


def _one_of(setting: str, task_name: str, outer: T, inner: T, unset: T) -> T:
    """The value of `setting` two stacked decorators give: the one not left `unset`."""
    if outer in (unset, inner):
        return inner
    if inner == unset:
        return outer
    msg = (
        f"Task {task_name!r}: the stacked decorators set {setting} to {inner!r} and to "
        f"{outer!r}. Set it in one of them only."
    )
    raise TaskValidationError(msg)


def _merged(task_name: str, outer: TaskOptions, inner: TaskOptions) -> TaskOptions:
    changes = {
        field.name: _one_of(
            field.name,
            task_name,
            getattr(outer, field.name),
            getattr(inner, field.name),
            getattr(_UNSET_OPTIONS, field.name),
        )
        for field in dataclasses.fields(TaskOptions)
    }
    return dataclasses.replace(inner, **changes)


@overload
def task(name: Callable[P, R], /) -> TaskFunction[P, R]: ...
@overload
def task(
    name: str | None = None,
    priority: Priority | int = Priority.NORMAL,
    max_retries: int | None = None,
    timeout: float | None = None,
    queue: str = "default",
    idempotency_key: IdempotencyKey = None,
    *,
    retry_on: ExceptionTypes = (),
    dont_retry_on: ExceptionTypes = (),
    retry_backoff: float | None = None,
    retry_backoff_max: float | None = None,
    retry_jitter: bool | None = None,
    store_result: bool = True,
    rate_limit: str | None = None,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...
def task(  # noqa: PLR0917 - the published positional signature
    name: Any = None,
    priority: Priority | int = Priority.NORMAL,
    max_retries: int | None = None,
    timeout: float | None = None,
    queue: str = "default",
    idempotency_key: IdempotencyKey = None,
    *,
    retry_on: ExceptionTypes = (),
    dont_retry_on: ExceptionTypes = (),
    retry_backoff: float | None = None,
    retry_backoff_max: float | None = None,
    retry_jitter: bool | None = None,
    store_result: bool = True,
    rate_limit: str | None = None,
) -> Any:
    """Decorator to define a task (usable as ``@task`` or ``@task(...)``).

    The options hold for every job of the task, however it was enqueued: the worker
    reads them from the task it has registered under the job's name. Applied over a
    task (e.g. above ``@scheduled``), it keeps that task's cron expression and options,
    as `scheduled` describes.

    Args:
        name: Task name (defaults to the function's name).
        priority: Priority `.delay()` gives the jobs (HIGH, NORMAL, LOW or an int
            from 0 to 255).
        max_retries: Retries after a failed attempt (None: 3; 0: never retry).
        timeout: Seconds an attempt may run (None: the worker's default_timeout).
        queue: Name of the queue `.delay()` enqueues on: a configured backend's name or
            queue name; ``"default"`` is the application's default queue.
        idempotency_key: Key for idempotent execution: fixed, a template such as
            ``"sync-{user_id}"`` over the call's arguments, or a function of them.
        retry_on: Retry only failures raising these exception types (Celery's
            ``autoretry_for``); others are dead-lettered at once. Empty: retry all.
        dont_retry_on: Never retry these exception types (Celery's
            ``dont_autoretry_for``); wins over `retry_on`.
        retry_backoff: Seconds before the first retry, doubled for each further one
            (Celery's ``retry_backoff``); None: the worker's retry config.
        retry_backoff_max: Longest delay between retries (Celery's
            ``retry_backoff_max``); None: the worker's ``retry.max_delay``.
        retry_jitter: True picks each delay at random between 0 and the backoff
            (Celery's ``retry_jitter``); False: exact delays; None: the worker's config.
        store_result: False: the worker stores no result for the task's jobs.
        rate_limit: How often the task's jobs may start: ``"10/s"``, ``"100/m"`` or
            ``"1000/h"``, evenly spaced and shared by every worker process (within
            the process on the memory backend). A job over the limit waits or is
            put back for later; it is never retried or failed for it.

    A handler can also steer its job: ``raise Reject("why")`` dead-letters it at once,
    ``raise Retry(delay=30)`` retries it after 30 s (counting against `max_retries`).
    Arguments that do not fit the handler's signature fail once, without retries.

    Returns:
        A decorator producing a `TaskFunction` with `.delay()` and `.apply_async()`.

    Raises:
        ValueError: An option is out of range (e.g. ``max_retries=-1``, or a
            `priority` outside ``PRIORITY_MIN``..``PRIORITY_MAX``, 0..255).
        TypeError: `retry_on`/`dont_retry_on` hold something that is not an exception
            class.
        TaskValidationError: `rate_limit` is not of an accepted form (raised when the
            function is decorated, naming the task), or ``@task(...)`` is stacked over
            a task (e.g. a ``@scheduled`` one) that sets an option to another value.

    Example:
        @task(name="send_email", max_retries=5, retry_on=(ConnectionError,))
        async def send_email(to: str, subject: str) -> None: ...

        registry.register(send_email.name, send_email)
        handle = await send_email.delay("a@b.c", subject="Hi")
        await handle.result(timeout=10)
    """
    if callable(name):
        return _declare(
            name,
            "task",
            name=None,
            options=TaskOptions(),
            idempotency_key=None,
            rate_limit=None,
            cron=None,
        )
    return _declaration(
        "task",
        name=name,
        priority=priority,
        max_retries=max_retries,
        timeout=timeout,
        queue=queue,
        idempotency_key=idempotency_key,
        retry_on=retry_on,
        dont_retry_on=dont_retry_on,
        retry_backoff=retry_backoff,
        retry_backoff_max=retry_backoff_max,
        retry_jitter=retry_jitter,
        store_result=store_result,
        rate_limit=rate_limit,
        cron=None,
    )


def scheduled(
    cron: str,
    name: str | None = None,
    priority: Priority | int = Priority.NORMAL,
    max_retries: int | None = None,
    timeout: float | None = None,
    *,
    queue: str = "default",
    idempotency_key: IdempotencyKey = None,
    retry_on: ExceptionTypes = (),
    dont_retry_on: ExceptionTypes = (),
    retry_backoff: float | None = None,
    retry_backoff_max: float | None = None,
    retry_jitter: bool | None = None,
    store_result: bool = True,
    rate_limit: str | None = None,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Decorator to define a scheduled task: `task` with a cron expression in `cron`.

    Every option of `task` is accepted, with the same meaning and checks (the ones after
    `timeout` by keyword only). ``@scheduled(cron)`` may also be stacked with ``@task``,
    in either order: the result is one task with the cron expression and every option
    either decorator set. An option left at its default in one decorator takes the
    other's value; two different values for one option raise `TaskValidationError`::

        @scheduled("0 9 * * *")
        @task(name="reports.daily", queue="reports", max_retries=5)
        async def daily_report() -> None: ...

    Args:
        cron: Cron expression (e.g. ``"0 9 * * *"``).
        name: Task name (defaults to the function's name).
        priority: Priority of the jobs the schedule (and `.delay()`) enqueues.
        max_retries: Retries after a failed attempt (None: 3; 0: never retry).
        timeout: Seconds an attempt may run (None: the worker's default_timeout).
        queue: As for `task`.
        idempotency_key: As for `task`.
        retry_on: As for `task`.
        dont_retry_on: As for `task`.
        retry_backoff: As for `task`.
        retry_backoff_max: As for `task`.
        retry_jitter: As for `task`.
        store_result: As for `task`.
        rate_limit: As for `task`.

    Returns:
        A decorator producing a `TaskFunction` whose `cron` is set; register it with
        ``TaskProvider.register_scheduled_task``.

    Raises:
        TaskValidationError: `cron` is empty, or malformed (raised when the function is
            decorated, i.e. at import, naming the task, the bad field and the fix);
            `rate_limit` is malformed; a stacked ``@task`` sets an option to another value.
        ValueError: An option is out of range (e.g. ``priority=300``).
        TypeError: `retry_on`/`dont_retry_on` hold something that is not an exception
            class.
    """
    if not cron.strip():
        msg = f"@scheduled needs a cron expression, got {cron!r}. Use e.g. '0 9 * * *'."
        raise TaskValidationError(msg)
    return _declaration(
        "scheduled",
        name=name,
        priority=priority,
        max_retries=max_retries,
        timeout=timeout,
        queue=queue,
        idempotency_key=idempotency_key,
        retry_on=retry_on,
        dont_retry_on=dont_retry_on,
        retry_backoff=retry_backoff,
        retry_backoff_max=retry_backoff_max,
        retry_jitter=retry_jitter,
        store_result=store_result,
        rate_limit=rate_limit,
        cron=cron.strip(),
    )


__all__ = [
    "DEFAULT_ENQUEUE_TIMEOUT",
    "DEFAULT_QUEUE",
    "JobHandle",
    "TaskFunction",
    "TaskOptions",
    "configure_enqueue_timeout",
    "enqueue_job",
    "enqueue_jobs",
    "get_default_queue",
    "get_task_queues",
    "queue_for",
    "schedule_template",
    "scheduled",
    "set_default_queue",
    "set_task_queues",
    "submit_job",
    "task",
]
