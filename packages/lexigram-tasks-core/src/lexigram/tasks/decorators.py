"""`@task` and `@scheduled`: turn a function into a task you can call, enqueue, or schedule.

A decorated function still runs when called directly. ``await fn.delay(...)`` enqueues
a job on the queue the task is declared for: ``@task(queue="emails")`` goes to the queue
named ``emails`` (a backend of that name, or serving that queue name, registered by the
tasks provider at boot or with `set_task_queues`), the default ``"default"`` to the
application's default queue (`set_default_queue`). ``await fn.apply_async(queue, ...)``
enqueues on a given queue, and ``fn.signature(...)`` / ``fn.s(...)`` only build the
`Job`. Arguments are typed with `ParamSpec`, so a type checker flags a wrong call to
``delay`` or ``s`` just as it would flag a wrong direct call.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, overload

from lexigram.contracts.tasks import (
    Job,
    Priority,
    TaskQueueError,
    TaskQueueProtocol,
    TaskValidationError,
)

P = ParamSpec("P")
R = TypeVar("R")

IdempotencyKey = str | Callable[..., str] | None
"""A fixed key, a ``str.format`` template over the call's arguments, or a function of them."""

DEFAULT_QUEUE = "default"
"""The `@task(queue=...)` value that means "the application's default queue"."""

_default_queue: TaskQueueProtocol | None = None
_named_queues: dict[str, TaskQueueProtocol] = {}


def set_default_queue(queue: TaskQueueProtocol | None) -> None:
    """Set the queue that `TaskFunction.delay` enqueues on (None to unset).

    The tasks provider calls this at boot with the application's primary queue; call it
    yourself in scripts and tests that use a queue without the provider.

    Args:
        queue: The default queue, or None.
    """
    global _default_queue  # noqa: PLW0603 - one process-wide default, as `delay` needs
    _default_queue = queue


def set_task_queues(queues: Mapping[str, TaskQueueProtocol]) -> None:
    """Set the queues `TaskFunction.delay` routes to by name (``@task(queue=name)``).

    The tasks provider calls this at boot with every backend under its name and under
    its queue name; an empty mapping unsets them.

    Args:
        queues: Queue objects by name.
    """
    _named_queues.clear()
    _named_queues.update(queues)


def get_task_queues() -> dict[str, TaskQueueProtocol]:
    """Return a copy of the queues `TaskFunction.delay` routes to by name."""
    return dict(_named_queues)


def queue_for(name: str) -> TaskQueueProtocol:
    """Return the queue a task declared with ``@task(queue=name)`` is enqueued on.

    ``"default"`` is the default queue; any other name is a queue set with
    `set_task_queues`, or the default queue when that one serves a queue of this name.

    Raises:
        TaskQueueError: No queue of that name is configured (a job enqueued anywhere
            else would wait for workers that never consume it).
    """
    if name == DEFAULT_QUEUE:
        return get_default_queue()
    queue = _named_queues.get(name)
    if queue is not None:
        return queue
    if _default_queue is not None and getattr(_default_queue, "queue_name", None) == name:
        return _default_queue
    known = sorted(_named_queues) or ["(none)"]
    msg = (
        f"No task queue named {name!r} is configured, so a task declared with "
        f"@task(queue={name!r}) cannot be enqueued with .delay(); configured names: "
        f"{', '.join(known)}. Add a backend named {name!r} (or with queue_name {name!r}) "
        "to the tasks config so workers consume it, or enqueue with "
        ".apply_async(queue, ...)."
    )
    raise TaskQueueError(msg, queue_name=name)


def get_default_queue() -> TaskQueueProtocol:
    """Return the queue that `TaskFunction.delay` enqueues on.

    Raises:
        TaskQueueError: No default queue is configured.
    """
    if _default_queue is None:
        msg = (
            "No default task queue is configured, so .delay() has nowhere to enqueue. Boot "
            "the application with TasksModule/TaskProvider (it sets the default queue), call "
            "lexigram.tasks.decorators.set_default_queue(queue), or use "
            ".apply_async(queue, ...) with an explicit queue."
        )
        raise TaskQueueError(msg)
    return _default_queue


