"""`@task` and `@scheduled`: turn a function into a task you can call, enqueue, or schedule.

A decorated function still runs when called directly. ``await fn.delay(...)`` enqueues
a job on the queue the task is declared for: ``@task(queue="emails")`` goes to the queue
named ``emails`` (a backend of that name, or serving that queue name, registered by the
tasks provider at boot or with `set_task_queues`), the default ``"default"`` to the
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
``_producer.py``; every name of theirs is importable from here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable, Iterable
from types import FrameType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from lexigram.contracts.tasks import (
    PRIORITY_MAX,
    PRIORITY_MIN,
    Job,
    JobTemplate,
    Priority,
    ResultStoreProtocol,
    TaskQueueProtocol,
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
from lexigram.tasks.concurrency._task_rate import parse_rate_limit
from lexigram.tasks.constants import DEFAULT_ENQUEUE_TIMEOUT, IMMUTABLE_STEP_KEY
from lexigram.tasks.execution._options import ExceptionTypes, TaskOptions
from lexigram.tasks.handles import JobHandle

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
T = TypeVar("T")

IdempotencyKey = str | Callable[..., str] | None
"""A fixed key, a ``str.format`` template over the call's arguments, or a function of them."""


class TaskFunction(Generic[P, R]):
    """A function decorated with `@task`: callable as before, plus enqueueing helpers.

    Attributes:
        name: The task name jobs carry (the handler is registered under it).
        options: The task's `TaskOptions`; the worker runs every job of the task
            with them.
        cron: Cron expression of a ``@scheduled`` task, else None.
        idempotency_key: Fixed key, template, or function of the arguments.
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
        options: TaskOptions | None = None,
        idempotency_key: IdempotencyKey = None,
        cron: str | None = None,
    ) -> None:
        functools.update_wrapper(self, func)
        self._func = func
        self.name: str = name or _default_name(func)
        self.options = options if options is not None else TaskOptions()
        self.idempotency_key = idempotency_key
        self.cron = cron
        self._signature = _signature_of(func)
        self._applied_in = _applying_scope()

    # Older spellings of the public attributes, kept for code written against them.
    @property
    def _task_name(self) -> str:
        return self.name

    @property
    def _cron(self) -> str | None:
        return self.cron

    @_cron.setter
    def _cron(self, value: str | None) -> None:
        self.cron = value

    @property
    def _priority(self) -> int:
        return self.options.priority

    @property
    def _max_retries(self) -> int | None:
        return self.options.max_retries

    @property
    def _timeout(self) -> float | None:
        return self.options.timeout

    @property
    def _queue(self) -> str:
        return self.options.queue

    @property
    def _idempotency_key(self) -> IdempotencyKey:
        return self.idempotency_key

    def __repr__(self) -> str:
        return f"<TaskFunction {self.name!r} of {self._func!r}>"

    if TYPE_CHECKING:
        # For type checkers only (at run time the class attribute is this object): read
        # from a class, a method task takes the arguments after ``self``, as its
        # producers pass them and the worker calls it (see `__set_name__`).
        def __get__(
            self: TaskFunction[Concatenate[Any, P2], R], instance: object, owner: type[Any]
        ) -> TaskFunction[P2, R]: ...

    def __set_name__(self, owner: type, attribute: str) -> None:
        """Declared in a class body: a handler class's method, run bound to an instance.

        The worker calls it as ``instance.method(*args, **kwargs)`` (`TaskProvider` binds
        it), so a producer passes the arguments after ``self``: the checks of `delay`,
        `s` and the idempotency key template read the signature without its first
        parameter, as the worker will call it.
        """
        signature = self._signature
        if signature is None or not is_method_of(self, owner):
            return  # a task assigned to a class attribute, not declared in the body
        parameters = list(signature.parameters.values())
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if parameters and parameters[0].kind in positional:
            self._signature = signature.replace(parameters=parameters[1:])

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function directly (no queue involved)."""
        return self._func(*args, **kwargs)

    def signature(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Build the `Job` for a call with these arguments, without enqueueing it.

        Raises:
            TaskValidationError: The arguments do not fit the function's signature.
        """
        return self._routed(args, kwargs)

    # The second overload types a chain step that gets the previous step's result as its
    # first argument: the call then leaves the first parameter out.
    @overload
    def s(self, *args: P.args, **kwargs: P.kwargs) -> Job: ...
    @overload
    def s(
        self: TaskFunction[Concatenate[Any, P2], R], *args: P2.args, **kwargs: P2.kwargs
    ) -> Job: ...
    def s(self, *args: Any, **kwargs: Any) -> Job:
        """Shorthand for `signature`; also a step of a queue-driven workflow.

        In a `JobChain` every step after the first receives the previous step's result
        as its first argument, before these, so ``parse.s()`` is a step of
        ``def parse(raw: str)``: type checkers accept a call with every argument or
        with all but the first (use `si` for a step that takes no previous result).
        """
        return self._routed(args, kwargs)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Like `s`, but immutable: in a workflow the step gets only these arguments.

        The previous step's result is not prepended (type checkers check the call as
        for `s`).
        """
        job = self._routed(args, kwargs)
        job.metadata[IMMUTABLE_STEP_KEY] = True
        return job

    async def delay(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Enqueue a job for this call on the task's queue (see `queue_for`).

        Returns:
            A `JobHandle` of the enqueued job, for a duplicate idempotency key
            carrying the first job's id: ``await handle.result()`` waits for its result.

        Raises:
            TaskQueueError: The task's queue is not configured, or the queue refused
                the job (e.g. `TaskValidationError` for arguments that are not JSON).
        """
        job = self._build(args, kwargs)
        queue = queue_for(self.options.queue)
        return JobHandle(queue, await enqueue_job(queue, job))

    # Type checkers check the arguments of a call without options against the function's
    # signature (a ParamSpec admits no further keywords); a call with at least one option
    # matches one of the later overloads, whose arguments are not checked.
    @overload
    async def apply_async(
        self, queue: TaskQueueProtocol, /, *args: P.args, **kwargs: P.kwargs
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        priority: Priority | int,
        max_retries: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        max_retries: int | None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        timeout: float | None,
        idempotency_key: str | None = None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        idempotency_key: str | None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    @overload
    async def apply_async(
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        result_store: ResultStoreProtocol | None,
        **kwargs: Any,
    ) -> JobHandle[R]: ...
    async def apply_async(  # type: ignore[misc] # P.kwargs could hold an option's name
        self,
        queue: TaskQueueProtocol,
        /,
        *args: Any,
        priority: Priority | int | None = None,
        max_retries: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
        result_store: ResultStoreProtocol | None = None,
        **kwargs: Any,
    ) -> JobHandle[R]:
        """Enqueue a job for this call on `queue`, overriding the task's options.

        `priority`, `max_retries`, `timeout`, `idempotency_key` and `result_store` are
        options, not arguments of the function (a function with parameters of those
        names must be enqueued with `signature` plus `enqueue_job`). The values given
        here are set on the job and win over the task's options for this job only.
        `result_store` is where the handle reads the job's result (default: the store
        registered for `queue`, see `register_job_stores`).

        Returns:
            A `JobHandle` of the enqueued job.

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
        return JobHandle(queue, await enqueue_job(queue, job), result_store=result_store)

    def _build(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        bound = self._bind(args, kwargs)
        # Only the priority is copied (the queue orders by it); max_retries and timeout
        # stay None so that the worker's registered task decides them.
        return Job(
            name=self.name,
            args=tuple(args),
            kwargs=dict(kwargs),
            priority=self.options.priority,
            idempotency_key=self._key_for(args, kwargs, bound),
        )

    def _routed(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Job:
        """`_build`, naming the task's queue so a router sends the job where `delay` would.

        Only the built-but-not-enqueued jobs carry it: `delay` and `apply_async` pick the
        queue themselves and leave the name to that queue, as they always have.
        """
        job = self._build(args, kwargs)
        if self.options.queue != DEFAULT_QUEUE:
            job.queue_name = self.options.queue
        return job

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        if self._signature is None:
            return {}
        try:
            # Partial: parameters the worker injects (tracker, DI services) are not passed.
            return dict(self._signature.bind_partial(*args, **kwargs).arguments)
        except TypeError as exc:
            msg = (
                f"Task {self.name!r} cannot be called with these arguments: {exc}. "
                f"Its signature is {self.name}{self._signature}."
            )
            raise TaskValidationError(msg) from None

    def _key_for(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], bound: dict[str, Any]
    ) -> str | None:
        key = self.idempotency_key
        if key is None or (isinstance(key, str) and "{" not in key):
            return key
        try:
            if isinstance(key, str):
                return key.format(**bound)
            return str(key(*args, **kwargs))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            msg = (
                f"Task {self.name!r}: idempotency_key {key!r} could not be built from "
                f"the call's arguments ({type(exc).__name__}: {exc}). Use only parameter names "
                "in the template, e.g. 'sync-{user_id}'."
            )
            raise TaskValidationError(msg) from None


def schedule_template(name: str, options: TaskOptions | None) -> JobTemplate:
    """What each occurrence of the scheduled task `name` enqueues: name, priority, queue.

    The one template of a scheduled task, under a `TaskProvider` and the ``scheduler``
    command alike. Retries and timeout stay unset (the worker takes them from the task it
    has registered); the queue is the task's ``@task(queue=...)``, None for the default.
    """
    if options is None:
        return JobTemplate(name=name)
    queue = None if options.queue == DEFAULT_QUEUE else options.queue
    return JobTemplate(name=name, priority=options.priority, queue_name=queue)


def _signature_of(func: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(func)
    except (TypeError, ValueError):
        return None


def _default_name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__name__", type(func).__name__))


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


def _applying_scope() -> str | None:
    """The qualified name of the code that applied ``@task`` (a class body's: its class's).

    The first frame outside this module: a class body when the decorator is written
    there, ``<module>`` at module level.
    """
    frame: FrameType | None = sys._getframe(1)  # noqa: SLF001 - where it was applied
    while frame is not None and frame.f_globals is globals():
        frame = frame.f_back
    return None if frame is None else frame.f_code.co_qualname


def is_method_of(function: TaskFunction[Any, Any], owner: type) -> bool:
    """Whether `function` was declared in the body of `owner` (a method of it).

    Either the function's own qualified name says so, or ``@task`` was applied in that
    class body (the function may be wrapped by a decorator that does not copy its name).
    A task defined elsewhere and assigned to a class attribute (``send = send_email``)
    is neither: it runs as the plain function it is, never bound to an instance.
    """
    declared_in = getattr(function.__wrapped__, "__qualname__", "").rpartition(".")[0]
    return owner.__qualname__ in (declared_in, function._applied_in)  # noqa: SLF001


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