class TaskFunction(Generic[P, R]):
    """A function decorated with `@task`: callable as before, plus enqueueing helpers.

    Attributes:
        _task_name: The task name jobs carry (the handler is registered under it).
        _priority: Default job priority.
        _max_retries: Default retry limit.
        _timeout: Default timeout in seconds (None: the worker's default).
        _queue: Name of the queue `delay` enqueues on ("default": the default queue).
        _idempotency_key: Fixed key, template, or function of the arguments.
        _func: The undecorated function.
        _cron: Cron expression for `@scheduled` tasks, else None.
    """

    # Set by functools.update_wrapper; declared so type checkers know them.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(
        self,
        func: Callable[P, R],
        *,
        name: str | None = None,
        priority: Priority | int = Priority.NORMAL,
        max_retries: int = 3,
        timeout: float | None = None,
        queue: str = DEFAULT_QUEUE,
        idempotency_key: IdempotencyKey = None,
        cron: str | None = None,
    ) -> None:
        functools.update_wrapper(self, func)
        self._func = func
        self._task_name: str = name or str(getattr(func, "__name__", type(func).__name__))
        self._priority = int(priority)
        self._max_retries = max_retries
        self._timeout = timeout
        self._queue = queue
        self._idempotency_key = idempotency_key
        self._cron = cron
        self._signature = _signature_of(func)

    def __repr__(self) -> str:
        return f"<TaskFunction {self._task_name!r} of {self._func!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly (no queue involved)."""
        return self._func(*args, **kwargs)

    def signature(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Build the `Job` for a call with these arguments, without enqueueing it.

        Raises:
            TaskValidationError: The arguments do not fit the function's signature.
        """
        return self._build(args, kwargs)

    def s(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Shorthand for `signature`."""
        return self._build(args, kwargs)

    async def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Enqueue a job for this call on the task's queue (see `queue_for`).

        Returns:
            The enqueued job (for a duplicate idempotency key: carrying the first
            job's id).

        Raises:
            TaskQueueError: The task's queue is not configured, or the queue refused
                the job (e.g. `TaskValidationError` for arguments that are not JSON).
        """
        job = self._build(args, kwargs)
        return await _enqueue(queue_for(self._queue), job)

    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        *args: Any,
        priority: Priority | int | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        **kwargs: Any,
    ) -> Job:
        """Enqueue a job for this call on `queue`, overriding the task's options.

        `priority`, `max_retries`, `timeout` and `idempotency_key` are options, not
        arguments of the function (a function with parameters of those names must be
        enqueued with `signature` plus ``queue.enqueue``).

        Returns:
            The enqueued job.

        Raises:
            TaskQueueError: The queue refused the job.
        """
        job = self._build(args, kwargs)
        if priority is not None:
            job.priority = int(priority)
        if max_retries is not None:
            job.max_retries = max_retries
        if timeout is not None:
            job.timeout = timeout
        if idempotency_key is not None:
            job.idempotency_key = idempotency_key
        return await _enqueue(queue, job)

    def _build(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        bound = self._bind(args, kwargs)
        return Job(
            name=self._task_name,
            args=tuple(args),
            kwargs=dict(kwargs),
            priority=self._priority,
            max_retries=self._max_retries,
            timeout=self._timeout,
            idempotency_key=self._key_for(args, kwargs, bound),
        )

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._signature is None:
            return {}
        try:
            # Partial: parameters the worker injects (tracker, DI services) are not passed.
            return dict(self._signature.bind_partial(*args, **kwargs).arguments)
        except TypeError as exc:
            msg = (
                f"Task {self._task_name!r} cannot be called with these arguments: {exc}. "
                f"Its signature is {self._task_name}{self._signature}."
            )
            raise TaskValidationError(msg) from None

    def _key_for(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], bound: dict[str, Any]
    ) -> str | None:
        key = self._idempotency_key
        if key is None or (isinstance(key, str) and "{" not in key):
            return key
        try:
            if isinstance(key, str):
                return key.format(**bound)
            return str(key(*args, **kwargs))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            msg = (
                f"Task {self._task_name!r}: idempotency_key {key!r} could not be built from "
                f"the call's arguments ({type(exc).__name__}: {exc}). Use only parameter names "
                "in the template, e.g. 'sync-{user_id}'."
            )
            raise TaskValidationError(msg) from None


def _signature_of(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


async def _enqueue(queue: TaskQueueProtocol, job: Job) -> Job:
    result = await queue.enqueue(job)
    if result.is_err():
        raise result.unwrap_err()
    job_id = result.unwrap()
    if job_id != job.id:  # a duplicate idempotency key: the first job stands for this call
        job.id = job_id
    return job


@overload
def task(name: Callable[P, R], /) -> TaskFunction[P, R]: ...
@overload
def task(
    name: str | None = None,
    priority: Priority | int = Priority.NORMAL,
    max_retries: int = 3,
    timeout: float | None = None,
    queue: str = "default",
    idempotency_key: IdempotencyKey = None,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...
def task(  # noqa: PLR0917 - the published positional signature
    name: Any = None,
    priority: Priority | int = Priority.NORMAL,
    max_retries: int = 3,
    timeout: float | None = None,
    queue: str = "default",
    idempotency_key: IdempotencyKey = None,
) -> Any:
    """Decorator to define a task (usable as ``@task`` or ``@task(...)``).

    Args:
        name: Task name (defaults to the function's name).
        priority: Task priority (HIGH, NORMAL, LOW or an int).
        max_retries: Maximum retry attempts on failure.
        timeout: Execution timeout in seconds.
        queue: Name of the queue `.delay()` enqueues on: a configured backend's name or
            queue name; ``"default"`` is the application's default queue.
        idempotency_key: Key for idempotent execution: fixed, a template such as
            ``"sync-{user_id}"`` over the call's arguments, or a function of them.

    Returns:
        A decorator producing a `TaskFunction` with `.delay()` and `.apply_async()`.

    Example:
        @task(name="send_email", max_retries=5)
        async def send_email(to: str, subject: str) -> None: ...

        registry.register(send_email._task_name, send_email)
        job = await send_email.delay("a@b.c", subject="Hi")
    """
    if callable(name):
        return TaskFunction(name)

    def decorator(func: Callable[P, R]) -> TaskFunction[P, R]:
        return TaskFunction(
            func,
            name=name,
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            queue=queue,
            idempotency_key=idempotency_key,
        )

    return decorator


def scheduled(
    cron: str,
    name: str | None = None,
    priority: Priority | int = Priority.NORMAL,
    max_retries: int = 3,
    timeout: float | None = None,
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Decorator to define a scheduled task (a `task` with a cron expression in `_cron`).

    Args:
        cron: Cron expression (e.g. ``"0 9 * * *"``).
        name: Task name.
        priority: Task priority.
        max_retries: Maximum retry attempts.
        timeout: Execution timeout.

    Returns:
        A decorator producing a `TaskFunction` whose `_cron` is set; register it with
        ``TaskProvider.register_scheduled_task``.

    Raises:
        TaskValidationError: `cron` is empty.
    """
    if not cron.strip():
        msg = f"@scheduled needs a cron expression, got {cron!r}. Use e.g. '0 9 * * *'."
        raise TaskValidationError(msg)

    def decorator(func: Callable[P, R]) -> TaskFunction[P, R]:
        return TaskFunction(
            func,
            name=name,
            priority=priority,
            max_retries=max_retries,
            timeout=timeout,
            cron=cron.strip(),
        )

    return decorator


__all__ = ["TaskFunction", "get_default_queue", "scheduled", "set_default_queue", "task"]
